"""`vapi-router diff OLD NEW`: what a policy change does to every call, without traffic. [pure]

The calls of the window are cut into regions (diffspace: classes of every fact either set can
observe, and time slices between the schedules' boundaries); one representative call per
region is decided by both sets through `runtime.decide`, and the regions whose answers
differ are kept. Answers compare by what decides every call of the region alike: the route,
the target as compiled (its name, body with ${…} templates unfilled, split weights and
salt), and the fallback when the target has templates that could fail. Equal keys give
equal replies for every call of a region, so "no difference" is a proof, not a sample.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from router.runtime.decide import Answer, decide
from router.runtime.facttypes import CRM_STATUSES, Facts
from router.runtime.model import Policy
from router.runtime.schedules import Schedule, is_open
from router.tools.diffkeys import facts_for, outcome_key
from router.tools.diffspace import (
    ABSENT,
    Atoms,
    collect_atoms,
    concrete,
    number_classes,
    value_class,
    value_classes,
)

CALL_ID = "diff-0001"  # every assistant-request has a call id; a split may stick to it
LIVE_STATUSES = tuple(s for s in CRM_STATUSES if s != "disabled")


@dataclass(frozen=True, slots=True)
class Slice:
    start: datetime
    end: datetime
    state: tuple[bool, ...]  # open/closed per schedule column


@dataclass
class Space:
    """The regions' axes: each a list of classes, and how a class becomes a fact."""

    atoms: Atoms
    callers: dict[tuple[Any, ...], str | None]
    dialled: dict[tuple[Any, ...], str | None]
    columns: list[tuple[str, Schedule]]  # (label, a schedule of that column)
    slices: list[Slice]
    statuses: tuple[str, ...]
    transfers: bool
    zone: str

    def state_at(self, at: datetime) -> tuple[bool, ...]:
        return tuple(is_open(s, at) for _, s in self.columns)


@dataclass(frozen=True, slots=True)
class Region:
    """One cell of the space: a class per axis (the dims), and its representative call."""

    dims: tuple[Any, ...]
    facts: Facts
    transfer: bool


@dataclass
class Difference:
    region: Region
    old: Answer
    new: Answer
    change: str  # "route", "target" or "reply"
    keys: tuple[Any, Any]  # outcome_key under OLD and NEW: equal keys, equal answers


@dataclass
class DiffResult:
    space: Space
    start: date
    days: int
    regions: int = 0
    differences: list[Difference] = field(default_factory=list)
    differing: set[tuple[Any, ...]] = field(default_factory=set)
    seen: list[tuple[Any, ...]] = field(default_factory=list)  # every region's dims
    notes: list[str] = field(default_factory=list)

    def differs(self, facts: Facts, *, transfer: bool = False) -> bool | None:
        """Whether the diff reported the region of `facts` (None: a region it never saw)."""
        dims = dims_of(self.space, facts, transfer)
        if dims is None:
            return None
        return dims in self.differing


# ---------------------------------------------------------------- the space


def _columns(
    policies: Sequence[Policy], minutes: list[datetime]
) -> tuple[list[tuple[str, Schedule]], list[Slice]]:
    """Schedule columns (schedules open at exactly the same minutes share one) and the
    slices of the window in which every column keeps its state."""
    columns: dict[tuple[bool, ...], tuple[str, Schedule]] = {}
    for which, policy in zip(("old", "new"), policies, strict=True):
        for name, schedule in policy.schedules.items():
            bits = tuple(is_open(schedule, m) for m in minutes)
            if bits in columns:
                continue
            other = [s for _, s in columns.values() if s.name == name]
            columns[bits] = (f"{name} ({which})" if other else name, schedule)
    names = list(columns.values())
    states = list(zip(*columns.keys(), strict=True)) if columns else [() for _ in minutes]
    slices: list[Slice] = []
    for i, (at, state) in enumerate(zip(minutes, states, strict=True)):
        end = minutes[i + 1] if i + 1 < len(minutes) else at + timedelta(minutes=1)
        if slices and slices[-1].state == state:
            slices[-1] = replace(slices[-1], end=end)
        else:
            slices.append(Slice(at, end, tuple(state)))
    return names, slices


