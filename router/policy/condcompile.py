"""Stage 4, conditions: a route's `when` -> Condition (ConditionCompiler, a base of
compiler.Compiler), keys ANDed with the ones needing no CRM first. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import regex

from router.policy.compilebase import PolicySet, as_list
from router.policy.statecompile import STATE_CONDITIONS, state_condition
from router.runtime import phone
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
from router.runtime.facts import scalar_text
from router.runtime.model import Settings
from router.runtime.schedconds import Open, ScheduleClock
from router.runtime.sip import SipMatch, compile_patterns, is_sip
from router.runtime.toolcall import AssistantIs, Parameter


def _text(value: Any) -> str:
    # Policy values are schema-checked scalars; they compare with the call's facts as text.
    return scalar_text(value) or ""


class ConditionCompiler:
    """The condition half of Compiler (its base): `when` mappings -> Condition. Reads the
    merged set's lists, the region and the schedules' clocks, which Compiler sets."""

    set: PolicySet
    settings: Settings
    clocks: dict[str, ScheduleClock]

    # ------------------------------------------------------------ numbers

    def number_entries(self, entries: list[str]) -> tuple[frozenset[str], frozenset[str]]:
        exact: set[str] = set()
        prefixes: set[str] = set()
        for entry in entries:
            if entry.endswith("*"):
                prefixes.add(entry[:-1])
            else:
                e164 = phone.normalise(entry, self.settings.region)
                assert e164 is not None, entry
                exact.add(e164)
        return frozenset(exact), frozenset(prefixes)

    def number_condition(self, which: str, raw: Any) -> Condition:
        if not isinstance(raw, dict):
            entries = [str(x) for x in as_list(raw)]
            sips = [e for e in entries if is_sip(e)]
            numbers = [e for e in entries if not is_sip(e)]
            exact, prefixes = self.number_entries(numbers)
            label = "is " + ", ".join(numbers)
            if not sips:
                return _numberset(which, exact, prefixes, label)
            sip = SipMatch(which, compile_patterns(sips), ", ".join(sips))
            return AnyOf((_numberset(which, exact, prefixes, label), sip)) if numbers else sip
        parts: list[Condition] = []
        if "prefix" in raw:
            prefixes = frozenset(p.rstrip("*") for p in as_list(raw["prefix"]))
            parts.append(
                _numberset(which, frozenset(), prefixes, "starts with " + ", ".join(sorted(prefixes)))
            )
        if "in" in raw:
            names = as_list(raw["in"])
            exact, prefixes = self.number_entries([e for n in names for e in self.set.lists[n]])
            parts.append(_numberset(which, exact, prefixes, "in " + ", ".join(names)))
        if "regex" in raw:
            parts.append(NumberRegex(which, regex.compile(raw["regex"])))
        if "country" in raw:
            parts.append(NumberCountry(which, frozenset(c.upper() for c in as_list(raw["country"]))))
        if "type" in raw:
            parts.append(NumberType(which, frozenset(as_list(raw["type"]))))
        if "anonymous" in raw:
            parts.append(Anonymous(which, bool(raw["anonymous"])))
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    # ------------------------------------------------------------ conditions

    def condition(self, raw: Any) -> Condition:
        if not raw:
            return Always()
        parts: list[Condition] = []
        for key, value in raw.items():
            part = self.condition_key(key, value)
            parts.extend(part.parts if isinstance(part, All) else (part,))
        return parts[0] if len(parts) == 1 else _all(parts)

    def condition_key(self, key: str, value: Any) -> Condition:
        if key in ("caller", "dialled"):
            return self.number_condition(key, value)
        if key == "phone_number_id":
            return PhoneNumberId(frozenset(as_list(value)))
        if key in ("during", "outside"):
            return Open(self.clocks[value], key == "during")
        if key == "tags":
            if isinstance(value, list):
                return Tags(frozenset(value), frozenset(), frozenset())
            return Tags(
                frozenset(value.get("any", [])),
                frozenset(value.get("all", [])),
                frozenset(value.get("none", [])),
            )
        if key == "crm":
            fields = [CrmField(k, frozenset(_text(x) for x in as_list(v))) for k, v in value.items()]
            return fields[0] if len(fields) == 1 else All(tuple(fields))
        if key == "crm_status":
            return CrmStatusIs(frozenset(as_list(value)))
        if key == "variables":
            found = [Variable(k, frozenset(_text(x) for x in as_list(v))) for k, v in value.items()]
            return found[0] if len(found) == 1 else All(tuple(found))
        if key == "parameters":
            args = [Parameter(k, frozenset(_text(x) for x in as_list(v))) for k, v in value.items()]
            return args[0] if len(args) == 1 else All(tuple(args))
        if key == "assistant":
            return AssistantIs(frozenset(as_list(value)))
        if key == "any":
            return AnyOf(tuple(self.condition(c) for c in value))
        if key == "all":
            return _all([self.condition(c) for c in value])
        if key == "not":
            return Not(self.condition(value))
        if key in STATE_CONDITIONS:
            return state_condition(key, value)
        raise AssertionError(f"unchecked condition key {key}")


def _all(parts: Sequence[Condition]) -> All:
    """Keys are ANDed in any order, so test the ones that need no CRM lookup first: a route
    whose call facts already fail then never asks for the CRM. This is also what makes
    skipping a route whose index key misses exact for facts that are still waiting for the
    CRM (the evaluator's fast path and the plain scan agree on `needs_crm`)."""
    return All(tuple(sorted(parts, key=reads_crm)))


def _numberset(which: str, exact: frozenset[str], prefixes: frozenset[str], label: str) -> NumberSet:
    return NumberSet(which, exact, prefixes, label, tuple(sorted({len(p) for p in prefixes})))


def reads_crm(cond: Condition) -> bool:
    if isinstance(cond, All | AnyOf):
        return any(reads_crm(p) for p in cond.parts)
    if isinstance(cond, Not):
        return reads_crm(cond.part)
    return cond.needs_crm
