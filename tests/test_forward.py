"""settings.forward against a real local upstream: answered types proxied (ok, slow, failing,
garbage), notifications queued with retries and a cap, router_forward_total, and an
assistant-request never delayed by a hanging upstream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serverutil import InProcess, metric, parse_metrics, payload, reply_problems
from upstream import Upstream

TOOL_CALLS = {
    "message": {
        "type": "tool-calls",
        "call": {"id": "call-tools"},
        "toolCallList": [{"id": "t-1", "type": "function", "function": {"name": "lookup", "arguments": {}}}],
    }
}
NOTE = {
    "message": {
        "type": "end-of-call-report",
        "call": {"id": "call-note"},
        "endedReason": "customer-ended-call",
    }
}


def policy(url: str, *, timeout_ms: int = 300, queue: int = 1000) -> str:
    return f"""\
version: 1
settings:
  forward:
    url: "{url}"
    headers: {{X-Upstream-Token: "${{env.FORWARD_TOKEN}}"}}
    timeout_ms: {timeout_ms}
    queue: {queue}
routes: []
default: {{assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture
def srv(tmp_path: Path, upstream: Upstream) -> Iterator[InProcess]:
    upstream.mode, upstream.bodies[:], upstream.headers[:] = "ok", [], []
    env = {"VAPI_SERVER_SECRET": "s", "FORWARD_TOKEN": "tok-1"}
    with InProcess(tmp_path, policy(upstream.url), env=env) as server:
        yield server


def forwarded(srv: InProcess, kind: str, result: str) -> float:
    with srv.client() as client:
        return metric(
            parse_metrics(client.get("/metrics").text), "router_forward_total", type=kind, result=result
        )


FAILED = {"results": [{"error": "the tool server failed", "toolCallId": "t-1", "name": "lookup"}]}
LATE = {
    "results": [{"error": "the tool server did not answer in time", "toolCallId": "t-1", "name": "lookup"}]
}


@pytest.mark.parametrize(
    ("mode", "reply", "result"),
    [
        pytest.param(
            "ok", {"results": [{"name": "lookup", "toolCallId": "t-1", "result": "done"}]}, "ok", id="ok"
        ),
        pytest.param("500", FAILED, "error", id="upstream-500"),
        pytest.param("garbage", FAILED, "error", id="upstream-garbage"),
        pytest.param("hang", LATE, "timeout", id="upstream-hangs"),
    ],
)
def test_tool_calls_are_proxied(
    srv: InProcess, upstream: Upstream, mode: Any, reply: dict[str, Any], result: str
) -> None:
    upstream.mode = mode
    with srv.client() as client:
        started = time.perf_counter()
        response = srv.post_webhook(client, TOOL_CALLS)
        assert time.perf_counter() - started < 2.0
    assert (response.status_code, response.json()) == (200, reply)
    assert reply_problems("tool-calls", response.json()) == []
    assert upstream.bodies[-1] == TOOL_CALLS
    assert upstream.headers[-1]["x-upstream-token"] == "tok-1"
    assert "x-vapi-secret" not in upstream.headers[-1]
    assert forwarded(srv, "tool-calls", result) == 1


def test_notifications_are_queued_and_retried(srv: InProcess, upstream: Upstream) -> None:
    with srv.client() as client:
        response = srv.post_webhook(client, NOTE)
    assert (response.status_code, response.content) == (200, b"{}")
    end = time.monotonic() + 5
    while forwarded(srv, "end-of-call-report", "ok") < 1 and time.monotonic() < end:
        time.sleep(0.02)
    assert upstream.bodies[-1] == NOTE
    upstream.mode = "500"
    with srv.client() as client:
        srv.post_webhook(client, NOTE)
    while forwarded(srv, "end-of-call-report", "error") < 1 and time.monotonic() < end + 5:
        time.sleep(0.05)
    assert forwarded(srv, "end-of-call-report", "error") == 1
    assert len(upstream.bodies) == 1 + 3  # three attempts for the failing one


def test_hanging_upstream_never_delays_a_call_and_the_queue_is_capped(
    tmp_path: Path, upstream: Upstream
) -> None:
    upstream.mode = "hang"
    with InProcess(
        tmp_path, policy(upstream.url, timeout_ms=2000, queue=5), env={"VAPI_SERVER_SECRET": "s"}
    ) as srv:
        with srv.client() as client:
            for _ in range(50):
                assert srv.post_webhook(client, NOTE).status_code == 200
            started = time.perf_counter()
            call = srv.post_webhook(client, payload("assistant-request.pstn.json"))
            elapsed = time.perf_counter() - started
        assert call.status_code == 200 and reply_problems("assistant-request", call.json()) == []
        assert elapsed < 0.5
        # one in flight, five queued: the rest dropped and counted, memory bounded by the cap
        assert forwarded(srv, "end-of-call-report", "dropped") >= 50 - 5 - 1


def test_without_forward_other_types_get_empty(tmp_path: Path) -> None:
    text = "version: 1\nroutes: []\ndefault: {assistantId: a}\n"
    with InProcess(tmp_path, text, env={"VAPI_SERVER_SECRET": "s"}) as srv, srv.client() as client:
        assert srv.post_webhook(client, TOOL_CALLS).content == b"{}"
        assert srv.post_webhook(client, NOTE).content == b"{}"
