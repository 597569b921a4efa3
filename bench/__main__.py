"""python -m bench [SECTION…]: run the named sections (default: all, in order), print one table.

Exit status 1 when a figure misses its target, 2 for an unknown section.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from bench import Row, log, render_table
from bench.crm import run as crm
from bench.deadline import run as deadline
from bench.decision import run as decision
from bench.forward import run as forward
from bench.http import run as http
from bench.instructions import run as instructions
from bench.reload import run as reload
from bench.state import run as state

# Sections in the order they run; each returns its rows. Later sections (HTTP, reload) go here.
SECTIONS: dict[str, Callable[[], list[Row]]] = {
    "decision": decision,
    "reload": reload,
    "http": http,
    "instructions": instructions,
    "deadline": deadline,
    "crm": crm,
    "state": state,
    "forward": forward,
}


def main(argv: Sequence[str]) -> int:
    names = list(argv) or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    rows: list[Row] = []
    for name in names:
        log(f"== {name}")
        rows.extend(SECTIONS[name]())
    print(render_table(rows))
    return 1 if any(r.met is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
