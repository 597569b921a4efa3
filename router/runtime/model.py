"""Compiled, immutable policy types: Policy, Route, Condition, Target, Facts, Decision. Pure.

Raw YAML lives in `Document`; these are what the compiler builds from checked documents and
what the evaluator walks. Every node keeps its Source so explain, test and logs can point
back at the YAML line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from router.runtime import phone
from router.runtime.schedules import Schedule, effective_hours, is_open
from router.runtime.statefacts import StateFacts, StateSettings

CrmStatus = Literal["ok", "not_found", "timeout", "error", "disabled"]
CRM_STATUSES: tuple[str, ...] = ("ok", "not_found", "timeout", "error", "disabled")
TARGET_KINDS = (
    "assistantId",
    "assistant",
    "squadId",
    "squad",
    "workflowId",
    "workflow",
    "destination",
    "error",
)
OVERRIDES = {
    "assistantId": "assistantOverrides",
    "assistant": "assistantOverrides",
    "squadId": "squadOverrides",
    "squad": "squadOverrides",
    "workflowId": "workflowOverrides",
    "workflow": "workflowOverrides",
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MINUTE = timedelta(minutes=1)


def minute_of(at: datetime) -> int:
    """Whole minutes since the epoch, exactly (integer timedelta arithmetic, no float
    rounding at the end of a minute). A naive datetime counts as UTC, as in is_open."""
    return (at - (_EPOCH_NAIVE if at.utcoffset() is None else _EPOCH)) // _MINUTE


# the datetime whose minute was computed last, and that minute (datetimes are immutable)
_LAST_MINUTE: list[tuple[datetime, int]] = [(_EPOCH, 0)]

REGEX_TIMEOUT_S = 0.02


class NeedCrm(Exception):
    """Raised inside evaluation when a CRM fact is read before the lookup happened."""


class HasPosition(Protocol):
    def position(self, pointer: str, *, key: bool = False) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class Source:
    """Where a route or target was written. line:col is looked up only when asked for, so a
    reload that took the fast path (no positions) never pays for the positioned parse."""

    file: str
    pointer: str
    doc: HasPosition | None = field(default=None, compare=False, repr=False)

    @property
    def line(self) -> int:
        return self.doc.position(self.pointer)[0] if self.doc else 1

    @property
    def column(self) -> int:
        return self.doc.position(self.pointer)[1] if self.doc else 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(slots=True)
class Facts:
    """Everything a decision may depend on. CRM facts are None until looked up.

    Treated as immutable (with_crm and dataclasses.replace make new ones); not declared
    frozen only because a frozen dataclass takes four times as long to build, and every
    call builds one or two."""

    caller: str | None  # E.164, None = anonymous / withheld / unparseable
    dialled: str | None
    at: datetime  # timezone-aware
    phone_number_id: str | None = None
    call_id: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    crm_status: CrmStatus | None = None
    tags: frozenset[str] = frozenset()
    crm: Mapping[str, str] = field(default_factory=dict)
    state: StateFacts | None = None  # live call state (DESIGN §13), when the policy reads it
    caller_sip: str | None = None  # customer.sipUri (DESIGN §9: SIP numbers)
    dialled_sip: str | None = None  # phoneNumber.sipUri
    # derived: the call's UTC minute, the key of the schedules' open/closed memo
    minute: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # with_crm builds a second Facts on the same `at` for most calls: the last answer is kept
        at = self.at
        last = _LAST_MINUTE[0]
        if at is last[0]:
            self.minute = last[1]
        else:
            self.minute = minute = minute_of(at)
            _LAST_MINUTE[0] = (at, minute)  # one store: a tool's thread never sees half of it

    def with_crm(self, status: CrmStatus, tags: frozenset[str], crm: Mapping[str, str]) -> Facts:
        """These facts once the CRM answered (dataclasses.replace costs 3x as much per call)."""
        return Facts(
            self.caller,
            self.dialled,
            self.at,
            self.phone_number_id,
            self.call_id,
            self.variables,
            status,
            tags,
            crm,
            self.state,
            self.caller_sip,
            self.dialled_sip,
        )


# ---------------------------------------------------------------- conditions


class Condition:
    """A compiled test over Facts. `test` is the hot path; `describe` is for explain."""

    __slots__ = ()
    needs_crm = False

    def test(self, facts: Facts) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def actual(self, facts: Facts) -> str:
        """The fact value this condition looked at, for explain."""
        return ""


@dataclass(frozen=True, slots=True)
class Always(Condition):
    def test(self, facts: Facts) -> bool:
        return True

    def describe(self) -> str:
        return "always"


def _shown(facts: Facts, which: str) -> str:
    """A number for explain: the number, or why there is none."""
    n = _number(facts, which)
    return n if n else ("anonymous" if which == "caller" else "none")


def _number(facts: Facts, which: str) -> str | None:
    return facts.caller if which == "caller" else facts.dialled


def _prefix_hit(number: str, prefixes: frozenset[str], lengths: tuple[int, ...]) -> bool:
    return any(number[:n] in prefixes for n in lengths)


@dataclass(frozen=True, slots=True)
class NumberSet(Condition):
    """caller/dialled is one of the exact numbers or starts with one of the prefixes."""

    which: str
    exact: frozenset[str]
    prefixes: frozenset[str]
    label: str
    lengths: tuple[int, ...] = ()

    def test(self, facts: Facts) -> bool:
        n = facts.caller if self.which == "caller" else facts.dialled
        if n is None:
            return False
        return n in self.exact or (bool(self.lengths) and _prefix_hit(n, self.prefixes, self.lengths))

    def describe(self) -> str:
        return f"{self.which} {self.label}"

    def actual(self, facts: Facts) -> str:
        return _shown(facts, self.which)


@dataclass(frozen=True, slots=True)
class NumberRegex(Condition):
    """A full match on the E.164 number, compiled with the `regex` engine for its timeout:
    lint refuses patterns that backtrack badly, and should one get through anyway a match
    that runs past REGEX_TIMEOUT_S raises TimeoutError, which the server answers with the
    fallback (and the reason) instead of holding the call."""

    which: str
    pattern: Any  # regex.Pattern[str]

    def test(self, facts: Facts) -> bool:
        n = _number(facts, self.which)
        return n is not None and self.pattern.fullmatch(n, timeout=REGEX_TIMEOUT_S) is not None

    def describe(self) -> str:
        return f"{self.which} matches /{self.pattern.pattern}/"

    def actual(self, facts: Facts) -> str:
        return _shown(facts, self.which)


@dataclass(frozen=True, slots=True)
class NumberCountry(Condition):
    which: str
    countries: frozenset[str]

    def test(self, facts: Facts) -> bool:
        n = _number(facts, self.which)
        return n is not None and phone.country_of(n) in self.countries

    def describe(self) -> str:
        return f"{self.which} country in {', '.join(sorted(self.countries))}"

    def actual(self, facts: Facts) -> str:
        n = _number(facts, self.which)
        return (phone.country_of(n) or "unknown") if n else _shown(facts, self.which)


@dataclass(frozen=True, slots=True)
class NumberType(Condition):
    which: str
    types: frozenset[str]

    def test(self, facts: Facts) -> bool:
        n = _number(facts, self.which)
        return n is not None and phone.type_of(n) in self.types

    def describe(self) -> str:
        return f"{self.which} type in {', '.join(sorted(self.types))}"

    def actual(self, facts: Facts) -> str:
        n = _number(facts, self.which)
        return phone.type_of(n) if n else _shown(facts, self.which)


@dataclass(frozen=True, slots=True)
class Anonymous(Condition):
    which: str
    expected: bool

    def test(self, facts: Facts) -> bool:
        return (_number(facts, self.which) is None) == self.expected

    def describe(self) -> str:
        return f"{self.which} is {'anonymous' if self.expected else 'not anonymous'}"

    def actual(self, facts: Facts) -> str:
        return _shown(facts, self.which)


@dataclass(frozen=True, slots=True)
class PhoneNumberId(Condition):
    ids: frozenset[str]

    def test(self, facts: Facts) -> bool:
        return facts.phone_number_id in self.ids

    def describe(self) -> str:
        return f"phone_number_id in {', '.join(sorted(self.ids))}"

    def actual(self, facts: Facts) -> str:
        return facts.phone_number_id or "none"


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
            start = _EPOCH + facts.minute * _MINUTE
            first = start.astimezone(self.schedule.zone).utcoffset()
            last = (start + (_MINUTE - timedelta(microseconds=1))).astimezone(self.schedule.zone).utcoffset()
            if first is None or first != last or first % _MINUTE:
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


@dataclass(frozen=True, slots=True)
class Tags(Condition):
    any: frozenset[str]
    all: frozenset[str]
    none: frozenset[str]
    needs_crm = True

    def test(self, facts: Facts) -> bool:
        if facts.crm_status is None:
            raise NeedCrm
        t = facts.tags
        return (not self.any or not self.any.isdisjoint(t)) and self.all <= t and self.none.isdisjoint(t)

    def describe(self) -> str:
        parts = [f"{k} of [{', '.join(sorted(v))}]" for k, v in (("any", self.any), ("all", self.all)) if v]
        if self.none:
            parts.append(f"none of [{', '.join(sorted(self.none))}]")
        return "tags " + " and ".join(parts)

    def actual(self, facts: Facts) -> str:
        return f"tags [{', '.join(sorted(facts.tags))}]"


@dataclass(frozen=True, slots=True)
class CrmField(Condition):
    name: str
    values: frozenset[str]
    needs_crm = True

    def test(self, facts: Facts) -> bool:
        if facts.crm_status is None:
            raise NeedCrm
        return facts.crm.get(self.name) in self.values

    def describe(self) -> str:
        return f"crm.{self.name} in [{', '.join(sorted(self.values))}]"

    def actual(self, facts: Facts) -> str:
        return f"crm.{self.name} = {facts.crm.get(self.name, '(none)')}"


@dataclass(frozen=True, slots=True)
class CrmStatusIs(Condition):
    statuses: frozenset[str]
    needs_crm = True

    def test(self, facts: Facts) -> bool:
        if facts.crm_status is None:
            raise NeedCrm
        return facts.crm_status in self.statuses

    def describe(self) -> str:
        return f"crm_status in [{', '.join(sorted(self.statuses))}]"

    def actual(self, facts: Facts) -> str:
        return f"crm_status = {facts.crm_status}"


@dataclass(frozen=True, slots=True)
class Variable(Condition):
    name: str
    values: frozenset[str]

    def test(self, facts: Facts) -> bool:
        return facts.variables.get(self.name) in self.values

    def describe(self) -> str:
        return f"variable {self.name} in [{', '.join(sorted(self.values))}]"

    def actual(self, facts: Facts) -> str:
        return f"{self.name} = {facts.variables.get(self.name, '(none)')}"


@dataclass(frozen=True, slots=True)
class All(Condition):
    parts: tuple[Condition, ...]

    def test(self, facts: Facts) -> bool:
        for p in self.parts:  # noqa: SIM110 - a loop is ~2x faster than all(genexpr) here
            if not p.test(facts):
                return False
        return True

    def describe(self) -> str:
        return " and ".join(p.describe() for p in self.parts)


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    parts: tuple[Condition, ...]

    def test(self, facts: Facts) -> bool:
        for p in self.parts:  # noqa: SIM110 - a loop is ~2x faster than any(genexpr) here
            if p.test(facts):
                return True
        return False

    def describe(self) -> str:
        return "any of (" + "; ".join(p.describe() for p in self.parts) + ")"


@dataclass(frozen=True, slots=True)
class Not(Condition):
    part: Condition

    def test(self, facts: Facts) -> bool:
        return not self.part.test(facts)

    def describe(self) -> str:
        return f"not ({self.part.describe()})"


# ---------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ${…} holes, split at compile time: ('Hi ', ('crm', 'name'), '!')."""

    parts: tuple[str | tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Variant:
    upto: int  # cumulative weight bound (exclusive)
    target: Target


@dataclass(frozen=True, slots=True)
class Target:
    """What to answer. `body` is the reply with Template leaves; `prepared` is the reply
    serialised at compile time when nothing in it depends on the call. `spliced` is, for a
    templated reply, the same serialisation with a `%s` hole per ${…} reference: (format
    bytes with `%` doubled, the references in order, the indices of the references that make
    up the reply's one choice when only they decide whether it renders empty) — see
    replies.splice and replies.render_bytes; None where the reply must be rendered in full."""

    name: str | None
    kind: str  # one of TARGET_KINDS or "split"
    source: Source
    body: Mapping[str, object] = field(default_factory=dict)
    templated: bool = False
    prepared: bytes | None = None
    variants: tuple[Variant, ...] = ()
    total_weight: int = 0
    salt: str = ""
    # derived from body (so left out of eq/hash/repr like Source.doc)
    spliced: tuple[bytes, tuple[tuple[str, str], ...], tuple[int, ...]] | None = field(
        default=None, compare=False, repr=False
    )
    pool: str | None = None  # a call answered with this target holds a slot of this pool


# ---------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class Route:
    id: str
    when: Condition
    then: Target
    source: Source
    position: int


@dataclass(frozen=True, slots=True)
class CrmSettings:
    file: str | None = None  # absolute path
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    tags: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    timeout_ms: int = 1000
    cache_ttl_s: float = 300.0
    # HTTP options for real CRMs (DESIGN §12)
    method: str = "GET"
    body: str | None = None
    found: str | None = None
    tags_split: str | None = None
    number_format: str = "e164"
    oauth2: Mapping[str, str] | None = None
    sqlite: str | None = None  # absolute path of the customers database
    postgres: Mapping[str, Any] | None = None  # {dsn, query, pool}
    max_body_bytes: int = 1024 * 1024  # a CRM answer, decompressed


@dataclass(frozen=True, slots=True)
class Settings:
    timezone: str = "UTC"
    region: str | None = None
    deadline_ms: int = 4000
    forward: Mapping[str, Any] | None = None  # settings.forward as checked (DESIGN §9)


@dataclass(frozen=True, slots=True)
class RouteIndex:
    """Candidate routes by key fact; each tuple holds route positions in ascending order.

    Every route is indexed under one clause its `when` requires (its key), so a route the
    index offers has that clause true: `residual[position]` is what remains to test (None:
    nothing, the route matches) and `decisions[position]` the prebuilt answer."""

    caller_exact: Mapping[str, tuple[int, ...]]
    caller_prefix: Mapping[str, tuple[int, ...]]
    caller_prefix_lengths: tuple[int, ...]
    caller_country: Mapping[str, tuple[int, ...]]
    dialled_exact: Mapping[str, tuple[int, ...]]
    dialled_prefix: Mapping[str, tuple[int, ...]]
    dialled_prefix_lengths: tuple[int, ...]
    phone_number_id: Mapping[str, tuple[int, ...]]
    anonymous: tuple[int, ...]
    tags: Mapping[str, tuple[int, ...]]
    # tag-indexed routes for when tags are not known yet, up to the first that surely needs them
    tag_routes: tuple[int, ...]
    schedules: ScheduleRoutes
    always: tuple[int, ...]
    residual: tuple[Condition | None, ...]
    decisions: tuple[Decision, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    files: tuple[str, ...]
    settings: Settings
    crm: CrmSettings | None
    schedules: Mapping[str, Schedule]
    targets: Mapping[str, Target]
    routes: tuple[Route, ...]
    transfers: tuple[Route, ...]
    default: Target
    fallback: Target
    index: RouteIndex
    transfer_index: RouteIndex
    needs_crm: bool
    # Raises when a rendered reply fails Vapi's schema (a ${…} value out of its limits); set
    # by the compiler, which knows Vapi's schema (runtime does not import the policy stage).
    check_reply: Callable[[Target, bytes], None] | None = None
    # DESIGN §9: routes answering handoff-destination-request (squads)
    handoffs: tuple[Route, ...] = ()
    handoff_index: RouteIndex | None = None
    state: StateSettings | None = None  # None: no history, capacity or flags anywhere


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Step:
    route: str
    matched: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The route that matched (None: the default) and its target. `needs_crm` means a CRM
    fact was reached before the lookup: look up, then evaluate again."""

    route: Route | None
    target: Target | None
    needs_crm: bool = False
    trace: tuple[Step, ...] = ()
