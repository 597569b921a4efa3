"""`replay`: decisions for captured Vapi messages; with --against, what a policy change would change.
[pure + read]

A decision is compared whole: route, target and reply body, so a changed greeting under the
same route shows as "reply changed", apart from "route changed". CRM facts come from the
capture (`serve --capture` records the status, tags and fields each call saw), so CRM
routing replays faithfully without calling the CRM. A line captured without them is looked
up in the policy's CRM file or SQLite database, as the server would; for an HTTP or
PostgreSQL CRM, never called offline, crm_status not_found is assumed, and every request
whose decision depends on that assumption is counted (`crm_assumed`), so the report says so.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router.runtime import phone
from router.runtime.decide import decide
from router.runtime.facts import facts_from_message
from router.runtime.facttypes import CRM_STATUSES, Facts
from router.runtime.model import Policy
from router.tools.cases import target_label
from router.tools.offline import ASSUMED, LocalCrm, assumes_crm, local_crm, remote_kind, with_offline_crm

CHANGE_KINDS = ("route", "target", "reply")


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
    crm_assumed: bool = False  # decided (on either policy) on CRM facts made up offline

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
    # the CRMs never called offline (crm.http, crm.postgres) of the policies replayed on
    remote: tuple[str, ...] = ()

    @property
    def assumed(self) -> list[Replayed]:
        """The requests decided on an assumed crm_status (no captured facts, a remote CRM)."""
        return [r for r in self.results if r.crm_assumed]

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


@dataclass(frozen=True, slots=True)
class _Decided:
    route: str
    target: str  # the target's name, else what the inline one is (`inline assistantId`)
    body: bytes
    facts: Facts
    fallback_reason: str | None
    crm_assumed: bool


class _Decider:
    def __init__(self, policy: Policy, crm: LocalCrm | None) -> None:
        self.policy = policy
        self.crm = crm  # router.tools.offline.local_crm(policy)

    def decide(self, message: Mapping[str, Any], crm: Mapping[str, Any] | None) -> _Decided:
        p = self.policy
        facts = facts_from_message(message, region=p.settings.region, now=datetime.now(UTC))
        seen = captured_facts(facts, crm) if crm is not None and p.crm is not None else None
        assumed = seen is None and assumes_crm(p, facts, self.crm)
        facts = seen if seen is not None else with_offline_crm(p, facts, self.crm)
        answer = decide(p, facts)
        target = target_label(answer.target, answer.reply)
        route = answer.route or "default"
        return _Decided(route, target, answer.body, facts, answer.fallback_reason, assumed)


def replay(policy: Policy, requests: Path, against: Policy | None = None) -> ReplayReport:
    """Decide every captured request on `policy` (and on `against`, to compare)."""
    with ExitStack() as stack:
        live = _Decider(policy, stack.enter_context(local_crm(policy)))
        other = None
        if against is not None:
            other = _Decider(against, stack.enter_context(local_crm(against)))
        return _replay(live, other, requests)


def _replay(live: _Decider, other: _Decider | None, requests: Path) -> ReplayReport:
    policies = [live.policy] if other is None else [live.policy, other.policy]
    remote = sorted({kind for p in policies if (kind := remote_kind(p)) is not None})
    report = ReplayReport(remote=tuple(remote))
    for line, item in read_requests(requests):
        if isinstance(item, str):
            report.skipped.append((line, item))
            continue
        message, crm = item
        mine = live.decide(message, crm)
        theirs = other.decide(message, crm) if other is not None else None
        call = message.get("call")
        call_id = call.get("id") if isinstance(call, dict) and isinstance(call.get("id"), str) else None
        report.results.append(
            Replayed(
                line,
                call_id,
                phone.mask(mine.facts.caller),
                mine.route,
                mine.target,
                mine.body,
                theirs.route if theirs else None,
                theirs.target if theirs else None,
                theirs.body if theirs else None,
                mine.fallback_reason,
                mine.crm_assumed or (theirs is not None and theirs.crm_assumed),
            )
        )
    return report


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def report_text(report: ReplayReport, *, compared: bool) -> str:
    lines = []
    total = len(report.results)
    if not compared:
        for r in report.results:
            lines.append(f"line {r.line}: {r.call_id or '-'} {r.caller} -> {r.route} ({r.target})")
        counts = Counter(r.route for r in report.results)
        tally = ", ".join(f"{k} {v}" for k, v in counts.most_common())
        lines.append(f"{_plural(total, 'request')}: {tally}")
    else:
        changes = report.changes()
        changed = sum(len(v) for v in changes.values())
        lines.append(f"{changed} of {_plural(total, 'decision')} would change")
        order = sorted(changes.items(), key=lambda kv: (CHANGE_KINDS.index(kv[0][0]), -len(kv[1])))
        for (kind, a, b), rs in order:
            examples = ", ".join(_examples(rs))
            what = f"{a} -> {b}" if kind != "reply" else f"route {a}, same target"
            lines.append(f"  {kind} changed: {what}: {len(rs)} (e.g. {examples})")
    for line, why in report.skipped:
        lines.append(f"skipped line {line}: {why}")
    return "\n".join(lines)


def assumed_warning(report: ReplayReport) -> str | None:
    """The stderr line for the requests decided on an assumed crm_status; None if there are none."""
    assumed = report.assumed
    if not assumed:
        return None
    n = len(assumed)
    shown = ", ".join(str(r.line) for r in assumed[:5])
    more = f" and {n - 5} more" if n > 5 else ""
    crms = " and ".join(f"crm.{kind}" for kind in report.remote)
    are = "is" if len(report.remote) == 1 else "are"
    return (
        f"vapi-router replay: warning: {n} of {_plural(len(report.results), 'request')}"
        f" {'has' if n == 1 else 'have'} no captured CRM facts and {crms} {are} not called offline:"
        f" {'it was' if n == 1 else 'they were'} decided on an assumed crm_status {ASSUMED}"
        f" ({'line' if n == 1 else 'lines'} {shown}{more}); `serve --capture` records what the CRM"
        " said whenever a live call looked its caller up"
    )


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
                "crm_assumed": r.crm_assumed,
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
        # what the stderr warning says: the requests decided on a crm_status made up offline
        "crm_assumed": {
            "count": len(report.assumed),
            "lines": [r.line for r in report.assumed],
            "crm_status": ASSUMED,
            "not_called": [f"crm.{kind}" for kind in report.remote],
        },
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
