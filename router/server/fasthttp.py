"""WebhookProtocol: uvicorn's httptools protocol with the webhook answered in the protocol. [I/O]

uvicorn serves an ASGI request by building a scope, a request cycle, an event and a task,
and by checking every response header again; for the one request this server exists for,
that machinery costs more than routing the call. So a POST to the webhook path is parsed
here and, when its answer needs no waiting (no CRM, the file CRM or a cached record), the
reply is written from the parser's callback: no task, no ASGI messages.

Everything else keeps uvicorn's own path: other paths and methods, a request pipelined
behind one still being answered, a connection whose writes are paused, a `root_path`,
`limit_concurrency`, an HMAC that signs the URL. The one change on every path is the
keep-alive timer (`on_response_complete`): the same rule, one timer per idle stretch. An
answer that waits for an HTTP CRM (or for a token's key from a JWKS) is handed to a uvicorn
request cycle, which keeps pipelined requests in order and knows when the client has gone.

Replies are held until the event loop has read every connection that was ready, then
written together (`Held`, heldreplies.py). On loopback with many connections, a reply written the moment
it is ready wakes an idle client for each reply, and the wake-ups, not the routing, cost
most of the CPU; written together, one wake-up serves many replies. A reply waits at most
one turn of the loop: the time it takes to answer the requests that arrived with it. With
one connection open there is nothing to write together with, and the reply goes at once.
Either way the call's metrics and decision-log line are recorded after the writes.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Coroutine
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from router.server.app import RouterApp, Server
from router.server.connguard import BODY, HEAD, IDLE, ConnectionLimits, guard_for
from router.server.heldreplies import HELD, Held
from router.server.http import ARRIVED, MAX_BODY, TOO_LARGE, send_json, too_large
from router.server.uvicorn_adapter import STATUS_LINE, HttpToolsProtocol, start_cycle, start_pipelined

_JSON_HEADERS = b"content-type: application/json\r\n"
# struct tcp_info (linux/tcp.h): 8 one-byte fields, then u32s from rto on;
# tcpi_last_data_recv is the twelfth u32 (ms since the last data arrived)
_TCP_INFO_SIZE = 104
_LAST_DATA_RECV = 52
_CLOSE = b"connection: close\r\n"
_ERROR = b"Internal Server Error"


# the status line and uvicorn's default headers (date, server) of the last reply written:
# uvicorn replaces the list once a second, when the date changes
_HEADS: dict[int, tuple[list[tuple[bytes, bytes]], bytes]] = {}


def _head(status: int, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A reply's status line and default headers, up to the value of its content-length."""
    cached = _HEADS.get(status)
    if cached is not None and cached[0] is default_headers:
        return cached[1]
    out = [STATUS_LINE[status]]
    for name, value in default_headers:
        out += (name, b": ", value, b"\r\n")
    out.append(b"content-length: ")
    head = b"".join(out)
    _HEADS[status] = (default_headers, head)
    return head


def find_router(app: Any) -> RouterApp | None:
    """The RouterApp inside uvicorn's middleware wrappers (proxy headers, message logger)."""
    for _ in range(8):
        if isinstance(app, RouterApp):
            return app
        app = getattr(app, "app", None)
    return None


