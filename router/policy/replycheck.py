"""A rendered reply checked against Vapi's limits (router/vapi.schema.json) before it is sent. Pure.

Lint checks a reply's literal text; a `${…}` value (a CRM field, the caller) is known only
per call, and a CRM that answers `"x"` for a phone number would make a 200 whose body Vapi
refuses. So a reply whose templates feed a constrained field (an enum, a pattern, a length,
a format) is checked once rendered; one that fails raises ReplyInvalid and the call gets the
policy's fallback, with the reason logged. Which targets need it is worked out once per
target by rendering probes ("" and 5,000 characters) into every template: a field that
refuses either is constrained. Lint warns about the same fields (`vapi-template-limit`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from router.policy.vapi_payloads import KINDS, check_payload
from router.runtime.model import Target, Template

UNKNOWN = "vapi-unknown-field"

PROBES = ("", "x" * 5000)
_MEMO_SIZE = 4096
# id(target) -> (target, whether its templates feed a constrained field); the target is kept
# so that its id is not reused while the entry lives
_memo: dict[int, tuple[Target, bool]] = {}


class ReplyInvalid(Exception):
    """A rendered reply that fails Vapi's schema; the message names where, never the value."""


def _probe(value: Any, text: str, templated: Callable[[Any], bool]) -> Any:
    if templated(value):
        return text
    if isinstance(value, Mapping):
        return {k: _probe(v, text, templated) for k, v in value.items()}
    if isinstance(value, list):
        return [_probe(v, text, templated) for v in value]
    return value


def _spots(value: Any, templated: Callable[[Any], bool], pointer: str = "") -> Iterator[str]:
    if templated(value):
        yield pointer
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _spots(v, templated, f"{pointer}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _spots(v, templated, f"{pointer}/{i}")


def constrained_spots(kind: str, payload: Any, templated: Callable[[Any], bool]) -> list[str]:
    """The pointers (in `payload`, a `kind` payload) of templated values that a value of the
    wrong shape or length would make fail Vapi's schema."""
    spots = set(_spots(payload, templated))
    found: set[str] = set()
    for text in PROBES:
        found.update(
            p.pointer for p in check_payload(kind, _probe(payload, text, templated)) if p.code != UNKNOWN
        )
    return sorted(found & spots)


def _is_template(value: Any) -> bool:
    return isinstance(value, Template)


def needs_check(leaf: Target) -> bool:
    """Whether a templated leaf's rendered reply must be checked (memoised per target)."""
    hit = _memo.get(id(leaf))
    if hit is not None and hit[0] is leaf:
        return hit[1]
    body = leaf.body
    flag = any(
        constrained_spots(kind, body[kind], _is_template)
        for kind in KINDS
        if isinstance(body.get(kind), Mapping)
    )
    if len(_memo) >= _MEMO_SIZE:
        _memo.clear()
    _memo[id(leaf)] = (leaf, flag)
    return flag


def check_rendered(leaf: Target, body: bytes) -> None:
    """Raise ReplyInvalid if the rendered reply `body` of `leaf` fails Vapi's schema."""
    if leaf.prepared is not None or not needs_check(leaf):
        return
    reply = orjson.loads(body)
    for kind in KINDS:
        value = reply.get(kind)
        if isinstance(value, dict):
            # an unknown field is lint's warning (DESIGN §9: Vapi's spec drifts), not a failed call
            problems = [p for p in check_payload(kind, value) if p.code != UNKNOWN]
            if problems:
                first = problems[0]
                raise ReplyInvalid(
                    f"the rendered reply fails Vapi's schema at {kind}{first.pointer} ({first.code})"
                )
