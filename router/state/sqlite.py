"""The SQLite state store: one file shared by every worker of one host. [I/O edge]

Each worker talks to the file from one thread of its own (sqlite3 connections stay in
their thread). A reservation runs under `BEGIN IMMEDIATE`, which takes the database's one
write lock before counting, so two workers never both see the last slot free. A locked
file waits at most `timeout_ms` (busy_timeout); the caller bounds every call by the
deadline anyway, so a stuck file gives `state_status: error`, not a late reply.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from router.runtime.statefacts import HISTORY_LIMIT, PastCall, StateFacts
from router.state import sql
from router.state.base import CallRecord, FlagState, flag_is_on

T = TypeVar("T")


class SqliteState:
    def __init__(self, path: str, *, timeout_ms: int = 1000) -> None:
        self.path = path
        self._timeout_ms = timeout_ms
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="router-state")
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=self._timeout_ms / 1000, isolation_level=None)
            try:
                _set_wal(db, self._timeout_ms)
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("BEGIN IMMEDIATE")
                for statement in sql.TABLES:
                    db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def job() -> T:
            db = self._connect()
            try:
                return work(db)
            except sqlite3.Error:
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if _broken(db):  # the file went away, a disk error: reconnect next time
                    db.close()
                    self._db = None
                raise

        return await asyncio.get_running_loop().run_in_executor(self._thread, job)

    async def snapshot(
        self, caller: str | None, call_id: str | None, now: float, history_s: float, pools: Mapping[str, int]
    ) -> StateFacts:
        def work(db: sqlite3.Connection) -> StateFacts:
            history: tuple[PastCall, ...] = ()
            if history_s and caller is not None:
                rows = db.execute(
                    sql.HISTORY, (caller, now - history_s, call_id or "", HISTORY_LIMIT)
                ).fetchall()
                history = tuple(PastCall(*row) for row in rows)
            used = {p: (db.execute(sql.USED, (p, now)).fetchone()[0], m) for p, m in pools.items()}
            flags = {r[0]: FlagState(r[0], bool(r[1]), r[2], r[3], r[4]) for r in db.execute(sql.FLAGS)}
            on = frozenset(n for n, f in flags.items() if flag_is_on(f, now))
            return StateFacts("ok", history, used, on)

        return await self._run(work)

    async def reserve(self, call: CallRecord, pool: str, most: int, held_until: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")  # the write lock first: then count, then insert
            if db.execute("SELECT 1 FROM router_calls WHERE call_id = ?", (call.call_id,)).fetchone():
                db.execute("COMMIT")
                return True  # a repeated request, or its end came first
            if db.execute(sql.USED, (pool, call.at)).fetchone()[0] >= most:
                db.execute("COMMIT")
                return False
            db.execute(
                sql.INSERT, (call.call_id, call.caller, call.at, call.route, call.target, pool, held_until)
            )
            db.execute("COMMIT")
            return True

        return await self._run(work)

    async def record(self, call: CallRecord) -> None:
        row = (call.call_id, call.caller, call.at, call.route, call.target, None, 0.0)
        await self._run(lambda db: db.execute(sql.INSERT, row))

    async def end(self, call_id: str, now: float, ended_reason: str | None, kind: str) -> str | None:
        def work(db: sqlite3.Connection) -> str | None:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(sql.END, (now, ended_reason, now, kind, call_id)).fetchone()
            if row is None:
                db.execute(sql.END_FIRST, (call_id, now, now, ended_reason))
            db.execute("COMMIT")
            return row[0] if row is not None and row[1] == kind else None

        return await self._run(work)

    async def expire(self, now: float, keep_s: float) -> list[str]:
        def work(db: sqlite3.Connection) -> list[str]:
            db.execute("BEGIN IMMEDIATE")
            pools = [r[0] for r in db.execute(sql.EXPIRE, (now,)).fetchall()]
            db.execute(sql.FORGET, (now - keep_s,))
            db.execute("COMMIT")
            return pools

        return await self._run(work)

    async def usage(self, now: float, pools: Mapping[str, int]) -> dict[str, int]:
        return await self._run(
            lambda db: {p: int(db.execute(sql.USED, (p, now)).fetchone()[0]) for p in pools}
        )

    async def set_flag(self, flag: FlagState) -> None:
        row = (flag.name, flag.on, flag.until, flag.reason, flag.changed_at)
        await self._run(lambda db: db.execute(sql.FLAG, row))

    async def flags(self) -> dict[str, FlagState]:
        rows = await self._run(lambda db: db.execute(sql.FLAGS).fetchall())
        return {r[0]: FlagState(r[0], bool(r[1]), r[2], r[3], r[4]) for r in rows}

    async def aclose(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=False)


def _broken(db: sqlite3.Connection) -> bool:
    """Whether the connection is unusable (the file went away, a disk error): reconnect."""
    try:
        db.execute("SELECT 1").fetchone()
    except sqlite3.Error:
        return True
    return False


def _set_wal(db: sqlite3.Connection, timeout_ms: int) -> None:
    """Switch the file to WAL (state stage, on first open), retrying while another process holds it.

    Changing the journal mode needs an exclusive lock and SQLite does not always run the
    busy handler for it, so a second process opening the file at the same moment gets an
    immediate "database is locked"; retry within the same bound as every other call.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
