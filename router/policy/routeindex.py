"""Stage 4, the route index: each route under its most selective key, so a decision looks at
the few routes that can match (build_index -> RouteIndex). Pure.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from router.runtime import phone
from router.runtime.conditions import (
    All,
    Always,
    Anonymous,
    Condition,
    CrmField,
    CrmStatusIs,
    NumberCountry,
    NumberSet,
    PhoneNumberId,
    Tags,
)
from router.runtime.model import Decision, Route, RouteIndex
from router.runtime.schedconds import Open, ScheduleClock, ScheduleRoutes


def build_index(routes: Sequence[Route]) -> RouteIndex:
    """Index each route under its most selective top-level key so a decision looks at the
    few routes that can match instead of all of them. A route is indexed under a clause
    that its `when` requires (keys are ANDed), so skipping it when the key misses is exact."""
    ce: dict[str, list[int]] = defaultdict(list)
    cp: dict[str, list[int]] = defaultdict(list)
    cc: dict[str, list[int]] = defaultdict(list)
    de: dict[str, list[int]] = defaultdict(list)
    dp: dict[str, list[int]] = defaultdict(list)
    pn: dict[str, list[int]] = defaultdict(list)
    tg: dict[str, list[int]] = defaultdict(list)
    anonymous: list[int] = []
    tag_routes: list[int] = []
    tags_surely_needed = False
    sched: dict[str, tuple[ScheduleClock, list[int], list[int]]] = {}
    always: list[int] = []
    residual: list[Condition | None] = []
    keys = [_best_key(r.when.parts if isinstance(r.when, All) else (r.when,)) for r in routes]
    # a route that needs all of several tags is indexed under the one fewest routes name
    tag_count = Counter(t for k in keys if isinstance(k, Tags) for t in (*k.any, *k.all))
    for r, key in zip(routes, keys, strict=True):
        parts = r.when.parts if isinstance(r.when, All) else (r.when,)
        i = r.position
        assert i == len(residual), "routes are numbered in order"
        residual.append(_residual(parts, key))
        if isinstance(key, NumberSet):
            exact, prefix = (ce, cp) if key.which == "caller" else (de, dp)
            for n in key.exact:
                exact[n].append(i)
            for p in key.prefixes:
                prefix[p].append(i)
        elif isinstance(key, PhoneNumberId):
            for x in key.ids:
                pn[x].append(i)
        elif isinstance(key, Anonymous):
            anonymous.append(i)
        elif isinstance(key, NumberCountry):
            for c in key.countries:
                cc[c].append(i)
        elif isinstance(key, Tags):
            if not tags_surely_needed:
                tag_routes.append(i)
                # a route that reads the CRM before any call fact stops a CRM-pending
                # evaluation: later tag routes are never reached before the lookup
                tags_surely_needed = isinstance(parts[0], Tags | CrmField | CrmStatusIs)
            rarest = min(sorted(key.all), key=tag_count.__getitem__, default=None)
            for t in key.any if rarest is None else (rarest,):
                tg[t].append(i)
        elif isinstance(key, Open):
            entry = sched.setdefault(key.schedule.name, (key.clock, [], []))
            (entry[1] if key.open else entry[2]).append(i)
        else:
            always.append(i)

    def freeze(d: Mapping[str, list[int]]) -> dict[str, tuple[int, ...]]:
        return {k: tuple(sorted(set(v))) for k, v in d.items()}

    return RouteIndex(
        caller_exact=freeze(ce),
        caller_prefix=freeze(cp),
        caller_prefix_lengths=tuple(sorted({len(p) for p in cp})),
        caller_country=freeze(cc),
        caller_country_codes=frozenset(code for region in cc for code in phone.calling_codes(region)),
        dialled_exact=freeze(de),
        dialled_prefix=freeze(dp),
        dialled_prefix_lengths=tuple(sorted({len(p) for p in dp})),
        phone_number_id=freeze(pn),
        anonymous=tuple(anonymous),
        tags=freeze(tg),
        tag_routes=tuple(tag_routes),
        schedules=ScheduleRoutes(tuple((s, tuple(o), tuple(c)) for s, o, c in sched.values())),
        always=tuple(always),
        residual=tuple(residual),
        decisions=tuple(Decision(r, r.then) for r in routes),
    )


def _residual(parts: Sequence[Condition], key: Condition | None) -> Condition | None:
    """What a route offered by the index under `key` still has to pass. The index offers a
    route only when its key holds, except tags (their index entry is only a first tag, and
    before the CRM lookup every tag route is offered), so those keep their test."""
    rest = list(parts)
    if key is not None and not isinstance(key, Tags):
        rest.remove(key)
    rest = [p for p in rest if not isinstance(p, Always)]
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else All(tuple(rest))


_RANK: dict[type, float] = {NumberSet: 0, PhoneNumberId: 1, Anonymous: 2, NumberCountry: 3, Tags: 4, Open: 5}


def _best_key(parts: Sequence[Condition]) -> Condition | None:
    best: Condition | None = None
    rank = 99.0
    for p in parts:
        r = _RANK.get(type(p), 99.0)
        if isinstance(p, NumberSet) and p.which == "dialled":
            r = 0.5
        if isinstance(p, Anonymous) and (p.which != "caller" or not p.expected):
            r = 99
        if isinstance(p, NumberCountry) and p.which != "caller":
            r = 99
        if isinstance(p, Tags) and not (p.any or p.all):
            r = 99
        if r < rank:
            best, rank = p, r
    return best
