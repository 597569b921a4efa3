"""What decides a call's answer, compared across two policy sets by `diff`. [pure]

`outcome_key` is equal for two calls of a region exactly when nothing about their answers
can differ: the route, the target as compiled (not where it was written) and, for a target
with ${…} templates that may fail for some call, the fallback too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.runtime.decide import evaluate_for
from router.runtime.facttypes import Facts
from router.runtime.model import Policy, Target, Template


def facts_for(policy: Policy, facts: Facts) -> Facts:
    """The call as `policy` sees it: without a CRM the status is disabled (no tags, no
    fields); with one an anonymous caller is not_found (nothing to look up), and only an
    `ok` lookup carries tags and fields."""
    if policy.crm is None:
        return facts.with_crm("disabled", frozenset(), {})
    if facts.caller is None or facts.crm_status in (None, "disabled"):
        return facts.with_crm("not_found", frozenset(), {})
    if facts.crm_status != "ok":
        return facts.with_crm(facts.crm_status, frozenset(), {})
    return facts


def _shape(value: Any) -> Any:
    if isinstance(value, Template):
        return ("${}", value.parts)
    if isinstance(value, Mapping):
        return tuple(sorted((k, _shape(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_shape(v) for v in value)
    return value


def target_shape(target: Target | None) -> Any:
    """What a target answers for any call, without where it was written."""
    if target is None:
        return None
    variants = tuple((v.upto, target_shape(v.target)) for v in target.variants)
    return (target.name, target.kind, _shape(target.body), variants, target.total_weight, target.salt)


def _templated(target: Target) -> bool:
    return target.templated or any(_templated(v.target) for v in target.variants)


def outcome_key(policy: Policy, facts: Facts, *, transfer: bool = False) -> Any:
    """What decides this call's answer under `policy`, equal for every call of its region."""
    decision = evaluate_for(policy, facts_for(policy, facts), transfer=transfer)
    target = decision.target
    fallback = target_shape(policy.fallback) if target is not None and _templated(target) else None
    return (decision.route.id if decision.route else None, target_shape(target), fallback)
