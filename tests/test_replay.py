"""replay: decisions for captured requests, and what a candidate policy would change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from router.cli import main
from router.server.capture import captured, strip_secrets

ROOT = Path(__file__).resolve().parents[1]
DEMO = json.loads((ROOT / "policies" / "captured" / "demo-call.json").read_text())


def _message(caller: str | None, at: str, call_id: str) -> dict[str, object]:
    message = json.loads(json.dumps(DEMO["message"]))
    message["customer"]["number"] = caller
    message["call"]["customer"]["number"] = caller
    message["timestamp"] = at
    message["call"]["id"] = call_id
    return message


CALLS = [
    ("+14155550142", "2026-11-23T15:30:00Z", "c-vip"),  # VIP in crm.csv, office open
    ("+14155550143", "2026-11-23T15:30:00Z", "c-plumbing"),  # plumbing tag, not vip
    ("+15550000001", "2026-11-23T15:30:00Z", "c-spam"),
    ("+525512345678", "2026-11-24T03:00:00Z", "c-mx"),
    (None, "2026-11-23T15:30:00Z", "c-anon"),
]


@pytest.fixture
def requests_file(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    lines = [json.dumps({"captured_at": "x", "message": _message(*c)}) for c in CALLS]
    lines += ["not json", json.dumps({"message": {"type": "status-update"}})]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    """The bundled policy with the VIP route widened to plumbing customers."""
    out = tmp_path / "candidate"
    shutil.copytree(ROOT / "policies", out)
    main_yaml = out / "main.yaml"
    text = main_yaml.read_text()
    assert "when: {tags: {any: [vip]}}" in text
    main_yaml.write_text(text.replace("when: {tags: {any: [vip]}}", "when: {tags: {any: [vip, plumbing]}}"))
    return out


def test_replay_lists_each_decision(requests_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(ROOT / "policies"), "--requests", str(requests_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    routes = {d["call_id"]: d["route"] for d in out["decisions"]}
    assert routes == {
        "c-vip": "vip",
        "c-plumbing": "intake-ab",
        "c-spam": "block-spam",
        "c-mx": "spanish-callers",
        "c-anon": "intake-ab",
    }
    assert out["skipped"] == [
        {"line": 6, "reason": "not JSON"},
        {"line": 7, "reason": "not an assistant-request"},
    ]


def test_replay_against_counts_transitions_with_examples(
    requests_file: Path, candidate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replay", str(ROOT / "policies"), "--requests", str(requests_file), "--against", str(candidate)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[:2] == [
        "1 of 5 decisions would change",
        "  route changed: intake-ab -> vip: 1 (e.g. c-plumbing)",
    ]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] == 1
    assert out["changes"] == [
        {"kind": "route", "from": "intake-ab", "to": "vip", "count": 1, "examples": ["c-plumbing"]}
    ]


def test_replay_of_an_invalid_candidate_exits_1(requests_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nroutes: []\n")
    assert (
        main(["replay", str(ROOT / "policies"), "--requests", str(requests_file), "--against", str(bad)]) == 1
    )


def test_capture_strips_credentials_and_reduces_phone_number() -> None:
    message = _message("+14155550142", "2026-11-23T15:30:00Z", "c1")
    message["phoneNumber"] = {
        "id": "pn",
        "number": "+16505550117",
        "name": "Main",
        "provider": "twilio",
        "twilioAccountSid": "AC-SENTINEL",
        "twilioAuthToken": "TOKEN-SENTINEL",
        "server": {"url": "https://x", "secret": "S"},
    }
    message["call"]["credentials"] = [{"apiKey": "K-SENTINEL"}]
    message["serverUrlSecret"] = "SECRET-SENTINEL"
    out = captured(message)
    assert out["phoneNumber"] == {"id": "pn", "number": "+16505550117", "name": "Main", "provider": "twilio"}
    assert "SENTINEL" not in json.dumps(out)
    assert out["customer"] == {"number": "+14155550142"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"authorization": "x", "a": 1}, {"a": 1}, id="auth-header"),
        pytest.param({"x": [{"token": 1, "y": 2}]}, {"x": [{"y": 2}]}, id="nested-list"),
        pytest.param({"passwordHash": "p", "name": "n"}, {"name": "n"}, id="password"),
    ],
)
def test_strip_secrets(value: object, expected: object) -> None:
    assert strip_secrets(value) == expected


def test_a_capture_from_the_running_server_replays_to_the_same_decisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from serverutil import InProcess  # the real server (uvicorn on 127.0.0.1)

    policy_dir = tmp_path / "policy"
    shutil.copytree(ROOT / "policies", policy_dir)
    srv = InProcess(policy_dir, (policy_dir / "main.yaml").read_text(), capture=True)
    (policy_dir / "main.yaml").unlink()  # InProcess wrote the same text to policy.yaml
    with srv, srv.client() as client:
        for caller, at, call_id in CALLS:
            message = {"message": _message(caller, at, call_id)}
            message["message"]["phoneNumber"]["twilioAuthToken"] = "TOKEN-SENTINEL"  # type: ignore[index]
            assert srv.post_webhook(client, message).status_code == 200
        live = srv.wait_log(lambda r: r.get("call_id") == "c-anon")
    assert srv.capture_path is not None
    text = srv.capture_path.read_text()
    assert "TOKEN-SENTINEL" not in text and srv.auth(b"")["x-vapi-secret"] not in text
    lines = [json.loads(line) for line in text.splitlines()]
    vip = next(line for line in lines if line["message"]["call"]["id"] == "c-vip")
    assert vip["crm"] == {
        "status": "ok",
        "tags": ["plumbing", "vip"],
        "fields": {"name": "Dana", "tier": "gold"},
    }
    # The CRM has changed since: replay decides on what the live calls saw, not on a new lookup.
    (policy_dir / "crm.csv").write_text("number,tags,name,tier\n")
    assert main(["replay", str(policy_dir), "--requests", str(srv.capture_path), "--json"]) == 0
    decisions = json.loads(capsys.readouterr().out)["decisions"]
    assert {d["call_id"]: d["route"] for d in decisions} == {r["call_id"]: r["route"] for r in live}
    assert {d["call_id"]: d["route"] for d in decisions}["c-vip"] == "vip"


def test_a_reply_change_under_the_same_route_is_reported_apart(
    requests_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "reworded"
    shutil.copytree(ROOT / "policies", other)
    main_yaml = other / "main.yaml"
    main_yaml.write_text(
        main_yaml.read_text().replace("Sorry, we can't take your call.", "This line is closed.")
    )
    argv = ["replay", str(ROOT / "policies"), "--requests", str(requests_file), "--against", str(other)]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "1 of 5 decisions would change",
        "  reply changed: route block-spam, same target: 1 (e.g. c-spam)",
    ]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["changed_by_kind"] == {"route": 0, "target": 0, "reply": 1}
    spam = next(d for d in data["decisions"] if d["call_id"] == "c-spam")
    assert (spam["change"], spam["reply"], spam["against_reply"]) == (
        "reply",
        {"error": "Sorry, we can't take your call."},
        {"error": "This line is closed."},
    )


def test_a_call_captured_twice_is_one_example(
    tmp_path: Path, candidate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "twice.jsonl"
    plumbing = json.dumps({"message": _message("+14155550143", "2026-11-23T15:30:00Z", "c-0002")})
    other = json.dumps({"message": _message("+14155550143", "2026-11-23T15:30:00Z", "c-0001")})
    path.write_text("\n".join([plumbing, other, plumbing]) + "\n")
    assert main(["replay", str(ROOT / "policies"), "--requests", str(path), "--against", str(candidate)]) == 0
    assert (
        capsys.readouterr().out.splitlines()[1]
        == "  route changed: intake-ab -> vip: 3 (e.g. c-0002, c-0001)"
    )


HTTP_POLICY = ROOT / "tests" / "cases" / "cli" / "httpcrm" / "httpcrm.yaml"
NEVER_CALLED = "https://crm.example.invalid/contacts?phone=${caller}"
HTTP_CALLS = [
    ("+14155550142", "c-customer"),  # in the CRM, tagged customer
    ("+14155550143", "c-unknown"),  # the CRM answers 404: not_found
    ("+15550000001", "c-spam"),  # blocked before any lookup
    (None, "c-anon"),  # nothing to look up
]


def test_a_capture_from_a_server_on_a_real_http_crm_replays_on_what_each_call_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: a policy on an HTTP CRM, captured by `serve --capture` against a real
    local CRM, replays to the live decisions after the CRM is gone; a request without captured
    facts whose decision needs them is counted in the warning (and in --json), not hidden."""
    from crmserver import CrmServer
    from serverutil import InProcess

    at = "2026-11-23T15:30:00Z"
    text = HTTP_POLICY.read_text()
    assert NEVER_CALLED in text
    with CrmServer() as crm:
        crm.contacts["+14155550142"] = {"tags": ["customer"], "company": "Acme"}
        srv = InProcess(tmp_path / "live", text.replace(NEVER_CALLED, crm.url_template), capture=True)
        with srv, srv.client() as client:
            for caller, call_id in HTTP_CALLS:
                response = srv.post_webhook(client, {"message": _message(caller, at, call_id)})
                assert response.status_code == 200
            live = {r["call_id"]: r["route"] for r in srv.wait_log(lambda r: r.get("call_id") == "c-anon")}
        assert crm.requests == 2  # lookups are lazy: spam and the anonymous caller need none
    assert live == {
        "c-customer": "customers",
        "c-unknown": "default",
        "c-spam": "block-spam",
        "c-anon": "default",
    }
    assert srv.capture_path is not None
    captured_crm = {
        line["message"]["call"]["id"]: line.get("crm")
        for line in map(json.loads, srv.capture_path.read_text().splitlines())
    }
    assert captured_crm == {
        "c-customer": {"status": "ok", "tags": ["customer"], "fields": {"company": "Acme"}},
        "c-unknown": {"status": "not_found", "tags": [], "fields": {}},
        "c-spam": None,
        "c-anon": None,
    }
    # a line captured without CRM facts (an older capture, or written by hand)
    with srv.capture_path.open("a") as f:
        f.write(json.dumps({"message": _message("+14155550142", at, "c-uncaptured")}) + "\n")

    argv = ["replay", str(srv.directory), "--requests", str(srv.capture_path)]
    assert main([*argv, "--json"]) == 0  # the CRM is gone: nothing is looked up
    out, err = capsys.readouterr()
    report = json.loads(out)
    routes = {d["call_id"]: d["route"] for d in report["decisions"]}
    assert routes == live | {"c-uncaptured": "default"}  # the live call of that number: customers
    customer = next(d for d in report["decisions"] if d["call_id"] == "c-customer")
    assert customer["reply"]["assistantOverrides"] == {"variableValues": {"company": "Acme"}}
    assert [d["call_id"] for d in report["decisions"] if d["crm_assumed"]] == ["c-uncaptured"]
    assert report["crm_assumed"] == {
        "count": 1,
        "lines": [5],
        "crm_status": "not_found",
        "not_called": ["crm.http"],
    }
    warning = (
        "vapi-router replay: warning: 1 of 5 requests has no captured CRM facts and crm.http is not"
        " called offline: it was decided on an assumed crm_status not_found (line 5); `serve --capture`"
        " records what the CRM said whenever a live call looked its caller up\n"
    )
    assert err == warning
    assert main(argv) == 0
    assert capsys.readouterr() == (
        "line 1: c-customer +1415*****42 -> customers (customers)\n"
        "line 2: c-unknown +1415*****43 -> default (unknown-caller)\n"
        "line 3: c-spam +1555*****01 -> block-spam (inline error)\n"
        "line 4: c-anon anonymous -> default (unknown-caller)\n"
        "line 5: c-uncaptured +1415*****42 -> default (unknown-caller)\n"
        "5 requests: default 3, customers 1, block-spam 1\n",
        warning,
    )

    # A candidate without the spam route needs the CRM for c-spam, whose live call made no
    # lookup: that request is decided on an assumed status too, and counted.
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    without_spam = srv.policy_path.read_text().replace(
        '  - id: block-spam\n    when: {caller: "+15550000001"}\n'
        '    then: {error: "Sorry, we can\'t take your call."}\n',
        "",
    )
    assert "block-spam" not in without_spam
    (candidate / "policy.yaml").write_text(without_spam)
    assert main([*argv, "--against", str(candidate)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == [
        "1 of 5 decisions would change",
        "  route changed: block-spam -> default: 1 (e.g. c-spam)",
    ]
    assert "2 of 5 requests have no captured CRM facts" in err and "(lines 3, 5)" in err
