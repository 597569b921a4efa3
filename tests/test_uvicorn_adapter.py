"""router.server.uvicorn_adapter: the uvicorn internals it relies on are still there, in the shape
it uses. A failure here means: the adapter needs work for this uvicorn (see its docstring)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.supervisors.multiprocess import Multiprocess

from router.server import uvicorn_adapter
from router.server.connguard import BODY, HEAD
from router.server.fasthttp import WebhookProtocol

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


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param(b"Content-Type", b"application/json", id="plain"),
        pytest.param(b"X-VAPI-SECRET", b"s3cret \t ", id="trailing-ows"),
        pytest.param(b"Expect", b"100-Continue", id="expect-100"),
        pytest.param(b"expect", b"100-continue\t", id="expect-100-ows"),
        pytest.param(b"Expect", b"200-ok", id="other-expect"),
        pytest.param(b"Host", b" a.example ", id="leading-ows-kept"),
        pytest.param(b"X-Empty", b"", id="empty"),
    ],
)
def test_the_fast_paths_on_header_is_uvicorns(name: bytes, value: bytes) -> None:
    """WebhookProtocol.on_header repeats uvicorn's instead of calling it (it runs per header):
    the same headers and Expect flag, and nothing after the body's start (trailers)."""
    theirs = SimpleNamespace(headers=[], expect_100_continue=False)
    ours = SimpleNamespace(headers=[], expect_100_continue=False, guard_phase=HEAD)
    HttpToolsProtocol.on_header(theirs, name, value)  # type: ignore[arg-type]
    WebhookProtocol.on_header(ours, name, value)  # type: ignore[arg-type]
    assert (ours.headers, ours.expect_100_continue) == (theirs.headers, theirs.expect_100_continue)
    ours.guard_phase = BODY
    WebhookProtocol.on_header(ours, name, value)  # type: ignore[arg-type]
    assert ours.headers == theirs.headers
