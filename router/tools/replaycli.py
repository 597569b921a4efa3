"""`vapi-router replay PATH --requests FILE.jsonl [--against OTHER] [--json]`. [edge]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from router.tools.clicommon import load_or_print


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("replay", help="decisions for captured requests; --against shows what would change")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--requests", required=True, metavar="FILE.jsonl")
    p.add_argument("--against", metavar="OTHER_PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from router.tools.replay import assumed_warning, replay, report_json, report_text

    policy = load_or_print(args.path)
    if policy is None:
        return 1
    against = None
    if args.against:
        against = load_or_print(args.against)
        if against is None:
            return 1
    requests = Path(args.requests)
    if not requests.is_file():
        print(f"vapi-router replay: no such file {requests}", file=sys.stderr)
        return 2
    result = replay(policy, requests, against)
    render = report_json if args.json else report_text
    print(render(result, compared=against is not None))
    if (warning := assumed_warning(result)) is not None:
        print(warning, file=sys.stderr)
    return 0
