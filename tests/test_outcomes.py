"""DESIGN §9 call outcomes through the real server: status-update (ended) and end-of-call-report
joined to the decision of the call, router_call_outcomes_total counted once per call, the
`call-ended` decision-log line, and the warning for assistant-request-* ends (secrets stripped).
Plus the bounded store and the --workers rule on CallOutcomes itself."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from serverutil import InProcess, metric, parse_metrics, payload, reply_problems

from router.server.decisionlog import DecisionLog
from router.server.outcomes import CallOutcomes, redacted

POLICY = """\
version: 1
targets:
  desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
routes:
  - {id: us-callers, when: {caller: "+1*"}, then: desk}
default: {assistantId: 9a1f0f3e-0d4c-4a7b-9d53-0a4a8a1c0001}
"""
CALL = "0c5d8f2e-7a41-4b9e-9d33-5e2f6a1b7c90"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with InProcess(tmp_path_factory.mktemp("outcomes"), POLICY) as server:
        yield server


def assistant_request(call_id: str) -> dict[str, Any]:
    message = payload("assistant-request.pstn.json")
    message["message"]["call"]["id"] = call_id
    return message


def status(call_id: str, state: str = "ended", reason: str | None = "customer-ended-call") -> dict[str, Any]:
    message = payload("status-update.ended-assistant-request-failed.json")
    message["message"].update(status=state, endedReason=reason)
    message["message"]["call"]["id"] = call_id
    del message["message"]["inboundPhoneCallDebuggingArtifacts"]
    return message


def report(call_id: str, reason: str = "customer-ended-call") -> dict[str, Any]:
    message = payload("end-of-call-report.json")
    message["message"]["call"]["id"] = call_id
    message["message"]["endedReason"] = reason
    return message


# (messages after the assistant-request, route counted, ended_reason label, lines written)
CASES = [
    pytest.param([status], "us-callers", "customer-ended-call", 1, id="status-update-ended"),
    pytest.param([report], "us-callers", "customer-ended-call", 1, id="end-of-call-report"),
    pytest.param([status, report], "us-callers", "customer-ended-call", 1, id="second-proof-counts-nothing"),
    pytest.param([report, status, report], "us-callers", "customer-ended-call", 1, id="report-first"),
    pytest.param([lambda c: status(c, state="in-progress", reason=None)], None, None, 0, id="not-ended-yet"),
    pytest.param(
        [lambda c: report(c, reason="reason-vapi-added-tomorrow")],
        "us-callers",
        "other",
        1,
        id="unknown-reason",
    ),
]


@pytest.mark.parametrize(("messages", "route", "reason", "lines"), CASES)
def test_an_end_is_joined_to_its_decision_once(
    srv: InProcess, messages: list[Any], route: str | None, reason: str | None, lines: int, request: Any
) -> None:
    call_id = f"outcome-{request.node.callspec.id}"
    with srv.client() as client:
        reply = srv.post_webhook(client, assistant_request(call_id))
        assert reply.status_code == 200 and not reply_problems("assistant-request", reply.json())
        before = parse_metrics(client.get("/metrics").text)
        for make in messages:
            answer = srv.post_webhook(client, make(call_id))
            assert (answer.status_code, answer.json()) == (200, {})
        records = srv.records_until_marker(client)
        after = parse_metrics(client.get("/metrics").text)
    ended = [r for r in records if r.get("type") == "call-ended" and r["call_id"] == call_id]
    assert len(ended) == lines
    counted = metric(after, "router_call_outcomes_total") - metric(before, "router_call_outcomes_total")
    assert counted == lines
    if lines:
        assert route is not None and reason is not None
        assert metric(after, "router_call_outcomes_total", route=route, ended_reason=reason) >= 1
        line = ended[0]
        assert line["route"] == route and line["target"] == "desk"
        assert line["caller"] == "+1415*****42" and line["dialled"] == "+1650*****17"
        assert line["via"] == messages[0](call_id)["message"]["type"]
        assert isinstance(line["duration_s"], float) and line["duration_s"] >= 0


def test_the_report_duration_is_vapis(srv: InProcess) -> None:
    with srv.client() as client:
        srv.post_webhook(client, assistant_request("outcome-duration"))
        srv.post_webhook(client, report("outcome-duration"))
        records = srv.records_until_marker(client)
    (line,) = [r for r in records if r.get("type") == "call-ended" and r["call_id"] == "outcome-duration"]
    assert line["duration_s"] == 252.387  # endedAt - startedAt of the shared payload


def test_a_failed_assistant_request_warns_with_vapis_artifacts(
    srv: InProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """The shared payload as Vapi sends it, for a call the router never answered (one worker:
    route "unknown"); a secret inside the artifacts is stripped from the warning and the log."""
    message = payload("status-update.ended-assistant-request-failed.json")
    message["message"]["call"]["id"] = "outcome-failed"
    message["message"]["inboundPhoneCallDebuggingArtifacts"]["serverSecret"] = "SENTINEL-leak"
    with caplog.at_level(logging.WARNING, logger="router.server.outcomes"), srv.client() as client:
        before = parse_metrics(client.get("/metrics").text)
        assert srv.post_webhook(client, message).json() == {}
        records = srv.records_until_marker(client)
        after = parse_metrics(client.get("/metrics").text)
    (line,) = [r for r in records if r.get("type") == "call-ended" and r["call_id"] == "outcome-failed"]
    assert line["route"] == "unknown" and line["ended_reason"] == "assistant-request-failed"
    assert line["debugging_artifacts"] == {"assistantRequestError": "timeout of 7500ms exceeded"}
    labels = {"route": "unknown", "ended_reason": "assistant-request-failed"}
    assert (
        metric(after, "router_call_outcomes_total", **labels)
        - metric(before, "router_call_outcomes_total", **labels)
        == 1
    )
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "outcome-failed" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "timeout of 7500ms exceeded" in warnings[0].getMessage()
    assert "SENTINEL" not in warnings[0].getMessage() and "SENTINEL" not in srv.log_text()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def outcomes(capacity: int = 3) -> tuple[CallOutcomes, CollectorRegistry, Clock]:
    registry, clock = CollectorRegistry(), Clock()
    return CallOutcomes(registry, DecisionLog(None), capacity=capacity, clock=clock), registry, clock


def counted(registry: CollectorRegistry, route: str) -> float:
    value = registry.get_sample_value(
        "router_call_outcomes_total", {"route": route, "ended_reason": "customer-ended-call"}
    )
    return value or 0.0


END = {"status": "ended", "endedReason": "customer-ended-call"}


@pytest.mark.parametrize(
    ("calls", "ended", "workers", "route", "expected"),
    [
        pytest.param(3, "c0", 1, "r", 1, id="kept"),
        pytest.param(4, "c0", 1, "unknown", 1, id="oldest-evicted-one-worker"),
        pytest.param(4, "c0", 2, "unknown", 0, id="oldest-evicted-workers-count-nothing"),
        pytest.param(4, "c3", 2, "r", 1, id="own-decision-with-workers"),
    ],
)
def test_the_store_is_bounded(calls: int, ended: str, workers: int, route: str, expected: int) -> None:
    store, registry, _ = outcomes(capacity=3)
    for i in range(calls):
        store.remember(f"c{i}", "r", "t", "anonymous", "anonymous")
    assert len(store.decided) <= 3
    assert store.ended("status-update", {**END, "call": {"id": ended}}, workers=workers) == bool(expected)
    assert not store.ended("end-of-call-report", {**END, "call": {"id": ended}}, workers=workers)
    assert counted(registry, route) == expected


def test_a_decision_older_than_the_retention_is_forgotten() -> None:
    store, registry, clock = outcomes()
    store.remember("old", "r", "t", "anonymous", "anonymous")
    clock.now += 49 * 3600
    assert store.ended("status-update", {**END, "call": {"id": "old"}})
    assert counted(registry, "unknown") == 1 and counted(registry, "r") == 0


@pytest.mark.parametrize(
    ("artifacts", "logged"),
    [
        pytest.param(
            {"assistantRequestError": "timeout of 7500ms exceeded"},
            {"assistantRequestError": "timeout of 7500ms exceeded"},
            id="the-shared-payload-unchanged",
        ),
        pytest.param(
            {"error": "POST https://vapi:pw@router.example/webhook/vapi?secret=s&x=1 failed"},
            {"error": "POST https://router.example/webhook/vapi?… failed"},
            id="url-credentials-and-query",
        ),
        pytest.param(
            {"customer": {"number": "+14155550142"}, "raw": "4155550142 or %2B14155550142"},
            {"customer": {"number": "+*********42"}, "raw": "********42 or %2B*********42"},
            id="numbers-in-any-plain-form",
        ),
        pytest.param(
            {"headers": {"x-vapi-secret": "s", "Authorization": "Bearer t"}, "twilioAuthToken": "t"},
            {"headers": {}},
            id="credential-keys-dropped",
        ),
        pytest.param(
            {
                "at": "2026-01-01T18:00:05.190Z",
                "status": 401,
                "ids": ["0c5d8f2e-7a41-4b9e-9d33-5e2f6a1b7c90"],
            },
            {
                "at": "2026-01-01T18:00:05.190Z",
                "status": 401,
                "ids": ["0c5d8f2e-7a41-4b9e-9d33-5e2f6a1b7c90"],
            },
            id="dates-codes-and-ids-kept",
        ),
    ],
)
def test_debugging_artifacts_are_redacted_for_the_log(artifacts: Any, logged: Any) -> None:
    assert redacted(artifacts) == logged
