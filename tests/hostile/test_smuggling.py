"""Request smuggling: a request whose framing two HTTP parsers could read differently, with a
second request (no auth of its own, a call id of its own) hidden where one of them would see
it. Whatever the trick, the router answers 400 and closes, or reads the framing the one way
RFC 9112 allows; it never answers 5xx, never answers the hidden request as if it came with
the first one's credentials, and never routes it (no decision-log line, no reply naming it).

The cases are the classic desync tricks: Content-Length beside Transfer-Encoding (either
order), two Content-Lengths (equal or not, or as a list), Content-Length values that are not
plain digits, obfuscated and unknown transfer codings, obs-fold continuation lines (in front
of Transfer-Encoding and of the secret itself), bad chunk sizes and chunk framing, bare LF
line ends, NUL bytes, a space before the colon, HTTP/1.0 with chunked, and a body on a GET.
test_http_wire.py checks the exact 400 reply for a few of them; this file is about the
smuggled request. Raw sockets, so every byte goes out as written."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from hostileutil import SAFE, WEBHOOK, call_message
from serverutil import SECRET, InProcess, dumps

HIDDEN = "SMUGGLED-call-5a5a"
POLICY = f"""\
version: 1
targets:
  echo: {{assistantId: {SAFE}, assistantOverrides: {{variableValues: {{call: "${{call.id}}"}}}}}}
