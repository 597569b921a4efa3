"""Stage 3 checks: names and references resolve (route ids, targets, schedules, lists, ${…}
templates) and every defined name is used. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from router.errors import PolicyError, did_you_mean
from router.policy.checks.context import NUMBER_KEYS, Context, Where, pos, walk_target
from router.policy.checks.crm import crm_source, known_crm_fields
from router.policy.compilebase import TEMPLATE, as_list
from router.policy.document import pointer_of
from router.runtime.statefacts import HISTORY_REFS

REFS = ("caller", "dialled", "call.id", "route", *HISTORY_REFS)


def unique_route_ids(ctx: Context) -> Iterator[PolicyError]:
    seen: dict[str, Where] = {}
    for w, raw, _ in ctx.routes:
        rid = raw.get("id")
        if not isinstance(rid, str):
            continue
        if rid in seen:
            yield w.at("id").error(
                f'route id "{rid}" is used twice (first at {pos(seen[rid].at("id"))})', "duplicate-id"
            )
        else:
            seen[rid] = w


def references_resolve(ctx: Context) -> Iterator[PolicyError]:
    for w, raw, _ in ctx.all_targets():
        if isinstance(raw, str) and raw not in ctx.targets:
            yield w.error(f'unknown target "{raw}"{did_you_mean(raw, ctx.targets)}', "unknown-target")
    for name in ctx.targets:
        loop = _cycle(ctx, name, name, set())
        if loop is not None:
            w, _ = ctx.targets[name]
            path = " -> ".join([name, *loop])
            yield w.error(f'target "{name}" refers back to itself ({path})', "target-cycle", key=True)
    for w, cond in ctx.conditions():
        for key in ("during", "outside"):
            schedule = cond.get(key)
            if isinstance(schedule, str) and schedule not in ctx.schedules:
                yield w.at(key).error(
                    f'unknown schedule "{schedule}"{did_you_mean(schedule, ctx.schedules)}',
                    "unknown-schedule",
                )
        for key in NUMBER_KEYS:
            spec = cond.get(key)
            if isinstance(spec, dict) and "in" in spec:
                for i, name in enumerate(as_list(spec["in"])):
                    if isinstance(name, str) and name not in ctx.lists:
                        at = w.at(key, "in", i) if isinstance(spec["in"], list) else w.at(key, "in")
                        yield at.error(
                            f'unknown list "{name}"{did_you_mean(name, ctx.lists)}', "unknown-list"
                        )


def _cycle(ctx: Context, start: str, name: str, seen: set[str]) -> list[str] | None:
    """The names from `name` back to `start` when target `start` is on a loop, else None.

    A target that only leads into someone else's loop is not reported for it."""
    entry = ctx.targets.get(name)
    if entry is None:
        return None
    seen.add(name)
    for _, raw, _ in walk_target(entry[0], entry[1], "named"):
        if not isinstance(raw, str):
            continue
        if raw == start:
            return [raw]
        if raw not in seen and (rest := _cycle(ctx, start, raw, seen)) is not None:
            return [raw, *rest]
    return None


def templates_resolve(ctx: Context) -> Iterator[PolicyError]:
    crm, known_fields = known_crm_fields(ctx)
    for w, raw, _ in ctx.all_targets():
        if not isinstance(raw, dict):
            continue
        for pointer, text in _strings(raw, ""):
            for ref in (m.group(1).strip() for m in TEMPLATE.finditer(text)):
                at = Where(w.doc, w.pointer + pointer)
                head, _, field_name = ref.partition(".")
                if head == "crm" and field_name:
                    if crm is None:
                        yield at.error(
                            f"${{{ref}}} reads the CRM, but the policy has no `crm` section", "bad-template"
                        )
                    elif known_fields is not None and field_name not in known_fields:
                        source = crm_source(crm)
                        has = ", ".join(sorted(known_fields)) or "none"
                        yield at.error(
                            f'${{{ref}}}: {source} has no field "{field_name}"'
                            f"{did_you_mean(field_name, known_fields)}; its fields: {has}",
                            "bad-template",
                        )
                elif ref not in REFS:
                    choices = [*REFS, *(f"crm.{f}" for f in known_fields or ())]
                    yield at.error(
                        f"${{{ref}}} is not a known reference{did_you_mean(ref, choices)}; use "
                        "${caller}, ${dialled}, ${call.id}, ${route} or ${crm.FIELD}",
                        "bad-template",
                    )


def _strings(value: Any, pointer: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield pointer, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k != "split":
                yield from _strings(v, pointer + pointer_of(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, pointer + pointer_of(i))


def unused_names(ctx: Context) -> Iterator[PolicyError]:
    used_targets = {raw for _, raw, _ in ctx.all_targets() if isinstance(raw, str)}
    used_schedules: set[str] = set()
    used_lists: set[str] = set()
    for _, cond in ctx.conditions():
        used_schedules.update(v for k, v in cond.items() if k in ("during", "outside") and isinstance(v, str))
        for key in NUMBER_KEYS:
            spec = cond.get(key)
            if isinstance(spec, dict) and "in" in spec:
                used_lists.update(x for x in as_list(spec["in"]) if isinstance(x, str))
    for kind, table, used in (
        ("target", ctx.targets, used_targets),
        ("schedule", ctx.schedules, used_schedules),
        ("list", ctx.lists, used_lists),
    ):
        for name, (w, _) in table.items():
            if name not in used:
                yield w.error(
                    f'{kind} "{name}" is defined but never used', "unused", severity="warning", key=True
                )
