"""serve --capture: record incoming assistant-requests as JSONL for `replay`, secrets stripped,
with the CRM facts (status, tags, fields) each call was decided on. [I/O]"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from router.runtime.records import CrmRecord
from router.server.decisionlog import DecisionLog

log = logging.getLogger("router.server.capture")

# Keys that may hold provider credentials or secrets anywhere in a message.
_SECRET = re.compile(r"secret|token|password|credential|api_?key|auth|sid|signature", re.IGNORECASE)
# Of message.phoneNumber only these are kept: enough to route, nothing that authenticates.
_PHONE_KEEP = ("id", "number", "name", "provider")


def strip_secrets(value: Any) -> Any:
    """A copy without any key that looks like a credential."""
    if isinstance(value, Mapping):
        return {
            k: strip_secrets(v) for k, v in value.items() if not (isinstance(k, str) and _SECRET.search(k))
        }
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    return value


def captured(message: Mapping[str, Any]) -> dict[str, Any]:
    """The message as it is recorded: phoneNumber reduced to id/number/name/provider."""
    out: dict[str, Any] = strip_secrets(message)
    phone = message.get("phoneNumber")
    if isinstance(phone, Mapping):
        out["phoneNumber"] = {k: phone[k] for k in _PHONE_KEEP if k in phone}
    return out


class Capture:
    """Appends {"captured_at", "message"} lines to a file, off the event loop."""

    def __init__(self, path: str) -> None:
        self._log = DecisionLog(path)
        self._log.start()

    def write(self, message: Mapping[str, Any], crm: CrmRecord | None = None) -> None:
        """Queue one message with the CRM facts the call saw (`replay` decides on them, not on
        a fresh lookup); one that cannot be recorded (nested too deep to encode) is skipped:
        the capture must never cost the call its answer."""
        try:  # stripping walks the message: one nested too deep raises RecursionError here
            line: dict[str, Any] = {
                "captured_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "message": captured(message),
            }
            if crm is not None:
                line["crm"] = {"status": crm.status, "tags": sorted(crm.tags), "fields": dict(crm.fields)}
            self._log.write(line)
        except (TypeError, ValueError, RecursionError) as exc:
            log.warning("capture skipped a message that cannot be recorded: %s", type(exc).__name__)

    def close(self) -> None:
        self._log.close()
