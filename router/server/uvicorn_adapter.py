"""Every use of uvicorn's internals, in one place, for the webhook's fast path and `--workers`. [I/O]

The fast path (server.fasthttp) answers the webhook inside uvicorn's httptools protocol,
which has no public extension interface; the workers' supervisor needs SIGHUP to reload
policies in place, which `Multiprocess` does not offer. What is used here, and only here:
`HttpToolsProtocol` (subclassed; its `_start_asgi_task`, `pipeline`, `flow`, `server_state`),
`RequestResponseCycle` (built for a request that must wait for the CRM), `STATUS_LINE`,
and `Multiprocess` (subclassed for `handle_hup`). uvicorn is pinned to the minor version
`SUPPORTED` names; tests/test_uvicorn_adapter.py checks each of these against the installed
uvicorn, and `make test-latest` runs it first on the newest uvicorn.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.supervisors.multiprocess import Multiprocess

__all__ = ["STATUS_LINE", "SUPPORTED", "HttpToolsProtocol", "run_workers", "start_cycle", "version_problem"]

SUPPORTED = "0.55"  # the minor version the adapter was written and tested against (requirements.lock)


def version_problem(version: str = uvicorn.__version__) -> str | None:
    """Why the installed uvicorn may not fit this adapter, or None."""
    minor = ".".join(version.split(".")[:2])
    if minor == SUPPORTED:
        return None
    return (
        f"uvicorn {version} is not the {SUPPORTED}.x router/server/uvicorn_adapter.py was written for: "
        "check the adapter against uvicorn's httptools_impl.py and supervisors/multiprocess.py"
    )


def start_cycle(
    protocol: HttpToolsProtocol,
    scope: Any,
    *,
    keep_alive: bool,
    on_response: Callable[[], None],
    app: Any,
) -> None:
    """Run `app` for the request `protocol` is reading, in a uvicorn request cycle, as uvicorn
    would: a request pipelined behind it waits for it. The body has been read already."""
    cycle = RequestResponseCycle(
        scope=scope,
        transport=protocol.transport,
        flow=protocol.flow,
        logger=protocol.logger,
        access_logger=protocol.access_logger,
        access_log=protocol.access_log,
        default_headers=protocol.server_state.default_headers,
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=on_response,
    )
    cycle.more_body = False
    protocol.cycle = cycle
    protocol._start_asgi_task(cycle, app)


def start_pipelined(protocol: HttpToolsProtocol) -> bool:
    """Start the next pipelined request, as uvicorn's on_response_complete does; whether there was one."""
    if not protocol.pipeline:
        return False
    cycle, app = protocol.pipeline.pop()
    protocol._start_asgi_task(cycle, app)
    return True


def run_workers(config: uvicorn.Config, on_hup: Callable[[list[Any]], None]) -> None:
    """uvicorn's worker supervisor, with `on_hup(processes)` in place of its SIGHUP handling."""

    class Workers(Multiprocess):
        def handle_hup(self) -> None:
            on_hup(self.processes)

    sockets = [config.bind_socket()]
    if "target" in inspect.signature(Multiprocess.__init__).parameters:  # uvicorn before 0.55
        Workers(config, target=uvicorn.Server(config).run, sockets=sockets).run()  # type: ignore[call-arg]
    else:
        Workers(config, sockets=sockets).run()
