"""One decision everywhere (DESIGN §11): the same calls through the server's service, the
webhook, `/v1/explain`, `vapi-router explain`, `vapi-router test` and `replay` give the same
route, target, reply and fallback reason."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from serverutil import InProcess

from router.cli import main
from router.policy.loader import lint_path
from router.runtime.decide import decide
from router.runtime.facts import facts_from_message
from router.runtime.model import Policy
from router.server import service
from router.server.live import build_live
from router.tools.cases import run_file, target_label
from router.tools.offline import local_crm, with_offline_crm
from router.tools.replay import replay

SAFE = "11111111-1111-4111-8111-111111111111"
NAMED = "22222222-2222-4222-8222-222222222222"
POLICY = f"""\
version: 1
settings: {{fallback: safe}}
crm: {{file: crm.csv}}
targets:
  safe: {{assistantId: {SAFE}}}
  named:
    assistantId: {NAMED}
    assistantOverrides: {{variableValues: {{name: "${{crm.name}}"}}}}
routes:
  - id: blocked
    when: {{caller: "+1900*"}}
    then: {{error: "Sorry, no."}}
  - id: vip
    when: {{tags: [vip]}}
    then: named
  - id: gold-ab
    when: {{crm: {{tier: gold}}}}
    then:
      split:
        - {{weight: 50, then: safe}}
        - {{weight: 50, then: named}}
transfers:
  - id: vip-transfer
    when: {{tags: [vip]}}
    then: {{destination: {{type: number, number: "+15550002222", message: "For ${{crm.name}}"}}}}
