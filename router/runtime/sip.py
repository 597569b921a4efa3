"""SIP URI patterns in `caller`/`dialled` conditions (DESIGN §9: SIP numbers). Pure.

`"sip:support@*"` matches `customer.sipUri` (caller) or `phoneNumber.sipUri` (dialled);
`*` stands for any run of characters (none too), everything else is literal. Matching
ignores case (SIP's scheme and host do; the user part of a URI rarely differs by case
alone, and a pattern that misses a call over case is a worse surprise).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from router.runtime.conditions import Condition
from router.runtime.facttypes import Facts

SCHEMES = ("sip:", "sips:")


def is_sip(text: str) -> bool:
    """Whether a `caller`/`dialled` entry is a SIP URI pattern rather than a number."""
    return text[:5].lower().startswith(SCHEMES)


def compile_patterns(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regex for all patterns: a full match, `*` any characters, the rest literal."""
    alternatives = (".*".join(re.escape(part) for part in p.split("*")) for p in patterns)
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class SipMatch(Condition):
    """caller/dialled's SIP URI matches one of the patterns (False for a call without one)."""

    which: str
    pattern: re.Pattern[str]
    label: str

    def test(self, facts: Facts) -> bool:
        uri = facts.caller_sip if self.which == "caller" else facts.dialled_sip
        return uri is not None and self.pattern.fullmatch(uri) is not None

    def describe(self) -> str:
        return f"{self.which} SIP URI is {self.label}"

    def actual(self, facts: Facts) -> str:
        uri = facts.caller_sip if self.which == "caller" else facts.dialled_sip
        return uri or "no SIP URI"
