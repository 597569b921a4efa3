"""`replay`: decisions for captured Vapi messages; with --against, what a policy change would change.
[pure + read]

A decision is compared whole: route, target and reply body, so a changed greeting under the
same route shows as "reply changed", apart from "route changed". CRM facts come from the
capture (`serve --capture` records the status, tags and fields each call saw), so CRM
routing replays faithfully without calling the CRM; a line captured without them takes the
policy's embedded CRM file, else crm_status not_found.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router.runtime import phone
from router.runtime.decide import decide
from router.runtime.facts import facts_from_message
from router.runtime.facttypes import CRM_STATUSES, Facts
from router.runtime.model import Policy
from router.tools.offline import file_crm, with_offline_crm

CHANGE_KINDS = ("route", "target", "reply")
INLINE = "inline"  # the target column of a route whose `then` is written in place


@dataclass(frozen=True, slots=True)
class Replayed:
    line: int
    call_id: str | None
    caller: str
    route: str
    target: str
    body: bytes = b""
    other_route: str | None = None
    other_target: str | None = None
    other_body: bytes | None = None
    fallback_reason: str | None = None  # why the fallback answered, as the decision log says

    @property
    def change(self) -> str | None:
        """What changed, the most visible first: route, else target, else reply; None if nothing."""
        if self.other_body is None:
            return None
        if self.other_route != self.route:
            return "route"
        if self.other_target != self.target:
            return "target"
        return "reply" if self.other_body != self.body else None


@dataclass
class ReplayReport:
    results: list[Replayed] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def changes(self) -> dict[tuple[str, str, str], list[Replayed]]:
        """(kind, from, to) -> the calls: routes for a route change, targets otherwise."""
        out: dict[tuple[str, str, str], list[Replayed]] = defaultdict(list)
        for r in self.results:
            kind = r.change
            if kind == "route":
                out[(kind, r.route, str(r.other_route))].append(r)
            elif kind == "target":
                out[(kind, f"{r.route}: {r.target}", str(r.other_target))].append(r)
            elif kind == "reply":  # same route, same target: the body is what differs
                out[(kind, r.route, r.route)].append(r)
        return dict(out)


Captured = tuple[Mapping[str, Any], Mapping[str, Any] | None]


def read_requests(path: Path) -> Iterator[tuple[int, Captured | str]]:
    """(line, (message, CRM facts or None)) per JSONL line; a str instead says why it was skipped."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                yield n, "not JSON"
                continue
            message = data.get("message", data) if isinstance(data, dict) else None
            if not isinstance(message, dict) or message.get("type") not in (None, "assistant-request"):
                yield n, "not an assistant-request"
                continue
            crm = data.get("crm") if isinstance(data.get("crm"), dict) else None
            yield n, (message, crm)


def captured_facts(facts: Facts, crm: Mapping[str, Any]) -> Facts | None:
    """The facts with the CRM record the live call saw; None if the record is unusable."""
    status, tags, fields = crm.get("status"), crm.get("tags", []), crm.get("fields", {})
    if status not in CRM_STATUSES or not isinstance(tags, list) or not isinstance(fields, dict):
        return None
    return replace(
        facts,
        crm_status=status,
        tags=frozenset(str(t) for t in tags),
        crm={str(k): str(v) for k, v in fields.items()},
    )


class _Decider:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.crm = file_crm(policy)

    def decide(
        self, message: Mapping[str, Any], crm: Mapping[str, Any] | None
    ) -> tuple[str, str, bytes, Facts, str | None]:
        p = self.policy
        facts = facts_from_message(message, region=p.settings.region, now=datetime.now(UTC))
        seen = captured_facts(facts, crm) if crm is not None and p.crm is not None else None
        facts = seen if seen is not None else with_offline_crm(p, facts, self.crm)
        answer = decide(p, facts)
        return answer.route or "default", answer.target or INLINE, answer.body, facts, answer.fallback_reason


def replay(policy: Policy, requests: Path, against: Policy | None = None) -> ReplayReport:
    """Decide every captured request on `policy` (and on `against`, to compare)."""
    live = _Decider(policy)
    other = _Decider(against) if against is not None else None
    report = ReplayReport()
    for line, item in read_requests(requests):
        if isinstance(item, str):
            report.skipped.append((line, item))
            continue
        message, crm = item
        route, target, body, facts, reason = live.decide(message, crm)
        call = message.get("call")
        call_id = call.get("id") if isinstance(call, dict) and isinstance(call.get("id"), str) else None
        o_route = o_target = o_body = None
        if other is not None:
            o_route, o_target, o_body, _, _ = other.decide(message, crm)
        report.results.append(
            Replayed(
                line,
                call_id,
                phone.mask(facts.caller),
                route,
                target,
                body,
                o_route,
                o_target,
                o_body,
                reason,
            )
        )
    return report


def report_text(report: ReplayReport, *, compared: bool) -> str:
    lines = []
    if not compared:
        for r in report.results:
            lines.append(f"line {r.line}: {r.call_id or '-'} {r.caller} -> {r.route} ({r.target})")
        counts = Counter(r.route for r in report.results)
        lines.append(
            f"{len(report.results)} requests: " + ", ".join(f"{k} {v}" for k, v in counts.most_common())
        )
    else:
        changes = report.changes()
        changed = sum(len(v) for v in changes.values())
        lines.append(f"{changed} of {len(report.results)} decisions would change")
        order = sorted(changes.items(), key=lambda kv: (CHANGE_KINDS.index(kv[0][0]), -len(kv[1])))
        for (kind, a, b), rs in order:
            examples = ", ".join(_examples(rs))
            what = f"{a} -> {b}" if kind != "reply" else f"route {a}, same target"
            lines.append(f"  {kind} changed: {what}: {len(rs)} (e.g. {examples})")
    for line, why in report.skipped:
        lines.append(f"skipped line {line}: {why}")
    return "\n".join(lines)


def _examples(rs: list[Replayed]) -> list[str]:
    """Up to three distinct calls (a call captured twice is one example, not two)."""
    return list(dict.fromkeys(r.call_id or f"line {r.line}" for r in rs))[:3]


def _reply(body: bytes | None) -> Any:
    return None if body is None else json.loads(body)


def report_json(report: ReplayReport, *, compared: bool) -> str:
    out: dict[str, Any] = {
        "requests": len(report.results),
        "decisions": [
            {
                "line": r.line,
                "call_id": r.call_id,
                "route": r.route,
                "target": r.target,
                "reply": _reply(r.body),
            }
            | (
                {
                    "against_route": r.other_route,
                    "against_target": r.other_target,
                    "against_reply": _reply(r.other_body),
                    "change": r.change,
                }
                if compared
                else {}
            )
            for r in report.results
        ],
        "skipped": [{"line": n, "reason": why} for n, why in report.skipped],
    }
    if compared:
        changes = report.changes()
        out["changes"] = [
            {
                "kind": kind,
                "from": a,
                "to": b,
                "count": len(rs),
                "examples": _examples(rs),
            }
            for (kind, a, b), rs in sorted(
                changes.items(), key=lambda kv: (CHANGE_KINDS.index(kv[0][0]), -len(kv[1]))
            )
        ]
        out["changed"] = sum(len(v) for v in changes.values())
        out["changed_by_kind"] = {
            k: sum(len(v) for key, v in changes.items() if key[0] == k) for k in CHANGE_KINDS
        }
    return json.dumps(out, indent=2)
