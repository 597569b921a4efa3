"""`test --coverage`: what a policy set can answer with, and which of it the cases reached. [pure]

Counted: every route, every transfer and handoff route, the `default`, and every arm of
every split (a named split once, whoever uses it; an inline split under its route's id).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from router.runtime.facttypes import Facts
from router.runtime.model import Decision, Policy, Target
from router.runtime.replies import arms_taken


@dataclass(frozen=True, slots=True)
class Coverage:
    total: tuple[str, ...]  # every item, in policy order
    missed: tuple[str, ...]

    @property
    def reached(self) -> int:
        return len(self.total) - len(self.missed)

    @property
    def percent(self) -> float:
        return 100.0 * self.reached / len(self.total) if self.total else 100.0


def _split_items(owner: str, target: Target) -> Iterator[str]:
    if target.kind != "split":
        return
    n = len(target.variants)
    for i, variant in enumerate(target.variants):
        label = f"{owner} arm {i + 1} of {n}"
        yield f"split {label}"
        yield from _split_items(variant.target.name or label, variant.target)


def _owner(target: Target, route: str) -> str:
    return target.name or route


def items(policy: Policy) -> list[str]:
    """Every coverage item of a policy, in the order the set is read."""
    out: list[str] = []
    seen_named: set[str] = set()

    def splits(target: Target, route: str) -> None:
        if target.name:
            if target.name in seen_named:
                return
            seen_named.add(target.name)
        out.extend(_split_items(_owner(target, route), target))

    for kind, routes in (
        ("route", policy.routes),
        ("transfer", policy.transfers),
        ("handoff", policy.handoffs),
    ):
        for r in routes:
            out.append(f"{kind} {r.id}")
            splits(r.then, r.id)
    out.append("default")
    splits(policy.default, "default")
    return list(dict.fromkeys(out))


def reached_items(kind: str, decision: Decision, facts: Facts) -> tuple[str, ...]:
    """The items one decided call reaches (`kind`: route, transfer or handoff)."""
    route = decision.route.id if decision.route else None
    if route is None and kind != "route":
        return ()  # no transfer/handoff route took it: nothing to count
    out = [f"{kind} {route}" if route else "default"]
    if decision.target is not None:
        owner = _owner(decision.target, route or "default")
        for split, i in arms_taken(decision.target, facts):
            label = f"{owner} arm {i + 1} of {len(split.variants)}"
            out.append(f"split {label}")
            owner = split.variants[i].target.name or label
    return tuple(out)


def coverage(policy: Policy, reached: Iterable[Sequence[str]]) -> Coverage:
    every = items(policy)
    hit = {item for r in reached for item in r}
    return Coverage(tuple(every), tuple(i for i in every if i not in hit))
