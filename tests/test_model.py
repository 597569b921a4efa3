"""router.runtime.model: the compiled types' own behaviour on hand-built values. Each condition's
test, and the describe/actual text that `explain` prints; CRM conditions before the lookup;
composites; Facts (with_crm, the per-minute key); Source positions on demand; the schedule
clocks and the index's schedule routes, memoised per minute.

How the compiler builds these from YAML is in tests/test_compiler.py; how the evaluator
walks them in tests/test_evaluator.py."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone

import pytest
import regex

from router.runtime.conditions import (
    All,
    Always,
    Anonymous,
    AnyOf,
    Condition,
    CrmField,
    CrmStatusIs,
    Not,
    NumberCountry,
    NumberRegex,
    NumberSet,
    NumberType,
    PhoneNumberId,
    Tags,
    Variable,
)
from router.runtime.evaluator import explain_condition
from router.runtime.facttypes import Facts, NeedCrm, minute_of
from router.runtime.model import Source
from router.runtime.schedconds import Open, ScheduleClock, ScheduleRoutes
from router.runtime.schedules import Schedule, compile_schedule

# Christmas Day 2026, a Friday: 10:00 in New York, a US holiday
CHRISTMAS = datetime(2026, 12, 25, 15, 0, tzinfo=UTC)
MONDAY_NOON = datetime(2026, 12, 28, 17, 0, tzinfo=UTC)  # 12:00 in New York
SATURDAY = datetime(2026, 12, 26, 17, 0, tzinfo=UTC)

KNOWN = Facts("+14155550142", "+442071838750", CHRISTMAS, phone_number_id="pn-1", variables={"tier": "gold"})
ANONYMOUS = Facts(None, None, CHRISTMAS)


def office() -> Schedule:
    return compile_schedule(
        "office",
        {"weekly": {"mon-fri": ["09:00-17:00"]}, "holidays": {"country": "US"}},
        default_timezone="America/New_York",
    )


# --- call-fact conditions: test, describe, actual ------------------------------------------


@pytest.mark.parametrize(
    ("condition", "describe", "known", "anonymous"),
    [
        pytest.param(Always(), "always", (True, ""), (True, ""), id="always"),
        pytest.param(
            NumberSet("caller", frozenset({"+14155550142"}), frozenset(), "in vips"),
            "caller in vips",
            (True, "+14155550142"),
            (False, "anonymous"),
            id="number-exact",
        ),
        pytest.param(
            NumberSet("dialled", frozenset(), frozenset({"+44", "+3531"}), "starts with +44", (3, 5)),
            "dialled starts with +44",
            (True, "+442071838750"),
            (False, "none"),
            id="number-prefix",
        ),
        pytest.param(
            NumberSet("dialled", frozenset(), frozenset({"+44"}), "starts with +44"),
            "dialled starts with +44",
            (False, "+442071838750"),  # no lengths: the prefixes are never tried
            (False, "none"),
            id="prefix-without-lengths",
        ),
        pytest.param(
            NumberRegex("caller", regex.compile(r"\+1415\d+")),
            r"caller matches /\+1415\d+/",
            (True, "+14155550142"),
            (False, "anonymous"),
            id="regex",
        ),
        pytest.param(
            NumberRegex("caller", regex.compile(r"1415\d+")),
            r"caller matches /1415\d+/",
            (False, "+14155550142"),  # a full match: the + is part of the number
            (False, "anonymous"),
            id="regex-is-a-full-match",
        ),
        pytest.param(
            NumberCountry("dialled", frozenset({"IE", "GB"})),
            "dialled country in GB, IE",
            (True, "GB"),
            (False, "none"),
            id="country",
        ),
        pytest.param(
            NumberType("caller", frozenset({"mobile"})),
            "caller type in mobile",
            (False, "fixed_line_or_mobile"),  # a US number cannot tell
            (False, "anonymous"),
            id="number-type",
        ),
        pytest.param(
            Anonymous("caller", True),
            "caller is anonymous",
            (False, "+14155550142"),
            (True, "anonymous"),
            id="anonymous",
        ),
        pytest.param(
            Anonymous("dialled", False),
            "dialled is not anonymous",
            (True, "+442071838750"),
            (False, "none"),
            id="not-anonymous",
        ),
        pytest.param(
            PhoneNumberId(frozenset({"pn-2", "pn-1"})),
            "phone_number_id in pn-1, pn-2",
            (True, "pn-1"),
            (False, "none"),
            id="phone-number-id",
        ),
        pytest.param(
            Variable("tier", frozenset({"gold", "bronze"})),
            "variable tier in [bronze, gold]",
            (True, "tier = gold"),
            (False, "tier = (none)"),
            id="variable",
        ),
    ],
)
def test_call_fact_conditions(
    condition: Condition, describe: str, known: tuple[bool, str], anonymous: tuple[bool, str]
) -> None:
    assert condition.describe() == describe
    assert not condition.needs_crm
    assert (condition.test(KNOWN), condition.actual(KNOWN)) == known
    assert (condition.test(ANONYMOUS), condition.actual(ANONYMOUS)) == anonymous


def test_the_reason_explain_gives_is_describe_verdict_and_actual() -> None:
    vips = NumberSet("caller", frozenset({"+14155550142"}), frozenset(), "in vips")
    assert explain_condition(vips, KNOWN) == (True, "caller in vips: yes (+14155550142)")
    assert explain_condition(vips, ANONYMOUS) == (False, "caller in vips: no (anonymous)")
    assert explain_condition(Always(), KNOWN) == (True, "always: yes")  # nothing to show


# --- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "is_open", "actual"),
    [
        pytest.param(MONDAY_NOON, True, "office is open at Mon 2026-12-28 12:00 EST", id="open"),
        pytest.param(
            CHRISTMAS, False, "office is closed at Fri 2026-12-25 10:00 EST, Christmas Day", id="holiday"
        ),
        pytest.param(SATURDAY, False, "office is closed at Sat 2026-12-26 12:00 EST", id="weekend"),
    ],
)
def test_during_and_outside_a_schedule(at: datetime, is_open: bool, actual: str) -> None:
    clock = ScheduleClock(office())
    during, outside = Open(clock, True), Open(clock, False)
    facts = Facts(None, None, at)
    assert (during.test(facts), outside.test(facts)) == (is_open, not is_open)
    assert (during.describe(), outside.describe()) == ("during office", "outside office")
    assert during.actual(facts) == outside.actual(facts) == actual
    assert during.schedule is clock.schedule


def test_a_clock_remembers_each_minute_it_answered() -> None:
    clock = ScheduleClock(office())
    minute = minute_of(MONDAY_NOON)
    assert not clock.remembers(minute)
    assert clock.is_open(Facts(None, None, MONDAY_NOON + timedelta(seconds=59)))
    assert clock.remembers(minute)
    assert not clock.remembers(minute + 1)
    assert repr(clock) == "ScheduleClock('office')"


def test_a_clock_forgets_everything_once_it_holds_max_minutes() -> None:
    clock = ScheduleClock(office())
    start = minute_of(MONDAY_NOON)
    for i in range(ScheduleClock.MAX_MINUTES):
        clock.is_open(Facts(None, None, MONDAY_NOON + timedelta(minutes=i)))
    assert clock.remembers(start)
    clock.is_open(Facts(None, None, MONDAY_NOON + timedelta(minutes=ScheduleClock.MAX_MINUTES)))
    assert not clock.remembers(start)
    assert clock.remembers(start + ScheduleClock.MAX_MINUTES)


def test_schedule_routes_merge_the_positions_whose_key_holds() -> None:
    """Per schedule, the routes keyed `during` it when open, those keyed `outside` it when
    closed; all of them in ascending order."""
    office_clock = ScheduleClock(office())
    nights = ScheduleClock(
        compile_schedule("nights", {"weekly": {"mon-sun": ["20:00-08:00"]}}, default_timezone="UTC")
    )
    routes = ScheduleRoutes(((office_clock, (0, 4), (2,)), (nights, (3,), (1, 5))))
    assert routes  # has entries
    assert not ScheduleRoutes(())
    assert routes.at(Facts(None, None, MONDAY_NOON)) == (0, 1, 4, 5)  # office open, 17:00 UTC not night
    assert routes.at(Facts(None, None, CHRISTMAS.replace(hour=22))) == (2, 3)  # holiday, night


def test_schedule_routes_remember_a_minute_only_when_every_clock_does() -> None:
    clock = ScheduleClock(office())
    routes = ScheduleRoutes(((clock, (0,), (1,)),))
    open_facts = Facts(None, None, MONDAY_NOON)
    assert routes.at(open_facts) == (0,)
    # the memo, not the clock, answers the same minute now: a clock emptied behind its back
    # does not change the answer
    clock._minutes.clear()
    assert routes.at(Facts(None, None, MONDAY_NOON + timedelta(seconds=30))) == (0,)
    assert not clock.remembers(open_facts.minute)


# --- CRM conditions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "describe", "result", "actual"),
    [
        pytest.param(
            Tags(frozenset({"vip", "gold"}), frozenset(), frozenset({"blocked"})),
            "tags any of [gold, vip] and none of [blocked]",
            True,
            "tags [new, vip]",
            id="tags-any-none",
        ),
        pytest.param(
            Tags(frozenset(), frozenset({"vip", "gold"}), frozenset()),
            "tags all of [gold, vip]",
            False,
            "tags [new, vip]",
            id="tags-all",
        ),
        pytest.param(
            Tags(frozenset(), frozenset(), frozenset({"new"})),
            "tags none of [new]",
            False,
            "tags [new, vip]",
            id="tags-none",
        ),
        pytest.param(
            CrmField("tier", frozenset({"gold", "silver"})),
            "crm.tier in [gold, silver]",
            True,
            "crm.tier = gold",
            id="crm-field",
        ),
        pytest.param(
            CrmField("region", frozenset({"west"})),
            "crm.region in [west]",
            False,
            "crm.region = (none)",
            id="crm-field-missing",
        ),
        pytest.param(
            CrmStatusIs(frozenset({"timeout", "error"})),
            "crm_status in [error, timeout]",
            False,
            "crm_status = ok",
            id="crm-status",
        ),
    ],
)
def test_crm_conditions_need_the_lookup_first(
    condition: Condition, describe: str, result: bool, actual: str
) -> None:
    assert condition.needs_crm
    with pytest.raises(NeedCrm):
        condition.test(KNOWN)
    looked_up = KNOWN.with_crm("ok", frozenset({"vip", "new"}), {"tier": "gold"})
    assert condition.describe() == describe
    assert (condition.test(looked_up), condition.actual(looked_up)) == (result, actual)


def test_a_failed_lookup_answers_crm_conditions_instead_of_raising() -> None:
    timed_out = KNOWN.with_crm("timeout", frozenset(), {})
    assert CrmStatusIs(frozenset({"timeout"})).test(timed_out)
    assert not Tags(frozenset({"vip"}), frozenset(), frozenset()).test(timed_out)
    assert Tags(frozenset(), frozenset(), frozenset({"vip"})).test(timed_out)
    assert not CrmField("tier", frozenset({"gold"})).test(timed_out)


# --- composites ----------------------------------------------------------------------------------

CALLER = NumberSet("caller", frozenset({"+14155550142"}), frozenset(), "is +14155550142")
OTHER = NumberSet("caller", frozenset({"+15550000001"}), frozenset(), "is +15550000001")
VIP = Tags(frozenset({"vip"}), frozenset(), frozenset())


@pytest.mark.parametrize(
    ("condition", "describe", "result"),
    [
        pytest.param(All((CALLER, Always())), "caller is +14155550142 and always", True, id="all"),
        pytest.param(
            All((OTHER, VIP)),
            "caller is +15550000001 and tags any of [vip]",
            False,
            id="all-stops-before-the-crm",
        ),
        pytest.param(
            AnyOf((OTHER, CALLER)), "any of (caller is +15550000001; caller is +14155550142)", True, id="any"
        ),
        pytest.param(
            AnyOf((CALLER, VIP)),
            "any of (caller is +14155550142; tags any of [vip])",
            True,
            id="any-stops-before-the-crm",
        ),
        pytest.param(Not(OTHER), "not (caller is +15550000001)", True, id="not"),
        pytest.param(
            Not(AnyOf((OTHER, Not(CALLER)))),
            "not (any of (caller is +15550000001; not (caller is +14155550142)))",
            True,
            id="nested",
        ),
    ],
)
def test_composites(condition: Condition, describe: str, result: bool) -> None:
    """Tested in order and only as far as needed: a CRM part behind a decided one is never
    asked (the lookup may not be needed at all)."""
    assert condition.describe() == describe
    assert condition.test(KNOWN) is result


@pytest.mark.parametrize(
    "condition",
    [
        pytest.param(All((CALLER, VIP)), id="all"),
        pytest.param(AnyOf((OTHER, VIP)), id="any"),
        pytest.param(Not(VIP), id="not"),
    ],
)
def test_composites_reaching_a_crm_part_need_the_lookup(condition: Condition) -> None:
    with pytest.raises(NeedCrm):
        condition.test(KNOWN)


# --- Facts ---------------------------------------------------------------------------------------------


def test_with_crm_keeps_every_call_fact_and_replaces_the_crm_ones() -> None:
    base = Facts(
        "+14155550142",
        "+16505550117",
        CHRISTMAS,
        phone_number_id="pn-1",
        call_id="call-1",
        variables={"tier": "gold"},
        caller_sip="sip:a@example.com",
        dialled_sip="sip:b@example.com",
    )
    after = base.with_crm("ok", frozenset({"vip"}), {"name": "Dana"})
    crm_fields = {"crm_status", "tags", "crm"}
    for f in fields(Facts):
        if f.name not in crm_fields:
            assert getattr(after, f.name) == getattr(base, f.name), f.name
    assert (after.crm_status, after.tags, after.crm) == ("ok", frozenset({"vip"}), {"name": "Dana"})
    assert (base.crm_status, base.tags, base.crm) == (None, frozenset(), {})  # unchanged


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(datetime(2026, 3, 2, 9, 30, 59, 999_999, tzinfo=UTC), id="utc"),
        pytest.param(datetime(2026, 3, 2, 4, 30, 59, tzinfo=timezone(timedelta(hours=-5))), id="offset"),
        pytest.param(datetime(2026, 3, 2, 9, 30), id="naive-is-utc"),
    ],
)
def test_the_minute_of_facts_is_the_utc_minute_of_their_instant(at: datetime) -> None:
    first = Facts(None, None, at)
    assert first.minute == minute_of(at)
    assert Facts(None, None, at).minute == first.minute  # the same `at` again: the kept answer
    assert first.with_crm("ok", frozenset(), {}).minute == first.minute
    later = Facts(None, None, at + timedelta(minutes=1))
    assert later.minute == first.minute + 1


def test_the_minute_is_left_out_of_equality() -> None:
    assert Facts(None, None, CHRISTMAS) == Facts(None, None, CHRISTMAS)
    assert Facts("+1", None, CHRISTMAS) != Facts(None, None, CHRISTMAS)


# --- Source ------------------------------------------------------------------------------------------


class Positions:
    """A document's position lookup that counts the lookups (Source asks only when printed)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def position(self, pointer: str, *, key: bool = False) -> tuple[int, int]:
        self.asked.append(pointer)
        return (7, 5)


def test_a_source_looks_its_position_up_only_when_asked() -> None:
    doc = Positions()
    source = Source("policy.yaml", "/routes/3", doc)
    assert doc.asked == []
    assert str(source) == "policy.yaml:7:5"
    assert (source.line, source.column) == (7, 5)
    assert doc.asked == ["/routes/3"] * 4


def test_a_source_without_a_document_is_the_top_of_its_file() -> None:
    assert str(Source("policy.yaml", "/routes/3")) == "policy.yaml:1:1"


def test_sources_compare_by_file_and_pointer_not_document() -> None:
    assert Source("p.yaml", "/routes/0", Positions()) == Source("p.yaml", "/routes/0")
    assert Source("p.yaml", "/routes/0") != Source("p.yaml", "/routes/1")
    assert "doc" not in repr(Source("p.yaml", "/routes/0", Positions()))
