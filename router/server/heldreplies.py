"""Replies held until the event loop's next turn, so the replies of one turn go out
together, and the calls they answered are recorded (metrics, decision log) after the writes.
One Held per event loop. Part of the webhook's fast path (fasthttp.py). [I/O]"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol


class Releasable(Protocol):
    def release(self) -> None: ...


class Recorder(Protocol):
    def record_answered(self) -> None: ...


class Held:
    """The connections of one event loop with replies held until the loop's next turn, and
    the servers whose answered calls are recorded (metrics, decision log) after them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.protocols: list[Releasable] = []
        self.servers: list[Recorder] = []
        self.armed = False

    def _arm(self) -> None:
        if not self.armed:
            # call_soon runs after this turn's I/O callbacks: every ready connection has
            # been read and answered by then. It also runs before any task step scheduled
            # later, so a reply uvicorn writes from a task never overtakes a held one.
            self.loop.call_soon(self.release)
            self.armed = True

    def add(self, protocol: Releasable) -> None:
        self._arm()
        self.protocols.append(protocol)

    def record(self, server: Recorder) -> None:
        self._arm()
        if server not in self.servers:
            self.servers.append(server)

    def release(self) -> None:
        self.armed = False
        protocols, self.protocols = self.protocols, []
        for protocol in protocols:
            protocol.release()
        # After the writes: with one connection the client already reads its reply while
        # the line is logged, and the call's round trip is shorter by that much.
        servers, self.servers = self.servers, []
        for server in servers:
            server.record_answered()


# one per event loop (tests run several servers, each on its own loop, in one process)
HELD: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Held] = weakref.WeakKeyDictionary()
