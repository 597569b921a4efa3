"""Webhook and admin authentication: Vapi's shared secret, Bearer and HMAC schemes. Pure.

The clock is passed in; every secret comparison is constant time; nothing here logs.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hmac
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_HEADER_BYTES = 4096
ALGORITHMS = ("sha256", "sha512", "sha1")
ENCODINGS = ("hex", "base64")
PLACEHOLDERS = ("timestamp", "body", "method", "url")
# ASCII digits only: float() would also take "1e9", "1_000", " 12", "nan" and Unicode digits.
_TIMESTAMP = re.compile(rb"[0-9]{1,16}(?:\.[0-9]{1,9})?")


class AuthConfigError(ValueError):
    """Bad auth configuration; the message names the variable, never its value."""


@dataclass(frozen=True, slots=True)
class HmacConfig:
    """An HMAC credential: `header` carries enc(HMAC(secret, payload)), `timestamp_header` unix time."""

    secret: bytes
    header: str = "x-signature"
    timestamp_header: str = "x-timestamp"
    algorithm: str = "sha256"
    encoding: str = "hex"
    payload: str = "{timestamp}.{body}"
    window_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.secret:
            raise AuthConfigError("VAPI_HMAC_SECRET must not be empty")
        if self.algorithm not in ALGORITHMS:
            raise AuthConfigError(f"VAPI_HMAC_ALGORITHM must be one of {', '.join(ALGORITHMS)}")
        if self.encoding not in ENCODINGS:
            raise AuthConfigError(f"VAPI_HMAC_ENCODING must be one of {', '.join(ENCODINGS)}")
        _template(self.payload)
        if not (math.isfinite(self.window_s) and self.window_s >= 0):
            raise AuthConfigError("HMAC replay window must be a finite number of seconds >= 0")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Which schemes admit a webhook (any one suffices) and the admin Bearer token."""

    secret: bytes | None = None
    hmac: HmacConfig | None = None
    admin_token: bytes | None = None

    def __post_init__(self) -> None:
        # An empty secret would match an empty or bare header: refuse it rather than admit anyone.
        for name, value in (("VAPI_SERVER_SECRET", self.secret), ("ROUTER_ADMIN_TOKEN", self.admin_token)):
            if value is not None and not value:
                raise AuthConfigError(f"{name} must not be empty")

    @property
    def webhook_configured(self) -> bool:
        """True when at least one webhook scheme is configured."""
        return self.secret is not None or self.hmac is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuthConfig:
        """Read VAPI_SERVER_SECRET, VAPI_HMAC_* and ROUTER_ADMIN_TOKEN; empty counts as unset."""
        get = {k: v for k, v in env.items() if v}.get
        for name in ("VAPI_SERVER_SECRET", "ROUTER_ADMIN_TOKEN"):
            value = get(name)
            # Header values lose surrounding whitespace in transit, so such a token could never match.
            if value is not None and value != value.strip():
                raise AuthConfigError(f"{name} has leading or trailing whitespace (a stray newline?)")
        options = {
            "header": "VAPI_HMAC_HEADER",
            "timestamp_header": "VAPI_HMAC_TIMESTAMP_HEADER",
            "algorithm": "VAPI_HMAC_ALGORITHM",
            "encoding": "VAPI_HMAC_ENCODING",
            "payload": "VAPI_HMAC_PAYLOAD",
        }
        given: dict[str, Any] = {field: v for field, var in options.items() if (v := get(var)) is not None}
        hmac_secret = get("VAPI_HMAC_SECRET")
        if hmac_secret is None and given:
            names = ", ".join(options[field] for field in given)
            raise AuthConfigError(f"{names} set but VAPI_HMAC_SECRET is not: HMAC would be off")
        for field in ("algorithm", "encoding"):  # "SHA256" is a spelling, not another algorithm
            if field in given:
                given[field] = given[field].lower()
        return cls(
            secret=_env_bytes(get("VAPI_SERVER_SECRET")),
            hmac=dataclasses.replace(HmacConfig(hmac_secret.encode("utf-8", "surrogateescape")), **given)
            if hmac_secret is not None
            else None,
            admin_token=_env_bytes(get("ROUTER_ADMIN_TOKEN")),
        )

    def describe(self) -> str:
        """The configured webhook schemes, for a startup line; never any secret."""
        parts = ["x-vapi-secret/Bearer"] if self.secret is not None else []
        if (h := self.hmac) is not None:
            parts.append(f"HMAC {h.algorithm} {h.encoding} in {h.header}")
        return ", ".join(parts) or "none"


