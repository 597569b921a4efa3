"""Routes that can never match, semantically: an earlier route whose `when` covers a later one's. [pure]

`covers(E, L)` holds when every call that satisfies L satisfies E: each of E's conditions
(they are ANDed) is implied by one of L's. Implication is decided per key: a number or
prefix covered by a shorter prefix, a list by a list holding each item, the same schedule,
a tag list by a larger `any` list; anything else only by an equal condition. The analysis
may miss a cover (then it says nothing), never invent one (no false warning).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from router.runtime import phone

NUMBER_KEYS = ("caller", "dialled")


def _numbers(spec: Any, region: str | None) -> list[str] | None:
    """A number condition as E.164 numbers and `+PREFIX*` strings; None: not such a condition."""
    if isinstance(spec, dict):
        if set(spec) == {"prefix"} and isinstance(spec["prefix"], str):
            return [spec["prefix"] + "*"]
        return None
    items = spec if isinstance(spec, list) else [spec]
    out = []
    for item in items:
        if not isinstance(item, str):
            return None
        if item.endswith("*"):
            out.append(item)
        else:
            number = phone.normalise(item, region)
            if number is None:
                return None
            out.append(number)
    return out


def _number_covers(wide: str, narrow: str) -> bool:
    if wide.endswith("*"):
        return narrow.removesuffix("*").startswith(wide[:-1])
    return wide == narrow


def _why_numbers(key: str, early: Any, late: Any, region: str | None) -> str | None:
    wide, narrow = _numbers(early, region), _numbers(late, region)
    if wide is None or narrow is None:
        return None
    shown = []
    for n in narrow:
        hit = next((w for w in wide if _number_covers(w, n)), None)
        if hit is None:
            return None
        shown.append(f'{key} "{hit}" covers "{n}"' if hit != n else f'the same {key} "{n}"')
    return "; ".join(dict.fromkeys(shown))


def _tag_any(spec: Any) -> set[str] | None:
    if isinstance(spec, list) and all(isinstance(t, str) for t in spec):
        return set(spec)
    if isinstance(spec, dict) and set(spec) == {"any"} and isinstance(spec["any"], list):
        return {str(t) for t in spec["any"]}
    return None


def implied_by(key: str, early: Any, late_when: dict[str, Any], region: str | None) -> str | None:
    """Why L's conditions imply E's condition `key: early`; None when they may not."""
    if key not in late_when:
        return None
    late = late_when[key]
    if key in NUMBER_KEYS:
        why = _why_numbers(key, early, late, region)
        if why is not None:
            return why
    if key in ("during", "outside") and early == late:
        return f"the same schedule ({key}: {early})"
    if key == "tags":
        wide, narrow = _tag_any(early), _tag_any(late)
        if wide is not None and narrow is not None and narrow <= wide:
            return f"tags {sorted(wide)} include {sorted(narrow)}"
    if json.dumps(early, sort_keys=True) == json.dumps(late, sort_keys=True):
        return f"the same {key} condition"
    return None


def cover(early: dict[str, Any], late: dict[str, Any], region: str | None) -> str | None:
    """Why route E (conditions `early`) wins every call route L (`late`) could; None if it may not."""
    if not early:
        return "it matches every call"
    reasons = []
    for key, value in early.items():
        why = implied_by(key, value, late, region)
        if why is None:
            return None
        reasons.append(why)
    return "; ".join(reasons)


def unreachable(
    routes: Sequence[tuple[str, dict[str, Any]]], region: str | None
) -> Iterator[tuple[int, int, str]]:
    """(index of the later route, index of the earlier one that covers it, why) per dead route.
    Quadratic in the routes of one section; stops at the first cover of each."""
    for j, (_, late) in enumerate(routes):
        for i in range(j):
            why = cover(routes[i][1], late, region)
            if why is not None:
                yield j, i, why
                break
