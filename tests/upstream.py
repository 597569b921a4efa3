"""A real local HTTP server standing in for settings.forward's upstream: ok, slow, hang, 500, garbage."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Literal

from crmserver import Receive, Send, ThreadedUvicorn, serve_in_thread

Mode = Literal["ok", "slow", "hang", "500", "garbage"]


class Upstream:
    """`with Upstream() as up:` POST / answers by `mode`; `bodies` and `headers` record requests."""

    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.slow_ms = 100
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
        if self.mode == "slow":
            await asyncio.sleep(self.slow_ms / 1000)
        status, reply = 200, b'{"results": [{"name": "lookup", "toolCallId": "t-1", "result": "done"}]}'
        if self.mode == "500":
            status, reply = 500, b'{"error": "internal"}'
        elif self.mode == "garbage":
            reply = b"<html>oops</html>"
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": reply})
