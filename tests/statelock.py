"""A worker process for the cross-process reservation test (tests/test_state_stores.py):
one SqliteState of its own on the shared file, reserving in lock-step rounds with the
other processes. Its own module so that `spawn` children import nothing of pytest."""

from __future__ import annotations

import asyncio
from typing import Any

from router.state.base import CallRecord
from router.state.sqlite import SqliteState

T0 = 1_800_000_000.0
ROUND_S = 10.0  # each round's calls are held 5 s past its start: gone by the next round


def reserve_in_rounds(path: str, worker: int, rounds: int, most: int, barrier: Any, out: Any) -> None:
    """Put (worker, the rounds in which it got a slot of the pool of `most`) on `out`; all
    workers start each round together, at the barrier."""

    async def run() -> list[int]:
        store = SqliteState(path, timeout_ms=5000)
        await store.usage(T0, {})  # connect (and create the tables) before the first round
        granted = []
        try:
            for r in range(rounds):
                at = T0 + r * ROUND_S
                call = CallRecord(f"r{r}-w{worker}", None, at, "sales", "sales-desk")
                barrier.wait()
                if await store.reserve(call, "sales", most, at + ROUND_S / 2):
                    granted.append(r)
        finally:
            await store.aclose()
        return granted

    try:
        out.put((worker, asyncio.run(run())))
    except BaseException as exc:  # say what went wrong, and free the others from the barrier
        barrier.abort()
        out.put((worker, f"worker {worker} failed: {exc!r}"))
