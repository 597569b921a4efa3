"""1,000 calls pipelined on one connection to the router (uvicorn with serve's HTTP protocol,
in process), sent in one go while the replies are read: every one gets its 200 with a reply
Vapi accepts, in request order, in bounded time. Every tenth caller needs the HTTP CRM
(`cache_ttl_s: 0`, so each looks up), so the pipeline mixes replies written from the parser
with replies that wait in uvicorn's request cycle, and the calls behind a lookup queue
behind it. Every reply, the fallback's too, names its call id, which proves the order."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from pathlib import Path

from crmserver import CrmServer
from hostileutil import SAFE, VIP, call_message, post_bytes, read_responses
from serverutil import InProcess, dumps, reply_problems

DEPTH = 1000
CRM_EVERY = 10
BOUND_S = 10.0


def policy(crm_url: str) -> str:
    return f"""\
version: 1
settings: {{region: US, deadline_ms: 3000, fallback: echo}}
crm:
  http:
    url: "{crm_url}"
    tags: contact.tags
  timeout_ms: 2000
  cache_ttl_s: 0
targets:
  echo: {{assistantId: {SAFE}, assistantOverrides: {{variableValues: {{call: "${{call.id}}"}}}}}}
routes:
  - id: local
    when: {{caller: "+1415555*"}}
    then: echo
  - id: vip
    when: {{tags: [vip]}}
    then: {{assistantId: {VIP}, assistantOverrides: {{variableValues: {{call: "${{call.id}}"}}}}}}
default: echo
"""


def caller(i: int) -> str:
    return f"+1212555{i:04d}" if i % CRM_EVERY == 0 else f"+1415555{i:04d}"


def test_a_thousand_pipelined_calls_on_one_connection(tmp_path: Path) -> None:
    with CrmServer() as crm:
        crm.contacts.update({caller(i): {"tags": ["vip"]} for i in range(0, DEPTH, CRM_EVERY)})
        with InProcess(tmp_path, policy(crm.url_template)) as srv:
            bodies = [dumps(call_message(caller=caller(i), call_id=f"deep-{i}")) for i in range(DEPTH)]
            wire = b"".join(post_bytes(body, srv.auth(body)) for body in bodies)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=BOUND_S) as sock:
                # written by a thread while this one reads: the server stops reading a client
                # that does not read its replies, and a blocked sendall would never return
                sender = threading.Thread(target=sock.sendall, args=(wire,), daemon=True)
                start = time.perf_counter()
                sender.start()
                replies = read_responses(sock, DEPTH)
                took = time.perf_counter() - start
                sender.join(BOUND_S)
            lookups = crm.requests
    assert [status for status, _, _ in replies] == [200] * DEPTH
    parsed = [json.loads(body) for _, body, _ in replies]
    assert [r["assistantOverrides"]["variableValues"]["call"] for r in parsed] == [
        f"deep-{i}" for i in range(DEPTH)
    ]
    vip = [i for i, r in enumerate(parsed) if r["assistantId"] == VIP]
    assert vip == list(range(0, DEPTH, CRM_EVERY))  # each lookup answered before its deadline
    assert lookups == DEPTH // CRM_EVERY
    for reply in (parsed[0], parsed[1]):
        assert reply_problems("assistant-request", reply) == []
    assert took < BOUND_S, took
    gaps = [b - a for (_, _, a), (_, _, b) in itertools.pairwise(replies)]
    print(
        f"\n{DEPTH} pipelined calls ({DEPTH // CRM_EVERY} with a CRM lookup): all in {took * 1000:.0f} ms, "
        f"first reply {(replies[0][2] - start) * 1000:.0f} ms, longest gap {max(gaps) * 1000:.1f} ms"
    )