def build_space(old: Policy, new: Policy, start: date, days: int) -> Space:
    atoms = collect_atoms((old, new))
    zone = new.settings.timezone
    tz = ZoneInfo(zone)
    first = datetime(start.year, start.month, start.day, tzinfo=tz)
    end = datetime.combine(start + timedelta(days=days), datetime.min.time(), tzinfo=tz)
    count = int((end - first).total_seconds() // 60)
    minutes = [first + timedelta(minutes=m) for m in range(count)]
    columns, slices = _columns((old, new), minutes)
    with_crm = old.crm is not None or new.crm is not None
    return Space(
        atoms=atoms,
        callers=number_classes(atoms.caller),
        dialled=number_classes(atoms.dialled),
        columns=columns,
        slices=slices,
        statuses=LIVE_STATUSES if with_crm else ("disabled",),
        transfers=bool(old.transfers or new.transfers),
        zone=zone,
    )


def _crm_combos(space: Space) -> list[tuple[str, tuple[bool, ...], tuple[str, ...]]]:
    """(status, has-tag per named tag, class per named field): tags and fields only with ok."""
    tags = sorted(space.atoms.tags)
    fields = sorted(space.atoms.fields)
    none = (tuple(False for _ in tags), tuple(ABSENT for _ in fields))
    out = []
    for status in space.statuses:
        if status != "ok":
            out.append((status, *none))
            continue
        for has in itertools.product((False, True), repeat=len(tags)):
            for values in itertools.product(*(value_classes(space.atoms.fields[f]) for f in fields)):
                out.append((status, has, values))
    return out


def regions(space: Space) -> list[Region]:
    """Every region of the space with its representative call."""
    atoms = space.atoms
    tags, fields, variables = sorted(atoms.tags), sorted(atoms.fields), sorted(atoms.variables)
    ids = value_classes(atoms.ids) if atoms.ids else [ABSENT]
    var_combos = list(itertools.product(*(value_classes(atoms.variables[v]) for v in variables)))
    states: dict[tuple[bool, ...], datetime] = {}
    for s in space.slices:
        states.setdefault(s.state, s.start)
    out = []
    for (ckey, caller), (dkey, dialled), pnid, var, crm, (state, at), transfer in itertools.product(
        space.callers.items(),
        space.dialled.items(),
        ids,
        var_combos,
        _crm_combos(space),
        states.items(),
        (False, True) if space.transfers else (False,),
    ):
        status, has, values = crm
        facts = Facts(
            caller=caller,
            dialled=dialled,
            at=at,
            phone_number_id=concrete(pnid),
            call_id=CALL_ID,
            variables={v: c for v, x in zip(variables, var, strict=True) if (c := concrete(x)) is not None},
            crm_status=status,
            tags=frozenset(t for t, h in zip(tags, has, strict=True) if h),
            crm={f: c for f, x in zip(fields, values, strict=True) if (c := concrete(x)) is not None},
        )
        dims = (ckey, dkey, pnid, var, status, has, values, state, transfer)
        out.append(Region(dims, facts, transfer))
    return out


def dims_of(space: Space, facts: Facts, transfer: bool) -> tuple[Any, ...] | None:
    """The region key of any call (as `regions` builds it), None if `regions` has no such region."""
    atoms = space.atoms
    ckey, dkey = atoms.caller.features(facts.caller), atoms.dialled.features(facts.dialled)
    if ckey not in space.callers or dkey not in space.dialled:
        return None
    status = facts.crm_status
    if space.statuses == ("disabled",):
        status = "disabled"
    elif status in (None, "disabled"):
        status = "not_found"
    tags, fields = sorted(atoms.tags), sorted(atoms.fields)
    ok = status == "ok"
    return (
        ckey,
        dkey,
        value_class(facts.phone_number_id, atoms.ids) if atoms.ids else ABSENT,
        tuple(value_class(facts.variables.get(v), atoms.variables[v]) for v in sorted(atoms.variables)),
        status,
        tuple(ok and t in facts.tags for t in tags),
        tuple(value_class(facts.crm.get(f), atoms.fields[f]) if ok else ABSENT for f in fields),
        space.state_at(facts.at),
        transfer,
    )


# ---------------------------------------------------------------- comparing


def _change(old: Answer, new: Answer) -> str:
    if old.route != new.route:
        return "route"
    if old.target != new.target or old.kind != new.kind:
        return "target"
    return "reply"


def diff_policies(old: Policy, new: Policy, start: date, days: int) -> DiffResult:
    """Every region where OLD and NEW answer differently, over `days` days from `start`."""
    space = build_space(old, new, start, days)
    result = DiffResult(space, start, days)
    for region in regions(space):
        result.regions += 1
        result.seen.append(region.dims)
        t = region.transfer
        keys = (outcome_key(old, region.facts, transfer=t), outcome_key(new, region.facts, transfer=t))
        if keys[0] == keys[1]:
            continue
        a = decide(old, facts_for(old, region.facts), transfer=t)
        b = decide(new, facts_for(new, region.facts), transfer=t)
        result.differences.append(Difference(region, a, b, _change(a, b), keys))
        result.differing.add(region.dims)
    result.notes.extend(_notes(old, new, space))
    return result


def _crm_source(policy: Policy) -> Any:
    """What the CRM answers from: the file's content, or the URL/database settings."""
    crm = policy.crm
    if crm is None:
        return None
    if crm.file:
        try:
            return Path(crm.file).read_bytes()
        except OSError:
            return crm.file
    return (crm.url, crm.sqlite, repr(crm.postgres), tuple(sorted(crm.fields.items())), crm.tags)


def _notes(old: Policy, new: Policy, space: Space) -> list[str]:
    notes = []
    if old.settings.region != new.settings.region:
        notes.append(
            f"settings.region changed ({old.settings.region} -> {new.settings.region}): numbers "
            "written without +country are read differently; regions compare E.164 numbers"
        )
    if _crm_source(old) != _crm_source(new):
        notes.append("the CRM source changed: regions compare the same CRM record under both sets")
    if old.state is not None or new.state is not None:
        # history, capacity and flag facts are not yet a region dimension: say so, not "same"
        notes.append(
            "live call state (history, capacity, flags) is compared as empty state only: "
            "routes on flags switched on, full pools or earlier calls are not compared"
        )
    regexes = [*space.atoms.caller.regexes, *space.atoms.dialled.regexes]
    if regexes:
        notes.append(
            "regex conditions ("
            + ", ".join(f"/{r}/" for r in regexes)
            + ") are covered by sample numbers only"
        )
    return notes
