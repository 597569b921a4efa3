"""Schedules at a call's minute: ScheduleClock (is_open memoised per minute), ScheduleRoutes (an
index's schedule-keyed routes) and the during/outside condition Open. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from router.runtime.conditions import Condition
from router.runtime.facttypes import EPOCH, MINUTE, Facts
from router.runtime.schedules import Schedule, effective_hours, is_open


class ScheduleClock:
    """A schedule's is_open, memoised per UTC minute of the call.

    Windows start and end on whole local minutes, so while the zone's UTC offset is a whole
    number of minutes and does not change inside the minute, the answer holds for the whole
    minute; other minutes (historic local mean time) are answered without the memo. One clock
    per schedule, shared by every condition and index entry that names it."""

    __slots__ = ("_minutes", "schedule")
    MAX_MINUTES = 4096  # a few days of distinct minutes per schedule; then start afresh

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._minutes: dict[int, bool] = {}

    def __repr__(self) -> str:
        return f"ScheduleClock({self.schedule.name!r})"

    def is_open(self, facts: Facts) -> bool:
        state = self._minutes.get(facts.minute)
        if state is None:
            return self._fill(facts)
        return state

    def remembers(self, minute: int) -> bool:
        return minute in self._minutes

    def _fill(self, facts: Facts) -> bool:
        try:
            start = EPOCH + facts.minute * MINUTE
            first = start.astimezone(self.schedule.zone).utcoffset()
            last = (start + (MINUTE - timedelta(microseconds=1))).astimezone(self.schedule.zone).utcoffset()
            if first is None or first != last or first % MINUTE:
                return is_open(self.schedule, facts.at)
            state = is_open(self.schedule, start)
        except OverflowError:  # local time before year 1 or after 9999: no open hours there
            return False
        if len(self._minutes) >= self.MAX_MINUTES:
            self._minutes.clear()
        self._minutes[facts.minute] = state
        return state


class ScheduleRoutes:
    """The schedule-keyed routes of an index: per schedule the routes keyed `during` it and
    those keyed `outside` it. `at(facts)` gives the routes whose schedule key holds, merged
    in order and memoised per minute like the clocks, so a decision pays one lookup however
    many schedules the policy has."""

    __slots__ = ("_minutes", "entries")

    def __init__(self, entries: tuple[tuple[ScheduleClock, tuple[int, ...], tuple[int, ...]], ...]) -> None:
        self.entries = entries  # (clock, positions keyed `during`, positions keyed `outside`)
        self._minutes: dict[int, tuple[int, ...]] = {}

    def __repr__(self) -> str:
        return f"ScheduleRoutes({self.entries!r})"

    def __bool__(self) -> bool:
        return bool(self.entries)

    def at(self, facts: Facts) -> tuple[int, ...]:
        routes = self._minutes.get(facts.minute)
        if routes is None:
            return self._fill(facts)
        return routes

    def _fill(self, facts: Facts) -> tuple[int, ...]:
        chosen = [o if clock.is_open(facts) else c for clock, o, c in self.entries]
        routes = tuple(sorted(i for positions in chosen for i in positions))
        if all(clock.remembers(facts.minute) for clock, _, _ in self.entries):
            if len(self._minutes) >= ScheduleClock.MAX_MINUTES:
                self._minutes.clear()
            self._minutes[facts.minute] = routes
        return routes


@dataclass(frozen=True, slots=True)
class Open(Condition):
    """during (open=True) / outside (open=False) a schedule."""

    clock: ScheduleClock
    open: bool

    @property
    def schedule(self) -> Schedule:
        return self.clock.schedule

    def test(self, facts: Facts) -> bool:
        return self.clock.is_open(facts) is self.open

    def describe(self) -> str:
        return f"{'during' if self.open else 'outside'} {self.schedule.name}"

    def actual(self, facts: Facts) -> str:
        state = "open" if self.clock.is_open(facts) else "closed"
        why = ""
        try:
            at = facts.at.astimezone(ZoneInfo(self.schedule.timezone))
            local = at.strftime("%a %Y-%m-%d %H:%M %Z")
            note = effective_hours(self.schedule, at.date(), 1)[0].note
            why = f", {note}" if note and state == "closed" else ""
        except (ValueError, OverflowError, KeyError):
            local = facts.at.isoformat()
        return f"{self.schedule.name} is {state} at {local}{why}"
