"""The PostgreSQL state store: one database shared by every worker and replica. [I/O edge]

A reservation locks its pool's row in `router_pools` (SELECT … FOR UPDATE, as Vapi's
concurrency gateway does), then counts and inserts in a second statement: under READ
COMMITTED that statement sees every reservation committed before the lock was granted,
so never more than `max` calls hold a slot. The pool connects lazily and reconnects by
itself; a lost database fails fast for a short backoff (as the PostgreSQL CRM does).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import asyncpg

from router.runtime.statefacts import HISTORY_LIMIT, PastCall, StateFacts
from router.state import sql
from router.state.base import CallRecord, FlagState

POOL_SIZE = 10
BACKOFF_MAX_S = 2.0
_SETUP_LOCK = 0x5EA7E  # an advisory lock: replicas starting together create the tables once
LOCK_POOL = "SELECT name FROM router_pools WHERE name = $1 FOR UPDATE"
RESERVE = (
    "INSERT INTO router_calls (call_id, caller, at, route, target, pool, held_until)"
    " SELECT $1::text, $2::text, $3::float8, $4::text, $5::text, $6::text, $7::float8"
    " WHERE (SELECT count(*) FROM router_calls"
    "        WHERE pool = $6 AND released IS NULL AND held_until > $3) < $8::bigint"
    " ON CONFLICT (call_id) DO NOTHING RETURNING 1"
)
# the caller's earlier calls, the pools' usage and the flags that are on: one round trip
SNAPSHOT = (
    "(SELECT 'h' AS kind, at, route, target, ended_reason, NULL::bigint AS n FROM router_calls"
    "  WHERE caller = $3 AND at >= $4 AND call_id <> $5 ORDER BY at DESC LIMIT $6)"
    " UNION ALL SELECT 'p', NULL, pool, NULL, NULL, count(*) FROM router_calls"
    "  WHERE pool = ANY($1::text[]) AND released IS NULL AND held_until > $2 GROUP BY pool"
    " UNION ALL SELECT 'f', NULL, name, NULL, NULL, NULL FROM router_flags"
    "  WHERE is_on AND (until IS NULL OR until > $2)"
)


class StateDown(Exception):
    """The database failed a moment ago: fail fast until the backoff ends."""


class PostgresState:
    def __init__(self, dsn: str, *, timeout_ms: int = 1000, pool: int = POOL_SIZE) -> None:
        self._dsn = dsn
        self._timeout_ms = timeout_ms
        self._size = pool
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._pools_known: set[str] = set()
        self._failures = 0
        self._down_until = 0.0

    async def _connection_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._size,
                    timeout=self._timeout_ms / 1000,
                    server_settings={
                        "statement_timeout": str(self._timeout_ms),
                        "application_name": "vapi-router",
                    },
                )
                try:
                    async with pool.acquire() as c, c.transaction():
                        await c.execute("SELECT pg_advisory_xact_lock($1)", _SETUP_LOCK)
                        for statement in sql.TABLES:
                            await c.execute(statement)
                except BaseException:
                    pool.terminate()
                    raise
                self._pool = pool
        return self._pool

    async def _call(self, method: str, query: str, *args: Any) -> Any:
        if self._down_until and time.monotonic() < self._down_until:
            raise StateDown("state database unavailable; retrying shortly")
        try:
            pool = await self._connection_pool()
            result = await getattr(pool, method)(query, *args)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
            self._failures += 1
            self._down_until = time.monotonic() + min(BACKOFF_MAX_S, 0.05 * 2**self._failures)
            raise
        self._failures, self._down_until = 0, 0.0
        return result

    async def snapshot(
        self, caller: str | None, call_id: str | None, now: float, history_s: float, pools: Mapping[str, int]
    ) -> StateFacts:
        names = list(pools)
        reads = bool(history_s) and caller is not None
        rows = await self._call(
            "fetch",
            SNAPSHOT,
            names,
            now,
            caller if reads else "",
            now - history_s,
            call_id or "",
            HISTORY_LIMIT if reads else 0,
        )
        used = dict.fromkeys(names, 0)
        flags: set[str] = set()
        past: list[PastCall] = []
        for kind, at, a, b, c, n in rows:
            if kind == "h":
                past.append(PastCall(at, a, b, c))
            elif kind == "p":
                used[a] = int(n)
            else:
                flags.add(a)
        history = tuple(past)
        return StateFacts("ok", history, {p: (used[p], m) for p, m in pools.items()}, frozenset(flags))

    async def reserve(self, call: CallRecord, pool: str, most: int, held_until: float) -> bool:
        if self._down_until and time.monotonic() < self._down_until:
            raise StateDown("state database unavailable; retrying shortly")
        connections = await self._connection_pool()
        try:
            async with connections.acquire() as c:
                if pool not in self._pools_known:
                    await c.execute(
                        "INSERT INTO router_pools (name) VALUES ($1) ON CONFLICT DO NOTHING", pool
                    )
                    self._pools_known.add(pool)
                async with c.transaction():
                    await c.execute(LOCK_POOL, pool)
                    args = (
                        call.call_id,
                        call.caller,
                        call.at,
                        call.route,
                        call.target,
                        pool,
                        held_until,
                        most,
                    )
                    inserted = await c.fetchval(RESERVE, *args)
                    if inserted is None:  # full, or this call id is known already
                        known = await c.fetchval(
                            "SELECT 1 FROM router_calls WHERE call_id = $1", call.call_id
                        )
                        return known is not None
                    return True
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
            self._failures += 1
            self._down_until = time.monotonic() + min(BACKOFF_MAX_S, 0.05 * 2**self._failures)
            raise

    async def record(self, call: CallRecord) -> None:
        q = sql.numbered(sql.INSERT)
        await self._call("execute", q, call.call_id, call.caller, call.at, call.route, call.target, None, 0.0)

    async def end(self, call_id: str, now: float, ended_reason: str | None, kind: str) -> str | None:
        row = await self._call("fetchrow", sql.numbered(sql.END), now, ended_reason, now, kind, call_id)
        if row is None:
            await self._call("execute", sql.numbered(sql.END_FIRST), call_id, now, now, ended_reason)
            return None
        return str(row[0]) if row[0] is not None and row[1] == kind else None

    async def expire(self, now: float, keep_s: float) -> list[str]:
        rows = await self._call("fetch", sql.numbered(sql.EXPIRE), now)
        await self._call("execute", sql.numbered(sql.FORGET), now - keep_s)
        return [str(r[0]) for r in rows]

    async def usage(self, now: float, pools: Mapping[str, int]) -> dict[str, int]:
        rows = await self._call(
            "fetch",
            "SELECT pool, count(*) FROM router_calls WHERE pool = ANY($1::text[])"
            " AND released IS NULL AND held_until > $2 GROUP BY pool",
            list(pools),
            now,
        )
        used = dict.fromkeys(pools, 0)
        used.update({str(r[0]): int(r[1]) for r in rows})
        return used

    async def set_flag(self, flag: FlagState) -> None:
        args = (flag.name, flag.on, flag.until, flag.reason, flag.changed_at)
        await self._call("execute", sql.numbered(sql.FLAG), *args)

    async def flags(self) -> dict[str, FlagState]:
        rows = await self._call("fetch", sql.FLAGS)
        return {r[0]: FlagState(r[0], bool(r[1]), r[2], r[3], r[4]) for r in rows}

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(5):
                    await pool.close()
            except Exception:
                pool.terminate()
