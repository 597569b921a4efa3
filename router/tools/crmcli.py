"""`vapi-router crm import FILE --into DB [--region CC]`: build a SQLite CRM. [edge]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from router.runtime.phone import is_country


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("crm", help="customer data: `crm import FILE --into DB` builds a SQLite CRM")
    crm = p.add_subparsers(dest="crm_command", required=True)
    p = crm.add_parser("import", help="CSV/JSON/YAML -> SQLite `customers`; every bad row as FILE:LINE:COL")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--into", required=True, metavar="DB", help="the SQLite file, replaced atomically")
    p.add_argument("--region", metavar="CC", help="region of numbers written without +country")
    p.set_defaults(func=cmd_crm_import)


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
    customers = "1 customer" if result.rows == 1 else f"{result.rows} customers"
    print(f"imported {customers} into {into} (fields: {fields})")
    return 0
