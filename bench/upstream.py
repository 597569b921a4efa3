"""`python -m bench.upstream PORT [DELAY_MS]`: a settings.forward upstream that counts. [bench]

A raw uvloop Protocol server (no framework, so the upstream is never the bottleneck of the
forward section): every POST is answered `200` with a small JSON body after DELAY_MS
(0: at once), and counted; `GET /count` answers `{"posts": N}` at once. Requests are split
by their head and content-length, as bench.bareapp's raw server does.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

from bench.bareapp import split_requests

REPLY = b'{"results":[{"name":"lookup","toolCallId":"t-1","result":"done"}]}'


def _response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


_POST_REPLY = _response(REPLY)


class _Upstream(asyncio.Protocol):
    posts = 0  # every connection's POSTs, for GET /count

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        heads, self.buf = split_requests(self.buf + data)
        out = []
        posted = False
        for head in heads:
            if head.startswith(b"post"):
                _Upstream.posts += 1
                posted = True
                out.append(_POST_REPLY)
            else:
                out.append(_response(b'{"posts":%d}' % _Upstream.posts))
        if out and self.transport is not None:
            reply = b"".join(out)
            if self.delay_s and posted:  # a batch with a POST waits, in order
                asyncio.get_running_loop().call_later(self.delay_s, self._write, reply)
            else:
                self.transport.write(reply)

    def _write(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)


async def _serve(port: int, delay_ms: float) -> None:
    server = await asyncio.get_running_loop().create_server(
        lambda: _Upstream(delay_ms / 1000), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m bench.upstream PORT [DELAY_MS]")
    uvloop.run(_serve(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) == 3 else 0.0))
