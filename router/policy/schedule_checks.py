"""Schedules' semantic checks: windows, day keys, zones, holidays, overlaps. [pure]

The values are read with runtime.schedules' own parsers, so check and compile agree on every edge.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator, Mapping
from datetime import date
from functools import cache, lru_cache
from typing import Any

import holidays as holidays_lib

from router.errors import PolicyError, did_you_mean
from router.policy.document import Document, pointer_of
from router.runtime.schedules import (
    _DAY,
    _DAYS,
    _format_window,
    _Invalid,
    _parse_date,
    _parse_date_range,
    _parse_days,
    _parse_window,
)


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    return frozenset(holidays_lib.list_supported_countries())


@cache
def _subdivisions(country: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """(the codes, in the library's order; every accepted spelling, aliases included)."""
    entity = holidays_lib.country_holidays(country)
    codes = tuple(entity.subdivisions)
    return codes, frozenset(codes) | frozenset(getattr(entity, "subdivisions_aliases", {}))


def _hint(word: str, choices: frozenset[str]) -> str:
    """did_you_mean, but a mere case slip ("utc", "us") is always caught."""
    for choice in (word.upper(), word.lower(), word.title()):
        if choice in choices:
            return f' (did you mean "{choice}"?)'
    return did_you_mean(word, choices)


# -- semantic checks ------------------------------------------------------------------------


def check_schedule(doc: Document, pointer: str, raw: Any, *, default_timezone: str) -> Iterator[PolicyError]:
    """Semantic problems of the schedule mapping at `pointer`. Shapes are the schema's job, so
    what cannot be read here is skipped, never raised. (`default_timezone` is checked with
    settings; it is taken so that every schedule check sees what compile will see.)"""
    if not isinstance(raw, Mapping):
        return
    tz = raw.get("timezone")
    if isinstance(tz, str) and tz not in _zone_names():
        message = f'"{tz}" is not an IANA time zone; write a name like "Europe/London" or "UTC"'
        yield doc.error(pointer + "/timezone", message + _hint(tz, _zone_names()), "bad-timezone")
    if isinstance(raw.get("weekly"), Mapping):
        yield from _check_weekly(doc, pointer + "/weekly", raw["weekly"])
    yield from _check_holidays(doc, pointer + "/holidays", raw.get("holidays"))
    closed: list[tuple[date, date]] = []
    for i, text in enumerate(raw["closed"] if isinstance(raw.get("closed"), list) else ()):
        try:
            if isinstance(text, str):
                closed.append(_parse_date_range(text))
        except _Invalid as exc:
            yield doc.error(pointer + pointer_of("closed", i), str(exc), "bad-date")
    for key, windows in raw["special"].items() if isinstance(raw.get("special"), Mapping) else ():
        at = pointer + pointer_of("special", key)
        if ".." in str(key):
            message = f'"{key}" is a range; special takes one date per key, so give each date its own'
            yield doc.error(at, message, "bad-date", key=True)
        else:
            try:
                day = _parse_date(str(key))
                if any(a <= day <= b for a, b in closed):
                    message = f"{day} is both closed and special; closed wins, so remove it from one of them"
                    yield doc.error(at, message, "closed-and-special", severity="warning", key=True)
            except _Invalid as exc:
                yield doc.error(at, str(exc), "bad-date", key=True)
        placed: list[_Placed] = []
        yield from _check_windows(doc, at, windows, placed)
        yield from _overlaps(doc, placed, None)


_Placed = tuple[int, int, str, str]  # start, end, pointer, text of a readable window


def _check_windows(doc: Document, pointer: str, windows: Any, placed: list[_Placed]) -> Iterator[PolicyError]:
    """Problems of a list of windows; the readable ones are appended to `placed`."""
    for i, text in enumerate(windows if isinstance(windows, list) else ()):
        if isinstance(text, str):
            try:
                placed.append((*_parse_window(text), pointer + pointer_of(i), text))
            except _Invalid as exc:
                yield doc.error(pointer + pointer_of(i), str(exc), "bad-window")


def _check_weekly(doc: Document, pointer: str, weekly: Mapping[Any, Any]) -> Iterator[PolicyError]:
    given: dict[int, str] = {}
    placed: list[list[_Placed]] = [[] for _ in _DAYS]
    for key, windows in weekly.items():
        at = pointer + pointer_of(key)
        try:
            days = _parse_days(str(key))
        except _Invalid as exc:
            yield doc.error(at, str(exc), "bad-day", key=True)
            days = ()
        for d in days:
            if d in given:
                also = f' (also in "{given[d]}")' if given[d] != key else ""
                message = f"{_DAYS[d]} is given twice{also}; list each day once"
                yield doc.error(at, message, "duplicate-day", key=True)
            given.setdefault(d, str(key))
        readable: list[_Placed] = []
        yield from _check_windows(doc, at, windows, readable)
        for d in days:
            placed[d].extend(readable)
    reported: set[tuple[str, str]] = set()  # "mon-fri" would repeat one overlap five times
    for d in range(7):
        spill = [(s - _DAY, e - _DAY, p, t) for s, e, p, t in placed[d - 1] if e > _DAY]
        for problem in _overlaps(doc, spill + placed[d], _DAYS[d]):
            if (problem.pointer, problem.message) not in reported:
                reported.add((problem.pointer, problem.message))
                yield problem


def _overlaps(doc: Document, placed: list[_Placed], day: str | None) -> Iterator[PolicyError]:
    """Warn at each window that starts before an earlier one ends (same day, or a spill)."""
    placed = sorted(placed)
    for i in range(1, len(placed)):
        s, e, p, t = placed[i]
        first, end, _, text = max(placed[:i], key=lambda w: w[1])  # reaching furthest so far
        if not 0 <= s < end:  # s < 0: a spill, already judged on the day it starts
            continue
        if first < 0:
            message = (
                f'"{t}" on {day} overlaps "{text}" from the day before; make one end where the other starts'
            )
        else:
            message = (
                f'"{t}" overlaps "{text}"; write one window "{_format_window((first, max(e, end)))}" instead'
            )
        yield doc.error(p, message, "overlapping-windows", severity="warning")


def _check_holidays(doc: Document, pointer: str, raw: Any) -> Iterator[PolicyError]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("country"), str):
        return
    country, sub = raw["country"], raw.get("subdivision")
    if country not in _countries():
        message = f'"{country}" is not a country the holiday calendar knows; write an ISO 3166 code like "US"'
        yield doc.error(pointer + "/country", message + _hint(country, _countries()), "bad-country")
        return
    if sub is None or isinstance(sub, bool) or not isinstance(sub, str | int):
        return
    codes, accepted = _subdivisions(country)
    if str(sub) not in accepted:
        if not codes:
            message = f"{country} has no subdivisions; remove subdivision"
        else:
            few = ", ".join(codes[:8]) + (", …" if len(codes) > 8 else "")
            message = f'"{sub}" is not a subdivision of {country}; use one of {few}'
            message += _hint(str(sub), accepted)
        yield doc.error(pointer + "/subdivision", message, "bad-subdivision")
