"""Target + facts -> the Vapi reply JSON: sticky splits and ${…} templates. Pure.

Vapi's own {{…}} LiquidJS placeholders are ordinary text here and pass through untouched.

Two ways to the same bytes: `render` builds the reply dict (explain, the fallback, and any
target `splice` declines), and `render_bytes` fills the holes of the reply the compiler
serialised once (`Target.spliced`), which is what the webhook answers with.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson

from router.runtime.facttypes import Facts
from router.runtime.model import Target, Template
from router.runtime.statefacts import EMPTY_STATE

Spliced = tuple[bytes, tuple[tuple[str, str], ...], tuple[int, ...]]


class TemplateError(Exception):
    """A ${…} reference without a value for this call (e.g. a CRM field the record lacks)."""


def sticky_key(facts: Facts) -> str:
    """Who a split sticks to: the caller, or the call id when the caller is anonymous."""
    return facts.caller or facts.call_id or ""


def choose(target: Target, facts: Facts) -> Target:
    """Follow splits down to the target that answers; the same caller always lands alike."""
    key = sticky_key(facts)
    while target.kind == "split":
        target = target.variants[_arm(target, key)].target
    return target


def _arm(split: Target, key: str) -> int:
    digest = hashlib.blake2b(f"{split.salt}|{key}".encode(), digest_size=8).digest()
    bucket = int.from_bytes(digest, "big") % split.total_weight
    return next(i for i, v in enumerate(split.variants) if bucket < v.upto)


def arms_taken(target: Target, facts: Facts) -> tuple[tuple[Target, int], ...]:
    """(split, index of the arm taken) for each split `choose` passes through (for coverage)."""
    key = sticky_key(facts)
    out = []
    while target.kind == "split":
        i = _arm(target, key)
        out.append((target, i))
        target = target.variants[i].target
    return tuple(out)


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
        return facts.dialled or facts.dialled_sip or ""
    if name == "call.id":
        return facts.call_id or ""
    if name == "route":
        return route
    if name.startswith("history."):  # "" for a caller without earlier calls, never an error
        return (facts.state or EMPTY_STATE).value(name[8:], facts.at.timestamp())
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
    if not lenient and empty_choice(leaf.kind, filled):
        raise TemplateError(f"the {leaf.kind} rendered empty for this call")
    return filled, leaf


def empty_choice(kind: str, reply: dict[str, Any]) -> bool:
    """Whether templates left the reply's one choice empty (Vapi would refuse it)."""
    value = reply.get(kind)
    if kind == "destination" and isinstance(value, dict):
        return not value.get("number" if value.get("type") == "number" else "sipUri")
    return value in ("", None)


# ---------------------------------------------------------------- spliced replies
#
# A reply is JSON whose templated strings differ per call only in the text of their ${…}
# references. JSON-escaping a string escapes it character by character, so the escaped
# reply is the escaped literal text with each reference's escaped value in between: the
# compiler serialises the reply once with a marker per reference and keeps the bytes around
# the markers (as a %-format); a call only escapes the values (orjson.dumps(text)[1:-1]) and
# formats them in. The reply's "choice" (assistantId, destination.number, ...) must not
# render empty; which references decide that is worked out here too. What cannot be decided
# from the references alone is left to render (Target.spliced None).


def splice(kind: str, body: Mapping[str, Any]) -> Spliced | None:
    """The spliced form of a templated reply (see Target.spliced), or None when render_bytes
    should render it in full instead (it cannot be serialised, or its choice's emptiness is
    not decided by its references alone)."""
    for nonce in range(64):
        token = f"<@splice{nonce}:"  # printable ASCII without " or \: JSON keeps it verbatim
        refs: list[tuple[str, str]] = []
        owned: dict[int, list[int]] = {}  # id(Template) -> indices of its references
        try:
            marked = orjson.dumps(_mark(dict(body), token, refs, owned))
        except TypeError:  # orjson.JSONEncodeError too: render + dumps would fail alike
            return None
        if marked.count(token.encode()) == len(refs):  # the token is nowhere in the policy's text
            break
    else:
        return None
    pieces = re.split(re.escape(token.encode()) + rb"(\d+)@>", marked)
    if [int(i) for i in pieces[1::2]] != list(range(len(refs))):
        return None  # not in _fill's order (cannot happen: orjson keeps dict order)
    choice = _choice_refs(kind, body, owned)
    if choice is None:
        return None
    fmt = b"%s".join(seg.replace(b"%", b"%%") for seg in pieces[0::2])
    return fmt, tuple(refs), choice


