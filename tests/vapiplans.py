"""Vapi's side of every credential, for tests: written from the plan descriptions in Vapi's
spec (../shared/vapi/spec/schemas/{Bearer,HMAC,OAuth2}AuthenticationPlan.json), from Svix's
docs, and from RFC 7515/7518 for JWTs, without importing router or PyJWT. A plan is the dict
Vapi's API takes as `authenticationPlan`; `plan_headers` gives what Vapi would send with it.
Also a real JWKS server on 127.0.0.1 (a thread, as tests/crmserver.py), that can hang.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

import httpx
from crmserver import Receive, Scope, Send, ThreadedUvicorn, serve_in_thread
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# ------------------------------------------------------------------ Bearer and HMAC plans


def plan_headers(
    plan: Mapping[str, Any],
    body: bytes,
    *,
    now: float | None = None,
    method: str = "POST",
    url: str = "",
    message_id: str = "msg_2mJxbLQ0zv7Ef1c9",
) -> dict[str, str]:
    """The headers Vapi sends with `body` under `plan` (type bearer or hmac)."""
    if plan["type"] == "bearer":
        # "headerName ... Defaults to 'Authorization'"; "bearerPrefixEnabled ... Defaults to true"
        prefix = "Bearer " if plan.get("bearerPrefixEnabled", True) else ""
        return {plan.get("headerName", "Authorization"): prefix + plan["token"]}
    assert plan["type"] == "hmac", plan["type"]
    # "secretIsBase64: Whether the secret key is base64-encoded and should be decoded before use"
    key = base64.b64decode(plan["secretKey"]) if plan.get("secretIsBase64") else plan["secretKey"].encode()
    include_timestamp = plan.get("includeTimestamp", True)  # "Defaults to true."
    timestamp = str(int(time.time() if now is None else now))
    # "Defaults to '{timestamp}.{body}'"; without a timestamp there is none to sign (DESIGN §10)
    payload_format = plan.get("payloadFormat", "{timestamp}.{body}" if include_timestamp else "{body}")
    values = {"{timestamp}": timestamp, "{method}": method, "{url}": url, "{svix-id}": message_id}
    message = payload_format.encode()
    for placeholder, value in values.items():
        message = message.replace(placeholder.encode(), value.encode())
    message = message.replace(b"{body}", body)  # last: the body's own text is never substituted
    digest = hmac.new(key, message, getattr(hashlib, plan["algorithm"])).digest()
    encoded = (
        digest.hex() if plan.get("signatureEncoding", "hex") == "hex" else base64.b64encode(digest).decode()
    )
    headers = {plan.get("signatureHeader", "x-signature"): plan.get("signaturePrefix", "") + encoded}
    if include_timestamp:
        headers[plan.get("timestampHeader", "x-timestamp")] = timestamp
    if "messageIdHeader" in plan:
        headers[plan["messageIdHeader"]] = message_id
    return headers


def svix_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Svix's scheme from its docs: `v1,` + base64(HMAC-SHA256(base64 key after `whsec_`,
    "{svix-id}.{svix-timestamp}.{body}")) in svix-signature."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"svix-id": message_id, "svix-timestamp": str(timestamp), "svix-signature": f"v1,{signature}"}


# ------------------------------------------------------------------ OAuth2 plan


def fetch_token(plan: Mapping[str, Any], *, basic: bool = False) -> httpx.Response:
    """Vapi's client credentials request to the plan's `url` (form-encoded, as its docs say)."""
    form = {"grant_type": "client_credentials"}
    if plan.get("scope"):
        form["scope"] = plan["scope"]
    auth = None
    if basic:
        auth = (plan["clientId"], plan["clientSecret"])
    else:
        form |= {"client_id": plan["clientId"], "client_secret": plan["clientSecret"]}
    return httpx.post(plan["url"], data=form, auth=auth, timeout=10)


# ------------------------------------------------------------------ JWTs (RFC 7515, 7518)

Alg = Literal["RS256", "ES256", "HS256", "none"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def jws(claims: Mapping[str, Any], key: Any, alg: Alg, *, kid: str | None = None, **header: Any) -> str:
    """A compact JWS: base64url(header).base64url(claims).base64url(signature)."""
    head = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid is not None else {}), **header}
    signing_input = (b64url(json.dumps(head).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    if alg == "RS256":
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":  # JWS wants r || s, 32 bytes each, not DER
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "HS256":
        signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    else:
        signature = b""
    return signing_input.decode() + "." + b64url(signature)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    """The public half of `key` as a JWK (RFC 7518 §6)."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "kid": kid, "use": "sig", "n": _uint(numbers.n), "e": _uint(numbers.e), **extra}
    point = key.public_key().public_numbers()
    coordinate = lambda v: b64url(v.to_bytes(32, "big"))  # noqa: E731
    return {
        "kty": "EC",
        "kid": kid,
        "use": "sig",
        "crv": "P-256",
        "x": coordinate(point.x),
        "y": coordinate(point.y),
        **extra,
    }


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ------------------------------------------------------------------ a JWKS server

JwksMode = Literal["ok", "hang", "500"]


class JwksServer:
    """`with JwksServer() as jwks:` serves `jwks.keys` as `{"keys": [...]}` at jwks.url.

    mode "hang" holds each request until the mode changes or the server stops; "500" fails.
    `requests` counts the requests received."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.mode: JwksMode = "ok"
        self.requests = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/.well-known/jwks.json"
        self._server: ThreadedUvicorn | None = None
        self._thread: threading.Thread | None = None
        self._release: asyncio.Event | None = None

    def __enter__(self) -> JwksServer:
        self._server, self._thread = serve_in_thread(self._app, self._sock, "the test JWKS server")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.set_mode("ok")  # hanging requests end
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(5)
        self._sock.close()

    def set_mode(self, mode: JwksMode) -> None:
        self.mode = mode
        loop, release = (self._server.loop if self._server else None), self._release
        if loop is not None and release is not None and mode != "hang":
            loop.call_soon_threadsafe(release.set)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.requests += 1
        if self.mode == "hang":
            if self._release is None or self._release.is_set():
                self._release = asyncio.Event()
            await self._release.wait()
        status, body = (500, b"{}") if self.mode == "500" else (200, json.dumps({"keys": self.keys}).encode())
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
