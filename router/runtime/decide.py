"""The one decision: facts -> route, target, reply bytes and fallback reason. [pure]

The server (`server.service`), `explain`, `/v1/explain`, `test` and `replay` all answer
through `decide`/`answer_decision`/`answer_fallback`, so they agree on every call: the route
that matched (None: the default), the target answered (a split followed), the reply, and why
the fallback answered (None when it did not). Facts must already hold the CRM record when a
route needs it; the server looks it up in between (`Decision.needs_crm`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from router.runtime.evaluator import evaluate, evaluate_transfer, explain
from router.runtime.facttypes import Facts
from router.runtime.model import Decision, Policy, Target
from router.runtime.replies import TemplateError, choose, empty_choice, render, render_bytes

# What a caller hears if even the fallback gives no reply Vapi takes: a `${…}` value that
# rendered out of Vapi's limits or left the reply's choice empty (lint refuses such a
# fallback: `fallback-template`), or a bug. A polite refusal beats a spoken HTTP error.
LAST_RESORT = orjson.dumps({"error": "Sorry, we can't take your call right now. Please try again shortly."})
# Replies a transfer-destination-request can use; the fallback answers one only if it is such.
TRANSFER_KINDS = ("destination", "error")
NO_TRANSFER = b"{}"

# (reply body, reply kind ("none" for {}), route id or None, target name or None, fallback reason)
# A tuple, not an object: the server builds one per call on its hot path.
Rendered = tuple[bytes, str, str | None, str | None, str | None]


def fault_reason(exc: BaseException) -> str:
    """The fallback reason for an exception: its type and message, at most 300 characters."""
    return f"{type(exc).__name__}: {exc}"[:300]


def answer_fallback(
    policy: Policy, facts: Facts | None, reason: str, *, transfer: bool = False, route: str | None = None
) -> Rendered:
    """The fallback target's reply (lenient templates: a missing value renders as "").

    It is checked as every reply is (Policy.check_reply): one that fails Vapi's schema, or
    whose choice rendered empty, answers LAST_RESORT, with both reasons.
    A transfer-destination-request gets the fallback only when it is a destination or an
    error; an assistant is no answer to it, so it gets `{}` (no transfer) instead."""
    try:
        f = facts or Facts(caller=None, dialled=None, at=datetime.now(UTC))
        reply, leaf = render(policy.fallback, f, "fallback", lenient=True)
        if transfer and leaf.kind not in TRANSFER_KINDS:
            return NO_TRANSFER, "none", route, None, reason
        body = leaf.prepared if leaf.prepared is not None else orjson.dumps(reply)
        if leaf.templated:  # only ${…} values can take a reply out of Vapi's limits
            if empty_choice(leaf.kind, reply):
                raise TemplateError(f"the {leaf.kind} rendered empty for this call")
            if policy.check_reply is not None:
                policy.check_reply(leaf, body)
        return body, leaf.kind, route, leaf.name or policy.fallback.name, reason
    except Exception as exc:  # a bug: still an answer, and the reason says so
        return LAST_RESORT, "error", route, None, f"{reason}; the fallback failed too: {fault_reason(exc)}"


def answer_decision(policy: Policy, facts: Facts, decision: Decision, *, transfer: bool = False) -> Rendered:
    """Render a decision (a split followed, ${…} filled); a template without a value for this
    call answers the fallback, keeping the route that matched."""
    route = decision.route.id if decision.route else None
    target = decision.target
    if target is None:  # a transfer-destination-request no route takes
        return NO_TRANSFER, "none", route, None, None
    try:
        leaf = choose(target, facts)
        # the bytes encoded at compile time, with any ${…} values spliced in
        body = render_bytes(leaf, facts, route or "default")
        if policy.check_reply is not None:  # ${…} values within Vapi's limits, else the fallback
            policy.check_reply(leaf, body)
    except Exception as exc:
        return answer_fallback(policy, facts, fault_reason(exc), transfer=transfer, route=route)
    return body, leaf.kind, route, leaf.name or target.name, None


def evaluate_for(policy: Policy, facts: Facts, *, transfer: bool = False) -> Decision:
    return evaluate_transfer(policy, facts) if transfer else evaluate(policy, facts)


def wants_crm(decision: Decision, reads_crm: Callable[[Target], bool]) -> bool:
    """Whether the caller is looked up for a decision made before any CRM facts are in: it
    stopped for a CRM fact, or its target's reply reads one (`reads_crm`: the compiler's
    target_reads_crm, or the server's precomputed set of such targets). The server and the
    offline tools' warning share this rule."""
    return decision.needs_crm or (decision.target is not None and reads_crm(decision.target))


@dataclass(frozen=True, slots=True)
class Answer:
    """A finished decision as the offline tools report it."""

    route: str | None  # None: no route matched (the default, or no transfer)
    target: str | None  # None: an inline target, or no transfer
    kind: str
    body: bytes
    fallback_reason: str | None

    @property
    def reply(self) -> dict[str, Any]:
        reply: dict[str, Any] = orjson.loads(self.body)
        return reply


def decide(policy: Policy, facts: Facts, *, transfer: bool = False) -> Answer:
    """Evaluate and render, as the server does once the CRM facts are in; never raises."""
    try:
        rendered = answer_decision(
            policy, facts, evaluate_for(policy, facts, transfer=transfer), transfer=transfer
        )
    except Exception as exc:  # a regex past its time limit, or a bug: the fallback
        rendered = answer_fallback(policy, facts, fault_reason(exc), transfer=transfer)
    return Answer(rendered[2], rendered[3], rendered[1], rendered[0], rendered[4])


def explain_answer(policy: Policy, facts: Facts, *, transfer: bool = False) -> dict[str, Any]:
    """The explain answer (CLI and /v1/explain): the decision, its reply, one trace step per
    route tried, and `fallback_reason` when the fallback answered."""
    traced = explain(policy, facts, transfer=transfer)
    answer = decide(policy, facts, transfer=transfer)
    out: dict[str, Any] = {
        "route": answer.route,
        "target": answer.target,
        "reply": answer.reply,
        "trace": [{"route": s.route, "matched": s.matched, "reason": s.reason} for s in traced.trace],
    }
    if answer.fallback_reason is not None:
        out["fallback_reason"] = answer.fallback_reason
    return out
