"""The baselines the HTTP benchmarks measure the router against. [bench]

`app`: a bare Starlette app whose webhook reads the body and returns a constant reply, served
by the same uvicorn configuration as the router (uvloop, httptools, access log off):
the framework's floor. `python -m bench.bareapp raw PORT`: a raw uvloop Protocol server
that answers every request with a constant reply and no framework at all, to show the
ceiling of the load generator.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

REPLY = b'{"assistantId":"2ccabf54-ccd8-4dff-ae93-e830159c8004"}'


async def webhook(request: Request) -> Response:
    await request.body()  # every webhook reads what it is sent
    return Response(REPLY, media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/webhook/vapi", webhook, methods=["POST"]),
        Route("/healthz", ready, methods=["GET"]),
        Route("/readyz", ready, methods=["GET"]),
    ]
)

_RAW_REPLY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(REPLY)).encode()
    + b"\r\n\r\n"
    + REPLY
)


def split_requests(buf: bytes) -> tuple[list[bytes], bytes]:
    """The lower-cased heads of the whole requests at the start of `buf` (split by the blank
    line and content-length; the load generator sends nothing fancier), and what is left."""
    heads = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            break
        head = buf[:end].lower()
        at = head.find(b"\r\ncontent-length:")
        length = 0
        if at >= 0:
            stop = head.find(b"\r", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else end])
        if len(buf) < end + 4 + length:
            break
        buf = buf[end + 4 + length :]
        heads.append(head)
    return heads, buf


class _Raw(asyncio.Protocol):
    """Counts complete requests by head + content-length and answers each with _RAW_REPLY."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        heads, self.buf = split_requests(self.buf + data)
        if heads and self.transport is not None:
            self.transport.write(_RAW_REPLY * len(heads))


async def _serve_raw(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Raw, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    if sys.argv[1:2] != ["raw"] or len(sys.argv) != 3:
        sys.exit("usage: python -m bench.bareapp raw PORT")
    uvloop.run(_serve_raw(int(sys.argv[2])))
