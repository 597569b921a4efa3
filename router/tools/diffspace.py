"""The decision space of two policy sets, cut into classes no condition can tell apart. [pure]

`vapi-router diff` decides one representative call per region. That is sound only if every
call of a region is decided like its representative, so a region is a class of *features*:
everything any condition of either set (or a template) can observe. A number's features are
the exact numbers it equals, the prefixes it starts with, its country and type where
conditions name them, and the regexes it matches; the CRM's are the status, the named tags
it has and, per named field, the named value it has (else "other" or absent); and so on.
Two calls with the same features pass and fail every condition alike, so they take the
same route; `classes_of` is that key for any Facts (the property test uses it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import phonenumbers

from router.runtime import phone
from router.runtime.conditions import (
    All,
    Anonymous,
    AnyOf,
    Condition,
    CrmField,
    Not,
    NumberCountry,
    NumberRegex,
    NumberSet,
    NumberType,
    PhoneNumberId,
    Tags,
    Variable,
)
from router.runtime.model import Policy, Target, Template
from router.runtime.schedconds import Open
from router.runtime.schedules import Schedule

OTHER = "\x00other"  # a value no condition names
ABSENT = "\x00absent"  # no value at all
_ORDINARY_REGIONS = ("US", "GB", "DE", "FR", "MX", "IN", "AU", "BR", "JP", "ZA")


@dataclass
class NumberAtoms:
    """What the conditions of both sets name about one number (caller or dialled)."""

    exact: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)
    countries: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    regexes: dict[str, Any] = field(default_factory=dict)  # pattern text -> compiled
    lists: dict[str, set[str]] = field(default_factory=dict)  # entry -> labels naming it

    def features(self, number: str | None) -> tuple[Any, ...]:
        """The key of the number's class: equal keys, equal answers from every condition."""
        if number is None:
            return ("anonymous",)
        return (
            number if number in self.exact else None,
            tuple(sorted(p for p in self.prefixes if number.startswith(p))),
            _named(phone.country_of(number), self.countries) if self.countries else OTHER,
            _named(phone.type_of(number), self.types) if self.types else OTHER,
            tuple(bool(r.fullmatch(number, timeout=0.05)) for r in self.regexes.values()),
        )

    def label(self, number: str | None) -> str:
        """Words for the class of `number`: the exact number, else its longest prefix."""
        if number is None:
            return "anonymous"
        key = self.features(number)
        if key[0] is not None:
            text = number
        elif key[1]:
            text = max(key[1], key=len) + "*"
        else:
            text = "other number" if self.exact or self.prefixes else "any number"
        notes = []
        if self.countries:
            country = key[2] if key[2] in self.countries else "other"
            notes.append(f"country {country}")
        if self.types:
            notes.append(f"type {key[3] if key[3] in self.types else 'other'}")
        notes += [f"/{p}/" for p, hit in zip(self.regexes, key[4], strict=True) if hit]
        return text + (f" ({', '.join(notes)})" if notes else "")


def _named(value: str | None, named: set[str]) -> str:
    return value if value in named else OTHER


