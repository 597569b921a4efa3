"""`diff` rows: the regions that change alike, covered by few products of classes. [pure]

A region key is flattened to one class per axis (caller, dialled, phone-number id, each
variable, CRM status, each tag, each field, each schedule column, message type); a row holds
a set of classes per axis, and `merge_rows` grows each row as far as it can go without
taking in a region that does not change the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router.tools.diff import Difference, DiffResult, Space
from router.tools.diffspace import ABSENT, value_classes

Row = tuple[frozenset[Any], ...]


@dataclass(frozen=True, slots=True)
class Axes:
    """Where each axis sits in a flattened region key."""

    variables: list[str]
    tags: list[str]
    fields: list[str]
    columns: int

    def flat(self, dims: tuple[Any, ...]) -> tuple[Any, ...]:
        ckey, dkey, pnid, var, status, has, values, state, transfer = dims
        return (ckey, dkey, pnid, *var, status, *has, *values, *state, transfer)


def _axes(space: Space) -> Axes:
    a = space.atoms
    return Axes(sorted(a.variables), sorted(a.tags), sorted(a.fields), len(space.columns))


def _domains(space: Space, axes: Axes) -> list[frozenset[Any]]:
    a = space.atoms
    states = {s.state for s in space.slices}
    return [
        frozenset(space.callers),
        frozenset(space.dialled),
        frozenset(value_classes(a.ids) if a.ids else [ABSENT]),
        *(frozenset(value_classes(a.variables[v])) for v in axes.variables),
        frozenset(space.statuses),
        *(frozenset((False, True)) for _ in axes.tags),
        *(frozenset(value_classes(a.fields[f])) for f in axes.fields),
        *(frozenset(s[i] for s in states) for i in range(axes.columns)),
        frozenset((False, True)) if space.transfers else frozenset((False,)),
    ]


def merge_rows(
    members: Sequence[tuple[Any, ...]], others: Sequence[tuple[Any, ...]], domains: Sequence[frozenset[Any]]
) -> list[Row]:
    """Cover `members` (regions that change alike) with few products, one set per axis.

    A row grows from an uncovered member one axis at a time, taking every class of the axis
    that brings in no region of `others` (every other region of the space); combinations no
    call has (e.g. tags on a lookup that timed out) may be swept in, as they change nothing.
    So a row never claims a region that does not change this way."""
    rows: list[Row] = []
    width = len(domains)
    for seed in members:
        if any(all(v in r[i] for i, v in enumerate(seed)) for r in rows):
            continue
        row = [frozenset((v,)) for v in seed]
        for axis in range(width):
            blocked = {b[axis] for b in others if all(i == axis or b[i] in row[i] for i in range(width))}
            row[axis] = frozenset(v for v in domains[axis] if v not in blocked) | row[axis]
        rows.append(tuple(row))
    return rows


@dataclass
class Group:
    rows: list[Row]
    examples: list[Difference]  # per row, its first region


def _inside(flat: tuple[Any, ...], row: Row) -> bool:
    return all(a in b for a, b in zip(flat, row, strict=True))


def grouped(result: DiffResult) -> tuple[Axes, list[frozenset[Any]], list[Group]]:
    axes = _axes(result.space)
    domains = _domains(result.space, axes)
    by_change: dict[Any, list[Difference]] = defaultdict(list)
    for d in result.differences:
        by_change[d.keys].append(d)
    groups = []
    everything = [axes.flat(dims) for dims in result.seen]
    for ds in by_change.values():
        flats = [axes.flat(d.region.dims) for d in ds]
        mine = set(flats)
        rows = merge_rows(flats, [f for f in everything if f not in mine], domains)
        examples = [next(d for d, f in zip(ds, flats, strict=True) if _inside(f, row)) for row in rows]
        groups.append(Group(rows, examples))
    return axes, domains, groups
