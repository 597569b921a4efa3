"""router.policy.compiler: conditions, the route index (each route under its most selective key),
prepared replies, splits, and the per-minute schedule memo the evaluator relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.policy.compiler import version_of
from router.policy.loader import lint_texts
from router.runtime.conditions import All, CrmField, NumberSet, Tags, Variable
from router.runtime.facttypes import Facts, minute_of
from router.runtime.model import Policy, RouteIndex
from router.runtime.schedconds import Open, ScheduleClock
from router.runtime.schedules import compile_schedule, is_open

HEAD = """version: 1
settings: {timezone: America/New_York, region: US}
crm:
  http: {url: "https://crm.example.com/c?phone=${caller}", tags: contact.tags, fields: {tier: contact.tier}}
"""


def load(text: str) -> Policy:
    loaded = lint_texts([("t.yaml", text)])
    assert [str(p) for p in loaded.problems] == []
    assert loaded.policy is not None
    return loaded.policy


def one_route(when: str, extra: str = "") -> Policy:
    route = f"{{id: r, when: {when}, then: {{assistantId: a}}}}"
    return load(f"{HEAD}{extra}routes:\n  - {route}\ndefault: {{error: no}}\n")


OFFICE = 'schedules:\n  office: {weekly: {mon-fri: ["09:00-17:00"]}}\n'
BLOCKED = 'lists:\n  blocked: ["+15550000001", "(415) 555-0199", "+1900*"]\n'


def placed(index: RouteIndex) -> dict[str, Any]:
    """Where route 0 sits in the index, as {field: keys or True}."""
    out: dict[str, Any] = {}
    for name in (
        "caller_exact",
        "caller_prefix",
        "caller_country",
        "dialled_exact",
        "dialled_prefix",
        "phone_number_id",
        "tags",
    ):
        keys = sorted(k for k, v in getattr(index, name).items() if 0 in v)
        if keys:
            out[name] = keys
    for name in ("anonymous", "always"):
        if 0 in getattr(index, name):
            out[name] = True
    for clock, during, outside in index.schedules.entries:
        if 0 in during:
            out["during"] = clock.schedule.name
        if 0 in outside:
            out["outside"] = clock.schedule.name
    return out


@pytest.mark.parametrize(
    ("when", "extra", "expected"),
    [
        pytest.param('{caller: "+14155550142"}', "", {"caller_exact": ["+14155550142"]}, id="caller-exact"),
        pytest.param('{caller: "(415) 555-0142"}', "", {"caller_exact": ["+14155550142"]}, id="national"),
        pytest.param('{caller: "+44*"}', "", {"caller_prefix": ["+44"]}, id="caller-prefix"),
        pytest.param(
            "{caller: {in: blocked}}",
            BLOCKED,
            {"caller_exact": ["+14155550199", "+15550000001"], "caller_prefix": ["+1900"]},
            id="caller-list",
        ),
        pytest.param(
            '{caller: {country: GB}, dialled: "+16505550117"}',
            "",
            {"dialled_exact": ["+16505550117"]},
            id="dialled-beats-country",
        ),
        pytest.param(
            '{dialled: "+1650*", caller: "+44*"}', "", {"caller_prefix": ["+44"]}, id="caller-number-first"
        ),
        pytest.param("{caller: {country: [GB, FR]}}", "", {"caller_country": ["FR", "GB"]}, id="country"),
        pytest.param("{dialled: {country: US}}", "", {"always": True}, id="dialled-country-not-indexed"),
        pytest.param("{phone_number_id: [pn-a, pn-b]}", "", {"phone_number_id": ["pn-a", "pn-b"]}, id="pnid"),
        pytest.param(
            "{phone_number_id: pn-a, caller: {country: GB}}",
            "",
            {"phone_number_id": ["pn-a"]},
            id="pnid-first",
        ),
        pytest.param("{caller: {anonymous: true}}", "", {"anonymous": True}, id="anonymous"),
        pytest.param("{caller: {anonymous: false}}", "", {"always": True}, id="not-anonymous"),
        pytest.param("{tags: [vip, gold]}", "", {"tags": ["gold", "vip"]}, id="tags-any"),
        pytest.param("{tags: {all: [vip, gold]}}", "", {"tags": ["gold"]}, id="tags-all-one-tag"),
        pytest.param("{tags: {none: [spam]}}", "", {"always": True}, id="tags-none-not-indexed"),
        pytest.param("{during: office, tags: [vip]}", OFFICE, {"tags": ["vip"]}, id="tags-before-schedule"),
        pytest.param("{during: office}", OFFICE, {"during": "office"}, id="during"),
        pytest.param("{outside: office, variables: {a: b}}", OFFICE, {"outside": "office"}, id="outside"),
        pytest.param("{variables: {line: sip}}", "", {"always": True}, id="variables"),
        pytest.param("{crm_status: timeout}", "", {"always": True}, id="crm-status"),
        pytest.param('{any: [{caller: "+44*"}, {dialled: "+1650*"}]}', "", {"always": True}, id="any"),
        pytest.param('{not: {caller: "+44*"}}', "", {"always": True}, id="not"),
        pytest.param("{}", "", {"always": True}, id="empty"),
    ],
)
def test_route_indexed_under_its_most_selective_key(when: str, extra: str, expected: dict[str, Any]) -> None:
    assert placed(one_route(when, extra).index) == expected


def test_tags_needing_all_are_indexed_under_the_rarest() -> None:
    policy = load(
        HEAD + "routes:\n"
        "  - {id: a, when: {tags: {all: [common, rare]}}, then: {assistantId: a}}\n"
        "  - {id: b, when: {tags: [common]}, then: {assistantId: b}}\n"
        "  - {id: c, when: {tags: {any: [common, other]}}, then: {assistantId: c}}\n"
        "default: {error: no}\n"
    )
    assert policy.index.tags == {"rare": (0,), "common": (1, 2), "other": (2,)}


@pytest.mark.parametrize(
    ("countries", "codes"),
    [
        pytest.param("GB", {"44"}, id="one-region-of-a-shared-code"),
        pytest.param("[GB, FR]", {"44", "33"}, id="two-codes"),
        pytest.param("[US, CA]", {"1"}, id="nanp-regions-one-code"),
        pytest.param("JE", {"44"}, id="crown-dependency"),
        pytest.param("[IT, VA]", {"39"}, id="vatican-shares-39"),
    ],
)
def test_caller_country_codes_of_the_routed_regions(countries: str, codes: set[str]) -> None:
    """A caller whose calling code is not in this set is in none of the routed countries,
    so the evaluator skips its country lookup (router.runtime.evaluator.candidates)."""
    assert one_route(f"{{caller: {{country: {countries}}}}}").index.caller_country_codes == codes


def test_no_caller_country_codes_without_caller_country_routes() -> None:
    assert one_route("{dialled: {country: US}}").index.caller_country_codes == frozenset()


def test_residual_is_what_the_index_key_leaves() -> None:
    policy = load(
        HEAD + OFFICE + "routes:\n"
        '  - {id: a, when: {dialled: "+16505550117"}, then: {assistantId: a}}\n'
        '  - {id: b, when: {dialled: "+16505550118", during: office}, then: {assistantId: b}}\n'
        "  - {id: c, when: {tags: [vip]}, then: {assistantId: c}}\n"
        "  - {id: d, then: {assistantId: d}}\n"
        "default: {error: no}\n"
    )
    residual = policy.index.residual
    assert residual[0] is None
    assert isinstance(residual[1], Open)
    assert isinstance(residual[2], Tags)  # tags keep their test: before the lookup it must raise
    assert residual[3] is None
    assert [d.route for d in policy.index.decisions] == list(policy.routes)
    assert all(d.target is r.then for d, r in zip(policy.index.decisions, policy.routes, strict=True))


def test_tag_routes_for_pending_facts_stop_at_the_first_that_surely_reads_the_crm() -> None:
    policy = load(
        HEAD + "routes:\n"
        "  - {id: a, when: {tags: [a], variables: {line: sip}}, then: {assistantId: a}}\n"
        "  - {id: b, when: {tags: [b], crm: {tier: gold}}, then: {assistantId: b}}\n"
        "  - {id: c, when: {tags: [c]}, then: {assistantId: c}}\n"
        "default: {error: no}\n"
    )
    assert policy.index.tag_routes == (0, 1)


def test_call_facts_are_tested_before_crm_facts() -> None:
    when = (
        one_route('{tags: [vip], crm: {tier: gold}, dialled: "+16505550117", variables: {x: y}}')
        .routes[0]
        .when
    )
    assert isinstance(when, All)
    assert [type(p) for p in when.parts] == [NumberSet, Variable, Tags, CrmField]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        pytest.param("{crm: {vip: true}}", frozenset({"true"}), id="bool"),
        pytest.param("{crm: {visits: [3, 4.5]}}", frozenset({"3", "4.5"}), id="numbers"),
        pytest.param("{crm: {tier: gold}}", frozenset({"gold"}), id="text"),
    ],
)
def test_crm_values_compare_as_text(when: str, expected: frozenset[str]) -> None:
    text = HEAD.replace("fields: {tier: contact.tier}", "fields: {tier: a.t, vip: a.v, visits: a.n}")
    policy = load(
        f"{text}routes:\n  - {{id: r, when: {when}, then: {{assistantId: a}}}}\ndefault: {{error: no}}\n"
    )
    cond = policy.routes[0].when
    assert isinstance(cond, CrmField)
    assert cond.values == expected


def test_variables_compare_as_text() -> None:
    cond = one_route("{variables: {ext: 204, sip: true}}").routes[0].when
    assert isinstance(cond, All)
    assert {p.name: p.values for p in cond.parts if isinstance(p, Variable)} == {
        "ext": frozenset({"204"}),
        "sip": frozenset({"true"}),
    }


def test_one_clock_per_schedule() -> None:
    policy = load(
        HEAD + OFFICE + "routes:\n"
        "  - {id: a, when: {during: office, caller: {country: GB}}, then: {assistantId: a}}\n"
        "  - {id: b, when: {outside: office}, then: {assistantId: b}}\n"
        "default: {error: no}\n"
    )
    a, b = (r.when for r in policy.routes)
    assert isinstance(a, All) and isinstance(b, Open)
    opens = [p for p in a.parts if isinstance(p, Open)]
    assert opens[0].clock is b.clock
    assert b.schedule is policy.schedules["office"]


# -- targets -------------------------------------------------------------------------------

TARGETS = (
    HEAD
    + """targets:
  desk: {assistantId: desk-1, assistantOverrides: {firstMessage: "Hello {{customer.number}}"}}
  personal: {assistantId: p-1, assistantOverrides: {variableValues: {who: "${caller}"}}}
  squad: {squadId: s-1}
