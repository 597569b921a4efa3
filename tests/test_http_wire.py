"""The router's HTTP/1.1 on the wire, with raw sockets: what a client sees byte for byte.

It proves that the server answers the webhook correctly whatever the framing and connection
handling: keep-alive, HTTP/1.0 and `Connection: close`, pipelining (replies in request order,
the webhook mixed with other endpoints and with answers that wait for a slow HTTP CRM), bodies
split across many writes, chunked bodies, `Expect: 100-continue`, the 1 MiB body limit (declared
or streamed, and its exact boundary), the fixed error replies on a connection that stays usable,
malformed HTTP, clients that leave mid-request, paths with a query string or a trailing slash,
and methods other than POST. The fixed replies are compared byte for byte, the default headers
by name and value.

Every case runs once per HTTP protocol the router can be served with: uvicorn's httptools
protocol, and the router's own webhook fast path (a subclass of it) whenever
`router.fasthttp` exists, so both must behave the same on the wire. One test repeats the most
important cases against `vapi-router serve` in a subprocess, as production runs it.

A socket timeout (5 s) turns a server that stops answering into a failure, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import json
import random
import select
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import uvicorn
from crmserver import CrmServer
from serverutil import (
    SECRET,
    InProcess,
    Subprocess,
    loaded_server,
    metric,
    parse_metrics,
    payload,
    reply_problems,
)
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from router.server.fasthttp import WebhookProtocol
from router.server.http import MAX_BODY

TIMEOUT_S = 5.0
HOST = "wire.test"
WEBHOOK = "/webhook/vapi"
SAFE = "11111111-1111-4111-8111-111111111111"
ECHO = "55555555-5555-4555-8555-555555555555"
VIP = "66666666-6666-4666-8666-666666666666"
CRM_SLOW_MS = 150

# The fixed replies, byte for byte.
TOO_LARGE = b'{"error":"body larger than 1048576 bytes"}'
NOT_JSON = b'{"error":"body is not JSON"}'
NOT_MESSAGE = b'{"error":"expected {\\"message\\": {\\"type\\": ...}}"}'
UNAUTHORIZED = b'{"error":"unauthorized"}'
HEALTHY = b'{"status":"ok"}'
INVALID_HTTP = b"Invalid HTTP request received."
NOT_ALLOWED = b"Method Not Allowed"
NOT_FOUND = b"Not Found"
# uvicorn's default headers (date, server) and the webhook's own: nothing more, nothing twice.
JSON_HEADER_NAMES = ["content-length", "content-type", "date", "server"]
CLOSE_HEADER_NAMES = sorted([*JSON_HEADER_NAMES, "connection"])


def policy(crm_url: str) -> str:
    """`echo` callers (+14155552...) route without the CRM and echo the call id and caller;
    any other caller reaches `vip`, which needs the HTTP CRM's tags."""
    return f"""\
version: 1
settings: {{region: US, deadline_ms: 2000, fallback: safe}}
crm:
  http:
    url: "{crm_url}"
    tags: contact.tags
    fields: {{name: contact.firstName}}
  timeout_ms: 1500
  cache_ttl_s: 300
targets:
  safe: {{assistantId: {SAFE}}}
routes:
  - id: echo
    when: {{caller: "+14155552*"}}
    then:
      assistantId: {ECHO}
      assistantOverrides: {{variableValues: {{call: "${{call.id}}", caller: "${{caller}}"}}}}
  - id: vip
    when: {{tags: [vip]}}
    then:
      assistantId: {VIP}
      assistantOverrides: {{variableValues: {{call: "${{call.id}}", name: "${{crm.name}}"}}}}
default: safe
"""


# --- the raw HTTP client -------------------------------------------------------------------


class Closed(Exception):
    """The server closed the connection while a response was expected."""


