"""`vapi-router` command line: one parser; each subcommand's flags and body live beside its stage. [edge]

lint and schema are here; explain, hours/map, test, replay, diff, fmt, init and crm are in
`router.tools.*cli`, serve in `router.server.servecli`. Every subcommand returns its exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from router.errors import PolicyError
from router.policy.loader import lint_path
from router.policy.schema import policy_schema
from router.server import servecli
from router.tools import (
    calendarcli,
    crmcli,
    diffcli,
    explaincli,
    fmtcli,
    replaycli,
    report,
    scaffold,
    testcli,
)
from router.tools.cases import policy_sets
from router.tools.clicommon import add_vapi_spec_flag


def cmd_lint(args: argparse.Namespace) -> int:
    problems: list[PolicyError] = []
    for path in args.paths:
        for policy_set in policy_sets(Path(path)):
            problems.extend(lint_path(policy_set).problems)
    if args.strict:  # warnings fail too: say so where they are printed and counted
        problems = [dataclasses.replace(p, severity="error") for p in problems]
    if args.format == "json":
        print(report.problems_json(problems))
    elif args.format == "github":
        if problems:
            print(report.problems_github(problems))
    elif problems:
        print(report.problems_text(problems))
    return 1 if any(p.severity == "error" for p in problems) else 0


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
    add_vapi_spec_flag(p)
    p.set_defaults(func=cmd_lint)

    testcli.add_parser(sub)
    explaincli.add_parser(sub)
    calendarcli.add_parsers(sub)
    servecli.add_parser(sub)
    replaycli.add_parser(sub)
    diffcli.add_parser(sub)
    fmtcli.add_parser(sub)
    scaffold.add_parser(sub)
    crmcli.add_parser(sub)

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
