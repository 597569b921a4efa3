"""Compile DESIGN §13's keys: `state:`, `capacity:`, `flags:` into StateSettings, and the
`flag`, `capacity` and `history` conditions. Pure; trusts checked documents (the checks
live in statechecks.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from router.policy.document import Document
from router.runtime.conditions import All, AnyOf, Condition, Not
from router.runtime.model import Route, Target
from router.runtime.stateconds import CapacityIs, FlagOn, HistoryCalls, HistoryLast
from router.runtime.statefacts import HISTORY_DEFAULT_S, HISTORY_REFS, StateSettings, parse_duration

STATE_CONDITIONS = ("flag", "capacity", "history")
SECTIONS = ("state", "capacity", "flags")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def state_condition(key: str, value: Any) -> Condition:
    """A checked `flag`, `capacity` or `history` condition."""
    if key == "flag":
        return FlagOn(str(value))
    if key == "capacity":
        parts: list[Condition] = [CapacityIs(pool, want == "full") for pool, want in value.items()]
    else:
        parts = list(_history(value))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _history(value: dict[str, Any]) -> Iterator[Condition]:
    within = parse_duration(value["within"]) if "within" in value else None
    calls = value.get("calls")
    if isinstance(calls, dict):
        span = parse_duration(calls.get("within", "24h"))
        assert span is not None, "checks guarantee a duration"
        yield HistoryCalls(span, calls.get("gte"), calls.get("lte"))
    for key in ("last_route", "last_target", "last_ended_reason"):
        if key in value:
            yield HistoryLast(key.removeprefix("last_"), frozenset(str(x) for x in _list(value[key])), within)


def _sections(docs: Sequence[Document]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    state: dict[str, Any] = {}
    pools: dict[str, Any] = {}
    flags: dict[str, Any] = {}
    home = ""
    for doc in docs:
        data = doc.data if isinstance(doc.data, dict) else {}
        if isinstance(data.get("state"), dict):
            state, home = data["state"], os.path.dirname(os.path.abspath(doc.file))
        pools.update(data.get("capacity") or {})
        flags.update(data.get("flags") or {})
    return state, pools, flags, home


def _conditions(cond: Condition) -> Iterator[Condition]:
    if isinstance(cond, All | AnyOf):
        for p in cond.parts:
            yield from _conditions(p)
    elif isinstance(cond, Not):
        yield from _conditions(cond.part)
    else:
        yield cond


def _reads_history(target: Target) -> bool:
    stack = [target]
    while stack:
        t = stack.pop()
        if t.templated and any(r[0] in HISTORY_REFS for r in _refs(t.body)):
            return True
        stack.extend(v.target for v in t.variants)
    return False


def _refs(value: Any) -> Iterator[tuple[str, str]]:
    parts = getattr(value, "parts", None)
    if isinstance(parts, tuple):
        yield from (p for p in parts if isinstance(p, tuple))
    elif isinstance(value, dict):
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def state_settings(
    docs: Sequence[Document], routes: Sequence[Route], targets: Sequence[Target]
) -> StateSettings | None:
    """The policy's state settings; None when it declares and reads no state at all."""
    state, pools, flags, home = _sections(docs)
    spans: list[float] = []
    for r in routes:
        for c in _conditions(r.when):
            if isinstance(c, HistoryCalls):
                spans.append(c.within_s)
            elif isinstance(c, HistoryLast):
                spans.append(c.within_s if c.within_s is not None else HISTORY_DEFAULT_S)
    if any(_reads_history(t) for t in targets):
        spans.append(HISTORY_DEFAULT_S)
    if not (state or pools or flags or spans):
        return None
    sqlite = state.get("sqlite")
    postgres = state.get("postgres")
    return StateSettings(
        backend="sqlite" if sqlite else ("postgres" if postgres else "memory"),
        sqlite=os.path.join(home, sqlite) if sqlite else None,
        dsn=postgres.get("dsn") if isinstance(postgres, dict) else None,
        max_hold_s=parse_duration(state.get("max_hold_s", 14_400)) or 14_400.0,
        timeout_ms=int(state.get("timeout_ms", 1000)),
        pools={name: int(p.get("max", 0)) for name, p in pools.items()},
        flags={name: str((f or {}).get("description", "")) for name, f in flags.items()},
        history_s=max(spans, default=0.0),
    )
