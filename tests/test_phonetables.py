"""router.phonetables: the fast path gives exactly what phonenumbers gives, on a large random
sample of numbers from every country calling code, valid and invalid, in many written forms."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import phonenumbers
import pytest
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumberType

from router.runtime import phone, phonetables

# 40,000 in `make test` (~5 s); PHONE_SAMPLE=120000 (or more) for the full comparison
SAMPLE = int(os.environ.get("PHONE_SAMPLE", "40000"))
_TYPES = [t for t in vars(PhoneNumberType).values() if isinstance(t, int)]


def _examples() -> list[tuple[int, str]]:
    """(calling code, national number) of phonenumbers' example numbers of every region and type."""
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for t in _TYPES:
            n = phonenumbers.example_number_for_type(region, t)
            if n is not None:
                out.append((n.country_code, phonenumbers.national_significant_number(n)))
    for cc in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        n = phonenumbers.example_number_for_non_geo_entity(cc)
        if n is not None:
            out.append((cc, phonenumbers.national_significant_number(n)))
    return out


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _spaced(rng: random.Random, digits: str) -> str:
    out = []
    for ch in digits:
        out.append(ch)
        if rng.random() < 0.25:
            out.append(rng.choice((" ", "-", ".", " ", "(", ")", "  ", "/", "x", "\u00a0")))
    return "".join(out)


def _inputs(seed: int) -> Iterator[tuple[str, str | None]]:
    """(text, region) pairs: mostly near-real numbers, some random digits, some garbage."""
    rng = random.Random(seed)
    examples = _examples()
    codes = sorted(COUNTRY_CODE_TO_REGION_CODE)
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    for _ in range(SAMPLE):
        roll = rng.random()
        if roll < 0.6:  # an example number with its tail rewritten, sometimes a digit more or less
            cc, nsn = rng.choice(examples)
            keep = rng.randrange(len(nsn) + 1)
            length = len(nsn) + rng.choice((0, 0, 0, 0, -1, 1))
            nsn = nsn[:keep] + _digits(rng, max(0, length - keep))
        else:  # a known or unknown calling code, random digits of any length
            cc = rng.choice(codes) if rng.random() < 0.9 else rng.randrange(1000)
            nsn = _digits(rng, rng.randrange(0, 19))
        if rng.random() < 0.1:  # a national prefix written after the country code
            nsn = rng.choice(("0", "1", "8", "06", "15", "9", "01")) + nsn
        form = rng.random()
        region = rng.choice(regions) if rng.random() < 0.5 else None
        if form < 0.55:
            text = f"+{cc}{nsn}"
        elif form < 0.7:
            text = "+" + _spaced(rng, f"{cc}{nsn}")
        elif form < 0.78:
            text = f"00{cc}{nsn}"
        elif form < 0.88:  # national format, with or without a region
            text = _spaced(rng, nsn) if rng.random() < 0.5 else nsn
        elif form < 0.92:
            text = rng.choice((" ", "\t", "")) + f"+{cc}{nsn}" + rng.choice((" ", "\n", ""))
        else:  # garbage and near misses
            text = rng.choice(
                (
                    f"++{cc}{nsn}",
                    f"+{cc}{nsn}#",
                    f"+{cc}{nsn} ext. 12",
                    f"tel:+{cc}{nsn}",
                    f"+{cc}{nsn}".replace("1", "\u0661"),
                    f"+{cc} {nsn[:3]}-FLOWERS",
                    f"+{cc}{nsn}" + "5" * rng.randrange(30),
                    "+" + _digits(rng, rng.randrange(0, 5)),
                    "00",
                    "+",
                    rng.choice(("anonymous", "Restricted", "", " ", "unknown")),
                    "".join(rng.choice("+0123456789 ()-.a#*") for _ in range(rng.randrange(1, 25))),
                )
            )
        yield text, region


def _reference_e164(text: str, region: str | None) -> str | None:
    return phone.parsed_e164(text, region)


def _reference_place(e164: str) -> tuple[str | None, str]:
    number = phone._parse(e164, None)
    if number is None:
        return None, "unknown"
    return phonenumbers.region_code_for_number(number), phone._TYPE_NAMES.get(
        phonenumbers.number_type(number), "unknown"
    )


