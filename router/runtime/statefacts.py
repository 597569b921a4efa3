"""Live call state as facts (DESIGN §13): what the state store knew when a call was decided
(the caller's earlier calls, pool usage, flags that are on) and the policy's `state:`
settings. Pure: the store that fills these lives in router.state."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

StateStatus = Literal["ok", "error"]
DEFAULT_MAX_HOLD_S = 14_400.0
DAY_S = 86_400.0
# How far back `history` reads when a condition gives no `within`, and for ${history.*}.
HISTORY_DEFAULT_S = 30 * DAY_S
HISTORY_LIMIT = 200  # earlier calls read per lookup, newest first
HISTORY_REFS = ("history.last_target", "history.last_route", "history.last_ended_reason", "history.calls_24h")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY_S}


def parse_duration(value: object) -> float | None:
    """'90s', '10m', '24h', '30d' (or a number of seconds) -> seconds; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    m = _DURATION.match(value) if isinstance(value, str) else None
    return float(m[1]) * _UNIT_S[m[2]] if m else None


@dataclass(frozen=True, slots=True)
class PastCall:
    """One earlier call of the same caller, as the state store recorded it."""

    at: float  # epoch seconds when it was decided
    route: str | None
    target: str | None
    ended_reason: str | None = None


@dataclass(frozen=True, slots=True)
class StateFacts:
    """What a decision may read from the state store. `history` is newest first and never
    holds the call being decided; `pools` maps a pool to (calls holding a slot, max)."""

    status: StateStatus = "ok"
    history: tuple[PastCall, ...] = ()
    pools: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    reason: str = ""

    def full(self, pool: str) -> bool:
        used, most = self.pools.get(pool, (0, 1))
        return used >= most

    def with_full(self, pool: str) -> StateFacts:
        """These facts with `pool` full: a call that lost the race for its last slot."""
        most = self.pools.get(pool, (0, 0))[1]
        return replace(self, pools={**self.pools, pool: (max(most, 1), max(most, 1))})

    def calls_within(self, now: float, seconds: float) -> int:
        return sum(1 for c in self.history if now - seconds <= c.at <= now)

    def last(self, now: float, within: float | None) -> PastCall | None:
        for c in self.history:
            if c.at <= now:
                return c if within is None or c.at >= now - within else None
        return None

    def value(self, ref: str, now: float) -> str:
        """A ${history.*} reference's text ("" when the caller has no such earlier call)."""
        if ref == "calls_24h":
            return str(self.calls_within(now, DAY_S))
        last = self.last(now, None)
        got = getattr(last, ref.removeprefix("last_"), None) if last is not None else None
        return got or ""


EMPTY_STATE = StateFacts()


@dataclass(frozen=True, slots=True)
class StateSettings:
    """The policy's `state:`, `capacity:` and `flags:`, and what of them its routes use."""

    backend: Literal["memory", "sqlite", "postgres"] = "memory"
    sqlite: str | None = None  # absolute path
    dsn: str | None = None
    max_hold_s: float = DEFAULT_MAX_HOLD_S
    timeout_ms: int = 1000
    pools: Mapping[str, int] = field(default_factory=dict)  # pool -> max
    flags: Mapping[str, str] = field(default_factory=dict)  # flag -> description
    history_s: float = 0.0  # how far back routes and templates read history; 0: not at all

    @property
    def where(self) -> tuple[str, str | None, str | None]:
        """What identifies the store: a reload that keeps it keeps the store's connections."""
        return (self.backend, self.sqlite, self.dsn)

    @property
    def shared(self) -> bool:
        """Whether every worker of a host sees the same state (not the in-process store)."""
        return self.backend != "memory"
