"""Metrics of live call state (DESIGN §13): pool usage, reservations refused, releases by
reason, flag state, state lookups by status. [I/O]"""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge

REFUSALS_KEPT = 1000  # per pool: when the last refusals were (the console's "recent refusals")


class StateMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        # every worker reads the same shared store: the largest recent reading is the truth
        self.in_use = Gauge(
            "router_pool_slots_in_use",
            "Calls holding a slot, by pool",
            ["pool"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.max = Gauge(
            "router_pool_slots_max", "Slots of each pool", ["pool"], registry=r, multiprocess_mode="livemax"
        )
        self.reservations = Counter(
            "router_pool_reservations_total",
            "Slot reservations by pool and result (granted, refused)",
            ["pool", "result"],
            registry=r,
        )
        self.releases = Counter(
            "router_pool_releases_total",
            "Slots released, by pool and reason (status-update, end-of-call-report, max_hold)",
            ["pool", "reason"],
            registry=r,
        )
        self.flag_on = Gauge(
            "router_flag_on", "1 while a flag is on", ["flag"], registry=r, multiprocess_mode="livemax"
        )
        self.lookups = Counter(
            "router_state_lookups_total",
            "State store operations by status",
            ["operation", "status"],
            registry=r,
        )
        self.refused_at: dict[str, deque[float]] = {}  # pool -> epoch s of this worker's refusals

    def reserved(self, pool: str, granted: bool) -> None:
        self.reservations.labels(pool, "granted" if granted else "refused").inc()
        if not granted:
            self.refused_at.setdefault(pool, deque(maxlen=REFUSALS_KEPT)).append(time.time())

    def released(self, pool: str, reason: str) -> None:
        self.releases.labels(pool, reason).inc()

    def looked_up(self, operation: str, ok: bool) -> None:
        self.lookups.labels(operation, "ok" if ok else "error").inc()
