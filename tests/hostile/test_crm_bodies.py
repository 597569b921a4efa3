"""Item 2 of issue 15: a CRM answer that never ends, or inflates to 200 MB, must cost neither
the call's deadline, nor the calls beside it, nor memory. The CRM is real (HTTP on loopback)
and the router is `vapi-router serve`; its peak RSS is read from /proc."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hostileutil import HostileCrm, LimitedServe, call_message, gzip_bomb, policy, timed_call
from serverutil import dumps

DEADLINE_MS = 1000
SLACK_S = 0.3


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb(200)


def crm_call(srv: LimitedServe, i: int) -> tuple[int, float]:
    body = dumps(call_message(caller=f"+1212555{i:04d}", call_id=f"crm-{i}"))
    return timed_call(srv.base_url, body, srv.auth(body))


def test_an_endless_crm_answer_keeps_the_deadline_and_memory(tmp_path: Path) -> None:
    with HostileCrm() as crm:
        crm.mode = "endless"
        text = policy(crm.url_template, deadline_ms=DEADLINE_MS, timeout_ms=5000)
        with LimitedServe(tmp_path, text, nofile=1024) as srv:
            rss_before = srv.peak_rss_mb()
            answered = [crm_call(srv, i) for i in range(4)]
            assert [s for s, _ in answered] == [200] * 4
            worst = max(t for _, t in answered)
            assert worst < DEADLINE_MS / 1000 + SLACK_S, worst
            records = srv.wait_log(lambda r: r.get("call_id") == "crm-3")
            assert {r["crm_status"] for r in records if r.get("call_id", "").startswith("crm-")} == {"error"}
            grew = srv.peak_rss_mb() - rss_before
            assert grew < 40, grew
            print(f"\nendless CRM body: worst {worst * 1000:.0f} ms, peak RSS +{grew:.0f} MB")


def test_a_gzip_bomb_stalls_no_call(tmp_path: Path, bomb: bytes) -> None:
    with HostileCrm(bomb) as crm:
        crm.mode = "bomb"
        text = policy(crm.url_template, deadline_ms=DEADLINE_MS, timeout_ms=5000)
        with LimitedServe(tmp_path, text, nofile=1024) as srv:
            rss_before = srv.peak_rss_mb()
            beside: list[tuple[int, float]] = []
            done = threading.Event()

            def side_calls() -> None:  # calls that need no CRM, answered while the bombs land
                i = 0
                while not done.is_set():
                    body = dumps(call_message(call_id=f"side-{i}"))
                    beside.append(timed_call(srv.base_url, body, srv.auth(body)))
                    i += 1
                    time.sleep(0.01)

            thread = threading.Thread(target=side_calls)
            thread.start()
            try:
                time.sleep(0.2)
                bombed = [crm_call(srv, i) for i in range(4)]
                time.sleep(0.2)
            finally:
                done.set()
                thread.join(10)
            assert [s for s, _ in bombed] == [200] * 4
            assert {s for s, _ in beside} == {200}
            worst_bomb = max(t for _, t in bombed)
            worst_side = max(t for _, t in beside)
            assert worst_bomb < DEADLINE_MS / 1000 + SLACK_S, worst_bomb
            assert worst_side < 0.25, worst_side
            grew = srv.peak_rss_mb() - rss_before
            assert grew < 40, grew
            records = srv.wait_log(lambda r: r.get("call_id") == "crm-3")
            assert {r["crm_status"] for r in records if r.get("call_id", "").startswith("crm-")} == {"error"}
            print(
                f"\ngzip bomb (200 MB): worst {worst_bomb * 1000:.0f} ms, {len(beside)} calls beside it, "
                f"worst {worst_side * 1000:.0f} ms, peak RSS +{grew:.0f} MB"
            )
