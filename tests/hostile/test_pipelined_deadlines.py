"""Item 5 of issue 15: calls pipelined on one connection each keep their own deadline, counted
from when their bytes arrived, and their replies stay in order. The CRM hangs, so every call
that needs it is answered from the fallback at its deadline: all of them by ~1 s, not 1, 2,
3 and 4 s one after another."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from crmserver import CrmServer
from hostileutil import SAFE, call_message, policy, post_bytes, read_responses
from serverutil import InProcess, dumps

DEADLINE_MS = 1000
SLACK_S = 0.3


def test_pipelined_calls_keep_their_own_deadline(tmp_path: Path) -> None:
    with CrmServer() as crm:
        crm.mode = "hang"
        text = policy(crm.url_template, deadline_ms=DEADLINE_MS, timeout_ms=5000)
        with InProcess(tmp_path, text) as srv:
            # CRM callers (+1212...) wait for the CRM; local ones (+1415555...) echo their call id
            callers = ["+12125550001", "+14155550001", "+12125550002", "+12125550003", "+14155550002"]
            wire = b""
            for i, caller in enumerate(callers):
                body = dumps(call_message(caller=caller, call_id=f"pipe-{i}"))
                wire += post_bytes(body, srv.auth(body))
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
                start = time.perf_counter()
                sock.sendall(wire)
                replies = read_responses(sock, len(callers))
            assert [status for status, _, _ in replies] == [200] * len(callers)
            at = [round(t - start, 3) for _, _, t in replies]
            assert max(at) < DEADLINE_MS / 1000 + SLACK_S, at
            for i, (caller, (_, body, _)) in enumerate(zip(callers, replies, strict=True)):
                reply = json.loads(body)
                assert reply["assistantId"] == SAFE
                if caller.startswith("+1415"):  # in order: each reply is its own request's
                    assert reply["assistantOverrides"]["variableValues"]["call"] == f"pipe-{i}"
            print(f"\npipelined replies at {at} s (deadline {DEADLINE_MS} ms)")
