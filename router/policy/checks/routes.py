"""Stage 3 checks: routes an earlier route covers can never match (policy.reach). Pure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from router.errors import PolicyError
from router.policy.checks.context import Context, Where, pos
from router.policy.reach import unreachable
from router.policy.toolroutes import CONTEXTS


def unreachable_routes(ctx: Context) -> Iterator[PolicyError]:
    """A route an earlier route covers (policy.reach) can never match: a warning at the dead
    route naming the earlier one's position. A route that matches every call is one problem
    at that route, listing the routes after it, not one warning per dead route."""
    for section in CONTEXTS:
        routes = [
            (w, raw, raw.get("when") or {})
            for w, raw, sec in ctx.routes
            if sec == section and isinstance(raw.get("when") or {}, dict)
        ]
        for i, (w, raw, when) in enumerate(routes):
            if not when and i + 1 < len(routes):
                after = routes[i + 1 :]
                names = ", ".join(f'"{r.get("id")}" ({pos(rw.at("id"))})' for rw, r, _ in after[:5])
                more = f" and {len(after) - 5} more" if len(after) > 5 else ""
                yield w.at("id").error(
                    f'route "{raw.get("id")}" matches every call, so the {len(after)} '
                    f"{CONTEXTS[section]}{'s' * (len(after) != 1)} after it can never match: {names}{more}; "
                    "give it a `when`, or move it last (or make it the `default`)",
                    "unreachable",
                    severity="warning",
                )
                routes = routes[: i + 1]
                break
        if len(routes) > REACH_LIMIT:  # pairwise analysis is quadratic: exact repeats only
            yield from _repeated_conditions(routes)
            continue
        pairs = [(str(raw.get("id")), when) for _, raw, when in routes]
        for j, i, why in unreachable(pairs, ctx.region):
            (w, raw, _), (ew, eraw, _) = routes[j], routes[i]
            yield w.at("id").error(
                f'route "{raw.get("id")}" can never match: route "{eraw.get("id")}" '
                f"({pos(ew.at('id'))}) before it takes every such call ({why})",
                "unreachable",
                severity="warning",
            )


REACH_LIMIT = 500  # routes per section analysed pairwise


def _repeated_conditions(routes: list[tuple[Where, Any, dict[str, Any]]]) -> Iterator[PolicyError]:
    earlier: dict[str, tuple[Where, Any]] = {}
    for w, raw, when in routes:
        key = json.dumps(when, sort_keys=True)
        if key in earlier:
            ew, eraw = earlier[key]
            yield w.at("id").error(
                f'route "{raw.get("id")}" can never match: route "{eraw.get("id")}" '
                f"({pos(ew.at('id'))}) before it has the same conditions",
                "unreachable",
                severity="warning",
            )
        earlier.setdefault(key, (w, raw))
