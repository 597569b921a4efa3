"""A real local HTTP server standing in for settings.forward's upstream: ok, slow, hang, 500,
garbage, a status of the test's choosing, and two that never end an answer: flood (as fast as
the socket takes it) and drip (a little at a time)."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Literal

from crmserver import Receive, Send, ThreadedUvicorn, serve_in_thread

Mode = Literal["ok", "slow", "hang", "500", "garbage", "status", "flood", "drip"]
OK_REPLY = b'{"results": [{"name": "lookup", "toolCallId": "t-1", "result": "done"}]}'
CHUNK = b" " * 65536  # flood/drip send JSON whitespace: the answer is never complete
FLOOD_CHUNKS = 1024  # at most 64 MiB per flooded request (the loop is bounded; the reader quits at 1 MiB)
DRIP_S = (0.02, 30.0)  # drip: 1 KiB every 20 ms, for 30 s at most


class Upstream:
    """`with Upstream() as up:` POST / answers by `mode`; `bodies` and `headers` record requests.

    "ok" and "slow" answer 200 `reply`; "status" answers `status` with `reply` (no body if
    empty); flood and drip start a 200 answer and never finish it, each stopping once the
    reader hangs up (or at its bound). `sent` counts the bytes flood and drip wrote."""

    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.slow_ms = 100
        self.reply = OK_REPLY
        self.status = 200
        self.sent = 0
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/vapi"
        self._server: ThreadedUvicorn | None = None
        self._release: asyncio.Event | None = None

    def __enter__(self) -> Upstream:
        self._server, self._thread = serve_in_thread(self._app, self._sock, "the upstream")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._server.loop is not None
        if self._release is not None:
            self._server.loop.call_soon_threadsafe(self._release.set)
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()

    async def _app(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if self._release is None:
            self._release = asyncio.Event()
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        self.bodies.append(json.loads(body))
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        if self.mode == "hang":
            await self._release.wait()
            return
        if self.mode in ("flood", "drip"):
            return await self._endless(receive, send)
        if self.mode == "slow":
            await asyncio.sleep(self.slow_ms / 1000)
        status, reply = 200, self.reply
        if self.mode == "status":
            status = self.status
        elif self.mode == "500":
            status, reply = 500, b'{"error": "internal"}'
        elif self.mode == "garbage":
            reply = b"<html>oops</html>"
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode())]
        if not reply:  # e.g. 204: no body, no length
            headers = []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": reply})

    async def _endless(self, receive: Receive, send: Send) -> None:
        """A 200 whose body never ends: flood writes as fast as the reader reads (the socket's
        back-pressure paces it), drip 1 KiB at a time; both stop when the reader hangs up."""
        assert self._release is not None
        gone = asyncio.ensure_future(receive())  # http.disconnect, once the reader hangs up
        headers = [(b"content-type", b"application/json")]  # no length: chunked, open-ended
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"[", "more_body": True})
        chunk, wait = (CHUNK, 0.0) if self.mode == "flood" else (CHUNK[:1024], DRIP_S[0])
        count = FLOOD_CHUNKS if self.mode == "flood" else int(DRIP_S[1] / DRIP_S[0])
        try:
            for _ in range(count):
                if gone.done() or self._release.is_set():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self.sent += len(chunk)
                await asyncio.sleep(wait)  # even 0: lets a hang-up be noticed before the next write
        finally:
            gone.cancel()
