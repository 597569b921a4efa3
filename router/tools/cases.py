"""Run `*.test.yaml` cases against a policy set: expected route, target and reply. [pure + read]

CRM facts come from the case (`tags`, `crm`, `crm_status`); when a case gives none, the record
is read from the policy's CRM file or SQLite database, as the server would. For an HTTP or
PostgreSQL CRM (never called offline) such a case is a caller the CRM does not know
(`not_found`). That is not warned about, since the case's `expect` already states what the
call should get; but when a case fails on a decision that depended on it, the failure says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router.errors import PolicyError, did_you_mean
from router.policy.document import Document, parse_document
from router.policy.loader import policy_files
from router.policy.routeindex import build_index
from router.runtime.decide import decide, evaluate_for
from router.runtime.facts import facts_from_call, facts_from_message, lacks_offset, parse_time
from router.runtime.facttypes import CRM_STATUSES
from router.runtime.model import TARGET_KINDS, Policy
from router.tools.casediff import diff_values
from router.tools.casestate import STATE_KEYS, case_state, case_state_problems
from router.tools.coverage import reached_items
from router.tools.offline import ASSUMED, LocalCrm, assumes_crm, local_crm, remote_kind, with_offline_crm


@dataclass(frozen=True, slots=True)
class CaseResult:
    file: str
    line: int
    name: str
    failures: tuple[str, ...]
    route: str | None
    seconds: float = 0.0
    reached: tuple[str, ...] = ()  # coverage items (router.tools.coverage)

    @property
    def ok(self) -> bool:
        return not self.failures


def case_files(path: Path) -> list[Path]:
    """The case files for a policy path: NAME.test.yaml beside a file, or *.test.yaml in a directory."""
    if path.is_dir():
        return sorted(
            p for p in path.iterdir() if p.name.endswith(".test.yaml") and not p.name.startswith(".")
        )
    if path.name.endswith(".test.yaml"):
        return [path]
    sibling = path.with_name(path.name.removesuffix(".yaml") + ".test.yaml")
    return [sibling] if sibling.exists() else []


def policy_sets(path: Path) -> list[Path]:
    """A file, a directory of policy files, or a tree of such directories (e.g. examples/)."""
    if not path.is_dir():
        return [path]
    if any(p for p in policy_files(path) if p.exists()):
        return [path]
    found: list[Path] = []
    for child in sorted(path.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            found.extend(s for s in policy_sets(child) if s.is_dir() and policy_files(s))
    return found or [path]


def target_label(target: str | None, reply: Any) -> str:
    """A target by name, else what the inline one is (`inline assistantId`, `inline error`)."""
    if target:
        return target
    kind = next((k for k in TARGET_KINDS if isinstance(reply, dict) and k in reply), None)
    return f"inline {kind}" if kind else "none (an empty reply)"


def policy_path_for(test_file: Path) -> Path:
    """The policy a case file tests: NAME.yaml beside it, else its directory."""
    sibling = test_file.with_name(test_file.name.removesuffix(".test.yaml") + ".yaml")
    return sibling if sibling.exists() else test_file.parent


def _message_of(data: Any) -> Mapping[str, Any]:
    if isinstance(data, Mapping) and isinstance(data.get("message"), Mapping):
        return data["message"]  # type: ignore[no-any-return]
    return data if isinstance(data, Mapping) else {}


def handoff_view(policy: Policy) -> Policy:
    """The policy seen through its `handoffs:` routes, as the server answers a
    handoff-destination-request (server.handoff.HandoffView)."""
    index = policy.handoff_index or build_index(policy.handoffs)
    return replace(policy, transfers=policy.handoffs, transfer_index=index)


def run_case(
    policy: Policy, case: Mapping[str, Any], base: Path, crm: LocalCrm | None, now: datetime
) -> tuple[list[str], str | None, tuple[str, ...]]:
    """Failures of one case (empty: passed), the route it reached and its coverage items."""
    region = policy.settings.region
    crm_given = any(k in case.get("call", {}) for k in ("tags", "crm", "crm_status"))
    transfer = False
    if "request" in case:
        try:
            data = json.loads((base / str(case["request"])).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return [f"cannot read request {case['request']}: {exc}"], None, ()
        message = _message_of(data)
        transfer = message.get("type") in ("transfer-destination-request", "handoff-destination-request")
        handoff = message.get("type") == "handoff-destination-request"
        facts = facts_from_message(message, region=region, now=now)
        extra = facts_from_call(
            case.get("call", {}), region=region, now=now, crm_enabled=policy.crm is not None
        )
        facts = replace(facts, crm_status=extra.crm_status, tags=extra.tags, crm=extra.crm)
    else:
        facts = facts_from_call(
            case.get("call", {}), region=region, now=now, crm_enabled=policy.crm is not None
        )
        handoff = bool(case.get("handoff", False))
        transfer = bool(case.get("transfer", False)) or handoff
    unset = facts  # before the CRM facts made up offline, if any (assumes_crm)
    if not crm_given:
        facts = with_offline_crm(policy, facts, crm)
    state = case_state(policy, case.get("call") or {}, facts.at)
    if state is not None:
        facts = replace(facts, state=state)
        unset = replace(unset, state=state)
    if handoff:
        policy = handoff_view(policy)
    answer = decide(policy, facts, transfer=transfer)
    kind = "handoff" if handoff else "transfer" if transfer else "route"
    reached = reached_items(kind, evaluate_for(policy, facts, transfer=transfer), facts)
    route, target, reply = answer.route, answer.target or "", answer.reply
    expect = case.get("expect", {})
    failures = []
    if (
        "route" in expect
        and expect["route"] != route
        and not (expect["route"] == "default" and route is None)
    ):
        failures.append(f"route: expected {expect['route']}, got {route or 'default'}")
    if "target" in expect and expect["target"] != target:
        failures.append(f"target: expected {expect['target']}, got {target_label(target, reply)}")
    if "reply" in expect and expect["reply"] != reply:
        failures.extend(diff_values(expect["reply"], reply, "reply"))
    if failures and not crm_given and assumes_crm(policy, unset, crm, transfer=transfer):
        failures.append(
            f"crm: the case gives no CRM facts and crm.{remote_kind(policy)} is not called offline,"
            f" so it was decided on crm_status {ASSUMED}; give call.crm_status, call.tags or call.crm"
        )
    return failures, route, reached


def _case_problems(doc: Document) -> list[PolicyError]:
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        return [doc.error("", "a test file needs `cases:` with a list of cases", "bad-cases")]
    out = []
    for i, case in enumerate(data["cases"]):
        pointer = f"/cases/{i}"
        if not isinstance(case, dict):
            out.append(doc.error(pointer, "a case must be a mapping", "bad-cases"))
            continue
        known = ("name", "call", "request", "expect", "transfer", "handoff")
        for key in sorted(set(case) - set(known)):
            message = f'unknown key "{key}" in a case{did_you_mean(key, known)}'
            out.append(doc.error(f"{pointer}/{key}", message, "bad-cases", key=True))
        if "call" not in case and "request" not in case:
            out.append(
                doc.error(
                    pointer, "a case needs `call:` (facts) or `request:` (a captured message)", "bad-cases"
                )
            )
        out.extend(
            _keys_problems(
                doc, f"{pointer}/call", case.get("call"), CRM_KEYS if "request" in case else CALL_KEYS
            )
        )
        expect = case.get("expect")
        if not isinstance(expect, dict) or not expect:
            out.append(doc.error(pointer, "a case needs `expect:` with route, target or reply", "bad-cases"))
        else:
            out.extend(_keys_problems(doc, f"{pointer}/expect", expect, ("route", "target", "reply")))
        call = case.get("call")
        if "call" in case and call is None:
            out.append(
                doc.error(f"{pointer}/call", "`call:` is empty; give caller, dialled, ...", "bad-cases")
            )
        if isinstance(call, dict):
            out.extend(case_state_problems(doc, f"{pointer}/call", call))
            for key, kind, name in (
                ("tags", list, "a list"),
                ("crm", dict, "a mapping"),
                ("variables", dict, "a mapping"),
            ):
                if call.get(key) is not None and not isinstance(call[key], kind):
                    out.append(doc.error(f"{pointer}/call/{key}", f"`{key}` must be {name}", "bad-cases"))
            status = call.get("crm_status")
            if status is not None and status not in CRM_STATUSES:
                out.append(
                    doc.error(
                        f"{pointer}/call/crm_status",
                        f"crm_status must be one of "
                        f"{', '.join(CRM_STATUSES)}{did_you_mean(str(status), CRM_STATUSES)}",
                        "bad-cases",
                    )
                )
            if "at" in call and lacks_offset(call["at"]):
                out.append(
                    doc.error(
                        f"{pointer}/call/at",
                        f"`at` {call['at']!r} has no UTC offset: write it with one, e.g. "
                        "2026-11-21T22:00:00-05:00 (or Z for UTC)",
                        "bad-cases",
                    )
                )
            elif "at" in call and parse_time(call["at"]) is None:
                out.append(
                    doc.error(
                        f"{pointer}/call/at",
                        "`at` must be ISO 8601 with an offset, e.g. 2026-11-21T22:00:00-05:00",
                        "bad-cases",
                    )
                )
    return out


CALL_KEYS = (
    "caller",
    "dialled",
    "at",
    "tags",
    "crm",
    "crm_status",
    "phone_number_id",
    "variables",
    "call_id",
    *STATE_KEYS,
)
# with `request:`, `call:` may only add CRM facts and live call state
CRM_KEYS = ("tags", "crm", "crm_status", *STATE_KEYS)


def _keys_problems(doc: Document, pointer: str, value: Any, known: Sequence[str]) -> list[PolicyError]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [doc.error(pointer, "must be a mapping", "bad-cases")]
    return [
        doc.error(
            f"{pointer}/{key}",
            f'unknown key "{key}"{did_you_mean(str(key), known)}; one of {", ".join(known)}',
            "bad-cases",
            key=True,
        )
        for key in value
        if key not in known
    ]


def selected(name: str, pattern: str | None) -> bool:
    """`test -k PATTERN`: the case names that contain PATTERN, ignoring case."""
    return pattern is None or pattern.casefold() in name.casefold()


def run_file(
    policy: Policy, test_file: Path, *, now: datetime | None = None, pattern: str | None = None
) -> tuple[list[CaseResult], list[PolicyError]]:
    """Results of every case in one file (those `-k pattern` selects), or the problems that
    stop the file from running."""
    try:
        doc = parse_document(test_file.read_text(encoding="utf-8"), file=str(test_file))
    except PolicyError as exc:
        return [], [exc]
    problems = [*doc.problems, *_case_problems(doc)]
    if problems:
        return [], problems
    now = now or datetime.now(UTC)
    results = []
    with local_crm(policy) as crm:
        for i, case in enumerate(doc.data["cases"]):
            name = str(case.get("name", f"case {i + 1}"))
            if not selected(name, pattern):
                continue
            failures, route, reached = run_case(policy, case, test_file.parent, crm, now)
            line, _ = doc.position(f"/cases/{i}")
            results.append(CaseResult(str(test_file), line, name, tuple(failures), route, reached=reached))
    return results, []
