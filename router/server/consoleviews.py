"""What each console page shows, as plain data for its template. [reads the server's state]

Numbers are masked here (mask_numbers) or by the templates' `masked` filter; the calendar
is router.calendar's, the simulation is /v1/explain's own path (facts_from_call, explain_answer).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from markupsafe import Markup

from router.runtime import phone
from router.runtime.decide import explain_answer
from router.runtime.facts import facts_from_call, parse_time
from router.runtime.facttypes import CRM_STATUSES
from router.tools.calendar import map_svg, week_map


def _samples(counter: Any) -> dict[str, float]:
    """A labelled prometheus counter's values by its one label (this worker's)."""
    out: dict[str, float] = {}
    for metric in counter.collect():
        for s in metric.samples:
            if s.name.endswith("_total"):
                key = next(iter(s.labels.values()), "") if s.labels else ""
                out[key] = out.get(key, 0.0) + s.value
    return out


if TYPE_CHECKING:  # what the console reads of the server; none of these import the console
    from router.server.activity import Activity
    from router.server.auth import AuthConfig
    from router.server.decisionlog import DecisionLog
    from router.server.metrics import Metrics
    from router.server.store import PolicyStore


class ConsoleServer(Protocol):
    """What the console reads of the running server (router.server.app.Server has it all)."""

    @property
    def store(self) -> PolicyStore: ...
    @property
    def auth(self) -> AuthConfig: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def shadow(self) -> PolicyStore | None: ...
    @property
    def workers(self) -> int: ...
    @property
    def activity(self) -> Activity: ...
    @property
    def decision_log(self) -> DecisionLog: ...  # the flags page's audit lines
    def clock(self) -> float: ...


_NUMBER = re.compile(r"\+\d{6,15}")


def mask_numbers(text: str) -> str:
    """Every +E.164-looking run of digits in `text`, masked as the decision log masks."""
    return _NUMBER.sub(lambda m: phone.mask(m.group(0)), text)


def params(mapping: Mapping[str, str], *names: str) -> dict[str, str]:
    return {n: mapping.get(n, "").strip() for n in names}


def overview(server: ConsoleServer) -> dict[str, Any]:
    server.metrics.flush()  # what is counted but not yet published (at most FLUSH_S old)
    now = time_now(server)
    live = server.store.live
    hits = server.metrics.hits
    last_5 = hits.outcomes(now, 5)
    last_hour = hits.outcomes(now, 60)
    return {
        "loaded_at": datetime.fromtimestamp(live.loaded_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if live
        else None,
        "files": list(live.policy.files) if live else [],
        "last_reload_ok": server.store.last_reload_ok,
        "errors": [mask_numbers(str(e)) for e in server.store.errors],
        "per_minute": round(sum(last_5.values()) / 5, 1),
        "last_hour": sum(last_hour.values()),
        "fallbacks": last_hour.get("fallback", 0),
        "outcomes": sorted(last_hour.items()),
        "crm": sorted(_samples(server.metrics.crm_lookups).items()),
        "auth_failures": int(sum(_samples(server.metrics.auth_failures).values())),
        "workers": server.workers,
        "shadow": server.shadow is not None,
    }


def time_now(server: ConsoleServer) -> float:
    return server.clock()


def route_hits(server: ConsoleServer) -> dict[str, Any]:
    server.metrics.flush()
    live = server.store.live
    routes = [r.id for r in live.policy.routes] if live else []
    transfers = [r.id for r in live.policy.transfers] if live else []
    hits = server.metrics.hits
    now = time_now(server)
    return {
        "rows": hits.routes([*routes, "default"], now),
        "transfer_rows": hits.routes(transfers, now) if transfers else [],
        "since": hits.started,
    }


def calendar_view(server: ConsoleServer, query: Mapping[str, str]) -> dict[str, Any]:
    live = server.store.live
    p = params(query, "dialled", "from", "days")
    view: dict[str, Any] = {"svg": None, "keys": [], "days": [], "error": None, "legend": ""}
    view["start"] = p["from"]
    view["ndays"] = p["days"] or "7"
    if live is None:
        view["error"] = "No policy is loaded."
        return view
    policy = live.policy
    if not p["dialled"]:
        return view
    number = phone.normalise(p["dialled"], policy.settings.region)
    if number is None:
        view["error"] = "The dialled number is not a phone number."
        return view
    try:
        tz = ZoneInfo(policy.settings.timezone)
        start = (
            date.fromisoformat(p["from"])
            if p["from"]
            else datetime.fromtimestamp(time_now(server), tz).date()
        )
    except ValueError:
        view["error"] = "The first day must be a date (YYYY-MM-DD)."
        return view
    days = int(p["days"]) if p["days"].isdigit() else 7
    if not 1 <= days <= 31:
        view["error"] = "Show 1 to 31 days."
        return view
    m = week_map(policy, number, start, days)
    view.update(
        svg=Markup(map_svg(m)),  # safe: map_svg escapes every text it holds
        keys=m.keys,
        days=m.days,
        legend=m.legend_caller,
        masked=phone.mask(number),
        timezone=m.timezone,
    )
    return view


_FIELDS = ("caller", "dialled", "at", "tags", "crm", "crm_status", "variables", "phone_number_id")


def _pairs(text: str) -> dict[str, str] | str:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            return f"write one key=value per line, got {line.strip()!r}"
        out[key.strip()] = value.strip()
    return out


def simulate_call(form: Mapping[str, str]) -> dict[str, Any] | str:
    """The /v1/explain call-facts body the form describes, or what is wrong with the form."""
    f = params(form, *_FIELDS)
    call: dict[str, Any] = {}
    if not f["dialled"]:
        return "Give the dialled number."
    call["dialled"] = f["dialled"]
    call["caller"] = None if f["caller"].lower() in ("", "anonymous") else f["caller"]
    if f["at"]:
        call["at"] = f["at"]
    if f["tags"]:
        call["tags"] = [t.strip() for t in f["tags"].split(",") if t.strip()]
    for key in ("crm", "variables"):
        if f[key]:
            pairs = _pairs(f[key])
            if isinstance(pairs, str):
                return f"{key}: {pairs}"
            call[key] = pairs
    if f["crm_status"]:
        if f["crm_status"] not in CRM_STATUSES:
            return "Pick a CRM status from the list."
        call["crm_status"] = f["crm_status"]
    if f["phone_number_id"]:
        call["phone_number_id"] = f["phone_number_id"]
    return call


def simulate_view(server: ConsoleServer, form: Mapping[str, str] | None) -> dict[str, Any]:
    view: dict[str, Any] = {"result": None, "error": None, "statuses": CRM_STATUSES, "given": {}}
    live = server.store.live
    if live is None:
        view["error"] = "No policy is loaded."
        return view
    policy = live.policy
    view["timezone"] = policy.settings.timezone
    if form is None:
        return view
    call = simulate_call(form)
    # what was given, echoed back except the numbers (never shown in full)
    view["given"] = {k: form.get(k, "") for k in ("at", "tags", "crm", "crm_status", "variables")}
    if isinstance(call, str):
        view["error"] = call
        return view
    at = call.get("at")
    if at is not None:
        # a time without an offset (the form's "2026-11-28T09:00") is wall-clock time in the
        # policy's zone; with an offset, or epoch ms, it is read as /v1/explain reads it
        try:
            naive = datetime.fromisoformat(at)
        except ValueError:
            naive = None
        if naive is not None and naive.tzinfo is None:
            call["at"] = naive.replace(tzinfo=ZoneInfo(policy.settings.timezone)).isoformat()
        elif parse_time(at) is None:
            view["error"] = "The time must be ISO 8601, e.g. 2026-11-28T09:00 (the policy's zone)."
            return view
    facts = facts_from_call(
        call, region=policy.settings.region, now=datetime.now(UTC), crm_enabled=policy.crm is not None
    )
    out = explain_answer(policy, facts)
    view["call"] = call  # for the test hook below: the same body /v1/explain takes
    view["result"] = {
        "route": out["route"],
        "target": out["target"],
        "reply": mask_numbers(json.dumps(out["reply"], indent=2, ensure_ascii=False)),
        "trace": [{**s, "reason": mask_numbers(s["reason"])} for s in out["trace"]],
        "caller": phone.mask(facts.caller),
        "dialled": phone.mask(facts.dialled),
        "at": facts.at.astimezone(ZoneInfo(policy.settings.timezone)).isoformat(),
        "crm_status": facts.crm_status,
    }
    return view


def decisions_view(server: ConsoleServer, query: Mapping[str, str]) -> dict[str, Any]:
    p = params(query, "route", "outcome")
    rows = []
    routes: set[str] = set()
    outcomes: set[str] = set()
    for outcome, line in reversed(server.activity.recent):
        route = line.get("route") or "none"
        routes.add(route)
        outcomes.add(outcome)
        if (p["route"] and route != p["route"]) or (p["outcome"] and outcome != p["outcome"]):
            continue
        rows.append({**line, "outcome": outcome})
    return {
        "rows": rows,
        "route": p["route"],
        "outcome": p["outcome"],
        "routes": sorted(routes),
        "outcomes": sorted(outcomes),
        "kept": len(server.activity.recent),
    }
