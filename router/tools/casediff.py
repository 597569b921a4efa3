"""What a failed case shows: only the keys whose values differ, one line each. [pure]

Two JSON blobs side by side hide a one-word change in a 40-line inline assistant; a line
per differing path (`reply.assistantOverrides.variableValues.language: expected "es",
got "en"`) names it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

ABSENT = "(absent)"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _key(path: str, key: str) -> str:
    simple = key.replace("_", "").replace("-", "").isalnum()
    return f"{path}.{key}" if simple else f"{path}[{_show(key)}]"


def diff_values(expected: Any, got: Any, path: str) -> Iterator[str]:
    """`PATH: expected X, got Y` for each leaf that differs; mappings and lists are walked
    (a list's extra or missing items show as (absent)), anything else is compared whole."""
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in [*expected, *(k for k in got if k not in expected)]:
            if key not in got:
                yield f"{_key(path, str(key))}: expected {_show(expected[key])}, got {ABSENT}"
            elif key not in expected:
                yield f"{_key(path, str(key))}: expected {ABSENT}, got {_show(got[key])}"
            else:
                yield from diff_values(expected[key], got[key], _key(path, str(key)))
    elif isinstance(expected, list) and isinstance(got, list):
        for i in range(max(len(expected), len(got))):
            want = _show(expected[i]) if i < len(expected) else ABSENT
            have = _show(got[i]) if i < len(got) else ABSENT
            if i >= len(expected) or i >= len(got):
                yield f"{path}[{i}]: expected {want}, got {have}"
            else:
                yield from diff_values(expected[i], got[i], f"{path}[{i}]")
    elif expected != got or type(expected) is not type(got):
        yield f"{path}: expected {_show(expected)}, got {_show(got)}"
