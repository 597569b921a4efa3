"""policy.reach: an earlier route covers a later one only when it takes every call the later could."""

from __future__ import annotations

from typing import Any

import pytest

from router.policy.reach import cover


@pytest.mark.parametrize(
    ("early", "late", "covers"),
    [
        pytest.param({}, {"caller": "+44*"}, True, id="unconditional"),
        pytest.param({"dialled": "+1555*"}, {"dialled": "+15551234567"}, True, id="prefix-covers-number"),
        pytest.param({"dialled": "+1555*"}, {"dialled": "+155512*"}, True, id="prefix-covers-longer-prefix"),
        pytest.param({"dialled": "+155512*"}, {"dialled": "+1555*"}, False, id="longer-prefix-does-not"),
        pytest.param(
            {"caller": ["+15550000001", "+44*"]}, {"caller": "+442079460000"}, True, id="list-holds-it"
        ),
        pytest.param(
            {"caller": ["+15550000001"]}, {"caller": ["+15550000001", "+44*"]}, False, id="list-lacks-one"
        ),
        pytest.param({"caller": {"prefix": "+44"}}, {"caller": "+447911123456"}, True, id="prefix-mapping"),
        pytest.param({"during": "office"}, {"during": "office", "tags": ["vip"]}, True, id="same-schedule"),
        pytest.param({"during": "office"}, {"outside": "office"}, False, id="during-is-not-outside"),
        pytest.param({"during": "office"}, {"during": "weekend"}, False, id="other-schedule"),
        pytest.param(
            {"caller": "+44*", "dialled": "+1555*"}, {"caller": "+44*"}, False, id="fewer-keys-later"
        ),
        pytest.param({"tags": ["vip", "gold"]}, {"tags": {"any": ["vip"]}}, True, id="tags-any-superset"),
        pytest.param({"tags": ["vip"]}, {"tags": ["vip", "gold"]}, False, id="tags-any-subset-does-not"),
        pytest.param(
            {"caller": {"regex": r"\+44.*"}}, {"caller": "+447911123456"}, False, id="regex-unknown"
        ),
        pytest.param({"not": {"caller": "+44*"}}, {"not": {"caller": "+44*"}}, True, id="equal-combinator"),
    ],
)
def test_cover(early: dict[str, Any], late: dict[str, Any], covers: bool) -> None:
    assert (cover(early, late, None) is not None) == covers
