"""router.runtime.schedules: windows, day keys, holidays, closed and special dates, DST, checks."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from router.policy.document import parse_document
from router.policy.schedule_checks import check_schedule
from router.runtime.schedules import (
    DayHours,
    Schedule,
    compile_schedule,
    effective_hours,
    format_hours,
    is_open,
)

NY = ZoneInfo("America/New_York")


def _schedule(raw: dict[str, Any], default_timezone: str = "UTC") -> Schedule:
    return compile_schedule("s", raw, default_timezone=default_timezone)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _ny(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY)


# -- windows ---------------------------------------------------------------------------------

# 2026-03-02 is a Monday.
MONDAY = {"weekly": {"mon": ["09:00-17:00", "18:00-24:00"]}}


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param("2026-03-02T08:59:59.999999", False, id="just-before-start"),
        pytest.param("2026-03-02T09:00:00", True, id="start-included"),
        pytest.param("2026-03-02T16:59:59.999999", True, id="just-before-end"),
        pytest.param("2026-03-02T17:00:00", False, id="end-excluded"),
        pytest.param("2026-03-02T18:00:00", True, id="second-window"),
        pytest.param("2026-03-02T23:59:59", True, id="24:00-runs-to-midnight"),
        pytest.param("2026-03-03T00:00:00", False, id="24:00-does-not-spill"),
        pytest.param("2026-03-03T10:00:00", False, id="day-missing-from-weekly-is-closed"),
    ],
)
def test_window_includes_start_and_excludes_end(at: str, expected: bool) -> None:
    assert is_open(_schedule(MONDAY), _utc(at)) is expected


def test_whole_day() -> None:
    s = _schedule({"weekly": {"tue": ["00:00-24:00"]}})
    assert is_open(s, _utc("2026-03-02T23:59:59")) is False
    assert is_open(s, _utc("2026-03-03T00:00")) is True
    assert is_open(s, _utc("2026-03-03T23:59:59")) is True
    assert is_open(s, _utc("2026-03-04T00:00")) is False


# 2026-10-02 is a Friday; 2026-10-03 (Saturday) is German Unity Day.
OVERNIGHT = {"weekly": {"fri": ["22:00-06:00"]}}


@pytest.mark.parametrize(
    ("extra", "at", "expected"),
    [
        pytest.param({}, "2026-10-02T21:59", False, id="fri-before"),
        pytest.param({}, "2026-10-02T22:00", True, id="fri-start"),
        pytest.param({}, "2026-10-03T05:59", True, id="sat-05:59-open"),
        pytest.param({}, "2026-10-03T06:00", False, id="sat-06:00-closed"),
        pytest.param({}, "2026-10-01T23:00", False, id="thu-night-closed"),
        pytest.param({}, "2026-10-04T01:00", False, id="sat-night-closed"),
        pytest.param({"closed": ["2026-10-03"]}, "2026-10-03T05:59", True, id="runs-into-closed-saturday"),
        pytest.param(
            {"special": {"2026-10-03": []}}, "2026-10-03T05:59", True, id="runs-into-special-saturday"
        ),
        pytest.param(
            {"holidays": {"country": "DE"}}, "2026-10-03T05:59", True, id="runs-into-holiday-saturday"
        ),
        pytest.param({"closed": ["2026-10-02"]}, "2026-10-03T01:00", False, id="closed-friday-never-starts"),
        pytest.param({"closed": ["2026-10-02"]}, "2026-10-02T23:00", False, id="closed-friday-evening"),
    ],
)
def test_overnight_window_belongs_to_the_day_it_starts(
    extra: dict[str, Any], at: str, expected: bool
) -> None:
    assert is_open(_schedule(OVERNIGHT | extra), _utc(at)) is expected


def test_overnight_window_in_effective_hours() -> None:
    s = _schedule(OVERNIGHT | {"holidays": {"country": "DE"}})
    assert effective_hours(s, date(2026, 10, 2), 2) == [
        DayHours(date(2026, 10, 2), ("22:00-06:00",), None),
        DayHours(date(2026, 10, 3), (), "German Unity Day"),
    ]


# -- day keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "open_days"),
    [
        pytest.param("mon", "mon", id="one-day"),
        pytest.param("mon-fri", "mon tue wed thu fri", id="range"),
        pytest.param("fri-mon", "mon fri sat sun", id="wrapping-range"),
        pytest.param("sat-sun", "sat sun", id="weekend"),
        pytest.param("mon,wed,fri", "mon wed fri", id="comma-list"),
        pytest.param("mon, sat-sun", "mon sat sun", id="list-of-day-and-range"),
    ],
)
def test_day_keys(key: str, open_days: str) -> None:
    s = _schedule({"weekly": {key: ["12:00-13:00"]}})
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # 2026-03-02 to 2026-03-08
    opened = [name for i, name in enumerate(names) if is_open(s, _utc(f"2026-03-0{2 + i}T12:30"))]
    assert " ".join(opened) == open_days


# -- holidays, closed, special ---------------------------------------------------------------

SUPPORT = {
    "timezone": "America/New_York",
    "weekly": {"mon-fri": ["09:00-12:30", "13:30-18:00"], "sat": ["10:00-14:00"], "sun": []},
    "holidays": {"country": "US", "subdivision": "NY"},
    "closed": ["2026-12-24", "2026-12-31..2027-01-01"],
    "special": {"2026-12-27": ["10:00-12:00"], "2026-12-26": []},
}


@pytest.mark.parametrize(
    ("day", "hours"),
    [
        pytest.param(
            date(2026, 7, 3), DayHours(date(2026, 7, 3), (), "Independence Day (observed)"), id="observed"
        ),
        pytest.param(
            date(2026, 7, 4), DayHours(date(2026, 7, 4), (), "Independence Day"), id="saturday-holiday"
        ),
        pytest.param(
            date(2026, 11, 26), DayHours(date(2026, 11, 26), (), "Thanksgiving Day"), id="thanksgiving"
        ),
        pytest.param(
            date(2026, 2, 12), DayHours(date(2026, 2, 12), (), "Lincoln's Birthday"), id="ny-only-holiday"
        ),
        pytest.param(
            date(2026, 11, 27),
            DayHours(date(2026, 11, 27), ("09:00-12:30", "13:30-18:00"), None),
            id="day-after-is-weekly",
        ),
        pytest.param(date(2026, 12, 24), DayHours(date(2026, 12, 24), (), "closed date"), id="closed-date"),
        pytest.param(
            date(2026, 12, 31), DayHours(date(2026, 12, 31), (), "closed date"), id="range-first-day"
        ),
        pytest.param(
            date(2027, 1, 1), DayHours(date(2027, 1, 1), (), "closed date"), id="range-last-day-beats-holiday"
        ),
        pytest.param(
            date(2026, 12, 26), DayHours(date(2026, 12, 26), (), "special hours"), id="special-closed"
        ),
        pytest.param(
            date(2026, 12, 27),
            DayHours(date(2026, 12, 27), ("10:00-12:00",), "special hours"),
            id="special-sunday",
        ),
    ],
)
def test_effective_hours_of_one_day(day: date, hours: DayHours) -> None:
    assert effective_hours(_schedule(SUPPORT), day, 1) == [hours]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param("2026-07-02T10:00", True, id="weekday"),
        pytest.param("2026-07-03T10:00", False, id="observed-independence-day"),
        pytest.param("2026-11-26T10:00", False, id="thanksgiving"),
        pytest.param("2026-12-24T10:00", False, id="closed-date"),
        pytest.param("2026-12-30T17:59", True, id="before-closed-range"),
        pytest.param("2026-12-31T10:00", False, id="closed-range-start"),
        pytest.param("2027-01-01T10:00", False, id="closed-range-end"),
        pytest.param("2027-01-02T10:00", True, id="after-closed-range"),
        pytest.param("2026-12-27T11:00", True, id="special-opens-a-sunday"),
        pytest.param("2026-12-27T12:00", False, id="special-end-excluded"),
        pytest.param("2026-12-26T11:00", False, id="special-closes-a-saturday"),
    ],
)
def test_is_open_with_holidays_closed_and_special(at: str, expected: bool) -> None:
    assert is_open(_schedule(SUPPORT), _ny(at)) is expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param("2026-12-25T09:30", False, id="outside-special"),
        pytest.param("2026-12-25T10:00", True, id="special-beats-holiday"),
        pytest.param("2026-11-26T11:00", False, id="closed-beats-special"),
    ],
)
def test_precedence(at: str, expected: bool) -> None:
    raw = SUPPORT | {
        "special": {"2026-12-25": ["10:00-12:00"], "2026-11-26": ["10:00-12:00"]},
        "closed": ["2026-11-26"],
    }
    assert is_open(_schedule(raw), _ny(at)) is expected


def test_format_hours() -> None:
    s = compile_schedule("support-hours", SUPPORT, default_timezone="UTC")
    assert format_hours(s, effective_hours(s, date(2026, 12, 24), 5)) == (
        "support-hours (times in America/New_York)\n"
        "Thu 2026-12-24  closed (closed date)\n"
        "Fri 2026-12-25  closed (Christmas Day)\n"
        "Sat 2026-12-26  closed (special hours)\n"
        "Sun 2026-12-27  10:00-12:00 (special hours)\n"
        "Mon 2026-12-28  09:00-12:30 13:30-18:00"
    )
    assert format_hours(s, effective_hours(s, date(2027, 1, 3), 1)) == (
        "support-hours (times in America/New_York)\nSun 2027-01-03  closed"
    )
    assert effective_hours(s, date(2027, 1, 3), 0) == []


# -- zones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param("2026-03-07T13:59", False, id="sat-before-dst-08:59-est"),
        pytest.param("2026-03-07T14:00", True, id="sat-before-dst-09:00-est"),
        pytest.param("2026-03-08T12:59", False, id="spring-forward-08:59-edt"),
        pytest.param("2026-03-08T13:00", True, id="spring-forward-09:00-edt"),
        pytest.param("2026-03-08T20:59", True, id="spring-forward-16:59-edt"),
        pytest.param("2026-03-08T21:00", False, id="spring-forward-17:00-edt"),
        pytest.param("2026-10-31T13:00", True, id="sat-before-fall-back-09:00-edt"),
        pytest.param("2026-11-01T13:59", False, id="fall-back-08:59-est"),
        pytest.param("2026-11-01T14:00", True, id="fall-back-09:00-est"),
        pytest.param("2026-11-01T21:59", True, id="fall-back-16:59-est"),
        pytest.param("2026-11-01T22:00", False, id="fall-back-17:00-est"),
    ],
)
def test_dst_days_in_new_york(at: str, expected: bool) -> None:
    s = _schedule({"timezone": "America/New_York", "weekly": {"mon-sun": ["09:00-17:00"]}})
    assert is_open(s, _utc(at)) is expected


def test_default_timezone_applies_without_a_zone() -> None:
    s = _schedule({"weekly": {"mon-sun": ["09:00-17:00"]}}, default_timezone="Europe/Berlin")
    assert s.timezone == "Europe/Berlin"
    assert is_open(s, _utc("2026-01-05T08:30")) is True  # 09:30 in Berlin
    assert is_open(s, _utc("2026-01-05T16:30")) is False  # 17:30 in Berlin


def test_any_aware_instant_and_naive_as_utc() -> None:
    s = _schedule({"timezone": "America/New_York", "weekly": {"mon": ["09:00-17:00"]}})
    tokyo = datetime(2026, 3, 2, 23, 30, tzinfo=ZoneInfo("Asia/Tokyo"))  # 09:30 in New York
    assert is_open(s, tokyo) is True
    assert is_open(s, datetime(2026, 3, 2, 14, 30)) is True
    assert is_open(s, datetime(2026, 3, 2, 13, 30)) is False


def test_compiled_schedules_compare_and_hash_by_content() -> None:
    a, b = _schedule(SUPPORT), _schedule(SUPPORT)
    is_open(a, _utc("2026-12-28T15:00"))  # fills a's per-date cache only
    assert a == b
    assert hash(a) == hash(b)
    assert a != _schedule(SUPPORT | {"closed": []})


def test_date_cache_stays_bounded_and_correct() -> None:
    s = _schedule(SUPPORT)
    first = date(2026, 1, 1).toordinal()
    for day in range(3000):  # more dates than the cache holds
        is_open(s, datetime.fromordinal(first + day).replace(hour=15, tzinfo=UTC))
    assert 0 < len(s._days) <= 1024
    assert is_open(s, _ny("2026-11-26T10:00")) is False
    assert is_open(s, _ny("2026-11-27T10:00")) is True


# -- checks ----------------------------------------------------------------------------------


def _problems(body: str) -> list[str]:
    """Problems of schedule `s` written as the YAML `body` (line 3 of the file, column 5)."""
    doc = parse_document("schedules:\n  s:\n    " + body.replace("\n", "\n    ") + "\n", file="p.yaml")
    raw = doc.data["schedules"]["s"]
    return [str(p) for p in sorted(check_schedule(doc, "/schedules/s", raw, default_timezone="UTC"))]


def test_the_design_example_is_clean() -> None:
    body = (
        "timezone: America/New_York\n"
        'weekly: {mon-fri: ["09:00-12:30", "13:30-18:00"], sat: ["10:00-14:00"], sun: []}\n'
        "holidays: {country: US, subdivision: NY}\n"
        'closed: ["2026-12-24", "2026-12-31..2027-01-01", 2026-12-30]\n'
        'special: {"2026-12-27": ["10:00-12:00"], 2026-12-26: []}'
    )
    assert _problems(body) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "timezone: America/New_Yrok",
            'p.yaml:3:15: error: "America/New_Yrok" is not an IANA time zone; write a name like'
            ' "Europe/London"'
            ' or "UTC" (did you mean "America/New_York"?) [bad-timezone]',
            id="bad-timezone",
        ),
        pytest.param(
            "timezone: utc",
            'p.yaml:3:15: error: "utc" is not an IANA time zone; write a name like "Europe/London" or "UTC"'
            ' (did you mean "UTC"?) [bad-timezone]',
            id="bad-timezone-case",
        ),
        pytest.param(
            'weekly: {monday: ["09:00-17:00"]}',
            'p.yaml:3:14: error: "monday" is not a day; use mon, tue, wed, thu, fri, sat, sun or a range like'
            ' mon-fri (did you mean "mon"?) [bad-day]',
            id="bad-day",
        ),
        pytest.param(
            "weekly: {mon-fry: []}",
            'p.yaml:3:14: error: "mon-fry" is not a day; use mon, tue, wed, thu, fri, sat, sun or a'
            " range like"
            ' mon-fri (did you mean "mon-fri"?) [bad-day]',
            id="bad-day-in-range",
        ),
        pytest.param(
            "weekly: {xyz: []}",
            'p.yaml:3:14: error: "xyz" is not a day; use mon, tue, wed, thu, fri, sat, sun or a range like'
            " mon-fri [bad-day]",
            id="bad-day-no-hint",
        ),
        pytest.param(
            "weekly: {mon-fri: [], mon: []}",
            'p.yaml:3:27: error: mon is given twice (also in "mon-fri"); list each day once [duplicate-day]',
            id="duplicate-day",
        ),
        pytest.param(
            'weekly: {mon: ["25:00-26:00"]}',
            'p.yaml:3:20: error: "25:00-26:00" has a time that does not exist; use 00:00 to 23:59, or'
            " 24:00 as"
            " an end [bad-window]",
            id="bad-hour",
        ),
        pytest.param(
            'weekly: {mon: ["09:60-10:00"]}',
            'p.yaml:3:20: error: "09:60-10:00" has a time that does not exist; use 00:00 to 23:59, or'
            " 24:00 as"
            " an end [bad-window]",
            id="bad-minute",
        ),
        pytest.param(
            "weekly: {mon: [9-5]}",
            'p.yaml:3:20: error: "9-5" is not a window; write HH:MM-HH:MM, e.g. "09:00-17:30" [bad-window]',
            id="bad-window-text",
        ),
        pytest.param(
            'weekly: {mon: ["24:00-02:00"]}',
            'p.yaml:3:20: error: "24:00-02:00" has a time that does not exist; use 00:00 to 23:59, or'
            " 24:00 as"
            " an end [bad-window]",
            id="24:00-cannot-start",
        ),
        pytest.param(
            'weekly: {mon: ["09:00-09:00"]}',
            'p.yaml:3:20: error: "09:00-09:00" is empty; for the whole day write "00:00-24:00" [bad-window]',
            id="zero-length-window",
        ),
        pytest.param(
            'weekly: {mon-fri: ["09:00-12:30", "12:00-18:00"]}',
            'p.yaml:3:39: warning: "12:00-18:00" overlaps "09:00-12:30"; write one window "09:00-18:00"'
            " instead [overlapping-windows]",
            id="overlapping-windows",
        ),
        pytest.param(
            'weekly: {fri: ["22:00-06:00"], sat: ["05:00-10:00"]}',
            'p.yaml:3:42: warning: "05:00-10:00" on sat overlaps "22:00-06:00" from the day before;'
            " make one end"
            " where the other starts [overlapping-windows]",
            id="overlapping-overnight-spill",
        ),
        pytest.param(
            'closed: ["2026-02-30"]',
            'p.yaml:3:14: error: "2026-02-30" is not a date (day is out of range for month); write'
            " YYYY-MM-DD,"
            ' e.g. "2026-12-24" [bad-date]',
            id="bad-day-of-month",
        ),
        pytest.param(
            'special: {"2026-13-01": []}',
            'p.yaml:3:15: error: "2026-13-01" is not a date (month must be in 1..12); write YYYY-MM-DD,'
            ' e.g. "2026-12-24" [bad-date]',
            id="bad-month",
        ),
        pytest.param(
            'closed: ["24/12/2026"]',
            'p.yaml:3:14: error: "24/12/2026" is not a date; write YYYY-MM-DD, e.g. "2026-12-24" [bad-date]',
            id="bad-date-format",
        ),
        pytest.param(
            'closed: ["2027-01-01..2026-12-31"]',
            'p.yaml:3:14: error: "2027-01-01..2026-12-31" ends before it starts; write'
            ' "2026-12-31..2027-01-01" [bad-date]',
            id="reversed-range",
        ),
        pytest.param(
            'special: {"2026-12-27..2026-12-28": []}',
            'p.yaml:3:15: error: "2026-12-27..2026-12-28" is a range; special takes one date per key, so give'
            " each date its own [bad-date]",
            id="range-in-special",
        ),
        pytest.param(
            "holidays: {country: XQ}",
            'p.yaml:3:25: error: "XQ" is not a country the holiday calendar knows; write an ISO 3166'
            " code like"
            ' "US" [bad-country]',
            id="bad-country",
        ),
        pytest.param(
            "holidays: {country: us}",
            'p.yaml:3:25: error: "us" is not a country the holiday calendar knows; write an ISO 3166'
            " code like"
            ' "US" (did you mean "US"?) [bad-country]',
            id="bad-country-case",
        ),
        pytest.param(
            "holidays: {country: US, subdivision: NYC}",
            'p.yaml:3:42: error: "NYC" is not a subdivision of US; use one of AK, AL, AR, AS, AZ, CA,'
            " CO, CT, …"
            ' (did you mean "NY"?) [bad-subdivision]',
            id="bad-subdivision",
        ),
        pytest.param(
            'closed: ["2026-12-20..2026-12-31"]\nspecial: {"2026-12-24": ["10:00-12:00"]}',
            "p.yaml:4:15: warning: 2026-12-24 is both closed and special; closed wins, so remove it"
            " from one of"
            " them [closed-and-special]",
            id="closed-and-special",
        ),
    ],
)
def test_check_schedule_problem(body: str, expected: str) -> None:
    assert _problems(body) == [expected]


def test_check_schedule_reports_every_problem_once() -> None:
    body = 'weekly: {mon-fri: ["09:00-12:30", "12:00-18:00"], Sat: ["25:00-01:00", "9-5"], mon: []}'
    assert _problems(body) == [
        'p.yaml:3:39: warning: "12:00-18:00" overlaps "09:00-12:30"; write one window "09:00-18:00" instead'
        " [overlapping-windows]",
        'p.yaml:3:55: error: "Sat" is not a day; use mon, tue, wed, thu, fri, sat, sun or a range'
        " like mon-fri"
        ' (did you mean "sat"?) [bad-day]',
        'p.yaml:3:61: error: "25:00-01:00" has a time that does not exist; use 00:00 to 23:59, or 24:00 as an'
        " end [bad-window]",
        'p.yaml:3:76: error: "9-5" is not a window; write HH:MM-HH:MM, e.g. "09:00-17:30" [bad-window]',
        'p.yaml:3:84: error: mon is given twice (also in "mon-fri"); list each day once [duplicate-day]',
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("weekly: 5\nclosed: x\nspecial: [1]\nholidays: [US]", id="wrong-shapes"),
        pytest.param("weekly: {mon: [1, null, {a: b}], tue: 7}\nclosed: [1, null]", id="wrong-items"),
        pytest.param("holidays: {country: 5, subdivision: [x]}\ntimezone: 3", id="wrong-scalars"),
        pytest.param("holidays: {country: US, subdivision: {a: b}}", id="odd-subdivision"),
    ],
)
def test_check_schedule_skips_what_the_schema_reports(body: str) -> None:
    assert _problems(body) == []


def test_check_schedule_ignores_a_non_mapping() -> None:
    doc = parse_document("schedules: {s: [1]}", file="p.yaml")
    assert list(check_schedule(doc, "/schedules/s", [1], default_timezone="UTC")) == []