routes:
  - {id: a, when: {caller: "+44*"}, then: desk}
  - {id: b, when: {caller: "+33*"}, then: desk}
  - {id: c, when: {caller: "+34*"}, then: personal}
  - id: d
    when: {caller: "+49*"}
    then:
      split:
        - {weight: 70, then: squad}
        - weight: 30
          then:
            split:
              - {weight: 1, then: {squadId: s-1}}
              - {weight: 3, then: {destination: {type: number, number: "+16505550100"}}}
default: desk
"""
)


def test_named_targets_are_compiled_once_and_shared() -> None:
    policy = load(TARGETS)
    a, b, c, _ = policy.routes
    assert a.then is b.then is policy.targets["desk"] is policy.default
    assert a.then.name == "desk"
    assert a.then.kind == "assistantId"
    assert c.then.kind == "assistantId"


def test_prepared_reply_bytes_when_nothing_depends_on_the_call() -> None:
    policy = load(TARGETS)
    desk = policy.targets["desk"]
    assert not desk.templated
    assert desk.prepared == orjson.dumps(desk.body)
    assert orjson.loads(desk.prepared) == {
        "assistantId": "desk-1",
        "assistantOverrides": {"firstMessage": "Hello {{customer.number}}"},
    }
    personal = policy.targets["personal"]
    assert personal.templated
    assert personal.prepared is None


def test_splits_compile_to_cumulative_weights_with_distinct_salts() -> None:
    split = load(TARGETS).routes[3].then
    assert split.kind == "split"
    assert split.total_weight == 100
    assert [v.upto for v in split.variants] == [70, 100]
    first, nested = (v.target for v in split.variants)
    assert first.kind == "squadId"
    assert nested.kind == "split"
    assert nested.total_weight == 4
    assert [v.upto for v in nested.variants] == [1, 4]
    assert split.salt != nested.salt


def test_fallback_defaults_to_default_and_follows_settings() -> None:
    policy = load(TARGETS)
    assert policy.fallback is policy.default
    with_fallback = load(TARGETS.replace("region: US}", "region: US, fallback: squad}"))
    assert with_fallback.fallback is with_fallback.targets["squad"]


def test_needs_crm_only_when_something_reads_it() -> None:
    assert one_route("{tags: [vip]}").needs_crm
    assert not one_route('{caller: "+44*"}').needs_crm
    assert not load(TARGETS).needs_crm
    reads_crm = 'default: {assistantId: a, assistantOverrides: {variableValues: {tier: "${crm.tier}"}}}'
    assert load(f"{HEAD}routes: []\n{reads_crm}\n").needs_crm


def test_version_is_a_content_hash() -> None:
    a = version_of([("a.yaml", "x")])
    assert a == version_of([("a.yaml", "x")])
    assert len(a) == 12
    assert a != version_of([("a.yaml", "y")])
    assert a != version_of([("b.yaml", "x")])


# -- the schedule clock: memo per minute == is_open -------------------------------------------

ZONES = ["America/New_York", "Europe/London", "Asia/Kolkata", "Asia/Kathmandu", "Africa/Monrovia", "UTC"]


def _facts(at: datetime) -> Facts:
    return Facts(caller=None, dialled=None, at=at)


@pytest.mark.parametrize("zone", ZONES)
@settings(max_examples=60, deadline=None)
@given(
    at=st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [UTC, ZoneInfo("America/New_York"), timezone(timedelta(hours=5, minutes=45))]
        ),
    )
)
def test_clock_answers_as_is_open(zone: str, at: datetime) -> None:
    schedule = compile_schedule(
        "s",
        {"weekly": {"mon-fri": ["09:00-12:30", "13:00-17:00"], "sat": ["22:00-02:00"]}},
        default_timezone=zone,
    )
    clock = ScheduleClock(schedule)
    # the instant `at` denotes: a wall-clock time inside a DST gap counts as the instant it names
    expected = is_open(schedule, at.astimezone(UTC))
    assert clock.is_open(_facts(at)) is expected  # cold
    assert clock.is_open(_facts(at)) is expected  # from the memo
    # a neighbour in the same minute filled the memo first
    other = ScheduleClock(schedule)
    start = at - timedelta(seconds=at.second, microseconds=at.microsecond)
    other.is_open(_facts(start + timedelta(seconds=59, microseconds=999_999)))
    assert other.is_open(_facts(at)) is expected


@pytest.mark.parametrize(
    ("zone", "at", "expected"),
    [
        pytest.param("UTC", "2026-03-02T08:59:59.999999+00:00", False, id="last-microsecond-before"),
        pytest.param("UTC", "2026-03-02T09:00:00+00:00", True, id="opening-minute"),
        pytest.param("UTC", "2026-03-02T12:29:59.999999+00:00", True, id="last-open-microsecond"),
        pytest.param("UTC", "2026-03-02T12:30:00+00:00", False, id="closing-minute"),
        pytest.param("Asia/Kathmandu", "2026-03-02T03:14:59+00:00", False, id="offset-5h45-before"),
        pytest.param("Asia/Kathmandu", "2026-03-02T03:15:00+00:00", True, id="offset-5h45-open"),
        pytest.param("Africa/Monrovia", "1950-03-06T09:44:29+00:00", False, id="lmt-offset-with-seconds"),
        pytest.param("Africa/Monrovia", "1950-03-06T09:44:30+00:00", True, id="lmt-offset-opens-mid-minute"),
        pytest.param("America/New_York", "2026-03-09T13:00:00+00:00", True, id="after-dst-start"),
        pytest.param("UTC", "2026-03-02T09:30:00", True, id="naive-is-utc"),
        pytest.param("Asia/Tokyo", "9999-12-31T23:59:59+00:00", False, id="past-the-calendar-is-closed"),
        pytest.param("America/New_York", "0001-01-01T00:00:00+00:00", False, id="before-the-calendar"),
    ],
)
def test_clock_edges(zone: str, at: str, expected: bool) -> None:
    schedule = compile_schedule("s", {"weekly": {"mon-fri": ["09:00-12:30"]}}, default_timezone=zone)
    clock = ScheduleClock(schedule)
    when = datetime.fromisoformat(at)
    assert clock.is_open(_facts(when)) is expected
    assert clock.is_open(_facts(when)) is expected


def test_minute_of_is_exact() -> None:
    assert minute_of(datetime(1970, 1, 1, 0, 0, 59, 999_999, tzinfo=UTC)) == 0
    assert minute_of(datetime(1970, 1, 1, 0, 1, tzinfo=UTC)) == 1
    assert minute_of(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)) == -1
    late = datetime(2999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert minute_of(late) == minute_of(late.replace(second=0, microsecond=0))
    assert minute_of(datetime(2026, 1, 1, 12, 0)) == minute_of(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    assert Facts(caller=None, dialled=None, at=late).minute == minute_of(late)
