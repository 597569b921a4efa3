"""`vapi-router` command line: parse arguments, call the pipeline, print, return an exit code. [edge]"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

from router.errors import PolicyError
from router.policy.loader import Loaded, lint_path
from router.policy.schema import policy_schema
from router.runtime import phone
from router.runtime.decide import explain_answer
from router.runtime.facts import facts_from_call, facts_from_message, lacks_offset, parse_time
from router.runtime.facttypes import Facts
from router.runtime.model import Policy
from router.runtime.phone import is_country
from router.runtime.schedules import effective_hours, format_hours
from router.tools import report
from router.tools.cases import policy_sets
from router.tools.offline import file_crm, with_offline_crm


def _load_or_print(path: Path) -> Loaded:
    loaded = lint_path(path)
    if loaded.policy is None:
        print(report.problems_text(loaded.problems), file=sys.stderr)
    return loaded


def cmd_lint(args: argparse.Namespace) -> int:
    problems: list[PolicyError] = []
    for path in args.paths:
        for policy_set in policy_sets(Path(path)):
            problems.extend(lint_path(policy_set).problems)
    if args.format == "json":
        print(report.problems_json(problems))
    elif args.format == "github":
        if problems:
            print(report.problems_github(problems))
    elif problems:
        print(report.problems_text(problems))
    errors = [p for p in problems if p.severity == "error" or args.strict]
    return 1 if errors else 0


def _usage(message: str) -> NoReturn:
    """A usage error of `explain`: the message on stderr, exit 2 (as argparse does)."""
    print(f"vapi-router explain: {message}", file=sys.stderr)
    raise SystemExit(2)


def _read_request(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
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


def explain_facts(policy: Policy, args: argparse.Namespace, now: datetime) -> Facts:
    """Facts from --request or the flags; CRM facts from the flags, else the embedded file."""
    region = policy.settings.region
    call: dict[str, Any] = {}
    if args.tags is not None:
        call["tags"] = [t for t in args.tags.split(",") if t]
    if args.crm:
        call["crm"] = _pairs(args.crm, "--crm")
    if args.crm_status:
        call["crm_status"] = args.crm_status
    given = bool(call)
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
    if not given:
        facts = with_offline_crm(policy, facts, file_crm(policy))
    return facts


def cmd_explain(args: argparse.Namespace) -> int:
    if not args.request and (args.caller is None or args.dialled is None):
        print("vapi-router explain: give --request FILE, or --caller and --dialled", file=sys.stderr)
        return 2
    loaded = _load_or_print(Path(args.path))
    if loaded.policy is None:
        return 1
    facts = explain_facts(loaded.policy, args, datetime.now(UTC))
    transfer = bool(args.transfer)
    if args.request:
        message = _read_request(args.request)
        message = message.get("message", message)
        transfer = isinstance(message, dict) and message.get("type") == "transfer-destination-request"
    data = explain_answer(loaded.policy, facts, transfer=transfer)
    print(json.dumps(data, indent=2) if args.json else report.explain_text(data))
    return 0


def cmd_hours(args: argparse.Namespace) -> int:
    loaded = _load_or_print(Path(args.path))
    if loaded.policy is None:
        return 1
    schedule = loaded.policy.schedules.get(args.schedule)
    if schedule is None:
        names = ", ".join(sorted(loaded.policy.schedules)) or "none"
        print(f'vapi-router hours: no schedule "{args.schedule}" (schedules: {names})', file=sys.stderr)
        return 2
    if args.days < 1:
        print(
            f"vapi-router hours: --days wants a number of days, at least 1, got {args.days}", file=sys.stderr
        )
        return 2
    try:
        start = date.fromisoformat(args.start) if args.start else datetime.now(UTC).date()
    except ValueError:
        print(f"vapi-router hours: --from wants YYYY-MM-DD, got {args.start!r}", file=sys.stderr)
        return 2
    print(format_hours(schedule, effective_hours(schedule, start, args.days)))
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    from router.tools.calendar import map_html, map_svg, map_text, week_map

    loaded = _load_or_print(Path(args.path))
    if loaded.policy is None:
        return 1
    region = loaded.policy.settings.region
    dialled = phone.normalise(args.dialled, region)
    if dialled is None:
        print(f"vapi-router map: --dialled wants a phone number, got {args.dialled!r}", file=sys.stderr)
        return 2
    caller = None
    if args.caller not in (None, "anonymous"):
        caller = phone.normalise(args.caller, region)
        if caller is None:
            print(f"vapi-router map: --caller wants a phone number, got {args.caller!r}", file=sys.stderr)
            return 2
    if args.days < 1 or args.days > 62:
        print(f"vapi-router map: --days wants 1 to 62 days, got {args.days}", file=sys.stderr)
        return 2
    try:
        start = date.fromisoformat(args.start) if args.start else datetime.now(UTC).date()
    except ValueError:
        print(f"vapi-router map: --from wants YYYY-MM-DD, got {args.start!r}", file=sys.stderr)
        return 2
    anonymous = args.caller == "anonymous"
    m = week_map(loaded.policy, dialled, start, args.days, caller=caller, anonymous=anonymous)
    print({"text": map_text, "html": map_html, "svg": map_svg}[args.format](m))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from router.server.serve import ServeOptions, run  # the server's imports are not needed for lint/test

    if args.workers < 1:
        print("vapi-router serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.header_timeout <= 0 or args.body_timeout <= 0 or args.max_connections < 0:
        print("vapi-router serve: timeouts must be positive, --max-connections at least 0", file=sys.stderr)
        return 2
    return run(
        ServeOptions(
            policy=args.path,
            host=args.host,
            port=args.port,
            workers=args.workers,
            path=args.webhook_path,
            watch=not args.no_watch,
            decision_log=None if args.decision_log in ("none", "off") else args.decision_log,
            capture=args.capture,
            shadow=args.shadow,
            insecure=args.insecure,
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            max_connections=args.max_connections,
        )
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from router.tools.replay import replay, report_json, report_text

    loaded = _load_or_print(Path(args.path))
    if loaded.policy is None:
        return 1
    against = None
    if args.against:
        other = _load_or_print(Path(args.against))
        if other.policy is None:
            return 1
        against = other.policy
    requests = Path(args.requests)
    if not requests.is_file():
        print(f"vapi-router replay: no such file {requests}", file=sys.stderr)
        return 2
    result = replay(loaded.policy, requests, against)
    render = report_json if args.json else report_text
    print(render(result, compared=against is not None))
    return 0


def cmd_crm_import(args: argparse.Namespace) -> int:
    from router.tools.crmimport import import_file

    source, into = Path(args.file), Path(args.into)
    if not source.is_file():
        print(f"vapi-router crm import: no such file {source}", file=sys.stderr)
        return 2
    if args.region is not None and not is_country(args.region):
        print(
            f"vapi-router crm import: --region wants a code such as US, not {args.region!r}", file=sys.stderr
        )
        return 2
    try:
        result = import_file(source, into, region=args.region)
    except ValueError as exc:
        print(f"vapi-router crm import: {exc}", file=sys.stderr)
        return 2
    if result.problems:
        for problem in result.problems:
            print(problem)
        count = len(result.problems)
        print(f"{count} problem{'s' * (count != 1)}; {into} was not changed", file=sys.stderr)
        return 1
    fields = ", ".join(result.fields) or "none"
    print(f"imported {result.rows} customers into {into} (fields: {fields})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(policy_schema(), indent=2))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vapi-router")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vapi-router", description="Route Vapi assistant-requests by YAML policy."
    )
    parser.add_argument("--version", action="version", version=f"vapi-router {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("lint", help="check policies: every problem as FILE:LINE:COL")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--format", choices=("text", "json", "github"), default="text")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument(
        "--vapi-spec", metavar="FILE", help="a newer Vapi OpenAPI document (JSON) to check payloads with"
    )
    p.set_defaults(func=cmd_lint)

    from router.tools.testcli import add_parser as add_test

    add_test(sub)

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

    p = sub.add_parser("hours", help="effective open hours, day by day")
    p.add_argument("path", metavar="PATH")
    p.add_argument("schedule", metavar="SCHEDULE")
    p.add_argument("--from", dest="start", metavar="DATE")
    p.add_argument("--days", type=int, default=7)
    p.set_defaults(func=cmd_hours)

    p = sub.add_parser("map", help="who answers when: a week of 15-minute cells coloured by target")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--dialled", required=True, metavar="N")
    p.add_argument("--from", dest="start", metavar="DATE", help="first day, YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--format", choices=("text", "html", "svg"), default="text")
    p.add_argument("--caller", metavar="N", help="decide for this caller (or 'anonymous')")
    p.set_defaults(func=cmd_map)

    p = sub.add_parser("serve", help="the webhook server")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--path", dest="webhook_path", default="/webhook/vapi", help="webhook path")
    p.add_argument("--no-watch", action="store_true", help="do not reload on file changes")
    p.add_argument(
        "--decision-log", default="-", metavar="FILE|-", help="'-' is stdout (default); 'none' disables"
    )
    p.add_argument("--capture", metavar="FILE", help="record assistant-requests as JSONL for replay")
    p.add_argument("--shadow", metavar="OTHER_PATH", help="evaluate a candidate policy beside the live one")
    p.add_argument("--insecure", action="store_true", help="allow running without webhook auth")
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="close a request head slower than this",
    )
    p.add_argument(
        "--body-timeout", type=float, default=30.0, metavar="S", help="close a request body slower than this"
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=0,
        metavar="N",
        help="open connections at most; past it the longest idle close (default: fd limit - 150)",
    )
    p.add_argument(
        "--vapi-spec", metavar="FILE", help="a newer Vapi OpenAPI document (JSON) to check payloads with"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("replay", help="decisions for captured requests; --against shows what would change")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--requests", required=True, metavar="FILE.jsonl")
    p.add_argument("--against", metavar="OTHER_PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)

    from router.tools.diffcli import add_parser as add_diff

    add_diff(sub)

    from router.tools.fmtcli import add_parser as add_fmt

    add_fmt(sub)

    from router.tools.scaffold import add_parser as add_init

    add_init(sub)

    p = sub.add_parser("crm", help="customer data: `crm import FILE --into DB` builds a SQLite CRM")
    crm = p.add_subparsers(dest="crm_command", required=True)
    p = crm.add_parser("import", help="CSV/JSON/YAML -> SQLite `customers`; every bad row as FILE:LINE:COL")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--into", required=True, metavar="DB", help="the SQLite file, replaced atomically")
    p.add_argument("--region", metavar="CC", help="region of numbers written without +country")
    p.set_defaults(func=cmd_crm_import)

    p = sub.add_parser("schema", help="print the policy JSON Schema")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "vapi_spec") and not _use_vapi_spec(args):
        return 2
    result: int = args.func(args)
    return result


def _use_vapi_spec(args: argparse.Namespace) -> bool:
    """--vapi-spec FILE (or VAPI_ROUTER_VAPI_SPEC): check payloads against that Vapi OpenAPI
    document; the environment carries it to serve's reload child and workers."""
    from router.policy import vapi_spec

    path = args.vapi_spec or os.environ.get(vapi_spec.ENV)
    if not path:
        return True
    try:
        vapi_spec.use_spec(path)
    except vapi_spec.VapiSpecError as exc:
        print(f"vapi-router {args.command}: {exc}", file=sys.stderr)
        return False
    os.environ[vapi_spec.ENV] = str(Path(path).resolve())
    return True


if __name__ == "__main__":
    sys.exit(main())
