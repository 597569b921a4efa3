"""Conditions over live call state (DESIGN §13): `flag`, `capacity`, `history`. Pure.

They read `facts.state`, filled by the server from the state store before the policy is
evaluated (and by `test`/`explain` from the case); without it they see no history, every
pool with room and every flag off.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.runtime.conditions import Condition
from router.runtime.facttypes import Facts
from router.runtime.statefacts import EMPTY_STATE, StateFacts


def _state(facts: Facts) -> StateFacts:
    return facts.state or EMPTY_STATE


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "ever"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class FlagOn(Condition):
    name: str

    def test(self, facts: Facts) -> bool:
        return self.name in _state(facts).flags

    def describe(self) -> str:
        return f"flag {self.name} is on"

    def actual(self, facts: Facts) -> str:
        return f"{self.name} is {'on' if self.name in _state(facts).flags else 'off'}"


@dataclass(frozen=True, slots=True)
class CapacityIs(Condition):
    """capacity: {POOL: available | full}."""

    pool: str
    full: bool

    def test(self, facts: Facts) -> bool:
        return _state(facts).full(self.pool) is self.full

    def describe(self) -> str:
        return f"pool {self.pool} is {'full' if self.full else 'available'}"

    def actual(self, facts: Facts) -> str:
        usage = _state(facts).pools.get(self.pool)
        if usage is None:
            return f"{self.pool}: no call holds a slot"
        return f"{self.pool}: {usage[0]} of {usage[1]} in use"


@dataclass(frozen=True, slots=True)
class HistoryCalls(Condition):
    """history: {calls: {within: 10m, gte: N, lte: N}}: the caller's earlier calls."""

    within_s: float
    gte: int | None
    lte: int | None

    def test(self, facts: Facts) -> bool:
        n = _state(facts).calls_within(facts.at.timestamp(), self.within_s)
        return (self.gte is None or n >= self.gte) and (self.lte is None or n <= self.lte)

    def describe(self) -> str:
        bounds = [f">= {self.gte}" for _ in (1,) if self.gte is not None]
        bounds += [f"<= {self.lte}" for _ in (1,) if self.lte is not None]
        return f"earlier calls within {_span(self.within_s)} {' and '.join(bounds)}"

    def actual(self, facts: Facts) -> str:
        return f"{_state(facts).calls_within(facts.at.timestamp(), self.within_s)} earlier calls"


@dataclass(frozen=True, slots=True)
class HistoryLast(Condition):
    """history: {last_route | last_target | last_ended_reason: X or [X…], within: 30d}:
    the caller's latest earlier call (within the window) had one of these."""

    field: str  # route, target or ended_reason
    values: frozenset[str]
    within_s: float | None

    def test(self, facts: Facts) -> bool:
        last = _state(facts).last(facts.at.timestamp(), self.within_s)
        return last is not None and getattr(last, self.field) in self.values

    def describe(self) -> str:
        return f"last call's {self.field} in [{', '.join(sorted(self.values))}] within {_span(self.within_s)}"

    def actual(self, facts: Facts) -> str:
        last = _state(facts).last(facts.at.timestamp(), self.within_s)
        return f"last {self.field} = {getattr(last, self.field) if last else '(no earlier call)'}"
