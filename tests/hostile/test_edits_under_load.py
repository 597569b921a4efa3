"""50 edits of the served policy file in under 5 s, some invalid, while calls arrive at 400 a
second on 8 keep-alive connections: every call gets its 200 with a reply of a valid version
(Vapi's schema passes each distinct one), no invalid edit ever answers a call, no call waits
long, and the last edit is live once the writes stop.

`vapi-router serve` watches the file, so the edits land as they would from people and
tools: half are atomic saves (a temporary file renamed over the policy, as editors and
ConfigMap updaters do), half are rewritten in place (truncated, then written), which a
reload can catch half-way (an empty file: a failed reload, put right by the next poll).
tests/test_reload.py waits for each edit to take; here they come faster than reloads do (a
poll every 250 ms, a 200 ms debounce, at most 2 s of delay in a burst): 10 bursts of 5 edits
10 ms apart, 0.3 s between bursts: a reload reads whatever the file holds then, mid-burst or
in a gap. The last two bursts end on a valid edit and an invalid one, and each is waited for
until the watcher has acted on it, so every run has both outcomes under load."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import httpx
import orjson
from reloadutil import BAY_CALLER, BROKEN, OTHER_CALLER, Load, body, broken, expected, until, versioned
from serverutil import SECRET, Subprocess, metric, reply_problems

EDITS = 50
BURST = 5
APART_S = 0.01
QUIET_S = 0.3
RATE = 400
WORST_S = 1.5


def invalid(k: int) -> bool:
    """Every seventh edit, and the last of every other burst (never the very last edit)."""
    burst, place = divmod(k - 1, BURST)
    return k % 7 == 0 or (place == BURST - 1 and burst % 2 == 0 and k != EDITS)


def edit(path: Path, k: int) -> None:
    text = broken(sorted(BROKEN)[k % len(BROKEN)], k) if invalid(k) else versioned(k)
    if k % 2:
        path.write_text(text, encoding="utf-8")
    else:
        scratch = path.with_name(".policy.yaml.tmp")
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, path)


def settle(srv: Subprocess, client: httpx.Client, k: int) -> None:
    """Until edit k (which ends a burst) has been reloaded: live if valid, refused if not; so
    that each run has a valid edit gone live and an invalid one refused mid-way, whatever
    the timing of the reloads during the bursts."""
    if invalid(k):
        until(lambda: client.get("/readyz").json()["last_reload_ok"] is False, 3, what=f"edit {k} refused")
    else:
        until(lambda: srv.post_webhook(client, body()).json() == expected(k), 3, what=f"edit {k} live")


def test_fifty_edits_in_five_seconds_under_load(tmp_path: Path) -> None:
    srv = Subprocess(tmp_path, versioned(0))
    srv.argv.remove("--no-watch")
    valid = [0] + [k for k in range(1, EDITS + 1) if not invalid(k)]
    allowed = {orjson.dumps(expected(k, c)) for k in valid for c in (BAY_CALLER, OTHER_CALLER)}
    with srv, srv.client() as client:
        load = Load(
            srv.port,
            srv.webhook_path,
            [body(BAY_CALLER), body(OTHER_CALLER)],
            headers={"x-vapi-secret": SECRET},
            rate=RATE,
        )
        with load:
            time.sleep(0.3)
            start = time.perf_counter()
            waited = 0.0
            for k in range(1, EDITS + 1):
                edit(srv.policy_path, k)
                if k in (EDITS - 2 * BURST, EDITS - BURST):  # the watcher's verdict on these two
                    t0 = time.perf_counter()
                    settle(srv, client, k)
                    waited += time.perf_counter() - t0
                time.sleep(QUIET_S if k % BURST == 0 and k != EDITS else APART_S)
            took = time.perf_counter() - start - waited  # the edits' own pace
            until(
                lambda: srv.post_webhook(client, body()).json() == expected(EDITS),
                10,
                what="the last edit live",
            )
            time.sleep(0.2)
        samples = load.samples
        ready = client.get("/readyz").json()
        reloads = srv.metrics(client)
    assert took <= 5.0, took
    assert load.errors == [] and load.failures == [], (load.errors[:3], load.failures[:3])
    replies = {s.body for s in samples}
    assert replies <= allowed, sorted(replies - allowed)[:3]
    for reply in replies:
        assert reply_problems("assistant-request", orjson.loads(reply)) == []
    assert ready["last_reload_ok"] is True
    ok = metric(reloads, "router_policy_reloads_total", result="success")
    failed = metric(reloads, "router_policy_reloads_total", result="failure")
    assert ok >= 2 and failed >= 1, (ok, failed)  # both kinds, at least those `settle` waited for
    versions_seen = {orjson.loads(r).get("assistantId") for r in replies}
    assert len(versions_seen) > 2  # the calls saw the policy change under them
    latencies = sorted(s.end - s.start for s in samples)
    worst = latencies[-1]
    assert worst < WORST_S, worst
    print(
        f"\n{EDITS} edits ({EDITS + 1 - len(valid)} invalid) in {took:.2f} s (+{waited:.2f} s waiting for "
        f"two verdicts) under {RATE} calls/s: "
        f"{len(samples)} calls, all 200, {len(versions_seen)} versions answered; reloads {ok:.0f} ok, "
        f"{failed:.0f} failed; p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, worst {worst * 1000:.0f} ms"
    )
