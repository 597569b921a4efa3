"""router.server.fasthttp: the WebhookProtocol's own rules, on a real uvicorn on 127.0.0.1 with
raw sockets. Which requests it answers itself (the fast path) and which it leaves to
uvicorn; when the fast path is off for the whole server; the fast path's 413 and what then
happens to the connection; chunked trailers never count as headers; a webhook that raises.

That both protocols behave the same on the wire (framing, keep-alive, pipelining, limits)
is tests/test_http_wire.py, whose client and requests this file reuses.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from crmserver import CrmServer
from serverutil import HMAC_SECRET, SECRET, InProcess, hmac_headers
from test_http_wire import (
    CLOSE_HEADER_NAMES,
    HOST,
    NOT_JSON,
    TOO_LARGE,
    UNAUTHORIZED,
    WEBHOOK,
    Exchange,
    Response,
    Wire,
    auth,
    call,
    check_default_headers,
    echo,
    encode,
    exchange_all,
    get,
    needs_crm,
    policy,
    request,
    split,
)
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from router.server.app import RouterApp
from router.server.fasthttp import WebhookProtocol, find_router
from router.server.http import MAX_BODY


class Recording(WebhookProtocol):
    """WebhookProtocol that notes, per request, whether it took the fast path."""

    taken: ClassVar[list[bool]] = []

    def _takes_fast_path(self) -> bool:
        fast = super()._takes_fast_path()
        Recording.taken.append(fast)
        return fast


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    with CrmServer() as server:
        yield server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, crm: CrmServer) -> Iterator[InProcess]:
    with InProcess(tmp_path_factory.mktemp("fasthttp"), policy(crm.url_template), http=Recording) as server:
        yield server


@pytest.fixture
def srv(served: InProcess, crm: CrmServer) -> InProcess:
    crm.reset()
    crm.slow_ms = 20
    Recording.taken.clear()
    return served


def _config_of(srv: InProcess) -> Any:
    assert srv._uvicorn is not None
    return srv._uvicorn.config


# --- which requests take the fast path --------------------------------------------------------

UPGRADE = [
    ("connection", "Upgrade, HTTP2-Settings"),
    ("upgrade", "h2c"),
    ("http2-settings", "AAMAAABkAAQAAP__"),
]


def _closing(exchange: Exchange) -> Exchange:
    exchange.names = CLOSE_HEADER_NAMES
    return exchange


@pytest.mark.parametrize(
    ("requests", "expected"),
    [
        pytest.param([lambda crm: echo("plain")], [True], id="post-to-the-webhook"),
        pytest.param([lambda crm: echo("query", path=WEBHOOK + "?x=1")], [True], id="query-string-ignored"),
        pytest.param([lambda crm: _closing(echo("one-oh", version="1.0"))], [True], id="http-1.0"),
        pytest.param([lambda crm: needs_crm(crm)], [True], id="waits-for-the-crm"),
        pytest.param(
            [lambda crm: echo("percent", path="/webhook/%76api")], [False], id="percent-encoded-path-uvicorn"
        ),
        pytest.param(
            [lambda crm: echo("absolute", path=f"http://{HOST}{WEBHOOK}")],
            [False],
            id="absolute-form-uvicorn",
        ),
        pytest.param(
            [
                lambda crm: Exchange(
                    echo().data.replace(b"POST /webhook/vapi ", b"POST /webhook/vapi/ "),
                    307,
                    body=b"",
                    names=None,
                )
            ],
            [False],
            id="trailing-slash",
        ),
        pytest.param(
            [lambda crm: Exchange(get(WEBHOOK), 405, body=b"Method Not Allowed", names=None)],
            [False],
            id="get",
        ),
        pytest.param(
            [lambda crm: Exchange(request("POST", "/healthz", headers=auth(), body=b"{}"), 405, names=None)],
            [False],
            id="post-elsewhere",
        ),
        pytest.param(
            [
                lambda crm: Exchange(
                    echo().data.replace(
                        b"\r\n\r\n",
                        b"\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in UPGRADE) + b"\r\n",
                        1,
                    ),
                    400,
                    body=NOT_JSON,
                )
            ],
            [False],
            id="upgrade-asked",  # README: uvicorn drops the body of an h2c upgrade: 400
        ),
        pytest.param(
            [lambda crm: echo("first"), lambda crm: echo("second")],
            [True, True],
            id="pipelined-behind-a-reply",
        ),
        pytest.param(
            [lambda crm: needs_crm(crm, "slow"), lambda crm: echo("behind"), lambda crm: echo("then")],
            [True, False, False],
            id="pipelined-behind-a-crm-wait",
        ),
        pytest.param(
            [lambda crm: echo("before"), lambda crm: needs_crm(crm, "after")],
            [True, True],
            id="crm-wait-behind-a-reply",
        ),
    ],
)
def test_which_requests_take_the_fast_path(
    srv: InProcess, crm: CrmServer, requests: list[Callable[[CrmServer], Exchange]], expected: list[bool]
) -> None:
    """The fast path answers POSTs to the webhook path (query string ignored) unless a reply
    before it is still owed; everything else gets uvicorn's own path, and the right answer."""
    exchanges = [make(crm) for make in requests]
    with Wire(srv.port) as wire:
        exchange_all(wire, exchanges, pipelined=True)
    assert Recording.taken == expected


