"""A CRM answer's body read under a size cap: declared, received and decompressed. [I/O]

An endless or enormous answer, or a small gzip bomb, must cost neither memory nor event-loop
time: the body is read chunk by chunk and refused once it passes `cap` bytes, either as sent
or as inflated (zlib with max_length, so one chunk never inflates past the cap). Only the
encodings named in ACCEPT_ENCODING are asked for and decoded; another is refused. A large
body (still under the cap) is parsed in a thread, so the loop keeps answering calls.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any, Final

import httpx
import orjson

MAX_BODY_BYTES: Final = 1024 * 1024
ACCEPT_ENCODING: Final = "gzip, deflate"
PARSE_INLINE_BYTES: Final = 64 * 1024  # parsed on the loop (~0.1 ms); larger bodies in a thread
NOT_JSON: Final = object()


class BodyRefused(Exception):
    """The body is too large or in an encoding not asked for; the message is the reason logged."""


async def read_capped(response: httpx.Response, cap: int) -> bytes:
    """The decoded body of a streamed `response`, at most `cap` bytes (BodyRefused beyond)."""
    too_large = f"body larger than {cap} bytes"
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise BodyRefused(too_large)
    if response.is_stream_consumed:  # read already (an in-memory transport): the cap still holds
        if len(response.content) > cap:
            raise BodyRefused(too_large)
        return response.content
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    inflate: Any = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or zlib header, detected
    elif encoding not in ("identity", ""):
        raise BodyRefused(f"content-encoding {encoding[:20]} was not asked for")
    chunks: list[bytes] = []
    received = size = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > cap:
            raise BodyRefused(too_large)
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk, cap + 1 - size)
            except zlib.error:
                raise BodyRefused(f"body is not valid {encoding}") from None
        size += len(chunk)
        if size > cap:
            raise BodyRefused(too_large)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_json(body: bytes) -> Any:
    """The parsed body, or NOT_JSON."""
    try:
        if len(body) <= PARSE_INLINE_BYTES:
            return orjson.loads(body)
        return await asyncio.to_thread(orjson.loads, body)
    except orjson.JSONDecodeError:
        return NOT_JSON
