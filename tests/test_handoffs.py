"""DESIGN §9 transfers and handoffs through the real server: `message` beside a destination,
assistant destinations, `handoffs:` routes, `parameters` and `assistant` conditions, and the
lint problems of keys an assistant-request cannot send. Every reply passes Vapi's schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serverutil import InProcess, metric, parse_metrics, reply_problems

from router.policy.loader import lint_texts

POLICY = """\
version: 1
targets:
  desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
  billing-bot:
    destination: {type: assistant, assistantName: Billing, message: ""}
routes:
  - {id: all, then: desk}
transfers:
  - id: refund
    when: {parameters: {reason: refund}, assistant: Front Desk}
    then:
      destination: {type: number, number: "+16505550100"}
      message: "Connecting you to refunds."
  - id: billing
    when: {parameters: {reason: [invoice, payment]}}
    then: billing-bot
  - id: object-message
    when: {assistant: [Night Desk]}
    then:
      destination: {type: sip, sipUri: "sip:night@pbx.example.net"}
      message: {type: request-start, content: "One moment.", blocking: true}
handoffs:
  - id: to-sales
    when: {parameters: {destination: sales}}
    then:
      destination: {type: assistant, assistantName: Sales}
      result: handed to sales
  - id: vip-only
    when: {parameters: {destination: vip}}
    then: {error: "The VIP desk is closed."}
default: desk
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with InProcess(tmp_path_factory.mktemp("handoffs"), POLICY) as server:
        yield server


def _message(kind: str, assistant: str | None, parameters: dict[str, Any] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": kind, "call": {"id": f"call-{kind}-{assistant}-{parameters}"}}
    if assistant:
        message["assistant"] = {"name": assistant}
    if parameters is not None:
        message["parameters"] = parameters
    return {"message": message}


@pytest.mark.parametrize(
    ("kind", "assistant", "parameters", "reply"),
    [
        pytest.param(
            "transfer-destination-request",
            "Front Desk",
            {"reason": "refund"},
            {
                "destination": {"type": "number", "number": "+16505550100"},
                "message": {"type": "request-start", "content": "Connecting you to refunds."},
            },
            id="transfer-string-message",
        ),
        pytest.param(
            "transfer-destination-request",
            "Other Desk",
            {"reason": "refund"},
            {},
            id="transfer-wrong-assistant-no-transfer",
        ),
        pytest.param(
            "transfer-destination-request",
            None,
            {"reason": "payment"},
            {"destination": {"type": "assistant", "assistantName": "Billing", "message": ""}},
            id="transfer-assistant-destination",
        ),
        pytest.param(
            "transfer-destination-request",
            "Night Desk",
            None,
            {
                "destination": {"type": "sip", "sipUri": "sip:night@pbx.example.net"},
                "message": {"type": "request-start", "content": "One moment.", "blocking": True},
            },
            id="transfer-object-message",
        ),
        pytest.param(
            "handoff-destination-request",
            None,
            {"destination": "sales"},
            {"destination": {"type": "assistant", "assistantName": "Sales"}, "result": "handed to sales"},
            id="handoff-destination",
        ),
        pytest.param(
            "handoff-destination-request",
            None,
            {"destination": "vip"},
            {"error": "The VIP desk is closed.", "destination": {}},
            id="handoff-error",
        ),
        pytest.param(
            "handoff-destination-request",
            None,
            {"destination": "nowhere"},
            {"destination": {}, "error": "No handoff destination matches this request."},
            id="handoff-unmatched",
        ),
    ],
)
def test_tool_replies(
    srv: InProcess,
    kind: str,
    assistant: str | None,
    parameters: dict[str, Any] | None,
    reply: dict[str, Any],
) -> None:
    with srv.client() as client:
        response = srv.post_webhook(client, _message(kind, assistant, parameters))
    assert response.status_code == 200
    assert response.json() == reply
    assert reply_problems(kind, response.json()) == []


def test_handoff_decision_log(srv: InProcess) -> None:
    with srv.client() as client:
        srv.post_webhook(client, _message("handoff-destination-request", None, {"destination": "sales"}))
        records = srv.records_until_marker(client)
    lines = [r for r in records if r["type"] == "handoff-destination-request"]
    assert lines and lines[-1]["route"] == "to-sales" and lines[-1]["reply"] == "destination"


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param(
            "routes:\n  - {id: a, when: {parameters: {x: 1}, assistant: A}, then: {error: x}}\n",
            [
                "p.yaml:3:20: error: `parameters` reads the tool call of a transfer or handoff; an "
                "assistant-request has none [bad-condition]",
                "p.yaml:3:40: error: `assistant` reads the tool call of a transfer or handoff; an "
                "assistant-request has none [bad-condition]",
            ],
            id="tool-conditions-in-routes",
        ),
        pytest.param(
            "routes:\n  - {id: a, then: {destination: {type: number, number: '+16505550100'}, "
            "message: hi}}\n",
            [
                "p.yaml:3:73: error: `message` goes only in a transfers: or handoffs: route; an "
                "assistant-request has no tool call [bad-tool-reply]",
            ],
            id="message-in-routes",
        ),
        pytest.param(
            "transfers:\n  - {id: a, then: {error: no, result: r}}\n",
            [
                "p.yaml:3:31: error: `result` goes only in a handoffs: route (Vapi's transfer reply has "
                "none) [bad-tool-reply]",
            ],
            id="result-in-transfers",
        ),
        pytest.param(
            "targets:\n  bot: {destination: {type: assistant, assistantName: B}}\n"
            "routes:\n  - {id: a, then: bot}\n",
            [
                'p.yaml:5:19: error: target "bot" cannot answer an assistant-request: it is an assistant '
                "destination, which only a transfer can answer with [bad-target-use]",
            ],
            id="assistant-destination-in-routes",
        ),
        pytest.param(
            "transfers:\n  - {id: a, then: {destination: {type: assistant}, "
            "message: {type: request-strat}}}\n",
            [
                'p.yaml:3:33: error: an assistant transfer destination needs "assistantName" [vapi-required]',
                'p.yaml:3:68: error: "type" must be one of request-start, request-complete, request-failed, '
                'request-response-delayed; got "request-strat" (did you mean "request-start"?) [vapi-enum]',
            ],
            id="transfer-payloads-checked",
        ),
    ],
)
def test_tool_lint(text: str, lines: list[str]) -> None:
    problems = lint_texts([("p.yaml", "version: 1\n" + text + 'default: {error: "Sorry."}\n')]).problems
    assert [str(p) for p in problems] == lines


def test_unmatched_handoff_counts_as_no_transfer(srv: InProcess) -> None:
    with srv.client() as client:
        before = _count(client)
        srv.post_webhook(client, _message("handoff-destination-request", None, {"destination": "x"}))
        assert _count(client) == before + 1


def _count(client: httpx.Client) -> float:
    return metric(parse_metrics(client.get("/metrics").text), "router_decisions_total", outcome="no_transfer")