@pytest.mark.parametrize(
    ("setting", "value"),
    [pytest.param("root_path", "/base", id="root-path"), pytest.param("limit_concurrency", 1000, id="limit")],
)
def test_uvicorn_options_the_fast_path_does_not_implement_turn_it_off(
    srv: InProcess, setting: str, value: object
) -> None:
    """A connection opened while uvicorn has a root_path or a concurrency limit is served by
    uvicorn's path (the protocol reads the config when a connection opens)."""
    config = _config_of(srv)
    saved = getattr(config, setting)
    setattr(config, setting, value)
    try:
        with Wire(srv.port) as wire:
            exchange_all(wire, [echo(setting)], pipelined=False)
    finally:
        setattr(config, setting, saved)
    with Wire(srv.port) as wire:
        exchange_all(wire, [echo("restored")], pipelined=False)
    assert Recording.taken == [False, True]


def _signed_url_env() -> dict[str, str]:
    return {"VAPI_HMAC_SECRET": HMAC_SECRET, "VAPI_HMAC_PAYLOAD": "{url}|{timestamp}|{body}"}


@pytest.mark.parametrize(
    ("env", "path"),
    [
        pytest.param(_signed_url_env(), WEBHOOK, id="hmac-signs-the-url"),
        pytest.param(None, "/webhook/vapí", id="non-ascii-path"),
    ],
)
def test_servers_the_fast_path_cannot_serve(tmp_path: Path, env: dict[str, str] | None, path: str) -> None:
    """An HMAC over the URL needs the URL rebuilt per call, and a non-ASCII path the decoded
    path: both servers answer the webhook on uvicorn's path."""
    with InProcess(
        tmp_path, policy("http://127.0.0.1:9/c?phone=${caller}"), env=env, path=path, http=Recording
    ) as served:
        Recording.taken.clear()
        quoted = urllib.parse.quote(path)
        body = encode(call("+14155552001", "signed"))
        if env is None:
            headers = auth()
        else:
            url = f"http://{HOST}{quoted}"
            headers = list(hmac_headers(body, payload_format=f"{url}|{{timestamp}}|{{body}}").items())
        with Wire(served.port) as wire:
            wire.send(request("POST", quoted, headers=headers, body=body))
            response = wire.read()
    assert (response.status, response.json()["assistantOverrides"]["variableValues"]["call"]) == (
        200,
        "signed",
    )
    assert Recording.taken == [False]


def test_find_router_looks_through_middleware_wrappers() -> None:
    class Wrapper:
        def __init__(self, app: object) -> None:
            self.app = app

    router = RouterApp()
    wrapped: object = router
    for _ in range(7):
        wrapped = Wrapper(wrapped)
    assert find_router(wrapped) is router
    assert find_router(Wrapper(wrapped)) is None  # more than 8 layers: not looked for
    assert find_router(Wrapper(object())) is None


# --- the 413 on the fast path ------------------------------------------------------------------


def _over_the_limit(extra: list[tuple[str, str]]) -> bytes:
    head = request("POST", WEBHOOK, headers=[*auth(), *extra], body=b"")
    return head.replace(b"content-length: 0", b"content-length: %d" % (MAX_BODY + 1))


def _check_413(response: Response, *, closes: bool) -> None:
    assert (response.status, response.reason, response.body) == (413, "Request Entity Too Large", TOO_LARGE)
    assert response.names == (
        CLOSE_HEADER_NAMES if closes else sorted(set(CLOSE_HEADER_NAMES) - {"connection"})
    )
    assert response.header("connection") == ("close" if closes else None)
    check_default_headers(response)


def test_a_declared_body_over_the_limit_is_read_and_dropped_and_the_connection_kept(srv: InProcess) -> None:
    """README: the rest of the body is read and dropped; the connection stays open."""
    with Wire(srv.port) as wire:
        wire.send(_over_the_limit([]))
        _check_413(wire.read(), closes=False)
        after = echo("after-413")
        for piece in split(b" " * (MAX_BODY + 1), 256 * 1024):
            wire.send(piece)
        wire.send(after.data)
        after.check(wire.read())
    assert Recording.taken == [True, True]


def test_after_expect_100_continue_a_413_closes_the_connection(srv: InProcess) -> None:
    """README: a client that asked `Expect: 100-continue` will not send the body: no 100,
    a 413 that says connection: close, and the connection closed."""
    with Wire(srv.port) as wire:
        wire.send(_over_the_limit([("expect", "100-continue")]))
        _check_413(wire.read(), closes=True)
        assert wire.state() == "closed"
    assert Recording.taken == [True]


