"""Target + facts -> the Vapi reply JSON: sticky splits and ${…} templates. Pure.

Vapi's own {{…}} LiquidJS placeholders are ordinary text here and pass through untouched.
"""

from __future__ import annotations

import hashlib
from typing import Any

from router.model import Facts, Target, Template


class TemplateError(Exception):
    """A ${…} reference without a value for this call (e.g. a CRM field the record lacks)."""


def sticky_key(facts: Facts) -> str:
    """Who a split sticks to: the caller, or the call id when the caller is anonymous."""
    return facts.caller or facts.call_id or ""


def choose(target: Target, facts: Facts) -> Target:
    """Follow splits down to the target that answers; the same caller always lands alike."""
    key = sticky_key(facts)
    while target.kind == "split":
        digest = hashlib.blake2b(f"{target.salt}|{key}".encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest, "big") % target.total_weight
        target = next(v.target for v in target.variants if bucket < v.upto)
    return target


def _value(ref: tuple[str, str], facts: Facts, route: str, lenient: bool) -> str:
    name, sub = ref
    if name == "crm":
        value = facts.crm.get(sub)
        if value is None:
            if lenient:
                return ""
            raise TemplateError(
                f"${{crm.{sub}}} has no value for this caller (crm_status {facts.crm_status})"
            )
        return value
    if name == "caller":
        return facts.caller or ""
    if name == "dialled":
        return facts.dialled or ""
    if name == "call.id":
        return facts.call_id or ""
    if name == "route":
        return route
    if lenient:
        return ""
    raise TemplateError(f"${{{name}}} is not a known reference")


def _fill(value: Any, facts: Facts, route: str, lenient: bool) -> Any:
    if isinstance(value, Template):
        return "".join(p if isinstance(p, str) else _value(p, facts, route, lenient) for p in value.parts)
    if isinstance(value, dict):
        return {k: _fill(v, facts, route, lenient) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, facts, route, lenient) for v in value]
    return value


def render(
    target: Target, facts: Facts, route: str, *, lenient: bool = False
) -> tuple[dict[str, Any], Target]:
    """(reply, the leaf target that produced it). Raises TemplateError unless `lenient`,
    which fills missing values with "" (used for the fallback, which must never fail)."""
    leaf = choose(target, facts)
    if not leaf.templated:
        return dict(leaf.body), leaf
    filled: dict[str, Any] = _fill(dict(leaf.body), facts, route, lenient)
    if not lenient and _empty_choice(leaf.kind, filled):
        raise TemplateError(f"the {leaf.kind} rendered empty for this call")
    return filled, leaf


def _empty_choice(kind: str, reply: dict[str, Any]) -> bool:
    """Whether templates left the reply's one choice empty (Vapi would refuse it)."""
    value = reply.get(kind)
    if kind == "destination" and isinstance(value, dict):
        return not value.get("number" if value.get("type") == "number" else "sipUri")
    return value in ("", None)
