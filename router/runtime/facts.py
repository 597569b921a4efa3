"""Vapi message (or call facts from a test case / CLI flags) -> Facts. Pure, lenient.

Real messages carry nulls where the spec says otherwise, ISO or epoch-ms timestamps and
national-format numbers; none of that may fail a call, so every field degrades to "absent".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from router.runtime import phone
from router.runtime.facttypes import CrmStatus, Facts, note_minute
from router.runtime.sip import is_sip


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        # `type(...) is dict` first: parsed JSON is plain dicts, and the ABC check costs more
        if type(obj) is not dict and not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _mapping(obj: Any) -> Mapping[str, Any]:
    """obj when it is a mapping, else an empty one: `.get` then answers None for anything."""
    if type(obj) is dict:  # parsed JSON; the ABC check costs a Python-level call
        return obj
    return obj if isinstance(obj, Mapping) else _EMPTY


def _text(value: Any) -> str | None:
    if type(value) is str:  # nearly always
        return value
    if value is None or isinstance(value, bool):  # None: an absent field (sipUri, mostly)
        return None
    return scalar_text(value)


def scalar_text(value: Any) -> str | None:
    """Variables and CRM values compare as text ('true', '3')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an int of more than 4,300 digits
            return None
    return None


def parse_time(value: Any) -> datetime | None:
    """Epoch milliseconds (or seconds, when small) or ISO 8601 -> aware datetime; None for
    anything else, and for instants outside the years 1900-2999 (garbage, not a call)."""
    try:
        if isinstance(value, bool):
            return None
        exact = type(value) is int  # Vapi sends epoch ms: an int, always finite
        if exact or isinstance(value, int | float):
            if not exact and not math.isfinite(value):
                return None
            seconds = value / 1000 if abs(value) > 1e11 else value
            # the years 1900-2999 in epoch seconds, without building a datetime to ask
            return datetime.fromtimestamp(seconds, UTC) if _FIRST_S <= seconds < _LAST_S else None
        if isinstance(value, str) and value.strip() and len(value) <= 64:
            text = value.strip()
            if text.replace(".", "", 1).isdigit():
                return parse_time(float(text))
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return _plausible(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    except (ValueError, OverflowError, OSError):
        return None
    return None


_FIRST_S = datetime(1900, 1, 1, tzinfo=UTC).timestamp()
_LAST_S = datetime(3000, 1, 1, tzinfo=UTC).timestamp()


# epoch milliseconds parse_time reads as such (above 1e11), up to the year 3000
_FIRST_MS = 100_000_000_000
_LAST_MS = int(_LAST_S) * 1000


def _plausible(at: datetime) -> datetime | None:
    # far-off years would overflow when a schedule converts them to its zone
    year = at.year if at.tzinfo is UTC else at.astimezone(UTC).year
    return at if 1900 <= year <= 2999 else None


def caller_text(message: Mapping[str, Any]) -> str | None:
    return _text(_get(message, "customer", "number")) or _text(_get(message, "call", "customer", "number"))


def facts_from_message(
    message: Mapping[str, Any], *, region: str | None, now: datetime | None, crm_enabled: bool | None = None
) -> Facts:
    """Facts of a Vapi server message (`body["message"]`); `now` only when it has no timestamp
    (None: the clock, read only then).

    `crm_enabled` None leaves crm_status unset; False makes it "disabled"; True leaves it
    unset for the lookup, except "not_found" for an anonymous caller (nothing to look up)."""
    # Every call takes this path: parsed JSON is plain dicts and strings, so those are tested
    # inline (`type(x) is dict`, `is str`) and anything else goes through _mapping / _text.
    message = _mapping(message)
    call = message.get("call")
    if type(call) is not dict:  # each path below from `call` is the same as from `message`
        call = _mapping(call)
    number = message.get("phoneNumber")
    if type(number) is not dict:
        number = _mapping(number)
    customer = message.get("customer")
    if type(customer) is not dict:
        customer = _mapping(customer)
    raw_caller = customer.get("number")
    if type(raw_caller) is not str:
        raw_caller = _text(raw_caller)
    if not raw_caller:
        raw_caller = _text(_mapping(call.get("customer")).get("number"))
    raw_dialled = number.get("number")
    if type(raw_dialled) is not str:
        raw_dialled = _text(raw_dialled)
    variables: dict[str, str] = {}
    variables_raw = _mapping(call.get("assistantOverrides")).get("variableValues")
    if variables_raw and (type(variables_raw) is dict or isinstance(variables_raw, Mapping)):
        for k, v in variables_raw.items():
            text = v if type(v) is str else scalar_text(v)
            if isinstance(k, str) and text is not None:
                variables[k] = text
    pnid = call.get("phoneNumberId")
    if type(pnid) is not str or not pnid:
        pnid = _text(pnid) or _text(number.get("id"))
    call_id = call.get("id")
    if type(call_id) is not str:
        call_id = _text(call_id)
    caller = phone.normalise(raw_caller, region) if raw_caller else None
    status: CrmStatus | None = None
    if crm_enabled is False:
        status = "disabled"
    elif crm_enabled and caller is None:
        status = "not_found"
    caller_sip = customer.get("sipUri")  # mostly absent
    dialled_sip = number.get("sipUri")
    stamp = message.get("timestamp")
    if type(stamp) is int and _FIRST_MS < stamp < _LAST_MS:  # what Vapi sends: epoch ms
        at = datetime.fromtimestamp(stamp / 1000, UTC)  # exact: whole ms are whole µs
        note_minute(at, stamp // 60_000)
    else:
        at = parse_time(stamp) or now or datetime.now(UTC)
    return Facts(
        caller,
        phone.normalise(raw_dialled, region) if raw_dialled else None,
        at,
        pnid,
        call_id,
        variables,
        status,
        caller_sip=caller_sip if caller_sip is None or type(caller_sip) is str else _text(caller_sip),
        dialled_sip=dialled_sip if dialled_sip is None or type(dialled_sip) is str else _text(dialled_sip),
    )


def facts_from_call(
    call: Mapping[str, Any],
    *,
    region: str | None,
    now: datetime,
    crm_enabled: bool,
) -> Facts:
    """Facts from a test case's `call:` mapping or the explain flags (same keys).

    CRM facts come from the case: tags/crm given -> ok unless crm_status says otherwise."""
    caller_raw = _text(call.get("caller"))
    dialled_raw = _text(call.get("dialled"))
    caller_sip = caller_raw if caller_raw and is_sip(caller_raw) else None
    dialled_sip = dialled_raw if dialled_raw and is_sip(dialled_raw) else None
    caller_raw = None if caller_sip else caller_raw
    dialled_raw = None if dialled_sip else dialled_raw
    tags = frozenset(str(t) for t in (call.get("tags") or []))
    crm = {
        str(k): v
        for k, v in ((k, scalar_text(v)) for k, v in (call.get("crm") or {}).items())
        if v is not None
    }
    status: CrmStatus
    if call.get("crm_status"):
        status = call["crm_status"]
    elif not crm_enabled:
        status = "disabled"
    elif tags or crm:
        status = "ok"
    else:
        status = "not_found"
    variables = {
        str(k): v for k, v in ((k, scalar_text(v)) for k, v in (call.get("variables") or {}).items()) if v
    }
    return Facts(
        caller=phone.normalise(caller_raw, region) if caller_raw else None,
        dialled=phone.normalise(dialled_raw, region) if dialled_raw else None,
        at=parse_time(call.get("at")) or now,
        phone_number_id=_text(call.get("phone_number_id")),
        call_id=_text(call.get("call_id")),
        variables=variables,
        crm_status=status,
        tags=tags,
        crm=crm,
        caller_sip=caller_sip,
        dialled_sip=dialled_sip,
    )


def lacks_offset(value: Any) -> bool:
    """Whether `value` is an ISO 8601 time without a UTC offset ("2026-11-23T10:00"): the
    tools refuse it rather than guess UTC (DESIGN §11). Epoch numbers need none."""
    if not isinstance(value, str) or not value.strip() or value.strip().replace(".", "", 1).isdigit():
        return False
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).tzinfo is None
    except ValueError:
        return False
