"""Item 7 of issue 15: trailer fields of a chunked body are not headers (RFC 9110 §6.5.1): a
secret sent only in a trailer is not auth, and a wrong one beside a right header changes
nothing. Raw sockets, so the trailers go out exactly as written."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hostileutil import SAFE, WEBHOOK, call_message, read_responses
from serverutil import SECRET, InProcess, dumps


def chunked(body: bytes, headers: dict[str, str], trailers: dict[str, str]) -> bytes:
    head = f"POST {WEBHOOK} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    head += "transfer-encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    tail = "".join(f"{k}: {v}\r\n" for k, v in trailers.items())
    return head.encode() + b"\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n" + tail.encode() + b"\r\n"


@pytest.mark.parametrize(
    ("headers", "trailers", "status"),
    [
        pytest.param({}, {"x-vapi-secret": SECRET}, 401, id="secret-only-in-a-trailer"),
        pytest.param({"x-vapi-secret": SECRET}, {"x-vapi-secret": "wrong"}, 200, id="wrong-trailer-beside"),
        pytest.param({}, {"authorization": f"Bearer {SECRET}"}, 401, id="bearer-only-in-a-trailer"),
        pytest.param({"x-vapi-secret": SECRET}, {"authorization": "Bearer wrong"}, 200, id="wrong-bearer"),
    ],
)
def test_trailers_are_not_headers_for_auth(
    tmp_path: Path, headers: dict[str, str], trailers: dict[str, str], status: int
) -> None:
    with InProcess(
        tmp_path, f"version: 1\ntargets: {{safe: {{assistantId: {SAFE}}}}}\ndefault: safe\n"
    ) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(chunked(dumps(call_message()), headers, trailers))
            [(got, body, _)] = read_responses(sock, 1)
        assert got == status, body
