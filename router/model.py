"""Compiled, immutable policy types: Policy, Route, Condition, Target, Facts, Decision. Pure.

Raw YAML lives in `Document`; these are what the compiler builds from checked documents and
what the evaluator walks. Every node keeps its Source so explain, test and logs can point
back at the YAML line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from router import phone
from router.schedules import Schedule, is_open

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


class NeedCrm(Exception):
    """Raised inside evaluation when a CRM fact is read before the lookup happened."""


@dataclass(frozen=True, slots=True)
class Source:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything a decision may depend on. CRM facts are None until looked up."""

    caller: str | None  # E.164, None = anonymous / withheld / unparseable
    dialled: str | None
    at: datetime  # timezone-aware
    phone_number_id: str | None = None
    call_id: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    crm_status: CrmStatus | None = None
    tags: frozenset[str] = frozenset()
    crm: Mapping[str, str] = field(default_factory=dict)


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
        return _number(facts, self.which) or "anonymous"


@dataclass(frozen=True, slots=True)
class NumberRegex(Condition):
    which: str
    pattern: re.Pattern[str]

    def test(self, facts: Facts) -> bool:
        n = _number(facts, self.which)
        return n is not None and self.pattern.fullmatch(n) is not None

    def describe(self) -> str:
        return f"{self.which} matches /{self.pattern.pattern}/"

    def actual(self, facts: Facts) -> str:
        return _number(facts, self.which) or "anonymous"


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
        return (phone.country_of(n) or "unknown") if n else "anonymous"


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
        return phone.type_of(n) if n else "anonymous"


@dataclass(frozen=True, slots=True)
class Anonymous(Condition):
    which: str
    expected: bool

    def test(self, facts: Facts) -> bool:
        return (_number(facts, self.which) is None) == self.expected

    def describe(self) -> str:
        return f"{self.which} is {'anonymous' if self.expected else 'not anonymous'}"

    def actual(self, facts: Facts) -> str:
        return _number(facts, self.which) or "anonymous"


@dataclass(frozen=True, slots=True)
class PhoneNumberId(Condition):
    ids: frozenset[str]

    def test(self, facts: Facts) -> bool:
        return facts.phone_number_id in self.ids

    def describe(self) -> str:
        return f"phone_number_id in {', '.join(sorted(self.ids))}"

    def actual(self, facts: Facts) -> str:
        return facts.phone_number_id or "none"


@dataclass(frozen=True, slots=True)
class Open(Condition):
    """during (open=True) / outside (open=False) a schedule."""

    schedule: Schedule
    open: bool

    def test(self, facts: Facts) -> bool:
        return is_open(self.schedule, facts.at) == self.open

    def describe(self) -> str:
        return f"{'during' if self.open else 'outside'} {self.schedule.name}"

    def actual(self, facts: Facts) -> str:
        state = "open" if is_open(self.schedule, facts.at) else "closed"
        return f"{self.schedule.name} is {state} at {facts.at.isoformat()}"


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
        return all(p.test(facts) for p in self.parts)

    def describe(self) -> str:
        return " and ".join(p.describe() for p in self.parts)


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    parts: tuple[Condition, ...]

    def test(self, facts: Facts) -> bool:
        return any(p.test(facts) for p in self.parts)

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
    serialised at compile time when nothing in it depends on the call."""

    name: str | None
    kind: str  # one of TARGET_KINDS or "split"
    source: Source
    body: Mapping[str, object] = field(default_factory=dict)
    templated: bool = False
    prepared: bytes | None = None
    variants: tuple[Variant, ...] = ()
    total_weight: int = 0
    salt: str = ""


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


@dataclass(frozen=True, slots=True)
class Settings:
    timezone: str = "UTC"
    region: str | None = None
    deadline_ms: int = 4000


@dataclass(frozen=True, slots=True)
class RouteIndex:
    """Candidate routes by key fact; each tuple holds route positions in ascending order."""

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
    tag_routes: tuple[int, ...]  # every tag-indexed route, for when tags are not known yet
    schedules: tuple[tuple[Schedule, tuple[int, ...], tuple[int, ...]], ...]  # (schedule, open, closed)
    always: tuple[int, ...]


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