default: echo
"""
AUTH = (b"x-vapi-secret", SECRET.encode())
OUTER = dumps(call_message(call_id="outer"))
_hidden_body = dumps(call_message(call_id=HIDDEN))
HIDDEN_REQUEST = (
    f"POST {WEBHOOK} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    f"content-length: {len(_hidden_body)}\r\n\r\n"
).encode() + _hidden_body
CHUNKED = b"%x\r\n" % len(OUTER) + OUTER + b"\r\n0\r\n\r\n"


def post(headers: list[tuple[bytes, bytes]], body: bytes, *, version: bytes = b"1.1") -> bytes:
    """A webhook POST with these header lines (a name starting with a space is a continuation)."""
    head = (
        b"POST "
        + WEBHOOK.encode()
        + b" HTTP/"
        + version
        + b"\r\nhost: x\r\ncontent-type: application/json\r\n"
    )
    for name, value in headers:
        head += (name if name.startswith((b" ", b"\t")) else name + b": " + value) + b"\r\n"
    return head + b"\r\n" + body


def length(n: int | str) -> tuple[bytes, bytes]:
    return (b"content-length", str(n).encode())


def te(value: bytes) -> tuple[bytes, bytes]:
    return (b"transfer-encoding", value)


def chunk(size: bytes, *, end: bytes = b"\r\n") -> bytes:
    return size + end + OUTER + b"\r\n0\r\n\r\n"


S = HIDDEN_REQUEST
N = len(OUTER)
REFUSED: list[tuple[str, bytes]] = [
    ("cl-then-te", post([AUTH, length(len(CHUNKED)), te(b"chunked")], CHUNKED + S)),
    ("te-then-cl", post([AUTH, te(b"chunked"), length(4)], CHUNKED + S)),
    (
        "cl-covers-the-hidden-request",
        post([AUTH, length(len(CHUNKED) + len(S)), te(b"chunked")], CHUNKED + S),
    ),
    ("two-cl-differing", post([AUTH, length(N), length(N + len(S))], OUTER + S)),
    ("two-cl-equal", post([AUTH, length(N), length(N)], OUTER + S)),
    ("cl-as-a-list", post([AUTH, length(f"{N}, {N}")], OUTER + S)),
    ("cl-plus-sign", post([AUTH, length(f"+{N}")], OUTER + S)),
    ("cl-negative", post([AUTH, length(-1)], OUTER + S)),
    ("cl-hex", post([AUTH, length(hex(N))], OUTER + S)),
    ("cl-two-numbers", post([AUTH, length(f"{N} 0")], OUTER + S)),
    ("te-xchunked-beside-cl", post([AUTH, te(b"xchunked"), length(N)], OUTER + S)),
    ("te-chunked-not-last", post([AUTH, te(b"chunked, gzip")], CHUNKED + S)),
    ("te-gzip-alone", post([AUTH, te(b"gzip")], OUTER + S)),
    ("te-twice", post([AUTH, te(b"chunked"), te(b"identity")], CHUNKED + S)),
    ("te-tab-before-the-value-beside-cl", post([AUTH, te(b"\tchunked"), length(N)], OUTER + S)),
    ("te-space-before-the-colon", post([AUTH, (b"transfer-encoding ", b"chunked"), length(N)], OUTER + S)),
    (
        "obs-fold-into-te",
        post([AUTH, te(b"identity"), (b" chunked", b""), length(len(CHUNKED))], CHUNKED + S),
    ),
    (
        "obs-fold-of-the-secret",
        post([(b"x-vapi-secret", b""), (b" " + SECRET.encode(), b""), length(N)], OUTER + S),
    ),
    ("obs-fold-elsewhere", post([AUTH, (b"x-pad", b"a"), (b"\tb", b""), length(N)], OUTER + S)),
    ("chunk-size-not-hex", post([AUTH, te(b"chunked")], chunk(b"zz") + S)),
    ("chunk-size-negative", post([AUTH, te(b"chunked")], chunk(b"-1") + S)),
    ("chunk-size-overflows-64-bits", post([AUTH, te(b"chunked")], chunk(b"1" + b"0" * 20) + S)),
    ("chunk-size-0x", post([AUTH, te(b"chunked")], chunk(b"0x%x" % N) + S)),
    ("chunk-size-leading-space", post([AUTH, te(b"chunked")], chunk(b" %x" % N) + S)),
    ("chunk-shorter-than-declared", post([AUTH, te(b"chunked")], chunk(b"%x" % (N - 5)) + S)),
    ("chunk-longer-than-declared", post([AUTH, te(b"chunked")], chunk(b"%x" % (N + 5)) + S)),
    ("chunk-lf-only", post([AUTH, te(b"chunked")], b"%x\n" % N + OUTER + b"\n0\n\n" + S)),
    ("chunk-bare-cr", post([AUTH, te(b"chunked")], chunk(b"%x" % N, end=b"\r") + S)),
    (
        "bare-lf-header-lines",
        (
            f"POST {WEBHOOK} HTTP/1.1\nhost: x\ncontent-type: application/json\n"
            f"x-vapi-secret: {SECRET}\ncontent-length: {N}\n\n"
        ).encode()
        + OUTER
        + S,
    ),
    ("nul-in-a-header-value", post([AUTH, (b"x-a", b"a\x00b"), length(N)], OUTER + S)),
]
# Framing with one reading only: the first request is answered, and the bytes after its body
# are what they are, a request of their own without credentials (401), or nothing at all.
READ_ONE_WAY: list[tuple[str, bytes, list[int], bool]] = [
    # chunked is the final coding: the body is chunked (RFC 9112 §6.1), what follows is a request
    ("te-identity-then-chunked", post([AUTH, te(b"identity, chunked")], CHUNKED + S), [200, 401], False),
    (
        "chunk-extension",
        post([AUTH, te(b"chunked")], b"%x;a=b\r\n" % N + OUTER + b"\r\n0\r\n\r\n" + S),
        [200, 401],
        False,
    ),
    # HTTP/1.0 with Transfer-Encoding: the connection closes after it (§6.1), the rest unread
    ("http-1.0-chunked", post([AUTH, te(b"chunked")], CHUNKED + S, version=b"1.0"), [200], True),
    # a GET's body is a body: the request inside it is never one
    (
        "get-with-a-body",
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"content-length: %d\r\n\r\n" % len(S) + S,
        [200],
        False,
    ),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with InProcess(tmp_path_factory.mktemp("smuggling"), POLICY) as server:
        yield server


def exchange(port: int, data: bytes, expect: int | None) -> tuple[list[tuple[int, bytes]], bool]:
    """Send `data`; the responses (status, body) and whether the server closed the connection.
    Reads until the server closes, or (`expect` responses in) until 0.1 s pass without a byte."""
    responses: list[tuple[int, bytes]] = []
    buffer = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            if expect is not None and len(responses) >= expect:
                sock.settimeout(0.1)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                closed = True
                break
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, _, rest = buffer.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                size = next(
                    (int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length")), 0
                )
                if len(rest) < size:
                    break
                responses.append((int(lines[0].split(b" ")[1]), rest[:size]))
                buffer = rest[size:]
    return responses, closed


@pytest.mark.parametrize(("data"), [pytest.param(d, id=name) for name, d in REFUSED])
def test_ambiguous_framing_is_refused_and_the_hidden_request_never_answered(
    srv: InProcess, data: bytes
) -> None:
    responses, closed = exchange(srv.port, data, None)
    assert [status for status, _ in responses] == [400], responses
    assert closed
    assert all(HIDDEN.encode() not in body for _, body in responses)


@pytest.mark.parametrize(
    ("data", "statuses", "closes"),
    [pytest.param(d, s, c, id=name) for name, d, s, c in READ_ONE_WAY],
)
def test_framing_with_one_reading_answers_the_first_request_only(
    srv: InProcess, data: bytes, statuses: list[int], closes: bool
) -> None:
    responses, closed = exchange(srv.port, data, len(statuses))
    assert [status for status, _ in responses] == statuses, responses
    assert closed is closes
    first = json.loads(responses[0][1])
    assert first.get("assistantOverrides", {}).get("variableValues", {}).get("call", "outer") == "outer"
    assert all(HIDDEN.encode() not in body for _, body in responses)


def test_no_hidden_request_reached_the_decision_log(srv: InProcess) -> None:
    """Whatever ran before on this server, and a few cases of each kind again: the log has the
    outer calls and not one hidden call."""
    for _, data in REFUSED[:3]:
        exchange(srv.port, data, None)
    _, data, statuses, _ = READ_ONE_WAY[0]
    exchange(srv.port, data, len(statuses))
    with srv.client() as client:
        records = srv.records_until_marker(client)
    ids = {r.get("call_id") for r in records}
    assert HIDDEN not in ids
    assert "outer" in ids
