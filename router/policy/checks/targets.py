"""Stage 3 checks: targets well formed (one kind, overrides, splits, inline Vapi payloads), retired
workflows, tool-call conditions in their place. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from router.errors import PolicyError
from router.policy.checks.context import Context, Where
from router.policy.compilebase import PRIMARY
from router.policy.document import pointer_of
from router.policy.replycheck import constrained_spots
from router.policy.retired import RETIRED, retired_keys
from router.policy.toolroutes import (
    TOOL_CONTEXTS,
    destination_kind,
    misplaced_keys,
    named_use_problem,
    tool_conditions,
)
from router.policy.vapi_payloads import check_payload
from router.runtime.model import OVERRIDES

# The kinds a target may be, as lint offers them: a retired kind (workflowId, workflow) still
# counts as the target's kind, so using one gets [vapi-retired] alone, but it is never offered.
OFFERED = tuple(k for k in PRIMARY if k not in RETIRED)
_REFERENCE = re.compile(r"\$\{[^}]*\}")
FALLBACK_TEMPLATE = (
    "the fallback answers when a call's own facts fail; a ${…} value here can make a reply "
    "Vapi refuses (a field Vapi limits, or the reply's choice left empty): write the value out"
)


def targets_well_formed(ctx: Context) -> Iterator[PolicyError]:
    fallback = {id(raw) for _, raw in ctx.fallback_targets()}
    for w, raw, context in ctx.all_targets():
        if not isinstance(raw, dict):
            if context in TOOL_CONTEXTS and isinstance(raw, str) and raw in ctx.targets:
                kind = _kind(ctx.targets[raw][1])
                if kind not in ("destination", "error", None):
                    yield w.error(
                        f'a {context} answers with a destination or an error; target "{raw}" is {kind}',
                        "bad-transfer-target",
                    )
            if isinstance(raw, str) and raw in ctx.targets:
                why = named_use_problem(ctx.targets[raw][1], context)
                if why:
                    yield w.error(
                        f'target "{raw}" cannot answer an assistant-request: {why}', "bad-target-use"
                    )
            continue
        kinds = [k for k in PRIMARY if k in raw]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            yield w.error(f"a target needs exactly one of {', '.join(OFFERED)}; found {found}", "target-kind")
            continue
        kind = kinds[0]
        for key in ("assistantOverrides", "squadOverrides", "workflowOverrides"):
            if key in raw and OVERRIDES.get(kind) != key:
                wanted = OVERRIDES.get(kind)
                hint = f"; use {wanted}" if wanted else f"; a {kind} target takes no overrides"
                yield w.at(key).error(f"{key} does not go with {kind}{hint}", "bad-overrides", key=True)
        if context in TOOL_CONTEXTS and kind not in ("destination", "error", "split"):
            yield w.error(
                f"a {context} answers with a destination or an error, not {kind}", "bad-transfer-target"
            )
        for key, message in misplaced_keys(raw, context):
            yield w.at(key).error(message, "bad-tool-reply", key=True)
        if kind == "split" and isinstance(raw["split"], list):
            weights = [v.get("weight") for v in raw["split"] if isinstance(v, dict)]
            if all(isinstance(x, int) for x in weights) and sum(weights) <= 0:  # type: ignore[arg-type]
                yield w.at("split").error(
                    "split weights add up to 0; give at least one variant a weight", "bad-split"
                )
            for i, x in enumerate(weights):
                if x == 0:
                    yield w.at("split", i, "weight").error(
                        "a variant with weight 0 never answers", "bad-split", severity="warning"
                    )
        for key in (kind, "assistantOverrides", "squadOverrides", "workflowOverrides", "message"):
            if key in raw and isinstance(raw[key], dict):
                payload = destination_kind(context) if key == "destination" else key
                for p in check_payload(payload, raw[key]):
                    yield Where(w.doc, w.pointer + pointer_of(key) + p.pointer).error(
                        p.message,
                        p.code,
                        key=p.code in ("vapi-unknown-field", "vapi-legacy-field"),
                        # Vapi's spec drifts: a field newer than it is a warning (--strict: error)
                        severity="warning" if p.code == "vapi-unknown-field" else "error",
                    )
                for spot in constrained_spots(key, raw[key], _has_template):
                    where = Where(w.doc, w.pointer + pointer_of(key) + spot)
                    if id(raw) in fallback:  # nothing to fall back to: lint refuses it
                        yield where.error(FALLBACK_TEMPLATE, "fallback-template")
                        continue
                    yield where.error(
                        "a ${…} value feeds a field Vapi limits (length, pattern, enum or format); "
                        "a call whose value breaks it gets the fallback",
                        "vapi-template-limit",
                        severity="warning",
                    )
        if id(raw) in fallback and _all_template(raw[kind]):  # `error: "${crm.x}"` may render ""
            yield w.at(kind).error(FALLBACK_TEMPLATE, "fallback-template")


def _has_template(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _all_template(value: Any) -> bool:
    """A text that is nothing but ${…} references: it renders "" when they have no value."""
    return _has_template(value) and _REFERENCE.sub("", value) == ""


def workflows_retired(ctx: Context) -> Iterator[PolicyError]:
    """workflowId/workflow/workflowOverrides: Vapi no longer runs workflows (DESIGN §9)."""
    for w, raw, _ in ctx.all_targets():
        for key, message in retired_keys(raw):
            yield w.at(key).error(message, "vapi-retired", key=True)


def tool_conditions_placed(ctx: Context) -> Iterator[PolicyError]:
    """`parameters` and `assistant` read a tool call: only transfers and handoffs have one."""
    for w, raw, section in ctx.routes:
        if section == "routes":
            for path, key in tool_conditions(raw.get("when")):
                yield w.at("when", *path).error(
                    f"`{key}` reads the tool call of a transfer or handoff; an assistant-request has none",
                    "bad-condition",
                    key=True,
                )


def _kind(raw: Any) -> str | None:
    if isinstance(raw, dict):
        return next((k for k in PRIMARY if k in raw), None)
    return None
