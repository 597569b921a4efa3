"""Live call state in policy test cases (DESIGN §13): `call:` may give `flags` (those on),
`capacity` ({POOL: available | full | N in use}) and `history` (earlier calls, newest or
not: [{ago: 5m, route, target, ended_reason}]). [pure]"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from router.errors import PolicyError
from router.policy.document import Document
from router.runtime.model import Policy
from router.runtime.statefacts import PastCall, StateFacts, parse_duration

STATE_KEYS = ("flags", "capacity", "history")


def case_state(policy: Policy, call: Mapping[str, Any], at: datetime) -> StateFacts | None:
    """The state facts a (checked) case gives; None when it gives none."""
    if not any(k in call for k in STATE_KEYS):
        return None
    now = at.timestamp()
    pools = dict(policy.state.pools) if policy.state is not None else {}
    usage: dict[str, tuple[int, int]] = {p: (0, m) for p, m in pools.items()}
    for pool, value in (call.get("capacity") or {}).items():
        most = pools.get(pool, 1)
        used = most if value == "full" else (0 if value == "available" else int(value))
        usage[pool] = (used, most)
    history = sorted(
        (
            PastCall(
                now - (parse_duration(h.get("ago", 0)) or 0.0),
                h.get("route"),
                h.get("target"),
                h.get("ended_reason"),
            )
            for h in call.get("history") or []
        ),
        key=lambda c: c.at,
        reverse=True,
    )
    return StateFacts("ok", tuple(history), usage, frozenset(call.get("flags") or ()))


def case_state_problems(doc: Document, pointer: str, call: Mapping[str, Any]) -> list[PolicyError]:
    out = []
    flags = call.get("flags")
    if flags is not None and not (isinstance(flags, list) and all(isinstance(f, str) for f in flags)):
        out.append(
            doc.error(f"{pointer}/flags", "`flags` must be a list of the flags that are on", "bad-cases")
        )
    capacity = call.get("capacity")
    counts = isinstance(capacity, dict) and all(
        v in ("available", "full") or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
        for v in capacity.values()
    )
    if capacity is not None and not counts:
        out.append(
            doc.error(
                f"{pointer}/capacity",
                "`capacity` must map pools to available, full or the number of calls in use",
                "bad-cases",
            )
        )
    history = call.get("history")
    if history is not None:
        ok = isinstance(history, list) and all(
            isinstance(h, dict)
            and set(h) <= {"ago", "route", "target", "ended_reason"}
            and parse_duration(h.get("ago", 0)) is not None
            for h in history
        )
        if not ok:
            out.append(
                doc.error(
                    f"{pointer}/history",
                    "`history` must be a list of earlier calls: {ago: 5m, route, target, ended_reason}",
                    "bad-cases",
                )
            )
    return out