@dataclass
class Atoms:
    """Everything either set names, per fact."""

    caller: NumberAtoms = field(default_factory=NumberAtoms)
    dialled: NumberAtoms = field(default_factory=NumberAtoms)
    ids: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    fields: dict[str, set[str]] = field(default_factory=dict)  # crm field -> named values
    variables: dict[str, set[str]] = field(default_factory=dict)
    schedules: list[Schedule] = field(default_factory=list)

    def add_condition(self, cond: Condition) -> None:
        if isinstance(cond, All | AnyOf):
            for part in cond.parts:
                self.add_condition(part)
        elif isinstance(cond, Not):
            self.add_condition(cond.part)
        elif isinstance(cond, NumberSet):
            atoms = self.caller if cond.which == "caller" else self.dialled
            atoms.exact |= cond.exact
            atoms.prefixes |= cond.prefixes
        elif isinstance(cond, NumberRegex):
            (self.caller if cond.which == "caller" else self.dialled).regexes[cond.pattern.pattern] = (
                cond.pattern
            )
        elif isinstance(cond, NumberCountry):
            (self.caller if cond.which == "caller" else self.dialled).countries |= cond.countries
        elif isinstance(cond, NumberType):
            (self.caller if cond.which == "caller" else self.dialled).types |= cond.types
        elif isinstance(cond, Anonymous | Open):
            pass  # anonymous is always a class; schedules are collected from the policies
        elif isinstance(cond, PhoneNumberId):
            self.ids |= cond.ids
        elif isinstance(cond, Tags):
            self.tags |= cond.any | cond.all | cond.none
        elif isinstance(cond, CrmField):
            self.fields.setdefault(cond.name, set()).update(cond.values)
        elif isinstance(cond, Variable):
            self.variables.setdefault(cond.name, set()).update(cond.values)

    def add_target(self, target: Target) -> None:
        for variant in target.variants:
            self.add_target(variant.target)
        for part in _template_refs(target.body):
            if part[0] == "crm":
                self.fields.setdefault(part[1], set())


def _template_refs(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, Template):
        yield from (p for p in value.parts if isinstance(p, tuple))
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _template_refs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _template_refs(v)


def collect_atoms(policies: Sequence[Policy]) -> Atoms:
    atoms = Atoms()
    for policy in policies:
        for route in (*policy.routes, *policy.transfers):
            atoms.add_condition(route.when)
            atoms.add_target(route.then)
        for target in (policy.default, policy.fallback, *policy.targets.values()):
            atoms.add_target(target)
        atoms.schedules.extend(policy.schedules.values())
    return atoms


# ---------------------------------------------------------------- numbers


@lru_cache(maxsize=1)
def _example_numbers() -> tuple[str, ...]:
    """libphonenumber's example number of every region and type: real shapes of every kind."""
    found: list[str] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(12):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    return tuple(dict.fromkeys(found))


def _candidates(atoms: NumberAtoms) -> Iterator[str]:
    """Concrete numbers meant to reach every inhabited class: the named numbers, each named
    prefix followed by the tails of real numbers of its calling code (and plain padding),
    examples of each named country and type, and ordinary numbers of a few countries."""
    yield from sorted(atoms.exact)
    examples = _example_numbers()
    for prefix in sorted(atoms.prefixes, key=lambda p: (len(p), p)):
        for width in range(max(len(prefix) + 1, 9), 16):
            yield (prefix + "5" * width)[:width]
            yield (prefix + "2" * width)[:width]
        for example in examples:
            if len(example) > len(prefix) and example[:2] == prefix[:2]:
                yield prefix + example[len(prefix) :]
    wanted = set(_ORDINARY_REGIONS) | atoms.countries
    for example in examples:
        if atoms.types or phone.country_of(example) in wanted:
            yield example
    yield "+88234567890"  # a number of no country (+882: international networks)


def number_classes(atoms: NumberAtoms) -> dict[tuple[Any, ...], str | None]:
    """features -> the first concrete number found with them (None: the anonymous class)."""
    found: dict[tuple[Any, ...], str | None] = {("anonymous",): None}
    for raw in _candidates(atoms):
        number = phone.normalise(raw)
        if number is None:
            continue
        found.setdefault(atoms.features(number), number)
    return found


def value_classes(named: set[str]) -> list[str]:
    """A text fact's classes: each named value, another value, and no value."""
    return [*sorted(named), OTHER, ABSENT]


def concrete(value: str) -> str | None:
    """The representative of a value class (None: absent)."""
    if value == ABSENT:
        return None
    return "some-other-value" if value == OTHER else value


def value_class(value: str | None, named: set[str]) -> str:
    if value is None:
        return ABSENT
    return value if value in named else OTHER


def shown(value: str) -> str:
    return {OTHER: "other", ABSENT: "none"}.get(value, value)
