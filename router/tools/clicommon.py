"""What every policy-reading subcommand shares: load a policy set or print its problems. [edge]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from router.policy.loader import lint_path
from router.runtime.model import Policy
from router.tools import report


def load_or_print(path: str | Path) -> Policy | None:
    """The compiled policy at `path`, or None after printing its problems as FILE:LINE:COL on stderr."""
    loaded = lint_path(Path(path))
    if loaded.policy is None:
        print(report.problems_text(loaded.problems), file=sys.stderr)
    return loaded.policy


def add_vapi_spec_flag(parser: argparse.ArgumentParser) -> None:
    """--vapi-spec FILE, read by the command line before any subcommand runs (router.cli)."""
    parser.add_argument(
        "--vapi-spec", metavar="FILE", help="a newer Vapi OpenAPI document (JSON) to check payloads with"
    )
