"""Check inline Vapi payloads in policy targets against Vapi's field names, enums and limits (pure).

The schema is the router's own subset, router/policy/vapi.schema.json (made by tools/gen_vapi_schema.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final
from urllib.parse import urlsplit

import jsonschema
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from router.errors import did_you_mean
from router.policy import vapi_spec

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
_LONGEST_LISTED_ENUM: Final = 30  # serverMessages (28) is listed whole; languages are not
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
        for path, message, code in _explain(error, kind):
            # One missing field is reported once even when several keywords notice it.
            found.setdefault((_pointer(path), message), PayloadProblem(_pointer(path), message, code))
    for pointer in _unsendable(value, ""):
        found.setdefault((pointer, "unsendable"), PayloadProblem(pointer, _SIP_VERB, "vapi-unsendable"))
    return sorted(found.values(), key=lambda p: (_sort_key(p.pointer), p.message))


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


# --- the validator: built once --------------------------------------------------------------------


def _exempt_templates(keyword: Any) -> Any:
    """A `${…}` string is filled in at call time, so only its type can be checked at lint time."""

    def check(validator: Any, expected: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if isinstance(instance, str) and _TEMPLATE in instance:
            return iter(())
        result: Iterator[ValidationError] = keyword(validator, expected, instance, schema)
        return result

    return check


_BASE: Final = jsonschema.Draft202012Validator
_TemplateAware: Final[type[Validator]] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    _BASE,
    {
        name: _exempt_templates(_BASE.VALIDATORS[name])
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


def _schema() -> dict[str, Any]:
    return vapi_spec.schema()  # the bundled subset, or --vapi-spec's


@cache
def _validators() -> dict[str, Validator]:
    schema = _schema()
    return {
        kind: _TemplateAware({**schema, "$ref": f"#/$defs/{name}"}, format_checker=_FORMATS)
        for kind, name in _ROOTS.items()
    }


vapi_spec.on_change(_validators.cache_clear)


# --- jsonschema errors -> messages that say what would be right -------------------------------------

_Found = Iterator[tuple[Sequence[str | int], str, str]]


def _explain(error: ValidationError, kind: str) -> _Found:
    path = list(error.absolute_path)
    keyword = error.validator
    instance: Any = error.instance
    expected: Any = error.validator_value
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    label = _label(path, kind)
    if keyword == "additionalProperties":
        yield from _extra_fields(path, instance, schema)
    elif keyword in ("anyOf", "oneOf"):
        yield from _best_branch(error, kind)
    elif keyword == "type":
        yield path, f"{label} must be {_types(_as_list(expected))}, got {_json_type(instance)}", "vapi-type"
    elif keyword in ("enum", "const"):
        choices = list(expected) if keyword == "enum" else [expected]
        yield (
            path,
            f"{label} must be {_one_of(choices)}; got {_show(instance)}{_hint(instance, choices)}",
            "vapi-enum",
        )
    elif keyword == "required":
        for name in expected:
            if isinstance(instance, Mapping) and name not in instance:
                yield path, _needs(schema, label, name), "vapi-required"
    elif keyword in _RANGES:
        yield (
            path,
            f"{label} must be {_RANGES[keyword]} {_show(expected)}, got {_show(instance)}",
            "vapi-range",
        )
    elif keyword in _LENGTHS:
        bound, unit = _LENGTHS[keyword]
        yield path, f"{label} must be {bound} {expected} {unit}, got {len(instance)}", "vapi-length"
    elif keyword == "format":
        yield path, f"{label} must be a {expected.upper()}, got {_show(instance)}", "vapi-format"
    else:  # a keyword the subset schema does not use today; still say something true
        yield path, f"{label}: {error.message}", "vapi-invalid"


_RANGES: Final = {
    "minimum": "at least",
    "maximum": "at most",
    "exclusiveMinimum": "greater than",
    "exclusiveMaximum": "less than",
}
_LENGTHS: Final = {
    "minLength": ("at least", "characters"),
    "maxLength": ("at most", "characters"),
    "minItems": ("at least", "items long"),
    "maxItems": ("at most", "items long"),
}


def _extra_fields(path: list[str | int], instance: Any, schema: Mapping[str, Any]) -> _Found:
    known = schema.get("properties", {})
    legacy: Mapping[str, str] = schema.get("x-legacy", {})
    noun = schema.get("x-noun", "this object")
    for key in instance:
        if key in known:
            continue
        if key in legacy:
            yield [*path, key], f'"{key}" was removed from Vapi\'s API; {legacy[key]}', "vapi-legacy-field"
        else:
            yield (
                [*path, key],
                f'unknown field "{key}" for {noun}{did_you_mean(str(key), known)}',
                "vapi-unknown-field",
            )


def _best_branch(error: ValidationError, kind: str) -> _Found:
    """Explain a failed union by the branch the value was evidently meant for.

    OpenAPI oneOf is read as anyOf (PROTOCOL §3.8): the spec's unions overlap.
    """
    union: Any = error.validator_value
    branches: list[Mapping[str, Any]] = list(union)
    path = list(error.absolute_path)
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    if all(set(branch) == {"required"} for branch in branches):
        names = " or ".join(f'"{name}"' for branch in branches for name in branch["required"])
        yield path, f"{schema.get('x-noun', _label(path, kind))} needs {names}", "vapi-required"
        return
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        by_branch.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    fits = [i for i, branch in enumerate(branches) if _accepts_type(branch, error.instance)]
    if not fits:
        wanted = [t for branch in branches for t in _branch_types(branch)]
        message = f"{_label(path, kind)} must be {_types(wanted)}, got {_json_type(error.instance)}"
        yield path, message, "vapi-type"
        return
    best = min(fits, key=lambda i: len(by_branch.get(i, ())))  # ties go to the first listed
    for sub in by_branch.get(best, ()):
        yield from _explain(sub, kind)


def _branch_types(branch: Mapping[str, Any]) -> list[str]:
    if "$ref" in branch:
        branch = _schema()["$defs"][str(branch["$ref"]).rsplit("/", 1)[-1]]
    return _as_list(branch.get("type", []))


def _accepts_type(branch: Mapping[str, Any], instance: Any) -> bool:
    types = _branch_types(branch)
    return not types or any(_is_json_type(instance, t) for t in types)


def _is_json_type(instance: Any, json_type: str) -> bool:
    return bool(_BASE.TYPE_CHECKER.is_type(instance, json_type))


def _needs(schema: Mapping[str, Any], label: str, name: str) -> str:
    noun = schema.get("x-noun", label)
    choices = schema.get("properties", {}).get(name, {}).get("enum")
    return f'{noun} needs "{name}"' + (f": {_one_of(choices)}" if choices else "")


# --- wording ------------------------------------------------------------------------------------------

_ARTICLES: Final = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "null",
}


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _types(types: list[str]) -> str:
    words = list(dict.fromkeys(_ARTICLES.get(t, t) for t in types))
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _json_type(value: Any) -> str:
    for json_type in ("null", "boolean", "integer", "number", "string", "object", "array"):
        if _is_json_type(value, json_type):
            return "number" if json_type == "integer" else json_type
    return type(value).__name__  # e.g. a YAML date that was meant to be a quoted string


def _one_of(choices: list[Any]) -> str:
    shown = ", ".join("null" if c is None else str(c) for c in choices[:_LONGEST_LISTED_ENUM])
    if len(choices) > _LONGEST_LISTED_ENUM:
        return f"one of Vapi's {len(choices)} values ({shown}, …)"
    return f"one of {shown}" if len(choices) > 1 else _show(choices[0])


def _hint(instance: Any, choices: list[Any]) -> str:
    if not isinstance(instance, str):
        return ""
    return did_you_mean(instance, [c for c in choices if isinstance(c, str)])


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _label(path: Sequence[str | int], kind: str) -> str:
    """The name an ops engineer sees in YAML: the nearest key, with list indexes after it."""
    indexes = ""
    for part in reversed(path):
        if isinstance(part, int):
            indexes = f"[{part}]{indexes}"
        else:
            return f'"{part}{indexes}"'
    shown = "destination" if kind.endswith("Destination") else kind
    return f'"{shown}{indexes}"'


def _pointer(path: Sequence[str | int]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _sort_key(pointer: str) -> list[tuple[int, int, str]]:
    # Document order for list items: /members/2 before /members/10.
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in pointer.split("/")[1:]]
