"""router.server.oauth: the router as Vapi's OAuth2 token URL (DESIGN §10). Tokens are issued and
checked by the unit under test, and fetched and sent through the real server as Vapi's
OAuth2AuthenticationPlan describes (tests/vapiplans.py); forged tokens are signed by hand."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serverutil import InProcess, metric, payload, reply_problems
from vapiplans import b64url, fetch_token, jws, rsa_key

from router.server.auth import AuthConfig, AuthConfigError
from router.server.oauth import AUDIENCE, ISSUER, OAuthIssuer

NOW = 1_750_000_000.0
KEY = b"signing-SENTINEL-key-0123456789abcdef"
CLIENT_ID = "vapi-prod"
CLIENT_SECRET = "client-SENTINEL-secret-6d1f"
ROUTER = OAuthIssuer(CLIENT_ID.encode(), CLIENT_SECRET.encode(), KEY, "calls")
POLICY = """\
version: 1
targets:
  desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
default: desk
"""
ENV = {
    "ROUTER_OAUTH_CLIENT_ID": CLIENT_ID,
    "ROUTER_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
    "ROUTER_OAUTH_SIGNING_KEY": KEY.decode(),
    "ROUTER_OAUTH_SCOPE": "calls webhooks",
}


def claims(**changes: Any) -> dict[str, Any]:
    """The claims of a token the router issues at NOW; `changes` override (None drops one)."""
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": CLIENT_ID, "iat": int(NOW), "exp": int(NOW) + 3600}
    return {k: v for k, v in (base | changes).items() if v is not None}


# ------------------------------------------------------------------ issuing and checking, in process


def test_issued_token() -> None:
    token = ROUTER.issue(NOW, "calls")
    head, body, _ = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(head + "==")) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(base64.urlsafe_b64decode(body + "==")) == claims(scope="calls")
    assert ROUTER.verify(token.encode(), NOW)
    assert ROUTER.verify(token.encode(), NOW + 3600 + 30)  # the clock-skew leeway
    assert not ROUTER.verify(token.encode(), NOW + 3600 + 31)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param(jws(claims(), KEY, "HS256"), True, id="hand-signed-like-the-router"),
        pytest.param(jws(claims(exp=int(NOW) - 29), KEY, "HS256"), True, id="expired-29s-within-leeway"),
        pytest.param(jws(claims(exp=int(NOW) - 31), KEY, "HS256"), False, id="expired-31s"),
        pytest.param(jws(claims(exp=int(NOW) - 86400), KEY, "HS256"), False, id="expired-a-day"),
        pytest.param(jws(claims(exp=None), KEY, "HS256"), False, id="no-exp"),
        pytest.param(jws(claims(exp=str(int(NOW) + 60)), KEY, "HS256"), False, id="exp-a-string"),
        pytest.param(jws(claims(exp=True), KEY, "HS256"), False, id="exp-a-boolean"),
        pytest.param(jws(claims(iat=int(NOW) + 120), KEY, "HS256"), False, id="issued-in-the-future"),
        pytest.param(jws(claims(nbf=int(NOW) + 120), KEY, "HS256"), False, id="not-yet-valid"),
        pytest.param(jws(claims(nbf=int(NOW) - 1), KEY, "HS256"), True, id="valid-since-a-second"),
        pytest.param(jws(claims(aud="someone-else"), KEY, "HS256"), False, id="wrong-audience"),
        pytest.param(jws(claims(aud=None), KEY, "HS256"), False, id="no-audience"),
        pytest.param(jws(claims(iss="https://evil.example"), KEY, "HS256"), False, id="wrong-issuer"),
        pytest.param(jws(claims(sub="another-client"), KEY, "HS256"), False, id="another-client"),
        pytest.param(jws(claims(sub=None), KEY, "HS256"), False, id="no-subject"),
        pytest.param(jws(claims(), KEY[:-1] + b"!", "HS256"), False, id="wrong-key"),
        pytest.param(jws(claims(), b"", "none"), False, id="alg-none"),
        pytest.param(jws(claims(), KEY, "none"), False, id="alg-none-with-junk-signature"),
        pytest.param(jws(claims(), rsa_key(), "RS256"), False, id="rs256"),
        pytest.param(jws(claims(), KEY, "HS256")[:-2] + "AA", False, id="signature-altered"),
        pytest.param("not.a.jwt", False, id="garbage"),
        pytest.param("", False, id="empty"),
    ],
)
def test_verify(token: str, expected: bool) -> None:
    assert ROUTER.verify(token.encode(), NOW) is expected


def test_tokens_signed_with_the_payload_altered_are_refused() -> None:
    head, _, signature = ROUTER.issue(NOW).split(".")
    forged = f"{head}.{b64url(json.dumps(claims(sub=CLIENT_ID, exp=int(NOW) + 10**6)).encode())}.{signature}"
    assert not ROUTER.verify(forged.encode(), NOW)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, None, id="unset"),
        pytest.param(
            ENV, OAuthIssuer(CLIENT_ID.encode(), CLIENT_SECRET.encode(), KEY, "calls webhooks"), id="all"
        ),
        pytest.param(
            ENV | {"ROUTER_OAUTH_SCOPE": "  calls   webhooks ", "ROUTER_OAUTH_TOKEN_LIFETIME_S": "600"},
            OAuthIssuer(CLIENT_ID.encode(), CLIENT_SECRET.encode(), KEY, "calls webhooks", 600),
            id="scope-spaces-and-lifetime",
        ),
    ],
)
def test_from_env(env: dict[str, str], expected: OAuthIssuer | None) -> None:
    assert AuthConfig.from_env(env).oauth == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"ROUTER_OAUTH_CLIENT_ID": "x"},
            "ROUTER_OAUTH_CLIENT_ID set but ROUTER_OAUTH_CLIENT_SECRET, ROUTER_OAUTH_SIGNING_KEY not: "
            "the token URL would be off",
            id="client-id-alone",
        ),
        pytest.param(
            {k: v for k, v in ENV.items() if k != "ROUTER_OAUTH_SIGNING_KEY"},
            "ROUTER_OAUTH_CLIENT_ID, ROUTER_OAUTH_CLIENT_SECRET, ROUTER_OAUTH_SCOPE set but "
            "ROUTER_OAUTH_SIGNING_KEY not: the token URL would be off",
            id="no-signing-key",
        ),
        pytest.param(
            ENV | {"ROUTER_OAUTH_SIGNING_KEY": "TOPSECRET-but-short"},
            "ROUTER_OAUTH_SIGNING_KEY must be at least 32 bytes",
            id="short-key",
        ),
        pytest.param(
            ENV | {"ROUTER_OAUTH_TOKEN_LIFETIME_S": "59"},
            "ROUTER_OAUTH_TOKEN_LIFETIME_S must be a whole number of seconds from 60 to 86400",
            id="lifetime-too-short",
        ),
        pytest.param(
            ENV | {"ROUTER_OAUTH_TOKEN_LIFETIME_S": "1e3"},
            "ROUTER_OAUTH_TOKEN_LIFETIME_S must be a whole number of seconds from 60 to 86400",
            id="lifetime-not-an-integer",
        ),
        pytest.param(
            ENV | {"ROUTER_OAUTH_CLIENT_SECRET": "TOPSECRET\n"},
            "ROUTER_OAUTH_CLIENT_SECRET has leading or trailing whitespace (a stray newline?)",
            id="secret-newline",
        ),
    ],
)
def test_from_env_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(AuthConfigError) as caught:
        AuthConfig.from_env(env)
    assert str(caught.value) == message
    assert "TOPSECRET" not in message


# ------------------------------------------------------------------ the token URL on the wire


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with InProcess(tmp_path_factory.mktemp("oauth"), POLICY, env=ENV) as server:
        yield server


def plan(srv: InProcess, **changes: Any) -> dict[str, Any]:
    """Vapi's OAuth2AuthenticationPlan pointing at this router."""
    base = {
        "type": "oauth2",
        "url": srv.base_url + "/oauth/token",
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
    }
    return {k: v for k, v in (base | changes).items() if v is not None}