@dataclass
class Response:
    """One parsed response; header names lower-cased, in the order received."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times: {self.headers}"
        return values[0] if values else None

    @property
    def names(self) -> list[str]:
        return sorted(k for k, _ in self.headers)

    def json(self) -> Any:
        return json.loads(self.body)


class Wire:
    """One client connection: raw bytes out, responses parsed from the bytes that come back."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small writes stay small
        self.buffer = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_in_pieces(self, data: bytes, largest: int, *, seed: int, pause_s: float = 0.001) -> int:
        """`data` in writes of 1..largest bytes with a pause between them; how many writes."""
        sizes = random.Random(seed)
        writes = 0
        while data:
            size = sizes.randint(1, largest)
            self.sock.sendall(data[:size])
            data = data[size:]
            writes += 1
            time.sleep(pause_s)
        return writes

    def readable(self) -> bool:
        """Whether the server has sent something (or closed) already, without waiting."""
        return bool(self.buffer) or bool(select.select([self.sock], [], [], 0)[0])

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed(f"the server closed the connection; unparsed: {self.buffer[:200]!r}")
        self.buffer += chunk

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._fill()
        line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read(self, *, head: bool = False) -> Response:
        """The next response; `head` when it answers a HEAD request (no body follows)."""
        version, _, rest = self._line().decode("latin-1").partition(" ")
        status, _, reason = rest.partition(" ")
        headers: list[tuple[str, str]] = []
        while line := self._line():
            name, colon, value = line.decode("latin-1").partition(":")
            assert colon and name == name.strip(), f"malformed header line {line!r}"
            headers.append((name.lower(), value.strip()))
        response = Response(version, int(status), reason, headers, b"")
        if head or response.status < 200 or response.status in (204, 304):
            return response
        if (response.header("transfer-encoding") or "").lower() == "chunked":
            assert response.header("content-length") is None, "both content-length and chunked"
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._exactly(size))
                assert self._exactly(2) == b"\r\n", "a chunk not followed by CRLF"
            while self._line():  # trailers
                pass
            response.body = b"".join(parts)
        elif (length := response.header("content-length")) is not None:
            response.body = self._exactly(int(length))
        else:  # delimited by the end of the connection
            try:
                while True:
                    self._fill()
            except Closed:
                response.body, self.buffer = self.buffer, b""
        return response

    def read_many(self, count: int) -> list[Response]:
        return [self.read() for _ in range(count)]

    def state(self, wait_s: float = TIMEOUT_S) -> str:
        """What the server does next: "closed" (recv gives b""), "reset", "data" (more bytes
        came), or "open" (nothing within wait_s)."""
        if self.buffer:
            return "data"
        self.sock.settimeout(wait_s)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return "open"
        except ConnectionResetError:
            return "reset"
        finally:
            self.sock.settimeout(TIMEOUT_S)
        if not chunk:
            return "closed"
        self.buffer += chunk
        return "data"


def request(
    method: str,
    path: str,
    *,
    version: str = "1.1",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    chunks: Sequence[bytes] | None = None,
) -> bytes:
    """A request's bytes: `body` with a content-length, `chunks` with chunked encoding."""
    lines = [f"{method} {path} HTTP/{version}", f"host: {HOST}", *(f"{k}: {v}" for k, v in headers)]
    if body is not None:
        lines.append(f"content-length: {len(body)}")
    if chunks is not None:
        lines.append("transfer-encoding: chunked")
        body = chunked(chunks)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(chunks: Iterable[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def auth(secret: str = SECRET) -> list[tuple[str, str]]:
    return [("x-vapi-secret", secret), ("content-type", "application/json")]


def get(path: str, **kwargs: Any) -> bytes:
    return request("GET", path, **kwargs)


def post(body: bytes, *, path: str = WEBHOOK, extra: Iterable[tuple[str, str]] = (), **kwargs: Any) -> bytes:
    """A webhook POST of `body` (content-length framing unless `chunks` is given)."""
    if "chunks" in kwargs:
        return request("POST", path, headers=[*auth(), *extra], **kwargs)
    return request("POST", path, headers=[*auth(), *extra], body=body, **kwargs)


# --- calls and the replies they must get ---------------------------------------------------

_numbers = itertools.count(100)


def call(caller: str, call_id: str) -> dict[str, Any]:
    data = payload("assistant-request.pstn.json")
    data["message"]["customer"]["number"] = caller
    data["message"]["call"]["customer"]["number"] = caller
    data["message"]["call"]["id"] = call_id
    return data


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


@dataclass
class Exchange:
    """A request and exactly what must come back for it."""

    data: bytes
    status: int = 200
    reply: dict[str, Any] | None = None  # the JSON reply, compared whole
    body: bytes | None = None  # the body byte for byte
    names: list[str] | None = field(default_factory=lambda: list(JSON_HEADER_NAMES))
    label: str = ""

    def check(self, response: Response) -> None:
        where = f"{self.label}: {response.status} {response.headers} {response.body[:300]!r}"
        assert response.version == "HTTP/1.1", where
        assert response.status == self.status, where
        if self.names is not None:
            assert response.names == self.names, where
        if self.reply is not None:
            assert response.json() == self.reply, where
            assert reply_problems("assistant-request", response.json()) == [], where
        if self.body is not None:
            assert response.body == self.body, where
        if self.status != 100:
            check_default_headers(response)


def check_default_headers(response: Response) -> None:
    """uvicorn's `server` and a current `date` (RFC 9110 IMF-fixdate)."""
    assert response.header("server") == "uvicorn", response.headers
    date = response.header("date")
    assert date is not None and date.endswith(" GMT"), response.headers
    assert abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time()) < 5, date
    if response.header("content-length") is not None:
        assert int(response.header("content-length") or "") == len(response.body), response.headers
    if response.status >= 200 and response.body[:1] in (b"{", b"["):
        assert response.header("content-type") == "application/json", response.headers


def echo(label: str = "echo", **kwargs: Any) -> Exchange:
    """An assistant-request that routes without the CRM; its reply names its call and caller."""
    caller = f"+14155552{next(_numbers) % 1000:03d}"
    call_id = f"{label}-{caller}"
    reply = {
        "assistantId": ECHO,
        "assistantOverrides": {"variableValues": {"call": call_id, "caller": caller}},
    }
    return Exchange(post(encode(call(caller, call_id)), **kwargs), reply=reply, label=label)


def needs_crm(crm: CrmServer, label: str = "crm", **kwargs: Any) -> Exchange:
    """An assistant-request whose caller (a number never asked before) the slow CRM tags vip."""
    caller = f"+14155553{next(_numbers) % 1000:03d}"
    call_id, name = f"{label}-{caller}", f"Name{caller[-3:]}"
    crm.contacts[caller] = {"tags": ["vip"], "firstName": name}
    crm.modes[caller] = "slow"
    reply = {"assistantId": VIP, "assistantOverrides": {"variableValues": {"call": call_id, "name": name}}}
    return Exchange(post(encode(call(caller, call_id)), **kwargs), reply=reply, label=label)


def healthz() -> Exchange:
    return Exchange(get("/healthz"), body=HEALTHY, label="healthz")


def error(data: bytes, status: int, body: bytes, label: str) -> Exchange:
    return Exchange(data, status, body=body, label=label)


def exchange_all(wire: Wire, exchanges: Sequence[Exchange], *, pipelined: bool) -> None:
    """Send every request (in one write when pipelined) and check each response in order."""
    if pipelined:
        wire.send(b"".join(e.data for e in exchanges))
        for e in exchanges:
            e.check(wire.read())
    else:
        for e in exchanges:
            wire.send(e.data)
            e.check(wire.read())


# --- servers -------------------------------------------------------------------------------


PROTOCOLS: dict[str, type[HttpToolsProtocol]] = {
    "httptools": HttpToolsProtocol,
    "fasthttp": WebhookProtocol,
    # with another connection open, the fast path holds replies until the loop's next turn
    # (alone, it writes them at once): both ways are checked
    "fasthttp-held": WebhookProtocol,
}


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    with CrmServer() as server:
        yield server


@pytest.fixture
def crm_server(crm: CrmServer) -> CrmServer:
    crm.reset()
    crm.slow_ms = CRM_SLOW_MS
    return crm


@pytest.fixture(scope="module", params=list(PROTOCOLS))
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, crm: CrmServer
) -> Iterator[InProcess]:
    expected = PROTOCOLS[request.param]
    server = InProcess(
        tmp_path_factory.mktemp(f"wire-{request.param}"), policy(crm.url_template), http=expected
    )
    with server:
        assert isinstance(server._uvicorn, uvicorn.Server)
        protocol = server._uvicorn.config.http_protocol_class
        assert protocol is expected, protocol
        yield server


