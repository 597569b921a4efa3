"""Stage 3: semantic checks over a schema-valid policy set; every problem, none raised. Pure.

CHECKS is an ordered tuple of named generators, one concern each (as yamllint's rules), kept in
the modules of this package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from router.errors import PolicyError
from router.policy.checks.context import Context, build_context
from router.policy.checks.crm import crm_condition_fields_known, crm_conditions_need_crm, crm_valid
from router.policy.checks.numbers import numbers_valid
from router.policy.checks.references import (
    references_resolve,
    templates_resolve,
    unique_route_ids,
    unused_names,
)
from router.policy.checks.routes import unreachable_routes
from router.policy.checks.settings import default_present, schedules_valid, settings_valid, zones_name_places
from router.policy.checks.targets import targets_well_formed, tool_conditions_placed, workflows_retired
from router.policy.document import Document
from router.policy.statechecks import state_references_resolve, state_values_valid

Check = Callable[[Context], Iterator[PolicyError]]
CHECKS: tuple[Check, ...] = (
    default_present,
    settings_valid,
    crm_valid,
    unique_route_ids,
    references_resolve,
    numbers_valid,
    targets_well_formed,
    workflows_retired,
    tool_conditions_placed,
    templates_resolve,
    schedules_valid,
    zones_name_places,
    crm_conditions_need_crm,
    crm_condition_fields_known,
    unreachable_routes,
    unused_names,
    state_references_resolve,
    state_values_valid,
)


def check(
    docs: Sequence[Document], *, crm_fields: frozenset[str] | None = None, tolerant: bool = False
) -> Iterator[PolicyError]:
    """Every semantic problem of a policy set (duplicates across files first).

    `tolerant` runs the checks on a set that already failed the schema, so one run shows
    every problem; a check that trips over a malformed value is skipped rather than crash."""
    try:
        ctx = build_context(docs, crm_fields)
    except Exception:
        if not tolerant:
            raise
        return
    yield from ctx.problems
    for rule in CHECKS:
        try:
            found = list(rule(ctx))
        except Exception:
            if not tolerant:
                raise
            continue
        yield from found
