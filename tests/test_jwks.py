"""router.server.jwks: OAuth2 JWTs from an existing authorization server (DESIGN §10), through the real
router, with the JWKS served by a real local server (tests/vapiplans.py) that can fail or hang.
Tokens are signed by hand from RFC 7515/7518, not by the library under test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from serverutil import InProcess, metric, payload, reply_problems
from vapiplans import JwksServer, ec_key, jws, public_jwk, public_pem, rsa_key

from router.server.auth import AuthConfig, AuthConfigError
from router.server.jwks import JwksVerifier, _Refused, parse_jwks

ISSUER = "https://auth.example.com/"
AUDIENCE = "https://router.example.com/webhook/vapi"
DEADLINE_MS = 1000  # a call waits for the JWKS at most half of it
POLICY = f"""\
version: 1
settings: {{deadline_ms: {DEADLINE_MS}}}
targets:
  desk: {{assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}}
default: desk
"""
RSA, EC, ROGUE, LATER = rsa_key(), ec_key(), rsa_key(), rsa_key()


def env(url: str) -> dict[str, str]:
    return {"VAPI_OAUTH_JWKS_URL": url, "VAPI_OAUTH_ISSUER": ISSUER, "VAPI_OAUTH_AUDIENCE": AUDIENCE}


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "vapi", "iat": now, "exp": now + 300}
    return {k: v for k, v in (base | changes).items() if v is not None}


def rs(kid: str = "rsa-1", key: Any = RSA, **changes: Any) -> str:
    return jws(claims(**changes), key, "RS256", kid=kid)


def post(srv: InProcess, token: str, call_id: str = "jwks-1") -> httpx.Response:
    message = payload("assistant-request.pstn.json")
    message["message"]["call"]["id"] = call_id
    with srv.client() as client:
        return client.post(srv.webhook_path, json=message, headers={"authorization": f"Bearer {token}"})


def router(directory: Path, url: str, **tweaks: float) -> InProcess:
    """The router for this JWKS, not started; `tweaks` change JwksVerifier's timings."""
    srv = InProcess(directory, POLICY, env=env(url))
    auth = srv.server.auth
    assert auth.jwks is not None
    srv.server.auth = replace(auth, jwks=replace(auth.jwks, **tweaks))
    return srv


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    with JwksServer() as server:
        server.keys = [public_jwk(RSA, "rsa-1"), public_jwk(EC, "ec-1")]
        yield server


@pytest.fixture(scope="module")
def srv(jwks: JwksServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with router(tmp_path_factory.mktemp("jwks"), jwks.url) as server:
        yield server


# ------------------------------------------------------------------ accepted and refused


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: rs(), id="rs256"),
        pytest.param(lambda: jws(claims(), EC, "ES256", kid="ec-1"), id="es256"),
        pytest.param(lambda: rs(aud=["other", AUDIENCE]), id="audience-among-several"),
        pytest.param(lambda: rs(exp=int(time.time()) - 20), id="expired-within-30s-leeway"),
    ],
)
def test_accepted(srv: InProcess, make: Callable[[], str]) -> None:
    answer = post(srv, make())
    assert answer.status_code == 200, answer.text
    assert reply_problems("assistant-request", answer.json()) == []


def hs256_with(secret: bytes) -> str:
    return jws(claims(), secret, "HS256", kid="rsa-1")


REFUSED = [
    pytest.param(lambda: rs(exp=int(time.time()) - 3600), id="expired"),
    pytest.param(lambda: rs(exp=None), id="no-expiry"),
    pytest.param(lambda: rs(nbf=int(time.time()) + 3600), id="not-yet-valid"),
    pytest.param(lambda: rs(iat=int(time.time()) + 3600), id="issued-in-the-future"),
    pytest.param(lambda: rs(aud="https://other.example.com"), id="wrong-audience"),
    pytest.param(lambda: rs(aud=None), id="no-audience"),
    pytest.param(lambda: rs(iss="https://auth.example.org/"), id="wrong-issuer"),
    pytest.param(lambda: rs(key=ROGUE), id="known-kid-wrong-key"),
    pytest.param(lambda: rs(kid="rogue-1", key=ROGUE), id="unknown-key"),
    pytest.param(
        lambda: jws(claims(), ROGUE, "RS256", kid="rogue", jku="http://127.0.0.1:9/jwks"), id="jku-ignored"
    ),
    pytest.param(lambda: jws(claims(), b"", "none", kid="rsa-1"), id="alg-none"),
    pytest.param(lambda: jws(claims(), b"", "none"), id="alg-none-no-kid"),
    # HS/RS confusion: the public key, which anyone has, used as an HMAC secret
    pytest.param(lambda: hs256_with(public_pem(RSA)), id="hs256-with-the-public-pem"),
    pytest.param(lambda: hs256_with(json.dumps(public_jwk(RSA, "rsa-1")).encode()), id="hs256-with-the-jwk"),
    pytest.param(lambda: jws(claims(), EC, "ES256", kid="rsa-1"), id="es256-on-an-rsa-key"),
    pytest.param(lambda: jws(claims(), RSA, "RS256", kid="ec-1"), id="rs256-on-an-ec-key"),
    pytest.param(lambda: rs()[:-4] + "AAAA", id="signature-altered"),
    pytest.param(lambda: rs(kid=None), id="no-kid-among-two-keys"),
    pytest.param(lambda: "eyJhbGciOiJSUzI1NiJ9.e30", id="two-segments"),
]


