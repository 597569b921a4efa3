"""A failed case shows only the keys that differ, one line each (router.tools.casediff)."""

from __future__ import annotations

from typing import Any

import pytest

from router.tools.casediff import diff_values


@pytest.mark.parametrize(
    ("expected", "got", "lines"),
    [
        pytest.param({"a": 1}, {"a": 1}, [], id="equal"),
        pytest.param(
            {
                "assistantId": "x",
                "assistantOverrides": {"variableValues": {"language": "es", "tier": "gold"}},
            },
            {
                "assistantId": "x",
                "assistantOverrides": {"variableValues": {"language": "en", "tier": "gold"}},
            },
            ['reply.assistantOverrides.variableValues.language: expected "es", got "en"'],
            id="one-nested-key-of-many",
        ),
        pytest.param(
            {"error": "Désolé."},
            {"assistantId": "a"},
            [
                'reply.error: expected "Désolé.", got (absent)',
                'reply.assistantId: expected (absent), got "a"',
            ],
            id="missing-and-extra-keys",
        ),
        pytest.param(
            {"d": {"numbers": [1, 2]}},
            {"d": {"numbers": [1]}},
            ["reply.d.numbers[1]: expected 2, got (absent)"],
            id="list-shorter",
        ),
        pytest.param({"n": 1}, {"n": True}, ["reply.n: expected 1, got true"], id="one-is-not-true"),
        pytest.param({"x-y z": 1}, {"x-y z": 2}, ['reply["x-y z"]: expected 1, got 2'], id="odd-key-quoted"),
        pytest.param(
            {"a": {"b": 1}}, {"a": "s"}, ['reply.a: expected {"b": 1}, got "s"'], id="shape-changed"
        ),
    ],
)
def test_diff_values(expected: Any, got: Any, lines: list[str]) -> None:
    assert list(diff_values(expected, got, "reply")) == lines
