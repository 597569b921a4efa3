"""Section "state": capacity reservation through the real state stores (DESIGN §13, §15).

Each store (in-process, SQLite, PostgreSQL on a server started here on a loopback port) gets
the calls of router/server/statecall.py, in its order, for a policy with a pool and an
overflow route and no `history`: `snapshot`; when the pool has a slot, `reserve`; when the
reservation loses the race or the snapshot saw the pool full, `record` (the overflow
target holds no slot); then the call's two proofs of the end, `end` for the status-update
`ended` (which releases the slot) and `end` for the end-of-call-report (which releases
nothing). Measured in this process on uvloop, as the server runs:

* one call at a time: reserve + release, and the whole sequence, p50 / p99; again with
  100,000 ended calls retained (the server keeps calls for max(history, max_hold_s) + 24 h);
* 32 tasks on one pool of 50 slots (SQLite and PostgreSQL: over two stores on the one file
  or database, as two workers), each granted call ending
  after its task's next three: calls/s and
  how many were refused. Checked while it runs, failing the row if ever violated: the
  store's own `usage` (probed every millisecond) never above 50; the calls the client
  knows to hold a slot at once (from reserve's return to the release's start) never above
  50; each grant released exactly once; usage 0 at the end.
"""

from __future__ import annotations

import asyncio
import glob
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bench import Row, log, percentile
from router.runtime.statefacts import DEFAULT_MAX_HOLD_S
from router.state.base import CallRecord, StateStore
from router.state.memory import MemoryState
from router.state.sqlite import SqliteState

if TYPE_CHECKING:
    from bench.pgserver import PgServer

T = TypeVar("T")
POOL, MOST = "sales", 50
POOLS = {POOL: MOST}
TASKS = 32
WORKERS = 2  # SQLite and PostgreSQL: the tasks split over two stores, as two workers would
LIFE = 3  # a granted call ends after its task's next 3 calls: up to 96 wanted for 50 slots
CONCURRENT_S = 3.0
CONCURRENT_MAX_CALLS = 300_000
SEQUENTIAL = 1_500  # calls one at a time (each kept, ended, by the store afterwards)
SEQUENTIAL_S = 4.0  # each sequential run also stops after this
RETAINED = 100_000
ENDED = "customer-ended-call"
PROBE_S = 0.001


@dataclass
class _Calls:
    """Call ids and callers, new for every call."""

    prefix: str
    n: int = 0

    def next(self, now: float) -> CallRecord:
        self.n += 1
        return CallRecord(
            f"{self.prefix}-{self.n:07d}", f"+1415{self.n % 10_000_000:07d}", now, POOL, "sales-desk"
        )


async def decide(store: StateStore, call: CallRecord) -> bool | None:
    """The store's share of deciding one call: True granted, False lost the race, None
    the snapshot saw the pool full."""
    facts = await store.snapshot(call.caller, call.call_id, call.at, 0.0, POOLS)
    if facts.full(POOL):
        await store.record(call)  # routed to the overflow target, which holds no slot
        return None
    # The decision runs here. Other tasks run too (as other requests would over a store that
    # suspends), so reservations land between this snapshot and the reserve, and the store's
    # own guard is tested, not only the snapshot's view (the in-process store would else
    # never see a race).
    await asyncio.sleep(0)
    if await store.reserve(call, POOL, MOST, call.at + DEFAULT_MAX_HOLD_S):
        return True
    await store.record(call)  # decided again with the pool full: the overflow target
    return False


async def finish(store: StateStore, call_id: str) -> str | None:
    """Both proofs of the end, as Vapi sends them; the pool the first one released."""
    pool = await store.end(call_id, time.time(), ENDED, "status-update")
    again = await store.end(call_id, time.time(), ENDED, "end-of-call-report")
    assert again is None, f"{call_id}: a second proof of the end released {again}"
    return pool


async def sequential(store: StateStore, calls: _Calls, count: int) -> tuple[list[float], list[float]]:
    """µs per call: reserve + release, and the whole sequence (snapshot, reserve, two ends)."""
    pair: list[float] = []
    whole: list[float] = []
    stop = time.perf_counter() + SEQUENTIAL_S
    while len(whole) < count and time.perf_counter() < stop:
        call = calls.next(time.time())
        t0 = time.perf_counter_ns()
        await store.snapshot(call.caller, call.call_id, call.at, 0.0, POOLS)
        t1 = time.perf_counter_ns()
        granted = await store.reserve(call, POOL, MOST, call.at + DEFAULT_MAX_HOLD_S)
        t2 = time.perf_counter_ns()
        released = await store.end(call.call_id, time.time(), ENDED, "status-update")
        t3 = time.perf_counter_ns()
        await store.end(call.call_id, time.time(), ENDED, "end-of-call-report")
        t4 = time.perf_counter_ns()
        assert granted and released == POOL, f"one call at a time: granted {granted}, released {released}"
        pair.append((t2 - t1 + t3 - t2) / 1000)
        whole.append((t4 - t0) / 1000)
    return pair, whole


