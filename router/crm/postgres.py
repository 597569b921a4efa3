"""The PostgreSQL CRM (I/O edge): one asyncpg pool per worker process, shared by its requests.

`query` takes the caller's E.164 number as $1 and returns a `tags` column (text `a;b` or
text[]) and field columns. A row is `ok`, no row `not_found`, past `timeout_ms` `timeout`,
a connection or query error `error`. A lookup never raises and never outlasts `timeout_ms`:
a lost database is failed fast for a backoff that doubles up to BACKOFF_MAX_S, then probed
by one lookup while the others keep failing fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import asyncpg

from router.crm.httpparts import ENV_REF, env_value
from router.policy.crmcolumns import query_columns
from router.runtime.facts import scalar_text
from router.runtime.records import NOT_FOUND, CrmRecord

POOL_SIZE = 10  # connections per worker, unless crm.postgres.pool says otherwise
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 5.0
CLOSE_GRACE_S = 5.0

# Failures of the link to the database (not of the query): back off before trying again.
_LINK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 admin shutdown, 57P03 starting up
    asyncpg.exceptions.InsufficientResourcesError,  # 53300 too many connections
)


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Connections only run the one SELECT and keep no session state: a reset on every
    release (RESET ALL, UNLISTEN *, ...) would double each lookup's round-trips."""


class PostgresCrm:
    """Lookups by one parameterised query; the pool is made lazily in the serving loop."""

    def __init__(
        self,
        *,
        dsn: str,
        query: str,
        pool: int = POOL_SIZE,
        timeout_ms: int = 1000,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        environ = os.environ if env is None else env
        self._dsn = ENV_REF.sub(lambda m: env_value(environ, m[1]), dsn)
        self._query = query
        self._size = pool
        self._timeout_ms = timeout_ms
        self._timeout_s = timeout_ms / 1000
        self._timed_out = f"timed out after {timeout_ms} ms"
        self._clock = clock
        self._pool: asyncpg.Pool | None = None
        self._ready: asyncio.Future[Any] | None = None  # the pool's initialisation
        self._failures = 0
        self._down_until = 0.0
        self._down_reason = ""
        self._probing = False
        self._releases: set[asyncio.Task[None]] = set()
        self.columns = query_columns(query)

    def cached(self, number: str) -> CrmRecord | None:
        """An error at once while the database is known to be down (backing off); else None."""
        if self._down_until and (self._probing or self._clock() < self._down_until):
            return CrmRecord("error", reason=self._down_reason)
        return None

    async def lookup(self, number: str) -> CrmRecord:
        """The row for an E.164 number, within timeout_ms of this call, whatever the database does."""
        start = time.perf_counter()
        hit = self.cached(number)
        if hit is not None:
            return hit
        probe = bool(self._down_until)
        self._probing = probe
        try:
            record = await self._query_row(number)
        finally:
            if probe:
                self._probing = False
        return replace(record, ms=(time.perf_counter() - start) * 1000)

    async def _query_row(self, number: str) -> CrmRecord:
        try:
            async with asyncio.timeout(self._timeout_s):
                pool = self._pool or self._make_pool()
                if self._ready is not None and not self._ready.done():
                    await asyncio.shield(self._ready)  # initialising connects nothing (min_size 0)
                connection = await pool.acquire()
                try:
                    row = await connection.fetchrow(self._query, number)
                except BaseException:
                    self._release_later(pool, connection)  # may wait on a cancel: not on our time
                    raise
                await pool.release(connection)
        except TimeoutError:
            return CrmRecord("timeout", reason=self._timed_out)
        except asyncpg.QueryCanceledError:  # the server's statement_timeout, same bound
            return CrmRecord("timeout", reason=self._timed_out)
        except _LINK_ERRORS as exc:
            return self._link_failed(exc)
        except asyncpg.PostgresError as exc:  # the query itself: a missing column, a type...
            return CrmRecord("error", reason=f"query failed: {type(exc).__name__}")
        except Exception as exc:  # whatever goes wrong, the call must still be routed
            return CrmRecord("error", reason=type(exc).__name__)
        self._failures, self._down_until = 0, 0.0
        return NOT_FOUND if row is None else record_of(row)

    def _make_pool(self) -> asyncpg.Pool:
        # min_size 0: making the pool connects nothing (a database down at start-up is just a
        # failed lookup); acquire() connects, and replaces connections that broke.
        self._pool = asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=self._size,
            reset=_no_reset,
            timeout=self._timeout_s,
            command_timeout=None,
            server_settings={
                "statement_timeout": str(self._timeout_ms),  # the server stops what we gave up on
                "application_name": "vapi-router",
            },
        )
        self._ready = asyncio.ensure_future(self._pool)
        return self._pool

    def _release_later(self, pool: asyncpg.Pool, connection: Any) -> None:
        task = asyncio.get_running_loop().create_task(_release(pool, connection))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    def _link_failed(self, exc: BaseException) -> CrmRecord:
        self._failures += 1
        backoff = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (self._failures - 1))
        self._down_until = self._clock() + backoff
        self._down_reason = f"database unavailable ({_reason(exc)}); retrying within {backoff:g} s"
        return CrmRecord("error", reason=f"database unavailable ({_reason(exc)})")

    async def aclose(self) -> None:
        """Close the pool (terminating connections that do not come back within a grace)."""
        pool, self._pool = self._pool, None
        for task in list(self._releases):
            task.cancel()
        if pool is None:
            return
        try:
            async with asyncio.timeout(CLOSE_GRACE_S):
                await pool.close()
        except Exception:
            pool.terminate()


async def _release(pool: asyncpg.Pool, connection: Any) -> None:
    with contextlib.suppress(Exception):
        await pool.release(connection, timeout=CLOSE_GRACE_S)


def _reason(exc: BaseException) -> str:
    """A short reason from the exception's type, never its text (it may hold the dsn)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncpg.exceptions.ConnectionDoesNotExistError | ConnectionResetError):
        return "connection lost"
    return type(exc).__name__


def record_of(row: Mapping[str, Any]) -> CrmRecord:
    """A row -> ok record: `tags` as text[] or `a;b` text; other columns (bar `number`) as fields."""
    tags: frozenset[str] = frozenset()
    fields: dict[str, str] = {}
    for name, value in row.items():
        if value is None:
            continue
        if name == "tags":
            parts = value if isinstance(value, list) else str(value).split(";")
            tags = frozenset(t for t in (str(p).strip() for p in parts if p is not None) if t)
        elif name != "number":
            text = scalar_text(value) if isinstance(value, str | int | float | bool) else str(value)
            if text:
                fields[name] = text
    return CrmRecord("ok", tags, fields)
