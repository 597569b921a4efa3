"""Target keys Vapi has retired, with what replaces them (DESIGN §9). Pure.

Vapi: "Workflows will be retired on August 18, 2026. From August 19, 2026 onward, existing
workflows will no longer run … switch to passing a `squadId`". A policy that still routes a
call to a workflow would answer with something Vapi no longer runs, so lint refuses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

RETIRED_ON: Final = "August 18, 2026"
STOPPED_ON: Final = "August 19, 2026"

# key -> what to use instead
RETIRED: Final[Mapping[str, str]] = {
    "workflowId": "squadId (a saved squad) or squad (an inline one)",
    "workflow": "squad (an inline squad) or squadId",
    "workflowOverrides": "squadOverrides",
}


def retired_keys(raw: Any) -> Iterator[tuple[str, str]]:
    """(key, message) for every retired key of one target mapping, in the order written."""
    if not isinstance(raw, dict):
        return
    for key in raw:
        if key in RETIRED:
            yield (
                key,
                (
                    f"{key}: Vapi retired workflows on {RETIRED_ON}; from {STOPPED_ON} they no "
                    f"longer run. Use {RETIRED[key]} instead"
                ),
            )


def is_retired_reply(reply: Mapping[str, Any]) -> bool:
    """Whether a rendered reply carries a retired key (a /v1/resolve answer must not)."""
    return any(key in reply for key in RETIRED)
