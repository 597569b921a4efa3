"""The one E.164 normaliser and number metadata (country, type), used by compiler and facts. Pure."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType

from router.runtime import phonetables

_TYPE_NAMES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
_SUPPORTED = phonenumbers.SUPPORTED_REGIONS
NUMBER_TYPES: tuple[str, ...] = tuple(sorted(set(_TYPE_NAMES.values())))
_MAX_TEXT = 64  # longer than any written phone number, spaces and punctuation included
# Withheld caller ids arrive as words, not numbers, depending on the carrier.
_ANONYMOUS_WORDS = frozenset({"", "anonymous", "restricted", "private", "unknown", "unavailable", "withheld"})


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    raw = text.strip()
    if len(raw) > 40 or raw.lower() in _ANONYMOUS_WORDS:
        return None
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        return phonenumbers.parse(raw, None if raw.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None


def normalise(text: str, region: str | None = None) -> str | None:
    """E.164 for a possible number ('+14155550142'), else None (anonymous or garbage)."""
    if len(text) > _MAX_TEXT:  # before the cache: it must not keep megabytes of garbage alive
        return None
    # Nearly every caller arrives as E.164: string operations and tables decide it in about
    # a microsecond, where a first parse costs tens (DESIGN §15), and whatever the region.
    # The rest asks phonenumbers. Each road has its own cache: the first, keyed by the text
    # alone, is a one-argument lru_cache, whose key is the string itself (no tuple to build).
    e164 = _placed(text)
    return e164 if e164 is not None else _parsed(text, region)


# The split (calling code, national number) of the last few numbers that arrived in their
# E.164 form, by that form: country_of and type_of of the same call read it instead of
# splitting the number again, and the evaluator its calling code (a caller's country is a
# region of that code, or none). Any entry is right for its key (the split of `+digits` is
# the split of those digits), so the table only needs bounding, not invalidating.
SPLITS: dict[str, tuple[phonetables.CallingCode, str]] = {}
_SPLITS_MAX = 64
# Numbers seen lately. The tables place a number in about a microsecond, so their cache is
# kept small enough to stay in the CPU's caches: with mostly first-time callers (DESIGN §15)
# a large one costs every new caller cache misses on insert and eviction (~1.3 µs a call at
# 65,536 entries) and saves a repeat caller little. phonenumbers' road costs tens of µs a
# number, so its cache stays large.
_RECENT = 4096
_RECENT_PARSED = 65536


@lru_cache(maxsize=_RECENT)
def _placed(text: str) -> str | None:
    """The tables' E.164 form of `text`; None when they leave it undecided."""
    found = phonetables.place(text)
    if found is None:
        return None
    e164, table, national = found
    if e164 is text:
        if len(SPLITS) >= _SPLITS_MAX:
            SPLITS.clear()
        SPLITS[e164] = (table, national)
    return e164


@lru_cache(maxsize=_RECENT_PARSED)
def _parsed(text: str, region: str | None) -> str | None:
    return parsed_e164(text, region)


def parsed_e164(text: str, region: str | None) -> str | None:
    """normalise by phonenumbers alone, uncached: the fallback, and the reference in tests."""
    number = _parse(text, region)
    if number is None or not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=_RECENT)
def country_of(e164: str) -> str | None:
    """ISO 3166 alpha-2 region of an E.164 number ('US'), None when unassigned."""
    found = SPLITS.get(e164) or phonetables.split_e164(e164)
    region = found[0].region_of(found[1]) if found is not None else None
    if region is None:
        number = _parse(e164, None)
        if number is None:
            return None
        region = phonenumbers.region_code_for_number(number)
    # not "ZZ" (unknown) nor "001" (non-geographic: +800 freephone, +882 networks, ...)
    return region if region in _SUPPORTED else None


@lru_cache(maxsize=_RECENT)
def type_of(e164: str) -> str:
    """The number type ('mobile', 'fixed_line', 'toll_free', ...), 'unknown' when not known."""
    found = SPLITS.get(e164) or phonetables.split_e164(e164)
    if found is not None:
        return found[0].type_of(found[1])
    number = _parse(e164, None)
    if number is None:
        return "unknown"
    return _TYPE_NAMES.get(phonenumbers.number_type(number), "unknown")


def known_code(e164: str) -> str | None:
    """The calling code of a number normalise has just split (SPLITS); None when not at hand
    (the evaluator then asks country_of, which works it out)."""
    found = SPLITS.get(e164)
    return found[0].code if found is not None else None


def calling_codes(region: str) -> frozenset[str]:
    """The country calling codes under which phonenumbers lists `region` ({'44'} for GB)."""
    return frozenset(
        str(cc) for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items() if region in regions
    )


def clear_caches() -> None:
    """Forget every number seen (benchmarks of first-time callers)."""
    _placed.cache_clear()
    _parsed.cache_clear()
    SPLITS.clear()
    country_of.cache_clear()
    type_of.cache_clear()


def is_country(code: str) -> bool:
    """Whether `code` is a region phonenumbers knows (ISO 3166 alpha-2)."""
    return code in phonenumbers.SUPPORTED_REGIONS


def countries() -> frozenset[str]:
    return frozenset(phonenumbers.SUPPORTED_REGIONS)


def mask(e164: str | None) -> str:
    """A number for logs: country code and the last two digits ('+1415*****42')."""
    if not e164:
        return "anonymous"
    if len(e164) <= 6:
        return "*" * len(e164)
    if len(e164) < 10:  # a short number: keeping "+CCCC" too would leave nothing hidden
        return e164[:2] + "*" * (len(e164) - 4) + e164[-2:]
    return e164[:5] + "*" * (len(e164) - 7) + e164[-2:]
