"""The package layout shows the pipeline: stages import only earlier stages, no import circle,
small modules. Walks every import (function-level and TYPE_CHECKING ones too) with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "router"

# Earlier stages never import later ones; a module may import its own stage (without a circle).
STAGES = (
    ("router.errors",),
    ("router.runtime",),
    ("router.policy",),
    ("router.crm",),
    ("router.state",),
    ("router.tools",),
    ("router.server",),
    ("router.cli", "router.demo", "router.__main__", "router"),
)
MAX_LINES = 300
# module -> why it may be longer than MAX_LINES. Keep this short: each entry is a debt, and
# the test fails once a module is split below the limit, so the list cannot go stale.
LONG_MODULES: dict[str, str] = {
    "router.server.fasthttp": "one protocol class (uvicorn's callbacks it overrides); held replies are apart",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _stage(module: str) -> int:
    best = (-1, -1)  # (prefix length, stage)
    for i, names in enumerate(STAGES):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best[0]:
                best = (len(name), i)
    assert best[1] >= 0, f"{module} belongs to no stage: add it to STAGES"
    return best[1]


def _resolve(name: str) -> str | None:
    """The router module an import names (a `from pkg import module` names the module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            target = _resolve(name) if name.startswith("router") else None
            if target is not None and target != module and not (name == "router" and module != "router"):
                out.add(target)
    # `from router.x import y` also names the package router.x's parents; only the deepest counts
    return {m for m in out if not any(o != m and o.startswith(m + ".") for o in out) or m in MODULES}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_stage() -> None:
    for module in MODULES:
        _stage(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_from_a_later_stage(module: str) -> None:
    later = sorted(t for t in GRAPH[module] if _stage(t) > _stage(module))
    assert not later, f"{module} (stage {_stage(module)}) imports later stages: {later}"


def test_no_import_circle() -> None:
    # a package's __init__ importing its own modules is not a circle through the package
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                circles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    if module in LONG_MODULES:
        assert lines > MAX_LINES, f"{module} is {lines} lines now: drop it from LONG_MODULES"
        return
    assert lines <= MAX_LINES, f"{module} is {lines} lines (limit {MAX_LINES}): split it"


def test_pure_stages_do_no_io() -> None:
    """runtime and policy import no server framework, network client or event loop."""
    banned = ("starlette", "uvicorn", "httpx", "asyncio", "socket", "prometheus_client")
    for module, path in MODULES.items():
        if _stage(module) > 2:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                bad = [n for n in names if n.split(".")[0] in banned]
                assert not bad, f"{module} imports {bad}"
