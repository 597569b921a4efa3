"""Connection limits for the HTTP protocol: head and body timeouts, and a cap on open connections. [I/O]

A client that connects and never sends a byte, or sends its request a byte at a time, holds a
file descriptor for as long as it likes; a thousand of them and accept() fails with EMFILE, so
Vapi's calls are refused. Two rules keep descriptors for real calls:

- a request's head must arrive within `header_timeout` s of its first byte (or of the
  connection opening), and its body within `body_timeout` s of the head; otherwise the
  connection is closed. Vapi sends a request in one go: these defaults are never reached.
- at most `max_connections` connections are open (by default the RLIMIT_NOFILE soft limit
  less RESERVE, kept for the CRM pool, the policy files, the log and the check child). A
  connection past the cap closes the connections that have waited longest without a request
  being answered on them (idle keep-alive, never used, slow heads and bodies), never one
  whose answer is being worked out.

The clock is coarse: one timer per event loop sweeps the connections every TICK_S (less for
short timeouts), so a request costs two attribute writes, not a timer.
"""

from __future__ import annotations

import asyncio
import heapq
import resource
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
RESERVE = 150  # descriptors not given to clients: CRM pool (100), files, log, pipes, listeners
MIN_CONNECTIONS = 16
TICK_S = 0.5

IDLE, HEAD, BODY = 0, 1, 2


def default_max_connections() -> int:
    """The RLIMIT_NOFILE soft limit less RESERVE (at least MIN_CONNECTIONS)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > 1 << 20:
        soft = 1 << 20
    return max(MIN_CONNECTIONS, soft - RESERVE)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """`serve --header-timeout/--body-timeout/--max-connections`; 0 max_connections: derived."""

    header_timeout: float = HEADER_TIMEOUT_S
    body_timeout: float = BODY_TIMEOUT_S
    max_connections: int = 0

    def cap(self) -> int:
        return self.max_connections if self.max_connections > 0 else default_max_connections()


class Guarded(Protocol):
    """What the guard needs of a connection (router.fasthttp.WebhookProtocol)."""

    guard_phase: int  # IDLE, HEAD or BODY
    guard_since: float  # loop time the phase began (coarse)

    def guard_busy(self) -> bool: ...
    def guard_close(self) -> None: ...


class Guard:
    """The limits of one event loop's connections (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: ConnectionLimits) -> None:
        self.loop = loop
        self.limits = limits
        self.cap = limits.cap()
        self.tick = min(TICK_S, max(0.02, min(limits.header_timeout, limits.body_timeout) / 4))
        self.now = loop.time()
        self.connections: set[Guarded] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.closed = 0  # connections closed by a timeout or the cap (for tests and logs)

    def opened(self, conn: Guarded) -> None:
        """A new connection: it starts in HEAD (it must send a request), and may push out others."""
        self.now = self.loop.time()
        conn.guard_phase, conn.guard_since = HEAD, self.now
        self.connections.add(conn)
        if self._timer is None:
            self._timer = self.loop.call_at(self.now + self.tick, self._sweep)
        if len(self.connections) > self.cap:
            self._make_room(conn)

    def lost(self, conn: Guarded) -> None:
        self.connections.discard(conn)

    def _make_room(self, newcomer: Guarded) -> None:
        """Close the connections idle longest, down a little under the cap (so that a stream of
        new connections does not scan all of them each time)."""
        excess = len(self.connections) - self.cap + max(1, self.cap // 64)
        candidates: Iterable[Guarded] = (
            c for c in self.connections if c is not newcomer and not c.guard_busy()
        )
        for conn in heapq.nsmallest(excess, candidates, key=lambda c: c.guard_since):
            self._close(conn)

    def _close(self, conn: Guarded) -> None:
        self.connections.discard(conn)
        self.closed += 1
        conn.guard_close()

    def _sweep(self) -> None:
        self._timer = None
        self.now = now = self.loop.time()
        head, body = now - self.limits.header_timeout, now - self.limits.body_timeout
        late = [
            c
            for c in self.connections
            if (c.guard_phase == HEAD and c.guard_since <= head)
            or (c.guard_phase == BODY and c.guard_since <= body)
        ]
        for conn in late:
            if not conn.guard_busy():
                self._close(conn)
        if self.connections:
            self._timer = self.loop.call_at(now + self.tick, self._sweep)


# one per event loop (tests run several servers, each on its own loop, in one process)
_GUARDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Guard] = weakref.WeakKeyDictionary()


def guard_for(loop: asyncio.AbstractEventLoop, limits: ConnectionLimits) -> Guard:
    guard = _GUARDS.get(loop)
    if guard is None or guard.limits != limits:
        guard = _GUARDS[loop] = Guard(loop, limits)
    return guard
