"""`vapi-router hours` and `vapi-router map`: a schedule's open hours, who answers when. [edge]"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime

from router.runtime import phone
from router.runtime.schedules import effective_hours, format_hours
from router.tools.clicommon import load_or_print


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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


def _start(command: str, start: str | None) -> date | None:
    """--from as a date (default today, UTC), or None after printing the usage error."""
    try:
        return date.fromisoformat(start) if start else datetime.now(UTC).date()
    except ValueError:
        print(f"vapi-router {command}: --from wants YYYY-MM-DD, got {start!r}", file=sys.stderr)
        return None


def cmd_hours(args: argparse.Namespace) -> int:
    policy = load_or_print(args.path)
    if policy is None:
        return 1
    schedule = policy.schedules.get(args.schedule)
    if schedule is None:
        names = ", ".join(sorted(policy.schedules)) or "none"
        print(f'vapi-router hours: no schedule "{args.schedule}" (schedules: {names})', file=sys.stderr)
        return 2
    if args.days < 1:
        print(
            f"vapi-router hours: --days wants a number of days, at least 1, got {args.days}", file=sys.stderr
        )
        return 2
    start = _start("hours", args.start)
    if start is None:
        return 2
    print(format_hours(schedule, effective_hours(schedule, start, args.days)))
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    from router.tools.calendar import map_html, map_svg, map_text, week_map

    policy = load_or_print(args.path)
    if policy is None:
        return 1
    region = policy.settings.region
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
    start = _start("map", args.start)
    if start is None:
        return 2
    anonymous = args.caller == "anonymous"
    m = week_map(policy, dialled, start, args.days, caller=caller, anonymous=anonymous)
    print({"text": map_text, "html": map_html, "svg": map_svg}[args.format](m))
    return 0
