"""`replay`: decisions for captured Vapi messages; with --against, what a policy change would change.
[pure + read]

CRM facts come from the policy's embedded CRM file when it has one; with an HTTP CRM the
replay cannot call it (replays are offline), so such lookups count as crm_status not_found.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router.runtime import phone
from router.runtime.decide import decide
from router.runtime.facts import facts_from_message
from router.runtime.model import Facts, Policy
from router.tools.offline import file_crm, with_offline_crm


@dataclass(frozen=True, slots=True)
class Replayed:
    line: int
    call_id: str | None
    caller: str
    route: str
    target: str
    other_route: str | None = None
    other_target: str | None = None


@dataclass
class ReplayReport:
    results: list[Replayed] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def changes(self) -> dict[tuple[str, str], list[Replayed]]:
        out: dict[tuple[str, str], list[Replayed]] = defaultdict(list)
        for r in self.results:
            if r.other_route is not None and (r.other_route, r.other_target) != (r.route, r.target):
                out[(r.route, r.other_route)].append(r)
        return dict(out)


def read_requests(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    """(line, message) per JSONL line; a str in place of the message says why it was skipped."""
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
            yield n, message


class _Decider:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.crm = file_crm(policy)

    def decide(self, message: Mapping[str, Any]) -> tuple[str, str, Facts]:
        p = self.policy
        facts = facts_from_message(message, region=p.settings.region, now=datetime.now(UTC))
        facts = with_offline_crm(p, facts, self.crm)
        answer = decide(p, facts)
        return answer.route or "default", answer.target or "(inline)", facts


def replay(policy: Policy, requests: Path, against: Policy | None = None) -> ReplayReport:
    """Decide every captured request on `policy` (and on `against`, to compare)."""
    live = _Decider(policy)
    other = _Decider(against) if against is not None else None
    report = ReplayReport()
    for line, message in read_requests(requests):
        if isinstance(message, str):
            report.skipped.append((line, message))
            continue
        route, target, facts = live.decide(message)
        call = message.get("call")
        call_id = call.get("id") if isinstance(call, dict) and isinstance(call.get("id"), str) else None
        o_route = o_target = None
        if other is not None:
            o_route, o_target, _ = other.decide(message)
        report.results.append(
            Replayed(line, call_id, phone.mask(facts.caller), route, target, o_route, o_target)
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
        for (a, b), rs in sorted(changes.items(), key=lambda kv: -len(kv[1])):
            examples = ", ".join(r.call_id or f"line {r.line}" for r in rs[:3])
            lines.append(f"  {a} -> {b}: {len(rs)} (e.g. {examples})")
        same_route = [r for r in report.results if r.other_route == r.route and r.other_target != r.target]
        if same_route:
            lines.append(f"  same route, other target: {len(same_route)}")
    for line, why in report.skipped:
        lines.append(f"skipped line {line}: {why}")
    return "\n".join(lines)


def report_json(report: ReplayReport, *, compared: bool) -> str:
    out: dict[str, Any] = {
        "requests": len(report.results),
        "decisions": [
            {"line": r.line, "call_id": r.call_id, "route": r.route, "target": r.target}
            | ({"against_route": r.other_route, "against_target": r.other_target} if compared else {})
            for r in report.results
        ],
        "skipped": [{"line": n, "reason": why} for n, why in report.skipped],
    }
    if compared:
        out["changes"] = [
            {
                "from": a,
                "to": b,
                "count": len(rs),
                "examples": [r.call_id or f"line {r.line}" for r in rs[:3]],
            }
            for (a, b), rs in sorted(report.changes().items(), key=lambda kv: -len(kv[1]))
        ]
        out["changed"] = sum(len(v) for v in report.changes().values())
    return json.dumps(out, indent=2)
