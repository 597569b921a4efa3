"""Stage 3 checks: phone numbers, prefixes, regexes, countries and number types in lists and
conditions. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from router.errors import PolicyError, did_you_mean
from router.policy.checks.context import NUMBER_KEYS, Context, Where
from router.policy.checks.regexes import (
    MAX_VARIABLE_REPEATS,
    ambiguous_repeat,
    nested_quantifier,
    variable_repeats,
)
from router.policy.compilebase import as_list
from router.policy.sipchecks import check_number_or_sip
from router.runtime import phone


def country_hint(code: str) -> str:
    """did_you_mean over ISO 3166 codes, knowing the usual slip: the UK is "GB"."""
    if code.upper() == "UK":
        return ' (did you mean "GB"?)'
    return did_you_mean(code.upper(), phone.countries())


def _check_number(w: Where, text: Any, region: str | None) -> Iterator[PolicyError]:
    if not isinstance(text, str):
        return
    if text.endswith("*"):
        if not re.fullmatch(r"\+\d{1,14}\*", text):
            yield w.error(
                f'"{text}" is not a valid prefix: write + and digits, then *, e.g. "+44*"', "bad-prefix"
            )
        return
    if phone.normalise(text, region) is None:
        hint = "" if text.startswith("+") or region else " (numbers without +country need settings.region)"
        yield w.error(f'"{text}" is not a possible phone number{hint}', "bad-number")


def numbers_valid(ctx: Context) -> Iterator[PolicyError]:
    region = ctx.region
    for w, entries in ctx.lists.values():
        for i, text in enumerate(entries if isinstance(entries, list) else []):
            yield from _check_number(w.at(i), text, region)
    for w, cond in ctx.conditions():
        for key in NUMBER_KEYS:
            if key not in cond:
                continue
            spec = cond[key]
            if isinstance(spec, str):
                yield from check_number_or_sip(w.at(key), spec, region, _check_number)
            elif isinstance(spec, list):
                for i, text in enumerate(spec):
                    yield from check_number_or_sip(w.at(key, i), text, region, _check_number)
            elif isinstance(spec, dict):
                yield from _number_mapping(w.at(key), spec)


def _number_mapping(w: Where, spec: dict[str, Any]) -> Iterator[PolicyError]:
    if "prefix" in spec:
        many = isinstance(spec["prefix"], list)
        for i, p in enumerate(as_list(spec["prefix"])):
            if isinstance(p, str) and not re.fullmatch(r"\+\d{1,14}\*?", p):
                yield (w.at("prefix", i) if many else w.at("prefix")).error(
                    f'"{p}" is not a valid prefix: write + and digits, e.g. "+44"', "bad-prefix"
                )
    if isinstance(spec.get("regex"), str):
        pattern = spec["regex"]
        try:
            re.compile(pattern)
        except re.error as exc:
            yield w.at("regex").error(f"invalid regex: {exc}", "bad-regex")
        else:
            if nested_quantifier(pattern):
                yield w.at("regex").error(
                    "regex has a nested quantifier such as (a+)+ that can backtrack for seconds; "
                    "rewrite it without repeating a repeated group",
                    "slow-regex",
                )
            elif ambiguous_repeat(pattern):
                yield w.at("regex").error(
                    "regex repeats a choice whose alternatives can match the same digit, such as "
                    "(\\d|\\d\\d)+, that can backtrack for seconds; make the alternatives exclusive",
                    "slow-regex",
                )
            elif (n := variable_repeats(pattern)) > MAX_VARIABLE_REPEATS:
                yield w.at("regex").error(
                    f"regex has {n} repeats of variable length (more than {MAX_VARIABLE_REPEATS}) that "
                    "can backtrack for a long time on a near miss; use fewer * + ? and {m,n}",
                    "slow-regex",
                )
    if "country" in spec:
        many = isinstance(spec["country"], list)
        for i, c in enumerate(as_list(spec["country"])):
            if isinstance(c, str) and not phone.is_country(c.upper()):
                yield (w.at("country", i) if many else w.at("country")).error(
                    f'unknown country "{c}"{country_hint(c)}', "bad-country"
                )
    if "type" in spec:
        many = isinstance(spec["type"], list)
        for i, t in enumerate(as_list(spec["type"])):
            if isinstance(t, str) and t not in phone.NUMBER_TYPES:
                yield (w.at("type", i) if many else w.at("type")).error(
                    f'unknown number type "{t}"{did_you_mean(t, phone.NUMBER_TYPES)}; one of '
                    f"{', '.join(phone.NUMBER_TYPES)}",
                    "bad-number-type",
                )
