"""Prometheus metrics of the server (prometheus-client); multiprocess-aware for --workers. [I/O]"""

from __future__ import annotations

import os
import struct
import time
from bisect import bisect_left

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from router.server.activity import Hits
from router.server.statemetrics import StateMetrics

# Decisions take microseconds, requests a millisecond or so; CRM lookups up to the deadline.
# *_created series double the output for no use in dashboards.
disable_created_metrics()  # type: ignore[no-untyped-call]

_FAST = (0.000_005, 0.00001, 0.000_025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01)
_SLOW = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5)
# How often the counts of answered calls reach prometheus-client (and, with --workers, the
# files every worker's /metrics sums): a scrape sees a call at most this much later.
FLUSH_S = 1.0


class _Tally:
    """A histogram's observations counted in plain Python until the next flush: observe()
    in prometheus-client takes a lock per bucket and sum, four times per call here."""

    __slots__ = ("bounds", "counts", "histogram", "total")

    def __init__(self, histogram: Histogram, bounds: tuple[float, ...]) -> None:
        self.histogram = histogram
        self.bounds = (*bounds, float("inf"))
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def flush(self) -> None:
        # the same buckets Histogram.observe fills: the first upper bound >= the value
        buckets = self.histogram._buckets
        for i, n in enumerate(self.counts):
            if n:
                buckets[i].inc(n)
                self.counts[i] = 0
        if self.total:
            self.histogram._sum.inc(self.total)
            self.total = 0.0


class Metrics:
    """The router's metrics on one registry (a fresh one per app, so tests don't share state)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "router_decisions_total",
            "Answered routing requests by route and outcome",
            ["route", "outcome"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            "router_decision_seconds", "Policy evaluation time", buckets=_FAST, registry=r
        )
        self.request_seconds = Histogram(
            "router_request_seconds", "Webhook request time, body to reply", buckets=_SLOW, registry=r
        )
        self.crm_lookups = Counter(
            "router_crm_lookups_total", "CRM lookups by status", ["status"], registry=r
        )
        self.crm_seconds = Histogram(
            "router_crm_lookup_seconds", "CRM lookup time", buckets=_SLOW, registry=r
        )
        self.auth_failures = Counter(
            "router_auth_failures_total",
            "Requests refused with 401, by the scheme(s) whose credential they carried",
            ["scheme"],
            registry=r,
        )
        self.policy_info = Gauge(
            "router_policy_info",
            "The live policy version (1)",
            ["version"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.reloads = Counter(
            "router_policy_reloads_total", "Policy reloads by result", ["result"], registry=r
        )
        self.last_reload_ok = Gauge(
            "router_policy_last_reload_successful",
            "1 if the last reload succeeded",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.last_success = Gauge(
            "router_policy_last_reload_success_timestamp_seconds",
            "Unix time of the last successful (re)load",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.shadow_diffs = Counter(
            "router_shadow_differences_total",
            "Requests where the shadow policy chose another route",
            ["live_route", "shadow_route"],
            registry=r,
        )
        self.state = StateMetrics(r)  # pools, flags, state store (DESIGN §13)
        self._version: str | None = None
        # answered calls since the last flush
        self._decided: dict[tuple[str, str], int] = {}
        self._looked_up: dict[str, int] = {}
        self._decision_tally = _Tally(self.decision_seconds, _FAST)
        self._request_tally = _Tally(self.request_seconds, _SLOW)
        self._crm_tally = _Tally(self.crm_seconds, _SLOW)
        self.hits = Hits()  # the console's per-route counts, fed by flush() (not per call)

    def answered(
        self, route: str, outcome: str, eval_s: float, request_s: float, crm: str | None, crm_s: float
    ) -> None:
        """One answered call: router_decisions_total{route, outcome}, the decision and request
        times, and (crm: the lookup's status) the CRM lookup. Counted here, published by flush()."""
        key = (route, outcome)
        decided = self._decided
        decided[key] = decided.get(key, 0) + 1
        self._decision_tally.observe(eval_s)
        self._request_tally.observe(request_s)
        if crm is not None:
            self._looked_up[crm] = self._looked_up.get(crm, 0) + 1
            self._crm_tally.observe(crm_s)

    def flush(self) -> None:
        """Publish what answered() counted to prometheus-client (and the multiprocess files)."""
        decided, self._decided = self._decided, {}
        if decided:
            self.hits.add(decided, time.time())
        for (route, outcome), n in decided.items():
            self.decisions.labels(route, outcome).inc(n)
        looked_up, self._looked_up = self._looked_up, {}
        for status, n in looked_up.items():
            self.crm_lookups.labels(status).inc(n)
        for tally in (self._decision_tally, self._request_tally, self._crm_tally):
            tally.flush()

    def set_version(self, version: str) -> None:
        if self._version is not None and self._version != version:
            self.policy_info.labels(self._version).set(0)
        self.policy_info.labels(version).set(1)
        self._version = version

    def render(self) -> bytes:
        """Prometheus text; with --workers, the sum over every worker's files."""
        self.flush()
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            # A worker that is starting may have created its file but not written it yet,
            # which prometheus-client reads as a broken file; a moment later it is whole.
            for attempt in range(5):
                try:
                    registry = CollectorRegistry()
                    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
                    return generate_latest(registry)
                except (struct.error, ValueError, OSError):
                    time.sleep(0.01 * (attempt + 1))
        return generate_latest(self.registry)
