"""Call outcomes: how the calls the router routed ended (DESIGN §9). [I/O: metrics, logs]

At decision time the webhook remembers (route, target, time, masked numbers) under the call
id: one dict store on the assistant-request path. When Vapi's `status-update` (status
`ended`) or `end-of-call-report` arrives, the first of them for a call id counts
`router_call_outcomes_total{route,ended_reason}` and writes a `"type": "call-ended"` line to
the decision log; a later one for the same call counts and writes nothing.

Memory is bounded: at most `capacity` decisions are kept (oldest evicted first; an entry is
about 300 bytes, so the default 300,000 is about 90 MB at most), and so are the call ids
already counted. Retention is therefore "at least 24 h while fewer than `capacity` calls are
routed per 24 h per worker" (3.5 calls a second sustained); above that rate the oldest calls
are forgotten sooner, and their ends count under route "unknown". Decisions older than
`RETAIN_S` (48 h) are dropped when seen: Vapi caps a call well below that.

With `--workers N` each worker keeps its own decisions. Vapi sends a call's end messages to
the same server URL, and the kernel hands each to any worker: only the worker that routed
the call can name its route, and only it counts the call. A worker that did not route a call
(with N > 1) counts nothing for it, so a call is never counted twice, but a call both of
whose end messages reach other workers is not counted (probability about ((N-1)/N)^2): with
N > 1 the metric is a lower bound. Such a worker still writes the `call-ended` line, with
route null and "counted": false, so the decision log (its assistant-request lines joined by
call id) stays the complete record. With one worker, an end for a call the
router never decided (it restarted, or Vapi never reached it: `assistant-request-failed`)
counts under route "unknown".
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from router.policy import vapi_spec
from router.runtime import phone
from router.runtime.facts import parse_time
from router.server.capture import strip_secrets
from router.server.decisionlog import DecisionLog, timestamp

log = logging.getLogger("router.server.outcomes")

CAPACITY = 300_000
RETAIN_S = 48 * 3600
ENDED_KINDS = ("status-update", "end-of-call-report")
UNKNOWN_ROUTE = "unknown"
OTHER_REASON = "other"
FAILED_PREFIX = "assistant-request-"

# call id -> (route, target, decided at (epoch s), masked caller, masked dialled)
Decided = tuple[str, str | None, float, str, str]

# In the text of Vapi's debugging artifacts (logged as sent, their shape being unspecified):
# a URL's user:password@ and query string, and any run of 7+ digits (a phone number in any
# plain form: +E.164, URL-encoded %2B, national digits), which keeps its last two digits.
_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^\s/?#@]*@)?([^\s?#]*)(\?[^\s#]*)?")
_DIGITS = re.compile(r"(\+|%2[bB])?(\d{7,})")


class CallOutcomes:
    """The decisions of this worker by call id, and the join of Vapi's end messages to them."""

    def __init__(
        self,
        registry: CollectorRegistry,
        decision_log: DecisionLog,
        *,
        capacity: int = CAPACITY,
        clock: Any = time.time,
    ) -> None:
        self.counter = Counter(
            "router_call_outcomes_total",
            "Ended calls by the route that answered them and Vapi's endedReason (other: not in Vapi's enum)",
            ["route", "ended_reason"],
            registry=registry,
        )
        self.decision_log = decision_log
        self.capacity = capacity
        self.clock = clock
        self.decided: OrderedDict[str, Decided] = OrderedDict()
        self.counted: OrderedDict[str, None] = OrderedDict()

    def remember(self, call_id: str, route: str, target: str | None, caller: str, dialled: str) -> None:
        """The decision for a call (the hot path: one store, and one eviction when full)."""
        decided = self.decided
        decided[call_id] = (route, target, self.clock(), caller, dialled)
        if len(decided) > self.capacity:
            decided.popitem(last=False)

    def observe(self, kind: str, message: Mapping[str, Any], workers: int) -> None:
        """The webhook's hook for every message type it does not route: never raises."""
        if kind in ENDED_KINDS:
            try:
                self.ended(kind, message, workers=workers)
            except Exception:  # a bug: the message is still answered (and forwarded)
                log.exception("joining a call's end to its decision failed")

    def ended(self, kind: str, message: Mapping[str, Any], *, workers: int = 1) -> bool:
        """Count and log an end message if it is the first proof of its call's end; whether it was."""
        if kind == "status-update" and message.get("status") != "ended":
            return False
        call = message.get("call")
        if not isinstance(call, dict):
            return False
        call_id = call.get("id")
        if not isinstance(call_id, str) or call_id in self.counted:
            return False
        decision = self.decided.pop(call_id, None)
        now = self.clock()
        if decision is not None and now - decision[2] > RETAIN_S:
            decision = None
        # with --workers, another worker may have routed it and count it (module docstring)
        counts = decision is not None or workers == 1
        self.counted[call_id] = None
        if len(self.counted) > self.capacity:
            self.counted.popitem(last=False)
        reason = _text(message.get("endedReason")) or _text(call.get("endedReason")) or ""
        label = reason if reason in vapi_spec.ended_reasons() else OTHER_REASON
        route = decision[0] if decision is not None else (UNKNOWN_ROUTE if counts else None)
        if counts:
            self.counter.labels(route, label).inc()
        line: dict[str, Any] = {
            "time": timestamp(now),
            "type": "call-ended",
            "call_id": call_id,
            "route": route,
            "target": decision[1] if decision is not None else None,
            "ended_reason": reason or None,
            "duration_s": duration(message, decision[2] if decision is not None else None, now),
            "caller": decision[3] if decision is not None else phone.mask(_caller(message)),
            "dialled": decision[4] if decision is not None else phone.mask(_dialled(message)),
            "via": kind,
            "counted": counts,
        }
        if reason.startswith(FAILED_PREFIX):
            artifacts = redacted(message.get("inboundPhoneCallDebuggingArtifacts"))
            line["debugging_artifacts"] = artifacts
            log.warning(
                "call %s ended with %s (route %s); Vapi's inboundPhoneCallDebuggingArtifacts: %s",
                call_id,
                reason,
                route,
                json.dumps(artifacts, default=str),
            )
        self.decision_log.write(line)
        return counts


