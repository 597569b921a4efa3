"""HTTP helpers every endpoint shares: the one body-size limit, body readers, JSON responses. [I/O]"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

# scope["extensions"] key: when a pipelined request arrived (perf_counter), so its deadline
# counts from then, not from when the replies before it were written
ARRIVED = "vapi-router.arrived"
MAX_BODY = 1024 * 1024
JSON = "application/json"
EMPTY = b"{}"
UNAUTHORIZED = b'{"error":"unauthorized"}'
# The webhook's fixed answers, encoded once.
TOO_LARGE = orjson.dumps({"error": f"body larger than {MAX_BODY} bytes"})
NOT_JSON = orjson.dumps({"error": "body is not JSON"})
NOT_MESSAGE = orjson.dumps({"error": 'expected {"message": {"type": ...}}'})
NO_POLICY = orjson.dumps({"error": "no policy is loaded"})
_CONTENT_TYPE_JSON = (b"content-type", JSON.encode())


def json_response(body: bytes | Any, status: int = 200) -> Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status_code=status, media_type=JSON)


class BodyTooLarge(Exception):
    pass


def too_large(content_length: str | bytes | None) -> bool:
    """Whether a declared Content-Length is over MAX_BODY (the body is then not read at all)."""
    return content_length is not None and content_length.isdigit() and int(content_length) > MAX_BODY


async def read_body(request: Request) -> bytes:
    """The raw body, refusing more than MAX_BODY bytes without reading them all."""
    if too_large(request.headers.get("content-length")):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_body(scope: Scope, receive: Receive) -> bytes:
    """read_body for a bare ASGI endpoint: the same limits, and ClientDisconnect as Starlette's."""
    # Headers(scope).get("content-length"), without the Mapping machinery: the first one wins
    length = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-length"), None)
    if too_large(length):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise BodyTooLarge
            if not message.get("more_body", False):
                if not chunks:  # the usual case: the whole body in one message
                    return bytes(chunk)
                chunks.append(chunk)
                return b"".join(chunks)
            chunks.append(chunk)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


async def send_json(send: Send, body: bytes, status: int = 200) -> None:
    """What `json_response(body, status)` sends (same status, headers and body), without a Response."""
    headers = [(b"content-length", str(len(body)).encode("latin-1")), _CONTENT_TYPE_JSON]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
