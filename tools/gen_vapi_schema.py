"""Derive router/policy/vapi.schema.json: the subset of Vapi's schemas `lint` checks inline targets with.

Dev-time only (the router reads the generated file, never ../shared):
    python tools/gen_vapi_schema.py [SPEC_DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "router" / "policy" / "vapi.schema.json"
DEFAULT_SPEC = ROOT.parent / "shared" / "vapi" / "spec"
sys.path.insert(0, str(ROOT))

from router.policy.vapi_derive import derive as derive_components  # noqa: E402


def derive(spec_dir: Path) -> dict[str, Any]:
    """The whole schema document, from the router-closure bundle in spec_dir."""
    bundle = json.loads((spec_dir / "bundles" / "router-closure.bundle.json").read_text())
    source = bundle["$comment"].split(" from ", 1)[1].split(".", 1)[0] + ".json"
    try:
        return derive_components(bundle["components"]["schemas"], source)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec_dir", nargs="?", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is stale")
    args = parser.parse_args(argv)
    text = render(derive(args.spec_dir))
    if args.check:
        stale = not OUT.exists() or OUT.read_text() != text
        print(f"{OUT} is {'stale' if stale else 'up to date'}")
        return int(stale)
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
