"""Shared fixtures: the system components some tests need (installed by `make system-deps`),
skipped with one loud line each when they cannot be had."""

from __future__ import annotations

import glob
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pgserver import PgServer

# component -> (how to find it, what installs it)
COMPONENTS: dict[str, tuple[str, str]] = {
    "postgresql": ("/usr/lib/postgresql/*/bin/postgres", "Debian's postgresql"),
    "chromium": ("/usr/bin/chromium", "Debian's chromium and chromium-driver"),
}


def find_component(name: str) -> Path | None:
    """The component's main binary, or None (a PATH lookup is the last resort)."""
    pattern, _ = COMPONENTS[name]
    found = sorted(glob.glob(pattern))
    if found:
        return Path(found[-1])
    on_path = shutil.which(Path(pattern).name)
    return Path(on_path) if on_path else None


def require_component(name: str) -> Path:
    """The binary, or a skip the loud summary line counts (pytest_terminal_summary)."""
    path = find_component(name)
    if path is None:
        pytest.skip(f"{name} is not installed: `make system-deps` installs {COMPONENTS[name][1]}")
    return path


@pytest.fixture(scope="session")
def postgres_bin() -> Path:
    """PostgreSQL's `postgres` binary (its folder also holds initdb and pg_ctl)."""
    return require_component("postgresql")


@pytest.fixture(scope="session")
def chromium_bin() -> Path:
    return require_component("chromium")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # counted from the skip reports, not _MISSING: under pytest-xdist (`make test`) the skips
    # happen in the worker processes, and only their reports reach this one
    missing: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        for name in COMPONENTS:
            if reason.startswith(f"Skipped: {name} is not installed") or reason.startswith(
                f"{name} is not installed"
            ):
                missing[name] = missing.get(name, 0) + 1
    for name, count in sorted(missing.items()):
        terminalreporter.write_line(
            f"!!! {count} test(s) SKIPPED: {name} is not installed; run `make system-deps` "
            f"(as root on Debian/Ubuntu) to install {COMPONENTS[name][1]}",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def postgres_template(postgres_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An initdb'd cluster, run once per session; each server starts on a copy of it."""
    from pgserver import init_cluster

    directory = Path(tempfile.mkdtemp(prefix="vapi-router-pg-template-"))
    try:
        yield init_cluster(postgres_bin.parent, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(postgres_bin: Path, postgres_template: Path) -> Iterator[PgServer]:
    """A real PostgreSQL server on a free loopback port for the session; stopped at the end."""
    from pgserver import PgServer

    server = PgServer(postgres_bin.parent, postgres_template)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def own_postgres(postgres_bin: Path, postgres_template: Path) -> Iterator[PgServer]:
    """A server of the test's own, for tests that kill it."""
    from pgserver import PgServer

    server = PgServer(postgres_bin.parent, postgres_template)
    try:
        server.start()
        yield server
    finally:
        server.close()