def webhook(srv: InProcess, token: str, call_id: str = "oauth-1") -> httpx.Response:
    message = payload("assistant-request.pstn.json")
    message["message"]["call"]["id"] = call_id
    with srv.client() as client:
        return client.post(srv.webhook_path, json=message, headers={"authorization": f"Bearer {token}"})


def assert_refused(response: httpx.Response) -> None:
    assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})


@pytest.mark.parametrize(
    ("changes", "basic", "scope"),
    [
        pytest.param({}, False, "calls webhooks", id="form"),
        pytest.param({}, True, "calls webhooks", id="http-basic"),
        pytest.param({"scope": "calls"}, False, "calls", id="form-with-scope"),
        pytest.param({"scope": "webhooks calls"}, True, "webhooks calls", id="basic-with-scope"),
    ],
)
def test_vapi_gets_a_token_and_calls_with_it(
    srv: InProcess, changes: dict[str, Any], basic: bool, scope: str
) -> None:
    before = time.time()
    response = fetch_token(plan(srv, **changes), basic=basic)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body.keys() == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 3600, scope)
    issued = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
    assert before - 1 <= issued["iat"] <= time.time() and issued["exp"] == issued["iat"] + 3600
    answer = webhook(srv, body["access_token"])
    assert answer.status_code == 200, answer.text
    assert reply_problems("assistant-request", answer.json()) == []


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


FORM = {"content-type": "application/x-www-form-urlencoded"}
GOOD = f"grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"