@pytest.mark.parametrize("make", REFUSED)
def test_refused(srv: InProcess, make: Callable[[], str]) -> None:
    with srv.client() as client:
        before = metric(srv.metrics(client), "router_auth_failures_total", scheme="oauth2")
    started = time.perf_counter()
    answer = post(srv, make())
    assert (answer.status_code, answer.json()) == (401, {"error": "unauthorized"})
    assert time.perf_counter() - started < DEADLINE_MS / 1000
    with srv.client() as client:
        assert metric(srv.metrics(client), "router_auth_failures_total", scheme="oauth2") == before + 1


def test_a_spray_of_random_kids_does_not_hammer_the_jwks(srv: InProcess, jwks: JwksServer) -> None:
    """At most one refresh per 10 s (the default), however many unknown kids arrive."""
    before = jwks.requests
    for i in range(30):
        assert post(srv, rs(kid=f"random-{i}", key=ROGUE)).status_code == 401
    assert jwks.requests - before <= 1
    assert post(srv, rs()).status_code == 200  # the cached key works throughout


# ------------------------------------------------------------------ rotation and revocation


def test_a_new_kid_triggers_a_refresh(tmp_path: Path) -> None:
    with JwksServer() as jwks:
        jwks.keys = [public_jwk(RSA, "rsa-1")]
        with router(tmp_path, jwks.url, min_refresh_s=0.2) as srv:
            assert post(srv, rs()).status_code == 200
            token = rs(kid="later-1", key=LATER)
            assert post(srv, token).status_code == 401  # not published yet
            jwks.keys.append(public_jwk(LATER, "later-1", alg="RS256"))
            time.sleep(0.25)  # past the rate limit
            fetched = jwks.requests
            answer = post(srv, token)
            assert answer.status_code == 200, answer.text
            assert jwks.requests == fetched + 1
            # /v1/resolve takes webhook auth too, and waits for a key the same way
            jwks.keys.append(public_jwk(ROGUE, "rogue-2"))
            time.sleep(0.25)
            resolve = {"customer": {"number": "+14155550142"}, "phoneNumber": {"number": "+16505550117"}}
            with srv.client() as client:
                headers = {"authorization": f"Bearer {rs(kid='rogue-2', key=ROGUE)}"}
                assert client.post("/v1/resolve", json=resolve, headers=headers).status_code == 200


def test_a_key_removed_from_the_jwks_stops_working(tmp_path: Path) -> None:
    """A set older than max_age_s is refreshed in the background: a revoked key goes."""
    with JwksServer() as jwks:
        jwks.keys = [public_jwk(RSA, "rsa-1"), public_jwk(LATER, "later-1")]
        with router(tmp_path, jwks.url, min_refresh_s=0.1, max_age_s=0.3) as srv:
            assert post(srv, rs()).status_code == 200
            jwks.keys = [public_jwk(LATER, "later-1")]
            end = time.monotonic() + 5
            while post(srv, rs()).status_code == 200:
                assert time.monotonic() < end, "the revoked key was still accepted after 5 s"
                time.sleep(0.1)
            assert post(srv, rs(kid="later-1", key=LATER)).status_code == 200


# ------------------------------------------------------------------ a JWKS that fails or hangs


def test_a_hanging_jwks_never_holds_a_call(tmp_path: Path) -> None:
    """Cached key: answered at once while a refresh hangs. Unknown key: 401 within half the
    deadline, never later; a second such call joins the refresh in flight."""
    with JwksServer() as jwks:
        jwks.keys = [public_jwk(RSA, "rsa-1")]
        with router(tmp_path, jwks.url, min_refresh_s=0.05) as srv:
            assert post(srv, rs()).status_code == 200
            time.sleep(0.1)
            jwks.set_mode("hang")
            before = jwks.requests
            results: dict[str, tuple[int, float]] = {}

            def unknown(name: str) -> None:
                started = time.perf_counter()
                status = post(srv, rs(kid="later-1", key=LATER), name).status_code
                results[name] = (status, time.perf_counter() - started)

            first = threading.Thread(target=unknown, args=("first",))
            first.start()
            end = time.monotonic() + 2
            while jwks.requests == before:  # the refresh reached the JWKS, which holds it
                assert time.monotonic() < end
                time.sleep(0.005)
            second = threading.Thread(target=unknown, args=("second",))
            second.start()
            started = time.perf_counter()
            cached = post(srv, rs(), "cached")
            cached_s = time.perf_counter() - started
            assert cached.status_code == 200 and first.is_alive(), "the cached key waited for the JWKS"
            first.join(5)
            second.join(5)
            assert jwks.requests == before + 1  # the second call joined the refresh in flight
            for name in ("first", "second"):
                status, seconds = results[name]
                assert status == 401
                assert seconds < DEADLINE_MS / 1000, (name, seconds)
            assert cached_s < results["first"][1]