@pytest.fixture(autouse=True)
def companion(request: pytest.FixtureRequest) -> Iterator[None]:
    """For "fasthttp-held": an idle connection open beside the test's own during the test."""
    if "srv" not in request.fixturenames or not request.node.callspec.id.startswith("fasthttp-held"):
        yield
        return
    srv: InProcess = request.getfixturevalue("srv")
    assert srv._uvicorn is not None
    connections = srv._uvicorn.server_state.connections
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S):
        end = time.monotonic() + TIMEOUT_S
        while not connections and time.monotonic() < end:
            time.sleep(0.001)
        assert connections, "the companion connection was not accepted"
        yield


def still_serves(srv: InProcess) -> None:
    """A new connection gets a correct webhook reply."""
    with Wire(srv.port) as wire:
        exchange_all(wire, [echo("afterwards")], pipelined=False)


# --- 1. keep-alive ---------------------------------------------------------------------------


def test_keep_alive_fifty_webhooks_on_one_connection(srv: InProcess) -> None:
    with Wire(srv.port) as wire:
        for i in range(50):
            exchange = echo(f"keep-alive-{i}")
            wire.send(exchange.data)
            response = wire.read()
            exchange.check(response)
            assert response.reason == "OK"
            assert response.header("connection") is None  # nothing says the connection ends
        assert wire.state(0.1) == "open"


KEEP_ALIVE_S = 0.6  # the keep-alive timeout of the connections the next tests open
GAP_S = 0.3  # a pause that the timeout allows, and that two or three of together exceed


@contextlib.contextmanager
def keep_alive(srv: InProcess, seconds: float) -> Iterator[None]:
    """Connections accepted inside the block get a keep-alive timeout of `seconds` (uvicorn's
    protocol reads it from the config when a connection opens)."""
    assert srv._uvicorn is not None
    config = srv._uvicorn.config
    saved = config.timeout_keep_alive
    config.timeout_keep_alive = seconds  # type: ignore[assignment]  # an int in uvicorn's type
    try:
        yield
    finally:
        config.timeout_keep_alive = saved


