"""The fast path of router.phone: E.164 form, country and type of the common number, from
tables built once per country calling code out of phonenumbers' metadata. Pure.

phonenumbers stays the source of truth. Every table is read from its metadata or asked of
it (possible lengths), and the steps mirror phonenumbers' own: `parse` of `+<digits>`
(`_extract_country_code`, `_maybe_strip_national_prefix_carrier_code`), `is_possible_number`,
`region_code_for_number` and `number_type`. Whatever these tables cannot decide with
certainty (a national prefix that parse would strip, national format, letters, odd digits,
a number phonenumbers would reject) returns None, "undecided", and router.phone asks
phonenumbers. tests/test_phonetables.py compares both paths on a large random sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, REGION_CODE_FOR_NON_GEO_ENTITY, PhoneMetadata

_MIN_NSN = 2  # phonenumbers' _MIN_LENGTH_FOR_NSN: parse rejects a shorter national number
_MAX_NSN = 17  # _MAX_LENGTH_FOR_NSN
_MAX_RAW = 40  # router.phone gives up on longer text (after strip) before parsing
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
# Written separators: phonenumbers drops them all when it normalises the digits.
_SEPARATORS = str.maketrans("", "", " -.()")
UNKNOWN_REGION = "ZZ"  # phonenumbers' name for "no region", as region_of returns it


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


def _desc(metadata: PhoneMetadata, name: str) -> _Desc | None:
    desc = getattr(metadata, name, None)
    if desc is None or not desc.national_number_pattern:
        return None  # phonenumbers' _match_national_number: never matches
    return _Desc(frozenset(desc.possible_length or ()), desc.national_number_pattern)


class _Kinds:
    """phonenumbers' _number_type_helper for one region's metadata, with the typed patterns
    that fit a length joined into one alternation (tried in the same order, first match
    wins), compiled on first use of that length."""

    __slots__ = ("_by_length", "_general", "_mobile", "_same", "_typed")

    def __init__(self, metadata: PhoneMetadata) -> None:
        self._general = _desc(metadata, "general_desc")
        self._typed = [(name, d) for name in _TYPE_ORDER if (d := _desc(metadata, name)) is not None]
        self._mobile = _desc(metadata, "mobile")
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
class _Region:
    code: str
    leading_digits: re.Pattern[str] | None
    kinds: _Kinds

    def finder(self, length: int) -> str | None:
        """A pattern that matches at the start of a national number of `length` digits
        exactly when phonenumbers' region search stops at this region: its leading digits,
        or (without them) a type other than unknown. None when no such number exists."""
        if self.leading_digits is not None:
            return self.leading_digits.pattern
        return self.kinds.known(length)


@dataclass(frozen=True, slots=True)
class CallingCode:
    """What the fast path needs of one country calling code."""

    code: str
    possible: frozenset[int]  # national-number lengths phonenumbers.is_possible_number accepts
    national_prefix: re.Pattern[str] | None  # the main region's national_prefix_for_parsing
    transforms: bool  # the main region has a national_prefix_transform_rule
    general_pattern: re.Pattern[str] | None  # the main region's general national number pattern
    # lengths that pass parse's test after stripping a national prefix (possible, or too long)
    strippable: frozenset[int]
    regions: tuple[_Region, ...]  # in phonenumbers' order; the first is the main region
    # per length: the regions' finders joined in their order (one named group each), or None
    _finders: dict[int, re.Pattern[str] | None] = field(default_factory=dict, compare=False)

    def _finder(self, length: int) -> re.Pattern[str] | None:
        if length not in self._finders:
            parts = [
                f"(?P<r{i}>{f})" for i, r in enumerate(self.regions) if (f := r.finder(length)) is not None
            ]
            self._finders[length] = re.compile("|".join(parts)) if parts else None
        return self._finders[length]

    def region_of(self, nsn: str) -> str:
        """phonenumbers.region_code_for_number: the only region, else the first whose leading
        digits match or, for one without, that gives the number a type; ZZ for none. One
        regex per length tries the regions in order, as phonenumbers' loop does."""
        if len(self.regions) == 1:
            return self.regions[0].code
        finder = self._finders.get(len(nsn), False)
        if finder is False:
            finder = self._finder(len(nsn))
        found = finder.match(nsn) if finder is not None else None
        if found is None:
            return UNKNOWN_REGION
        return self.regions[int(found.lastgroup[1:])].code  # type: ignore[index]

    def type_of(self, nsn: str) -> str:
        """phonenumbers.number_type: the type in the metadata of the number's region."""
        region = self.region_of(nsn)
        for r in self.regions:
            if r.code == region:
                return r.kinds.of(nsn)
        return "unknown"  # no region: phonenumbers finds no metadata

    def national(self, nsn: str) -> str | None:
        """The national number parse keeps of the digits after the calling code: without the
        national prefix for parsing when phonenumbers would strip it (the same tests as its
        _maybe_strip_national_prefix_carrier_code, then the length test), None when a
        transform rule applies (undecided)."""
        if self.national_prefix is None or not nsn:
            return nsn
        found = self.national_prefix.match(nsn)
        if found is None:
            return nsn
        groups = found.groups()
        if self.transforms and (not groups or groups[-1] is not None):
            return None
        rest = nsn[found.end() :]
        general = self.general_pattern
        if general is not None and general.fullmatch(nsn) and not general.fullmatch(rest):
            return nsn  # the number was viable and would not be without the prefix
        return rest if len(rest) in self.strippable else nsn


