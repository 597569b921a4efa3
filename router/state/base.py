"""The StateStore protocol and what its stores share: the call record, flag states. [I/O edge]

The guarantees every store keeps (the tests run each store through the same table):
- `reserve` is atomic: never more than `max` calls hold a slot of one pool at once;
- a slot is released by `end` (proof that the call ended) or once `held_until` passed,
  and `end` releases a call's slot at most once, whatever order the end messages come in;
- `snapshot` never reports the call being decided among the caller's earlier calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from router.runtime.statefacts import StateFacts

# release reasons (the `reason` label of router_state_releases_total)
EXPIRED = "max_hold"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One decided call as the store keeps it."""

    call_id: str
    caller: str | None
    at: float  # epoch seconds
    route: str | None
    target: str | None


@dataclass(frozen=True, slots=True)
class FlagState:
    name: str
    on: bool
    until: float | None  # epoch seconds; None: until switched again
    reason: str
    changed_at: float


class StateStore(Protocol):
    """Where live call state lives. Every method may raise (a dead, slow or locked store):
    the caller bounds it by the deadline and turns a failure into `state_status: error`."""

    async def snapshot(
        self, caller: str | None, call_id: str | None, now: float, history_s: float, pools: Mapping[str, int]
    ) -> StateFacts: ...

    async def reserve(self, call: CallRecord, pool: str, most: int, held_until: float) -> bool: ...

    async def record(self, call: CallRecord) -> None: ...

    async def end(self, call_id: str, now: float, ended_reason: str | None, kind: str) -> str | None:
        """Mark the call ended; the pool whose slot this released, None when it released
        none (no pool, already released or expired, or a duplicate end)."""
        ...

    async def expire(self, now: float, keep_s: float) -> list[str]:
        """Release slots held past `held_until` (one pool name per slot released) and
        forget calls older than `keep_s`."""
        ...

    async def usage(self, now: float, pools: Mapping[str, int]) -> dict[str, int]: ...

    async def set_flag(self, flag: FlagState) -> None: ...

    async def flags(self) -> dict[str, FlagState]: ...

    async def aclose(self) -> None: ...


def flag_is_on(flag: FlagState | None, now: float) -> bool:
    return flag is not None and flag.on and (flag.until is None or flag.until > now)