def test_an_idle_connection_closes_a_keep_alive_timeout_after_its_last_reply(srv: InProcess) -> None:
    """Requests that come in time keep the connection open past the timeout counted from the
    first reply; once nothing comes, the server closes it the timeout after the last reply."""
    with keep_alive(srv, KEEP_ALIVE_S), Wire(srv.port) as wire:
        for i in range(4):  # the last one 3 gaps (1.5 timeouts) after the first reply
            if i:
                time.sleep(GAP_S)
            exchange = echo(f"idle-{i}")
            wire.send(exchange.data)
            exchange.check(wire.read())
            replied = time.monotonic()
        assert wire.state(KEEP_ALIVE_S / 2) == "open"
        assert wire.state(KEEP_ALIVE_S * 2) == "closed"
        idle = time.monotonic() - replied
        assert KEEP_ALIVE_S - 0.05 <= idle < KEEP_ALIVE_S * 2, idle
    still_serves(srv)


def test_a_request_that_trickles_in_after_a_reply_is_not_cut_off(
    srv: InProcess, crm_server: CrmServer
) -> None:
    """As on uvicorn's own path, bytes arriving stop the keep-alive clock: a request that began
    while the one before it waited for the CRM, and whose rest arrives in pieces until well past
    the timeout after that reply, is answered."""
    first, second = needs_crm(crm_server, "before-trickle"), echo("trickle")
    with keep_alive(srv, KEEP_ALIVE_S), Wire(srv.port) as wire:
        wire.send(first.data + second.data[:20])  # the second request's line, half sent
        first.check(wire.read())
        rest = second.data[20:]
        third = len(rest) // 3
        for piece in (rest[:third], rest[third : 2 * third], rest[2 * third :]):
            time.sleep(GAP_S)
            wire.send(piece)
        second.check(wire.read())
    still_serves(srv)


# --- 2. HTTP/1.0 and Connection: close -------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "extra"),
    [
        pytest.param("1.0", [], id="http-1.0"),
        pytest.param("1.0", [("connection", "keep-alive")], id="http-1.0-keep-alive-asked"),
        pytest.param("1.1", [("connection", "close")], id="http-1.1-connection-close"),
        pytest.param("1.1", [("connection", "Close")], id="http-1.1-connection-Close"),
    ],
)
def test_the_connection_closes_after_the_reply(
    srv: InProcess, version: str, extra: list[tuple[str, str]]
) -> None:
    """uvicorn closes every HTTP/1.0 connection (keep-alive asked or not) and says so."""
    exchange = echo("close", version=version, extra=extra)
    exchange.names = CLOSE_HEADER_NAMES
    with Wire(srv.port) as wire:
        wire.send(exchange.data)
        response = wire.read()
        exchange.check(response)
        assert response.header("connection") == "close"
        assert wire.state() == "closed"
    still_serves(srv)


# --- 3. pipelining -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kinds",
    [
        pytest.param("WWWHWW", id="webhooks-then-healthz-then-webhooks"),
        pytest.param("HWWWWW", id="healthz-first"),
        pytest.param("WAHNWMXW", id="mixed-with-errors-and-405"),
    ],
)
def test_pipelined_requests_are_answered_in_order(srv: InProcess, kinds: str) -> None:
    """All requests in one write: each response answers its own request, in order.
    W webhook, H /healthz, A bad auth, N not JSON, M GET on the webhook, X no message.type."""
    made = {
        "W": lambda i: echo(f"pipelined-{i}"),
        "H": lambda i: healthz(),
        "A": lambda i: error(
            request("POST", WEBHOOK, headers=auth("wrong"), body=b"{}"), 401, UNAUTHORIZED, "bad-auth"
        ),
        "N": lambda i: error(post(b"not json"), 400, NOT_JSON, "not-json"),
        "X": lambda i: error(post(b'{"message": {}}'), 400, NOT_MESSAGE, "no-type"),
        "M": lambda i: Exchange(get(WEBHOOK), 405, body=NOT_ALLOWED, names=None, label="get-webhook"),
    }
    exchanges = [made[kind](i) for i, kind in enumerate(kinds)]
    with Wire(srv.port) as wire:
        exchange_all(wire, exchanges, pipelined=True)
        assert wire.state(0.05) == "open"
        exchange_all(wire, [echo("after-pipeline")], pipelined=False)


# --- 4. and 5. bodies in pieces, chunked bodies ------------------------------------------------


@pytest.mark.parametrize(
    ("whole", "largest"),
    [
        pytest.param(False, 100, id="body-in-1-to-100-byte-writes"),
        pytest.param(True, 40, id="headers-and-body-in-1-to-40-byte-writes"),
    ],
)
def test_a_request_in_many_small_writes(srv: InProcess, whole: bool, largest: int) -> None:
    exchange = echo("pieces")
    head, _, body = exchange.data.partition(b"\r\n\r\n")
    with Wire(srv.port) as wire:
        if whole:
            writes = wire.send_in_pieces(exchange.data, largest, seed=1)
        else:
            wire.send(head + b"\r\n\r\n")
            writes = wire.send_in_pieces(body, largest, seed=2)
        assert writes > 20
        exchange.check(wire.read())
        exchange_all(wire, [echo("after-pieces")], pipelined=False)


