"""`make bench` (python -m bench [SECTION…]): the performance targets of DESIGN §7, measured.

Each section is a function returning Rows; `bench.__main__` runs the sections in order and
prints one markdown table. A section adds itself by appending to `bench.__main__.SECTIONS`.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Row", "log", "percentile", "render_table"]


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
