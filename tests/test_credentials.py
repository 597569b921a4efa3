"""Every Bearer and HMAC plan Vapi can be given (DESIGN §10), signed as Vapi's plan descriptions
say (tests/vapiplans.py) and sent to the real router on the wire: one case per option and
per combination that matters, each with the refusals it must give and the metric it counts.
OAuth2 plans: tests/test_oauth.py (the router as token URL) and tests/test_jwks.py."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serverutil import InProcess, Subprocess, metric, payload, reply_problems, run_serve
from vapiplans import plan_headers, svix_headers

from router.server.auth import AuthConfig

TOKEN = "bearer-SENTINEL-token-2b7e"
HKEY = "hmac-SENTINEL-plan-key-5c11"
B64KEY = base64.b64encode(b"\x00\x01binary key\xff\xfe from a base64 secret").decode()
POLICY = """\
version: 1
targets:
  desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
default: desk
"""


def body(call_id: str = "plan-1") -> bytes:
    message = payload("assistant-request.pstn.json")
    message["message"]["call"]["id"] = call_id
    return json.dumps(message).encode()


def bearer(**fields: Any) -> dict[str, Any]:
    return {"type": "bearer", "token": TOKEN, **fields}


def hmac_plan(**fields: Any) -> dict[str, Any]:
    return {"type": "hmac", "secretKey": HKEY, "algorithm": "sha256", **fields}


SVIX_PLAN = hmac_plan(
    secretKey=B64KEY,
    secretIsBase64=True,
    signatureHeader="svix-signature",
    timestampHeader="svix-timestamp",
    messageIdHeader="svix-id",
    signaturePrefix="v1,",
    signatureEncoding="base64",
    payloadFormat="{svix-id}.{timestamp}.{body}",
)
SVIX_ENV = {
    "VAPI_HMAC_SECRET": "whsec_" + B64KEY,
    "VAPI_HMAC_SECRET_IS_BASE64": "true",
    "VAPI_HMAC_HEADER": "svix-signature",
    "VAPI_HMAC_TIMESTAMP_HEADER": "svix-timestamp",
    "VAPI_HMAC_MESSAGE_ID_HEADER": "svix-id",
    "VAPI_HMAC_SIGNATURE_PREFIX": "v1,",
    "VAPI_HMAC_ENCODING": "base64",
    "VAPI_HMAC_PAYLOAD": "{svix-id}.{timestamp}.{body}",
}
SECRET_ENV = {"VAPI_SERVER_SECRET": TOKEN}
HMAC_ENV = {"VAPI_HMAC_SECRET": HKEY}

# (Vapi's authenticationPlan, the router's environment for it)
PLANS = [
    pytest.param(bearer(), SECRET_ENV, id="bearer-defaults"),
    pytest.param(
        bearer(headerName="X-Vapi-Secret", bearerPrefixEnabled=False),
        SECRET_ENV | {"VAPI_BEARER_HEADER": "X-Vapi-Secret", "VAPI_BEARER_PREFIX": "false"},
        id="bearer-as-the-old-server-secret",
    ),
    pytest.param(
        bearer(headerName="X-Api-Key"),
        SECRET_ENV | {"VAPI_BEARER_HEADER": "X-Api-Key"},
        id="bearer-custom-header",
    ),
    pytest.param(
        bearer(bearerPrefixEnabled=False), SECRET_ENV | {"VAPI_BEARER_PREFIX": "false"}, id="bearer-no-prefix"
    ),
    pytest.param(
        bearer(headerName="X-Api-Key", bearerPrefixEnabled=False),
        SECRET_ENV | {"VAPI_BEARER_HEADER": "X-Api-Key", "VAPI_BEARER_PREFIX": "false"},
        id="bearer-custom-header-no-prefix",
    ),
    pytest.param(hmac_plan(), HMAC_ENV, id="hmac-defaults"),
    pytest.param(
        hmac_plan(algorithm="sha512", signatureEncoding="base64"),
        HMAC_ENV | {"VAPI_HMAC_ALGORITHM": "sha512", "VAPI_HMAC_ENCODING": "base64"},
        id="hmac-sha512-base64",
    ),
    pytest.param(hmac_plan(algorithm="sha1"), HMAC_ENV | {"VAPI_HMAC_ALGORITHM": "sha1"}, id="hmac-sha1"),
    pytest.param(
        hmac_plan(signatureHeader="x-vapi-signature", timestampHeader="x-vapi-timestamp"),
        HMAC_ENV | {"VAPI_HMAC_HEADER": "x-vapi-signature", "VAPI_HMAC_TIMESTAMP_HEADER": "x-vapi-timestamp"},
        id="hmac-header-names",
    ),
    pytest.param(
        hmac_plan(signaturePrefix="sha256="),
        HMAC_ENV | {"VAPI_HMAC_SIGNATURE_PREFIX": "sha256="},
        id="hmac-signature-prefix",
    ),
    pytest.param(
        hmac_plan(secretKey=B64KEY, secretIsBase64=True),
        {"VAPI_HMAC_SECRET": B64KEY, "VAPI_HMAC_SECRET_IS_BASE64": "true"},
        id="hmac-secret-is-base64",
    ),
    pytest.param(
        hmac_plan(includeTimestamp=False),
        HMAC_ENV | {"VAPI_HMAC_INCLUDE_TIMESTAMP": "false"},
        id="hmac-no-timestamp",
    ),
    pytest.param(
        hmac_plan(payloadFormat="{method}\n{url}\n{timestamp}\n{body}"),
        HMAC_ENV | {"VAPI_HMAC_PAYLOAD": "{method}\n{url}\n{timestamp}\n{body}"},
        id="hmac-payload-method-url",
    ),
    pytest.param(
        hmac_plan(messageIdHeader="x-message-id", payloadFormat="{timestamp}.{svix-id}.{body}"),
        HMAC_ENV
        | {
            "VAPI_HMAC_MESSAGE_ID_HEADER": "x-message-id",
            "VAPI_HMAC_PAYLOAD": "{timestamp}.{svix-id}.{body}",
        },
        id="hmac-message-id",
    ),
    pytest.param(
        hmac_plan(includeTimestamp=False, messageIdHeader="x-message-id", payloadFormat="{svix-id}.{body}"),
        HMAC_ENV
        | {
            "VAPI_HMAC_INCLUDE_TIMESTAMP": "false",
            "VAPI_HMAC_MESSAGE_ID_HEADER": "x-message-id",
            "VAPI_HMAC_PAYLOAD": "{svix-id}.{body}",
        },
        id="hmac-message-id-no-timestamp",
    ),
    pytest.param(
        hmac_plan(signatureHeader="x-hub-signature-256", signaturePrefix="sha256=", includeTimestamp=False),
        HMAC_ENV
        | {
            "VAPI_HMAC_HEADER": "x-hub-signature-256",
            "VAPI_HMAC_SIGNATURE_PREFIX": "sha256=",
            "VAPI_HMAC_INCLUDE_TIMESTAMP": "false",
        },
        id="hmac-github-style",
    ),
    pytest.param(SVIX_PLAN, SVIX_ENV, id="hmac-svix"),
    pytest.param(
        hmac_plan(), HMAC_ENV | SECRET_ENV | {"VAPI_BEARER_HEADER": "X-Api-Key"}, id="hmac-beside-bearer"
    ),
]


def another_secret(plan: dict[str, Any]) -> dict[str, Any]:
    if plan["type"] == "bearer":
        return plan | {"token": TOKEN[:-1] + "f"}
    if plan.get("secretIsBase64"):
        return plan | {"secretKey": base64.b64encode(b"another key").decode()}
    return plan | {"secretKey": HKEY + "x"}


@pytest.mark.parametrize(("plan", "env"), PLANS)
def test_vapi_plan_on_the_wire(tmp_path: Path, plan: dict[str, Any], env: dict[str, str]) -> None:
    with InProcess(tmp_path, POLICY, env=env) as srv, srv.client() as client:
        url = srv.base_url + srv.webhook_path

        def send(headers: dict[str, str], content: bytes) -> httpx.Response:
            return client.post(
                srv.webhook_path, content=content, headers={"content-type": "application/json", **headers}
            )

        good = plan_headers(plan, body(), url=url)
        answer = send(good, body())
        assert answer.status_code == 200, answer.text
        assert reply_problems("assistant-request", answer.json()) == []
        wrong = plan_headers(another_secret(plan), body("plan-2"), url=url, message_id="m-2")
        refused: dict[str, tuple[dict[str, str], bytes]] = {"another secret": (wrong, body("plan-2"))}
        if plan["type"] == "hmac":  # a Bearer token does not cover the body
            altered = plan_headers(plan, body("plan-3"), url=url, message_id="m-3")
            refused["body altered"] = (altered, body("plan-4"))
        if plan["type"] == "hmac" and plan.get("includeTimestamp", True):
            stale = plan_headers(plan, body("plan-5"), now=time.time() - 301, url=url, message_id="m-5")
            refused["stale"] = (stale, body("plan-5"))
        if "messageIdHeader" in plan:
            refused["replayed"] = (good, body())  # the very request admitted above
            other_id = plan_headers(plan, body("plan-6"), url=url, message_id="m-6")
            refused["id changed"] = (other_id | {plan["messageIdHeader"]: "m-7"}, body("plan-6"))
        if "payloadFormat" in plan and "{url}" in plan["payloadFormat"]:
            refused["another url"] = (plan_headers(plan, body("plan-8"), url=url + "/x"), body("plan-8"))
        before = srv.metrics(client)
        for name, (headers, content) in refused.items():
            response = send(headers, content)
            assert (response.status_code, response.json()) == (401, {"error": "unauthorized"}), name
        assert send({}, body("plan-9")).status_code == 401
        after = srv.metrics(client)

    def grew(scheme: str) -> float:
        return metric(after, "router_auth_failures_total", scheme=scheme) - metric(
            before, "router_auth_failures_total", scheme=scheme
        )

    assert grew(plan["type"]) == len(refused)
    assert grew("none") == 1
    assert (
        metric(after, "router_auth_failures_total") - metric(before, "router_auth_failures_total")
        == len(refused) + 1
    )


def test_svix_rotation_list_on_the_wire(tmp_path: Path) -> None:
    """During a key rotation Svix sends one signature per key, space-separated: either admits."""
    with InProcess(tmp_path, POLICY, env=SVIX_ENV) as srv, srv.client() as client:
        content = body("svix-1")
        now = int(time.time())
        ours = svix_headers("whsec_" + B64KEY, "msg_1", now, content)
        old = svix_headers("whsec_" + base64.b64encode(b"the previous key").decode(), "msg_1", now, content)
        ours["svix-signature"] = f"{old['svix-signature']} {ours['svix-signature']}"
        assert client.post(srv.webhook_path, content=content, headers=ours).status_code == 200
        assert client.post(srv.webhook_path, content=content, headers=ours).status_code == 401  # replayed
        content = body("svix-2")
        only_old = svix_headers(
            "whsec_" + base64.b64encode(b"the previous key").decode(), "msg_2", now, content
        )
        assert client.post(srv.webhook_path, content=content, headers=only_old).status_code == 401


def test_serve_warns_that_replay_protection_is_off(tmp_path: Path) -> None:
    env = HMAC_ENV | {"VAPI_HMAC_INCLUDE_TIMESTAMP": "false"}
    with Subprocess(tmp_path, POLICY, env=env) as srv, srv.client() as client:
        plan = hmac_plan(includeTimestamp=False)
        content = body("no-ts-1")
        headers = plan_headers(plan, content)
        assert client.post(srv.webhook_path, content=content, headers=headers).status_code == 200
        assert (
            client.post(srv.webhook_path, content=content, headers=headers).status_code == 200
        )  # a replay passes
    assert (
        "vapi-router serve: warning: VAPI_HMAC_INCLUDE_TIMESTAMP is false, so replay protection is off: "
        "a captured request can be sent again and is admitted." in srv.stderr()
    )
    assert HKEY not in srv.stderr()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"VAPI_HMAC_SECRET": "whsec_TOPSECRET!", "VAPI_HMAC_SECRET_IS_BASE64": "true"},
            "VAPI_HMAC_SECRET is not valid base64 (VAPI_HMAC_SECRET_IS_BASE64 is true)",
            id="bad-base64",
        ),
        pytest.param(
            {"VAPI_SERVER_SECRET": "TOPSECRET", "VAPI_BEARER_PREFIX": "TOPSECRET"},
            "VAPI_BEARER_PREFIX must be true or false",
            id="prefix-not-a-boolean",
        ),
        pytest.param(
            {"ROUTER_OAUTH_CLIENT_ID": "vapi", "ROUTER_OAUTH_CLIENT_SECRET": "TOPSECRET"},
            "ROUTER_OAUTH_CLIENT_ID, ROUTER_OAUTH_CLIENT_SECRET set but ROUTER_OAUTH_SIGNING_KEY not: "
            "the token URL would be off",
            id="token-url-without-signing-key",
        ),
    ],
)
def test_serve_refuses_bad_credentials_config(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = run_serve(tmp_path, POLICY, env=env)
    assert result.returncode == 2
    assert f"vapi-router serve: {message}" in result.stderr
    assert "TOPSECRET" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "env",
    [
        pytest.param(
            {
                "ROUTER_OAUTH_CLIENT_ID": "v",
                "ROUTER_OAUTH_CLIENT_SECRET": "s",
                "ROUTER_OAUTH_SIGNING_KEY": "k" * 32,
            },
            id="token-url",
        ),
        pytest.param(
            {
                "VAPI_OAUTH_JWKS_URL": "https://a.example/j",
                "VAPI_OAUTH_ISSUER": "i",
                "VAPI_OAUTH_AUDIENCE": "a",
            },
            id="jwks",
        ),
    ],
)
def test_oauth2_alone_is_webhook_auth(env: dict[str, str]) -> None:
    """serve refuses to start only when no scheme at all is configured."""
    assert AuthConfig.from_env(env).webhook_configured