@pytest.mark.parametrize(
    "shape",
    ["one-chunk", "7-byte-chunks", "extension-and-trailer", "chunks-in-separate-writes"],
)
def test_a_chunked_request_body(srv: InProcess, shape: str) -> None:
    exchange = echo(f"chunked-{shape}")
    message_body = exchange.data.partition(b"\r\n\r\n")[2]
    if shape == "extension-and-trailer":
        head = request("POST", WEBHOOK, headers=auth(), chunks=[b"x"]).partition(b"\r\n\r\n")[0]
        wire_body = b"%x;name=value\r\n%s\r\n0\r\nx-trailer: yes\r\n\r\n" % (len(message_body), message_body)
        exchange.data = head + b"\r\n\r\n" + wire_body
    else:
        size = {"one-chunk": len(message_body), "7-byte-chunks": 7, "chunks-in-separate-writes": 50}[shape]
        exchange.data = post(b"", chunks=split(message_body, size))
    with Wire(srv.port) as wire:
        if shape == "chunks-in-separate-writes":
            head, _, rest = exchange.data.partition(b"\r\n\r\n")
            wire.send(head + b"\r\n\r\n")
            for piece in rest.split(b"\r\n"):  # each chunk size line and chunk on its own
                wire.send(piece + b"\r\n")
                time.sleep(0.001)
        else:
            wire.send(exchange.data)
        exchange.check(wire.read())
        exchange_all(wire, [echo("after-chunked")], pipelined=False)


# --- 6. Expect: 100-continue ---------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_expect_100_continue(srv: InProcess, framing: str) -> None:
    """The interim 100 comes after the headers alone; the body follows, then the reply."""
    exchange = echo("expect")
    body = exchange.data.partition(b"\r\n\r\n")[2]
    if framing == "chunked":
        data = post(b"", extra=[("expect", "100-continue")], chunks=split(body, 100))
    else:
        data = post(body, extra=[("expect", "100-continue")])
    head, _, rest = data.partition(b"\r\n\r\n")
    with Wire(srv.port) as wire:
        wire.send(head + b"\r\n\r\n")
        interim = wire.read()
        assert (interim.version, interim.status, interim.reason, interim.headers) == (
            "HTTP/1.1",
            100,
            "Continue",
            [],
        )
        assert not wire.readable()  # nothing but the 100 before the body
        wire.send(rest)
        exchange.check(wire.read())
        exchange_all(wire, [echo("after-expect")], pipelined=False)


# --- 7. and 8. the 1 MiB limit -----------------------------------------------------------------


def closed_or_usable(wire: Wire, too_large: Response, pending: bytes) -> str:
    """After a 413: the server either closes the connection (and said so in the 413), or keeps
    it and, once the declared body it still expects (`pending`) is sent, answers the next
    request correctly. Which one it did."""
    state = wire.state(0.3)
    if state in ("closed", "reset"):
        assert too_large.header("connection") == "close", too_large.headers
        return state
    assert state == "open", f"unexpected bytes after the 413: {wire.buffer[:200]!r}"
    assert too_large.header("connection") is None, too_large.headers
    after = echo("after-413")
    wire.send(pending + after.data)
    after.check(wire.read())
    return "reused"


@pytest.mark.parametrize("expect", [False, True], ids=["plain", "expect-100-continue"])
def test_a_declared_body_over_1_mib_is_refused_at_once(srv: InProcess, expect: bool) -> None:
    """content-length 1 MiB + 1 and no body sent: 413 straight away (no 100 Continue first)."""
    extra = [("expect", "100-continue")] if expect else []
    head = post(b"", extra=extra).replace(b"content-length: 0", b"content-length: %d" % (MAX_BODY + 1))
    with Wire(srv.port) as wire:
        started = time.monotonic()
        wire.send(head)
        response = wire.read()
        elapsed = time.monotonic() - started
        assert (response.status, response.reason, response.body) == (
            413,
            "Request Entity Too Large",
            TOO_LARGE,
        )
        check_default_headers(response)
        assert elapsed < 1.0
        closed_or_usable(wire, response, b" " * (MAX_BODY + 1))
    still_serves(srv)


def padded(exchange: Exchange, size: int) -> bytes:
    """The exchange's JSON body padded with trailing spaces to exactly `size` bytes."""
    body = exchange.data.partition(b"\r\n\r\n")[2]
    return body + b" " * (size - len(body))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_of_exactly_1_mib_is_accepted(srv: InProcess, framing: str) -> None:
    exchange = echo(f"one-mib-{framing}")
    body = padded(exchange, MAX_BODY)
    exchange.data = post(body) if framing == "content-length" else post(b"", chunks=split(body, 65536))
    with Wire(srv.port) as wire:
        exchange_all(wire, [exchange, echo("after-one-mib")], pipelined=False)


