"""router.server.metrics: the Prometheus text a Metrics object renders, whole, against golden
files; the names and labels README § Metrics and DESIGN §4 promise; counting per call and
publishing on flush (once, into the buckets prometheus-client itself would use); the policy
version gauge; and the sum over worker processes in multiprocess mode.

tests/cases/metrics/<situation>.txt holds the exact exposition; regenerate after a deliberate
change with `UPDATE_GOLDEN=1 pytest tests/test_metrics.py`, then read the diff. What the server
counts for each kind of request is in tests/test_app.py; /metrics on the wire in
tests/test_http_wire.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from serverutil import metric, parse_metrics

from router.server.metrics import _FAST, _SLOW, Metrics

GOLDEN = Path(__file__).resolve().parent / "cases" / "metrics"
UPDATE = bool(os.environ.get("UPDATE_GOLDEN"))
ROOT = Path(__file__).resolve().parent.parent


def _check_golden(name: str, text: str) -> None:
    golden = GOLDEN / f"{name}.txt"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def _traffic(m: Metrics) -> None:
    """A fixed morning: a reload, four calls (one at a bucket's exact bound), a refusal, a
    shadow difference, a pool reservation, a flag."""
    m.reloads.labels("success").inc()
    m.last_reload_ok.set(1)
    m.last_success.set(1795428000)
    m.set_version("0123456789ab")
    m.answered("vip", "matched", 0.000_005, 0.001, "ok", 0.0025)  # on the bounds: le is inclusive
    m.answered("vip", "matched", 0.000_03, 0.0012, None, 0.0)
    m.answered("default", "default", 0.000_02, 0.0008, "not_found", 0.004)
    m.answered("default", "fallback", 0.000_01, 0.9, "timeout", 0.75)
    m.auth_failures.labels("bearer").inc()
    m.shadow_diffs.labels("vip", "default").inc()
    m.state.reserved("sales", True)
    m.state.reserved("sales", False)
    m.state.released("sales", "status-update")
    m.state.in_use.labels("sales").set(1)
    m.state.max.labels("sales").set(4)
    m.state.flag_on.labels("storm").set(1)
    m.state.looked_up("reserve", True)


def test_a_fresh_server_exposes_its_unlabelled_series_at_zero() -> None:
    _check_golden("fresh", Metrics().render().decode())


def test_the_exposition_after_some_traffic() -> None:
    m = Metrics()
    _traffic(m)
    _check_golden("traffic", m.render().decode())


# --- names and labels ------------------------------------------------------------------------------

# README § Metrics (DESIGN §4 lists the first ones) and § Capacity: family -> label names.
PROMISED = {
    "router_decisions_total": ("route", "outcome"),
    "router_decision_seconds": (),
    "router_request_seconds": (),
    "router_crm_lookup_seconds": (),
    "router_crm_lookups_total": ("status",),
    "router_auth_failures_total": ("scheme",),
    "router_policy_info": ("version",),
    "router_policy_reloads_total": ("result",),
    "router_policy_last_reload_successful": (),
    "router_policy_last_reload_success_timestamp_seconds": (),
    "router_shadow_differences_total": ("live_route", "shadow_route"),
    "router_pool_slots_in_use": ("pool",),
    "router_pool_slots_max": ("pool",),
    "router_pool_reservations_total": ("pool", "result"),
    "router_pool_releases_total": ("pool", "reason"),
    "router_flag_on": ("flag",),
    "router_state_lookups_total": ("operation", "status"),
}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def _families(text: str) -> dict[str, str]:
    """# TYPE lines: family name (as exposed) -> type."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def _labels_by_family(text: str) -> dict[str, set[tuple[str, ...]]]:
    out: dict[str, set[tuple[str, ...]]] = {}
    for sample in parse_metrics(text):
        name, _, rest = sample.partition("{")
        labels = tuple(sorted(k for k in re.findall(r'(\w+)="', rest) if k != "le"))
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in PROMISED:
                name = name.removesuffix(suffix)
        out.setdefault(name, set()).add(labels)
    return out


def test_the_metrics_are_the_promised_ones_with_their_labels() -> None:
    m = Metrics()
    _traffic(m)
    text = m.render().decode()
    assert set(_families(text)) == set(PROMISED)
    assert {k: v for k, v in _families(text).items() if v == "histogram"} == dict.fromkeys(
        ["router_decision_seconds", "router_request_seconds", "router_crm_lookup_seconds"], "histogram"
    )
    assert _labels_by_family(text) == {name: {tuple(sorted(labels))} for name, labels in PROMISED.items()}


# --- counting and flushing -----------------------------------------------------------------------------


def test_calls_reach_prometheus_client_on_flush_once() -> None:
    m = Metrics()
    m.answered("vip", "matched", 0.000_01, 0.001, "ok", 0.002)
    m.answered("vip", "matched", 0.000_01, 0.001, None, 0.0)
    before = parse_metrics(generate_latest(m.registry).decode())
    assert metric(before, "router_decisions_total") == 0
    assert metric(before, "router_request_seconds_count") == 0
    m.flush()
    m.flush()  # nothing new: nothing added
    after = parse_metrics(generate_latest(m.registry).decode())
    assert metric(after, "router_decisions_total", route="vip", outcome="matched") == 2
    assert metric(after, "router_request_seconds_count") == 2
    assert metric(after, "router_decision_seconds_count") == 2
    assert metric(after, "router_crm_lookups_total", status="ok") == 1  # only calls that looked up
    assert metric(after, "router_crm_lookup_seconds_count") == 1
    assert after["router_request_seconds_sum"] == pytest.approx(0.002)


def test_render_flushes_first() -> None:
    m = Metrics()
    m.answered("uk", "matched", 0.000_01, 0.001, None, 0.0)
    samples = parse_metrics(m.render().decode())
    assert metric(samples, "router_decisions_total", route="uk", outcome="matched") == 1


def test_flush_feeds_the_consoles_route_hits() -> None:
    m = Metrics()
    m.answered("uk", "matched", 0.000_01, 0.001, None, 0.0)
    m.answered("uk", "fallback", 0.000_01, 0.001, "timeout", 0.7)
    [before] = m.hits.routes(["uk"], now=time.time())
    assert (before.last_hour, before.last_hit) == (0, None)
    m.flush()
    m.flush()
    [after] = m.hits.routes(["uk"], now=time.time())
    assert (after.last_hour, after.last_day) == (2, 2)


VALUES = [0.0, 0.000_005, 0.000_005_000_1, 0.001, 0.0049, 0.005, 0.01, 0.2, 7.5, 8.0, 1e9]


@pytest.mark.parametrize(
    ("histogram", "bounds", "observe"),
    [
        pytest.param(
            "decision_seconds",
            _FAST,
            lambda m, v: m.answered("r", "matched", v, 0.0, None, 0.0),
            id="decision",
        ),
        pytest.param(
            "request_seconds", _SLOW, lambda m, v: m.answered("r", "matched", 0.0, v, None, 0.0), id="request"
        ),
        pytest.param(
            "crm_lookup_seconds", _SLOW, lambda m, v: m.answered("r", "matched", 0.0, 0.0, "ok", v), id="crm"
        ),
    ],
)
def test_tallied_observations_land_in_the_buckets_observe_would_fill(
    histogram: str, bounds: tuple[float, ...], observe: object
) -> None:
    m = Metrics()
    for v in VALUES:
        observe(m, v)  # type: ignore[operator]
    m.flush()
    registry = CollectorRegistry()
    reference = Histogram("router_" + histogram, "reference", buckets=bounds, registry=registry)
    for v in VALUES:
        reference.observe(v)
    name = f"router_{histogram}_bucket"
    ours = {k: v for k, v in parse_metrics(m.render().decode()).items() if k.startswith(name)}
    theirs = {
        k: v for k, v in parse_metrics(generate_latest(registry).decode()).items() if k.startswith(name)
    }
    assert ours == theirs
    assert len(ours) == len(bounds) + 1


def test_the_policy_version_gauge_keeps_one_live_version() -> None:
    m = Metrics()
    m.set_version("aaa")
    m.set_version("aaa")
    m.set_version("bbb")
    samples = parse_metrics(m.render().decode())
    assert {k: v for k, v in samples.items() if k.startswith("router_policy_info")} == {
        'router_policy_info{version="aaa"}': 0.0,
        'router_policy_info{version="bbb"}': 1.0,
    }


# --- multiprocess mode (--workers) -------------------------------------------------------------------

WORKER = """\
import sys
from router.server.metrics import Metrics
m = Metrics()
m.set_version("v1")
m.last_reload_ok.set(1)
for route in sys.argv[1:]:
    m.answered(route, "matched", 0.00001, 0.001, "ok", 0.002)
m.flush()
"""


def test_workers_are_summed_from_the_multiprocess_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two worker processes count into PROMETHEUS_MULTIPROC_DIR; any process's render sums them."""
    m = Metrics()  # this process's metrics are in memory: only the workers' files are read
    m.answered("not-a-worker", "matched", 0.0, 0.0, None, 0.0)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, *routes], env=env, cwd=ROOT)
        for routes in (["vip", "vip"], ["vip", "uk"])
    ]
    assert [w.wait(30) for w in workers] == [0, 0]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = m.render().decode()
    samples = parse_metrics(text)
    assert metric(samples, "router_decisions_total", route="vip", outcome="matched") == 3
    assert metric(samples, "router_decisions_total", route="uk", outcome="matched") == 1
    assert metric(samples, "router_decisions_total", route="not-a-worker") == 0
    assert metric(samples, "router_crm_lookups_total", status="ok") == 4
    assert metric(samples, "router_request_seconds_count") == 4
    assert metric(samples, "router_request_seconds_bucket", le="0.001") == 4
    # gauges by their multiprocess mode: the version per live worker, the reload flag's minimum
    info = sorted(k for k in samples if k.startswith("router_policy_info"))
    pids = sorted(str(w.pid) for w in workers)
    assert info == [f'router_policy_info{{pid="{pid}",version="v1"}}' for pid in pids]
    assert samples["router_policy_last_reload_successful"] == 1.0
