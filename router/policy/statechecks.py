"""Semantic checks for DESIGN §13 (`state:`, `capacity:`, `flags:` and the conditions and
targets that use them): unknown pools and flags with a did-you-mean hint, durations, a
fallback that would hold a slot, names defined twice or never used. Pure.

checks.CHECKS runs these; they see its Context through the small protocol below (this
module must not import checks, which imports it)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from router.errors import PolicyError, did_you_mean
from router.policy.document import Document
from router.runtime.statefacts import parse_duration


class _Context(Protocol):
    docs: Sequence[Document]
    settings: dict[str, tuple[Any, Any]]
    routes: list[tuple[Any, dict[str, Any], str]]

    def all_targets(self) -> Iterator[tuple[Any, Any, str]]: ...

    def conditions(self) -> Iterator[tuple[Any, dict[str, Any]]]: ...


def _declared(ctx: _Context, section: str) -> tuple[dict[str, Any], list[PolicyError]]:
    """{name: (doc, pointer)} of a `capacity:` or `flags:` section across files."""
    found: dict[str, Any] = {}
    problems: list[PolicyError] = []
    for doc in ctx.docs:
        data = doc.data if isinstance(doc.data, dict) else {}
        for name in data.get(section) or {}:
            pointer = f"/{section}/{name}"
            if name in found:
                d, p = found[name]
                line, col = d.position(p, key=True)
                what = "pool" if section == "capacity" else "flag"
                problems.append(
                    doc.error(
                        pointer,
                        f'{what} "{name}" is defined twice (also at {d.file}:{line}:{col})',
                        "duplicate-name",
                        key=True,
                    )
                )
            else:
                found[name] = (doc, pointer)
    return found, problems


def _unknown(kind: str, name: str, known: dict[str, Any], section: str) -> str:
    have = ", ".join(sorted(known)) or "none"
    return f'unknown {kind} "{name}"{did_you_mean(name, known)}; `{section}:` defines: {have}'


def state_references_resolve(ctx: _Context) -> Iterator[PolicyError]:
    """Pools and flags named by targets and conditions exist; state is declared once."""
    pools, problems = _declared(ctx, "capacity")
    flags, more = _declared(ctx, "flags")
    yield from problems + more
    states = [d for d in ctx.docs if isinstance(d.data, dict) and "state" in d.data]
    for doc in states[1:]:
        line, col = states[0].position("/state", key=True)
        yield doc.error(
            "/state",
            f"`state` appears twice in the policy set (also at {states[0].file}:{line}:{col})",
            "duplicate-section",
            key=True,
        )
    used_pools: set[str] = set()
    used_flags: set[str] = set()
    for w, raw, _ in ctx.all_targets():
        pool = raw.get("pool") if isinstance(raw, dict) else None
        if isinstance(pool, str):
            used_pools.add(pool)
            if pool not in pools:
                yield w.at("pool").error(_unknown("pool", pool, pools, "capacity"), "unknown-pool")
    for w, cond in ctx.conditions():
        flag = cond.get("flag")
        if isinstance(flag, str):
            used_flags.add(flag)
            if flag not in flags:
                yield w.at("flag").error(_unknown("flag", flag, flags, "flags"), "unknown-flag")
        capacity = cond.get("capacity")
        for pool in capacity if isinstance(capacity, dict) else ():
            used_pools.add(pool)
            if pool not in pools:
                yield w.at("capacity", pool).error(
                    _unknown("pool", pool, pools, "capacity"), "unknown-pool", key=True
                )
    for kind, table, used in (("pool", pools, used_pools), ("flag", flags, used_flags)):
        for name, (doc, pointer) in table.items():
            if name not in used:
                yield doc.error(
                    pointer,
                    f'{kind} "{name}" is defined but never used',
                    "unused",
                    severity="warning",
                    key=True,
                )


def state_values_valid(ctx: _Context) -> Iterator[PolicyError]:
    """Durations read; history names routes and targets that exist; the fallback holds no slot."""
    for doc in ctx.docs:
        state = doc.data.get("state") if isinstance(doc.data, dict) else None
        if isinstance(state, dict) and "max_hold_s" in state:
            hold = parse_duration(state["max_hold_s"])
            if hold is None or hold <= 0:
                yield doc.error(
                    "/state/max_hold_s",
                    "max_hold_s must be a positive duration (14400, 4h, 90m)",
                    "bad-duration",
                )
    route_ids = {str(raw["id"]) for _, raw, _ in ctx.routes if isinstance(raw.get("id"), str)}
    target_names = {
        name for doc in ctx.docs if isinstance(doc.data, dict) for name in (doc.data.get("targets") or {})
    }
    for w, cond in ctx.conditions():
        history = cond.get("history")
        if not isinstance(history, dict):
            continue
        for key, known in (("last_route", route_ids), ("last_target", target_names)):
            values = history.get(key)
            for i, name in enumerate(values if isinstance(values, list) else [values] if values else []):
                if isinstance(name, str) and name not in known:
                    at = w.at("history", key, i) if isinstance(values, list) else w.at("history", key)
                    kind = "route" if key == "last_route" else "target"
                    yield at.error(
                        f'history.{key}: no {kind} "{name}"{did_you_mean(name, known)}', f"unknown-{kind}"
                    )
    if "fallback" in ctx.settings:
        w, raw = ctx.settings["fallback"]
        for sw, target, _ in ctx.all_targets():
            if sw.pointer.startswith(w.pointer) and isinstance(target, dict) and "pool" in target:
                yield sw.at("pool").error(
                    "the fallback answers when the state store cannot; it must not hold a pool slot",
                    "pool-on-fallback",
                )
        if isinstance(raw, str):
            named = next(
                (
                    doc.data["targets"][raw]
                    for doc in ctx.docs
                    if isinstance(doc.data, dict) and raw in (doc.data.get("targets") or {})
                ),
                None,
            )
            if isinstance(named, dict) and "pool" in named:
                yield w.error(
                    f'the fallback answers when the state store cannot; target "{raw}" holds a pool slot',
                    "pool-on-fallback",
                )
