"""`vapi-router diff OLD NEW [--from DATE] [--days N] [--json]`: arguments in, exit code out. [edge]

Exit 0: the sets answer every call of the window alike; 1: they differ somewhere; 2: usage,
or a set that does not load (its problems on stderr).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime

from router.tools.clicommon import load_or_print
from router.tools.diff import diff_policies
from router.tools.diffreport import diff_json, diff_text

MAX_DAYS = 366


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "diff", help="what a policy change does to every call: regions that answer differently"
    )
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.add_argument("--from", dest="start", metavar="DATE", help="first day, YYYY-MM-DD (default: today)")
    p.add_argument("--days", type=int, default=7, help="days to compare (default 7)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diff)


def cmd_diff(args: argparse.Namespace) -> int:
    if not 1 <= args.days <= MAX_DAYS:
        print(f"vapi-router diff: --days wants 1 to {MAX_DAYS} days, got {args.days}", file=sys.stderr)
        return 2
    try:
        start = date.fromisoformat(args.start) if args.start else datetime.now(UTC).date()
    except ValueError:
        print(f"vapi-router diff: --from wants YYYY-MM-DD, got {args.start!r}", file=sys.stderr)
        return 2
    old, new = load_or_print(args.old), load_or_print(args.new)
    if old is None or new is None:
        return 2
    result = diff_policies(old, new, start, args.days)
    print(diff_json(result, args.old, args.new) if args.json else diff_text(result, args.old, args.new))
    return 1 if result.differences else 0
