"""The StateStore contract (router/state), run on every store: in-process, SQLite and the
PostgreSQL server the suite starts. Atomic reservations, releases only on proof of the end
(each at most once, whatever the order), the max_hold_s expiry, history, flags with TTLs."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import statelock
from pgserver import PgServer

from router.runtime.statefacts import StateSettings
from router.state.base import CallRecord, FlagState, StateStore
from router.state.make import make_state
from router.state.memory import MemoryState

T0 = 1_800_000_000.0
POOLS = {"sales": 3}


def pg_database(postgres: PgServer) -> str:
    name = f"s_{uuid.uuid4().hex[:10]}"
    postgres.run(f"CREATE DATABASE {name}")
    return postgres.dsn.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], StateStore]]:
    """A factory of stores over one shared place (SQLite file, PostgreSQL database): two
    stores from it are two workers or replicas."""
    kind = request.param
    if kind == "memory":
        shared = make_state(StateSettings())
        yield lambda: shared
    elif kind == "sqlite":
        path = str(tmp_path / "state.db")
        yield lambda: make_state(StateSettings(backend="sqlite", sqlite=path))
    else:
        dsn = pg_database(request.getfixturevalue("postgres"))
        yield lambda: make_state(StateSettings(backend="postgres", dsn=dsn))


def call(call_id: str, caller: str = "+14155550101", at: float = T0, route: str = "sales") -> CallRecord:
    return CallRecord(call_id, caller, at, route, "sales-desk")


def test_many_simultaneous_reservations_never_exceed_max(make: Callable[[], StateStore]) -> None:
    async def run() -> None:
        stores = [make() for _ in range(3)]  # three workers on one store
        results = await asyncio.gather(
            *(stores[i % 3].reserve(call(f"c{i}"), "sales", 3, T0 + 600) for i in range(30))
        )
        assert sum(results) == 3
        assert (await stores[0].usage(T0, POOLS)) == {"sales": 3}
        for s in {id(s): s for s in stores}.values():
            await s.aclose()

    asyncio.run(run())


def test_a_slot_is_released_once_on_proof_of_the_end(make: Callable[[], StateStore]) -> None:
    async def run() -> None:
        store = make()
        assert await store.reserve(call("a"), "sales", 1, T0 + 600)
        assert not await store.reserve(call("b"), "sales", 1, T0 + 600)
        # another message about the call is no proof: nothing changes without an end
        assert (await store.usage(T0 + 1, POOLS))["sales"] == 1
        assert await store.end("a", T0 + 5, "customer-ended-call", "end-of-call-report") == "sales"
        # the status-update coming late, and a duplicate report: nothing released twice
        assert await store.end("a", T0 + 6, "customer-ended-call", "status-update") is None
        assert await store.end("a", T0 + 7, "customer-ended-call", "end-of-call-report") is None
        assert await store.reserve(call("c"), "sales", 1, T0 + 600)
        assert (await store.usage(T0 + 8, POOLS))["sales"] == 1
        # an end that arrives before the decision is recorded: that call never holds a slot
        assert await store.end("d", T0 + 9, "silence-timed-out", "status-update") is None
        assert await store.end("c", T0 + 10, None, "status-update") == "sales"
        assert await store.reserve(call("d"), "sales", 1, T0 + 600)
        assert (await store.usage(T0 + 11, POOLS))["sales"] == 0
        # a repeated request for a call that holds a slot does not take a second one
        assert await store.reserve(call("e"), "sales", 2, T0 + 600)
        assert await store.reserve(call("e"), "sales", 2, T0 + 600)
        assert (await store.usage(T0 + 12, POOLS))["sales"] == 1
        await store.aclose()

    asyncio.run(run())


def test_max_hold_expiry_frees_a_slot_whose_end_never_arrives(make: Callable[[], StateStore]) -> None:
    async def run() -> None:
        store = make()
        assert await store.reserve(call("a"), "sales", 1, T0 + 100)
        assert not await store.reserve(call("b", at=T0 + 99), "sales", 1, T0 + 200)
        assert await store.reserve(call("c", at=T0 + 100), "sales", 1, T0 + 200)  # expired: free
        assert await store.expire(T0 + 150, keep_s=86400) == ["sales"]  # counted once
        assert await store.expire(T0 + 160, keep_s=86400) == []
        assert await store.end("a", T0 + 170, "customer-ended-call", "status-update") is None  # too late
        assert (await store.usage(T0 + 170, POOLS))["sales"] == 1
        await store.aclose()

    asyncio.run(run())


def test_usage_counts_the_held_slots_among_many_ended_expired_and_forgotten_calls(
    make: Callable[[], StateStore],
) -> None:
    pools = {"sales": 300, "support": 300}

    async def run() -> None:
        store = make()
        for i in range(200):  # a day of calls, each ended, in two pools
            pool = "sales" if i % 2 else "support"
            assert await store.reserve(call(f"done{i}", at=T0 + i), pool, 300, T0 + i + 3600)
            assert await store.end(f"done{i}", T0 + i + 60, "customer-ended-call", "status-update") == pool
        await store.record(call("no-pool", at=T0 + 200))
        for i in range(5):  # still on the line; the last two never send an end
            assert await store.reserve(call(f"live{i}", at=T0 + 300), "sales", 300, T0 + 300 + 100 * (i + 1))
        assert await store.usage(T0 + 350, pools) == {"sales": 5, "support": 0}
        assert await store.end("live0", T0 + 360, "customer-ended-call", "end-of-call-report") == "sales"
        assert await store.usage(T0 + 450, pools) == {"sales": 4, "support": 0}
        assert await store.usage(T0 + 550, pools) == {"sales": 3, "support": 0}  # live1 past held_until
        assert await store.end("live1", T0 + 560, "customer-ended-call", "status-update") is None  # too late
        assert await store.expire(T0 + 650, keep_s=86400) == ["sales", "sales"]  # live1, live2
        assert await store.usage(T0 + 650, pools) == {"sales": 2, "support": 0}
        facts = await store.snapshot(None, "x", T0 + 650, 0, pools)
        assert facts.pools == {"sales": (2, 300), "support": (0, 300)}
        assert sorted(await store.expire(T0 + 90_000, keep_s=86_400)) == ["sales", "sales"]  # and forgotten
        assert await store.usage(T0 + 90_000, pools) == {"sales": 0, "support": 0}
        assert await store.reserve(call("next", at=T0 + 90_000), "sales", 1, T0 + 90_600)
        assert not await store.reserve(call("after", at=T0 + 90_001), "sales", 1, T0 + 90_600)
        await store.aclose()

    asyncio.run(run())


def test_the_in_process_store_counts_only_the_calls_holding_a_slot() -> None:
    """A reservation reads the pool's held calls, not every call kept for history: with a
    day of ended calls kept, counting them all cost milliseconds per call (`make bench`)."""

    async def run() -> None:
        store = MemoryState()
        for i in range(1000):
            assert await store.reserve(call(f"done{i}", at=T0 + i), "sales", 3, T0 + i + 600)
            await store.end(f"done{i}", T0 + i + 1, "customer-ended-call", "status-update")
        assert await store.reserve(call("live", at=T0 + 2000), "sales", 3, T0 + 2600)
        assert await store.reserve(call("lost", at=T0 + 2000), "sales", 3, T0 + 2100)  # its end never comes
        assert len(store._calls) == 1002
        assert {p: set(held) for p, held in store._held.items()} == {"sales": {"live", "lost"}}
        assert await store.expire(T0 + 2200, keep_s=86400) == ["sales"]
        assert {p: set(held) for p, held in store._held.items()} == {"sales": {"live"}}
        await store.expire(T0 + 2200 + 86_400 + 1000, keep_s=86400)  # everything forgotten
        assert store._calls == {} and store._held == {"sales": {}}

    asyncio.run(run())


def test_history_is_the_callers_earlier_calls_newest_first(make: Callable[[], StateStore]) -> None:
    async def run() -> None:
        store = make()
        await store.record(call("h1", at=T0 - 3600, route="intake"))
        await store.record(call("h2", at=T0 - 60, route="repeat"))
        await store.record(call("other", caller="+14155550999", at=T0 - 30))
        await store.end("h2", T0 - 10, "customer-ended-call", "end-of-call-report")
        await store.record(call("now", at=T0))
        facts = await store.snapshot("+14155550101", "now", T0, 7200, POOLS)
        assert [(c.route, c.ended_reason) for c in facts.history] == [
            ("repeat", "customer-ended-call"),
            ("intake", None),
        ]
        assert facts.pools == {"sales": (0, 3)} and facts.status == "ok"
        assert (await store.snapshot("+14155550101", "now", T0, 600, POOLS)).history[0].route == "repeat"
        assert len((await store.snapshot("+14155550101", "now", T0, 600, POOLS)).history) == 1
        assert (await store.snapshot("+14155550101", "now", T0, 0, POOLS)).history == ()
        await store.aclose()

    asyncio.run(run())


def test_flags_are_shared_and_expire_with_their_ttl(make: Callable[[], StateStore]) -> None:
    async def run() -> None:
        a, b = make(), make()
        await a.set_flag(FlagState("storm", True, T0 + 60, "storm closure", T0))
        assert (await b.snapshot(None, None, T0 + 1, 0, {})).flags == {"storm"}
        assert (await b.snapshot(None, None, T0 + 61, 0, {})).flags == frozenset()  # past its TTL
        assert (await b.flags())["storm"].reason == "storm closure"
        await b.set_flag(FlagState("storm", False, None, "over", T0 + 2))
        assert (await a.snapshot(None, None, T0 + 3, 0, {})).flags == frozenset()
        for s in {id(a): a, id(b): b}.values():
            await s.aclose()

    asyncio.run(run())


def test_sqlite_reservations_from_many_processes_never_exceed_max(tmp_path: Path) -> None:
    """`serve --workers N` on `state: {sqlite: FILE}`: N processes, each with its own
    connection, race for the last slots. Threads of one process hardly ever interleave
    between the count and the insert (the GIL); processes do, so this fails as soon as the
    reservation stops taking the write lock (BEGIN IMMEDIATE) before it counts."""
    workers, rounds, most = 4, 150, 2
    ctx = multiprocessing.get_context("spawn")  # fork in a threaded pytest risks deadlocks
    barrier = ctx.Barrier(workers, timeout=60)
    path = str(tmp_path / "state.db")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=statelock.reserve_in_rounds, args=(path, w, rounds, most, barrier, out))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        granted = dict(out.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    failed = sorted(v for v in granted.values() if isinstance(v, str))
    assert not failed
    per_round = Counter(r for rs in granted.values() for r in rs)
    over = {r: n for r, n in sorted(per_round.items()) if n > most}
    assert not over, f"rounds where more than {most} calls held a slot: {over}"
    assert sum(per_round.values()) == rounds * most  # every round filled the pool, no more
