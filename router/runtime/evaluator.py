"""Stage 5: evaluate(policy, facts) -> Decision. Pure: no I/O, no clock; total and deterministic.

The fast path asks the route index for the few candidate routes; `explain` walks every
route in order and records why each did or did not match. Both give the same decision
(a property the tests check on random facts).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from router.runtime import phone
from router.runtime.conditions import All, AnyOf, Condition, CrmField, CrmStatusIs, Not, Tags
from router.runtime.facttypes import Facts, NeedCrm
from router.runtime.model import Decision, Policy, Route, RouteIndex, Step

_NEED_CRM = Decision(None, None, needs_crm=True)
_MERGE_ABOVE = 64  # candidates beyond this are merged lazily: the first few usually decide


def candidates(index: RouteIndex, facts: Facts) -> Iterable[int]:
    """Route positions, ascending, that the index cannot rule out. A position may repeat
    (testing a route twice gives the same answer, so that costs less than removing it)."""
    found: list[tuple[int, ...]] = []
    if index.always:
        found.append(index.always)
    c = facts.caller
    if c is None:
        if index.anonymous:
            found.append(index.anonymous)
    else:
        if (x := index.caller_exact.get(c)) is not None:
            found.append(x)
        for n in index.caller_prefix_lengths:
            if (x := index.caller_prefix.get(c[:n])) is not None:
                found.append(x)
        # the country only when the caller's calling code, if known, has a routed region
        codes = index.caller_country_codes
        if (
            codes
            and ((code := phone.known_code(c)) is None or code in codes)
            and (x := index.caller_country.get(phone.country_of(c) or "")) is not None
        ):
            found.append(x)
    d = facts.dialled
    if d is not None:
        if (x := index.dialled_exact.get(d)) is not None:
            found.append(x)
        for n in index.dialled_prefix_lengths:
            if (x := index.dialled_prefix.get(d[:n])) is not None:
                found.append(x)
    p = facts.phone_number_id
    if p is not None and (x := index.phone_number_id.get(p)) is not None:
        found.append(x)
    if index.tag_routes:
        if facts.crm_status is None:
            found.append(index.tag_routes)
        else:
            for t in facts.tags:
                if (x := index.tags.get(t)) is not None:
                    found.append(x)
    if index.schedules and (x := index.schedules.at(facts)):
        found.append(x)
    if len(found) <= 1:
        return found[0] if found else ()
    if sum(map(len, found)) > _MERGE_ABOVE:
        return heapq.merge(*found)
    merged: list[int] = []
    for x in found:
        merged += x
    merged.sort()  # timsort merges the sorted runs
    return merged


def first_match(routes: Sequence[Route], index: RouteIndex, facts: Facts) -> Decision | None:
    """The decision of the first route that matches, None when none does."""
    residual = index.residual
    try:
        for i in candidates(index, facts):
            rest = residual[i]
            if rest is None or rest.test(facts):
                return index.decisions[i]
    except NeedCrm:
        return _NEED_CRM
    return None


def asks_crm_first(index: RouteIndex) -> bool:
    """Whether every evaluation of a call whose CRM facts are not in yet stops at once for the
    lookup: the route at position 0 is offered for every such call (no index key, or a tag
    route: before the lookup every tag route is offered) and what it still tests begins
    with a CRM fact, which raises NeedCrm. The server then looks the caller up without
    evaluating first: the same decision, one evaluation fewer."""
    if not index.residual or not (index.always[:1] == (0,) or index.tag_routes[:1] == (0,)):
        return False
    rest = index.residual[0]
    first = rest.parts[0] if isinstance(rest, All) and rest.parts else rest
    return isinstance(first, Tags | CrmField | CrmStatusIs)


def evaluate(policy: Policy, facts: Facts) -> Decision:
    """The decision for an assistant-request: the first matching route, else the default."""
    return first_match(policy.routes, policy.index, facts) or Decision(None, policy.default)


def evaluate_transfer(policy: Policy, facts: Facts) -> Decision:
    """The decision for a transfer-destination-request; target None when nothing matches."""
    return first_match(policy.transfers, policy.transfer_index, facts) or Decision(None, None)


def evaluate_linear(policy: Policy, facts: Facts) -> Decision:
    """The same decision by scanning every route: the baseline for benchmarks and tests."""
    try:
        for r in policy.routes:
            if r.when.test(facts):
                return Decision(r, r.then)
    except NeedCrm:
        return _NEED_CRM
    return Decision(None, policy.default)


def explain(policy: Policy, facts: Facts, *, transfer: bool = False) -> Decision:
    """The decision with one Step per route tried, in order, up to the match."""
    steps: list[Step] = []
    routes = policy.transfers if transfer else policy.routes
    for r in routes:
        try:
            ok, reason = explain_condition(r.when, facts)
        except NeedCrm:
            steps.append(Step(r.id, False, "needs the CRM lookup first"))
            return Decision(None, None, needs_crm=True, trace=tuple(steps))
        except TimeoutError:  # a regex past its time limit: the server answers the fallback
            steps.append(Step(r.id, False, "a regex ran past its time limit: the call gets the fallback"))
            return Decision(None, policy.fallback, trace=tuple(steps))
        steps.append(Step(r.id, ok, reason))
        if ok:
            return Decision(r, r.then, trace=tuple(steps))
    return Decision(None, None if transfer else policy.default, trace=tuple(steps))


def explain_condition(cond: Condition, facts: Facts) -> tuple[bool, str]:
    """Whether `cond` holds and why: the first part that failed, or what matched."""
    if isinstance(cond, All):
        reasons = []
        for part in cond.parts:
            ok, why = explain_condition(part, facts)
            if not ok:
                return False, why
            reasons.append(why)
        return True, "; ".join(reasons)
    if isinstance(cond, AnyOf):
        whys = []
        for part in cond.parts:
            ok, why = explain_condition(part, facts)
            if ok:
                return True, why
            whys.append(why)
        return False, "none of: " + " | ".join(whys)
    if isinstance(cond, Not):
        ok, why = explain_condition(cond.part, facts)
        return (not ok), f"not ({why})"
    ok = cond.test(facts)
    actual = cond.actual(facts)
    verdict = "yes" if ok else "no"
    return ok, f"{cond.describe()}: {verdict}" + (f" ({actual})" if actual else "")
