"""What the console shows of the server's own traffic: hits per route per minute, and bounded
rings of recent decisions and shadow differences. In memory, per worker process. [I/O-free]

Nothing here runs per call except one deque append: hits are added from the metrics'
periodic flush (every FLUSH_S), which already holds the per-route counts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RECENT = 200  # decisions kept for the console (DESIGN §14: the last 200)
MINUTES = 24 * 60  # hit buckets kept: a day


@dataclass(frozen=True, slots=True)
class RouteHits:
    route: str
    last_hour: int
    last_day: int
    last_hit: float | None  # unix time (within FLUSH_S), None: never since the server started


class Hits:
    """Answered calls per (route, outcome) per minute over the last day, and each route's last hit."""

    def __init__(self) -> None:
        self._minutes: dict[int, dict[tuple[str, str], int]] = {}
        self.last_hit: dict[str, float] = {}
        self.started: float | None = None

    def add(self, counts: Mapping[tuple[str, str], int], now: float) -> None:
        if self.started is None:
            self.started = now
        minute = int(now // 60)
        bucket = self._minutes.get(minute)
        if bucket is None:
            bucket = self._minutes[minute] = {}
            for old in [m for m in self._minutes if m <= minute - MINUTES]:
                del self._minutes[old]
        for key, n in counts.items():
            bucket[key] = bucket.get(key, 0) + n
            self.last_hit[key[0]] = now

    def _since(self, now: float, minutes: int) -> Iterable[tuple[tuple[str, str], int]]:
        first = int(now // 60) - minutes + 1
        for minute, bucket in list(self._minutes.items()):
            if minute >= first:
                yield from bucket.items()

    def routes(self, names: Iterable[str], now: float) -> list[RouteHits]:
        hour: dict[str, int] = {}
        day: dict[str, int] = {}
        for (route, _), n in self._since(now, 60):
            hour[route] = hour.get(route, 0) + n
        for (route, _), n in self._since(now, MINUTES):
            day[route] = day.get(route, 0) + n
        return [RouteHits(r, hour.get(r, 0), day.get(r, 0), self.last_hit.get(r)) for r in names]

    def outcomes(self, now: float, minutes: int) -> dict[str, int]:
        """Calls per outcome (matched, default, fallback, no_transfer) in the last `minutes`."""
        out: dict[str, int] = {}
        for (_, outcome), n in self._since(now, minutes):
            out[outcome] = out.get(outcome, 0) + n
        return out


@dataclass
class Activity:
    """The rings the server appends to (the decision-log records, numbers already masked)."""

    recent: deque[tuple[str, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=RECENT))
    shadow: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))
