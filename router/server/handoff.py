"""handoff-destination-request: the policy's `handoffs:` routes, answered as Vapi's schema requires. [I/O]

ServerMessageResponseHandoffDestinationRequest requires a `destination` even when the answer
is an `error`, so an error (a route's, or the one for a request no handoff route takes) goes
with an empty destination object: Vapi reads the error and makes no handoff.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from router.policy.routeindex import build_index
from router.server.live import Live
from router.server.service import Outcome

NO_HANDOFF = "No handoff destination matches this request."
UNMATCHED = orjson.dumps({"destination": {}, "error": NO_HANDOFF})


class HandoffView:
    """The live policy seen through its handoffs (as transfers, so the transfer machinery of
    CRM lookup, deadline and fallback serves them unchanged); rebuilt when the policy changes."""

    __slots__ = ("_of", "_view")

    def __init__(self) -> None:
        self._of: Live | None = None
        self._view: Live | None = None

    def of(self, live: Live) -> Live:
        if self._of is not live or self._view is None:
            policy = live.policy
            index = policy.handoff_index or build_index(policy.handoffs)
            view = dataclasses.replace(policy, transfers=policy.handoffs, transfer_index=index)
            self._of, self._view = live, dataclasses.replace(live, policy=view)
        return self._view


def as_handoff(outcome: Outcome) -> Outcome:
    """A transfer-shaped outcome as a handoff reply that passes Vapi's schema."""
    kind = outcome.reply_kind
    if kind == "none" or (kind == "destination" and outcome.fallback_reason):
        # no handoff route took it, or the fallback is a phone transfer: no handoff (the
        # decision log still says "none")
        return dataclasses.replace(outcome, body=UNMATCHED, reply_kind="none")
    if kind == "error":
        reply: dict[str, Any] = orjson.loads(outcome.body)
        reply.setdefault("destination", {})
        return dataclasses.replace(outcome, body=orjson.dumps(reply))
    return outcome