def verify_webhook(
    config: AuthConfig,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    method: str = "POST",
    url: str = "",
) -> bool:
    """True when any configured scheme admits the request (or none is configured)."""
    if not config.webhook_configured:
        return True
    if config.hmac is not None and _hmac_ok(config.hmac, headers, body, now, method, url):
        return True
    if config.secret is None:
        return False
    legacy = _header(headers, "x-vapi-secret")
    if legacy is not None and hmac.compare_digest(legacy, config.secret):
        return True
    return _bearer_ok(headers, config.secret)


def verify_admin(config: AuthConfig, headers: Mapping[str, str]) -> bool:
    """True when `Authorization: Bearer <ROUTER_ADMIN_TOKEN>` matches; False if no token is set."""
    return config.admin_token is not None and _bearer_ok(headers, config.admin_token)


def _env_bytes(value: str | None) -> bytes | None:
    # os.environ decodes with surrogateescape; this gives back the bytes that were in the environment.
    return None if value is None else value.encode("utf-8", "surrogateescape")


def _header(headers: Mapping[str, str], name: str) -> bytes | None:
    """The raw bytes of the one value of header `name`; None if absent, repeated or oversized."""
    received: list[tuple[bytes, bytes]] | None = getattr(headers, "raw", None)
    if received is not None:  # Starlette's Headers: the bytes as received, without decoding them
        return _raw_header(received, name.encode("latin-1"))
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


def _raw_header(raw: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
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


def _bearer_ok(headers: Mapping[str, str], token: bytes) -> bool:
    value = _header(headers, "authorization")
    # The scheme word is public and case-insensitive (RFC 9110); only the token is secret.
    if value is None or value[:7].lower() != b"bearer ":
        return False
    return hmac.compare_digest(value[7:], token)


@functools.cache
def _template(payload: str) -> tuple[tuple[bytes, str | None], ...]:
    """The payload format as (literal, placeholder) pairs, so signing works on raw bytes."""
    allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    try:
        parsed = list(string.Formatter().parse(payload))
    except ValueError:
        raise AuthConfigError(
            "VAPI_HMAC_PAYLOAD has an unmatched brace (write {{ or }} for a literal one)"
        ) from None
    fields = [f for _, f, _, _ in parsed if f is not None]
    if any(f not in PLACEHOLDERS for f in fields) or any(s or c for _, f, s, c in parsed if f is not None):
        raise AuthConfigError(f"VAPI_HMAC_PAYLOAD may use only the placeholders {allowed}")
    # Without both, a replayed or altered body would still verify.
    if "body" not in fields or "timestamp" not in fields:
        raise AuthConfigError("VAPI_HMAC_PAYLOAD must include {timestamp} and {body}")
    return tuple((literal.encode(), f) for literal, f, _, _ in parsed)


def _hmac_ok(
    cfg: HmacConfig, headers: Mapping[str, str], body: bytes, now: float, method: str, url: str
) -> bool:
    signature = _header(headers, cfg.header.lower())
    stamp = _header(headers, cfg.timestamp_header.lower())
    if signature is None or stamp is None or not _TIMESTAMP.fullmatch(stamp):
        return False
    seconds = float(stamp)
    if seconds > 1e12:  # Vapi's unit is unverified: accept milliseconds too
        seconds /= 1000
    if abs(seconds - now) > cfg.window_s:
        return False
    values = {"timestamp": stamp, "body": body, "method": method.encode(), "url": url.encode()}
    message = b"".join(literal + (values[f] if f else b"") for literal, f in _template(cfg.payload))
    digest = hmac.new(cfg.secret, message, cfg.algorithm).digest()
    prefix = cfg.algorithm.encode() + b"="
    if signature[: len(prefix)].lower() == prefix:
        signature = signature[len(prefix) :]
    if cfg.encoding == "hex":
        return hmac.compare_digest(signature.lower(), digest.hex().encode())
    return hmac.compare_digest(signature, base64.b64encode(digest))
