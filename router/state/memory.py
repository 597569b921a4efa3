"""The in-process state store: one worker's dicts. Atomic because the event loop runs one
coroutine at a time and no method awaits in the middle. [I/O edge, but no I/O]

A pool's usage is counted over the calls holding one of its slots (`_held`), not over
every call kept for history: the store keeps a day and more of calls, and counting them
all on each snapshot and reservation made a call cost milliseconds (`make bench`, state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from router.runtime.statefacts import HISTORY_LIMIT, PastCall, StateFacts
from router.state.base import EXPIRED, CallRecord, FlagState, flag_is_on


@dataclass(slots=True)
class _Call:
    record: CallRecord
    pool: str | None = None
    held_until: float = 0.0
    ended_at: float | None = None
    ended_reason: str | None = None
    released: str | None = None


class MemoryState:
    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}
        self._by_caller: dict[str, list[_Call]] = {}
        # pool -> call id -> call: reserved, not yet released (held_until may have passed
        # until expire() records it)
        self._held: dict[str, dict[str, _Call]] = {}
        self._flags: dict[str, FlagState] = {}

    async def snapshot(
        self, caller: str | None, call_id: str | None, now: float, history_s: float, pools: Mapping[str, int]
    ) -> StateFacts:
        history: tuple[PastCall, ...] = ()
        if history_s and caller is not None:
            calls = [
                c
                for c in self._by_caller.get(caller, ())
                if c.record.call_id != call_id and c.record.at >= now - history_s
            ]
            calls.sort(key=lambda c: c.record.at, reverse=True)
            history = tuple(
                PastCall(c.record.at, c.record.route, c.record.target, c.ended_reason)
                for c in calls[:HISTORY_LIMIT]
            )
        used = self._used(now, pools)
        on = frozenset(name for name, f in self._flags.items() if flag_is_on(f, now))
        return StateFacts("ok", history, {p: (used[p], m) for p, m in pools.items()}, on)

    def _used(self, now: float, pools: Mapping[str, int]) -> dict[str, int]:
        used = dict.fromkeys(pools, 0)
        for pool in pools:
            held = self._held.get(pool)
            if held:
                used[pool] = sum(1 for c in held.values() if c.held_until > now)
        return used

    async def reserve(self, call: CallRecord, pool: str, most: int, held_until: float) -> bool:
        if call.call_id in self._calls:  # a repeated request, or its end came first
            return True
        if self._used(call.at, {pool: most})[pool] >= most:
            return False
        c = _Call(call, pool, held_until)
        self._add(c)
        self._held.setdefault(pool, {})[call.call_id] = c
        return True

    async def record(self, call: CallRecord) -> None:
        if call.call_id not in self._calls:
            self._add(_Call(call))

    def _add(self, c: _Call) -> None:
        self._calls[c.record.call_id] = c
        if c.record.caller is not None:
            self._by_caller.setdefault(c.record.caller, []).append(c)

    async def end(self, call_id: str, now: float, ended_reason: str | None, kind: str) -> str | None:
        c = self._calls.get(call_id)
        if c is None:  # the end came before the decision was recorded: remember it ended
            self._add(
                _Call(CallRecord(call_id, None, now, None, None), ended_at=now, ended_reason=ended_reason)
            )
            return None
        if c.ended_at is not None:
            return None
        c.ended_at, c.ended_reason = now, ended_reason
        if c.pool is not None and c.released is None and c.held_until > now:
            c.released = kind
            del self._held[c.pool][call_id]
            return c.pool
        return None

    async def expire(self, now: float, keep_s: float) -> list[str]:
        released = []
        for pool, held in self._held.items():
            for call_id in [k for k, c in held.items() if c.held_until <= now]:
                held.pop(call_id).released = EXPIRED
                released.append(pool)
        old = [k for k, c in self._calls.items() if c.record.at < now - keep_s]
        for k in old:
            c = self._calls.pop(k)
            if c.pool is not None and c.released is None:  # older than keep_s: cannot be held
                self._held[c.pool].pop(k, None)
            if c.record.caller is not None:
                self._by_caller[c.record.caller].remove(c)
                if not self._by_caller[c.record.caller]:
                    del self._by_caller[c.record.caller]
        return released

    async def usage(self, now: float, pools: Mapping[str, int]) -> dict[str, int]:
        return self._used(now, pools)

    async def set_flag(self, flag: FlagState) -> None:
        self._flags[flag.name] = flag

    async def flags(self) -> dict[str, FlagState]:
        return dict(self._flags)

    async def aclose(self) -> None:
        pass
