"""Stage 3, inline Vapi payloads: a jsonschema ValidationError -> messages that say what would be
right (for vapi_payloads.check_payload). Pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import jsonschema
from jsonschema.exceptions import ValidationError

from router.errors import did_you_mean
from router.policy import vapi_spec

BASE: Final = jsonschema.Draft202012Validator
_LONGEST_LISTED_ENUM: Final = 30  # serverMessages (28) is listed whole; languages are not


def vapi_schema() -> dict[str, Any]:
    return vapi_spec.schema()  # the bundled subset, or --vapi-spec's


_Found = Iterator[tuple[Sequence[str | int], str, str]]


def explain(error: ValidationError, kind: str) -> _Found:
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
        yield from explain(sub, kind)


def _branch_types(branch: Mapping[str, Any]) -> list[str]:
    if "$ref" in branch:
        branch = vapi_schema()["$defs"][str(branch["$ref"]).rsplit("/", 1)[-1]]
    return _as_list(branch.get("type", []))


def _accepts_type(branch: Mapping[str, Any], instance: Any) -> bool:
    types = _branch_types(branch)
    return not types or any(_is_json_type(instance, t) for t in types)


def _is_json_type(instance: Any, json_type: str) -> bool:
    return bool(BASE.TYPE_CHECKER.is_type(instance, json_type))


def _needs(schema: Mapping[str, Any], label: str, name: str) -> str:
    noun = schema.get("x-noun", label)
    choices = schema.get("properties", {}).get(name, {}).get("enum")
    return f'{noun} needs "{name}"' + (f": {_one_of(choices)}" if choices else "")


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


def to_pointer(path: Sequence[str | int]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def sort_key(pointer: str) -> list[tuple[int, int, str]]:
    # Document order for list items: /members/2 before /members/10.
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in pointer.split("/")[1:]]
