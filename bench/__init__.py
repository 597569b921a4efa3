"""`make bench` (python -m bench [SECTION…]): the performance targets of DESIGN §7, measured.

Each section is a function returning Rows; `bench.__main__` runs the sections in order and
prints one markdown table. A section adds itself by appending to `bench.__main__.SECTIONS`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Row", "clean_env", "log", "percentile", "render_table", "stop_process"]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table. `met` is None for figures that have no target."""

    section: str
    case: str
    metric: str
    result: str
    target: str = ""
    met: bool | None = None


HEADER = ("section", "case", "metric", "result", "target", "met")


def render_table(rows: Sequence[Row]) -> str:
    """A markdown table, columns padded so it also reads well in a terminal."""
    cells = [HEADER] + [
        (r.section, r.case, r.metric, r.result, r.target, {True: "yes", False: "NO", None: ""}[r.met])
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep, *(line(c) for c in cells[1:])])


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation, as numpy's default."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(message, file=sys.stderr, flush=True)


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment for a server subprocess, without the router's own settings
    (VAPI_*, ROUTER_*, PROMETHEUS_*), which `extra` then gives."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("VAPI_", "ROUTER_", "PROMETHEUS_"))}
    return keep | dict(extra)


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace_s`; nothing if it has exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