class WebhookProtocol(HttpToolsProtocol):
    """`uvicorn --http router.server.fasthttp:WebhookProtocol`; behaves as `--http httptools` except
    that it answers webhook POSTs itself (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        router = find_router(self.app)
        self._router: Server | None = None
        self._path = b""
        if (
            router is not None
            and router.webhook_endpoint is not None
            and not self.root_path
            and self.limit_concurrency is None
            and not router.webhook_endpoint.server.signs_url
            and router.webhook_path.isascii()
        ):
            self._router = router.webhook_endpoint.server
            self._path = router.webhook_path.encode("ascii")
        # the webhook request being read here, when it takes the fast path
        self._fast = False
        self._discard = False  # a refused body: ignore the rest of it
        self._chunks: list[bytes] = []
        self._size = 0
        self._keep_alive = True
        self._started = 0.0
        self._began = 0.0
        # replies written by this protocol and not yet handed to the transport (Held)
        self._replies: list[bytes] = []
        # keep-alive: since when the connection has been idle (None: a request is under way),
        # and the one timer that checks it (see on_response_complete)
        self._idle_since: float | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        held = HELD.get(self.loop)
        if held is None:
            held = HELD[self.loop] = Held(self.loop)
        self._held = held
        # head and body timeouts, the connection cap (router.connguard)
        limits = router.webhook_endpoint.server.limits if router and router.webhook_endpoint else None
        self._guard = guard_for(self.loop, limits or ConnectionLimits())
        self.guard_phase = IDLE
        self.guard_since = 0.0

    # ------------------------------------------------------------ held replies

    def release(self) -> None:
        """Write the held replies. Also before anything else is written or the connection
        is closed, so that replies leave in the order of their requests."""
        replies = self._replies
        if replies:
            self._replies = []
            if not self.transport.is_closing():
                self.transport.write(replies[0] if len(replies) == 1 else b"".join(replies))

    def _send_now(self, data: bytes) -> None:
        self.release()
        self.transport.write(data)

    def send_400_response(self, msg: str) -> None:
        self.release()
        super().send_400_response(msg)

    def handle_websocket_upgrade(self) -> None:
        self.release()
        super().handle_websocket_upgrade()

    def shutdown(self) -> None:
        self.release()
        if self._fast:  # a webhook body still arriving: answer it, then close
            self._keep_alive = False
            return
        super().shutdown()

    def timeout_keep_alive_handler(self) -> None:
        self.release()
        super().timeout_keep_alive_handler()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._guard.opened(self)

    def guard_busy(self) -> bool:
        """Whether an answer is being worked out here (a whole request is in): not to be cut off."""
        cycle = self.cycle
        return bool(self.pipeline) or (
            cycle is not None and not cycle.response_complete and not cycle.more_body
        )

    def guard_close(self) -> None:
        """A head or body timeout, or room made for a newer connection: close at once."""
        self.release()
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.lost(self)
        self._replies = []  # nobody to read them
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        super().connection_lost(exc)

    # ------------------------------------------------------------ keep-alive

    def data_received(self, data: bytes) -> None:
        # uvicorn's rule: any byte received stops the keep-alive clock until the next response
        # (a request may begin before the reply to the one before it, and arrive slowly)
        self._idle_since = None
        super().data_received(data)

    def on_response_complete(self) -> None:
        """uvicorn's, except for the keep-alive timer. uvicorn arms a timer after every response
        and cancels it when bytes next arrive, two timer-heap operations per request; here a
        response notes the time, and one timer per idle stretch checks that note when it fires
        (re-armed for what is left when requests came in between). The connection still closes
        `timeout_keep_alive` seconds after its last response, as uvicorn's does."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if start_pipelined(self):
            return
        self._idle_since = now = self.loop.time()
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_at(now + self.timeout_keep_alive, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_timer = None
        since = self._idle_since
        if since is None:  # a request is under way; its response arms the timer again
            return
        end = since + self.timeout_keep_alive
        # uvloop's clock counts whole milliseconds: a timer re-armed for less would fire again
        # at once, over and over, until the clock ticks
        if end - self.loop.time() >= 0.001:
            self._idle_timer = self.loop.call_at(end, self._check_idle)
        else:
            self.timeout_keep_alive_handler()

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self.guard_phase, self.guard_since = HEAD, self._guard.now
        self._began = time.perf_counter()  # a pipelined call's deadline counts from here (ARRIVED)
        self._fast = self._discard = False
        self._length: bytes | None = None
        self._idle_since = None  # not idle (also for a request pipelined behind a fast reply)
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.guard_phase == BODY:  # a chunked body's trailer: never a header (RFC 9110 §6.5.1)
            return
        # uvicorn's own body, not a call to it: four or more calls per request (checked
        # against uvicorn's in tests/test_uvicorn_adapter.py)
        name = name.lower()
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        elif name == b"content-length" and self._length is None:
            self._length = value  # the fast path's size check, without a second scan
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.guard_phase, self.guard_since = BODY, self._guard.now
        if self._takes_fast_path():
            self._begin_fast()
            return
        super().on_headers_complete()
        if self.pipeline:  # queued behind a request still being answered: note when it came
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions[ARRIVED] = self._began

    def on_body(self, body: bytes) -> None:
        if self._discard:
            return
        if not self._fast:
            super().on_body(body)
            return
        self._size += len(body)
        if self._size > MAX_BODY:
            self._refuse_too_large()
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.guard_phase, self.guard_since = IDLE, self._guard.now
        if self._discard:
            return
        if not self._fast:
            super().on_message_complete()
            return
        self._fast = False
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        assert self._router is not None
        self._held.record(self._router)
        try:
            answer = self._router.answer_now(
                "POST",
                "",
                Headers(raw=self.headers),
                body,
                self._started,
                record_later=True,
                arrived=self._arrived,
            )
        except Exception as exc:  # a bug: answer as uvicorn does when an ASGI app raises
            self.logger.error("Exception in the webhook", exc_info=exc)
            self._write_error()
            return
        if isinstance(answer, tuple):
            self._write(*answer)
        else:
            self._hand_over(answer)

    # ------------------------------------------------------------ the fast path

    def _takes_fast_path(self) -> bool:
        parser = self.parser
        return (
            self._router is not None
            and parser.get_method() == b"POST"
            and (self.cycle is None or self.cycle.response_complete)
            and not self.pipeline
            and not self.flow.write_paused
            and not parser.should_upgrade()
            and self.url.partition(b"?")[0] == self._path
        )

    def _begin_fast(self) -> None:
        self._fast = True
        self._started = time.perf_counter()
        self._chunks = []
        self._size = 0
        version = self.parser.get_http_version()
        self._keep_alive = version != "1.0" and self.parser.should_keep_alive()
        self.scope["method"] = "POST"
        if version != "1.1":
            self.scope["http_version"] = version
        if too_large(self._length):
            self._refuse_too_large()
            return
        if self.expect_100_continue:
            self._send_now(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _arrived(self) -> float | None:
        """When this connection's latest bytes reached the kernel (perf_counter time), from
        TCP_INFO's tcpi_last_data_recv (Linux, millisecond resolution); None elsewhere. One
        system call: asked only for an answer that waits for the CRM, whose deadline counts
        from it, since in a burst a request can sit unread for tens of ms."""
        sock = self.transport.get_extra_info("socket")
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
        except (AttributeError, OSError):  # not TCP (a Unix socket), or not Linux
            return None
        if len(info) < _LAST_DATA_RECV + 4:
            return None
        ms: int = struct.unpack_from("I", info, _LAST_DATA_RECV)[0]
        return time.perf_counter() - ms / 1000

    def _refuse_too_large(self) -> None:
        """413; the rest of the body is read and dropped, as uvicorn does, so a client that
        uploads before it reads still gets the answer. A client that sent `Expect:
        100-continue` will not send the body: its connection is closed."""
        self._fast = False
        self._discard = True
        self._chunks = []
        if self.expect_100_continue:
            self._keep_alive = False
        self._write(413, TOO_LARGE)

    def _write(self, status: int, body: bytes) -> None:
        """One response, as uvicorn writes it for `send_json` (default headers first)."""
        head = _head(status, self.server_state.default_headers)
        out = [head, str(len(body)).encode(), b"\r\n", _JSON_HEADERS]
        if not self._keep_alive:
            out.append(_CLOSE)
        out += (b"\r\n", body)
        if self._keep_alive and len(self.connections) > 1:
            if not self._replies:
                self._held.add(self)
            self._replies.append(b"".join(out))
        else:  # alone, there is nothing to write together with: a turn of the loop saved
            self._send_now(b"".join(out))
        if self.access_log:
            self.access_logger.info(
                '%s - "POST %s HTTP/%s" %d',
                f"{self.client[0]}:{self.client[1]}" if self.client else "-",
                self.url.decode("latin-1"),
                self.scope["http_version"],
                status,
            )
        if not self._keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _write_error(self) -> None:
        self._keep_alive = False
        # as uvicorn answers an ASGI app that raised: its default headers (date, server) first
        out = [STATUS_LINE[500]]
        for name, value in self.server_state.default_headers:
            out += (name, b": ", value, b"\r\n")
        out += (b"content-type: text/plain; charset=utf-8\r\n", b"content-length: 21\r\n", _CLOSE)
        out += (b"\r\n", _ERROR)
        self._send_now(b"".join(out))
        self.transport.close()

    def _hand_over(self, answer: Coroutine[Any, Any, tuple[int, bytes]]) -> None:
        """Finish in a uvicorn request cycle: the answer waits for the CRM, and a request that
        is pipelined behind this one must wait for it (uvicorn queues it on this cycle)."""
        scope = self.scope
        raw_path, _, query = self.url.partition(b"?")
        scope["path"], scope["raw_path"], scope["query_string"] = raw_path.decode("ascii"), raw_path, query

        async def reply(scope: Scope, receive: Receive, send: Send) -> None:
            status, body = await answer
            await send_json(send, body, status)

        start_cycle(
            self, scope, keep_alive=self._keep_alive, on_response=self.on_response_complete, app=reply
        )
