"""router.server.connguard on its own: the cap's arithmetic, which connections make room (the
longest idle first, never a busy one, never the newcomer), the head and body timeouts at their
boundaries, and the sweep timer. The Guard takes its event loop as an argument, so it runs on a
loop whose clock the test moves (`FakeLoop`: time() and call_at(), all the Guard uses); the
connections are plain objects with the four members the `Guarded` protocol names. The same
rules on the wire, through `serve --max-connections`, are in tests/hostile/test_max_connections.py."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
from collections.abc import Callable
from typing import Any, cast

import pytest

from router.server.connguard import (
    BODY,
    HEAD,
    IDLE,
    MIN_CONNECTIONS,
    RESERVE,
    TICK_S,
    ConnectionLimits,
    Guard,
    default_max_connections,
    guard_for,
)


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The two event-loop methods the Guard calls, on a clock that `advance` moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.timers.append(handle)
        return handle

    def advance(self, seconds: float) -> None:
        """Move the clock, running each timer that falls due (in time order) as a loop would."""
        end = self.now + seconds
        while True:
            due = [h for h in self.timers if not h.cancelled and h.when <= end]
            if not due:
                break
            handle = min(due, key=lambda h: h.when)
            self.timers.remove(handle)
            self.now = max(self.now, handle.when)
            handle.callback()
        self.now = end

    def pending(self) -> list[Handle]:
        return [h for h in self.timers if not h.cancelled]


class Conn:
    """A connection as the Guard sees it (router.server.fasthttp.WebhookProtocol's members)."""

    def __init__(self, name: str, *, busy: bool = False) -> None:
        self.name = name
        self.busy = busy
        self.closed = False
        self.guard_phase = IDLE
        self.guard_since = 0.0

    def guard_busy(self) -> bool:
        return self.busy

    def guard_close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return self.name


def guard(cap: int, *, header: float = 10.0, body: float = 30.0) -> tuple[Guard, FakeLoop]:
    loop = FakeLoop()
    return Guard(cast(asyncio.AbstractEventLoop, loop), ConnectionLimits(header, body, cap)), loop


def open_all(g: Guard, loop: FakeLoop, names: list[str], *, gap_s: float = 0.001, **kw: Any) -> list[Conn]:
    """Connections opened one after another, `gap_s` apart (their guard_since orders them)."""
    out = []
    for name in names:
        conn = Conn(name, **kw)
        g.opened(conn)
        out.append(conn)
        loop.advance(gap_s)
    return out


def closed(conns: list[Conn]) -> list[str]:
    return [c.name for c in conns if c.closed]


# ------------------------------------------------------------------ the cap


LIMITS = [  # RLIMIT_NOFILE soft limit -> the default cap
    (1024, 1024 - RESERVE),  # systemd's default
    (256, 256 - RESERVE),
    (RESERVE + 10, MIN_CONNECTIONS),  # below the reserve: the floor
    (64, MIN_CONNECTIONS),
]
_CAPS = """
import resource, sys
from router.server.connguard import ConnectionLimits
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
for soft in map(int, sys.argv[1:]):
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print(ConnectionLimits().cap())
"""


def test_the_default_cap_is_the_fd_soft_limit_less_the_reserve() -> None:
    """Read from RLIMIT_NOFILE in a child whose soft limit is lowered (the test process keeps its own)."""
    out = subprocess.run(
        [sys.executable, "-c", _CAPS, *(str(soft) for soft, _ in LIMITS)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert [int(line) for line in out.stdout.split()] == [cap for _, cap in LIMITS]


def test_the_cap_here_and_an_explicit_one() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = max(MIN_CONNECTIONS, min(soft, 1 << 20) - RESERVE)
    assert default_max_connections() == expected == ConnectionLimits().cap()
    assert ConnectionLimits(max_connections=7).cap() == 7


@pytest.mark.parametrize(
    ("cap", "opened", "closed_first"),
    [
        # one past the cap closes the excess plus cap // 64 (at least 1) more: room for the
        # next ones without a scan of every connection for each
        pytest.param(4, 5, 2, id="cap-4-one-over"),
        pytest.param(64, 65, 2, id="cap-64"),
        pytest.param(128, 129, 3, id="cap-128"),
        pytest.param(640, 641, 11, id="cap-640"),
    ],
)
def test_one_past_the_cap_closes_the_longest_idle_with_some_slack(
    cap: int, opened: int, closed_first: int
) -> None:
    g, loop = guard(cap)
    conns = open_all(g, loop, [f"c{i}" for i in range(opened)])
    assert closed(conns) == [f"c{i}" for i in range(closed_first)]
    assert len(g.connections) == opened - closed_first <= cap
    assert g.closed == closed_first


def test_a_stream_of_connections_past_the_cap_closes_them_oldest_first() -> None:
    g, loop = guard(20)
    conns = open_all(g, loop, [f"c{i}" for i in range(30)])
    # at 21 open: 2 close (20 // 64 is 0, so 1 of slack), at the next 21 two more, and so on
    assert closed(conns) == [f"c{i}" for i in range(10)]
    assert len(g.connections) == 20


def test_the_longest_idle_go_first_whatever_their_phase() -> None:
    """A keep-alive connection idle since its last reply, one that never sent a byte and a
    slow body are all "waiting without a request being answered"; the oldest `since` goes."""
    g, loop = guard(3)
    a, b, c = open_all(g, loop, ["a", "b", "c"])
    a.guard_phase, a.guard_since = IDLE, loop.now  # a reply just went out on `a`: now the newest
    b.guard_phase, b.guard_since = BODY, loop.now - 0.0005  # its head arrived a moment ago
    loop.advance(0.001)
    d = Conn("d")
    g.opened(d)  # 4 > 3: 2 close (1 excess, 1 slack): c (opened long ago), then b
    assert closed([a, b, c, d]) == ["b", "c"]


def test_busy_connections_and_the_newcomer_are_never_closed_for_room() -> None:
    g, loop = guard(4)
    busy = open_all(g, loop, ["busy0", "busy1", "busy2"], busy=True)  # the oldest, all answering
    idle = open_all(g, loop, ["idle0"])
    newcomer = Conn("new")
    g.opened(newcomer)  # 5 > 4 wants 2 closed; only idle0 may go
    assert closed([*busy, *idle, newcomer]) == ["idle0"]
    # all busy but the newest: over the cap, and nothing closed (a whole request is in on each)
    newcomer.busy = True
    alone = Conn("alone")
    g.opened(alone)
    assert closed([*busy, newcomer, alone]) == []
    assert len(g.connections) == 5


def test_a_lost_connection_frees_its_place() -> None:
    g, loop = guard(3)
    conns = open_all(g, loop, ["a", "b", "c"])
    g.lost(conns[0])
    d = Conn("d")
    g.opened(d)
    assert closed([*conns, d]) == []
    assert g.closed == 0


# ------------------------------------------------------------------ the timeouts


def test_a_head_closes_at_its_timeout_and_not_before() -> None:
    g, loop = guard(100, header=1.0, body=30.0)
    assert g.tick == 0.25  # a quarter of the shortest timeout (at most TICK_S, at least 20 ms)
    [conn] = open_all(g, loop, ["slow-head"], gap_s=0)
    assert conn.guard_phase == HEAD  # a new connection owes a request head
    loop.advance(0.99)
    assert not conn.closed
    loop.advance(0.26)  # the first sweep at or past 1.0 s closes it (within one tick)
    assert conn.closed and g.closed == 1
    assert loop.pending() == []  # no connection left: the sweep timer is not re-armed


def test_a_body_gets_the_body_timeout_from_the_end_of_its_head() -> None:
    g, loop = guard(100, header=1.0, body=2.0)
    [conn] = open_all(g, loop, ["slow-body"], gap_s=0)
    loop.advance(0.9)
    conn.guard_phase, conn.guard_since = BODY, loop.now  # the head is complete at 0.9 s
    loop.advance(1.8)  # 2.7 s since it opened: past the header timeout, not the body's
    assert not conn.closed
    loop.advance(0.5)
    assert conn.closed


def test_idle_and_busy_connections_outlive_every_timeout() -> None:
    """IDLE is keep-alive (uvicorn's own timer closes those); BUSY is being answered (a CRM
    lookup may outlast the head timeout)."""
    g, loop = guard(100, header=0.5, body=0.5)
    idle, busy = open_all(g, loop, ["idle", "busy"], gap_s=0)
    idle.guard_phase = IDLE
    busy.busy = True
    loop.advance(5.0)
    assert closed([idle, busy]) == []
    assert len(loop.pending()) == 1  # the sweep keeps going while connections remain
    busy.busy = False  # its answer went out, but it stays in HEAD since long ago: closed
    loop.advance(0.5)
    assert closed([idle, busy]) == ["busy"]


@pytest.mark.parametrize(
    ("header", "body", "tick"),
    [
        pytest.param(10.0, 30.0, TICK_S, id="defaults"),
        pytest.param(1.0, 1.5, 0.25, id="short"),
        pytest.param(0.01, 5.0, 0.02, id="floor"),
    ],
)
def test_the_sweep_interval(header: float, body: float, tick: float) -> None:
    g, _ = guard(100, header=header, body=body)
    assert g.tick == tick


def test_one_guard_per_loop_and_limits() -> None:
    loop_a, loop_b = cast(asyncio.AbstractEventLoop, FakeLoop()), cast(asyncio.AbstractEventLoop, FakeLoop())
    limits = ConnectionLimits(1.0, 2.0, 50)
    first = guard_for(loop_a, limits)
    assert guard_for(loop_a, ConnectionLimits(1.0, 2.0, 50)) is first
    assert guard_for(loop_b, limits) is not first
    changed = guard_for(loop_a, ConnectionLimits(1.0, 2.0, 60))
    assert changed is not first and changed.cap == 60
