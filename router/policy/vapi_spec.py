"""Which Vapi schema the router checks payloads with: the bundled subset, or one derived from
a newer Vapi OpenAPI document (`--vapi-spec FILE`, `VAPI_ROUTER_VAPI_SPEC`). Pure but for
reading that one file.

Vapi regenerates its spec every few days (DESIGN §9, spec drift): a field added after this
release is an unknown field to the bundled subset; pointing `--vapi-spec` at the current
document makes it known without a new release of the router.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

from router.policy.vapi_derive import derive

ENV: Final = "VAPI_ROUTER_VAPI_SPEC"
_override: list[dict[str, Any]] = []  # the derived document in use instead of the bundled one


class VapiSpecError(ValueError):
    """The file given as --vapi-spec cannot be used (not JSON, not an OpenAPI document with the
    components the router checks)."""


@cache
def bundled() -> dict[str, Any]:
    text = resources.files("router.policy").joinpath("vapi.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema() -> dict[str, Any]:
    """The schema document in use: use_spec()'s, else VAPI_ROUTER_VAPI_SPEC's (read on first
    use: how serve's reload child and --workers processes get it), else the bundled one."""
    if _override:
        return _override[0]
    if not _env_read:
        _env_read.append(True)
        path = os.environ.get(ENV)
        if path:
            _override.append(from_openapi(path))
            return _override[0]
    return bundled()


_env_read: list[bool] = []


def from_openapi(path: str | Path) -> dict[str, Any]:
    """The router's subset derived from a Vapi OpenAPI document (JSON) at `path`."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        components = document["components"]["schemas"]
    except OSError as exc:
        raise VapiSpecError(f"--vapi-spec {path}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise VapiSpecError(f"--vapi-spec {path}: not a Vapi OpenAPI JSON document ({exc})") from exc
    try:
        return derive(components, Path(path).name)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise VapiSpecError(f"--vapi-spec {path}: lacks a component the router checks ({exc})") from exc


def use_spec(path: str | Path | None) -> None:
    """Check payloads against the subset of the OpenAPI document at `path` from now on (None:
    the bundled one again). Raises VapiSpecError, leaving the schema in use unchanged."""
    derived = from_openapi(path) if path else None
    _env_read.append(True)  # an explicit choice wins over the environment
    _override.clear()
    if derived is not None:
        _override.append(derived)
    for hook in _on_change:
        hook()


_on_change: list[Any] = []  # cache_clear of what was built from schema()


def on_change(hook: Any) -> None:
    _on_change.append(hook)


def ended_reasons() -> frozenset[str]:
    """Vapi's endedReason values (the label values of router_call_outcomes_total)."""
    return _ended(id(schema()))


@cache
def _ended(_key: int) -> frozenset[str]:
    return frozenset(schema().get("x-ended-reasons", ()))
