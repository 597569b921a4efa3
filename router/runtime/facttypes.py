"""Facts: everything a decision may depend on about one call (CRM facts None until looked up),
the CRM statuses, the call's UTC minute, and NeedCrm. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from router.runtime.statefacts import StateFacts

CrmStatus = Literal["ok", "not_found", "timeout", "error", "disabled"]
CRM_STATUSES: tuple[str, ...] = ("ok", "not_found", "timeout", "error", "disabled")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
MINUTE = timedelta(minutes=1)


def minute_of(at: datetime) -> int:
    """Whole minutes since the epoch, exactly (integer timedelta arithmetic, no float
    rounding at the end of a minute). A naive datetime counts as UTC, as in is_open."""
    return (at - (_EPOCH_NAIVE if at.utcoffset() is None else EPOCH)) // MINUTE


# the datetime whose minute was computed last, and that minute (datetimes are immutable)
_LAST_MINUTE: list[tuple[datetime, int]] = [(EPOCH, 0)]


def note_minute(at: datetime, minute: int) -> None:
    """Tell Facts the UTC minute of `at`, known to the caller at less cost (epoch
    milliseconds // 60,000): the next Facts built on `at` takes it instead of computing it."""
    _LAST_MINUTE[0] = (at, minute)


class NeedCrm(Exception):
    """Raised inside evaluation when a CRM fact is read before the lookup happened."""


@dataclass(slots=True)
class Facts:
    """Everything a decision may depend on. CRM facts are None until looked up.

    Treated as immutable (with_crm and dataclasses.replace make new ones); not declared
    frozen only because a frozen dataclass takes four times as long to build, and every
    call builds one or two."""

    caller: str | None  # E.164, None = anonymous / withheld / unparseable
    dialled: str | None
    at: datetime  # timezone-aware
    phone_number_id: str | None = None
    call_id: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    crm_status: CrmStatus | None = None
    tags: frozenset[str] = frozenset()
    crm: Mapping[str, str] = field(default_factory=dict)
    state: StateFacts | None = None  # live call state (DESIGN §13), when the policy reads it
    caller_sip: str | None = None  # customer.sipUri (DESIGN §9: SIP numbers)
    dialled_sip: str | None = None  # phoneNumber.sipUri
    # derived: the call's UTC minute, the key of the schedules' open/closed memo
    minute: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # with_crm builds a second Facts on the same `at` for most calls: the last answer is kept
        at = self.at
        last = _LAST_MINUTE[0]
        if at is last[0]:
            self.minute = last[1]
        else:
            self.minute = minute = minute_of(at)
            _LAST_MINUTE[0] = (at, minute)  # one store: a tool's thread never sees half of it

    def filled_crm(self, status: CrmStatus, tags: frozenset[str], crm: Mapping[str, str]) -> Facts:
        """with_crm for facts that nothing else holds yet (built for this call a moment ago
        and not handed on): the CRM facts set in place, at a fifth of the cost. Self."""
        self.crm_status, self.tags, self.crm = status, tags, crm
        return self

    def with_crm(self, status: CrmStatus, tags: frozenset[str], crm: Mapping[str, str]) -> Facts:
        """These facts once the CRM answered (dataclasses.replace costs 3x as much per call)."""
        return Facts(
            self.caller,
            self.dialled,
            self.at,
            self.phone_number_id,
            self.call_id,
            self.variables,
            status,
            tags,
            crm,
            self.state,
            self.caller_sip,
            self.dialled_sip,
        )
