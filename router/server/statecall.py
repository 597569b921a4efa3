"""Routing on live call state (DESIGN §13): the state lookup bounded by the deadline, the
slot reservation with the call decided again when it loses the race, the record of each
decision, and the release on proof that a call ended. [I/O]

A policy without `state`, `capacity`, `flags` or `history` never comes here (Live.state
is None), so it pays nothing. A store that is down, slow or locked gives the call
`state_status: error` facts and the fallback within the deadline, never a 5xx.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from router.runtime.decide import evaluate_for, fault_reason, wants_crm
from router.runtime.model import Policy
from router.runtime.replies import choose
from router.runtime.statefacts import StateFacts
from router.server.http import EMPTY
from router.server.live import Live
from router.server.service import (
    MARGIN_S,
    Outcome,
    Pending,
    _outcome_of,
    base_facts,
    fallback,
    lookup_crm,
)
from router.server.statemetrics import StateMetrics
from router.state.base import CallRecord

log = logging.getLogger("router.server.statecall")
T = TypeVar("T")
END_KINDS = ("status-update", "end-of-call-report")
END_TIMEOUT_S = 2.0  # an end message waits this long for the store, then is answered anyway
RECORD_TIMEOUT_S = 2.0


def workers_refusal(policy: Policy | None, workers: int) -> str | None:
    """Why `serve --workers N` must not run this policy, or None."""
    s = policy.state if policy is not None else None
    if workers <= 1 or s is None or s.shared or not (s.pools or s.flags or s.history_s):
        return None
    uses = ", ".join(k for k, v in (("capacity", s.pools), ("flags", s.flags), ("history", s.history_s)) if v)
    return (
        f"the policy uses {uses} with in-process state, which each of the {workers} workers would keep"
        " apart (a pool's max per worker, a flag switched in one worker only). Add"
        " `state: {sqlite: state.db}` to share it between the workers of this host (or"
        " `state: {postgres: {dsn: …}}` for replicas), or serve with --workers 1."
    )


class StateError(Exception):
    """The state store failed or ran out of time; the message says which."""


async def _bounded(work: Awaitable[T], deadline: float, what: str) -> T:
    remaining = deadline - time.perf_counter() - MARGIN_S
    try:
        async with asyncio.timeout(max(remaining, 0.0)):
            return await work
    except TimeoutError:
        raise StateError(f"state store: {what} ran past the deadline") from None
    except Exception as exc:
        raise StateError(f"state store: {what} failed ({type(exc).__name__})") from exc


@dataclass(frozen=True, slots=True)
class StatePending(Pending):
    """A decision on a policy that reads live call state: `finish` reads the store, routes,
    holds a slot when the target has a pool, and records the decision."""

    metrics: StateMetrics
    background: set[asyncio.Task[None]]

    async def finish(self) -> Outcome:
        try:
            return await _finish(self)
        except StateError as exc:
            reason = str(exc)
            facts = replace(self.facts, state=StateFacts("error", reason=reason))
            outcome = fallback(self.live, facts, None, self.eval_ns, reason, transfer=self.transfer)
        except Exception as exc:  # a bug: the caller still gets the fallback
            outcome = fallback(
                self.live, self.facts, None, self.eval_ns, fault_reason(exc), transfer=self.transfer
            )
        log.warning("routing fell back: %s", outcome.fallback_reason)
        outcome.state_status = "error"
        return outcome


async def _finish(p: StatePending) -> Outcome:
    live, facts, transfer, eval_ns = p.live, p.facts, p.transfer, p.eval_ns
    settings, store = live.policy.state, live.state
    assert settings is not None and store is not None
    now = time.time()
    try:
        snapshot = await _bounded(
            store.snapshot(facts.caller, facts.call_id, now, settings.history_s, settings.pools),
            p.deadline,
            "lookup",
        )
    except StateError:
        p.metrics.looked_up("snapshot", False)
        raise
    p.metrics.looked_up("snapshot", True)
    facts = replace(facts, state=snapshot)
    record = None
    for _ in range(len(settings.pools) + 2):  # each lost race marks one more pool full
        t = time.perf_counter_ns()
        decision = evaluate_for(live.policy, facts, transfer=transfer)
        eval_ns += time.perf_counter_ns() - t
        target = decision.target
        if live.crm is not None and facts.crm_status is None and wants_crm(decision, live.reads_crm):
            facts, record, cut = await lookup_crm(live, facts, p.deadline)
            if cut:
                return fallback(live, facts, record, eval_ns, record.reason)
            continue
        leaf = choose(target, facts) if target is not None and not transfer else None
        call = CallRecord(
            facts.call_id or f"anonymous-{uuid.uuid4()}",
            facts.caller,
            now,
            decision.route.id if decision.route else "default",
            (leaf.name or (target.name if target else None)) if leaf else None,
        )
        if leaf is None or leaf.pool is None:
            if not transfer:
                _record_later(p, call)
            return _ok(_outcome_of(live, facts, decision, record, eval_ns, transfer))
        pool = leaf.pool
        try:
            granted = await _bounded(
                store.reserve(call, pool, settings.pools.get(pool, 0), now + settings.max_hold_s),
                p.deadline,
                "reservation",
            )
        except StateError:  # counted like a failed snapshot, so a slow store shows in metrics
            p.metrics.looked_up("reserve", False)
            raise
        p.metrics.looked_up("reserve", True)
        p.metrics.reserved(pool, granted)
        if granted:
            return _ok(_outcome_of(live, facts, decision, record, eval_ns, transfer))
        state = facts.state
        assert state is not None
        if state.full(pool):  # decided on a full pool already: nothing else to try
            matched = decision.route.id if decision.route else None
            return _ok(fallback(live, facts, record, eval_ns, f"pool {pool} is full", route=matched))
        facts = replace(facts, state=state.with_full(pool))  # lost the race: decide again
    return _ok(fallback(live, facts, record, eval_ns, "no pool had a slot"))


def _ok(outcome: Outcome) -> Outcome:
    outcome.state_status = "ok"
    return outcome


def _record_later(p: StatePending, call: CallRecord) -> None:
    """Keep the decision for `history`, after the reply: the caller never waits for it."""
    store = p.live.state
    assert store is not None

    async def record() -> None:
        try:
            async with asyncio.timeout(RECORD_TIMEOUT_S):
                await store.record(call)
            p.metrics.looked_up("record", True)
        except Exception as exc:
            p.metrics.looked_up("record", False)
            log.warning("state store: recording call failed (%s)", type(exc).__name__)

    task = asyncio.get_running_loop().create_task(record())
    p.background.add(task)
    task.add_done_callback(p.background.discard)


def decide_with_state(
    live: Live,
    message: Mapping[str, Any],
    started: float,
    transfer: bool,
    metrics: StateMetrics,
    background: set[asyncio.Task[None]],
) -> Outcome | StatePending:
    """service.decide_now for a policy that reads live call state: it always waits for the
    store, so this only builds the facts (a message they cannot be built from: the fallback)."""
    try:
        facts = base_facts(live.policy, message)
    except Exception as exc:
        return fallback(live, None, None, 0, fault_reason(exc), transfer=transfer)
    deadline = started + live.policy.settings.deadline_ms / 1000
    return StatePending(live, facts, deadline, 0, transfer, metrics, background)


def release_if_ended(
    live: Live | None, message: Mapping[str, Any], metrics: StateMetrics
) -> tuple[int, bytes] | Coroutine[Any, Any, tuple[int, bytes]]:
    """The reply to a message that is no routing request: `{}`, once a message that proves
    a call ended (a `status-update` with status `ended`, or an `end-of-call-report`) has
    released the call's slot."""
    kind = message.get("type")
    if live is None or live.state is None or kind not in END_KINDS:
        return 200, EMPTY
    if kind == "status-update" and message.get("status") != "ended":
        return 200, EMPTY
    call = message.get("call")
    call_id = call.get("id") if isinstance(call, dict) else None
    if not isinstance(call_id, str) or not call_id:
        return 200, EMPTY
    reason = message.get("endedReason")
    if not isinstance(reason, str) and isinstance(call, dict):
        reason = call.get("endedReason")
    return _release(live, call_id, reason if isinstance(reason, str) else None, str(message["type"]), metrics)


async def _release(
    live: Live, call_id: str, reason: str | None, kind: str, metrics: StateMetrics
) -> tuple[int, bytes]:
    assert live.state is not None
    try:
        async with asyncio.timeout(END_TIMEOUT_S):
            pool = await live.state.end(call_id, time.time(), reason, kind)
        metrics.looked_up("end", True)
        if pool is not None:
            metrics.released(pool, kind)
    except Exception as exc:  # Vapi gets its 200 anyway; the slot expires after max_hold_s
        metrics.looked_up("end", False)
        log.warning("state store: recording the end of a call failed (%s)", type(exc).__name__)
    return 200, EMPTY