@dataclass
class Concurrent:
    granted: int = 0
    lost: int = 0
    seen_full: int = 0
    released: int = 0
    probes: int = 0
    probe_max: int = 0
    intervals: list[tuple[int, int]] = field(default_factory=list)  # (reserve returned, end began)
    seconds: float = 0.0
    usage_after: int = -1
    errors: int = 0

    @property
    def calls(self) -> int:
        return self.granted + self.lost + self.seen_full

    def client_max(self) -> int:
        """Most calls known to hold a slot at one instant: each from reserve's return to the
        start of its release (inside the store's own holding, so never more than it)."""
        events = sorted([(a, 1) for a, _ in self.intervals] + [(b, -1) for _, b in self.intervals])
        held = most = 0
        for _, step in events:
            held += step
            most = max(most, held)
        return most


async def concurrent(stores: list[StateStore], calls: _Calls) -> Concurrent:
    """TASKS tasks spread over `stores` (workers or replicas on one file or database). A store
    error is counted, as the server would answer that call with its fallback."""
    out = Concurrent()
    stop = time.perf_counter() + CONCURRENT_S
    running = True

    async def ended(store: StateStore, call_id: str) -> str | None:
        try:
            return await finish(store, call_id)
        except Exception:  # the slot stays held: `usage after` shows it
            out.errors += 1
            return None

    async def task(store: StateStore) -> None:
        held: deque[tuple[int, str, int]] = deque()  # (iteration, call id, when granted)
        i = 0
        while time.perf_counter() < stop and out.calls < CONCURRENT_MAX_CALLS:
            await asyncio.sleep(0)  # each call is a request of its own: the loop runs others between
            i += 1
            while held and (held[0][0] <= i - LIFE):  # calls end whether or not new ones get a slot
                _, call_id, granted_at = held.popleft()
                out.intervals.append((granted_at, time.perf_counter_ns()))
                pool = await ended(store, call_id)  # not `+= await`: that reads the count first
                out.released += pool == POOL
            call = calls.next(time.time())
            try:
                got = await decide(store, call)
            except Exception:
                out.errors += 1
                continue
            if got:
                held.append((i, call.call_id, time.perf_counter_ns()))
                out.granted += 1
            else:
                out.lost += got is False
                out.seen_full += got is None
                await ended(store, call.call_id)  # an overflow call ends too
        while held:
            _, call_id, granted_at = held.popleft()
            out.intervals.append((granted_at, time.perf_counter_ns()))
            pool = await ended(store, call_id)
            out.released += pool == POOL

    async def probe() -> None:
        while running:
            try:
                used = (await stores[0].usage(time.time(), POOLS))[POOL]
            except Exception:
                out.errors += 1
                used = 0
            out.probes += 1
            out.probe_max = max(out.probe_max, used)
            await asyncio.sleep(PROBE_S)

    prober = asyncio.get_running_loop().create_task(probe())
    start = time.perf_counter()
    try:
        await asyncio.gather(*(task(stores[k % len(stores)]) for k in range(TASKS)))
    finally:
        out.seconds = time.perf_counter() - start
        running = False
        await prober
    out.usage_after = (await stores[0].usage(time.time(), POOLS))[POOL]
    return out


def _us(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} / {percentile(values, 99):.0f}"


Step = Callable[[], Awaitable[None]]
Retain = Callable[[StateStore], Awaitable[None]]


async def measure(
    name: str, make: Callable[[], StateStore], retain: Retain, empty: Step, workers: int
) -> list[Row]:
    """The rows of one store; `retain` adds the ended calls, `empty` deletes every call;
    `workers` stores share the pool in the concurrent run."""
    rows: list[Row] = []
    store = make()
    try:
        calls = _Calls(f"{name}-seq")
        await sequential(store, calls, 200)  # connect, create the tables, prepare
        pair, whole = await sequential(store, calls, SEQUENTIAL)
        await retain(store)
        pair_r, whole_r = await sequential(store, calls, SEQUENTIAL)
        log(
            f"  {name}: reserve+release {_us(pair)} µs, sequence {_us(whole)} µs ({len(whole):,} calls);"
            f" {RETAINED:,} retained: {_us(pair_r)} / {_us(whole_r)} µs ({len(whole_r):,} calls)"
        )
        rows += [
            Row(
                "state",
                f"{name}: one call at a time",
                "µs p50 / p99: reserve + release; snapshot, reserve and both ends",
                f"{_us(pair)}; {_us(whole)}",
            ),
            Row(
                "state",
                f"{name}: one call at a time, {RETAINED:,} ended calls kept",
                "µs p50 / p99: reserve + release; snapshot, reserve and both ends",
                f"{_us(pair_r)}; {_us(whole_r)}",
            ),
        ]
    finally:
        await store.aclose()
    await empty()  # the concurrent run starts from no calls, as a fresh store would
    stores = [make() for _ in range(workers)]
    try:
        c = await concurrent(stores, _Calls(f"{name}-conc"))
    finally:
        for store in stores:
            await store.aclose()
    client_max = c.client_max()
    log(
        f"  {name}: {TASKS} tasks, {c.calls:,} calls in {c.seconds:.1f} s: granted {c.granted:,},"
        f" lost the race {c.lost:,}, seen full {c.seen_full:,}; released {c.released:,};"
        f" most held: probes {c.probe_max} ({c.probes:,} probes), client {client_max};"
        f" usage after {c.usage_after}"
    )
    honest = (
        c.probe_max <= MOST
        and client_max <= MOST
        and c.released == c.granted
        and c.usage_after == 0
        and c.probes > 0
    )
    if not honest:
        log(f"  !!! {name}: the pool held more than {MOST}, or a slot was not released exactly once")
    if c.errors:
        log(f"  !!! {name}: {c.errors:,} store errors")
    over = f" over {workers} stores" if workers > 1 else ""
    case = f"{name}: {TASKS} tasks{over}, one pool of {MOST}"
    return [
        *rows,
        Row(
            "state",
            case,
            "calls/s; granted / lost the race / saw the pool full (store errors)",
            f"{c.calls / c.seconds:,.0f}; {c.granted:,} / {c.lost:,} / {c.seen_full:,} ({c.errors})",
            "0 errors",
            c.errors == 0,
        ),
        Row(
            "state",
            case,
            "most held at once: store usage (probes) / client-side; released = granted; usage after",
            f"{c.probe_max} ({c.probes:,}) / {client_max}; {c.released:,} = {c.granted:,}; {c.usage_after}",
            f"≤ {MOST}, = , 0",
            honest,
        ),
    ]


