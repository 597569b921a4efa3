"""Admin /v1/explain and webhook-authenticated /v1/resolve (outbound calls). [I/O]"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, get_args

import orjson
from starlette.requests import Request
from starlette.responses import Response

from router.cases import explain_data
from router.facts import facts_from_call
from router.model import CrmStatus
from router.service import base_facts, decide, lookup_crm

if TYPE_CHECKING:
    from router.app import Server


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def _body(request: Request) -> Any:
    from router.app import BodyTooLarge, read_body

    try:
        raw = await read_body(request)
    except BodyTooLarge:
        return None
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


async def explain_request(server: Server, request: Request) -> Response:
    """A Vapi message ({"message": …}, CRM looked up live) or call facts (CRM from the body)."""
    data = await _body(request)
    live = server.store.live
    if live is None:
        return _json({"error": "no policy is loaded"}, 503)
    if not isinstance(data, dict):
        return _json({"error": "expected a JSON object: a Vapi message or call facts"}, 400)
    policy = live.policy
    message = data.get("message")
    transfer = False
    if isinstance(message, dict):
        transfer = message.get("type") == "transfer-destination-request"
        facts = base_facts(policy, message)
        if facts.crm_status is None and policy.needs_crm:
            deadline = time.perf_counter() + policy.settings.deadline_ms / 1000
            facts, _, _ = await lookup_crm(live, facts, deadline)
        elif facts.crm_status is None:
            facts = replace(facts, crm_status="not_found")
    else:
        if (problem := _facts_problem(data)) is not None:
            return _json({"error": problem}, 400)
        facts = facts_from_call(
            data, region=policy.settings.region, now=datetime.now(UTC), crm_enabled=policy.crm is not None
        )
        transfer = bool(data.get("transfer"))
    out = explain_data(policy, facts, transfer=transfer)
    out["policy"] = policy.version
    return _json(out)


async def resolve_request(server: Server, request: Request) -> Response:
    """The assistant/squad/workflow part of a decision for Vapi's POST /call (outbound)."""
    started = time.perf_counter()
    from router.app import BodyTooLarge, read_body

    try:
        raw = await read_body(request)
    except BodyTooLarge:
        return _json({"error": "body too large"}, 413)
    if not await server.authenticate(request.headers, raw, request.method, str(request.url)):
        return _json({"error": "unauthorized"}, 401)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _json({"error": "body is not JSON"}, 400)
    if not isinstance(data, dict) or not isinstance(data.get("customer"), dict):
        return _json(
            {"error": 'expected {"customer": {"number": …}, "phoneNumberId": … or "phoneNumber": {…}}'}, 400
        )
    live = server.store.live
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
    if outcome.reply_kind in ("destination", "error"):
        return _json(
            {
                "error": f"the decision is {'an' if outcome.reply_kind == 'error' else 'a'} "
                f"{outcome.reply_kind}, which an outbound call cannot use",
                "route": outcome.route or "default",
            },
            422,
        )
    return Response(outcome.body, media_type="application/json")
