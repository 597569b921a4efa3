"""Guard for the lock files: are requirements*.lock compiled from this pyproject.toml?

`make lock` stamps each lock with a fingerprint of what pyproject.toml asks for (the
dependencies, the optional ones and requires-python; not tool settings). Every make target
that installs checks it first, so a changed pyproject.toml with an old lock stops with a
message instead of installing something nobody tested.

    python3 tools/lockcheck.py stamp LOCK...
    python3 tools/lockcheck.py check LOCK...
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

PREFIX = "# pyproject-fingerprint: "


def fingerprint(pyproject: Path) -> str:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    wanted = {
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "requires-python": project.get("requires-python", ""),
    }
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("stamp", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    want = fingerprint(Path("pyproject.toml"))
    stale = []
    for name in argv[1:]:
        lock = Path(name)
        lines = lock.read_text(encoding="utf-8").splitlines() if lock.exists() else []
        kept = [line for line in lines if not line.startswith(PREFIX)]
        if argv[0] == "stamp":
            lock.write_text("\n".join([*kept, PREFIX + want]) + "\n", encoding="utf-8")
        elif PREFIX + want not in lines:
            stale.append(name)
    if stale:
        print(
            f"{', '.join(stale)}: out of date with pyproject.toml (its dependencies changed since "
            "the lock was compiled). Run `make lock`, test, and commit the lock files.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
