"""Flags and pools over HTTP (DESIGN §13): `POST /v1/flags/NAME`, `GET /v1/flags` (admin
token), an audit line in the decision log per switch, and `keep_state`, the background task
that expires slots past max_hold_s and keeps the pool and flag gauges current. [I/O]

A flag is written to the state store, which every replica reads on every call that needs
it: a switch is seen by the others on their next call (well within 1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from router.server.auth import AuthConfig, verify_admin
from router.server.decisionlog import DecisionLog, timestamp
from router.server.http import UNAUTHORIZED, json_response
from router.state.base import FlagState, flag_is_on

if TYPE_CHECKING:
    from router.server.live import Live
    from router.server.metrics import Metrics
    from router.server.store import PolicyStore

log = logging.getLogger("router.server.flags")
KEEP_EVERY_S = 1.0  # gauges refreshed this often
EXPIRE_EVERY_S = 10.0  # slots past max_hold_s released (counted) this often
MAX_TTL_S = 366 * 86400.0
MAX_REASON = 500


class FlagServer(Protocol):
    """What the flags endpoints read of the server (router.server.app.Server has it all)."""

    @property
    def store(self) -> PolicyStore: ...
    @property
    def auth(self) -> AuthConfig: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def decision_log(self) -> DecisionLog: ...


def _error(message: str, status: int) -> Response:
    return json_response({"error": message}, status)


def _stateful(server: FlagServer) -> Live | None:
    live = server.store.live
    return live if live is not None and live.state is not None and live.policy.state is not None else None


def flag_view(name: str, description: str, flag: FlagState | None, now: float) -> dict[str, Any]:
    on = flag_is_on(flag, now)
    return {
        "name": name,
        "description": description,
        "on": on,
        "until": flag.until if flag is not None and on else None,
        "reason": flag.reason if flag is not None else None,
        "changed_at": flag.changed_at if flag is not None else None,
    }


async def list_flags(server: FlagServer) -> list[dict[str, Any]]:
    """Every flag the policy declares, with its state (raises when the store fails)."""
    live = _stateful(server)
    if live is None:
        return []
    assert live.state is not None and live.policy.state is not None
    async with asyncio.timeout(2.0):
        stored = await live.state.flags()
    now = time.time()
    return [flag_view(n, d, stored.get(n), now) for n, d in sorted(live.policy.state.flags.items())]


async def switch_flag(
    server: FlagServer, name: str, on: bool, ttl_s: float | None, reason: str, by: str
) -> dict[str, Any]:
    """Switch a declared flag for every replica; one audit line in the decision log.
    Raises KeyError for a flag the policy does not declare, and whatever the store raises."""
    live = _stateful(server)
    if live is None or live.policy.state is None or name not in live.policy.state.flags:
        raise KeyError(name)
    assert live.state is not None
    now = time.time()
    flag = FlagState(name, on, now + ttl_s if on and ttl_s else None, reason, now)
    async with asyncio.timeout(2.0):
        await live.state.set_flag(flag)
    server.metrics.state.flag_on.labels(name).set(1 if on else 0)
    server.decision_log.write(
        {
            "time": timestamp(),
            "type": "flag",
            "flag": name,
            "on": on,
            "ttl_s": ttl_s if on else None,
            "until": flag.until,
            "reason": reason,
            "by": by,
            "policy": live.policy.version,
        }
    )
    log.info("flag %s switched %s by %s: %s", name, "on" if on else "off", by, reason)
    return flag_view(name, live.policy.state.flags[name], flag, now)


def _body(raw: bytes) -> tuple[bool, float | None, str] | str:
    """(on, ttl_s, reason) from a request body, or what is wrong with it."""
    try:
        return switch_args(orjson.loads(raw or b"{}"))
    except orjson.JSONDecodeError:
        return "the body is not JSON"


def switch_args(data: Any) -> tuple[bool, float | None, str] | str:
    """(on, ttl_s, reason) from `{"on", "ttl_s", "reason"}` (the API's body, the console's
    form), or what is wrong with it."""
    if not isinstance(data, dict) or not isinstance(data.get("on"), bool):
        return 'give {"on": true|false, "ttl_s": N, "reason": TEXT}'
    extra = sorted(set(data) - {"on", "ttl_s", "reason"})
    if extra:
        return f"unknown key(s): {', '.join(extra)}"
    ttl = data.get("ttl_s")
    if ttl is not None and (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or not 0 < ttl <= MAX_TTL_S
    ):
        return f"ttl_s must be a number of seconds, more than 0 and at most {MAX_TTL_S:.0f}"
    reason = data.get("reason", "")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        return f"reason must be a non-empty text of at most {MAX_REASON} characters (for the audit line)"
    return data["on"], float(ttl) if ttl is not None else None, reason.strip()


def flag_routes(server: FlagServer) -> list[BaseRoute]:
    async def get_flags(request: Request) -> Response:
        if not verify_admin(server.auth, request.headers):
            return json_response(UNAUTHORIZED, 401)
        try:
            return json_response({"flags": await list_flags(server)})
        except Exception as exc:
            return _error(f"state store unavailable ({type(exc).__name__})", 503)

    async def post_flag(request: Request) -> Response:
        if not verify_admin(server.auth, request.headers):
            return json_response(UNAUTHORIZED, 401)
        parsed = _body(await request.body())
        if isinstance(parsed, str):
            return _error(parsed, 400)
        name = request.path_params["name"]
        try:
            view = await switch_flag(server, name, *parsed, by="api")
        except KeyError:
            live = _stateful(server)
            known = ", ".join(sorted(live.policy.state.flags)) if live and live.policy.state else ""
            return _error(f'no flag "{name}" in the live policy (its flags: {known or "none"})', 404)
        except Exception as exc:
            return _error(f"state store unavailable ({type(exc).__name__}); the flag was not switched", 503)
        return json_response(view)

    return [
        Route("/v1/flags", get_flags, methods=["GET"]),
        Route("/v1/flags/{name}", post_flag, methods=["POST"]),
    ]


async def keep_state(server: FlagServer) -> None:
    """Release slots past max_hold_s (counted as `max_hold`), forget calls older than any
    route reads, and keep the pool and flag gauges current; closes the store at shutdown."""
    last_expiry = 0.0
    try:
        while True:
            live = _stateful(server)
            if live is not None:
                with contextlib.suppress(Exception):  # a store that is down: try again next time
                    last_expiry = await _keep(server, live, last_expiry)
            await asyncio.sleep(KEEP_EVERY_S)
    finally:
        live = server.store.live
        if live is not None and live.state is not None:
            with contextlib.suppress(Exception):
                await live.state.aclose()


async def _keep(server: FlagServer, live: Live, last_expiry: float) -> float:
    settings, store, m = live.policy.state, live.state, server.metrics.state
    assert settings is not None and store is not None
    now = time.time()
    async with asyncio.timeout(2.0):
        if now - last_expiry >= EXPIRE_EVERY_S:
            keep_s = max(settings.history_s, settings.max_hold_s) + 86400
            for pool in await store.expire(now, keep_s):
                m.released(pool, "max_hold")
            last_expiry = now
        for pool, used in (await store.usage(now, settings.pools)).items():
            m.in_use.labels(pool).set(used)
            m.max.labels(pool).set(settings.pools[pool])
        flags = await store.flags()
    for name in settings.flags:
        m.flag_on.labels(name).set(1 if flag_is_on(flags.get(name), now) else 0)
    return last_expiry