default: safe
"""
CRM = """\
number,tags,name,tier
+14155550142,vip,Dana,
+14155550143,vip,,
+14155550144,,Ada,gold
+14155550145,,,gold
"""

# (id, caller, transfer, expected route, target, fallback reason contains)
CASES = [
    ("vip-named", "+14155550142", False, "vip", "named", None),
    ("vip-template-falls-back", "+14155550143", False, "vip", "safe", "crm.name"),
    ("split-named-or-safe", "+14155550144", False, "gold-ab", None, None),
    ("split-without-a-name", "+14155550145", False, "gold-ab", None, "?"),  # sticky: either variant
    ("unknown-default", "+14155550199", False, None, "safe", None),
    ("blocked-inline", "+19005550100", False, "blocked", None, None),
    ("anonymous", None, False, None, "safe", None),
    ("transfer-vip", "+14155550142", True, "vip-transfer", None, None),
    ("transfer-nobody", "+14155550199", True, None, None, None),
    ("transfer-template-falls-back-to-nothing", "+14155550143", True, "vip-transfer", None, "crm.name"),
]


def _message(caller: str | None, transfer: bool, call_id: str) -> dict[str, Any]:
    customer = {"number": caller} if caller else {}
    return {
        "type": "transfer-destination-request" if transfer else "assistant-request",
        "call": {"id": call_id, "customer": customer},
        "customer": customer,
        "phoneNumber": {"number": "+16505550117"},
    }


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("paths")
    (d / "policy.yaml").write_text(POLICY)
    (d / "crm.csv").write_text(CRM)
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with InProcess(tmp_path_factory.mktemp("served"), POLICY, files={"crm.csv": CRM}) as srv:
        yield srv


@pytest.fixture(scope="module")
def policy(policy_dir: Path) -> Policy:
    loaded = lint_path(policy_dir)
    assert loaded.policy is not None, loaded.problems
    return loaded.policy


def _reference(policy: Policy, message: dict[str, Any], transfer: bool) -> tuple[Any, ...]:
    facts = facts_from_message(message, region=None, now=None)
    with local_crm(policy) as crm:
        answer = decide(policy, with_offline_crm(policy, facts, crm), transfer=transfer)
    return answer.route, answer.target, answer.reply, answer.fallback_reason


@pytest.mark.parametrize(
    ("name", "caller", "transfer", "route", "target", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_the_reference_decision(
    policy: Policy,
    name: str,
    caller: str | None,
    transfer: bool,
    route: str | None,
    target: str | None,
    reason: str | None,
) -> None:
    got_route, got_target, reply, got_reason = _reference(policy, _message(caller, transfer, name), transfer)
    assert got_route == route
    if target is not None:
        assert got_target == target
    if reason != "?":
        assert (reason is None) == (got_reason is None) and (reason is None or reason in str(got_reason))
    if transfer and route is None:
        assert reply == {}


@pytest.mark.parametrize(
    ("name", "caller", "transfer", "route", "target", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_every_path_agrees(
    policy: Policy,
    policy_dir: Path,
    server: InProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    caller: str | None,
    transfer: bool,
    route: str | None,
    target: str | None,
    reason: str | None,
) -> None:
    message = _message(caller, transfer, name)
    want = _reference(policy, message, transfer)
    w_route, w_target, w_reply, w_reason = want

    # the server's service, as the webhook runs it
    outcome = asyncio.run(
        service.decide(build_live(policy, None, {}), message, started=time.perf_counter(), transfer=transfer)
    )
    assert (outcome.route, outcome.target, json.loads(outcome.body), outcome.fallback_reason) == want

    # the webhook, its decision-log line and /v1/explain, over HTTP
    with server.client() as client:
        hook = server.post_webhook(client, {"message": message})
        explained = client.post("/v1/explain", json={"message": message}, headers=server.admin()).json()
    assert (hook.status_code, hook.json()) == (200, w_reply)
    [line] = [r for r in server.wait_log(lambda r: r["call_id"] == name) if r["call_id"] == name]
    logged_route = line["route"] if transfer else (None if line["route"] == "default" else line["route"])
    assert (logged_route, line["target"], line["fallback_reason"]) == (w_route, w_target, w_reason)
    assert (explained["route"], explained["target"], explained["reply"]) == (w_route, w_target, w_reply)
    assert explained.get("fallback_reason") == w_reason

    # vapi-router explain --request
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"message": message}))
    capsys.readouterr()
    assert main(["explain", str(policy_dir), "--request", str(request), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert (cli["route"], cli["target"], cli["reply"], cli.get("fallback_reason")) == want

    # vapi-router test: a case expecting the reference decision passes
    case = {
        "name": name,
        "request": "request.json",
        "expect": {"route": w_route or "default", "reply": w_reply},
    }
    if w_target is not None:
        case["expect"]["target"] = w_target
    cases = tmp_path / "paths.test.yaml"
    cases.write_text(yaml.safe_dump({"cases": [case]}))
    results, problems = run_file(policy, cases)
    assert problems == [] and [r.failures for r in results] == [()]
    assert results[0].route == w_route

    # replay (assistant-requests only: replay skips other messages)
    if not transfer:
        captured = tmp_path / "calls.jsonl"
        captured.write_text(json.dumps({"message": message}) + "\n")
        [replayed] = replay(policy, captured).results
        assert (replayed.route, replayed.target, json.loads(replayed.body), replayed.fallback_reason) == (
            w_route or "default",
            target_label(w_target, w_reply),
            w_reply,
            w_reason,
        )


@pytest.mark.parametrize(("name", "caller", "transfer"), [c[:3] for c in CASES], ids=[c[0] for c in CASES])
def test_the_service_agrees_when_it_looks_the_caller_up_before_evaluating(
    policy_dir: Path, tmp_path: Path, name: str, caller: str | None, transfer: bool
) -> None:
    # the vip route first: every assistant-request with a caller stops for the CRM at once,
    # so the service looks the caller up without evaluating first (Live.crm_first)
    text = POLICY.replace("  - id: blocked\n", "  - id: blocked-later\n", 1)
    blocked = '  - id: blocked-later\n    when: {caller: "+1900*"}\n    then: {error: "Sorry, no."}\n'
    text = text.replace(blocked, "").replace("  - id: gold-ab\n", blocked + "  - id: gold-ab\n", 1)
    (tmp_path / "policy.yaml").write_text(text)
    (tmp_path / "crm.csv").write_text(CRM)
    loaded = lint_path(tmp_path)
    assert loaded.policy is not None, loaded.problems
    live = build_live(loaded.policy, None, {})
    assert live.crm_first
    message = _message(caller, transfer, name)
    outcome = asyncio.run(service.decide(live, message, started=time.perf_counter(), transfer=transfer))
    want = _reference(loaded.policy, message, transfer)
    assert (outcome.route, outcome.target, json.loads(outcome.body), outcome.fallback_reason) == want
    assert outcome.crm_status == (
        "not_found" if caller is None else "ok" if caller.endswith(("42", "43", "44", "45")) else "not_found"
    )
