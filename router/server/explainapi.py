"""Admin /v1/explain and webhook-authenticated /v1/resolve (outbound calls). [I/O]"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, get_args

import orjson
from starlette.requests import Request
from starlette.responses import Response

from router.policy.retired import RETIRED_ON
from router.runtime.decide import answer_fallback, explain_answer
from router.runtime.facts import facts_from_call
from router.runtime.facttypes import CrmStatus
from router.server.http import BodyTooLarge, read_body
from router.server.service import Outcome, base_facts, decide, lookup_crm
from router.server.store import PolicyStore


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def _body(request: Request) -> Any:
    """The JSON body, None when it is not JSON; BodyTooLarge past the limit (a 413, as the
    webhook and /v1/resolve answer it)."""
    raw = await read_body(request)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _facts_problem(data: Mapping[str, Any]) -> str | None:
    """Why `data` cannot be read as call facts (a 400), or None."""
    if data.get("tags") is not None and not isinstance(data["tags"], list):
        return '"tags" must be a list'
    for key in ("crm", "variables"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            return f'"{key}" must be a mapping'
    statuses = get_args(CrmStatus)
    if data.get("crm_status") and data["crm_status"] not in statuses:
        return f'"crm_status" must be one of {", ".join(statuses)}'
    return None


async def explain_request(store: PolicyStore, request: Request) -> Response:
    """A Vapi message ({"message": …}, CRM looked up live) or call facts (CRM from the body)."""
    try:
        data = await _body(request)
    except BodyTooLarge:
        return _json({"error": "body too large"}, 413)
    live = store.live
    if live is None:
        return _json({"error": "no policy is loaded"}, 503)
    if not isinstance(data, dict):
        return _json({"error": "expected a JSON object: a Vapi message or call facts"}, 400)
    policy = live.policy
    message = data.get("message")
    transfer = False
    cut: str | None = None
    if isinstance(message, dict):
        transfer = message.get("type") == "transfer-destination-request"
        facts = base_facts(policy, message)
        if facts.crm_status is None and policy.needs_crm:
            deadline = time.perf_counter() + policy.settings.deadline_ms / 1000
            facts, record, was_cut = await lookup_crm(live, facts, deadline)
            cut = record.reason if was_cut else None
        elif facts.crm_status is None:
            facts = replace(facts, crm_status="not_found")
    else:
        if (problem := _facts_problem(data)) is not None:
            return _json({"error": problem}, 400)
        facts = facts_from_call(
            data, region=policy.settings.region, now=datetime.now(UTC), crm_enabled=policy.crm is not None
        )
        transfer = bool(data.get("transfer"))
    out = explain_answer(policy, facts, transfer=transfer)
    if cut is not None:  # as the server: the deadline, not the CRM, ended the lookup
        body, _, _, target, reason = answer_fallback(policy, facts, cut, transfer=transfer)
        out.update(route=None, target=target, reply=orjson.loads(body), fallback_reason=reason)
    out["policy"] = policy.version
    return _json(out)


async def resolve_request(
    request: Request,
    *,
    store: PolicyStore,
    authenticate: Callable[[Mapping[str, str], bytes, str, str], Awaitable[bool]],
    record: Callable[[Outcome, str, float], None] | None = None,
) -> Response:
    """The assistant/squad part of a decision for Vapi's POST /call (outbound). `record` writes
    its decision-log line and metrics (outcome, policy version, seconds taken).

    A decision that is an error answers 422 with the policy's own sentence; a destination (an
    outbound call cannot transfer before it starts) or a retired workflow (DESIGN §9: never
    answered) answers 422 saying why."""
    started = time.perf_counter()
    try:
        raw = await read_body(request)
    except BodyTooLarge:
        return _json({"error": "body too large"}, 413)
    if not await authenticate(request.headers, raw, request.method, str(request.url)):
        return _json({"error": "unauthorized"}, 401)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _json({"error": "body is not JSON"}, 400)
    if not isinstance(data, dict) or not isinstance(data.get("customer"), dict):
        return _json(
            {"error": 'expected {"customer": {"number": …}, "phoneNumberId": … or "phoneNumber": {…}}'}, 400
        )
    live = store.live
    if live is None:
        return _json({"error": "no policy is loaded"}, 503)
    phone = data.get("phoneNumber") if isinstance(data.get("phoneNumber"), dict) else {}
    pnid = data.get("phoneNumberId") or (phone.get("id") if isinstance(phone, dict) else None)
    message = {
        "type": "assistant-request",
        "timestamp": data.get("timestamp"),
        "customer": data["customer"],
        "phoneNumber": {**(phone or {}), **({"id": pnid} if pnid else {})},
        "call": {"phoneNumberId": pnid, "type": "outboundPhoneCall"},
    }
    outcome = await decide(live, message, started=started)
    if record is not None:
        record(outcome, live.policy.version, time.perf_counter() - started)
    refused = _refusal(outcome)
    if refused is not None:
        return _json({"error": refused, "route": outcome.route or "default"}, 422)
    return Response(outcome.body, media_type="application/json")


def _refusal(outcome: Outcome) -> str | None:
    """Why /v1/resolve cannot hand this decision to POST /call, or None."""
    kind = outcome.reply_kind
    if kind == "error":
        text = orjson.loads(outcome.body).get("error")
        return text if isinstance(text, str) and text else "the decision is an error"
    if kind == "destination":
        return "the decision is a destination, which an outbound call cannot use"
    if kind in ("workflowId", "workflow"):
        return f"the decision is a workflow; Vapi retired workflows on {RETIRED_ON}: use a squad"
    return None
