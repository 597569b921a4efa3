"""OAuth2 with the router as the token URL (DESIGN §10): `POST /oauth/token` runs the client
credentials grant and issues HS256 JWTs signed with ROUTER_OAUTH_SIGNING_KEY, which every
worker and replica that shares the key accepts as the webhook's Bearer token. [I/O edge]
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import parse_qs, unquote_to_bytes

import jwt
import orjson
from jwt.types import Options
from starlette.requests import Request
from starlette.responses import Response

from router.server.authbase import AuthConfigError
from router.server.http import BodyTooLarge, read_body

if TYPE_CHECKING:
    from router.server.metrics import Metrics

ISSUER = "vapi-router"
AUDIENCE = "vapi-router-webhook"
# Clock skew allowed between the machines that issue and check a token (replicas, Vapi).
LEEWAY_S = 30
MIN_KEY_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
LIFETIMES = (60, 86_400)
MAX_FORM_BYTES = 16 * 1024
_OPTIONS: Options = {
    "require": ["exp", "iat", "iss", "aud", "sub"],
    # the clock is this module's to pass in (PyJWT reads its own): claims_current checks these
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
}
_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def claims_current(claims: Mapping[str, Any], now: float, leeway: float = LEEWAY_S) -> bool:
    """`exp` is a number not passed (within the leeway); `nbf` and `iat`, if there, not ahead."""
    exp = claims.get("exp")
    if not _number(exp) or now > exp + leeway:
        return False
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not _number(value) or value > now + leeway):
            return False
    return True


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class OAuthIssuer:
    """The one client of Vapi's OAuth2AuthenticationPlan, and the key its tokens are signed with."""

    client_id: bytes
    client_secret: bytes
    signing_key: bytes
    scope: str = ""  # space-separated scopes the client may ask for; "" none
    lifetime_s: int = 3600

    def __post_init__(self) -> None:
        for name, value in (
            ("ROUTER_OAUTH_CLIENT_ID", self.client_id),
            ("ROUTER_OAUTH_CLIENT_SECRET", self.client_secret),
        ):
            if not value:
                raise AuthConfigError(f"{name} must not be empty")
        if len(self.signing_key) < MIN_KEY_BYTES:
            raise AuthConfigError(f"ROUTER_OAUTH_SIGNING_KEY must be at least {MIN_KEY_BYTES} bytes")
        if not LIFETIMES[0] <= self.lifetime_s <= LIFETIMES[1]:
            raise AuthConfigError(
                f"ROUTER_OAUTH_TOKEN_LIFETIME_S must be a whole number of seconds from "
                f"{LIFETIMES[0]} to {LIFETIMES[1]}"
            )

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> OAuthIssuer | None:
        """From ROUTER_OAUTH_CLIENT_ID, _CLIENT_SECRET, _SIGNING_KEY (all three, or none),
        _SCOPE and _TOKEN_LIFETIME_S."""
        required = ("ROUTER_OAUTH_CLIENT_ID", "ROUTER_OAUTH_CLIENT_SECRET", "ROUTER_OAUTH_SIGNING_KEY")
        optional = ("ROUTER_OAUTH_SCOPE", "ROUTER_OAUTH_TOKEN_LIFETIME_S")
        present = [name for name in (*required, *optional) if get(name) is not None]
        if not present:
            return None
        missing = [name for name in required if get(name) is None]
        if missing:
            raise AuthConfigError(
                f"{', '.join(present)} set but {', '.join(missing)} not: the token URL would be off"
            )
        lifetime = get("ROUTER_OAUTH_TOKEN_LIFETIME_S") or "3600"
        if not (lifetime.isascii() and lifetime.isdigit()):
            lifetime = "0"  # refused below, by the same message
        client_id, secret, key = (str(get(name)).encode("utf-8", "surrogateescape") for name in required)
        return cls(client_id, secret, key, " ".join((get("ROUTER_OAUTH_SCOPE") or "").split()), int(lifetime))

    def issue(self, now: float, scope: str = "") -> str:
        """A signed access token for the client, valid `lifetime_s` from `now`."""
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": self.client_id.decode("utf-8", "surrogateescape"),
            "iat": int(now),
            "exp": int(now) + self.lifetime_s,
        }
        if scope:
            claims["scope"] = scope
        return jwt.encode(claims, self.signing_key, algorithm="HS256")

    def verify(self, token: bytes, now: float) -> bool:
        """True for a current token this router (or one sharing its key) issued to the client."""
        try:  # only HS256: "none" and any asymmetric algorithm are refused by PyJWT
            claims = jwt.decode(
                token,
                self.signing_key,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options=_OPTIONS,
            )
        except jwt.PyJWTError:
            return False
        subject = claims.get("sub")
        if not isinstance(subject, str):
            return False
        # rotating the client id revokes the tokens issued to the old one
        same = hmac.compare_digest(subject.encode("utf-8", "surrogateescape"), self.client_id)
        return same and claims_current(claims, now)

    def client_ok(self, client_id: bytes, secret: bytes) -> bool:
        """Constant time in both values, and no shortcut when the id is wrong."""
        return hmac.compare_digest(client_id, self.client_id) & hmac.compare_digest(
            secret, self.client_secret
        )


