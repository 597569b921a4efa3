"""`vapi-router explain PATH (--request FILE | --caller N --dialled N) …`: one call's decision. [edge]

The call comes from a whole Vapi message or from flags; CRM facts from the flags, else the
policy's CRM file or SQLite database, as the server reads it (router.tools.offline). An HTTP
or PostgreSQL CRM is never called: when the decision depends on the `not_found` assumed for
it, a warning on stderr says so and how to give the facts. The decision is the server's own
(`router.runtime.decide.explain_answer`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, NoReturn

from router.runtime.decide import explain_answer
from router.runtime.facts import facts_from_call, facts_from_message, lacks_offset, parse_time
from router.runtime.facttypes import Facts
from router.runtime.model import Policy
from router.tools import report
from router.tools.clicommon import load_or_print
from router.tools.offline import ASSUMED, LocalCrm, assumes_crm, local_crm, remote_kind, with_offline_crm


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("explain", help="the decision for one call, and why")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--request", metavar="FILE", help="a whole Vapi message (JSON)")
    p.add_argument("--caller", metavar="N", help="caller number, or 'anonymous'")
    p.add_argument("--dialled", metavar="N")
    p.add_argument("--at", metavar="ISO", help="call time (default: now)")
    p.add_argument("--tags", metavar="a,b")
    p.add_argument("--crm", action="append", metavar="k=v")
    p.add_argument("--crm-status", choices=("ok", "not_found", "timeout", "error", "disabled"))
    p.add_argument("--var", action="append", metavar="k=v")
    p.add_argument("--phone-number-id", metavar="ID")
    p.add_argument("--call-id", metavar="ID", help="what an anonymous caller's split sticks to")
    p.add_argument("--transfer", action="store_true", help="explain a transfer-destination-request")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    if not args.request and (args.caller is None or args.dialled is None):
        print("vapi-router explain: give --request FILE, or --caller and --dialled", file=sys.stderr)
        return 2
    policy = load_or_print(args.path)
    if policy is None:
        return 1
    transfer = bool(args.transfer)
    if args.request:
        message = _read_request(args.request)
        message = message.get("message", message)
        transfer = isinstance(message, dict) and message.get("type") == "transfer-destination-request"
    with local_crm(policy) as crm:
        facts = explain_facts(policy, args, datetime.now(UTC), crm)
        assumed = not crm_given(args) and assumes_crm(policy, facts, crm, transfer=transfer)
    data = explain_answer(policy, facts, transfer=transfer)
    print(json.dumps(data, indent=2) if args.json else report.explain_text(data))
    if assumed:
        print(assumed_warning(policy), file=sys.stderr)
    return 0


def crm_given(args: argparse.Namespace) -> bool:
    """Whether the flags give the call's CRM facts (then no CRM is read or assumed)."""
    return args.tags is not None or bool(args.crm) or bool(args.crm_status)


def assumed_warning(policy: Policy) -> str:
    """The stderr line of a decision that rests on CRM facts made up offline (assumes_crm)."""
    return (
        f"vapi-router explain: warning: crm.{remote_kind(policy)} is not called offline, so this"
        f" decision assumes crm_status {ASSUMED} (no tags, no fields); give the caller's CRM facts"
        " with --crm-status ok --tags a,b --crm k=v"
    )


def explain_facts(policy: Policy, args: argparse.Namespace, now: datetime, crm: LocalCrm | None) -> Facts:
    """Facts from --request or the flags; CRM facts from the flags, else as the server would
    see them offline (`crm` from router.tools.offline.local_crm)."""
    region = policy.settings.region
    call: dict[str, Any] = {}
    if args.tags is not None:
        call["tags"] = [t for t in args.tags.split(",") if t]
    if args.crm:
        call["crm"] = _pairs(args.crm, "--crm")
    if args.crm_status:
        call["crm_status"] = args.crm_status
    if args.request:
        data = _read_request(args.request)
        message = data.get("message", data)
        facts = facts_from_message(message, region=region, now=now)
        extra = facts_from_call(call, region=region, now=now, crm_enabled=policy.crm is not None)
        facts = replace(facts, crm_status=extra.crm_status, tags=extra.tags, crm=extra.crm)
    else:
        call["caller"] = None if args.caller == "anonymous" else args.caller
        call["dialled"] = args.dialled
        if args.at:
            if lacks_offset(args.at):
                _usage(
                    f"--at {args.at!r} has no UTC offset: write it with one, e.g. 2026-11-23T10:00:00-05:00"
                )
            if parse_time(args.at) is None:
                _usage(f"--at wants ISO 8601 (2026-11-21T22:00:00-05:00), got {args.at!r}")
            call["at"] = args.at
        call["variables"] = _pairs(args.var or [], "--var")
        call["phone_number_id"] = args.phone_number_id
        call["call_id"] = args.call_id
        facts = facts_from_call(call, region=region, now=now, crm_enabled=policy.crm is not None)
    if not crm_given(args):
        facts = with_offline_crm(policy, facts, crm)
    return facts


def _usage(message: str) -> NoReturn:
    """A usage error of `explain`: the message on stderr, exit 2 (as argparse does)."""
    print(f"vapi-router explain: {message}", file=sys.stderr)
    raise SystemExit(2)


def _read_request(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        _usage(f"--request {path}: {exc}")
    if not isinstance(data, dict):
        _usage(f"--request {path}: not a JSON object")
    return data


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _usage(f"{flag} wants KEY=VALUE, got {item!r}")
        out[key] = value
    return out