@pytest.mark.parametrize(
    ("content", "headers", "status", "error"),
    [
        pytest.param(GOOD.replace("6d1f", "6d1e"), FORM, 401, "invalid_client", id="wrong-client-secret"),
        pytest.param(
            GOOD.replace("vapi-prod", "vapi-dev"), FORM, 401, "invalid_client", id="wrong-client-id"
        ),
        pytest.param(GOOD.replace(CLIENT_SECRET, ""), FORM, 401, "invalid_client", id="empty-client-secret"),
        pytest.param(
            "grant_type=client_credentials", FORM, 401, "invalid_client", id="no-client-credentials"
        ),
        pytest.param(
            "grant_type=client_credentials",
            FORM | basic(CLIENT_ID, "wrong"),
            401,
            "invalid_client",
            id="basic-wrong-secret",
        ),
        pytest.param(
            "grant_type=client_credentials",
            FORM | {"authorization": "Basic !!!"},
            401,
            "invalid_client",
            id="basic-not-base64",
        ),
        pytest.param(GOOD, FORM | basic(CLIENT_ID, CLIENT_SECRET), 400, "invalid_request", id="two-methods"),
        pytest.param(
            GOOD.replace("client_credentials", "password"), FORM, 400, "unsupported_grant_type", id="grant"
        ),
        pytest.param(
            GOOD.replace("grant_type=client_credentials&", ""), FORM, 400, "invalid_request", id="no-grant"
        ),
        pytest.param(GOOD + "&scope=calls%20admin", FORM, 400, "invalid_scope", id="scope-not-allowed"),
        pytest.param(GOOD + "&client_id=x", FORM, 400, "invalid_request", id="repeated-parameter"),
        pytest.param(
            json.dumps(
                {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
            ),
            {"content-type": "application/json"},
            400,
            "invalid_request",
            id="json-body",
        ),
    ],
)
def test_token_endpoint_errors(
    srv: InProcess, content: str, headers: dict[str, str], status: int, error: str
) -> None:
    """RFC 6749 §5.2: 401 invalid_client (with a Basic challenge) when the client is not who it
    says; 400 with the code otherwise. No token in any of them."""
    with srv.client() as client:
        before = metric(srv.metrics(client), "router_auth_failures_total", scheme="oauth2-token")
        response = client.post("/oauth/token", content=content, headers=headers)
        after = metric(srv.metrics(client), "router_auth_failures_total", scheme="oauth2-token")
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert "access_token" not in response.json()
    assert response.headers["cache-control"] == "no-store"
    assert after == before + (status == 401)
    if status == 401:
        assert response.headers["www-authenticate"] == 'Basic realm="vapi-router"'


def test_basic_credentials_may_be_form_encoded(tmp_path: Path) -> None:
    """RFC 6749 §2.3.1 form-encodes the id and secret before Basic; clients that do not also work."""
    secret = "p@ss+word/with%chars"
    env = ENV | {"ROUTER_OAUTH_CLIENT_SECRET": secret}
    with InProcess(tmp_path, POLICY, env=env) as server, server.client() as client:
        for sent in (secret, "p%40ss%2Bword%2Fwith%25chars"):
            response = client.post(
                "/oauth/token", content="grant_type=client_credentials", headers=FORM | basic(CLIENT_ID, sent)
            )
            assert response.status_code == 200, (sent, response.text)
        wrong = client.post(
            "/oauth/token",
            content="grant_type=client_credentials",
            headers=FORM | basic(CLIENT_ID, "p@ss word"),
        )
        assert wrong.status_code == 401


def _now() -> int:
    return int(time.time())


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda srv: jws(claims(iat=_now() - 7200, exp=_now() - 3600), KEY, "HS256"), id="expired"
        ),
        pytest.param(
            lambda srv: jws(claims(iat=_now(), exp=_now() + 60), b"x" * 32, "HS256"), id="other-key"
        ),
        pytest.param(lambda srv: jws(claims(iat=_now(), exp=_now() + 60), b"", "none"), id="alg-none"),
        pytest.param(
            lambda srv: jws(claims(iat=_now(), exp=_now() + 60, aud="x"), KEY, "HS256"), id="audience"
        ),
        pytest.param(lambda srv: fetch_token(plan(srv)).json()["access_token"][:-3] + "AAA", id="altered"),
        pytest.param(lambda srv: CLIENT_SECRET, id="the-client-secret-as-token"),
    ],
)
def test_webhook_refuses_bad_tokens(srv: InProcess, make: Callable[[InProcess], str]) -> None:
    token = make(srv)
    with srv.client() as client:
        before = metric(srv.metrics(client), "router_auth_failures_total", scheme="oauth2")
    assert_refused(webhook(srv, token))
    with srv.client() as client:
        assert metric(srv.metrics(client), "router_auth_failures_total", scheme="oauth2") == before + 1


def test_every_replica_that_shares_the_key_accepts_the_token(tmp_path: Path, srv: InProcess) -> None:
    token = fetch_token(plan(srv)).json()["access_token"]
    with InProcess(tmp_path / "b", POLICY, env=ENV) as replica:
        answer = webhook(replica, token, "replica-1")
        assert answer.status_code == 200, answer.text
    other = ENV | {"ROUTER_OAUTH_SIGNING_KEY": "another-signing-key-0123456789abcdef"}
    with InProcess(tmp_path / "c", POLICY, env=other) as stranger:
        assert_refused(webhook(stranger, token, "stranger-1"))


def test_no_token_url_unless_configured(tmp_path: Path) -> None:
    with InProcess(tmp_path, POLICY) as server, server.client() as client:
        response = client.post("/oauth/token", content=GOOD, headers=FORM)
        assert response.status_code == 404
