"""router.server.uvicorn_adapter: the uvicorn internals it relies on are still there, in the shape
it uses. A failure here means: the adapter needs work for this uvicorn (see its docstring)."""

from __future__ import annotations

import inspect

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.supervisors.multiprocess import Multiprocess

from router.server import uvicorn_adapter

ADAPTER_NEEDS_WORK = "router/server/uvicorn_adapter.py needs work for uvicorn " + uvicorn.__version__


def test_the_pinned_minor_is_installed() -> None:
    assert uvicorn_adapter.version_problem() is None, uvicorn_adapter.version_problem()


def test_version_problem_names_the_adapter() -> None:
    assert uvicorn_adapter.version_problem(uvicorn_adapter.SUPPORTED + ".9") is None
    problem = uvicorn_adapter.version_problem("9.1.0")
    assert problem is not None and "uvicorn_adapter.py" in problem and "9.1.0" in problem


def test_the_protocol_hooks_the_fast_path_overrides_exist() -> None:
    for name in (
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "on_body",
        "on_message_complete",
        "on_response_complete",
        "connection_lost",
        "shutdown",
        "timeout_keep_alive_handler",
        "send_400_response",
        "handle_websocket_upgrade",
        "_start_asgi_task",
    ):
        assert callable(getattr(HttpToolsProtocol, name, None)), f"{ADAPTER_NEEDS_WORK}: no {name}"


def test_the_request_cycle_takes_what_start_cycle_passes() -> None:
    params = set(inspect.signature(RequestResponseCycle.__init__).parameters) - {"self"}
    passed = {
        "scope",
        "transport",
        "flow",
        "logger",
        "access_logger",
        "access_log",
        "default_headers",
        "message_event",
        "expect_100_continue",
        "keep_alive",
        "on_response",
    }
    assert params == passed, f"{ADAPTER_NEEDS_WORK}: RequestResponseCycle takes {sorted(params)}"


def test_the_supervisor_has_a_hup_handler_and_processes() -> None:
    assert callable(getattr(Multiprocess, "handle_hup", None)), f"{ADAPTER_NEEDS_WORK}: no handle_hup"
    assert "sockets" in inspect.signature(Multiprocess.__init__).parameters, ADAPTER_NEEDS_WORK


def test_only_the_adapter_imports_uvicorn_internals() -> None:
    from pathlib import Path

    root = Path(uvicorn_adapter.__file__).resolve().parent.parent
    users = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "uvicorn."
        in p.read_text(encoding="utf-8").replace("uvicorn.Config", "").replace("uvicorn.run", "")
        and p.name != "uvicorn_adapter.py"
    )
    assert users == [], f"uvicorn internals outside the adapter: {users}"
