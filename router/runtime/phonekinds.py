"""Number types and regions of one region's metadata, for router.runtime.phonetables: the
patterns phonenumbers' `_number_type_helper` and `_region_code_for_number_from_list` try, in
their order, joined into one regex per national-number length. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from phonenumbers import PhoneMetadata

# The types in the order phonenumbers' _number_type_helper tries them; each name is both
# the PhoneMetadata attribute and the router's type name.
_TYPE_ORDER = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@dataclass(frozen=True, slots=True)
class _Desc:
    """One PhoneNumberDesc: its possible lengths (empty: any) and full-match pattern."""

    lengths: frozenset[int]
    pattern: str

    def matches(self, nsn: str) -> bool:
        return (not self.lengths or len(nsn) in self.lengths) and _compiled(self.pattern).fullmatch(
            nsn
        ) is not None


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


def desc(metadata: PhoneMetadata, name: str) -> _Desc | None:
    desc = getattr(metadata, name, None)
    if desc is None or not desc.national_number_pattern:
        return None  # phonenumbers' _match_national_number: never matches
    return _Desc(frozenset(desc.possible_length or ()), desc.national_number_pattern)


class Kinds:
    """phonenumbers' _number_type_helper for one region's metadata, with the typed patterns
    that fit a length joined into one alternation (tried in the same order, first match
    wins), compiled on first use of that length."""

    __slots__ = ("_by_length", "_general", "_mobile", "_same", "_typed")

    def __init__(self, metadata: PhoneMetadata) -> None:
        self._general = desc(metadata, "general_desc")
        self._typed = [(name, d) for name in _TYPE_ORDER if (d := desc(metadata, name)) is not None]
        self._mobile = desc(metadata, "mobile")
        self._same = bool(metadata.same_mobile_and_fixed_line_pattern)
        self._by_length: dict[int, re.Pattern[str] | None] = {}

    def _joined(self, length: int) -> re.Pattern[str] | None:
        if length not in self._by_length:
            fit = [
                f"(?P<{name}>{d.pattern})" for name, d in self._typed if not d.lengths or length in d.lengths
            ]
            self._by_length[length] = re.compile("|".join(fit)) if fit else None
        return self._by_length[length]

    def known(self, length: int) -> str | None:
        """A pattern that matches (from the start) the numbers of `length` digits to which
        `of` gives a type other than unknown; None when it gives none. The general pattern
        as a lookahead, then the typed patterns that fit the length, each to the end; with
        the same mobile and fixed-line pattern, mobile alone is unknown, so it is left out."""
        general = self._general
        if general is None or (general.lengths and length not in general.lengths):
            return None
        typed = [
            f"(?:{d.pattern})"
            for name, d in self._typed
            if (not d.lengths or length in d.lengths) and not (self._same and name == "mobile")
        ]
        if not typed:
            return None
        return f"(?=(?:{general.pattern})\\Z)(?:{'|'.join(typed)})\\Z"

    def of(self, nsn: str) -> str:
        """The type name ('mobile', 'fixed_line_or_mobile', ...), 'unknown' for none."""
        if self._general is None or not self._general.matches(nsn):
            return "unknown"
        joined = self._joined(len(nsn))
        found = joined.fullmatch(nsn) if joined is not None else None
        kind = found.lastgroup if found is not None else None
        if kind == "fixed_line":
            mobile = self._same or (self._mobile is not None and self._mobile.matches(nsn))
            return "fixed_line_or_mobile" if mobile else "fixed_line"
        if kind == "mobile" and self._same:
            return "unknown"  # phonenumbers asks for mobile only when its pattern differs
        return kind or "unknown"


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    leading_digits: re.Pattern[str] | None
    kinds: Kinds

    def finder(self, length: int) -> str | None:
        """A pattern that matches at the start of a national number of `length` digits
        exactly when phonenumbers' region search stops at this region: its leading digits,
        or (without them) a type other than unknown. None when no such number exists."""
        if self.leading_digits is not None:
            return self.leading_digits.pattern
        return self.kinds.known(length)
