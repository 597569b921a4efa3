"""Lint of SIP URI patterns where a number is expected (DESIGN §9: SIP numbers). Pure."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from router.errors import PolicyError
from router.runtime.sip import is_sip

# scheme, then a user@host or host of URI characters; `*` anywhere as a wildcard
_SIP_PATTERN = re.compile(r"sips?:[A-Za-z0-9\-_.!~*'()&=+$,;?/%:@\[\]]+", re.IGNORECASE)


def check_number_or_sip(
    w: Any,
    text: Any,
    region: str | None,
    check_number: Callable[[Any, Any, str | None], Iterator[PolicyError]],
) -> Iterator[PolicyError]:
    """A `caller`/`dialled` entry: a SIP URI pattern ("sip:support@*") or a number."""
    if not (isinstance(text, str) and is_sip(text)):
        yield from check_number(w, text, region)
        return
    if not _SIP_PATTERN.fullmatch(text):
        yield w.error(
            f'"{text}" is not a SIP URI pattern: write sip:USER@HOST, with * for any characters, '
            'e.g. "sip:support@*"',
            "bad-number",
        )