def test_fast_path_agrees_with_phonenumbers_on_a_random_sample() -> None:
    decided = placed = 0
    mismatches: list[str] = []
    for text, region in _inputs(seed=22):
        expected = _reference_e164(text, region)
        fast = phonetables.e164_of(text)
        if fast is not None:
            decided += 1
            if fast != expected:
                mismatches.append(f"e164_of({text!r}) = {fast}, phonenumbers: {expected}")
        # country and type of the E.164 forms and of every `+digits` text, possible or not
        for number in {expected, text} - {None}:
            assert number is not None
            fast_region, fast_type = phonetables.region_of(number), phonetables.type_of(number)
            if fast_region is None:
                assert fast_type is None, number
                continue
            placed += 1
            want_region, want_type = _reference_place(number)
            if (fast_region, fast_type) != (want_region or phonetables.UNKNOWN_REGION, want_type):
                mismatches.append(
                    f"{number}: {fast_region}/{fast_type}, phonenumbers: {want_region}/{want_type}"
                )
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:10]}"
    # the fast path must be the common road, not a rare one
    assert decided > SAMPLE * 0.3, decided
    assert placed > SAMPLE * 0.4, placed


def test_country_and_type_through_normalise_agree_with_phonenumbers() -> None:
    """router.phone's own road: normalise keeps the split of a number that arrived as E.164,
    and country_of / type_of of that number read it instead of splitting again."""
    checked = shared = 0
    mismatches: list[str] = []
    for i, (text, region) in enumerate(_inputs(seed=23)):
        if i % 4:  # a quarter of the sample: this road adds no table of its own
            continue
        phone.clear_caches()
        e164 = phone.normalise(text, region)
        if e164 is None:
            continue
        shared += e164 in phone.SPLITS
        want_region, want_type = _reference_place(e164)
        want_country = want_region if want_region in phonenumbers.SUPPORTED_REGIONS else None
        got = (phone.country_of(e164), phone.type_of(e164))
        checked += 1
        if got != (want_country, want_type):
            mismatches.append(f"{text!r} -> {e164}: {got}, phonenumbers: {(want_country, want_type)}")
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:10]}"
    assert shared > checked * 0.3, (shared, checked)


def test_the_shared_split_stays_small() -> None:
    phone.clear_caches()
    for k in range(1000):
        phone.normalise(f"+1650555{k:04d}")
    assert 0 < len(phone.SPLITS) <= phone._SPLITS_MAX
    phone.clear_caches()
    assert not phone.SPLITS


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        pytest.param("+14155550142", "+14155550142", id="e164"),
        pytest.param("+1 (415) 555-0142", "+14155550142", id="separators"),
        pytest.param("0044 20 7946 0123", "+442079460123", id="international-00"),
        pytest.param("+390612345678", "+390612345678", id="italian-leading-zero"),
        pytest.param("+44 (0)20 7946 0123", "+442079460123", id="national-prefix-stripped"),
        pytest.param("+54 011 15 1234 5678", None, id="transform-rule-left-to-phonenumbers"),
        pytest.param("(415) 555-0142", None, id="national-format-left-to-phonenumbers"),
        pytest.param("+99912345678", None, id="unassigned-code-left-to-phonenumbers"),
        pytest.param("+1415", None, id="impossible-left-to-phonenumbers"),
        pytest.param("anonymous", None, id="words-left-to-phonenumbers"),
    ],
)
def test_e164_of(text: str, e164: str | None) -> None:
    assert phonetables.e164_of(text) == e164


def test_country_and_type_of_a_shared_calling_code() -> None:
    # +1 and +44 are shared by several regions: leading digits first, then full validation
    assert phonetables.region_of("+16135550123") == "CA"
    assert phonetables.region_of("+12684601234") == "AG"
    assert phonetables.region_of("+441481256789") == "GG"
    assert phonetables.region_of("+12005550123") == "ZZ"  # area code 200: no region
    assert phonetables.region_of("+11995550123") == "ZZ"  # national prefix 1: kept, as parse keeps it
    assert phonetables.type_of("+18005550199") == "toll_free"
    assert phonetables.type_of("+447400123456") == "mobile"
    assert phonetables.region_of("+80012345678") == "001"