def _mark(value: Any, token: str, refs: list[tuple[str, str]], owned: dict[int, list[int]]) -> Any:
    """`value` with each reference in a Template replaced by a numbered marker; walks the
    reply in the order _fill does."""
    if isinstance(value, Template):
        mine = owned.setdefault(id(value), [])
        text = []
        for p in value.parts:
            if isinstance(p, str):
                text.append(p)
            else:
                mine.append(len(refs))
                text.append(f"{token}{len(refs)}@>")
                refs.append(p)
        return "".join(text)
    if isinstance(value, dict):
        return {k: _mark(v, token, refs, owned) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark(v, token, refs, owned) for v in value]
    return value


def _choice_refs(kind: str, body: Mapping[str, Any], owned: dict[int, list[int]]) -> tuple[int, ...] | None:
    """The references whose values all being "" leaves the choice empty (empty_choice);
    () when it never renders empty; None when that is not up to the references alone (a
    templated destination type, or a choice that is always empty)."""
    value = body.get(kind)
    if kind == "destination" and isinstance(value, dict):
        which = value.get("type")
        if isinstance(which, Template):
            return None
        value = value.get("number" if which == "number" else "sipUri")
        if not isinstance(value, Template):
            return None if not value else ()
    elif not isinstance(value, Template):
        return None if value in ("", None) else ()
    if any(p for p in value.parts if isinstance(p, str)):
        return ()  # literal text: never empty
    mine = owned.get(id(value))
    return tuple(mine) if mine else None


def render_bytes(leaf: Target, facts: Facts, route: str, *, lenient: bool = False) -> bytes:
    """The reply of a leaf target (`choose` already applied) as JSON bytes: exactly
    orjson.dumps(render(leaf, facts, route, lenient=lenient)[0]), raising TemplateError (and
    orjson's error for a lone surrogate) in the same cases, without building the reply.
    The prepared bytes when nothing is templated; render + dumps when splice declined."""
    prepared = leaf.prepared
    if prepared is not None:
        return prepared
    spliced = leaf.spliced
    if spliced is None:
        return orjson.dumps(render(leaf, facts, route, lenient=lenient)[0])
    fmt, refs, choice = spliced
    # Each value JSON-escaped as it is found (the escaped text is empty just when the text
    # is); orjson refusing one (a lone surrogate) is raised only where render + dumps would:
    # after every TemplateError.
    escaped: list[bytes] = []
    refused: TypeError | None = None
    for ref in refs:  # _value, inlined for the common references
        name = ref[0]
        if name == "crm":
            value = facts.crm.get(ref[1])
            if value is None:
                value = _value(ref, facts, route, lenient)
        elif name == "caller":
            value = facts.caller or ""
        elif name == "dialled":
            value = facts.dialled or facts.dialled_sip or ""
        elif name == "call.id":
            value = facts.call_id or ""
        elif name == "route":
            value = route
        else:
            value = _value(ref, facts, route, lenient)
        try:
            escaped.append(orjson.dumps(value)[1:-1])
        except TypeError as exc:  # orjson.JSONEncodeError
            refused = refused or exc
            escaped.append(b"?")  # not empty, as the text is not
    if choice and not lenient:
        for i in choice:
            if escaped[i]:
                break
        else:
            raise TemplateError(f"the {leaf.kind} rendered empty for this call")
    if refused is not None:
        raise refused
    return fmt % tuple(escaped)
