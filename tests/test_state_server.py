"""Live call state through the running server (DESIGN §13): overflow when a pool is full,
the fallback when a pooled target is chosen on a full pool, slots released by
status-update/end-of-call-report only (once) or by the periodic max_hold_s expiry, flags
over HTTP with the audit line and a TTL, a locked store answered with the fallback within
the deadline, the metrics, and `serve --workers N` refusing in-process state."""

from __future__ import annotations

import copy
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from serverutil import InProcess, Subprocess, metric, payload, reply_problems, run_serve

from router.server import flags

POLICY = """\
version: 1
settings: {fallback: desk, deadline_ms: 1000}
STATE
capacity:
  sales: {max: 2}
flags:
  storm: {description: storm closure}
targets:
  desk: {assistantId: desk-assistant}
  sales-desk: {assistantId: sales-assistant, pool: sales}
  overflow: {assistantId: overflow-assistant}
routes:
  - id: storm
    when: {flag: storm}
    then: {error: "We are closed because of the storm."}
  - id: again
    when: {history: {calls: {within: 10m, gte: 3}}}
    then:
      assistantId: repeat-assistant
      assistantOverrides: {variableValues: {last: "${history.last_target}", calls: "${history.calls_24h}"}}
  - id: sales
    when: {capacity: {sales: available}}
    then: sales-desk
  - id: overflow
    when: {capacity: {sales: full}}
    then: overflow
default: desk
"""


def request(call_id: str, caller: str = "+14155550101") -> dict[str, Any]:
    data = payload("assistant-request.pstn.json")
    data["message"]["call"]["id"] = call_id
    data["message"]["customer"]["number"] = caller
    data["message"]["call"]["customer"]["number"] = caller
    data["message"].pop("timestamp", None)
    return data


def end(call_id: str, kind: str) -> dict[str, Any]:
    name = (
        "end-of-call-report.json" if kind == "report" else "status-update.ended-assistant-request-failed.json"
    )
    data = copy.deepcopy(payload(name))
    data["message"]["call"]["id"] = call_id
    return data


def in_progress(call_id: str) -> dict[str, Any]:
    data = copy.deepcopy(payload("status-update.in-progress.json"))
    data["message"]["call"]["id"] = call_id
    return data


def test_a_full_pool_overflows_and_only_the_end_frees_a_slot(tmp_path: Path) -> None:
    with InProcess(tmp_path, POLICY.replace("STATE", "")) as srv, srv.client() as c:
        answers = [srv.post_webhook(c, request(f"c{i}", f"+1415555020{i}")).json() for i in range(3)]
        assert [a["assistantId"] for a in answers] == [
            "sales-assistant",
            "sales-assistant",
            "overflow-assistant",
        ]
        assert all(reply_problems("assistant-request", a) == [] for a in answers)
        # no proof of the end: an in-progress update releases nothing
        assert srv.post_webhook(c, in_progress("c0")).json() == {}
        assert (
            srv.post_webhook(c, request("c3", "+14155550300")).json()["assistantId"] == "overflow-assistant"
        )
        assert srv.post_webhook(c, end("c0", "status")).json() == {}
        assert srv.post_webhook(c, end("c0", "report")).json() == {}  # the late report frees nothing more
        assert srv.post_webhook(c, end("c0", "status")).json() == {}  # nor a duplicate
        assert srv.post_webhook(c, request("c4", "+14155550400")).json()["assistantId"] == "sales-assistant"
        assert (
            srv.post_webhook(c, request("c5", "+14155550500")).json()["assistantId"] == "overflow-assistant"
        )
        samples = srv.metrics(c)
        assert metric(samples, "router_pool_releases_total", pool="sales", reason="status-update") == 1
        assert metric(samples, "router_pool_releases_total", pool="sales", reason="end-of-call-report") == 0
        assert metric(samples, "router_pool_reservations_total", pool="sales", result="granted") == 3
        records = srv.wait_log(lambda r: r.get("call_id") == "c5")
        assert {r["state_status"] for r in records if r.get("type") == "assistant-request"} == {"ok"}


def test_history_routes_the_fourth_call_in_ten_minutes(tmp_path: Path) -> None:
    with InProcess(tmp_path, POLICY.replace("STATE", "")) as srv, srv.client() as c:
        for i in range(3):
            srv.post_webhook(c, request(f"h{i}"))
            srv.post_webhook(c, end(f"h{i}", "report"))
        deadline = time.monotonic() + 5
        while True:  # decisions are recorded after the reply
            reply = srv.post_webhook(c, request(f"h-{time.monotonic_ns()}")).json()
            if reply["assistantId"] == "repeat-assistant" or time.monotonic() > deadline:
                break
        assert reply["assistantId"] == "repeat-assistant"
        assert reply["assistantOverrides"]["variableValues"]["last"] in ("sales-desk", "overflow")
        assert int(reply["assistantOverrides"]["variableValues"]["calls"]) >= 3


