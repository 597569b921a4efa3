"""The SQL both database stores run (SQLite `?` and PostgreSQL `$n` placeholders are
written out per store; the statements are the same). [data]

A call holds a slot of `pool` while `released IS NULL AND held_until > now`: expiry needs
no sweeper to be safe (the sweeper only records it). `end` sets `ended_at` once; the slot
is released in the same statement, so a duplicate or late end message releases nothing.
"""

from __future__ import annotations

TABLES = (
    """CREATE TABLE IF NOT EXISTS router_calls (
        call_id TEXT PRIMARY KEY,
        caller TEXT,
        at DOUBLE PRECISION NOT NULL,
        route TEXT,
        target TEXT,
        pool TEXT,
        held_until DOUBLE PRECISION NOT NULL DEFAULT 0,
        ended_at DOUBLE PRECISION,
        ended_reason TEXT,
        released TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS router_calls_caller ON router_calls (caller, at)",
    "CREATE INDEX IF NOT EXISTS router_calls_held ON router_calls (pool, held_until) WHERE released IS NULL",
    "CREATE INDEX IF NOT EXISTS router_calls_at ON router_calls (at)",
    """CREATE TABLE IF NOT EXISTS router_flags (
        name TEXT PRIMARY KEY,
        is_on BOOLEAN NOT NULL,
        until DOUBLE PRECISION,
        reason TEXT NOT NULL,
        changed_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS router_pools (name TEXT PRIMARY KEY)",
)


def numbered(sql: str) -> str:
    """`?` placeholders -> PostgreSQL's `$1`, `$2`, … in order."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))


HISTORY = (
    "SELECT at, route, target, ended_reason FROM router_calls"
    " WHERE caller = ? AND at >= ? AND call_id <> ? ORDER BY at DESC LIMIT ?"
)
USED = "SELECT count(*) FROM router_calls WHERE pool = ? AND released IS NULL AND held_until > ?"
INSERT = (
    "INSERT INTO router_calls (call_id, caller, at, route, target, pool, held_until)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING"
)
END = (
    "UPDATE router_calls SET ended_at = ?, ended_reason = ?,"
    " released = CASE WHEN pool IS NOT NULL AND released IS NULL AND held_until > ? THEN ? ELSE released END"
    " WHERE call_id = ? AND ended_at IS NULL RETURNING pool, released"
)
END_FIRST = (  # the end came before the decision: remember that the call is over
    "INSERT INTO router_calls (call_id, caller, at, ended_at, ended_reason)"
    " VALUES (?, NULL, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING"
)
EXPIRE = (
    "UPDATE router_calls SET released = 'max_hold'"
    " WHERE released IS NULL AND pool IS NOT NULL AND held_until <= ? RETURNING pool"
)
FORGET = "DELETE FROM router_calls WHERE at < ? AND (released IS NOT NULL OR pool IS NULL)"
FLAG = (
    "INSERT INTO router_flags (name, is_on, until, reason, changed_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET is_on = excluded.is_on, until = excluded.until,"
    " reason = excluded.reason, changed_at = excluded.changed_at"
)
FLAGS = "SELECT name, is_on, until, reason, changed_at FROM router_flags"