def test_a_chunked_body_over_1_mib_is_refused(srv: InProcess) -> None:
    """Chunked, so no length is declared: 1 MiB in 64 KiB chunks, then the byte too many."""
    body = padded(echo("too-large-chunked"), MAX_BODY)
    head = post(b"", chunks=[b"x"]).partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    with Wire(srv.port) as wire:
        wire.send(head)
        for piece in split(body, 65536):
            wire.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        assert not wire.readable()  # exactly 1 MiB so far: not refused
        wire.send(b"1\r\n \r\n0\r\n\r\n")
        response = wire.read()
        assert (response.status, response.body) == (413, TOO_LARGE)
        check_default_headers(response)
        closed_or_usable(wire, response, b"")
    still_serves(srv)


# --- 9. the webhook's error replies keep the connection ----------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "body"),
    [
        pytest.param(
            request("POST", WEBHOOK, headers=auth("x"), body=b"{}"), 401, UNAUTHORIZED, id="bad-secret"
        ),
        pytest.param(
            request("POST", WEBHOOK, headers=[("content-type", "application/json")], body=b"{}"),
            401,
            UNAUTHORIZED,
            id="no-secret",
        ),
        pytest.param(post(b"not json"), 400, NOT_JSON, id="not-json"),
        pytest.param(post(b""), 400, NOT_JSON, id="empty-body"),
        pytest.param(request("POST", WEBHOOK, headers=auth()), 400, NOT_JSON, id="no-content-length"),
        pytest.param(post(b'{"message": {}}'), 400, NOT_MESSAGE, id="no-message-type"),
        pytest.param(post(b'{"message": {"type": 5}}'), 400, NOT_MESSAGE, id="message-type-not-a-string"),
        pytest.param(post(b'["message"]'), 400, NOT_MESSAGE, id="json-list"),
        pytest.param(post(encode(payload("status-update.in-progress.json"))), 200, b"{}", id="other-type"),
    ],
)
def test_error_replies_then_a_good_request_on_the_same_connection(
    srv: InProcess, data: bytes, status: int, body: bytes
) -> None:
    with Wire(srv.port) as wire:
        exchange_all(wire, [Exchange(data, status, body=body, label="first"), echo("after")], pipelined=False)
        assert wire.state(0.05) == "open"


# --- 10. malformed HTTP ----------------------------------------------------------------------

_BODY = encode(call("+14155552999", "malformed"))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"NOT HTTP\r\n\r\n", id="not-http"),
        pytest.param(b"\x00\x01\x02\r\n\r\n", id="binary"),
        pytest.param(b"POST /webhook/vapi HTTP/9.9\r\nhost: x\r\n\r\n", id="http-9.9"),
        pytest.param(request("POST", WEBHOOK, headers=[("content-length", "abc")]), id="bad-content-length"),
        pytest.param(
            request("POST", WEBHOOK, headers=[*auth(), ("transfer-encoding", "chunked")], body=_BODY),
            id="content-length-and-chunked",
        ),
        pytest.param(
            request("POST", WEBHOOK, headers=[*auth(), ("content-length", "5")], body=_BODY),
            id="two-content-lengths",
        ),
        pytest.param(
            request("POST", WEBHOOK, headers=[*auth(), ("transfer-encoding", "chunked")]) + b"zz\r\n",
            id="bad-chunk-size",
        ),
        pytest.param(
            request("POST", WEBHOOK, headers=[("x-vapi-secret ", SECRET)], body=_BODY),
            id="space-before-colon",
        ),
    ],
)
def test_malformed_http_gets_400_and_the_connection_closes(srv: InProcess, data: bytes) -> None:
    with Wire(srv.port) as wire:
        wire.send(data)
        response = wire.read()
        assert (response.status, response.body) == (400, INVALID_HTTP)
        assert response.names == CLOSE_HEADER_NAMES
        assert response.header("connection") == "close"
        assert response.header("content-type") == "text/plain; charset=utf-8"
        check_default_headers(response)
        assert wire.state() == "closed"
    still_serves(srv)


# --- 11. clients that leave mid-request ------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Close with an RST rather than a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("how", ["part-of-the-body", "headers-only", "reset-mid-body", "before-a-crm-reply"])
def test_a_client_leaving_mid_request_does_not_hurt_the_server(
    srv: InProcess, crm_server: CrmServer, how: str
) -> None:
    exchange = needs_crm(crm_server, "abandoned") if how == "before-a-crm-reply" else echo("abandoned")
    head, _, body = exchange.data.partition(b"\r\n\r\n")
    head = head.replace(b"content-length: %d" % len(body), b"content-length: 500")
    with Wire(srv.port) as wire:
        if how == "before-a-crm-reply":
            wire.send(exchange.data)
        elif how == "headers-only":
            wire.send(head + b"\r\n\r\n")
        else:
            wire.send(head + b"\r\n\r\n" + body[:100])
            if how == "reset-mid-body":
                _reset(wire.sock)
        time.sleep(0.02)
    time.sleep(0.05)
    still_serves(srv)
    if how == "before-a-crm-reply":
        time.sleep(CRM_SLOW_MS / 1000)  # the abandoned answer has finished by now
        with Wire(srv.port) as wire:
            exchange_all(wire, [needs_crm(crm_server, "after-abandoned")], pipelined=False)


