"""What every webhook auth scheme shares: reading a header's raw bytes, reading the
environment, and the configuration error. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

MAX_HEADER_BYTES = 4096
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


class AuthConfigError(ValueError):
    """Bad auth configuration; the message names the variable, never its value."""


def env_bytes(value: str | None) -> bytes | None:
    # os.environ decodes with surrogateescape; this gives back the bytes that were in the environment.
    return None if value is None else value.encode("utf-8", "surrogateescape")


def env_flag(value: str, name: str) -> bool:
    """`true` or `false` (any case) from variable `name`."""
    if value.lower() not in ("true", "false"):
        raise AuthConfigError(f"{name} must be true or false")
    return value.lower() == "true"


def header_name(value: str, name: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise AuthConfigError(f"{name} must be an HTTP header name")
    return value.lower()


def env_options(
    get: Callable[[str], str | None], texts: Mapping[str, str], flags: Mapping[str, str]
) -> dict[str, tuple[str, Any]]:
    """{field: (variable, value)} for the variables that are set; flags parsed as true/false."""
    found: dict[str, tuple[str, Any]] = {f: (v, x) for f, v in texts.items() if (x := get(v)) is not None}
    found |= {f: (v, env_flag(x, v)) for f, v in flags.items() if (x := get(v)) is not None}
    return found


def needs(given: Mapping[str, tuple[str, Any]], value: object, var: str, what: str) -> None:
    if value is None and given:
        names = ", ".join(name for name, _ in given.values())
        raise AuthConfigError(f"{names} set but {var} is not: {what} would be off")


def header(headers: Mapping[str, str], name: str) -> bytes | None:
    """The raw bytes of the one value of header `name`; None if absent, repeated or oversized."""
    received: list[tuple[bytes, bytes]] | None = getattr(headers, "raw", None)
    if received is not None:  # Starlette's Headers: the bytes as received, without decoding them
        return raw_header(received, name.encode("latin-1"))
    found: str | None = None
    for key, value in headers.items():  # Starlette's items() yields every repeat of a header
        if key.lower() == name:
            if found is not None:
                return None
            found = value
    if found is None or len(found) > MAX_HEADER_BYTES:
        return None
    # RFC 9110 §5.5: surrounding whitespace is not part of a field value; h11 strips it,
    # httptools keeps trailing whitespace, so strip here to answer alike on both.
    found = found.strip(" \t")
    try:  # servers decode header bytes as latin-1, so this round-trips what was on the wire
        raw = found.encode("latin-1")
    except UnicodeEncodeError:
        raw = found.encode("utf-8", "surrogatepass")
    return raw if len(raw) <= MAX_HEADER_BYTES else None


def raw_header(raw: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """_header on (name, value) byte pairs: the same answer, without the latin-1 round trip."""
    found: bytes | None = None
    for key, value in raw:
        if key.lower() == name:
            if found is not None:
                return None
            found = value
    if found is None or len(found) > MAX_HEADER_BYTES:
        return None
    return found.strip(b" \t")  # as _header strips, for the same reason


def bearer_token(headers: Mapping[str, str]) -> bytes | None:
    """The token of `Authorization: Bearer <token>`; None without one."""
    value = header(headers, "authorization")
    # The scheme word is public and case-insensitive (RFC 9110); only the token is secret.
    if value is None or value[:7].lower() != b"bearer ":
        return None
    return value[7:]
