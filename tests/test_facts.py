"""router.runtime.facts: Vapi messages and test-case calls -> Facts, leniently: nothing raises."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.runtime.facts import facts_from_call, facts_from_message, parse_time
from router.runtime.facttypes import Facts

PAYLOADS = Path(__file__).resolve().parents[2] / "shared" / "vapi" / "payloads"
NOW = datetime(2030, 1, 1, tzinfo=UTC)
AT = datetime(2026, 1, 1, 18, 0, 5, 312_000, tzinfo=UTC)
CALL_ID = "0c5d8f2e-7a41-4b9e-9d33-5e2f6a1b7c90"
PNID = "7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"


def message(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"assistant-request.{name}.json").read_text())
    return data["message"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("name", "region", "caller", "dialled", "variables"),
    [
        pytest.param("pstn", None, "+14155550142", "+16505550117", {}, id="pstn-epoch-ms"),
        pytest.param("iso-timestamp", None, "+14155550142", "+16505550117", {}, id="iso-timestamp"),
        pytest.param("national-format-caller", "US", "+14155550142", "+16505550117", {}, id="national-us"),
        pytest.param("national-format-caller", None, None, "+16505550117", {}, id="national-no-region"),
        pytest.param("anonymous-caller", "US", None, "+16505550117", {}, id="anonymous-null"),
        pytest.param(
            "sip",
            None,
            "+14155550142",
            None,
            {"account_tier": "gold", "extension": "204"},
            id="sip-variables",
        ),
    ],
)
def test_facts_from_each_payload(
    name: str, region: str | None, caller: str | None, dialled: str | None, variables: dict[str, str]
) -> None:
    f = facts_from_message(message(name), region=region, now=NOW)
    sip = name == "sip"  # DESIGN §9: the SIP URIs are facts too
    assert f == Facts(
        caller=caller,
        dialled=dialled,
        at=AT,
        phone_number_id=PNID,
        call_id=CALL_ID,
        variables=variables,
        caller_sip="sip:+14155550142@203.0.113.7:5060" if sip else None,
        dialled_sip="sip:acme-main@sip.vapi.ai" if sip else None,
    )
    assert f.at == AT  # Facts equality ignores nothing that matters: check the instant too
    assert f.crm_status is None  # the CRM has not been asked yet


def test_every_bundled_assistant_request_is_read() -> None:
    names = sorted(p.name for p in PAYLOADS.glob("assistant-request.*.json"))
    assert len(names) >= 5
    for path in PAYLOADS.glob("assistant-request.*.json"):
        f = facts_from_message(json.loads(path.read_text())["message"], region="US", now=NOW)
        assert f.at == AT
        assert f.call_id == CALL_ID


def test_missing_timestamp_uses_now() -> None:
    m = message("pstn")
    del m["timestamp"]
    assert facts_from_message(m, region=None, now=NOW).at == NOW


def test_customer_number_falls_back_to_call_customer() -> None:
    m = message("pstn")
    m["customer"] = None
    assert facts_from_message(m, region=None, now=NOW).caller == "+14155550142"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1767290405312, AT, id="epoch-ms"),
        pytest.param(1767290405.312, AT, id="epoch-seconds-float"),
        pytest.param("1767290405312", AT, id="epoch-ms-text"),
        pytest.param("2026-01-01T18:00:05.312Z", AT, id="iso-z"),
        pytest.param("2026-01-01T13:00:05.312-05:00", AT, id="iso-offset"),
        pytest.param("2026-01-01T18:00:05.312", AT, id="iso-naive-is-utc"),
        pytest.param(" 2026-01-01T18:00:05.312Z ", AT, id="iso-padded"),
        pytest.param(True, None, id="bool"),
        pytest.param(None, None, id="null"),
        pytest.param("", None, id="empty"),
        pytest.param("yesterday", None, id="words"),
        pytest.param(math.nan, None, id="nan"),
        pytest.param(math.inf, None, id="inf"),
        pytest.param(-math.inf, None, id="minus-inf"),
        pytest.param(10**30, None, id="huge-int"),
        pytest.param(1e300, None, id="huge-float"),
        pytest.param(-(10**15), None, id="far-past-ms"),
        pytest.param("0001-01-01T00:00:00Z", None, id="year-1"),
        pytest.param("9999-12-31T23:59:59+14:00", None, id="year-9999"),
        pytest.param("1e400", None, id="exponent-text"),
        pytest.param("9" * 400, None, id="long-digits"),
        pytest.param("2026-01-01T18:00:05Z" + " " * 10**6, None, id="megabyte-of-padding"),
        pytest.param([1767290405312], None, id="list"),
        pytest.param({"ms": 1}, None, id="mapping"),
    ],
)
def test_parse_time(value: Any, expected: datetime | None) -> None:
    got = parse_time(value)
    assert got == expected
    if got is not None:
        assert got.tzinfo is not None


# -- hostile shapes ------------------------------------------------------------------------

BIG = "9" * (10 * 2**20)
HOSTILE: list[Any] = [
    {},
    {"timestamp": None, "call": None, "customer": None, "phoneNumber": None},
    {"call": [], "customer": "x", "phoneNumber": 5},
    {"customer": {"number": BIG}, "phoneNumber": {"number": "+1" + BIG, "id": BIG}, "call": {"id": BIG}},
    {"customer": {"number": 14155550142}, "phoneNumber": {"number": 16505550117.0}},
    {"customer": {"number": True}, "phoneNumber": {"number": ["+16505550117"]}},
    {"customer": {"number": math.nan}, "phoneNumber": {"number": math.inf}},
    {"customer": {"number": 10**5000}, "timestamp": 10**5000},
    {"timestamp": math.nan},
    {"timestamp": -math.inf},
    {"timestamp": "2026-13-45T99:99:99Z"},
    {"timestamp": BIG},
    {"call": {"assistantOverrides": {"variableValues": None}}},
    {"call": {"assistantOverrides": {"variableValues": ["a", "b"]}}},
    {
        "call": {
            "assistantOverrides": {
                "variableValues": {
                    "ok": "x",
                    "n": 3,
                    "b": False,
                    "none": None,
                    "obj": {"a": 1},
                    "big": 10**5000,
                }
            }
        }
    },
    {"call": {"phoneNumberId": {"id": "x"}, "id": 12, "customer": {"number": "anonymous"}}},
    {"customer": {"number": "Restricted"}, "phoneNumber": {"number": "sip:line@example.com"}},
    {"customer": {"number": "\x00\ud800+1415"}, "phoneNumber": {"number": "+" * 30}},
]


@pytest.mark.parametrize("msg", [pytest.param(m, id=f"shape-{i}") for i, m in enumerate(HOSTILE)])
def test_hostile_messages_degrade_to_absent(msg: dict[str, Any]) -> None:
    f = facts_from_message(msg, region="US", now=NOW)
    assert f.at.tzinfo is not None
    assert f.caller is None or f.caller.startswith("+")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in f.variables.items())


def test_hostile_variables_keep_what_is_text() -> None:
    f = facts_from_message(HOSTILE[14], region=None, now=NOW)
    assert f.variables == {"ok": "x", "n": "3", "b": "false"}


def test_numbers_given_as_json_numbers_are_read() -> None:
    f = facts_from_message(HOSTILE[4], region="US", now=NOW)
    assert f.caller == "+14155550142"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["+14155550142", "(415) 555-0142", "2026-01-01T18:00:05Z", "anonymous"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
KEYS = [
    "timestamp",
    "call",
    "customer",
    "phoneNumber",
    "number",
    "id",
    "assistantOverrides",
    "variableValues",
]
messages = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4),
    lambda inner: st.dictionaries(st.sampled_from(KEYS), inner | json_values, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(msg=messages)
def test_any_json_shape_gives_facts(msg: dict[str, Any]) -> None:
    f = facts_from_message(msg, region="US", now=NOW)
    assert isinstance(f, Facts)
    assert f.at.tzinfo is not None


# -- test-case calls -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "crm_enabled", "expected"),
    [
        pytest.param(
            {"caller": "(415) 555-0142", "dialled": "+16505550117", "at": "2026-11-21T22:00:00-05:00"},
            True,
            {"caller": "+14155550142", "crm_status": "not_found", "tags": frozenset()},
            id="no-crm-facts-means-not-found",
        ),
        pytest.param(
            {"caller": "anonymous", "tags": ["vip"], "crm": {"tier": "gold", "vip": True, "visits": 3}},
            True,
            {
                "caller": None,
                "crm_status": "ok",
                "tags": frozenset({"vip"}),
                "crm": {"tier": "gold", "vip": "true", "visits": "3"},
            },
            id="crm-facts-mean-ok-and-compare-as-text",
        ),
        pytest.param({"tags": ["vip"]}, False, {"crm_status": "disabled"}, id="crm-disabled"),
        pytest.param(
            {"crm_status": "timeout", "tags": ["vip"]}, True, {"crm_status": "timeout"}, id="explicit-status"
        ),
        pytest.param(
            {"variables": {"extension": 204, "sip": True, "empty": ""}, "phone_number_id": "pn-1"},
            True,
            {"variables": {"extension": "204", "sip": "true"}, "phone_number_id": "pn-1"},
            id="variables-and-phone-number-id",
        ),
    ],
)
def test_facts_from_call(call: dict[str, Any], crm_enabled: bool, expected: dict[str, Any]) -> None:
    f = facts_from_call(call, region="US", now=NOW, crm_enabled=crm_enabled)
    for key, value in expected.items():
        assert getattr(f, key) == value, key


def test_call_time_defaults_to_now_and_reads_offsets() -> None:
    assert facts_from_call({}, region=None, now=NOW, crm_enabled=False).at == NOW
    at = facts_from_call({"at": "2026-11-21T22:00:00-05:00"}, region=None, now=NOW, crm_enabled=False).at
    assert at == datetime(2026, 11, 21, 22, tzinfo=timezone(timedelta(hours=-5)))


def test_any_mapping_reads_as_the_dict_it_holds() -> None:
    """facts_from_message tests `type(x) is dict` inline for speed; other mappings (a
    read-only view, a test's UserDict) take the general road to the same facts."""
    from collections import UserDict
    from types import MappingProxyType

    msg = {
        "timestamp": 1767290405190,
        "customer": {"number": "+14155550142", "sipUri": "sip:a@example.com"},
        "phoneNumber": {"number": "+16505550117", "id": "pn-1", "sipUri": "sip:line@example.com"},
        "call": {"id": "c-1", "assistantOverrides": {"variableValues": {"lang": "es", "n": 3}}},
    }

    def wrapped(value: Any, kind: Any) -> Any:
        return kind({k: wrapped(v, kind) for k, v in value.items()}) if isinstance(value, dict) else value

    plain = facts_from_message(msg, region="US", now=NOW, crm_enabled=True)
    assert plain.phone_number_id == "pn-1" and plain.variables == {"lang": "es", "n": "3"}
    for kind in (MappingProxyType, UserDict):
        assert facts_from_message(wrapped(msg, kind), region="US", now=NOW, crm_enabled=True) == plain


@pytest.mark.parametrize(
    "stamp",
    [
        100_000_000_001,  # the smallest value read as milliseconds
        1_767_290_405_190,
        1_767_290_459_999,  # the last millisecond of a minute
        1_767_290_460_000,
        32_503_679_999_999,  # the last millisecond before the year 3000
        32_503_680_000_000,  # the year 3000: not a call's time
        100_000_000_000,  # read as seconds (year 5138): not a call's time
        -1_767_290_405_190,
    ],
)
def test_epoch_milliseconds_give_the_time_and_minute_parse_time_gives(stamp: int) -> None:
    """Vapi's epoch-ms timestamps take a shorter road in facts_from_message (the minute by
    integer division); it must give what parse_time and minute_of give."""
    from router.runtime.facttypes import minute_of

    f = facts_from_message({"timestamp": stamp}, region=None, now=NOW)
    assert f.at == (parse_time(stamp) or NOW)
    assert f.minute == minute_of(f.at)
