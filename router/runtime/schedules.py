"""Schedules: compilation, open/closed at an instant, effective hours. Pure.

No file I/O and no clock: the caller passes the instant. Public holidays come from the
`holidays` package, looked up once per (country, subdivision, year).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import holidays as holidays_lib

from router.errors import did_you_mean

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TITLES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # not %a: that follows the locale
_DAY = 86_400
_Window = tuple[int, int]  # seconds from the local midnight of the day it starts; end may pass _DAY
_CACHE_MAX = 1024  # dates per schedule; a call mix spans a handful, `hours` a few hundred

_WINDOW = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_DAYS_HELP = "use mon, tue, wed, thu, fri, sat, sun or a range like mon-fri"


class _Invalid(ValueError):
    """A value that cannot be read; the message is the problem text."""


@dataclass(frozen=True, slots=True)
class DayHours:
    """The plan of one date: the windows that start on it, and why it differs from the week."""

    day: date
    windows: tuple[str, ...]
    note: str | None  # a holiday's name, "closed", "special hours", or None for the weekly plan


@dataclass(frozen=True, slots=True)
class Schedule:
    """A compiled schedule. Plans are computed per date on first use and kept in a small cache."""

    name: str
    timezone: str
    weekly: tuple[tuple[_Window, ...], ...]  # index 0 = Monday
    holidays: tuple[str, str | None] | None  # (country, subdivision)
    closed: tuple[tuple[date, date], ...]  # inclusive ranges
    special: tuple[tuple[date, tuple[_Window, ...]], ...]
    zone: zoneinfo.ZoneInfo = field(init=False, repr=False, compare=False)
    _special: dict[date, tuple[_Window, ...]] = field(init=False, repr=False, compare=False)
    # date ordinal -> intervals open that date (the day before's overnight spill included)
    _days: dict[int, tuple[_Window, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", zoneinfo.ZoneInfo(self.timezone))
        object.__setattr__(self, "_special", dict(self.special))
        object.__setattr__(self, "_days", {})


# -- reading values (shared by check and compile, so both agree on every edge) ---------------


def _parse_window(text: str) -> _Window:
    """'HH:MM-HH:MM' -> (start, end) seconds; an end at or before the start means next day."""
    m = _WINDOW.fullmatch(text)
    if not m:
        raise _Invalid(f'"{text}" is not a window; write HH:MM-HH:MM, e.g. "09:00-17:30"')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise _Invalid(f'"{text}" has a time that does not exist; use 00:00 to 23:59, or 24:00 as an end')
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if start == end:  # by the overnight rule it would be 24 h; say so rather than guess
        raise _Invalid(f'"{text}" is empty; for the whole day write "00:00-24:00"')
    return (start, end if end > start else end + _DAY)


def _parse_days(key: str) -> tuple[int, ...]:
    """'mon', 'mon-fri', 'fri-mon' (wraps) or 'mon,wed,fri' -> weekday numbers (0 = Monday)."""
    out: list[int] = []
    for part in key.split(","):
        ends = [p.strip() for p in part.split("-")]
        if len(ends) > 2 or not all(e in _DAYS for e in ends):
            raise _Invalid(f'"{key}" is not a day; {_DAYS_HELP}{_day_hint(key)}')
        first, last = _DAYS.index(ends[0]), _DAYS.index(ends[-1])
        out.extend((first + i) % 7 for i in range((last - first) % 7 + 1))
    return tuple(out)


def _day_hint(key: str) -> str:
    """' (did you mean "mon-fri"?)' for "monday-friday", "mon-fry", "Mon-Fri"; else ''."""
    fixed = []
    for word in re.split(r"([,-])", key):
        word = word.strip().lower()
        if word in (",", "-") or word in _DAYS:
            fixed.append(word)
        elif word[:3] in _DAYS:  # "monday", "Thursday", "weds": difflib misses some of these
            fixed.append(word[:3])
        elif close := did_you_mean(word, _DAYS):
            fixed.append(close.split('"')[1])
        else:
            return ""
    return f' (did you mean "{"".join(fixed)}"?)'


def _parse_date(text: str) -> date:
    if not _DATE.fullmatch(text):
        raise _Invalid(f'"{text}" is not a date; write YYYY-MM-DD, e.g. "2026-12-24"')
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise _Invalid(f'"{text}" is not a date ({exc}); write YYYY-MM-DD, e.g. "2026-12-24"') from None


def _parse_date_range(text: str) -> tuple[date, date]:
    """'YYYY-MM-DD' or 'YYYY-MM-DD..YYYY-MM-DD' (both ends included)."""
    first, sep, last = text.partition("..")
    start, end = _parse_date(first.strip()), _parse_date(last.strip()) if sep else None
    if end is None:
        return (start, start)
    if end < start:
        raise _Invalid(f'"{text}" ends before it starts; write "{end}..{start}"')
    return (start, end)


# -- lookups that are worth doing once ------------------------------------------------------


@lru_cache(maxsize=256)
def _holiday_names(country: str, subdivision: str | None, year: int) -> Mapping[date, str]:
    """Public holidays of one year; shared, do not mutate."""
    return dict(holidays_lib.country_holidays(country, subdiv=subdivision, years=year))


# -- compile and evaluate -------------------------------------------------------------------


def compile_schedule(name: str, raw: Mapping[str, Any], *, default_timezone: str) -> Schedule:
    """Checked raw mapping -> Schedule. Trusts its input: check_schedule found nothing."""
    weekly: list[tuple[_Window, ...]] = [()] * 7
    for key, windows in (raw.get("weekly") or {}).items():
        for d in _parse_days(str(key)):
            weekly[d] = tuple(sorted(_parse_window(w) for w in windows))
    hol = raw.get("holidays")
    sub = hol.get("subdivision") if hol else None
    return Schedule(
        name=name,
        timezone=raw.get("timezone") or default_timezone,
        weekly=tuple(weekly),
        holidays=(hol["country"], None if sub is None else str(sub)) if hol else None,
        closed=tuple(sorted(_parse_date_range(t) for t in raw.get("closed") or ())),
        special=tuple(
            sorted(
                (_parse_date(str(k)), tuple(sorted(map(_parse_window, w))))
                for k, w in (raw.get("special") or {}).items()
            )
        ),
    )


def _plan(schedule: Schedule, day: date) -> tuple[tuple[_Window, ...], str | None]:
    """Windows starting on `day` and the note: closed > special > public holiday > weekly."""
    if any(a <= day <= b for a, b in schedule.closed):
        return (), "closed date"
    special = schedule._special.get(day)
    if special is not None:
        return special, "special hours"
    if schedule.holidays is not None:
        name = _holiday_names(*schedule.holidays, day.year).get(day)
        if name:
            return (), name
    return schedule.weekly[day.weekday()], None


def _open_intervals(schedule: Schedule, ordinal: int) -> tuple[_Window, ...]:
    day = date.fromordinal(ordinal)
    today = _plan(schedule, day)[0]
    before = _plan(schedule, day - timedelta(days=1))[0] if ordinal > 1 else ()
    intervals = tuple((s - _DAY, e - _DAY) for s, e in before if e > _DAY) + today
    if len(schedule._days) >= _CACHE_MAX:
        schedule._days.clear()  # crude but bounded; refilling costs one plan per date
    schedule._days[ordinal] = intervals
    return intervals


def is_open(schedule: Schedule, at: datetime) -> bool:
    """Whether `at` falls in an open window (local wall-clock time). A naive `at` is UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    local = at.astimezone(schedule.zone)
    ordinal = local.toordinal()
    intervals = schedule._days.get(ordinal)
    if intervals is None:
        intervals = _open_intervals(schedule, ordinal)
    second = local.hour * 3600 + local.minute * 60 + local.second
    for start, end in intervals:  # noqa: SIM110 - a plain loop is ~2x faster than any(genexpr)
        if start <= second < end:
            return True
    return False


def effective_hours(schedule: Schedule, start: date, days: int) -> list[DayHours]:
    """The plan of `days` dates from `start`, each with the windows that start on it."""
    out = []
    for i in range(max(days, 0)):
        day = start + timedelta(days=i)
        windows, note = _plan(schedule, day)
        out.append(DayHours(day, tuple(map(_format_window, windows)), note))
    return out


def format_hours(schedule: Schedule, days: list[DayHours]) -> str:
    """Text for `vapi-router hours`: a heading line, then one line per date."""
    lines = [f"{schedule.name} (times in {schedule.timezone})"]
    for d in days:
        text = " ".join(d.windows) or "closed"
        lines.append(f"{_TITLES[d.day.weekday()]} {d.day}  {text}" + (f" ({d.note})" if d.note else ""))
    return "\n".join(lines)


def _format_window(window: _Window) -> str:
    start, end = window
    end = end - _DAY if end > _DAY else end
    return f"{start // 3600:02d}:{start % 3600 // 60:02d}-{end // 3600:02d}:{end % 3600 // 60:02d}"
