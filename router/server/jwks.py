"""OAuth2 Bearer JWTs from an existing authorization server, checked against its JWKS
(VAPI_OAUTH_JWKS_URL, VAPI_OAUTH_ISSUER, VAPI_OAUTH_AUDIENCE; DESIGN §10). [I/O]

Keys are cached per process. A token whose `kid` is not cached starts a refresh, at most one
every `min_refresh_s` (a client spraying random kids cannot make the server hammer the JWKS)
and each bounded by `fetch_timeout_s`; the call waits for it no longer than its budget. A
failed or hanging fetch refuses only the calls that need a missing key: cached keys keep
working, and a set older than `max_age_s` is refreshed in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.types import Options

from router.server.authbase import AuthConfigError
from router.server.oauth import claims_current

log = logging.getLogger("router.server.jwks")
FETCH_TIMEOUT_S = 1.0  # well below any call deadline Vapi allows (~5 s)
MIN_REFRESH_S = 10.0
MAX_AGE_S = 300.0
MAX_JWKS_BYTES = 256 * 1024
MAX_KEYS = 32
MIN_RSA_BITS = 2048
# Only what each key type can do: an RSA key never verifies an HS256 (or an ES256) token.
_RSA = frozenset({"RS256", "RS384", "RS512"})
_EC = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
ALGORITHMS = _RSA | frozenset(_EC.values())
_OPTIONS: Options = {
    "require": ["exp", "iss", "aud"],
    "verify_exp": False,  # claims_current checks the times on the clock passed in
    "verify_nbf": False,
    "verify_iat": False,
}


@dataclass(frozen=True, slots=True)
class Key:
    """A public key from the JWKS and the algorithms it may verify."""

    key: RSAPublicKey | EllipticCurvePublicKey
    algorithms: frozenset[str]


class KeyCache:
    """The keys of one process, and the refresh in flight."""

    def __init__(self) -> None:
        self.keys: dict[str, Key] = {}
        self.fetched_at: float | None = None  # time.monotonic() of the last good fetch
        self.attempted_at = -float("inf")
        self.task: asyncio.Task[None] | None = None
        self.client: httpx.AsyncClient | None = None

    def find(self, kid: str | None) -> Key | None:
        if kid is None:  # a token without a kid: only a set of one key is unambiguous
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)


@dataclass(frozen=True, slots=True)
class JwksVerifier:
    """Which tokens are accepted (issuer, audience) and where their keys come from."""

    url: str
    issuer: str
    audience: str
    min_refresh_s: float = MIN_REFRESH_S
    max_age_s: float = MAX_AGE_S
    fetch_timeout_s: float = FETCH_TIMEOUT_S
    cache: KeyCache = field(default_factory=KeyCache, compare=False, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise AuthConfigError("VAPI_OAUTH_JWKS_URL must be an https:// URL")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            # keys fetched in the clear could be swapped on the way: anyone could sign tokens
            raise AuthConfigError("VAPI_OAUTH_JWKS_URL must be https:// (http:// only to a loopback address)")

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> JwksVerifier | None:
        names = ("VAPI_OAUTH_JWKS_URL", "VAPI_OAUTH_ISSUER", "VAPI_OAUTH_AUDIENCE")
        values = [get(name) for name in names]
        if all(v is None for v in values):
            return None
        missing = [name for name, v in zip(names, values, strict=True) if v is None]
        if missing:
            present = [name for name, v in zip(names, values, strict=True) if v is not None]
            raise AuthConfigError(
                f"{', '.join(present)} set but {', '.join(missing)} not: "
                "tokens from the authorization server would not be checked"
            )
        url, issuer, audience = (str(v) for v in values)
        return cls(url, issuer, audience)

    def verify(self, token: bytes, now: float) -> bool | PendingKey:
        """True or False at once when the key is cached (or cannot be fetched now); a
        PendingKey when the token needs a key that a refresh may bring."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return False
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or not (kid is None or isinstance(kid, str)):
            return False  # "none", HS256 and the rest never reach a key
        cache = self.cache
        key = cache.find(kid)
        if key is not None:
            if cache.fetched_at is not None and time.monotonic() - cache.fetched_at > self.max_age_s:
                with contextlib.suppress(RuntimeError):  # no event loop: nothing to refresh on
                    self.refresh()
            return self.check(token, alg, key, now)
        if cache.task is None and time.monotonic() - cache.attempted_at < self.min_refresh_s:
            return False
        return PendingKey(self, token, alg, kid, now)

    def check(self, token: bytes, alg: str, key: Key, now: float) -> bool:
        if alg not in key.algorithms:
            return False
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer, options=_OPTIONS
            )
        except jwt.PyJWTError:
            return False
        return claims_current(claims, now)

    def refresh(self) -> asyncio.Task[None] | None:
        """The refresh in flight, or a new one if the last began `min_refresh_s` ago or more;
        None when rate-limited. Needs a running event loop."""
        loop = asyncio.get_running_loop()
        cache = self.cache
        if cache.task is not None and cache.task.get_loop() is loop:
            return cache.task
        if time.monotonic() - cache.attempted_at < self.min_refresh_s:
            return None
        cache.attempted_at = time.monotonic()
        task = cache.task = loop.create_task(self._fetch())

        def done(finished: asyncio.Task[None]) -> None:
            if cache.task is finished:
                cache.task = None

        task.add_done_callback(done)
        return task

    async def keep(self) -> None:
        """For the server's lifetime: fetch the keys at start, close the client at the end."""
        try:
            task = self.refresh()
            if task is not None:
                await asyncio.shield(task)
            await asyncio.Event().wait()
        finally:
            client, self.cache.client = self.cache.client, None
            if client is not None:
                await client.aclose()

    async def _fetch(self) -> None:
        cache = self.cache
        try:
            async with asyncio.timeout(self.fetch_timeout_s):
                keys = parse_jwks(await self._get())
        except Exception as exc:  # the URL may hold credentials: never logged
            log.warning("JWKS refresh from VAPI_OAUTH_JWKS_URL failed (%s); cached keys stay", _reason(exc))
            return
        if not keys:
            log.warning("JWKS at VAPI_OAUTH_JWKS_URL has no usable RSA or EC signing key; cached keys stay")
            return
        if keys.keys() != cache.keys.keys():
            log.info("JWKS keys: %s", ", ".join(sorted(keys)))
        cache.keys, cache.fetched_at = keys, time.monotonic()

    async def _get(self) -> bytes:
        client = self.cache.client
        if client is None:
            client = self.cache.client = httpx.AsyncClient(
                timeout=self.fetch_timeout_s,
                follow_redirects=False,
                # a connection per fetch (they are rare): none outlives the event loop it was made on
                limits=httpx.Limits(max_keepalive_connections=0),
                headers={
                    "accept": "application/json",
                    "accept-encoding": "identity",
                    "user-agent": "vapi-router",
                },
            )
        async with client.stream("GET", self.url) as response:
            if response.status_code != 200:
                raise _Refused(f"HTTP {response.status_code}")
            chunks, size = [], 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > MAX_JWKS_BYTES:
                    raise _Refused(f"larger than {MAX_JWKS_BYTES} bytes")
                chunks.append(chunk)
        return b"".join(chunks)