# --- 12. pipelining with answers that wait for the HTTP CRM -----------------------------------


@pytest.mark.parametrize(
    "kinds",
    [
        pytest.param("CCH", id="crm-crm-healthz"),
        pytest.param("CE", id="crm-then-no-crm"),
        pytest.param("ECECH", id="alternating"),
        pytest.param("HCEE", id="healthz-crm-no-crm-no-crm"),
    ],
)
def test_pipelined_requests_that_wait_for_the_crm_stay_in_order(
    srv: InProcess, crm_server: CrmServer, kinds: str
) -> None:
    """C needs the CRM (150 ms each), E does not, H is /healthz: replies in request order."""
    made = {
        "C": lambda i: needs_crm(crm_server, f"crm-{i}"),
        "E": lambda i: echo(f"no-crm-{i}"),
        "H": lambda i: healthz(),
    }
    exchanges = [made[kind](i) for i, kind in enumerate(kinds)]
    with Wire(srv.port) as wire:
        exchange_all(wire, exchanges, pipelined=True)
        assert wire.state(0.05) == "open"
        exchange_all(wire, [echo("after-crm-pipeline")], pipelined=False)
    assert crm_server.requests == kinds.count("C")  # each was a real lookup, none cached


@pytest.mark.parametrize(
    ("version", "extra"),
    [pytest.param("1.0", [], id="http-1.0"), pytest.param("1.1", [("connection", "close")], id="close")],
)
def test_a_reply_that_waits_for_the_crm_then_closes(
    srv: InProcess, crm_server: CrmServer, version: str, extra: list[tuple[str, str]]
) -> None:
    exchange = needs_crm(crm_server, "crm-close", version=version, extra=extra)
    exchange.names = CLOSE_HEADER_NAMES
    with Wire(srv.port) as wire:
        wire.send(exchange.data)
        response = wire.read()
        exchange.check(response)
        assert response.header("connection") == "close"
        assert wire.state() == "closed"
    assert crm_server.requests == 1


# --- 13. other endpoints between webhooks ----------------------------------------------------


def test_webhooks_metrics_and_readiness_alternate_on_one_connection(srv: InProcess) -> None:
    with Wire(srv.port) as wire:
        exchange_all(wire, [echo("alternate-1")], pipelined=False)
        wire.send(get("/metrics"))
        before = wire.read()
        exchange_all(wire, [echo("alternate-2")], pipelined=False)
        wire.send(get("/readyz"))
        ready = wire.read()
        wire.send(get("/metrics"))
        after = wire.read()
        exchange_all(wire, [echo("alternate-3")], pipelined=False)
    for response in (before, after):
        assert response.status == 200
        assert response.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
        check_default_headers(response)
    assert ready.status == 200 and ready.names == JSON_HEADER_NAMES
    check_default_headers(ready)
    state = ready.json()
    assert set(state) == {"version", "loaded_at", "last_reload_ok", "errors", "problems"}
    assert (state["last_reload_ok"], state["errors"]) == (True, [])
    # the webhook answered between the two scrapes was counted, once
    decided = [
        metric(parse_metrics(r.body.decode()), "router_decisions_total", route="echo")
        for r in (before, after)
    ]
    assert decided[1] - decided[0] == 1


# --- 14. and 15. paths and methods -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "location"),
    [
        pytest.param("/webhook/vapi?x=1", 200, None, id="query-string"),
        pytest.param("/webhook/vapi?", 200, None, id="empty-query-string"),
        pytest.param("/webhook/%76api", 200, None, id="percent-encoded"),
        pytest.param(f"http://{HOST}/webhook/vapi", 200, None, id="absolute-form"),
        pytest.param("/webhook/vapi/", 307, f"http://{HOST}/webhook/vapi", id="trailing-slash"),
        pytest.param("/webhook/vapi/?x=1", 307, f"http://{HOST}/webhook/vapi?x=1", id="slash-and-query"),
        pytest.param("/webhook/vap", 404, None, id="prefix"),
        pytest.param("/webhook/vapi/more", 404, None, id="longer"),
        pytest.param("/WEBHOOK/VAPI", 404, None, id="upper-case"),
    ],
)
def test_webhook_path_variants(srv: InProcess, path: str, status: int, location: str | None) -> None:
    """The query string is ignored; Starlette redirects a trailing slash (307 keeps the POST)."""
    exchange = echo("path", path=path)
    if status == 307:
        names = ["content-length", "date", "location", "server"]
        exchange = Exchange(exchange.data, 307, body=b"", names=names)
    elif status == 404:
        exchange = Exchange(
            exchange.data, 404, body=NOT_FOUND, names=["content-length", "content-type", "date", "server"]
        )
    with Wire(srv.port) as wire:
        wire.send(exchange.data)
        response = wire.read()
        exchange.check(response)
        assert response.header("location") == location
        if status == 404:
            assert response.header("content-type") == "text/plain; charset=utf-8"
        exchange_all(wire, [echo("after-path")], pipelined=False)


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_on_the_webhook_get_405(srv: InProcess, method: str) -> None:
    with Wire(srv.port) as wire:
        wire.send(request(method, WEBHOOK, headers=auth()))
        response = wire.read(head=method == "HEAD")
        assert response.status == 405
        assert response.names == ["allow", "content-length", "content-type", "date", "server"]
        assert response.header("allow") == "POST"
        assert response.header("content-type") == "text/plain; charset=utf-8"
        assert response.header("content-length") == str(len(NOT_ALLOWED))
        assert response.body == (b"" if method == "HEAD" else NOT_ALLOWED)
        exchange_all(wire, [echo(f"after-{method}")], pipelined=False)


