"""What a CRM lookup found about one caller: CrmRecord. [pure]"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from router.runtime.facttypes import CrmStatus


@dataclass(slots=True)
class CrmRecord:
    """What the CRM knows about one caller, and how the lookup went.

    `reason` explains a timeout or error for the decision log; it never holds the number
    or a secret. Treated as immutable (shared: NOT_FOUND, cached records); not declared
    frozen only because a frozen dataclass takes three times as long to build (0.75 against
    0.24 µs), and a database CRM builds one per call.
    """

    status: CrmStatus
    tags: frozenset[str] = frozenset()
    fields: Mapping[str, str] = field(default_factory=dict)
    ms: float = 0.0
    cached: bool = False
    reason: str = ""


NOT_FOUND = CrmRecord("not_found")
