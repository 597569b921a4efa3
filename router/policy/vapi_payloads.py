"""Check inline Vapi payloads in policy targets against Vapi's field names, enums and limits (pure).

The schema is the router's own subset, router/policy/vapi.schema.json (made by tools/gen_vapi_schema.py);
vapi_explain.py words the problems.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Final
from urllib.parse import urlsplit

import jsonschema
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from router.policy import vapi_spec
from router.policy.vapi_explain import BASE, explain, sort_key, to_pointer, vapi_schema

KINDS: Final = (
    "assistant",
    "assistantOverrides",
    "squad",
    "squadOverrides",
    "workflow",
    "workflowOverrides",
    "destination",
    "transferDestination",
    "handoffDestination",
    "message",
)
"""The kinds of Vapi payload this module checks: a policy target's keys, plus the destination
of a transfer (number, SIP or assistant) and of a handoff, and a transfer's tool message."""


_ROOTS: Final = {
    "assistant": "CreateAssistantDTO",
    "assistantOverrides": "AssistantOverrides",
    "squad": "CreateSquadDTO",
    "squadOverrides": "AssistantOverrides",  # Vapi has no separate schema for it
    "workflow": "CreateWorkflowDTO",
    "workflowOverrides": "WorkflowOverrides",
    "destination": "Destination",
    "transferDestination": "TransferDestination",
    "handoffDestination": "HandoffDestination",
    "message": "ToolMessage",
}


_TEMPLATE: Final = "${"


@dataclass(frozen=True, slots=True)
class PayloadProblem:
    """One way a payload breaks Vapi's schema; `pointer` is RFC 6901, relative to the payload."""

    pointer: str
    message: str
    code: str


def check_payload(kind: str, value: Any) -> list[PayloadProblem]:
    """Every problem in `value` as the payload of target key `kind` (one of KINDS), sorted by pointer."""
    if kind not in _ROOTS:
        raise ValueError(f"unknown payload kind {kind!r}; one of {', '.join(KINDS)}")
    found: dict[tuple[str, str], PayloadProblem] = {}
    for error in _validators()[kind].iter_errors(value):
        for path, message, code in explain(error, kind):
            # One missing field is reported once even when several keywords notice it.
            found.setdefault((to_pointer(path), message), PayloadProblem(to_pointer(path), message, code))
    for pointer in _unsendable(value, ""):
        found.setdefault((pointer, "unsendable"), PayloadProblem(pointer, _SIP_VERB, "vapi-unsendable"))
    return sorted(found.values(), key=lambda p: (sort_key(p.pointer), p.message))


# Vapi's published schema declares TransferPlan.sipVerb an object with string values, so no
# value can pass it: a reply carrying one fails Vapi's own schema (and check_reply.py).
_SIP_VERB = (
    '"sipVerb" cannot be sent: Vapi\'s published schema types it as an object, so every value fails '
    "validation; leave it out (the default is refer)"
)


def _unsendable(value: Any, pointer: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{pointer}/{key}"
            if key == "sipVerb" and pointer.endswith("/transferPlan"):
                yield here
            else:
                yield from _unsendable(item, here)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unsendable(item, f"{pointer}/{i}")


def _exempt_templates(keyword: Any) -> Any:
    """A `${…}` string is filled in at call time, so only its type can be checked at lint time."""

    def check(validator: Any, expected: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if isinstance(instance, str) and _TEMPLATE in instance:
            return iter(())
        result: Iterator[ValidationError] = keyword(validator, expected, instance, schema)
        return result

    return check


_TemplateAware: Final[type[Validator]] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    BASE,
    {
        name: _exempt_templates(BASE.VALIDATORS[name])
        for name in ("enum", "pattern", "minLength", "maxLength", "format")
    },
)


_FORMATS: Final = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    # Vapi fetches these (background sounds); a relative path or bare word cannot be fetched.
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


@cache
def _validators() -> dict[str, Validator]:
    schema = vapi_schema()
    return {
        kind: _TemplateAware({**schema, "$ref": f"#/$defs/{name}"}, format_checker=_FORMATS)
        for kind, name in _ROOTS.items()
    }


vapi_spec.on_change(_validators.cache_clear)