def redacted(value: Any) -> Any:
    """Debugging artifacts fit for a log: keys that look like credentials dropped (as a capture
    drops them), and in every text URL credentials and query strings cut and numbers masked."""
    return _scrubbed(strip_secrets(value))


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        text = _URL.sub(lambda m: m[1] + m[2] + ("?…" if m[3] else ""), value)
        return _DIGITS.sub(lambda m: (m[1] or "") + "*" * (len(m[2]) - 2) + m[2][-2:], text)
    if isinstance(value, Mapping):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value


def duration(message: Mapping[str, Any], decided_at: float | None, now: float) -> float | None:
    """Seconds the call lasted, on Vapi's clock when it says: its durationSeconds, else endedAt -
    startedAt (of the message or its call), else the message's timestamp - the call's
    startedAt/createdAt; else on ours, from the decision to now."""
    given = message.get("durationSeconds")
    if isinstance(given, int | float) and not isinstance(given, bool):
        return round(float(given), 3)
    found = message.get("call")
    call: Mapping[str, Any] = found if isinstance(found, dict) else {}
    for source in (message, call):
        start, end = parse_time(source.get("startedAt")), parse_time(source.get("endedAt"))
        if start is not None and end is not None:
            return round((end - start).total_seconds(), 3)
    end = parse_time(message.get("timestamp"))
    start = parse_time(call.get("startedAt")) or parse_time(call.get("createdAt"))
    if start is not None and end is not None:
        return round((end - start).total_seconds(), 3)
    return None if decided_at is None else round(now - decided_at, 3)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _caller(message: Mapping[str, Any]) -> str | None:
    for owner in (message, message.get("call")):
        customer = owner.get("customer") if isinstance(owner, Mapping) else None
        if isinstance(customer, dict):
            found = _text(customer.get("number")) or _text(customer.get("sipUri"))
            if found:
                return found
    return None


def _dialled(message: Mapping[str, Any]) -> str | None:
    number = message.get("phoneNumber")
    if isinstance(number, dict):
        return _text(number.get("number")) or _text(number.get("sipUri"))
    return None
