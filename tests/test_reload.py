"""Hot reload against the real running router (DESIGN §5, issue 4).

uvicorn on 127.0.0.1 (in a thread, or `vapi-router serve` as a subprocess). Edits arrive by
the file watcher (a file, a directory set, the Kubernetes ConfigMap `..data` swap), SIGHUP
and POST /-/reload; in-flight requests finish on their snapshot; reloads never overlap; an
invalid edit never goes live; every worker reloads; no request fails or stalls meanwhile.
"""

from __future__ import annotations

import functools
import http.client
import itertools
import logging
import os
import re
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from crmserver import CrmServer
from reloadutil import (
    BAY_CALLER,
    BROKEN,
    OTHER_CALLER,
    PROBLEM,
    Load,
    Watched,
    assistant_id,
    body,
    broken,
    call,
    configmap_update,
    expected,
    until,
    versioned,
)
from serverutil import SECRET, InProcess, Subprocess, metric, parse_metrics

from router.server.reloadchild import check_in_child
from router.server.watcher import DEBOUNCE_MS

READY_KEYS = {"version", "loaded_at", "last_reload_ok", "errors", "problems"}


def ready(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    assert set(data) == READY_KEYS
    return data


# ---------------------------------------------------------------- 1. every way in


def test_a_watched_file_edit_goes_live(tmp_path: Path) -> None:
    policy = tmp_path / "policies" / "main.yaml"
    policy.parent.mkdir()
    policy.write_text(versioned(1), encoding="utf-8")
    with Watched(tmp_path / "srv", policy) as srv, srv.client() as client:
        assert srv.reply(client) == expected(1)
        srv.edit(client, lambda n: policy.write_text(versioned(n), encoding="utf-8"), 2)
        policy.write_text(versioned(3), encoding="utf-8")
        until(lambda: srv.reply(client) == expected(3), 5)
        assert srv.reply(client, OTHER_CALLER) == expected(3, OTHER_CALLER)
        assert ready(client)["last_reload_ok"] is True


def test_a_watched_directory_set_goes_live(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    head, _, rest = versioned(1).partition("routes:\n")
    routes, _, default = rest.partition("default:")
    (policies / "10-base.yaml").write_text(head + "default:" + default, encoding="utf-8")
    (policies / "20-routes.yaml").write_text("version: 1\nroutes:\n" + routes, encoding="utf-8")
    nyc = 'version: 1\nroutes:\n  - {id: nyc, when: {caller: "+1212*"}, then: {assistantId: %s}}\n'

    def write_base(n: int) -> None:
        (policies / "10-base.yaml").write_text(versioned(n).partition("routes:\n")[0] + "default:" + default)

    with Watched(tmp_path / "srv", policies) as srv, srv.client() as client:
        srv.edit(client, write_base, 2)
        assert srv.reply(client, OTHER_CALLER) == expected(1, OTHER_CALLER)  # default kept from 10-base
        (policies / "30-nyc.yaml").write_text(nyc % assistant_id(77), encoding="utf-8")  # a new file
        until(lambda: srv.reply(client, OTHER_CALLER) == {"assistantId": assistant_id(77)}, 5)
        (policies / "30-nyc.yaml").unlink()  # a file removed
        until(lambda: srv.reply(client, OTHER_CALLER) == expected(1, OTHER_CALLER), 5)
        assert ready(client)["last_reload_ok"] is True


def test_a_kubernetes_configmap_update_goes_live(tmp_path: Path) -> None:
    """The kubelet's atomic update: new ..<timestamp> dir, ..data_tmp symlink renamed over ..data."""
    mount = tmp_path / "etc-router"
    configmap_update(mount, {"main.yaml": versioned(1)})
    assert os.readlink(mount / "main.yaml") == "..data/main.yaml"
    with Watched(tmp_path / "srv", mount) as srv, srv.client() as client:
        assert srv.reply(client) == expected(1)
        srv.edit(client, lambda n: configmap_update(mount, {"main.yaml": versioned(n)}), 2)
        first = os.readlink(mount / "..data")
        configmap_update(mount, {"main.yaml": versioned(3)})
        assert os.readlink(mount / "..data") != first and not (mount / first).exists()
        until(lambda: srv.reply(client) == expected(3), 5)
        data = ready(client)
        assert data["last_reload_ok"] is True
        assert srv.server.store.live is not None
        assert srv.server.store.live.policy.files == (str(mount / "main.yaml"),)


def test_sighup_reloads_the_subprocess_server(tmp_path: Path) -> None:
    with Subprocess(tmp_path, versioned(1)) as srv, srv.client() as client:  # --no-watch
        assert srv.proc is not None
        srv.policy_path.write_text(versioned(2), encoding="utf-8")
        os.kill(srv.proc.pid, signal.SIGHUP)
        until(lambda: srv.post_webhook(client, call()).json() == expected(2), 10)
        good = ready(client)

        srv.policy_path.write_text(broken("unknown-target", 3), encoding="utf-8")
        os.kill(srv.proc.pid, signal.SIGHUP)
        failed = until(lambda: (r := ready(client))["last_reload_ok"] is False and r, 10)
        assert failed["version"] == good["version"] and failed["errors"][0].startswith(
            f"{srv.policy_path}:10:11: error: unknown target"
        )
        assert srv.post_webhook(client, call()).json() == expected(2)
        assert srv.proc.poll() is None
        assert "policy reload failed; keeping " + good["version"] in srv.stderr()


def test_post_reload_answers_200_with_the_version_or_422_with_the_problems(tmp_path: Path) -> None:
    with InProcess(tmp_path, versioned(1)) as srv, srv.client() as client:
        unchanged = client.post("/-/reload", headers=srv.admin())
        assert unchanged.status_code == 200
        assert unchanged.json() == {"version": ready(client)["version"], "changed": False}

        srv.policy_path.write_text(versioned(2), encoding="utf-8")
        changed = client.post("/-/reload", headers=srv.admin())
        assert changed.status_code == 200 and changed.json()["changed"] is True
        assert changed.json()["version"] == ready(client)["version"]
        assert srv.post_webhook(client, call()).json() == expected(2)

        for kind, (_, (line, col, code)) in sorted(BROKEN.items()):
            srv.policy_path.write_text(broken(kind, 3), encoding="utf-8")
            refused = client.post("/-/reload", headers=srv.admin())
            assert refused.status_code == 422, kind
            data = refused.json()
            assert data["version"] == changed.json()["version"]
            assert [PROBLEM.fullmatch(e) is not None for e in data["errors"]] == [True], data
            assert data["errors"][0].startswith(f"{srv.policy_path}:{line}:{col}: error: "), data
            assert data["errors"][0].endswith(f"[{code}]")
            # the same problem as a positioned value, through the forked check and back
            (problem,) = data["problems"]
            assert (problem["file"], problem["line"], problem["column"], problem["code"]) == (
                str(srv.policy_path),
                line,
                col,
                code,
            ), data
            assert problem["severity"] == "error" and problem["message"] in data["errors"][0]
            assert ready(client)["problems"] == data["problems"]
            assert srv.post_webhook(client, call()).json() == expected(2)

        assert client.post("/-/reload").status_code == 401


# ---------------------------------------------------------------- 2. snapshots, serial, debounced


def crm_policy(n: int, url: str) -> str:
    return f"""\
version: 1
settings: {{region: US, deadline_ms: 6000}}
crm:
  http: {{url: "{url}", tags: contact.tags}}
  timeout_ms: 5000
routes:
  - id: vip
    when: {{tags: {{any: [vip]}}}}
    then: {{assistantId: {assistant_id(n)}}}
default: {{assistantId: {assistant_id(100_000 + n)}}}
"""


def test_a_request_in_flight_finishes_on_the_policy_it_started_with(tmp_path: Path) -> None:
    with CrmServer() as crm:
        crm.contacts[BAY_CALLER] = {"tags": ["vip"]}
        crm.contacts[OTHER_CALLER] = {"tags": ["vip"]}
        crm.modes[BAY_CALLER] = "slow"
        crm.slow_ms = 30_000  # held until released below
        with InProcess(tmp_path, crm_policy(1, crm.url_template)) as srv, srv.client() as client:
            old = ready(client)["version"]
            with ThreadPoolExecutor(1) as pool, srv.client() as held_client:
                message = call(BAY_CALLER, call_id="held-call")
                held = pool.submit(srv.post_webhook, held_client, message)
                until(lambda: any(s.phone == BAY_CALLER for s in crm.seen), 5, what="the CRM lookup")

                srv.policy_path.write_text(crm_policy(2, crm.url_template), encoding="utf-8")
                swapped = client.post("/-/reload", headers=srv.admin())
                assert swapped.status_code == 200 and swapped.json()["changed"] is True
                new = swapped.json()["version"]
                # a request that starts now gets the new policy at once...
                fresh = srv.post_webhook(client, call(OTHER_CALLER, call_id="fresh-call"))
                assert fresh.json() == {"assistantId": assistant_id(2)}
                assert not held.done()

                crm._call(crm._release_all)  # the CRM answers the held lookup now
                response = held.result(10)
            # ...and the one in flight finishes on the old one
            assert response.status_code == 200
            assert response.json() == {"assistantId": assistant_id(1)}
            records = srv.wait_log(lambda r: r.get("call_id") == "held-call")
            by_call = {r["call_id"]: r for r in records}
            assert by_call["held-call"]["policy"] == old and by_call["held-call"]["route"] == "vip"
            assert by_call["fresh-call"]["policy"] == new


def test_concurrent_post_reloads_never_overlap(tmp_path: Path) -> None:
    spans: list[tuple[float, float]] = []

    def timed(texts: list[tuple[str, str]]) -> bytes | None:  # the real check, timed
        started = time.monotonic()
        try:
            return check_in_child(texts)
        finally:
            spans.append((started, time.monotonic()))

    with InProcess(tmp_path, versioned(1)) as srv:
        store = srv.server.store
        store.checker = timed

        def burst(n: int) -> list[httpx.Response]:
            gate = threading.Barrier(n)

            def post(_: int) -> httpx.Response:
                with srv.client() as client:
                    gate.wait()
                    return client.post("/-/reload", headers=srv.admin())

            with ThreadPoolExecutor(n) as pool:
                return list(pool.map(post, range(n)))

        before = store.reloads
        srv.policy_path.write_text(broken("unknown-target", 2), encoding="utf-8")
        refused = burst(8)
        assert [r.status_code for r in refused] == [422] * 8
        assert store.reloads - before == 8 and len(spans) == 8  # each did the whole work...
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # ...one at a time

        spans.clear()
        srv.policy_path.write_text(versioned(3), encoding="utf-8")
        done = burst(8)
        assert [r.status_code for r in done] == [200] * 8
        assert sorted(r.json()["changed"] for r in done) == [False] * 7 + [True]
        assert len({r.json()["version"] for r in done}) == 1 and len(spans) == 1


def test_a_burst_of_20_writes_in_100_ms_makes_one_reload(tmp_path: Path) -> None:
    policy = tmp_path / "policies" / "main.yaml"
    policy.parent.mkdir()
    policy.write_text(versioned(1), encoding="utf-8")
    with Watched(tmp_path / "srv", policy) as srv, srv.client() as client:
        srv.edit(client, lambda n: policy.write_text(versioned(n), encoding="utf-8"), 2)
        before = srv.metrics(client)
        reloads = srv.server.store.reloads
        written = []
        for i in range(20):  # 20 writes, 5 ms apart: ~100 ms
            policy.write_text(versioned(10 + i), encoding="utf-8")
            written.append(time.monotonic())
            time.sleep(0.004)
        # the premise: a busy machine may stretch the burst, but not into separate edits
        assert max(b - a for a, b in itertools.pairwise(written)) < DEBOUNCE_MS / 1000 * 0.75
        until(lambda: srv.reply(client) == expected(29), 5)
        time.sleep(0.6)  # a second reload, if any, would come within the debounce window
        after = srv.metrics(client)
        assert srv.server.store.reloads - reloads == 1
        total = "router_policy_reloads_total"
        assert metric(after, total, result="success") - metric(before, total, result="success") == 1
        assert metric(after, total, result="failure") == metric(before, total, result="failure")


# ---------------------------------------------------------------- 3. invalid edits


def test_an_invalid_edit_never_goes_live_and_the_next_good_one_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = tmp_path / "policies" / "main.yaml"
    policy.parent.mkdir()
    policy.write_text(versioned(1), encoding="utf-8")
    caplog.set_level(logging.INFO, logger="router.server.store")
    with Watched(tmp_path / "srv", policy) as srv, srv.client() as client:
        srv.edit(client, lambda n: policy.write_text(versioned(n), encoding="utf-8"), 2)
        good = ready(client)
        before = srv.metrics(client)
        success_at = metric(before, "router_policy_last_reload_success_timestamp_seconds")
        assert success_at > 0 and metric(before, "router_policy_info", version=good["version"]) == 1

        for attempt, kind in enumerate(sorted(BROKEN)):
            line, col, code = BROKEN[kind][1]
            policy.write_text(broken(kind, 50 + attempt), encoding="utf-8")
            if attempt == 0:
                failed = until(lambda: (r := ready(client))["last_reload_ok"] is False and r, 5)
            else:  # the failure before looks the same: wait for this one's problem
                failed = until(
                    lambda line=line: (
                        (r := ready(client))["errors"][0].startswith(  # type: ignore[misc]
                            f"{policy}:{line}:"
                        )
                        and r
                    ),
                    5,
                )
            # the old policy keeps answering; /readyz shows the problem as FILE:LINE:COL
            assert srv.reply(client) == expected(2)
            assert failed["version"] == good["version"] and failed["loaded_at"] == good["loaded_at"]
            assert len(failed["errors"]) == 1 and PROBLEM.fullmatch(failed["errors"][0])
            assert failed["errors"][0].startswith(f"{policy}:{line}:{col}: error: ")
            assert failed["errors"][0].endswith(f"[{code}]")
            samples = srv.metrics(client)
            assert metric(samples, "router_policy_last_reload_successful") == 0
            assert metric(samples, "router_policy_reloads_total", result="failure") == attempt + 1
            assert metric(samples, "router_policy_last_reload_success_timestamp_seconds") == success_at
            assert metric(samples, "router_policy_info", version=good["version"]) == 1
            assert metric(samples, "router_policy_info") == 1  # no other version is live
        assert f"policy reload failed; keeping {good['version']}" in caplog.text
        assert f"{policy}:10:11: error: unknown target" in caplog.text

        policy.write_text(versioned(3), encoding="utf-8")
        until(lambda: srv.reply(client) == expected(3), 5)
        recovered = ready(client)
        assert recovered["last_reload_ok"] is True and recovered["errors"] == []
        assert recovered["version"] != good["version"]
        samples = srv.metrics(client)
        assert metric(samples, "router_policy_last_reload_successful") == 1
        assert metric(samples, "router_policy_last_reload_success_timestamp_seconds") > success_at
        assert metric(samples, "router_policy_info", version=recovered["version"]) == 1
        assert metric(samples, "router_policy_info", version=good["version"]) == 0
        assert f"policy {recovered['version']} is live" in caplog.text


# ---------------------------------------------------------------- 4. every worker


def fresh_replies(srv: Subprocess, n: int) -> list[Any]:
    """`n` replies, each on a new connection (so the kernel spreads them over the workers)."""
    out = []
    data = body()
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            conn.request("POST", srv.webhook_path, body=data, headers=srv.auth(data))
            response = conn.getresponse()
            assert response.status == 200, response.read()
            out.append(orjson.loads(response.read()))
        finally:
            conn.close()
    return out


def worker_metrics(srv: Subprocess, client: httpx.Client) -> dict[str, float]:
    """/metrics of a --workers server. While a worker starts, its metrics file may still be
    empty and prometheus-client's reader then fails (a 500 from router.server.metrics): try again."""
    for _ in range(20):
        response = client.get("/metrics")
        if response.status_code == 200:
            return parse_metrics(response.text)
        time.sleep(0.05)
    raise AssertionError("/metrics kept failing")


def worker_versions(srv: Subprocess, client: httpx.Client) -> dict[str, str]:
    """pid -> live version, from every worker's router_policy_info (multiprocess 'liveall')."""
    out = {}
    for key, value in worker_metrics(srv, client).items():
        if key.startswith("router_policy_info{") and value == 1:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', key))
            out[labels["pid"]] = labels["version"]
    return out


def test_every_worker_reloads(tmp_path: Path) -> None:
    srv = Subprocess(tmp_path, versioned(1), args=("--workers", "2"))
    srv.argv.remove("--no-watch")
    with srv, srv.client() as client:
        until(lambda: len(worker_versions(srv, client)) == 2, 20, what="two workers serving")
        assert fresh_replies(srv, 10) == [expected(1)] * 10
        srv.policy_path.write_text(versioned(2), encoding="utf-8")
        until(lambda: fresh_replies(srv, 40) == [expected(2)] * 40, 15, what="all workers on version 2")
        versions = worker_versions(srv, client)
        assert len(versions) == 2 and len(set(versions.values())) == 1

        # an invalid edit: no worker takes it, every worker says so
        srv.policy_path.write_text(broken("bad-number", 3), encoding="utf-8")
        until(
            lambda: metric(worker_metrics(srv, client), "router_policy_reloads_total", result="failure") == 2,
            15,
        )
        assert fresh_replies(srv, 20) == [expected(2)] * 20
        assert worker_versions(srv, client) == versions
        assert metric(worker_metrics(srv, client), "router_policy_last_reload_successful") == 0


def test_sighup_to_the_master_reloads_every_worker_in_place(tmp_path: Path) -> None:
    """uvicorn's own SIGHUP would replace the workers, and a fresh worker has no good policy to
    keep when the edit is invalid; the router's supervisor has each worker reload in place."""
    with Subprocess(tmp_path, versioned(1), args=("--workers", "2")) as srv, srv.client() as client:
        assert srv.proc is not None
        until(lambda: len(worker_versions(srv, client)) == 2, 20, what="two workers serving")
        first = worker_versions(srv, client)
        srv.policy_path.write_text(versioned(2), encoding="utf-8")
        os.kill(srv.proc.pid, signal.SIGHUP)

        def all_moved_on() -> bool:
            now = worker_versions(srv, client)
            return now.keys() == first.keys() and len(set(now.values())) == 1 and now != first

        until(all_moved_on, 15, what="every worker on version 2")
        assert fresh_replies(srv, 40) == [expected(2)] * 40

        srv.policy_path.write_text(broken("unknown-target", 3), encoding="utf-8")
        os.kill(srv.proc.pid, signal.SIGHUP)
        until(
            lambda: metric(worker_metrics(srv, client), "router_policy_reloads_total", result="failure") == 2,
            15,
        )
        assert fresh_replies(srv, 40) == [expected(2)] * 40  # never "no policy is loaded"
        assert worker_versions(srv, client).keys() == first.keys()  # the same processes, reloaded in place
        for _ in range(10):
            with srv.client() as fresh:
                data = ready(fresh)
            assert data["last_reload_ok"] is False and data["errors"][0].startswith(
                f"{srv.policy_path}:10:11:"
            )


def test_post_reload_on_one_worker_reloads_every_worker(tmp_path: Path) -> None:
    """Without the watcher, POST /-/reload lands on one worker; it has every worker reload."""
    with Subprocess(tmp_path, versioned(1), args=("--workers", "2")) as srv, srv.client() as client:
        assert "--no-watch" in srv.argv
        until(lambda: len(worker_versions(srv, client)) == 2, 20, what="two workers serving")
        srv.policy_path.write_text(versioned(2), encoding="utf-8")
        assert client.post("/-/reload", headers=srv.admin()).status_code == 200
        until(lambda: fresh_replies(srv, 40) == [expected(2)] * 40, 15, what="all workers on version 2")
        # a worker sets router_policy_info just after it swaps policies: on a busy machine a
        # scrape can fall between the two
        until(lambda: len(set(worker_versions(srv, client).values())) == 1, 5, what="one version in /metrics")


# ---------------------------------------------------------------- 5 and 6. under load


def test_alternating_valid_and_invalid_edits_under_load_fail_no_request(tmp_path: Path) -> None:
    srv = Subprocess(tmp_path, versioned(0))
    srv.argv.remove("--no-watch")
    valid_replies = {orjson.dumps(expected(0))}
    with srv, srv.client() as client:
        load = Load(srv.port, "/webhook/vapi", [body()], headers={"x-vapi-secret": SECRET}, rate=400)
        with load:
            for k in range(1, 21):
                before = ready(client)
                if k % 2:
                    srv.policy_path.write_text(versioned(k), encoding="utf-8")
                    valid_replies.add(orjson.dumps(expected(k)))
                    until(lambda k=k: srv.post_webhook(client, call()).json() == expected(k), 10)  # type: ignore[misc]
                else:
                    kind = sorted(BROKEN)[k // 2 % len(BROKEN)]
                    srv.policy_path.write_text(broken(kind, k), encoding="utf-8")
                    until(lambda: ready(client)["last_reload_ok"] is False, 10)
                    assert ready(client)["version"] == before["version"]
        samples = load.samples
    assert len(samples) > 200, len(samples)
    assert load.failures == [] and load.errors == []
    replies = {s.body for s in samples}
    assert replies <= valid_replies, replies - valid_replies
    assert len(replies) > 5  # the load saw the versions change


@functools.cache
def ten_thousand(k: int) -> tuple[str, str, list[bytes]]:
    """A 10,000-route policy set (version k), its CRM file and webhook bodies it answers."""
    from bench.gen import generate_calls, message_of
    from bench.reload import bench_policy

    gen = _generated()
    calls = generate_calls(gen, 500, seed=7)
    text, csv = bench_policy(gen, calls, k)
    return text, csv, [orjson.dumps(message_of(c)) for c in calls]


@functools.cache
def _generated() -> Any:
    from bench.gen import generate_policy

    return generate_policy(10_000)


def test_serving_never_stalls_while_a_10k_route_reload_runs(tmp_path: Path) -> None:
    """Parsing 10,000 routes in the server's own thread would freeze every request for seconds;
    requests answered while two such reloads run stay close to the latency without reloads
    (same run, same client: the bound leaves room for a busy shared machine; the real target,
    p99 ≤ 50 ms, is for `make bench`)."""
    text, csv, bodies = ten_thousand(0)
    srv = Subprocess(tmp_path, text, files={"crm.csv": csv})
    with srv, srv.client(timeout=30) as client:
        load = Load(srv.port, "/webhook/vapi", bodies, headers={"x-vapi-secret": SECRET}, rate=500)
        during: list[float] = []
        reloads: list[float] = []
        with load:
            time.sleep(0.3)
            b0 = time.perf_counter()
            time.sleep(1.0)
            baseline = sorted(s.end - s.start for s in load.between(b0, time.perf_counter()))
            for k in (1, 2):
                srv.policy_path.write_text(ten_thousand(k)[0], encoding="utf-8")
                t0 = time.perf_counter()
                response = client.post("/-/reload", headers=srv.admin())
                t1 = time.perf_counter()
                assert response.status_code == 200 and response.json()["changed"], response.text
                reloads.append(t1 - t0)
                during += [s.end - s.start for s in load.between(t0, t1)]
                time.sleep(0.3)
        assert load.failures == [] and load.errors == []
        assert srv.post_webhook(client, bodies[0]).status_code == 200
    during.sort()

    def p99(values: list[float]) -> float:
        return values[int(len(values) * 0.99)]

    print(
        f"\n10k reloads took {', '.join(f'{r:.2f}' for r in reloads)} s; requests answered meanwhile: "
        f"{len(during)}, p50 {statistics.median(during) * 1000:.1f} ms, p99 {p99(during) * 1000:.1f} ms, "
        f"max {during[-1] * 1000:.1f} ms (without reloads: p99 {p99(baseline) * 1000:.1f} ms, "
        f"max {baseline[-1] * 1000:.1f} ms)"
    )
    assert len(during) > 100
    assert p99(during) < 0.25 + p99(baseline), (p99(during), p99(baseline))
