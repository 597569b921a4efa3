"""Answer one routing request on a live policy: facts, lazy CRM lookup, deadline, fallback. [I/O]

Whatever goes wrong (a slow, failing or lying CRM, a template without a value, a bug),
an assistant-request ends in a reply built from the policy's `fallback`, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.runtime.decide import (
    Rendered,
    answer_decision,
    answer_fallback,
    evaluate_for,
    fault_reason,
    wants_crm,
)
from router.runtime.facts import facts_from_message
from router.runtime.facttypes import Facts
from router.runtime.model import Decision, Policy
from router.runtime.records import CrmRecord
from router.runtime.toolcall import with_tool_call
from router.server.live import Live

log = logging.getLogger("router.server.service")

# Time kept back from the deadline to render, log and write the reply.
MARGIN_S = 0.05


@dataclass(slots=True)
class Outcome:
    """A finished routing answer and what the decision log and metrics need. Not frozen,
    only because a frozen dataclass takes five times as long to build (one per call);
    nothing changes one once built."""

    body: bytes
    reply_kind: str
    route: str | None  # None: default (or no transfer)
    target: str | None
    facts: Facts | None
    crm_status: str | None
    crm_ms: float
    eval_us: float
    fallback_reason: str | None
    crm_record: CrmRecord | None = None
    state_status: str | None = None  # "ok" or "error" when the policy reads live call state


def base_facts(policy: Policy, message: Mapping[str, Any]) -> Facts:
    # crm_status "disabled" without a CRM; for an anonymous caller "not_found": no number,
    # nothing to look up, an anonymous caller is simply not in the CRM.
    return facts_from_message(
        message, region=policy.settings.region, now=None, crm_enabled=policy.crm is not None
    )


async def lookup_crm(live: Live, facts: Facts, deadline: float) -> tuple[Facts, CrmRecord, bool]:
    """The caller's CRM record within what is left before `deadline`, folded into the facts, and
    whether the deadline (rather than the CRM's own timeout) cut the lookup short."""
    assert live.crm is not None and facts.caller is not None
    record = live.crm.cached(facts.caller)
    if record is not None:  # the file CRM, or a cache hit: no timer to arm
        return facts.with_crm(record.status, record.tags, record.fields), record, False
    remaining = deadline - time.perf_counter() - MARGIN_S
    started = time.perf_counter()
    cut = False
    try:
        async with asyncio.timeout(max(remaining, 0.0)):
            record = await live.crm.lookup(facts.caller)
    except TimeoutError:
        ms = (time.perf_counter() - started) * 1000
        record = CrmRecord("timeout", ms=ms, reason=f"deadline reached after {ms:.0f} ms of CRM lookup")
        cut = True
    return facts.with_crm(record.status, record.tags, record.fields), record, cut


@dataclass(frozen=True, slots=True)
class Pending:
    """A decision that waits for the CRM over the network: `decide_now` stopped there, and
    `finish` looks the caller up and routes on the answer."""

    live: Live
    facts: Facts
    deadline: float
    eval_ns: int
    transfer: bool

    async def finish(self) -> Outcome:
        """The outcome once the CRM has answered (or the deadline came); never raises."""
        live, facts, transfer = self.live, self.facts, self.transfer
        record: CrmRecord | None = None
        try:
            facts, record, cut = await lookup_crm(live, facts, self.deadline)
            if cut:  # the deadline, not the CRM's timeout_ms, ended it: no time left to route on
                return fallback(live, facts, record, self.eval_ns, record.reason, transfer=transfer)
            return _route(live, facts, record, self.eval_ns, transfer)
        except Exception as exc:
            return _failed(live, facts, record, self.eval_ns, exc, transfer)


def decide_now(
    live: Live, message: Mapping[str, Any], *, started: float, transfer: bool = False
) -> Outcome | Pending:
    """Route one message without waiting: the outcome, or Pending when a route needs a CRM
    record that is not at hand (the file CRM and cached records are). Never raises."""
    policy = live.policy
    facts: Facts | None = None
    record: CrmRecord | None = None
    eval_ns = 0
    try:
        facts = base_facts(policy, message)
        if transfer:  # the tool call's arguments and asking assistant (DESIGN §9)
            facts = with_tool_call(facts, message)
        elif live.crm_first and facts.crm_status is None:  # looked up first (live._looks_up_first)
            return _with_crm(live, facts, started, transfer)
        t = time.perf_counter_ns()
        decision: Decision = evaluate_for(policy, facts, transfer=transfer)
        eval_ns = time.perf_counter_ns() - t
        # NeedCrm is raised only while crm_status is None, so needs_crm implies it too
        needs = facts.crm_status is None and wants_crm(decision, live.reads_crm)
        if not needs:
            return _outcome_of(live, facts, decision, None, eval_ns, transfer)
        return _with_crm(live, facts, started, transfer, eval_ns)
    except Exception as exc:
        return _failed(live, facts, record, eval_ns, exc, transfer)


def _with_crm(
    live: Live, facts: Facts, started: float, transfer: bool, eval_ns: int = 0
) -> Outcome | Pending:
    """decide_now once it needs the caller's CRM record: routed on it when it is at hand
    (the file and SQLite CRMs, a cached record), else Pending. Never raises."""
    record: CrmRecord | None = None
    try:
        assert live.crm is not None and facts.caller is not None
        record = live.crm.cached(facts.caller)
        if record is None:
            deadline = started + live.policy.settings.deadline_ms / 1000
            return Pending(live, facts, deadline, eval_ns, transfer)
        # decide_now's own facts, built for this call and not handed on: filled in place
        facts = facts.filled_crm(record.status, record.tags, record.fields)
        return _route(live, facts, record, eval_ns, transfer)
    except Exception as exc:
        return _failed(live, facts, record, eval_ns, exc, transfer)


async def decide(
    live: Live, message: Mapping[str, Any], *, started: float, transfer: bool = False
) -> Outcome:
    """Route one message within the policy's deadline; never raises."""
    result = decide_now(live, message, started=started, transfer=transfer)
    return await result.finish() if isinstance(result, Pending) else result


def _route(live: Live, facts: Facts, record: CrmRecord | None, eval_ns: int, transfer: bool) -> Outcome:
    """Evaluate again on facts that now hold the CRM record, and answer."""
    t = time.perf_counter_ns()
    decision = evaluate_for(live.policy, facts, transfer=transfer)
    eval_ns += time.perf_counter_ns() - t
    return _outcome_of(live, facts, decision, record, eval_ns, transfer)


def _outcome_of(
    live: Live, facts: Facts, decision: Decision, record: CrmRecord | None, eval_ns: int, transfer: bool
) -> Outcome:
    rendered = answer_decision(live.policy, facts, decision, transfer=transfer)
    if rendered[4] is not None:
        log.warning("routing fell back: %s", rendered[4])
    return _outcome(rendered, facts, record, eval_ns)


def _failed(
    live: Live, facts: Facts | None, record: CrmRecord | None, eval_ns: int, exc: Exception, transfer: bool
) -> Outcome:
    # the reason is logged; the caller still gets an answer
    reason = fault_reason(exc)
    log.warning("routing fell back: %s", reason)
    return fallback(live, facts, record, eval_ns, reason, transfer=transfer)


def fallback(
    live: Live,
    facts: Facts | None,
    record: CrmRecord | None,
    eval_ns: int,
    reason: str,
    *,
    transfer: bool = False,
    route: str | None = None,
) -> Outcome:
    """The fallback target's reply (runtime.decide.answer_fallback): deadline or fault.
    `route`: the route that matched when one did (its target could not answer: a full pool),
    so the decision log and the route's hits still name it."""
    rendered = answer_fallback(live.policy, facts, reason, transfer=transfer, route=route)
    return _outcome(rendered, facts, record, eval_ns)


def _outcome(rendered: Rendered, facts: Facts | None, record: CrmRecord | None, eval_ns: int) -> Outcome:
    body, kind, route, target, reason = rendered
    return Outcome(
        body=body,
        reply_kind=kind,
        route=route,
        target=target,
        facts=facts,
        crm_status=(facts.crm_status if facts else None),
        crm_ms=record.ms if record else 0.0,
        eval_us=eval_ns / 1000,
        fallback_reason=reason,
        crm_record=record,
    )
