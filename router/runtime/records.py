"""What a CRM lookup found about one caller: CrmRecord. [pure]"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from router.runtime.facttypes import CrmStatus


@dataclass(frozen=True, slots=True)
class CrmRecord:
    """What the CRM knows about one caller, and how the lookup went.

    `reason` explains a timeout or error for the decision log; it never holds the number
    or a secret.
    """

    status: CrmStatus
    tags: frozenset[str] = frozenset()
    fields: Mapping[str, str] = field(default_factory=dict)
    ms: float = 0.0
    cached: bool = False
    reason: str = ""


NOT_FOUND = CrmRecord("not_found")
