"""`crm import`'s writer: the SQLite `customers` table built beside the target and renamed over
it, so a running server sees either the old file or the new one, whole. [write]"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from router.policy.crmcolumns import TABLE


def quote_name(name: str) -> str:
    """An SQL identifier, quoted (column names come from a spreadsheet's header)."""
    return '"' + name.replace('"', '""') + '"'


def write_database(
    into: Path, fields: list[str], records: list[tuple[str, str | None, dict[str, str]]]
) -> None:
    """Write the table to a temporary file beside `into`, then rename it over `into`."""
    tmp = into.with_name(f".{into.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA synchronous = OFF")
            columns = ", ".join(f"{quote_name(f)} TEXT" for f in fields)
            con.execute(
                f"CREATE TABLE {TABLE} (number TEXT PRIMARY KEY NOT NULL, tags TEXT"
                f"{', ' + columns if columns else ''}) WITHOUT ROWID"
            )
            marks = ", ".join("?" * (len(fields) + 2))
            sql = f"INSERT INTO {TABLE} VALUES ({marks})"
            con.execute("BEGIN")
            con.executemany(sql, ((n, t, *(f.get(c) for c in fields)) for n, t, f in records))
            con.execute("COMMIT")
            con.execute("PRAGMA journal_mode = DELETE")  # a read-only reader needs no -wal/-shm
        finally:
            con.close()
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, into)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        fd = os.open(into.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