def test_flags_switch_with_audit_line_and_ttl(tmp_path: Path) -> None:
    with InProcess(tmp_path, POLICY.replace("STATE", "")) as srv, srv.client() as c:
        assert c.get("/v1/flags").status_code == 401
        assert c.post("/v1/flags/storm", json={"on": True, "reason": "x"}).status_code == 401
        listed = c.get("/v1/flags", headers=srv.admin()).json()["flags"]
        assert [(f["name"], f["on"], f["description"]) for f in listed] == [("storm", False, "storm closure")]
        bad = c.post("/v1/flags/storm", json={"on": "yes"}, headers=srv.admin())
        assert bad.status_code == 400
        assert (
            c.post("/v1/flags/strom", json={"on": True, "reason": "r"}, headers=srv.admin()).status_code
            == 404
        )
        on = c.post(
            "/v1/flags/storm", json={"on": True, "ttl_s": 1, "reason": "storm closure"}, headers=srv.admin()
        )
        assert on.status_code == 200 and on.json()["on"] is True
        assert srv.post_webhook(c, request("f1")).json() == {"error": "We are closed because of the storm."}
        audit = srv.wait_log(lambda r: r.get("type") == "flag")
        line = next(r for r in audit if r.get("type") == "flag")
        assert (line["flag"], line["on"], line["ttl_s"], line["reason"]) == (
            "storm",
            True,
            1,
            "storm closure",
        )
        assert metric(srv.metrics(c), "router_flag_on", flag="storm") == 1
        time.sleep(1.05)  # the TTL
        assert srv.post_webhook(c, request("f2")).json()["assistantId"] == "sales-assistant"
        assert c.get("/v1/flags", headers=srv.admin()).json()["flags"][0]["on"] is False


def test_a_locked_store_answers_the_fallback_within_the_deadline(tmp_path: Path) -> None:
    policy = POLICY.replace("STATE", "state: {sqlite: state.db, timeout_ms: 200}")
    with InProcess(tmp_path, policy) as srv, srv.client() as c:
        assert srv.post_webhook(c, request("l0")).json()["assistantId"] == "sales-assistant"
        lock = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the file
        try:
            start = time.perf_counter()
            reply = srv.post_webhook(c, request("l1", "+14155550777"))
            took = time.perf_counter() - start
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert reply.status_code == 200 and reply.json() == {"assistantId": "desk-assistant"}
        assert took < 1.0
        line = srv.wait_log(lambda r: r.get("call_id") == "l1")[-1]
        assert line["state_status"] == "error" and "state store" in line["fallback_reason"]
        # the store is usable again at once
        assert srv.post_webhook(c, request("l2", "+14155550778")).json()["assistantId"] == "sales-assistant"


def test_serve_with_workers_refuses_in_process_state(tmp_path: Path) -> None:
    result = run_serve(
        tmp_path, POLICY.replace("STATE", ""), "--workers", "2", env={"VAPI_SERVER_SECRET": "s"}
    )
    assert result.returncode == 3
    assert "with in-process state" in result.stderr and "state: {sqlite: state.db}" in result.stderr


def test_a_reload_under_workers_refuses_in_process_state(tmp_path: Path) -> None:
    """What serve refuses at start-up a hot reload must not let in: two workers would each
    keep their own flags and pools. The reload fails with a positioned problem and the
    workers keep answering with the policy they had."""
    plain = "version: 1\ntargets:\n  desk: {assistantId: desk-assistant}\ndefault: desk\n"
    with Subprocess(tmp_path, plain, args=("--workers", "2")) as srv, srv.client() as c:
        srv.policy_path.write_text(POLICY.replace("STATE", ""), encoding="utf-8")
        refused = c.post("/-/reload", headers=srv.admin())
        assert refused.status_code == 422, refused.text
        (problem,) = refused.json()["problems"]
        assert (problem["line"], problem["code"]) == (4, "state-workers")  # at `capacity:`
        assert "with in-process state" in problem["message"]
        ready = c.get("/readyz").json()
        assert ready["last_reload_ok"] is False and ready["problems"] == [problem]
        assert srv.post_webhook(c, request("w1")).json() == {"assistantId": "desk-assistant"}

        shared = POLICY.replace("STATE", "state: {sqlite: state.db}")
        srv.policy_path.write_text(shared, encoding="utf-8")
        assert c.post("/-/reload", headers=srv.admin()).status_code == 200
        assert srv.post_webhook(c, request("w2")).json()["assistantId"] == "sales-assistant"


