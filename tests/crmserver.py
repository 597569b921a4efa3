"""A real local HTTP CRM for tests: uvicorn on 127.0.0.1, a free port, a background thread.

Behaviour is switched at runtime, globally or per number, to produce every outcome the router
must survive: ok, not_found, slow, hang, 500, garbage, drop. Used by the CRM and server tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs

import uvicorn

Mode = Literal["ok", "not_found", "slow", "hang", "500", "garbage", "drop"]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the CRM received it; header names lower-cased, `names` keeps repeats."""

    path: str
    phone: str
    headers: dict[str, str]
    names: tuple[str, ...]


def refused_url() -> str:
    """A base URL on a free port where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class ThreadedUvicorn(uvicorn.Server):
    """uvicorn that reports readiness through a threading.Event instead of being polled."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.loop = asyncio.get_running_loop()
        self.ready.set()


def start_in_thread(
    config: uvicorn.Config, sock: socket.socket, timeout_s: float
) -> tuple[ThreadedUvicorn, threading.Thread, bool]:
    """Serve `config` on the bound `sock` in a daemon thread; (server, thread, started in time)."""
    ready = threading.Event()
    server = ThreadedUvicorn(config, ready)
    sock.listen(128)
    thread = threading.Thread(target=server.run, args=([sock],), daemon=True)
    thread.start()
    return server, thread, ready.wait(timeout_s)


def serve_in_thread(app: Any, sock: socket.socket, what: str) -> tuple[ThreadedUvicorn, threading.Thread]:
    """A plain ASGI test server (h11, asyncio, quiet) for `app` on the bound `sock`, in a
    daemon thread; raises if it is not serving within 5 s. `what` names it in that error."""
    config = uvicorn.Config(
        app,
        http="h11",  # a test peer may reach the transport through h11's cycle (CrmServer's "drop")
        loop="asyncio",
        lifespan="off",
        interface="asgi3",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server, thread, started = start_in_thread(config, sock, 5)
    if not started:
        raise RuntimeError(f"{what} did not start within 5 s")
    return server, thread


class CrmServer:
    """`with CrmServer() as crm:` serves GET /contacts?phone=NUMBER until the block ends.

    In "ok" mode a number in `contacts` answers 200 `{"contact": C, "results": [C]}` (the
    list lets tests use index paths); an unknown number answers 404. `mode` is the global
    behaviour, `modes[number]` overrides it for one number, `slow_ms` is the delay of "slow".
    `requests` counts requests received and `seen` records them.
    """

    def __init__(self) -> None:
        self.contacts: dict[str, dict[str, Any]] = {}
        self.mode: Mode = "ok"
        self.modes: dict[str, Mode] = {}
        self.slow_ms = 100
        self.requests = 0
        self.seen: list[Seen] = []
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it h11's two writes per response meet delayed ACKs (+40 ms a request).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.url_template = self.base_url + "/contacts?phone=${caller}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._server: ThreadedUvicorn | None = None

    def __enter__(self) -> CrmServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start serving; returns once the socket accepts connections."""
        self._server, self._thread = serve_in_thread(self._app, self._sock, "the test CRM")
        self._loop = self._server.loop
        self._call(self._release_all)

    def stop(self) -> None:
        """Release hanging requests, then stop; prompt even while requests hang (~0.15 s)."""
        if self._server is not None and self._thread is not None:
            self._call(self._release_all)
            self._server.should_exit = True
            self._thread.join(5)
        self._sock.close()  # also when never started: the port is bound from construction
        self._server = self._thread = self._loop = None

    def reset(self) -> None:
        """Back to a fresh state between tests; requests still hanging from a test end now."""
        self.contacts.clear()
        self.modes.clear()
        self.mode = "ok"
        self.slow_ms = 100
        self.requests = 0
        self.seen.clear()
        self._call(self._release_all)

    def _call(self, fn: Callable[[], None]) -> None:
        """Run fn on the server's loop and wait for it, so the next request sees its effect."""
        if self._loop is None:
            return

        async def run() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(5)

    def _release_all(self) -> None:
        if self._release is not None:
            self._release.set()
        self._release = asyncio.Event()

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http" and self._release is not None
        release = self._release
        phone = parse_qs(scope["query_string"].decode()).get("phone", [""])[0]
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        self.requests += 1
        self.seen.append(Seen(scope["path"], phone, dict(pairs), tuple(k for k, _ in pairs)))
        mode = self.modes.get(phone, self.mode)
        if mode == "slow":
            # Interruptible by stop/reset so that shutdown never waits out the delay.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), self.slow_ms / 1000)
            mode = "ok"
        if mode == "hang":
            await release.wait()
            await _drop(receive, send)
        elif mode == "drop":
            await _drop(receive, send)
        elif mode == "500":
            await _respond(send, 500, b'{"error": "internal"}')
        elif mode == "garbage":
            await _respond(send, 200, b"<html>Service Unavailable</html>", "text/html")
        elif mode == "ok" and phone in self.contacts:
            contact = self.contacts[phone]
            await _respond(send, 200, json.dumps({"contact": contact, "results": [contact]}).encode())
        else:
            await _respond(send, 404, b'{"error": "no such contact"}')


async def _respond(send: Send, status: int, body: bytes, content_type: str = "application/json") -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drop(receive: Receive, send: Send) -> None:
    """Close the TCP connection without a byte of response: a real dropped connection.

    ASGI has no "close" message (returning without a response makes uvicorn send a 500), so
    reach the transport through h11's request cycle, then wait until uvicorn sees the
    disconnect so it does not try to answer.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise RuntimeError("uvicorn's h11 cycle no longer exposes its transport")
    transport.close()
    while (await receive())["type"] != "http.disconnect":
        pass
