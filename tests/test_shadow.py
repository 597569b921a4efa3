"""serve --shadow: the candidate policy is evaluated beside the live one; callers get the live answer."""

from __future__ import annotations

import time
from pathlib import Path

from serverutil import InProcess, metric, payload

from router.server.store import PolicyStore

LIVE = """\
version: 1
routes:
  - id: uk
    when: {caller: "+44*"}
    then: {assistantId: live-uk}
default: {assistantId: live-default}
"""
# The candidate moves US callers to a new assistant and answers UK callers the same way.
CANDIDATE = """\
version: 1
routes:
  - id: uk
    when: {caller: "+44*"}
    then: {assistantId: live-uk}
  - id: us-new
    when: {caller: "+1*"}
    then: {assistantId: candidate-us}
default: {assistantId: live-default}
"""


def _call(number: str, call_id: str) -> dict[str, object]:
    message = payload("assistant-request.pstn.json")
    message["message"]["customer"]["number"] = number
    message["message"]["call"]["customer"]["number"] = number
    message["message"]["call"]["id"] = call_id
    return message


def test_shadow_differences_are_counted_and_logged_while_callers_get_the_live_reply(tmp_path: Path) -> None:
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(CANDIDATE)
    srv = InProcess(tmp_path / "live", LIVE)
    srv.server.shadow = PolicyStore(candidate)
    with srv, srv.client() as client:
        us = srv.post_webhook(client, _call("+14155550142", "call-us"))
        uk = srv.post_webhook(client, _call("+442079460958", "call-uk"))
        assert (us.status_code, us.json()) == (200, {"assistantId": "live-default"})
        assert (uk.status_code, uk.json()) == (200, {"assistantId": "live-uk"})
        records = srv.wait_log(lambda r: r.get("shadow_diff"))
        diffs = [r for r in records if r.get("shadow_diff")]
        assert [(r["call_id"], r["live_route"], r["shadow_route"]) for r in diffs] == [
            ("call-us", "default", "us-new")
        ]
        assert diffs[0]["differs"] == ["route", "reply"]
        end = time.monotonic() + 5
        while True:
            samples = srv.metrics(client)
            count = metric(
                samples, "router_shadow_differences_total", live_route="default", shadow_route="us-new"
            )
            if count == 1 or time.monotonic() > end:
                break
            time.sleep(0.01)
        assert count == 1
        assert metric(samples, "router_decisions_total", route="default", outcome="matched") == 0
        assert metric(samples, "router_decisions_total", route="default", outcome="default") == 1


def test_a_shadow_that_cannot_answer_quickly_does_not_delay_the_live_reply(tmp_path: Path) -> None:
    """The candidate needs a CRM that never answers; the live reply must not wait for it."""
    import socket

    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # accepts connections, never answers
    port = hang.getsockname()[1]
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(
        "version: 1\nsettings: {deadline_ms: 3000}\n"
        f'crm: {{http: {{url: "http://127.0.0.1:{port}/c?n=${{caller}}", tags: tags}}, timeout_ms: 2500}}\n'
        "routes:\n  - id: vip\n    when: {tags: [vip]}\n    then: {assistantId: candidate-vip}\n"
        "default: {assistantId: live-default}\n"
    )
    srv = InProcess(tmp_path / "live", LIVE)
    srv.server.shadow = PolicyStore(candidate)
    try:
        with srv, srv.client() as client:
            started = time.perf_counter()
            reply = srv.post_webhook(client, _call("+14155550142", "call-slow"))
            elapsed = time.perf_counter() - started
            assert (reply.status_code, reply.json()) == (200, {"assistantId": "live-default"})
            assert elapsed < 1.0, f"the live reply waited {elapsed:.2f} s for the shadow"
    finally:
        hang.close()


def test_a_shadow_that_changes_only_the_reply_says_so(tmp_path: Path) -> None:
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(CANDIDATE.replace("{assistantId: live-uk}", "{assistantId: candidate-uk}"))
    srv = InProcess(tmp_path / "live", LIVE)
    srv.server.shadow = PolicyStore(candidate)
    with srv, srv.client() as client:
        uk = srv.post_webhook(client, _call("+442079460958", "call-uk"))
        assert (uk.status_code, uk.json()) == (200, {"assistantId": "live-uk"})
        records = srv.wait_log(lambda r: r.get("shadow_diff"))
    diff = next(r for r in records if r.get("shadow_diff"))
    assert {k: diff[k] for k in ("call_id", "live_route", "shadow_route", "differs")} == {
        "call_id": "call-uk",
        "live_route": "uk",
        "shadow_route": "uk",
        "differs": ["reply"],
    }
