"""Stage 3: regexes over phone numbers that can backtrack for seconds on a near miss (nested
quantifiers, ambiguous repeats, many variable repeats), read with the stdlib's own parser. Pure.
"""

from __future__ import annotations

import importlib
import re
from itertools import combinations
from typing import Any

# The stdlib's own regex parser (private, but the same module from 3.11 on): it sees through
# groups, so ((a)+)+ is caught as well as (a+)+.
_sre: Any = importlib.import_module("re._parser")
_REPEATS = frozenset({_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT)})


def nested_quantifier(pattern: str) -> bool:
    """Whether a repeat that can run many times holds a repeat of variable length, as in
    (a+)+, ((\\d)*)* or (\\d{1,3})+: those backtrack exponentially on a near miss."""

    def walk(items: Any, repeated: bool) -> bool:
        for op, av in items:
            if op in _REPEATS:
                low, high, sub = av
                if repeated and low != high:
                    return True
                if walk(sub, repeated or high > 1):
                    return True
            elif op is _sre.SUBPATTERN:
                if walk(av[-1], repeated):
                    return True
            elif op is _sre.BRANCH:
                if any(walk(branch, repeated) for branch in av[1]):
                    return True
            elif op in (_sre.ASSERT, _sre.ASSERT_NOT) and walk(av[1], repeated):
                return True
        return False

    return walk(_sre.parse(pattern), False)


_E164 = frozenset("+0123456789")  # every character a regex over caller/dialled ever sees
_CATEGORIES = {
    getattr(_sre, f"CATEGORY_{name}"): frozenset(c for c in _E164 if re.fullmatch(escape, c))
    for name, escape in (
        ("DIGIT", r"\d"),
        ("NOT_DIGIT", r"\D"),
        ("SPACE", r"\s"),
        ("NOT_SPACE", r"\S"),
        ("WORD", r"\w"),
        ("NOT_WORD", r"\W"),
    )
}
MAX_VARIABLE_REPEATS = 8  # 11 of \d* in a row take ~75 ms on a 16-character number


def ambiguous_repeat(pattern: str) -> bool:
    """Whether a repeat that can run many times holds a choice whose alternatives can start
    with the same character of a phone number (or match nothing), as in (1|12)+ or
    (\\d|\\d\\d)+: each repetition may take either way, so a near miss tries k^n paths."""

    def first(items: Any) -> tuple[frozenset[str], bool]:
        """The characters `items` can start with, and whether it can match empty."""
        chars: frozenset[str] = frozenset()
        for op, av in items:
            if op is _sre.LITERAL:
                return chars | ({chr(av)} & _E164), False
            if op is _sre.NOT_LITERAL:
                return chars | (_E164 - {chr(av)}), False
            if op is _sre.IN:
                return chars | char_class(av), False
            if op is _sre.SUBPATTERN:
                more, empty = first(av[-1])
            elif op in _REPEATS:
                more, empty = first(av[2])
                empty = empty or av[0] == 0
            elif op is _sre.BRANCH:
                options = [first(b) for b in av[1]]
                more = frozenset().union(*(c for c, _ in options))
                empty = any(e for _, e in options)
            elif op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
                continue  # zero width
            else:  # ANY, group references, anything else: assume the worst
                return chars | _E164, op is not _sre.ANY
            chars |= more
            if not empty:
                return chars, False
        return chars, True

    def char_class(items: Any) -> frozenset[str]:
        found: set[str] = set()
        negate = False
        for op, av in items:
            if op is _sre.NEGATE:
                negate = True
            elif op is _sre.LITERAL:
                found.add(chr(av))
            elif op is _sre.RANGE:
                found.update(c for c in _E164 if av[0] <= ord(c) <= av[1])
            else:
                found.update(_CATEGORIES.get(av, _E164) if op is _sre.CATEGORY else _E164)
        return _E164 - found if negate else _E164 & found

    def ambiguous(branches: Any) -> bool:
        options = [first(b) for b in branches]
        if any(empty for _, empty in options):
            return True
        return any(a & b for (a, _), (b, _) in combinations(options, 2))

    def walk(items: Any, repeated: bool) -> bool:
        for op, av in items:
            if op in _REPEATS:
                if walk(av[2], repeated or av[1] > 1):
                    return True
            elif op is _sre.SUBPATTERN:
                if walk(av[-1], repeated):
                    return True
            elif op is _sre.BRANCH:
                if repeated and ambiguous(av[1]):
                    return True
                if any(walk(branch, repeated) for branch in av[1]):
                    return True
            elif op in (_sre.ASSERT, _sre.ASSERT_NOT) and walk(av[1], repeated):
                return True
        return False

    return walk(_sre.parse(pattern), False)


def variable_repeats(pattern: str) -> int:
    """How many repeats of variable length the pattern holds: k of them in a row try about
    n^k/k! ways to split a number of n digits on a near miss."""

    def count(items: Any) -> int:
        total = 0
        for op, av in items:
            if op in _REPEATS:
                total += (av[0] != av[1]) + count(av[2])
            elif op is _sre.SUBPATTERN:
                total += count(av[-1])
            elif op is _sre.BRANCH:
                total += sum(count(b) for b in av[1])
            elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
                total += count(av[1])
        return total

    return count(_sre.parse(pattern))