_V = phonenumbers.ValidationResult
_POSSIBLE = frozenset({_V.IS_POSSIBLE, _V.IS_POSSIBLE_LOCAL_ONLY})  # is_possible_number's test
_NOT_STRIPPED = frozenset({_V.TOO_SHORT, _V.IS_POSSIBLE_LOCAL_ONLY, _V.INVALID_LENGTH})  # parse's


def _metadata(cc: int, region: str) -> PhoneMetadata | None:
    if region == REGION_CODE_FOR_NON_GEO_ENTITY:
        return PhoneMetadata.metadata_for_nongeo_region(cc, None)
    return PhoneMetadata.metadata_for_region(region.upper(), None)


def _build(cc: int) -> CallingCode | None:
    regions: list[_Region] = []
    for code in COUNTRY_CODE_TO_REGION_CODE[cc]:
        metadata = _metadata(cc, code)
        if metadata is None:
            if not regions:
                return None  # no main metadata: parse takes another road; leave it to phonenumbers
            continue  # phonenumbers skips a region without metadata too
        digits = metadata.leading_digits
        regions.append(_Region(code, re.compile(digits) if digits else None, _Kinds(metadata)))
    main = _metadata(cc, COUNTRY_CODE_TO_REGION_CODE[cc][0])
    assert main is not None
    reasons = {
        n: phonenumbers.is_possible_number_with_reason(
            phonenumbers.PhoneNumber(country_code=cc, national_number=int("9" * n))
        )
        for n in range(1, _MAX_NSN + 2)
    }
    possible = frozenset(n for n, r in reasons.items() if r in _POSSIBLE and _MIN_NSN <= n <= _MAX_NSN)
    prefix = main.national_prefix_for_parsing
    general = main.general_desc.national_number_pattern if main.general_desc is not None else None
    return CallingCode(
        code=str(cc),
        possible=possible,
        national_prefix=re.compile(prefix) if prefix else None,
        transforms=bool(main.national_prefix_transform_rule),
        general_pattern=re.compile(general) if general else None,
        strippable=frozenset(n for n, r in reasons.items() if r not in _NOT_STRIPPED),
        regions=tuple(regions),
    )


_CODES: frozenset[str] = frozenset(str(cc) for cc in COUNTRY_CODE_TO_REGION_CODE)
_TABLES: dict[str, CallingCode | None] = {}


def calling_code(code: str) -> CallingCode | None:
    """The table of a country calling code ('44'), built on first use; None when the code is
    not one or phonenumbers has no metadata for it."""
    try:
        return _TABLES[code]
    except KeyError:
        table = _TABLES[code] = _build(int(code)) if code in _CODES else None
        return table


def split(digits: str) -> tuple[CallingCode, str] | None:
    """`digits` (after the +, ASCII digits only) -> (calling code, national number) as parse
    finds them, or None when undecided. Parse checks the length before it strips a national
    prefix and, here, after too: a stripped number shorter than 2 digits is left undecided."""
    if digits[:1] == "0":
        return None
    for i in (1, 2, 3):
        if digits[:i] in _CODES:
            table = calling_code(digits[:i])
            nsn = digits[i:]
            if table is None or not _MIN_NSN <= len(nsn) <= _MAX_NSN:
                return None
            national = table.national(nsn)
            if national is None or not _MIN_NSN <= len(national) <= _MAX_NSN:
                return None
            return table, national
    return None


def _e164_digits(text: str) -> str | None:
    """The digits after the + of `+<digits>` (or already canonical E.164), else None."""
    if text[:1] != "+":
        return None
    digits = text[1:]
    return digits if digits.isdigit() and digits.isascii() else None


def e164_of(text: str) -> str | None:
    """The E.164 form of a possible number written `+<digits>` or `00<digits>`, with any of
    ` -.()` between the digits; None when undecided (not a proof that there is none)."""
    raw = text.strip()
    if len(raw) > _MAX_RAW:
        return None
    if raw[:2] == "00":
        raw = "+" + raw[2:]
    if raw[:1] != "+":
        return None
    digits = raw[1:]
    if not (digits.isdigit() and digits.isascii()):
        digits = digits.translate(_SEPARATORS)
        if not (digits.isdigit() and digits.isascii()):
            return None
    found = split(digits)
    if found is None or len(found[1]) not in found[0].possible:
        return None
    return "+" + found[0].code + found[1]


def region_of(e164: str) -> str | None:
    """phonenumbers' region code of an E.164 number ('US', '001' for non-geographic, 'ZZ' for
    none); None when undecided."""
    digits = _e164_digits(e164)
    found = split(digits) if digits else None
    return found[0].region_of(found[1]) if found is not None else None


def type_of(e164: str) -> str | None:
    """The router's type name of an E.164 number ('mobile', ...); None when undecided."""
    digits = _e164_digits(e164)
    found = split(digits) if digits else None
    return found[0].type_of(found[1]) if found is not None else None
