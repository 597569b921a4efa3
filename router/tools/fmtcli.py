"""`vapi-router fmt [--check] PATH…`: the canonical layout (router.tools.fmt), in place. [edge]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from router.tools.fmt import fmt_paths


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fmt", help="rewrite policy and case files in the canonical layout, comments kept")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, or directories of *.yaml files")
    p.add_argument("--check", action="store_true", help="change nothing; list the files that would change")
    p.set_defaults(func=cmd_fmt)


def cmd_fmt(args: argparse.Namespace) -> int:
    """Without --check: rewrite, exit 0 (1 if a file could not be formatted). With --check: list
    the files that would change, exit 1 if any would."""
    result = fmt_paths([Path(p) for p in args.paths], check=args.check)
    for problem in result.problems:
        print(problem, file=sys.stderr)
    for path in result.changed:
        print(f"would reformat {path}" if args.check else f"reformatted {path}")
    if args.check and result.changed:
        print(
            f"{len(result.changed)} file(s) would be reformatted; run `vapi-router fmt` on them",
            file=sys.stderr,
        )
    return 1 if result.problems or (args.check and result.changed) else 0
