"""router.runtime.phone: the one E.164 normaliser, number country and type, masking for logs."""

from __future__ import annotations

import pytest

from router.runtime import phone


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        pytest.param("+14155550142", None, "+14155550142", id="e164"),
        pytest.param("+1 415 555 0142", None, "+14155550142", id="spaced"),
        pytest.param("+1-800-555-0199", None, "+18005550199", id="dashed"),
        pytest.param("(415) 555-0142", "US", "+14155550142", id="national-us"),
        pytest.param("415.555.0142", "US", "+14155550142", id="dotted-us"),
        pytest.param("(415) 555-0142", None, None, id="national-without-region"),
        pytest.param("020 7946 0123", "GB", "+442079460123", id="national-gb"),
        pytest.param("0044 20 7946 0123", None, "+442079460123", id="international-00"),
        pytest.param("+44 (0)20 7946 0123", None, "+442079460123", id="trunk-zero-in-brackets"),
        pytest.param("tel:+14155550142", None, "+14155550142", id="tel-uri"),
        pytest.param(" +14155550142 ", None, "+14155550142", id="padded"),
        pytest.param("+15551234567", None, "+15551234567", id="fictional-555-is-possible"),
        pytest.param("anonymous", None, None, id="anonymous"),
        pytest.param("Restricted", "US", None, id="restricted"),
        pytest.param("UNAVAILABLE", None, None, id="unavailable"),
        pytest.param("", None, None, id="empty"),
        pytest.param("   ", None, None, id="blank"),
        pytest.param("garbage", "US", None, id="garbage"),
        pytest.param("+1", None, None, id="country-code-only"),
        pytest.param("12345", "US", None, id="too-short"),
        pytest.param("+99912345678", None, None, id="unassigned-country-code"),
        pytest.param("sip:+14155550142@203.0.113.7", None, None, id="sip-uri"),
        pytest.param("+1" + "4" * 60, None, None, id="too-long"),
        pytest.param("+1415555014" + "2" * (2**20), None, None, id="megabyte"),
    ],
)
def test_normalise(text: str, region: str | None, expected: str | None) -> None:
    assert phone.normalise(text, region) == expected


def test_normalise_does_not_cache_huge_text() -> None:
    huge = "+1" + "5" * 100_000
    caches = (phone._placed, phone._parsed)
    before = [c.cache_info().currsize for c in caches]
    assert phone.normalise(huge) is None
    assert [c.cache_info().currsize for c in caches] == before


@pytest.mark.parametrize(
    ("number", "country", "kind"),
    [
        pytest.param("+14155550142", "US", "fixed_line_or_mobile", id="us"),
        pytest.param("+16135550123", "CA", "fixed_line_or_mobile", id="ca-shares-plus-1"),
        pytest.param("+18005550199", "US", "toll_free", id="us-toll-free"),
        pytest.param("+442079460123", "GB", "fixed_line", id="gb-fixed"),
        pytest.param("+447400123456", "GB", "mobile", id="gb-mobile"),
        pytest.param("+33612345678", "FR", "mobile", id="fr-mobile"),
        pytest.param("+525512345678", "MX", "fixed_line_or_mobile", id="mx"),
        pytest.param("+4915112345678", "DE", "mobile", id="de-mobile"),
        pytest.param("+80012345678", None, "toll_free", id="international-freephone-has-no-country"),
        pytest.param("+99912345678", None, "unknown", id="unassigned"),
        pytest.param("not a number", None, "unknown", id="garbage"),
    ],
)
def test_country_and_type(number: str, country: str | None, kind: str) -> None:
    assert phone.country_of(number) == country
    assert phone.type_of(number) == kind
    assert kind in phone.NUMBER_TYPES


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        pytest.param("+14155550142", "+1415*****42", id="us"),
        pytest.param("+442079460123", "+4420******23", id="gb"),
        pytest.param("+4915112345678", "+4915*******78", id="de"),
        pytest.param("+2901234", "+2****34", id="short-number-keeps-little"),
        pytest.param("+123456", "+1***56", id="seven-characters"),
        pytest.param("+12345", "******", id="tiny"),
        pytest.param(None, "anonymous", id="none"),
        pytest.param("", "anonymous", id="empty"),
    ],
)
def test_mask(number: str | None, expected: str) -> None:
    assert phone.mask(number) == expected


def test_mask_hides_most_digits() -> None:
    for number in ("+2901234", "+35312345", "+14155550142", "+4915112345678"):
        masked = phone.mask(number)
        assert len(masked) == len(number)
        assert masked.count("*") >= len(number) // 2 - 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("US", True, id="us"),
        pytest.param("GB", True, id="gb"),
        pytest.param("UK", False, id="uk-is-not-iso"),
        pytest.param("001", False, id="non-geographic"),
        pytest.param("us", False, id="lower-case"),
    ],
)
def test_is_country(code: str, expected: bool) -> None:
    assert phone.is_country(code) is expected
    assert (code in phone.countries()) is expected
