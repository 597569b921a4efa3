"""`vapi-router test`: lint each set, run its cases, report; `-k`, `-v`, `--coverage`,
`--fail-under`. [edge]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from router.policy.loader import lint_path
from router.tools import report
from router.tools.cases import CaseResult, case_files, policy_path_for, policy_sets, run_file
from router.tools.coverage import Coverage, coverage


def add_parser(sub: Any) -> None:
    p = sub.add_parser("test", help="run the *.test.yaml cases")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--format", choices=("text", "json", "junit"), default="text")
    p.add_argument("-k", dest="pattern", metavar="PATTERN", help="only the cases whose name contains PATTERN")
    p.add_argument("-v", "--verbose", action="store_true", help="list every case, passed ones too")
    p.add_argument(
        "--coverage",
        action="store_true",
        help="count the routes, transfer and handoff routes, default and split arms the cases reach",
    )
    p.add_argument(
        "--fail-under", type=float, metavar="PCT", help="exit 1 when coverage is below PCT percent"
    )
    p.add_argument(
        "--vapi-spec", metavar="FILE", help="a newer Vapi OpenAPI document (JSON) to check payloads with"
    )
    p.set_defaults(func=cmd_test)


def _merge(parts: list[tuple[str, Coverage]]) -> Coverage:
    """One Coverage over several sets; items name their set when there is more than one."""
    if len(parts) == 1:
        return parts[0][1]
    total = tuple(f"{name}: {item}" for name, c in parts for item in c.total)
    missed = tuple(f"{name}: {item}" for name, c in parts for item in c.missed)
    return Coverage(total, missed)


def cmd_test(args: argparse.Namespace) -> int:
    if args.fail_under is not None and not 0 <= args.fail_under <= 100:
        print(f"vapi-router test: --fail-under wants 0 to 100, got {args.fail_under:g}", file=sys.stderr)
        return 2
    results: list[CaseResult] = []
    covered: list[tuple[str, Coverage]] = []
    failed_to_load = False
    for path in args.paths:
        for policy_set in policy_sets(Path(path)):
            files = case_files(policy_set)
            loaded = lint_path(policy_path_for(files[0]) if files and not policy_set.is_dir() else policy_set)
            if loaded.policy is None:
                print(report.problems_text(loaded.problems), file=sys.stderr)
                failed_to_load = True
                continue
            if not files:
                continue  # linted all the same: a set without cases still fails on errors
            policy_results: list[CaseResult] = []
            for f in files:
                rs, problems = run_file(loaded.policy, f, pattern=args.pattern)
                if problems:
                    print(report.problems_text(problems), file=sys.stderr)
                    failed_to_load = True
                policy_results.extend(rs)
            results.extend(policy_results)
            covered.append((str(policy_set), coverage(loaded.policy, (r.reached for r in policy_results))))
    if not results and not failed_to_load:
        where = ", ".join(args.paths)
        if args.pattern is not None:
            print(f"vapi-router test: no test case in {where} matches -k {args.pattern!r}", file=sys.stderr)
        else:
            print(f"vapi-router test: no test cases found in {where}", file=sys.stderr)
        return 1
    cov = _merge(covered) if covered and (args.coverage or args.fail_under is not None) else None
    if args.format == "json":
        print(report.cases_json(results, cov))
    elif args.format == "junit":
        print(report.cases_junit(results))
    else:
        print(report.cases_text(results, cov, verbose=args.verbose))
    under = cov is not None and args.fail_under is not None and cov.percent < args.fail_under
    if under and cov is not None:
        print(
            f"vapi-router test: coverage {cov.percent:.1f}% is under --fail-under {args.fail_under:g}%",
            file=sys.stderr,
        )
    return 1 if failed_to_load or under or any(not r.ok for r in results) else 0