# ---------------------------------------------------------------- retained calls, per store


def _ended_rows(count: int) -> list[tuple[object, ...]]:
    """Ended calls of the last day that held (and released) a slot, as router_calls rows."""
    now = time.time()
    rows: list[tuple[object, ...]] = []
    for i in range(count):
        at = now - 86_400 * (i + 1) / count
        rows.append(
            (f"old-{i:07d}", f"+1646{i % 10_000_000:07d}", at, "sales", "sales-desk", POOL,
             at + DEFAULT_MAX_HOLD_S, at + 240, ENDED, "status-update")
        )  # fmt: skip
    return rows


async def _retain_memory(store: StateStore) -> None:
    """Through the store's own calls: each call recorded, then ended."""
    now = time.time()
    for i in range(RETAINED):
        call = CallRecord(f"old-{i:07d}", f"+1646{i % 10_000_000:07d}", now - 86_400 + i * 0.8, "r", "t")
        await store.record(call)  # not reserve: the same dicts, without counting first
        await store.end(call.call_id, now, ENDED, "status-update")


def _sqlite_steps(path: Path) -> tuple[Retain, Step]:
    def execute(statement: str, rows: list[tuple[object, ...]] | None = None) -> None:
        db = sqlite3.connect(path, timeout=5)
        with db:
            if rows is None:
                db.execute(statement)
            else:
                db.executemany(statement, rows)
        db.close()

    async def retain(store: StateStore) -> None:
        execute(f"INSERT INTO router_calls VALUES ({', '.join('?' * 10)})", _ended_rows(RETAINED))

    async def empty() -> None:
        execute("DELETE FROM router_calls")

    return retain, empty


async def _nothing() -> None:
    pass


def _loop(work: Callable[[], Awaitable[T]]) -> T:
    import uvloop

    async def main() -> T:
        return await work()

    return uvloop.run(main())


def run() -> list[Row]:
    rows: list[Row] = []
    rows += _loop(lambda: measure("memory", MemoryState, _retain_memory, _nothing, 1))
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        path = Path(tmp) / "state.db"
        retain, empty = _sqlite_steps(path)
        rows += _loop(
            lambda: measure("sqlite", lambda: SqliteState(str(path), timeout_ms=1000), retain, empty, WORKERS)
        )
    rows += postgres_rows()
    return rows


def postgres_rows() -> list[Row]:
    from bench.pgserver import PgServer, init_cluster

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))  # as tests/conftest.py looks
    if not found:
        log("  PostgreSQL is not installed (`make system-deps`): no PostgreSQL figures")
        return [Row("state", "postgres", "capacity reservation", "skipped: PostgreSQL not installed")]
    binary = Path(found[-1])
    home = Path(tempfile.mkdtemp(prefix="bench-state-pg-"))  # not under a root-only temp dir
    server: PgServer | None = None
    try:
        server = PgServer(binary.parent, init_cluster(binary.parent, home))
        server.start()
        return _loop(lambda: _measure_postgres(server))
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(home, ignore_errors=True)


async def _measure_postgres(server: PgServer) -> list[Row]:
    import asyncpg

    from router.state.postgres import PostgresState

    async def retain(store: StateStore) -> None:
        connection = await asyncpg.connect(server.dsn)
        try:
            await connection.copy_records_to_table("router_calls", records=_ended_rows(RETAINED))
            await connection.execute("VACUUM ANALYZE router_calls")
        finally:
            await connection.close()

    async def empty() -> None:
        await server.execute("TRUNCATE router_calls")

    return await measure(
        "postgres", lambda: PostgresState(server.dsn, timeout_ms=1000), retain, empty, WORKERS
    )
