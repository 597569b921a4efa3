"""Webhook and admin authentication: every credential Vapi can send (DESIGN §4, §10). Pure.

Vapi's shared secret and BearerAuthenticationPlan are checked here; the HMAC plan by
router.hmacauth, OAuth2 tokens by router.oauth (tokens this router issued at its token URL)
and router.jwks (an authorization server's, on its JWKS). Any configured scheme that passes
admits. The clock is passed in; every secret comparison is constant time; nothing here logs.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router.server.authbase import (
    MAX_HEADER_BYTES,
    AuthConfigError,
    bearer_token,
    env_bytes,
    env_options,
    header,
    header_name,
    needs,
)
from router.server.hmacauth import HmacConfig, hmac_from_env, hmac_ok

if TYPE_CHECKING:
    from router.server.jwks import JwksVerifier, PendingKey
    from router.server.oauth import OAuthIssuer

__all__ = [
    "MAX_HEADER_BYTES",
    "AuthConfig",
    "AuthConfigError",
    "HmacConfig",
    "refused_scheme",
    "verify_admin",
    "verify_webhook",
]


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Which schemes admit a webhook (any one suffices) and the admin Bearer token."""

    secret: bytes | None = None
    hmac: HmacConfig | None = None
    admin_token: bytes | None = None
    bearer_header: str = "authorization"  # where VAPI_SERVER_SECRET goes besides x-vapi-secret
    bearer_prefix: bool = True  # "Bearer <secret>"; False: the whole value is the secret
    oauth: OAuthIssuer | None = None  # tokens from this router's POST /oauth/token
    jwks: JwksVerifier | None = None  # tokens from an authorization server, checked on its JWKS

    def __post_init__(self) -> None:
        # An empty secret would match an empty or bare header: refuse it rather than admit anyone.
        for name, value in (("VAPI_SERVER_SECRET", self.secret), ("ROUTER_ADMIN_TOKEN", self.admin_token)):
            if value is not None and not value:
                raise AuthConfigError(f"{name} must not be empty")
        object.__setattr__(self, "bearer_header", header_name(self.bearer_header, "VAPI_BEARER_HEADER"))

    @property
    def webhook_configured(self) -> bool:
        """True when at least one webhook scheme is configured."""
        return (
            self.secret is not None
            or self.hmac is not None
            or self.oauth is not None
            or self.jwks is not None
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuthConfig:
        """Read VAPI_SERVER_SECRET, VAPI_BEARER_*, VAPI_HMAC_*, VAPI_OAUTH_*, ROUTER_OAUTH_* and
        ROUTER_ADMIN_TOKEN; empty counts as unset."""
        from router.server.jwks import JwksVerifier
        from router.server.oauth import OAuthIssuer

        get = {k: v for k, v in env.items() if v}.get
        for name in (
            "VAPI_SERVER_SECRET",
            "ROUTER_ADMIN_TOKEN",
            "ROUTER_OAUTH_CLIENT_ID",
            "ROUTER_OAUTH_CLIENT_SECRET",
        ):
            value = get(name)
            # Header values lose surrounding whitespace in transit, so such a token could never match.
            if value is not None and value != value.strip():
                raise AuthConfigError(f"{name} has leading or trailing whitespace (a stray newline?)")
        secret = env_bytes(get("VAPI_SERVER_SECRET"))
        bearer = env_options(
            get, {"bearer_header": "VAPI_BEARER_HEADER"}, {"bearer_prefix": "VAPI_BEARER_PREFIX"}
        )
        needs(bearer, secret, "VAPI_SERVER_SECRET", "the Bearer scheme")
        return cls(
            secret=secret,
            hmac=hmac_from_env(get),
            admin_token=env_bytes(get("ROUTER_ADMIN_TOKEN")),
            oauth=OAuthIssuer.from_env(get),
            jwks=JwksVerifier.from_env(get),
            **{field: value for field, (_, value) in bearer.items()},
        )

    def describe(self) -> str:
        """The configured webhook schemes, for a startup line; never any secret."""
        parts = []
        if self.secret is not None:
            if self.bearer_header == "authorization" and self.bearer_prefix:
                parts.append("x-vapi-secret/Bearer")
            elif self.bearer_header == "x-vapi-secret" and not self.bearer_prefix:
                parts.append("x-vapi-secret")
            else:
                parts.append(f"x-vapi-secret/{self.bearer_header}{'' if self.bearer_prefix else ' (raw)'}")
        if (h := self.hmac) is not None:
            parts.append(f"HMAC {h.algorithm} {h.encoding} in {h.header}")
        if self.oauth is not None:
            parts.append("OAuth2 tokens from POST /oauth/token")
        if self.jwks is not None:
            parts.append(f"OAuth2 JWTs from {self.jwks.issuer}")
        return ", ".join(parts) or "none"


def verify_webhook(
    config: AuthConfig,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    method: str = "POST",
    url: str = "",
) -> bool | PendingKey:
    """True when any configured scheme admits the request (or none is configured). A token
    that needs a key not yet fetched from the JWKS gives a PendingKey to await instead."""
    if not config.webhook_configured:
        return True
    if config.hmac is not None and hmac_ok(config.hmac, headers, body, now, method, url):
        return True
    if config.secret is not None and _secret_ok(config, headers, config.secret):
        return True
    if config.oauth is None and config.jwks is None:
        return False
    token = bearer_token(headers)
    if token is None:
        return False
    if config.oauth is not None and config.oauth.verify(token, now):
        return True
    return config.jwks.verify(token, now) if config.jwks is not None else False


def verify_admin(config: AuthConfig, headers: Mapping[str, str]) -> bool:
    """True when `Authorization: Bearer <ROUTER_ADMIN_TOKEN>` matches; False if no token is set."""
    if config.admin_token is None:
        return False
    token = bearer_token(headers)
    return token is not None and hmac.compare_digest(token, config.admin_token)


def refused_scheme(config: AuthConfig, headers: Mapping[str, str]) -> str:
    """The `scheme` label of a refused webhook request: the configured schemes whose credential
    it carried, in the order bearer, hmac, oauth2, joined by "+"; "none" when it carried none.
    A JWT in `Authorization: Bearer` counts as OAuth2's when OAuth2 is configured."""
    tried = []
    token = bearer_token(headers)
    oauth = config.oauth is not None or config.jwks is not None
    jwt = oauth and token is not None and token.count(b".") == 2
    authorization_is_bearer = False
    if config.secret is not None:
        own = header(headers, config.bearer_header)
        if own is not None and config.bearer_header == "authorization":
            own = None if jwt else own
            authorization_is_bearer = own is not None
        if own is not None or header(headers, "x-vapi-secret") is not None:
            tried.append("bearer")
    if config.hmac is not None and header(headers, config.hmac.header) is not None:
        tried.append("hmac")
    if oauth and token is not None and not authorization_is_bearer:
        tried.append("oauth2")
    return "+".join(tried) or "none"


def _secret_ok(config: AuthConfig, headers: Mapping[str, str], secret: bytes) -> bool:
    legacy = header(headers, "x-vapi-secret")
    if legacy is not None and hmac.compare_digest(legacy, secret):
        return True
    value = header(headers, config.bearer_header)
    if value is None:
        return False
    if config.bearer_prefix:
        if value[:7].lower() != b"bearer ":
            return False
        value = value[7:]
    return hmac.compare_digest(value, secret)