def test_a_streamed_body_over_the_limit_gets_413_and_the_connection_kept(srv: InProcess) -> None:
    head = request("POST", WEBHOOK, headers=auth(), chunks=[b"x"]).partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    with Wire(srv.port) as wire:
        wire.send(head)
        for piece in split(b" " * MAX_BODY, 256 * 1024):
            wire.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        assert not wire.readable()
        wire.send(b"1\r\n \r\n")  # the byte too many: refused before the body ends
        _check_413(wire.read(), closes=False)
        wire.send(b"2\r\n  \r\n0\r\n\r\n")  # the rest, dropped
        exchange_all(wire, [echo("after-chunked-413")], pipelined=False)
    assert Recording.taken == [True, True]


# --- trailers ---------------------------------------------------------------------------------------


def _chunked_with_trailer(path: str, headers: list[tuple[str, str]], trailer: str, call_id: str) -> bytes:
    body = encode(call("+14155552002", call_id))
    head = request("POST", path, headers=headers, chunks=[b"x"]).partition(b"\r\n\r\n")[0]
    return head + b"\r\n\r\n" + b"%x\r\n%s\r\n0\r\n%s\r\n\r\n" % (len(body), body, trailer.encode())


@pytest.mark.parametrize(
    ("path", "fast"),
    [pytest.param(WEBHOOK, True, id="fast-path"), pytest.param("/webhook/%76api", False, id="uvicorn-path")],
)
def test_a_secret_in_a_trailer_does_not_authenticate(srv: InProcess, path: str, fast: bool) -> None:
    """RFC 9110 §6.5.1: a trailer is never a header. (uvicorn's own protocol lets this one in.)"""
    data = _chunked_with_trailer(
        path, [("content-type", "application/json")], f"x-vapi-secret: {SECRET}", "trailer-auth"
    )
    with Wire(srv.port) as wire:
        exchange_all(wire, [Exchange(data, 401, body=UNAUTHORIZED, label="trailer")], pipelined=False)
    assert Recording.taken == [fast]


@pytest.mark.parametrize("path", [WEBHOOK, "/webhook/%76api"], ids=["fast-path", "uvicorn-path"])
def test_a_trailer_does_not_add_to_the_headers(srv: InProcess, path: str) -> None:
    data = _chunked_with_trailer(path, auth(), "x-vapi-secret: wrong", "trailer-extra")
    with Wire(srv.port) as wire:
        wire.send(data)
        response = wire.read()
    assert response.status == 200
    assert response.json()["assistantOverrides"]["variableValues"]["call"] == "trailer-extra"


def test_uvicorn_alone_would_take_the_trailer_as_a_header(tmp_path: Path) -> None:
    """Why the rule above is the protocol's own: the plain httptools protocol, same request."""
    data = _chunked_with_trailer(
        WEBHOOK, [("content-type", "application/json")], f"x-vapi-secret: {SECRET}", "plain-uvicorn"
    )
    plain = InProcess(tmp_path, policy("http://127.0.0.1:9/c?phone=${caller}"), http=HttpToolsProtocol)
    with plain, Wire(plain.port) as wire:
        wire.send(data)
        assert wire.read().status == 200


# --- a webhook that raises -------------------------------------------------------------------------


def _raise(*args: object, **kwargs: object) -> Any:
    raise RuntimeError("a bug in the webhook")


def _answer_raising(srv: InProcess, monkeypatch: pytest.MonkeyPatch, path: str) -> tuple[Response, str]:
    monkeypatch.setattr(srv.server, "answer_now", _raise)
    with Wire(srv.port) as wire:
        wire.send(echo("raises", path=path).data)
        response = wire.read()
        state = wire.state()
    monkeypatch.undo()
    return response, state


def test_a_webhook_that_raises_gets_500_and_the_connection_closes(
    srv: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    response, state = _answer_raising(srv, monkeypatch, WEBHOOK)
    assert (response.status, response.reason, response.body) == (
        500,
        "Internal Server Error",
        b"Internal Server Error",
    )
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert response.header("connection") == "close"
    assert state == "closed"
    assert Recording.taken == [True]
    still = echo("after-500")
    with Wire(srv.port) as wire:
        exchange_all(wire, [still], pipelined=False)


def test_the_fast_path_500_is_the_one_uvicorn_sends(srv: InProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module promises to answer a raising webhook "as uvicorn does when an ASGI app raises"."""
    fast, _ = _answer_raising(srv, monkeypatch, WEBHOOK)
    slow, _ = _answer_raising(srv, monkeypatch, "/webhook/%76api")
    assert Recording.taken == [True, False]
    assert (fast.status, fast.names, fast.body) == (slow.status, slow.names, slow.body)
    check_default_headers(fast)
