"""The SQLite CRM (I/O edge): a `customers` table keyed by E.164 number, read-only, per thread.

A lookup is one indexed read (~3-5 µs) answered inline, so the server never waits on a task
for it. `vapi-router crm import` replaces the file atomically (rename); the new file is
seen within `check_interval_s`, without a policy reload.

Reading a rollback-journal database outside a transaction locks and unlocks the file and
checks it for a hot journal and a change on every statement: seven system calls, about
2 µs of a 5 µs lookup. On an event loop, the lookups of one turn of the loop share one read
transaction instead: the first is read on its own, the second begins the transaction, and
a callback at the end of the turn (`call_soon`) ends it. Every lookup still reads a
committed state of the file, as new as the turn it is answered in, and a writer of the
file in place waits at most one turn of the loop for the shared lock. A file locked by such
a writer is never waited for (the busy timeout is 0): the lookup is an `error` at once,
rather than the loop stalled for the default busy timeout of 5 s.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from router.policy.crmcolumns import TABLE, field_columns, open_readonly
from router.runtime.facts import scalar_text
from router.runtime.records import NOT_FOUND, CrmRecord

CHECK_INTERVAL_S = 1.0  # how often a lookup may stat the file to see an atomic replace
_LOOKUP = f"SELECT * FROM {TABLE} WHERE number = ?"


class _Handle:
    """One thread's connection, the file identity it was opened on, and its turn of the loop."""

    __slots__ = ("checked", "columns", "con", "cursor", "fields", "identity", "tags_at", "turn")

    def __init__(self, con: sqlite3.Connection, identity: tuple[int, int, int], now: float) -> None:
        self.con = con
        self.identity = identity
        self.checked = now
        cursor = con.execute(f"SELECT * FROM {TABLE} LIMIT 0")
        self.columns = [d[0] for d in cursor.description]
        self.tags_at = self.columns.index("tags") if "tags" in self.columns else -1
        self.fields = [(i, c) for i, c in enumerate(self.columns) if c not in ("number", "tags")]
        self.cursor = con.cursor()  # one per connection, used by one thread: no cursor per lookup
        # the loop whose current turn answered a lookup here; end_turn clears it
        self.turn: asyncio.AbstractEventLoop | None = None

    def read(self, number: str) -> tuple[object, ...] | None:
        """The row of `number`; see the module docstring for the read transaction of a turn."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # no loop (the CLI): each lookup reads on its own
            loop = None
        if loop is not None and self.turn is loop:
            if not self.con.in_transaction:
                self.con.execute("BEGIN")
        else:
            if self.turn is not None:  # a loop stopped before its turn's end ran: end it now
                self.end_turn()
            if loop is not None:
                self.turn = loop
                loop.call_soon(self.end_turn)
        row: tuple[object, ...] | None = self.cursor.execute(_LOOKUP, (number,)).fetchone()
        return row

    def end_turn(self) -> None:
        self.turn = None
        try:
            if self.con.in_transaction:
                self.con.execute("COMMIT")  # a read transaction: releases the shared lock
        except sqlite3.Error:  # closed meanwhile (the file was replaced): nothing is held
            pass


def _identity(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


class SqliteCrm:
    """Lookups in an SQLite `customers` table; one read-only connection per thread."""

    def __init__(
        self,
        path: Path,
        *,
        check_interval_s: float = CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.columns = field_columns(path)  # raises CrmFileError: the policy cannot be served
        self._interval = check_interval_s
        self._clock = clock
        self._local = threading.local()
        self._handles: list[_Handle] = []  # every thread's, to close them all
        self._lock = threading.Lock()
        self._handle()  # open now: a start-up problem shows at start-up, not on the first call

    def _open(self) -> _Handle:
        identity = _identity(self.path)
        con = open_readonly(self.path)
        con.execute("PRAGMA busy_timeout = 0")  # a locked file is an error now, not a stalled loop
        handle = _Handle(con, identity, self._clock())
        with self._lock:
            self._handles.append(handle)
        return handle

    def _handle(self) -> _Handle:
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._local.handle = self._open()
            return handle
        now = self._clock()
        if now - handle.checked >= self._interval:
            handle.checked = now
            try:
                replaced = _identity(self.path) != handle.identity
            except OSError:  # gone for a moment (mid-deploy): keep serving the open file
                replaced = False
            if replaced:
                try:
                    fresh = self._open()
                except (OSError, sqlite3.Error):
                    return handle  # not a usable database (yet): keep the one we have
                self._drop(handle)
                handle = self._local.handle = fresh
        return handle

    def _drop(self, handle: _Handle) -> None:
        with self._lock:
            if handle in self._handles:
                self._handles.remove(handle)
        handle.con.close()

    def get(self, number: str) -> CrmRecord:
        """The record for an E.164 number: ok, not_found, or error (never raises)."""
        start = time.perf_counter()
        try:
            handle = self._handle()
            row = handle.read(number)
        except (OSError, sqlite3.Error) as exc:
            return CrmRecord("error", reason=f"SQLite: {type(exc).__name__}", ms=_ms(start))
        if row is None:
            return NOT_FOUND
        tags: frozenset[str] = frozenset()
        if handle.tags_at >= 0 and isinstance(value := row[handle.tags_at], str) and value:
            tags = frozenset(t for t in (p.strip() for p in value.split(";")) if t)
        fields: dict[str, str] = {}
        for i, name in handle.fields:
            value = row[i]
            if value.__class__ is str:  # what `crm import` writes: the common case, first
                if value:
                    fields[name] = value
            elif value is not None and (text := scalar_text(value)):
                fields[name] = text
        return CrmRecord("ok", tags, fields, _ms(start))

    cached = get  # always at hand: one indexed read, answered inline

    async def lookup(self, number: str) -> CrmRecord:
        return self.get(number)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.con.close()
        self._local = threading.local()


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000
