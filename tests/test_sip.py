"""DESIGN §9 SIP numbers through the real server: `dialled`/`caller` SIP URI patterns matched
against phoneNumber.sipUri and customer.sipUri, `${dialled}` rendering the SIP URI on a SIP
number, PSTN calls untouched, and the lint of SIP patterns. Every reply passes Vapi's schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from serverutil import InProcess, payload, reply_problems

from router.policy.loader import lint_texts

POLICY = """\
version: 1
targets:
  desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
routes:
  - id: sip-main
    when: {dialled: "sip:acme-main@*"}
    then:
      assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004
      assistantOverrides: {variableValues: {line: "${dialled}"}}
  - id: sip-caller
    when: {caller: ["+44*", "SIP:*@203.0.113.*"]}
    then: desk
  - id: pstn-line
    when: {dialled: "+16505550117"}
    then:
      assistantId: 9a1f0f3e-0d4c-4a7b-9d53-0a4a8a1c0001
      assistantOverrides: {variableValues: {line: "${dialled}"}}
default: {assistantId: 7c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with InProcess(tmp_path_factory.mktemp("sip"), POLICY) as server:
        yield server


def sip(number: str | None = None, uri: str = "sip:acme-main@sip.vapi.ai") -> dict[str, Any]:
    message = payload("assistant-request.sip.json")
    message["message"]["phoneNumber"].update(number=number, sipUri=uri)
    return message


def other_line(message: dict[str, Any]) -> dict[str, Any]:
    message["message"]["phoneNumber"]["sipUri"] = "sip:other@sip.vapi.ai"
    return message


def no_sip_caller(message: dict[str, Any]) -> dict[str, Any]:
    message["message"]["phoneNumber"]["sipUri"] = "sip:other@sip.vapi.ai"
    message["message"]["customer"] = {"number": "+14155550142"}
    message["message"]["call"]["customer"] = {"number": "+14155550142"}
    return message


@pytest.mark.parametrize(
    ("message", "route", "line"),
    [
        pytest.param(sip(), "sip-main", "sip:acme-main@sip.vapi.ai", id="sip-number-dialled-pattern"),
        pytest.param(other_line(sip()), "sip-caller", None, id="caller-sip-uri-any-case"),
        pytest.param(no_sip_caller(sip()), "default", None, id="no-sip-uri-no-match"),
        pytest.param(
            payload("assistant-request.pstn.json"), "pstn-line", "+16505550117", id="pstn-unchanged"
        ),
    ],
)
def test_sip_patterns_route(srv: InProcess, message: dict[str, Any], route: str, line: str | None) -> None:
    call_id = f"sip-{route}"
    message["message"]["call"]["id"] = call_id
    with srv.client() as client:
        reply = srv.post_webhook(client, message)
        assert reply.status_code == 200
        assert not reply_problems("assistant-request", reply.json())
        records = srv.wait_log(lambda r: r.get("call_id") == call_id)
    assert [r["route"] for r in records if r.get("call_id") == call_id] == [route]
    if line is not None:
        assert reply.json()["assistantOverrides"]["variableValues"]["line"] == line


def problems(condition: str) -> list[str]:
    route = f"  - {{id: r, when: {condition}, then: {{error: x}}}}\n"
    text = f"version: 1\nroutes:\n{route}default: {{error: y}}\n"
    return [p.code for p in lint_texts([("p.yaml", text)]).problems]


@pytest.mark.parametrize(
    ("condition", "codes"),
    [
        pytest.param('{dialled: "sip:support@*"}', [], id="dialled-pattern"),
        pytest.param('{caller: ["sips:*@pbx.example.net", "+1*"]}', [], id="caller-list-mixed"),
        pytest.param('{dialled: "sip:*"}', [], id="any-sip"),
        pytest.param('{dialled: "sip:"}', ["bad-number"], id="scheme-only"),
        pytest.param('{dialled: "sip:a b@host"}', ["bad-number"], id="space"),
        pytest.param('{dialled: "support@host"}', ["bad-number"], id="no-scheme"),
    ],
)
def test_sip_patterns_lint(condition: str, codes: list[str]) -> None:
    assert problems(condition) == codes