def test_a_jwks_that_is_down_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with JwksServer() as jwks:
        jwks.keys = [public_jwk(RSA, "rsa-1")]
        jwks.set_mode("500")
        url = jwks.url + "?token=url-SENTINEL-4d4d"  # a credential in the URL is never logged
        with router(tmp_path, url, min_refresh_s=0.1) as srv:
            started = time.perf_counter()
            assert post(srv, rs()).status_code == 401
            assert time.perf_counter() - started < DEADLINE_MS / 1000
            jwks.set_mode("ok")
            time.sleep(0.15)
            assert post(srv, rs()).status_code == 200  # the next refresh brings the key
    failed = "JWKS refresh from VAPI_OAUTH_JWKS_URL failed (HTTP 500); cached keys stay"
    assert failed in caplog.messages
    assert "SENTINEL" not in caplog.text


# ------------------------------------------------------------------ the key set and configuration

SMALL_RSA = rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        pytest.param([public_jwk(RSA, "a")], {"a": {"RS256", "RS384", "RS512"}}, id="rsa"),
        pytest.param([public_jwk(EC, "b")], {"b": {"ES256"}}, id="ec-p256"),
        pytest.param([public_jwk(RSA, "a", alg="RS256")], {"a": {"RS256"}}, id="alg-narrows"),
        pytest.param([public_jwk(EC, "b", alg="RS256")], {}, id="alg-the-key-cannot-do"),
        pytest.param([public_jwk(RSA, "a", use="enc")], {}, id="encryption-key"),
        pytest.param([public_jwk(SMALL_RSA, "s")], {}, id="rsa-1024-too-small"),
        pytest.param([{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}], {}, id="symmetric"),
        pytest.param([public_jwk(RSA, "a", d="AQAB")], {}, id="private-material"),
        pytest.param([{"kty": "RSA", "kid": "x", "n": "!!", "e": "AQAB"}], {}, id="malformed"),
        pytest.param([public_jwk(RSA, "a") | {"kid": None}], {}, id="kid-not-a-string"),
        pytest.param(
            [{k: v for k, v in public_jwk(RSA, "a").items() if k != "kid"}],
            {"": {"RS256", "RS384", "RS512"}},
            id="no-kid",
        ),
        pytest.param(["junk", public_jwk(EC, "b")], {"b": {"ES256"}}, id="junk-skipped"),
    ],
)
def test_parse_jwks(keys: list[Any], expected: dict[str, set[str]]) -> None:
    parsed = parse_jwks(json.dumps({"keys": keys}).encode())
    assert {kid: set(key.algorithms) for kid, key in parsed.items()} == expected


@pytest.mark.parametrize("data", [b"<html>", b"[]", b'{"keys": {}}', b"{}"])
def test_parse_jwks_refuses_what_is_not_a_key_set(data: bytes) -> None:
    with pytest.raises(_Refused):
        parse_jwks(data)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"VAPI_OAUTH_JWKS_URL": "https://auth.example.com/jwks"},
            "VAPI_OAUTH_JWKS_URL set but VAPI_OAUTH_ISSUER, VAPI_OAUTH_AUDIENCE not: "
            "tokens from the authorization server would not be checked",
            id="url-alone",
        ),
        pytest.param(
            env("http://auth.example.com/jwks"),
            "VAPI_OAUTH_JWKS_URL must be https:// (http:// only to a loopback address)",
            id="http-in-the-clear",
        ),
        pytest.param(env("file:///etc/jwks.json"), "VAPI_OAUTH_JWKS_URL must be an https:// URL", id="file"),
    ],
)
def test_from_env_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(AuthConfigError) as caught:
        AuthConfig.from_env(env)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "url",
    ["https://auth.example.com/jwks", "http://127.0.0.1:8080/j", "http://localhost/j", "http://[::1]/j"],
)
def test_from_env(url: str) -> None:
    assert AuthConfig.from_env(env(url)).jwks == JwksVerifier(url, ISSUER, AUDIENCE)
    assert AuthConfig.from_env(env(url)).describe() == f"OAuth2 JWTs from {ISSUER}"
