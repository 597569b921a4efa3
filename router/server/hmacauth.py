"""Vapi's HMACAuthenticationPlan (DESIGN §4, §10): enc(HMAC(secret, payload)) in a header,
a timestamp window and, for Svix-style ids, a memory of the ids seen. Pure but for that memory.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from router.server.authbase import AuthConfigError, env_bytes, env_options, header, header_name, needs

ALGORITHMS = ("sha256", "sha512", "sha1")
ENCODINGS = ("hex", "base64")
PLACEHOLDERS = ("timestamp", "body", "method", "url", "svix-id")
# Message ids remembered per process for the replay check: past this, the oldest are forgotten.
SEEN_IDS_MAX = 100_000
# ASCII digits only: float() would also take "1e9", "1_000", " 12", "nan" and Unicode digits.
_TIMESTAMP = re.compile(rb"[0-9]{1,16}(?:\.[0-9]{1,9})?")


class SeenIds:
    """Message ids admitted lately, each until its request could no longer pass the timestamp
    window; insertion order is close to expiry order, so pruning pops from the front."""

    __slots__ = ("expiry", "limit")

    def __init__(self, limit: int = SEEN_IDS_MAX) -> None:
        self.expiry: dict[bytes, float] = {}
        self.limit = limit

    def admit(self, key: bytes, now: float, until: float) -> bool:
        """False if `key` was admitted before and has not expired (its `until` is not past);
        else remember it until `until`."""
        expiry = self.expiry
        while expiry:
            oldest = next(iter(expiry))
            if expiry[oldest] >= now and len(expiry) < self.limit:
                break
            del expiry[oldest]
        seen = expiry.get(key)
        if seen is not None and seen >= now:
            return False
        expiry[key] = until
        return True


@dataclass(frozen=True, slots=True)
class HmacConfig:
    """Vapi's HMACAuthenticationPlan: `header` carries prefix + enc(HMAC(secret, payload))."""

    secret: bytes  # the key itself (VAPI_HMAC_SECRET_IS_BASE64 is decoded by from_env)
    header: str = "x-signature"
    timestamp_header: str = "x-timestamp"
    algorithm: str = "sha256"
    encoding: str = "hex"
    payload: str = ""  # "": {timestamp}.{body}, or {body} without a timestamp
    window_s: float = 300.0
    signature_prefix: str = ""  # "": an optional "<algorithm>=" (any case) is tolerated
    include_timestamp: bool = True
    message_id_header: str = ""  # {svix-id}; a repeat within the window is refused
    seen: SeenIds = field(default_factory=SeenIds, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.secret:
            raise AuthConfigError("VAPI_HMAC_SECRET must not be empty")
        if self.algorithm not in ALGORITHMS:
            raise AuthConfigError(f"VAPI_HMAC_ALGORITHM must be one of {', '.join(ALGORITHMS)}")
        if self.encoding not in ENCODINGS:
            raise AuthConfigError(f"VAPI_HMAC_ENCODING must be one of {', '.join(ENCODINGS)}")
        for name, var in (
            ("header", "VAPI_HMAC_HEADER"),
            ("timestamp_header", "VAPI_HMAC_TIMESTAMP_HEADER"),
            ("message_id_header", "VAPI_HMAC_MESSAGE_ID_HEADER"),
        ):
            value = getattr(self, name)
            if value or name != "message_id_header":
                object.__setattr__(self, name, header_name(value, var))
        if not self.payload:
            object.__setattr__(self, "payload", "{timestamp}.{body}" if self.include_timestamp else "{body}")
        fields = {f for _, f in _template(self.payload) if f}
        # Without them, a replayed or altered body would still verify.
        if self.include_timestamp and not {"body", "timestamp"} <= fields:
            raise AuthConfigError("VAPI_HMAC_PAYLOAD must include {timestamp} and {body}")
        if "body" not in fields:
            raise AuthConfigError("VAPI_HMAC_PAYLOAD must include {body}")
        if not self.include_timestamp and "timestamp" in fields:
            raise AuthConfigError(
                "VAPI_HMAC_PAYLOAD uses {timestamp} but VAPI_HMAC_INCLUDE_TIMESTAMP is false"
            )
        if "svix-id" in fields and not self.message_id_header:
            raise AuthConfigError(
                "VAPI_HMAC_PAYLOAD uses {svix-id}: set VAPI_HMAC_MESSAGE_ID_HEADER to the header that "
                "carries it"
            )
        if self.message_id_header and "svix-id" not in fields:
            raise AuthConfigError(
                "VAPI_HMAC_MESSAGE_ID_HEADER is set but VAPI_HMAC_PAYLOAD does not sign {svix-id}: "
                "an unsigned id could be changed to replay a request"
            )
        if not (math.isfinite(self.window_s) and self.window_s >= 0):
            raise AuthConfigError("HMAC replay window must be a finite number of seconds >= 0")


def hmac_from_env(get: Callable[[str], str | None]) -> HmacConfig | None:
    texts = {
        "header": "VAPI_HMAC_HEADER",
        "timestamp_header": "VAPI_HMAC_TIMESTAMP_HEADER",
        "algorithm": "VAPI_HMAC_ALGORITHM",
        "encoding": "VAPI_HMAC_ENCODING",
        "payload": "VAPI_HMAC_PAYLOAD",
        "signature_prefix": "VAPI_HMAC_SIGNATURE_PREFIX",
        "message_id_header": "VAPI_HMAC_MESSAGE_ID_HEADER",
    }
    flags = {
        "include_timestamp": "VAPI_HMAC_INCLUDE_TIMESTAMP",
        "secret_is_base64": "VAPI_HMAC_SECRET_IS_BASE64",
    }
    given = env_options(get, texts, flags)
    secret = get("VAPI_HMAC_SECRET")
    needs(given, secret, "VAPI_HMAC_SECRET", "HMAC")
    if secret is None:
        return None
    values = {f: v for f, (_, v) in given.items()}
    for name in ("algorithm", "encoding"):  # "SHA256" is a spelling, not another algorithm
        if name in values:
            values[name] = values[name].lower()
    key = env_bytes(secret)
    assert key is not None
    if values.pop("secret_is_base64", False):
        key = _base64_secret(key)
    return HmacConfig(key, **values)


def _base64_secret(value: bytes) -> bytes:
    """The key under a base64 secret; Svix's `whsec_` prefix is not part of the base64."""
    text = value.removeprefix(b"whsec_")
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AuthConfigError(
            "VAPI_HMAC_SECRET is not valid base64 (VAPI_HMAC_SECRET_IS_BASE64 is true)"
        ) from None
    if not key:
        raise AuthConfigError("VAPI_HMAC_SECRET must not be empty")
    return key


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
    return tuple((literal.encode(), f) for literal, f, _, _ in parsed)


def hmac_ok(
    cfg: HmacConfig, headers: Mapping[str, str], body: bytes, now: float, method: str, url: str
) -> bool:
    signature = header(headers, cfg.header)
    if signature is None:
        return False
    values = {"body": body, "method": method.encode(), "url": url.encode()}
    until = now + cfg.window_s  # how long a message id is remembered without a timestamp
    if cfg.include_timestamp:
        stamp = header(headers, cfg.timestamp_header)
        if stamp is None or not _TIMESTAMP.fullmatch(stamp):
            return False
        seconds = float(stamp)
        if seconds > 1e12:  # Vapi's unit is unverified: accept milliseconds too
            seconds /= 1000
        if abs(seconds - now) > cfg.window_s:
            return False
        values["timestamp"] = stamp
        until = seconds + cfg.window_s  # the request passes the window check until then
    message_id = None
    if cfg.message_id_header:
        message_id = header(headers, cfg.message_id_header)
        if not message_id:
            return False
        values["svix-id"] = message_id
    message = b"".join(literal + (values[f] if f else b"") for literal, f in _template(cfg.payload))
    digest = hmac.new(cfg.secret, message, cfg.algorithm).digest()
    if not _signature_ok(cfg, signature, digest):
        return False
    # After the signature: only a request that would otherwise pass is remembered.
    return message_id is None or cfg.seen.admit(message_id, now, until)


def _signature_ok(cfg: HmacConfig, signature: bytes, digest: bytes) -> bool:
    hexed = cfg.encoding == "hex"
    expected = digest.hex().encode() if hexed else base64.b64encode(digest)
    if not cfg.signature_prefix:
        prefix = cfg.algorithm.encode() + b"="
        if signature[: len(prefix)].lower() == prefix:
            signature = signature[len(prefix) :]
        return hmac.compare_digest(signature.lower() if hexed else signature, expected)
    # A configured prefix must be there exactly. Svix sends a space-separated list
    # ("v1,<sig> v1,<sig>", during a key rotation): any one signature that matches admits.
    prefix = cfg.signature_prefix.encode()
    ok = False
    for candidate in signature.split(b" "):
        if candidate.startswith(prefix):
            value = candidate[len(prefix) :]
            ok |= hmac.compare_digest(value.lower() if hexed else value, expected)
    return ok
