"""`python -m bench.crmhang PORT`: a CRM that never answers: it accepts, reads and stays silent. [bench]

The worst CRM for the deadline: connections succeed (so no quick "refused" error) and
requests are read, but no byte ever comes back; only the router's own deadline ends a lookup.
"""

from __future__ import annotations

import asyncio
import sys


class _Silent(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass  # read and drop: the sender's buffers never fill, it just waits


async def _serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Silent, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.crmhang PORT")
    asyncio.run(_serve(int(sys.argv[1])))
