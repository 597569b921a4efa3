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

from router.runtime.phonekinds import Kinds, Region

_MIN_NSN = 2  # phonenumbers' _MIN_LENGTH_FOR_NSN: parse rejects a shorter national number
_MAX_NSN = 17  # _MAX_LENGTH_FOR_NSN
_MAX_RAW = 40  # router.phone gives up on longer text (after strip) before parsing
# Written separators: phonenumbers drops them all when it normalises the digits.
_SEPARATORS = str.maketrans("", "", " -.()")
UNKNOWN_REGION = "ZZ"  # phonenumbers' name for "no region", as region_of returns it


@dataclass(frozen=True, slots=True)
class CallingCode:
    """What the fast path needs of one country calling code."""

    code: str
    possible: frozenset[int]  # national-number lengths phonenumbers.is_possible_number accepts
    national_prefix: re.Pattern[str] | None  # the main region's national_prefix_for_parsing
    prefix_literal: str | None  # that pattern when it is plain digits ('0'): startswith tests it
    transforms: bool  # the main region has a national_prefix_transform_rule
    general_pattern: re.Pattern[str] | None  # the main region's general national number pattern
    # lengths that pass parse's test after stripping a national prefix (possible, or too long)
    strippable: frozenset[int]
    regions: tuple[Region, ...]  # in phonenumbers' order; the first is the main region
    # per length: the regions' finders joined in their order, one named group each, and the
    # region code of each group by its index (the outermost group closes last: lastindex)
    _finders: dict[int, tuple[re.Pattern[str], dict[int, str]] | None] = field(
        default_factory=dict, compare=False
    )

    def _finder(self, length: int) -> tuple[re.Pattern[str], dict[int, str]] | None:
        if length not in self._finders:
            parts = [
                f"(?P<r{i}>{f})" for i, r in enumerate(self.regions) if (f := r.finder(length)) is not None
            ]
            finder = re.compile("|".join(parts)) if parts else None
            if finder is None:
                self._finders[length] = None
            else:
                groups = finder.groupindex.items()
                self._finders[length] = (finder, {i: self.regions[int(name[1:])].code for name, i in groups})
        return self._finders[length]

    def region_of(self, nsn: str) -> str:
        """phonenumbers.region_code_for_number: the only region, else the first whose leading
        digits match or, for one without, that gives the number a type; ZZ for none. One
        regex per length tries the regions in order, as phonenumbers' loop does."""
        if len(self.regions) == 1:
            return self.regions[0].code
        try:
            finder = self._finders[len(nsn)]
        except KeyError:
            finder = self._finder(len(nsn))
        if finder is None:
            return UNKNOWN_REGION
        found = finder[0].match(nsn)
        if found is None or found.lastindex is None:
            return UNKNOWN_REGION
        return finder[1][found.lastindex]

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
        literal = self.prefix_literal
        if literal is not None and not nsn.startswith(literal):
            return nsn  # what the regex would say, at a fraction of its cost
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
    regions: list[Region] = []
    for code in COUNTRY_CODE_TO_REGION_CODE[cc]:
        metadata = _metadata(cc, code)
        if metadata is None:
            if not regions:
                return None  # no main metadata: parse takes another road; leave it to phonenumbers
            continue  # phonenumbers skips a region without metadata too
        digits = metadata.leading_digits
        regions.append(Region(code, re.compile(digits) if digits else None, Kinds(metadata)))
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
        prefix_literal=prefix if prefix and prefix.isdigit() and prefix.isascii() else None,
        transforms=bool(main.national_prefix_transform_rule),
        general_pattern=re.compile(general) if general else None,
        strippable=frozenset(n for n, r in reasons.items() if r not in _NOT_STRIPPED),
        regions=tuple(regions),
    )


_CODES: frozenset[str] = frozenset(str(cc) for cc in COUNTRY_CODE_TO_REGION_CODE)


def _code_of(head: str) -> str | None:
    """The calling code parse reads at the start of `head`: its shortest prefix that is one."""
    return next((head[:i] for i in (1, 2, 3) if head[:i] in _CODES), None)


# every string of 1 to 3 digits -> the calling code it starts with: one lookup of digits[:3]
_CODE_OF: dict[str, str] = {
    head: code
    for n in (1, 2, 3)
    for k in range(10**n)
    if (code := _code_of(head := str(k).zfill(n))) is not None
}
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
    code = _CODE_OF.get(digits[:3])
    if code is None:
        return None
    table = _TABLES.get(code) or calling_code(code)
    nsn = digits[len(code) :]
    if table is None or not _MIN_NSN <= len(nsn) <= _MAX_NSN:
        return None
    national = table.national(nsn)
    if national is None or not _MIN_NSN <= len(national) <= _MAX_NSN:
        return None
    return table, national


def place(text: str) -> tuple[str, CallingCode, str] | None:
    """(E.164 form, calling code, national number) of a possible number written `+<digits>`
    or `00<digits>`, with any of ` -.()` between the digits; None when undecided (not a
    proof that there is none)."""
    digits = text[1:]
    if text[:1] == "+" and digits.isdigit() and digits.isascii() and len(text) <= _MAX_RAW:
        # the E.164 form (nearly every caller): nothing to strip, rewrite or remove
        found = split(digits)
        if found is None or len(found[1]) not in found[0].possible:
            return None
        table, national = found
        if len(digits) == len(table.code) + len(national):
            return text, table, national  # the same string keeps its hash, computed by the cache
        return "+" + table.code + national, table, national
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
    if found is None:
        return None
    table, national = found
    if len(national) not in table.possible:
        return None
    if raw is text and len(text) == 1 + len(table.code) + len(national):
        # nothing stripped, removed or rewritten: `text` is the E.164 form; the same string
        # keeps its hash, already computed by the caller's cache
        return text, table, national
    return "+" + table.code + national, table, national


def e164_of(text: str) -> str | None:
    """The E.164 form of `text` as `place` finds it; None when undecided."""
    found = place(text)
    return found[0] if found is not None else None


def split_e164(e164: str) -> tuple[CallingCode, str] | None:
    """split of an E.164 number's digits; None when it is not `+<ASCII digits>` or undecided."""
    digits = e164[1:]
    if e164[:1] != "+" or not (digits.isdigit() and digits.isascii()):
        return None
    return split(digits)


def region_of(e164: str) -> str | None:
    """phonenumbers' region code of an E.164 number ('US', '001' for non-geographic, 'ZZ' for
    none); None when undecided."""
    found = split_e164(e164)
    return found[0].region_of(found[1]) if found is not None else None


def type_of(e164: str) -> str | None:
    """The router's type name of an E.164 number ('mobile', ...); None when undecided."""
    found = split_e164(e164)
    return found[0].type_of(found[1]) if found is not None else None
