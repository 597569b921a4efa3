"""The webhook's records: metrics and decision-log lines of answered calls (now or after the
reply is written), the console's activity ring, and the shadow policy's diffs. [I/O]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from router.runtime import phone
from router.server.activity import Activity
from router.server.decisionlog import DecisionLog, timestamp
from router.server.metrics import Metrics
from router.server.outcomes import CallOutcomes
from router.server.service import Outcome, decide
from router.server.store import PolicyStore

log = logging.getLogger("router.server.app")
TOOL_KINDS = ("transfer-destination-request", "handoff-destination-request")


def _rounded(value: float, scale: int) -> float:
    """A duration (never negative) to 1/scale, half up: a third of round()'s cost, which
    formats the number as text to round it; three per decision-log line."""
    return int(value * scale + 0.5) / scale


def call_id_of(message: Mapping[str, Any]) -> str | None:
    call = message.get("call")
    value = call.get("id") if isinstance(call, dict) else None
    return value if isinstance(value, str) else None


class Recording:
    """What Server (router.server.app) records of each answer; a base of its webhook half."""

    metrics: Metrics
    decision_log: DecisionLog
    shadow: PolicyStore | None
    activity: Activity
    outcomes: CallOutcomes | None
    _unrecorded: list[tuple[str, str | None, Outcome, str, float]]

    def record_answered(self) -> None:
        """Metrics and decision-log lines of the calls answered with `record_later`."""
        unrecorded, self._unrecorded = self._unrecorded, []
        if not unrecorded:  # a turn that answered only errors (401, 400) or nothing
            return
        stamp = timestamp()  # answered in the same turn of the loop: the same millisecond or so
        for args in unrecorded:
            try:
                self._record(*args, stamp)
            except Exception:  # a bug; the caller has its answer, and the next lines must go out
                log.exception("recording an answered call failed")

    async def _shadow(
        self, message: dict[str, Any], live_outcome: Outcome, started: float, transfer: bool
    ) -> None:
        assert self.shadow is not None and self.shadow.live is not None
        try:
            other = await decide(self.shadow.live, message, started=started, transfer=transfer)
        except Exception:  # the shadow must never affect the live answer
            return
        differs = [
            name
            for name, a, b in (
                ("route", live_outcome.route, other.route),
                ("target", live_outcome.target, other.target),
                ("reply", live_outcome.body, other.body),
            )
            if a != b
        ]
        if differs:
            live_route, shadow_route = live_outcome.route or "default", other.route or "default"
            self.metrics.shadow_diffs.labels(live_route, shadow_route).inc()
            log.info("shadow differs (%s): live %s, shadow %s", ", ".join(differs), live_route, shadow_route)
            diff = {
                "time": timestamp(),
                "shadow_diff": True,
                "call_id": call_id_of(message),
                "live_route": live_route,
                "shadow_route": shadow_route,
                "differs": differs,  # what the caller would notice: route, target and/or reply
                "live_target": live_outcome.target,
                "shadow_target": other.target,
                "shadow_version": self.shadow.live.policy.version,
            }
            self.decision_log.write(diff)
            self.activity.shadow.append(diff)

    def _record(
        self, kind: str, call_id: str | None, o: Outcome, version: str, elapsed: float, stamp: str
    ) -> None:
        outcome = "fallback" if o.fallback_reason else ("matched" if o.route else "default")
        if kind in TOOL_KINDS and o.reply_kind == "none" and not o.fallback_reason:
            outcome = "no_transfer"
        record = o.crm_record
        self.metrics.answered(
            o.route or "default",
            outcome,
            o.eval_us / 1e6,
            elapsed,
            record.status if record is not None else None,
            record.ms / 1000 if record is not None else 0.0,
        )
        facts = o.facts
        caller = phone.mask(facts.caller if facts else None)
        dialled = phone.mask(facts.dialled if facts else None)
        line = {
            "time": stamp,
            "call_id": call_id,
            "type": kind,
            "route": o.route or ("default" if kind in ("assistant-request", "resolve") else None),
            "target": o.target,
            "reply": o.reply_kind,
            "policy": version,
            "crm_status": o.crm_status,
            "crm_ms": _rounded(o.crm_ms, 100) if o.crm_ms else 0.0,
            "eval_us": _rounded(o.eval_us, 10),
            "total_ms": _rounded(elapsed * 1000, 1000),
            "fallback_reason": o.fallback_reason,
            "caller": caller,
            "dialled": dialled,
        }
        if o.state_status is not None:
            line["state_status"] = o.state_status
        self.decision_log.write(line)
        if call_id is not None and kind == "assistant-request" and self.outcomes is not None:
            self.outcomes.remember(call_id, o.route or "default", o.target, caller, dialled)
        self.activity.recent.append((outcome, line))  # the console's ring: one bounded append
