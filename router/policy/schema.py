"""Stage 2: Document -> problems from the policy JSON Schema, each at the YAML line:col. Pure.

jsonschema's own messages quote Python reprs; we render our own, name the key at fault,
point unknown keys at the key itself and add did-you-mean hints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from router.errors import PolicyError, did_you_mean
from router.policy.document import Document, escape

_JSON_TYPES = {
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}
_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_NAME_RULE = 'use letters, digits, "-", "_" and "." (start with a letter or digit)'


@cache
def policy_schema() -> dict[str, Any]:
    """The policy JSON Schema (package data), as printed by `vapi-router schema`."""
    text = resources.files("router.policy").joinpath("policy.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(policy_schema())


@cache
def _fast_validator() -> Any:
    import fastjsonschema

    # fastjsonschema speaks draft 7; the schema only uses keywords that mean the same there.
    schema = {**policy_schema(), "$schema": "http://json-schema.org/draft-07/schema#"}
    return fastjsonschema.compile(schema)


def is_valid(data: Any) -> bool:
    """Whether `data` passes the schema: ~10x faster than collecting positioned problems."""
    import fastjsonschema

    try:
        _fast_validator()(data)
    except fastjsonschema.JsonSchemaException:
        return False
    except Exception:  # a validator surprise must not accept anything; the slow path decides
        return False
    return True


def type_name(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return f"the decimal number {value}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pointer(path: Any) -> str:
    return "".join("/" + escape(str(p)) for p in path)


def _subject(path: Any) -> str:
    """How a message names the value at `path`: 'routes[3].when.caller'."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "the policy"


def validate(doc: Document) -> Iterator[PolicyError]:
    """Every schema problem of one document (the whole file must be a mapping)."""
    if doc.data is None:
        yield doc.error("", "the file is empty; a policy starts with `version: 1`", "empty-file")
        return
    if not isinstance(doc.data, dict):
        yield doc.error(
            "",
            f"a policy file must be a mapping (version, routes, ...), got {type_name(doc.data)}",
            "bad-type",
        )
        return
    for error in _validator().iter_errors(doc.data):
        yield from _render(doc, error)


def _render(doc: Document, e: ValidationError) -> Iterator[PolicyError]:
    path = list(e.absolute_path)
    pointer = _pointer(path)
    subject = _subject(path)
    kind = e.validator
    # jsonschema types these as Any | Unset; on a reported error they are always set
    value: Any = e.validator_value
    instance: Any = e.instance
    schema = e.schema if isinstance(e.schema, dict) else {}
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = schema.get("properties", {})
        for key in instance:
            if key not in known:
                where = f" in {subject}" if path else ""
                hint = did_you_mean(key, known)
                yield doc.error(
                    f"{pointer}/{escape(key)}", f'unknown key "{key}"{where}{hint}', "unknown-key", key=True
                )
        return
    if "propertyNames" in e.schema_path:
        name = str(instance)
        yield doc.error(
            f"{pointer}/{escape(name)}",
            f'"{name}" is not a valid name: {_NAME_RULE}',
            "bad-name",
            key=True,
        )
        return
    if kind == "required":
        missing = [k for k in value if k not in instance]
        for key in missing:
            yield doc.error(pointer, f'{subject} needs "{key}"', "missing-key")
        return
    if kind == "type":
        wanted = value if isinstance(value, list) else [value]
        names = [_JSON_TYPES.get(str(w), str(w)) for w in wanted]
        choice = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        extra = ""
        if isinstance(instance, int | float) and "string" in wanted:  # bool is an int too
            extra = " (quote it)"
        elif isinstance(instance, str) and {"integer", "number"} & set(wanted) and _is_number(instance):
            extra = " (remove the quotes)"
        yield doc.error(pointer, f"{subject} must be {choice}, got {type_name(instance)}{extra}", "bad-type")
        return
    if kind == "const":
        got = json.dumps(instance) if isinstance(instance, str | int | float | bool) else type_name(instance)
        yield doc.error(pointer, f"{subject} must be {json.dumps(value)}, got {got}", "bad-value")
        return
    if kind == "enum":
        options = [str(v) for v in value]
        hint = did_you_mean(str(instance), options)
        yield doc.error(
            pointer,
            f"{subject} must be one of {', '.join(options)}, got {json.dumps(instance)}{hint}",
            "bad-value",
        )
        return
    if kind in ("minimum", "maximum"):
        bound = "at least" if kind == "minimum" else "at most"
        yield doc.error(pointer, f"{subject} must be {bound} {value}, got {instance}", "bad-value")
        return
    if kind == "minItems":
        yield doc.error(pointer, f"{subject} must not be empty", "bad-value")
        return
    if kind == "minLength":
        yield doc.error(pointer, f"{subject} must not be empty", "bad-value")
        return
    if kind == "pattern":
        if value == _NAME_PATTERN:
            message = f"{subject} {json.dumps(instance)} is not a valid name: {_NAME_RULE}"
            yield doc.error(pointer, message, "bad-name")
        else:
            what = schema.get("description", value)
            yield doc.error(
                pointer, f"{subject} {json.dumps(instance)} is not valid; write {what}", "bad-value"
            )
        return
    yield doc.error(pointer, f"{subject}: {e.message}", "schema")
