"""A real PostgreSQL server for tests: initdb into a temporary directory, `postgres` on a free
loopback port, stopped (or killed, for fault tests) by the test. No mock of the database.

Run as root, postgres refuses to start: the server then runs as `nobody`, with its
directories handed to that user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.http import free_port

START_S = 30.0


def _owner() -> tuple[int, int] | None:
    """(uid, gid) to run postgres as when we are root; None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam("nobody")
    return user.pw_uid, user.pw_gid


def _chown_tree(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, *owner)
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), *owner)


def init_cluster(bin_dir: Path, directory: Path) -> Path:
    """initdb into `directory`/data (trust auth, user postgres); the data directory."""
    owner = _owner()
    directory.mkdir(parents=True, exist_ok=True)
    _chown_tree(directory, owner)
    data = directory / "data"
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
         "--locale=C", "--no-sync"],
        check=True,
        capture_output=True,
        user=owner[0] if owner else None,
        group=owner[1] if owner else None,
        cwd=directory,
    )  # fmt: skip
    return data


class PgServer:
    """One postgres process over a copy of a template cluster; `dsn` once started."""

    def __init__(self, bin_dir: Path, template: Path) -> None:
        self.bin_dir = bin_dir
        self.owner = _owner()
        self.directory = Path(tempfile.mkdtemp(prefix="vapi-router-pg-"))
        self.data = self.directory / "data"
        shutil.copytree(template, self.data)
        self.sockets = self.directory / "sockets"
        self.sockets.mkdir()
        os.chmod(self.data, 0o700)
        _chown_tree(self.directory, self.owner)
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.directory / "postgres.log"

    def start(self) -> None:
        deadline = time.monotonic() + START_S
        while True:
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [str(self.bin_dir / "postgres"), "-D", str(self.data), "-k", str(self.sockets),
                     "-p", str(self.port), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                     "-c", "max_connections=60", "-c", "shared_buffers=16MB"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    user=self.owner[0] if self.owner else None,
                    group=self.owner[1] if self.owner else None,
                    cwd=self.directory,
                    start_new_session=True,  # its own group: kill() takes the backends too
                )  # fmt: skip
            if self._wait_ready(deadline):
                return
            # A killed predecessor's backends may still hold its shared memory for a moment.
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start:\n{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)

    def _wait_ready(self, deadline: float) -> bool:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(Exception):
                asyncio.run(self.execute("SELECT 1"))
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends: the database vanishes mid-run, as on a
        crashed host."""
        assert self.proc is not None
        # Each backend calls setsid() (InitPostmasterChild), so the postmaster's group does not
        # hold them: they are found by parent and killed with it, or one could still answer a
        # query on its open connection for a moment after the postmaster is gone.
        backends = _children_of(self.proc.pid)
        os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in backends:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(pid) for pid in backends):
            time.sleep(0.01)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    async def execute(self, *statements: str) -> None:
        connection = await asyncpg.connect(self.dsn, timeout=5)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        connection = await asyncpg.connect(self.dsn, timeout=5)
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    def run(self, *statements: str) -> None:
        asyncio.run(self.execute(*statements))


def _children_of(parent: int) -> list[int]:
    """The pids whose parent is `parent` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