def _error(error: str, status: int = 400, description: str | None = None, **headers: str) -> Response:
    """RFC 6749 §5.2: `{"error": code}`, with a description for the client's developer."""
    body: dict[str, str] = {"error": error}
    if description:
        body["error_description"] = description
    return Response(orjson.dumps(body), status, {**_NO_STORE, **headers}, media_type="application/json")


def _basic(value: str) -> tuple[bytes, bytes] | None:
    """(client id, secret) from `Authorization: Basic …`; None if it is not that, or malformed."""
    if value[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    client_id, colon, secret = decoded.partition(b":")
    return (client_id, secret) if colon else None


def _unform(value: bytes) -> bytes:
    return unquote_to_bytes(value.replace(b"+", b" "))


async def token_endpoint(
    request: Request, *, issuer: OAuthIssuer | None, metrics: Metrics, clock: Callable[[], float]
) -> Response:
    """RFC 6749 §4.4 client credentials: form body or HTTP Basic in, §5.1 token or §5.2 error out."""
    if issuer is None:  # the route exists only when configured
        return _error("invalid_client", 401)
    try:
        raw = await read_body(request)
    except BodyTooLarge:
        return _error("invalid_request", 413, "body too large")
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded" or len(raw) > MAX_FORM_BYTES:
        return _error("invalid_request", 400, "expected an application/x-www-form-urlencoded body")
    try:
        form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        return _error("invalid_request", 400, "the body is not a form")
    if any(len(values) > 1 for values in form.values()):
        return _error("invalid_request", 400, "a parameter is repeated")
    params = {name: values[0] for name, values in form.items()}
    authorization = request.headers.get("authorization")
    basic = _basic(authorization) if authorization is not None else None
    in_body = "client_id" in params or "client_secret" in params
    if basic is not None and in_body:
        return _error("invalid_request", 400, "use one client authentication method")
    if basic is not None:
        # RFC 6749 §2.3.1 form-encodes both before Basic; many clients do not: either admits.
        client_id, secret = basic
        ok = issuer.client_ok(client_id, secret) | issuer.client_ok(_unform(client_id), _unform(secret))
    else:
        ok = issuer.client_ok(
            params.get("client_id", "").encode("utf-8", "surrogateescape"),
            params.get("client_secret", "").encode("utf-8", "surrogateescape"),
        )
    if not ok:
        metrics.auth_failures.labels("oauth2-token").inc()
        return _error("invalid_client", 401, **{"www-authenticate": 'Basic realm="vapi-router"'})
    grant = params.get("grant_type")
    if grant is None:
        return _error("invalid_request", 400, "grant_type is missing")
    if grant != "client_credentials":
        return _error("unsupported_grant_type", 400)
    allowed = issuer.scope.split()
    asked = params.get("scope", "").split()
    if not set(asked) <= set(allowed):
        return _error("invalid_scope", 400)
    scope = " ".join(asked or allowed)
    token = issuer.issue(clock(), scope)
    body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": issuer.lifetime_s}
    if scope:
        body["scope"] = scope
    return Response(orjson.dumps(body), 200, _NO_STORE, media_type="application/json")