# --- vapi-router serve, as production runs it ----------------------------------------------------


def test_the_serve_command_on_the_wire(tmp_path: Path, crm_server: CrmServer) -> None:
    """Keep-alive, pipelining (with /healthz and a CRM wait), HTTP/1.0 and Connection: close,
    the 413 and a 401 against `vapi-router serve` in a subprocess."""
    with Subprocess(tmp_path, policy(crm_server.url_template)) as served:
        with Wire(served.port) as wire:
            exchange_all(wire, [echo(f"serve-keep-alive-{i}") for i in range(20)], pipelined=False)
            pipeline = [*(echo("serve-pipelined") for _ in range(3)), healthz(), *(echo() for _ in range(2))]
            exchange_all(wire, pipeline, pipelined=True)
            exchange_all(wire, [needs_crm(crm_server, "serve-crm"), echo("serve-after-crm")], pipelined=True)
            bad = request("POST", WEBHOOK, headers=auth("wrong"), body=b"{}")
            exchange_all(wire, [Exchange(bad, 401, body=UNAUTHORIZED), echo()], pipelined=False)
            assert wire.state(0.05) == "open"
        for version, extra in (("1.0", []), ("1.1", [("connection", "close")])):
            exchange = echo("serve-close", version=version, extra=extra)
            exchange.names = CLOSE_HEADER_NAMES
            with Wire(served.port) as wire:
                wire.send(exchange.data)
                exchange.check(wire.read())
                assert wire.state() == "closed"
        with Wire(served.port) as wire:
            wire.send(post(b"").replace(b"content-length: 0", b"content-length: %d" % (MAX_BODY + 1)))
            response = wire.read()
            assert (response.status, response.body) == (413, TOO_LARGE)
            closed_or_usable(wire, response, b" " * (MAX_BODY + 1))
    assert crm_server.requests == 1


# --- the deadline counts from when the request reached the machine ---------------------------


def test_arrival_is_read_from_the_kernel() -> None:
    """WebhookProtocol._arrived: TCP_INFO's last-data-received, on a real loopback socket
    whose bytes have waited 200 ms unread."""
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as client,
    ):
        accepted, _ = listener.accept()
        with accepted:
            client.sendall(b"POST / HTTP/1.1\r\n")
            time.sleep(0.2)
            transport = type("T", (), {"get_extra_info": lambda self, name: accepted})()
            holder = type("P", (), {"transport": transport})()
            arrived = WebhookProtocol._arrived(holder)  # type: ignore[arg-type]
            assert arrived is not None
            waited = time.perf_counter() - arrived
            assert 0.19 <= waited <= 0.5, waited
    not_tcp = type("P", (), {"transport": type("T", (), {"get_extra_info": lambda self, name: None})()})()
    assert WebhookProtocol._arrived(not_tcp) is None  # type: ignore[arg-type]


def test_time_spent_unread_comes_out_of_the_deadline(tmp_path: Path, crm_server: CrmServer) -> None:
    """A request that waited 1.7 s before the server read it, with a deadline of 2 s and a
    CRM that never answers, gets the fallback within what is left, not 1.5 s later."""
    crm_server.mode = "hang"
    server = loaded_server(tmp_path, policy(crm_server.url_template))
    body = json.dumps(payload("assistant-request.pstn.json")).encode()

    async def answer() -> tuple[float, int, bytes]:
        started = time.perf_counter()
        try:
            answer = server.answer_now(
                "POST", "", {"x-vapi-secret": SECRET}, body, started, arrived=lambda: started - 1.7
            )
            assert not isinstance(answer, tuple), "the call must wait for the CRM"
            status, reply = await answer
            return time.perf_counter() - started, status, reply
        finally:
            assert server.store.live is not None and server.store.live.crm is not None
            await server.store.live.crm.aclose()

    elapsed, status, reply = asyncio.run(answer())
    assert status == 200 and json.loads(reply) == {"assistantId": SAFE}
    assert elapsed < 0.6, elapsed  # 2 s - 1.7 s - the 50 ms margin, on a shared machine
