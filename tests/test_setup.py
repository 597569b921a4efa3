"""The reproducible set-up (DESIGN §8): the locks match pyproject.toml, pin every dependency
with hashes, a stale lock is refused, and the system components tests need are found."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import postgres_bin  # noqa: F401 - the fixture, used by name below
from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ("requirements.lock", "requirements-dev.lock")
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)(?: ;([^\\\n]*))? \\$", re.M)  # NAME==V [; marker] \


def locked(name: str, *, here: bool = False) -> dict[str, str]:
    """name -> version pinned in a lock (only those whose marker holds here, with `here`)."""
    return {
        _canonical(m.group(1)): m.group(2)
        for m in PIN.finditer((ROOT / name).read_text())
        if not (here and m.group(3) and not Marker(m.group(3)).evaluate())
    }


def _canonical(name: str) -> str:
    """A package name as PEP 503 compares them (ruamel.yaml is locked as ruamel-yaml)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {_canonical(re.split(r"[\[<>=~!; ]", r, maxsplit=1)[0]) for r in requirements}


def test_every_dependency_is_pinned_with_hashes_in_the_locks() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = requirement_names(project["dependencies"])
    dev = requirement_names(project["optional-dependencies"]["dev"])
    assert runtime <= set(locked("requirements.lock"))
    assert runtime | dev <= set(locked("requirements-dev.lock"))
    for name in LOCKS:
        text = (ROOT / name).read_text()
        pins = PIN.findall(text)
        assert pins and len(pins) == len(re.findall(r"^[A-Za-z0-9]", text, re.M))  # every line a pin
        for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
            if "==" in block:
                assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_locks_are_stamped_for_this_pyproject() -> None:
    result = subprocess.run(
        [sys.executable, "tools/lockcheck.py", "check", *LOCKS], cwd=ROOT, capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("edit", "stale"),
    [
        pytest.param(lambda t: t.replace('"pyyaml>=6.0"', '"pyyaml>=6.1"'), True, id="a-dependency-changed"),
        pytest.param(lambda t: t.replace('dev = ["pytest>=8"', 'dev = ["pytest>=9"'), True, id="a-dev-dep"),
        pytest.param(
            lambda t: t.replace("line-length = 110", "line-length = 100"), False, id="tool-settings"
        ),
    ],
)
def test_a_stale_lock_stops_the_install_with_a_message(tmp_path: Path, edit: object, stale: bool) -> None:
    text = (ROOT / "pyproject.toml").read_text()
    changed = edit(text)  # type: ignore[operator]
    assert changed != text
    (tmp_path / "pyproject.toml").write_text(changed)
    for name in LOCKS:
        shutil.copy(ROOT / name, tmp_path / name)
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools/lockcheck.py"), "check", *LOCKS],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    if stale:
        assert result.returncode == 1
        assert result.stderr == (
            "requirements.lock, requirements-dev.lock: out of date with pyproject.toml (its dependencies "
            "changed since the lock was compiled). Run `make lock`, test, and commit the lock files.\n"
        )
    else:
        assert (result.returncode, result.stderr) == (0, "")


def test_make_installs_from_the_locks_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes --no-deps -r requirements-dev.lock" in makefile
    assert "lockcheck.py check" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != ROOT / ".venv",
    reason="not the locked .venv (make test-latest runs the newest versions on purpose)",
)
def test_the_venv_runs_the_locked_versions() -> None:
    from importlib.metadata import version

    for name, pinned in locked("requirements-dev.lock", here=True).items():
        assert version(name) == pinned, name


def test_postgresql_from_system_deps_runs(postgres_bin: Path) -> None:  # noqa: F811
    out = subprocess.run([str(postgres_bin), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("postgres (PostgreSQL) ")
