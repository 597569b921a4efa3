"""Compiled conditions over Facts: numbers, phone number ids, CRM tags/fields/status, variables
and the all/any/not combinators. `test` is the hot path. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.runtime import phone
from router.runtime.facttypes import Facts, NeedCrm

REGEX_TIMEOUT_S = 0.02


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