class PendingKey:
    """A token whose key is not cached: `await wait(budget)` refreshes (or joins the refresh in
    flight) for at most `budget_s`, then checks the token; False if the key never came."""

    __slots__ = ("alg", "kid", "now", "token", "verifier")

    def __init__(self, verifier: JwksVerifier, token: bytes, alg: str, kid: str | None, now: float) -> None:
        self.verifier, self.token, self.alg, self.kid, self.now = verifier, token, alg, kid, now

    async def wait(self, budget_s: float) -> bool:
        verifier = self.verifier
        task = verifier.refresh()
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), max(budget_s, 0.0))
            except TimeoutError:
                return False
        key = verifier.cache.find(self.kid)
        return key is not None and verifier.check(self.token, self.alg, key, self.now)


class _Refused(Exception):
    pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, _Refused):
        return str(exc)
    return type(exc).__name__


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_jwks(data: bytes) -> dict[str, Key]:
    """The usable signing keys of a JWKS document by kid ("" for a key without one): RSA of
    2048 bits or more, EC on P-256/384/521; symmetric, private and encryption keys skipped."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _Refused("not JSON") from None
    listed = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(listed, list):
        raise _Refused('no "keys" list')
    keys: dict[str, Key] = {}
    for jwk in listed[:MAX_KEYS]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or "d" in jwk:
            continue
        kid = jwk.get("kid", "")
        key = _public_key(jwk)
        if key is None or not isinstance(kid, str):
            continue
        algorithms = key.algorithms
        if "alg" in jwk:  # a key that names its algorithm verifies only that one
            algorithms = algorithms & {jwk["alg"]}
        if algorithms:
            keys[kid] = Key(key.key, algorithms)
    return keys


def _public_key(jwk: dict[str, Any]) -> Key | None:
    try:
        if jwk.get("kty") == "RSA":
            rsa = RSAAlgorithm.from_jwk(jwk)
            if isinstance(rsa, RSAPublicKey) and rsa.key_size >= MIN_RSA_BITS:
                return Key(rsa, _RSA)
        elif jwk.get("kty") == "EC":
            ec = ECAlgorithm.from_jwk(jwk)
            if isinstance(ec, EllipticCurvePublicKey) and ec.curve.name in _EC:
                return Key(ec, frozenset({_EC[ec.curve.name]}))
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        pass
    return None