FULL = """\
version: 1
settings: {fallback: busy}
capacity:
  sales: {max: 1}
targets:
  busy: {assistantId: busy-assistant}
  desk: {assistantId: desk-assistant}
routes:
  - id: sales
    when: {caller: "+1415*"}
    then: {assistantId: sales-assistant, pool: sales}
default: desk
"""


def test_a_pooled_target_chosen_on_a_full_pool_gives_the_fallback(tmp_path: Path) -> None:
    """A route that sends to a pooled target without asking `capacity:` first, and no
    overflow route: with the pool full the call gets the fallback, logged as such."""
    with InProcess(tmp_path, FULL) as srv, srv.client() as c:
        assert srv.post_webhook(c, request("p0")).json() == {"assistantId": "sales-assistant"}
        full = srv.post_webhook(c, request("p1", "+14155550102"))
        assert full.status_code == 200 and full.json() == {"assistantId": "busy-assistant"}
        line = srv.wait_log(lambda r: r.get("call_id") == "p1")[-1]
        assert (line["route"], line["target"], line["fallback_reason"], line["state_status"]) == (
            "sales",  # the route that matched, as for a template that fell back
            "busy",
            "pool sales is full",
            "ok",  # the store answered: the pool is full, not the store broken
        )
        assert srv.post_webhook(c, end("p0", "report")).json() == {}
        assert srv.post_webhook(c, request("p2", "+14155550103")).json() == {"assistantId": "sales-assistant"}
        samples = srv.metrics(c)
        assert metric(samples, "router_pool_reservations_total", pool="sales", result="refused") == 1
        assert metric(samples, "router_pool_reservations_total", pool="sales", result="granted") == 2


HOLD = """\
version: 1
settings: {fallback: desk}
state: {max_hold_s: 1}
capacity:
  sales: {max: 1}
targets:
  desk: {assistantId: desk-assistant}
routes:
  - id: sales
    when: {capacity: {sales: available}}
    then: {assistantId: sales-assistant, pool: sales}
default: desk
"""


def test_max_hold_expiry_frees_a_slot_whose_end_never_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call whose end never arrives is released by the server's periodic expiry once
    max_hold_s (1 s) has passed, counted as `max_hold`; its end arriving after that releases
    nothing (not even the slot another call now holds). The sweep runs every 0.1 s instead
    of 10 s here; it is the server's own task that runs it."""
    monkeypatch.setattr(flags, "KEEP_EVERY_S", 0.1)
    monkeypatch.setattr(flags, "EXPIRE_EVERY_S", 0.1)
    with InProcess(tmp_path, HOLD) as srv, srv.client() as c:
        assert srv.post_webhook(c, request("m0")).json() == {"assistantId": "sales-assistant"}
        assert srv.post_webhook(c, request("m1", "+14155550102")).json() == {"assistantId": "desk-assistant"}
        deadline = time.monotonic() + 5
        while metric(samples := srv.metrics(c), "router_pool_releases_total", reason="max_hold") < 1:
            assert time.monotonic() < deadline, "the expiry did not release the slot within 5 s"
            time.sleep(0.05)
        assert metric(samples, "router_pool_releases_total", pool="sales", reason="max_hold") == 1
        assert srv.post_webhook(c, request("m2", "+14155550103")).json() == {"assistantId": "sales-assistant"}
        # the lost call's end turns up late, twice: it releases nothing, and m2 keeps its slot
        assert srv.post_webhook(c, end("m0", "status")).json() == {}
        assert srv.post_webhook(c, end("m0", "report")).json() == {}
        assert srv.post_webhook(c, request("m3", "+14155550104")).json() == {"assistantId": "desk-assistant"}
        time.sleep(0.3)  # three more sweeps: none may count m0 again
        samples = srv.metrics(c)
        assert metric(samples, "router_pool_releases_total", pool="sales", reason="max_hold") == 1
        assert metric(samples, "router_pool_releases_total", pool="sales", reason="status-update") == 0
        assert metric(samples, "router_pool_releases_total", pool="sales", reason="end-of-call-report") == 0
        assert metric(samples, "router_pool_slots_in_use", pool="sales") == 1
