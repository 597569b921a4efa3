"""The console's flags and capacity pages (DESIGN §13, §14), as plain data for their
templates. [reads and writes live call state]

A flag switched here goes through flags.switch_flag, the code of `POST /v1/flags/NAME`:
one validation (switch_args), one store write, one audit line in the decision log. Pool
usage is read from the state store (the truth every worker shares); refusals are this
worker's metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from router.runtime.statefacts import parse_duration
from router.server.flags import list_flags, switch_args, switch_flag

if TYPE_CHECKING:
    from router.server.consoleviews import ConsoleServer

RECENT_S = 3600.0  # "recent refusals": the last hour
STORE_TIMEOUT_S = 2.0
HIGH = 0.8  # a gauge at or past this share of its pool is drawn as nearly full


def _declares_state(server: ConsoleServer) -> bool:
    live = server.store.live
    return live is not None and live.policy.state is not None and live.state is not None


def _unavailable(exc: Exception) -> str:
    return f"The state store is unavailable ({type(exc).__name__}); try again in a moment."


async def flags_view(server: ConsoleServer, switched: str = "") -> tuple[dict[str, Any], int]:
    """The flags page: every flag the policy declares with its state (and the status)."""
    view: dict[str, Any] = {"stateful": _declares_state(server), "flags": [], "error": None}
    if not view["stateful"]:
        return view, 200
    try:
        view["flags"] = await list_flags(server)
    except Exception as exc:
        view["error"] = _unavailable(exc)
        return view, 503
    view["switched"] = next((f for f in view["flags"] if f["name"] == switched), None)
    return view, 200


async def switch_from_form(server: ConsoleServer, form: Mapping[str, str]) -> tuple[str, str | None, int]:
    """Switch the flag the console's form names: (its name, what went wrong or None, status)."""
    name = form.get("flag", "")
    on = {"on": True, "off": False}.get(form.get("on", ""))
    if on is None:
        return name, "Switch the flag on or off.", 400
    ttl_text = form.get("ttl", "").strip()
    ttl = parse_duration(ttl_text) if ttl_text else None
    if ttl_text and ttl is None:
        return name, "The TTL must be a duration such as 90s, 30m, 2h or 1d (or blank: until switched).", 400
    args = switch_args({"on": on, "ttl_s": ttl, "reason": form.get("reason", "")})
    if isinstance(args, str):
        return name, f"Not switched: {args}.", 400
    try:
        await switch_flag(server, name, *args, by="console")
    except KeyError:
        return name, "The live policy declares no such flag (was it reloaded?).", 404
    except Exception as exc:
        return name, _unavailable(exc) + " The flag was not switched.", 503
    return name, None, 200


async def capacity_view(server: ConsoleServer) -> tuple[dict[str, Any], int]:
    """The capacity page: every pool's slots in use against its max, and refusals."""
    live = server.store.live
    view: dict[str, Any] = {"stateful": _declares_state(server), "pools": [], "error": None}
    if live is None or live.policy.state is None or live.state is None:
        return view, 200
    settings, now = live.policy.state, time.time()
    hold = settings.max_hold_s
    view["max_hold"] = f"{hold / 3600:g} h" if hold >= 3600 else f"{hold / 60:g} min"
    view["backend"] = settings.backend
    view["workers"] = server.workers
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            used = await live.state.usage(now, settings.pools)
    except Exception as exc:
        view["error"] = _unavailable(exc)
        return view, 503
    metrics = server.metrics.state
    totals = _reservations(metrics.reservations)
    for pool, most in sorted(settings.pools.items()):
        in_use = used.get(pool, 0)
        share = 1.0 if most <= 0 else min(in_use / most, 1.0)
        refused = [t for t in metrics.refused_at.get(pool, ()) if t > now - RECENT_S]
        view["pools"].append(
            {
                "name": pool,
                "in_use": in_use,
                "max": most,
                "percent": round(share * 100, 1),
                "level": "full" if share >= 1.0 else "high" if share >= HIGH else "ok",
                "refused_recent": len(refused),
                "last_refused": refused[-1] if refused else None,
                "granted_total": int(totals.get((pool, "granted"), 0)),
                "refused_total": int(totals.get((pool, "refused"), 0)),
            }
        )
    return view, 200


def _reservations(counter: Any) -> dict[tuple[str, str], float]:
    """router_pool_reservations_total by (pool, result), this worker's."""
    out: dict[tuple[str, str], float] = {}
    for metric in counter.collect():
        for s in metric.samples:
            if s.name.endswith("_total"):
                key = (s.labels.get("pool", ""), s.labels.get("result", ""))
                out[key] = out.get(key, 0.0) + s.value
    return out
