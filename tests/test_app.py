"""router.server.app against the real server (uvicorn on 127.0.0.1): routing, auth, body limits,
decision log, health, readiness, metrics, reload, /v1/explain and /v1/resolve."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serverutil import (
    ADMIN_TOKEN,
    HMAC_SECRET,
    SECRET,
    InProcess,
    dumps,
    hmac_headers,
    loaded_server,
    metric,
    parse_metrics,
    payload,
    reply_problems,
)

from router.server.http import MAX_BODY

SAFE = "11111111-1111-4111-8111-111111111111"
DESK = "22222222-2222-4222-8222-222222222222"
GOLD_SQUAD = "33333333-3333-4333-8333-333333333333"
KNOWN_SQUAD = "44444444-4444-4444-8444-444444444444"
CALL_ID = "0c5d8f2e-7a41-4b9e-9d33-5e2f6a1b7c90"

POLICY = f"""\
version: 1
settings:
  timezone: UTC
  region: US
  deadline_ms: 1000
  fallback: safe
schedules:
  new-year-minute:
    special: {{"2026-01-01": ["18:00-18:01"]}}
lists:
  blocked: ["+15550000001"]
targets:
  safe: {{assistantId: {SAFE}}}
  desk:
    assistantId: {DESK}
    assistantOverrides:
      variableValues:
        {{caller: "${{caller}}", dialled: "${{dialled}}", call: "${{call.id}}", route: "${{route}}"}}
routes:
  - id: sip-gold
    when: {{variables: {{account_tier: gold}}}}
    then: {{squadId: {GOLD_SQUAD}}}
  - id: withheld
    when: {{caller: {{anonymous: true}}}}
    then: {{error: "Sorry, we can't take calls from withheld numbers."}}
  - id: blocked
    when: {{caller: {{in: blocked}}}}
    then: {{destination: {{type: number, number: "+15550001111", message: ""}}}}
  - id: new-year
    when: {{during: new-year-minute}}
    then: desk
  - id: known-caller
    when: {{caller: "+14155550142"}}
    then: {{squadId: {KNOWN_SQUAD}}}
transfers:
  - id: billing
    when: {{caller: "+14155550142"}}
    then: {{destination: {{type: number, number: "+16505550100", message: ""}}}}
default: safe
"""

# The reply of the `desk` target for the caller and number of the shared payloads.
DESK_REPLY: dict[str, Any] = {
    "assistantId": DESK,
    "assistantOverrides": {
        "variableValues": {
            "caller": "+14155550142",
            "dialled": "+16505550117",
            "call": CALL_ID,
            "route": "new-year",
        }
    },
}
HMAC_ENV = {
    "VAPI_HMAC_SECRET": HMAC_SECRET,
    "VAPI_HMAC_HEADER": "x-vapi-signature",
    "VAPI_HMAC_TIMESTAMP_HEADER": "x-vapi-timestamp",
    "VAPI_HMAC_ALGORITHM": "sha512",
    "VAPI_HMAC_ENCODING": "base64",
    "VAPI_HMAC_PAYLOAD": "v1:{timestamp}:{body}",
}
CUSTOM = dict(
    algorithm="sha512",
    encoding="base64",
    payload_format="v1:{timestamp}:{body}",
    header="x-vapi-signature",
    timestamp_header="x-vapi-timestamp",
)
UNAUTHORIZED = b'{"error":"unauthorized"}'


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    env = {"VAPI_SERVER_SECRET": SECRET, "VAPI_HMAC_SECRET": HMAC_SECRET, "ROUTER_ADMIN_TOKEN": ADMIN_TOKEN}
    with InProcess(tmp_path_factory.mktemp("app"), POLICY, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """Custom HMAC only, no admin token, no transfers, another webhook path."""
    text = POLICY[: POLICY.index("transfers:")] + "default: safe\n"
    with InProcess(tmp_path_factory.mktemp("custom"), text, env=HMAC_ENV, path="/hooks/vapi-in") as server:
        yield server


@pytest.fixture
def client(srv: InProcess) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


def message(name: str, **changes: Any) -> dict[str, Any]:
    """A shared payload with `changes` applied to message.* (dotted keys)."""
    data = payload(name)
    for dotted, value in changes.items():
        node = data["message"]
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return data


# --- 1. routing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "changes", "expected"),
    [
        pytest.param("assistant-request.pstn.json", {}, DESK_REPLY, id="epoch-ms-timestamp"),
        pytest.param("assistant-request.iso-timestamp.json", {}, DESK_REPLY, id="iso-timestamp"),
        pytest.param(
            "assistant-request.iso-timestamp.json",
            {"timestamp": "2026-01-01T13:00:30-05:00"},
            DESK_REPLY,
            id="iso-with-offset",
        ),
        pytest.param(
            "assistant-request.pstn.json",
            {"timestamp": 1767290405312 + 3600_000},
            {"squadId": KNOWN_SQUAD},
            id="epoch-ms-an-hour-later",
        ),
        pytest.param(
            "assistant-request.iso-timestamp.json",
            {"timestamp": "2026-01-01T19:00:05.312Z"},
            {"squadId": KNOWN_SQUAD},
            id="iso-an-hour-later",
        ),
        pytest.param(
            "assistant-request.national-format-caller.json", {}, DESK_REPLY, id="national-format-caller"
        ),
        pytest.param(
            "assistant-request.national-format-caller.json",
            {"timestamp": 1767290405312 + 3600_000},
            {"squadId": KNOWN_SQUAD},
            id="national-format-caller-matches-e164-route",
        ),
        pytest.param(
            "assistant-request.anonymous-caller.json",
            {},
            {"error": "Sorry, we can't take calls from withheld numbers."},
            id="anonymous-null-number",
        ),
        pytest.param("assistant-request.sip.json", {}, {"squadId": GOLD_SQUAD}, id="sip-variables"),
        pytest.param(
            "assistant-request.sip.json",
            {"call.assistantOverrides.variableValues": {"account_tier": "silver"}},
            {
                **DESK_REPLY,
                "assistantOverrides": {
                    "variableValues": {
                        **DESK_REPLY["assistantOverrides"]["variableValues"],
                        "dialled": "sip:acme-main@sip.vapi.ai",
                    }  # §9: the SIP URI
                },
            },
            id="sip-other-variables-dialled-renders-sip-uri",
        ),
        pytest.param(
            "assistant-request.pstn.json",
            {"customer.number": "+15550000001", "call.customer.number": "+15550000001"},
            {"destination": {"type": "number", "number": "+15550001111", "message": ""}},
            id="blocked-list",
        ),
    ],
)
def test_assistant_request_is_routed(
    srv: InProcess, client: httpx.Client, name: str, changes: dict[str, Any], expected: dict[str, Any]
) -> None:
    response = srv.post_webhook(client, message(name, **changes))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected
    assert reply_problems("assistant-request", response.json()) == []


def test_transfer_destination_request(srv: InProcess, client: httpx.Client, custom: InProcess) -> None:
    routed = srv.post_webhook(client, payload("transfer-destination-request.json"))
    assert routed.status_code == 200
    assert routed.json() == {"destination": {"type": "number", "number": "+16505550100", "message": ""}}
    assert reply_problems("transfer-destination-request", routed.json()) == []
    unmatched = message("transfer-destination-request.json", **{"customer.number": "+14155550199"})
    unmatched["message"]["call"]["customer"]["number"] = "+14155550199"
    assert srv.post_webhook(client, unmatched).content == b"{}"
    with custom.client() as other:  # a policy without `transfers:`
        none = custom.post_webhook(other, payload("transfer-destination-request.json"))
    assert (none.status_code, none.content) == (200, b"{}")
    assert reply_problems("transfer-destination-request", none.json()) == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(payload("status-update.in-progress.json"), id="status-update"),
        pytest.param(payload("status-update.ended-assistant-request-failed.json"), id="status-update-ended"),
        pytest.param(payload("end-of-call-report.json"), id="end-of-call-report"),
        pytest.param(
            {
                "message": {
                    "type": "tool-calls",
                    "toolCallList": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {}}}
                    ],
                    "call": {"id": CALL_ID},
                }
            },
            id="tool-calls",
        ),
        pytest.param({"message": {"type": "knowledge-base-request"}}, id="knowledge-base-request"),
        pytest.param({"message": {"type": "some-future-type", "call": None}}, id="unknown-type"),
        pytest.param({"message": {"type": ""}}, id="empty-type"),
    ],
)
def test_other_message_types_get_an_empty_200(srv: InProcess, client: httpx.Client, body: Any) -> None:
    response = srv.post_webhook(client, body)
    assert (response.status_code, response.content) == (200, b"{}")
    assert response.headers["content-type"] == "application/json"


def test_webhook_path_is_honoured(custom: InProcess) -> None:
    body = dumps(payload("assistant-request.pstn.json"))
    with custom.client() as client:
        moved = client.post("/hooks/vapi-in", content=body, headers=hmac_headers(body, **CUSTOM))
        old = client.post("/webhook/vapi", content=body, headers=hmac_headers(body, **CUSTOM))
    assert moved.status_code == 200 and moved.json() == DESK_REPLY
    assert old.status_code == 404


# --- 2. auth ------------------------------------------------------------------------------

BODY = (
    b'{"message":  {"type": "assistant-request", "timestamp": 1767290405312,\n'
    b'  "customer": {"number": "+14155550142"}, "phoneNumber": {"number": "+16505550117"}}}'
)


Headers = Callable[[], dict[str, str]]  # built when the test runs: HMAC timestamps are "now"


def _now() -> int:
    return int(time.time())


ADMITTED = [
    pytest.param(lambda: {"x-vapi-secret": SECRET}, id="x-vapi-secret"),
    pytest.param(lambda: {"authorization": f"Bearer {SECRET}"}, id="bearer"),
    pytest.param(lambda: {"authorization": f"bearer {SECRET}"}, id="bearer-lowercase-scheme"),
    pytest.param(lambda: hmac_headers(BODY), id="hmac-defaults"),
    pytest.param(lambda: hmac_headers(BODY, timestamp=str(_now() * 1000)), id="hmac-ms-timestamp"),
    pytest.param(lambda: hmac_headers(BODY, timestamp=str(_now() - 290)), id="hmac-inside-window"),
    pytest.param(lambda: {"x-vapi-secret": "wrong", **hmac_headers(BODY)}, id="any-scheme-passing-admits"),
]
REFUSED = [
    pytest.param(lambda: {}, id="none"),
    pytest.param(lambda: {"x-vapi-secret": "wrong"}, id="wrong-secret"),
    pytest.param(lambda: {"x-vapi-secret": SECRET + "x"}, id="secret-with-suffix"),
    pytest.param(lambda: {"x-vapi-secret": SECRET[:-1]}, id="secret-prefix"),
    pytest.param(lambda: {"authorization": f"Bearer {ADMIN_TOKEN}"}, id="admin-token-as-bearer"),
    pytest.param(lambda: {"authorization": SECRET}, id="secret-without-bearer"),
    pytest.param(lambda: {"authorization": f"Basic {SECRET}"}, id="basic-scheme"),
    pytest.param(lambda: {"x-vapi-secret": HMAC_SECRET}, id="hmac-secret-as-shared-secret"),
    pytest.param(lambda: hmac_headers(BODY, "wrong-key"), id="hmac-wrong-key"),
    pytest.param(lambda: hmac_headers(BODY + b" "), id="hmac-other-body"),
    pytest.param(
        lambda: hmac_headers(json.dumps(json.loads(BODY), separators=(",", ":")).encode()),
        id="hmac-over-reserialised-json",
    ),
    pytest.param(lambda: hmac_headers(BODY, timestamp=str(_now() - 301)), id="hmac-stale"),
    pytest.param(lambda: hmac_headers(BODY, timestamp=str(_now() + 400)), id="hmac-future"),
    pytest.param(lambda: hmac_headers(BODY, algorithm="sha1"), id="hmac-other-algorithm"),
    pytest.param(lambda: hmac_headers(BODY, encoding="base64"), id="hmac-other-encoding"),
    pytest.param(lambda: {**hmac_headers(BODY), "x-timestamp": "soon"}, id="hmac-bad-timestamp"),
    pytest.param(lambda: {"x-signature": hmac_headers(BODY)["x-signature"]}, id="hmac-no-timestamp"),
]


@pytest.mark.parametrize("headers", ADMITTED)
def test_webhook_auth_admits(srv: InProcess, client: httpx.Client, headers: Headers) -> None:
    response = client.post(srv.webhook_path, content=BODY, headers=headers())
    assert response.status_code == 200, response.text
    assert response.json()["assistantId"] == DESK


@pytest.mark.parametrize("headers", REFUSED)
def test_webhook_auth_refuses(srv: InProcess, client: httpx.Client, headers: Headers) -> None:
    before = metric(srv.metrics(client), "router_auth_failures_total")
    response = client.post(srv.webhook_path, content=BODY, headers=headers())
    assert (response.status_code, response.content) == (401, UNAUTHORIZED)
    assert metric(srv.metrics(client), "router_auth_failures_total") == before + 1


def test_auth_comes_before_parsing(srv: InProcess, client: httpx.Client) -> None:
    for body in (b"not json", b"{}", dumps({"message": {"type": "status-update"}})):
        response = client.post(srv.webhook_path, content=body, headers={"x-vapi-secret": "nope"})
        assert (response.status_code, response.content) == (401, UNAUTHORIZED)


def test_custom_hmac(custom: InProcess) -> None:
    with custom.client() as client:
        before = metric(custom.metrics(client), "router_auth_failures_total")
        good = client.post(custom.webhook_path, content=BODY, headers=hmac_headers(BODY, **CUSTOM))
        refused = [
            client.post(custom.webhook_path, content=BODY, headers=headers)
            for headers in (
                hmac_headers(BODY),  # the default scheme is not the configured one
                hmac_headers(BODY, **{**CUSTOM, "payload_format": "{timestamp}.{body}"}),
                hmac_headers(BODY, **{**CUSTOM, "algorithm": "sha256"}),
                hmac_headers(BODY + b"\n", **CUSTOM) | {"content-type": "application/json"},
                {"x-vapi-secret": HMAC_SECRET},
                {"authorization": f"Bearer {HMAC_SECRET}"},
            )
        ]
        after = metric(custom.metrics(client), "router_auth_failures_total")
    assert good.status_code == 200 and good.json()["assistantId"] == DESK
    assert [(r.status_code, r.content) for r in refused] == [(401, UNAUTHORIZED)] * len(refused)
    assert after == before + len(refused)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/-/reload", b"", id="reload"),
        pytest.param(
            "/v1/explain", dumps({"caller": "+14155550142", "dialled": "+16505550117"}), id="explain"
        ),
    ],
)
def test_admin_endpoints_need_the_admin_token(
    srv: InProcess, client: httpx.Client, custom: InProcess, path: str, body: bytes
) -> None:
    for headers in (
        {},
        {"authorization": f"Bearer {SECRET}"},
        {"x-vapi-secret": SECRET},
        {"authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"authorization": ADMIN_TOKEN},
    ):
        response = client.post(path, content=body, headers=headers)
        assert (response.status_code, response.content) == (401, UNAUTHORIZED), headers
    assert client.post(path, content=body, headers=srv.admin()).status_code == 200
    with custom.client() as other:  # no ROUTER_ADMIN_TOKEN: admin endpoints are closed
        closed = other.post(path, content=body, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert (closed.status_code, closed.content) == (401, UNAUTHORIZED)


# --- 4. bodies: only non-JSON or no message.type is a 400; over 1 MiB is a 413 -----------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="text"),
        pytest.param(b'{"message": {"type": "assistant-request"', id="truncated"),
        pytest.param(b"\xff\xfe{}", id="invalid-utf8"),
        pytest.param(b"null", id="null"),
        pytest.param(b"[]", id="list"),
        pytest.param(b'"message"', id="string"),
        pytest.param(b"{}", id="no-message"),
        pytest.param(b'{"message": null}', id="message-null"),
        pytest.param(b'{"message": "assistant-request"}', id="message-string"),
        pytest.param(b'{"message": {}}', id="no-type"),
        pytest.param(b'{"message": {"type": null}}', id="type-null"),
        pytest.param(b'{"message": {"type": 3}}', id="type-number"),
        pytest.param(b'{"message": {"type": ["assistant-request"]}}', id="type-list"),
        pytest.param(b'{"type": "assistant-request"}', id="message-not-wrapped"),
    ],
)
def test_bad_bodies_get_400(srv: InProcess, client: httpx.Client, body: bytes) -> None:
    response = client.post(srv.webhook_path, content=body, headers=srv.auth(body))
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and isinstance(response.json()["error"], str)


def _padded(size: int) -> bytes:
    """A valid status-update of exactly `size` bytes."""
    head, tail = b'{"message": {"type": "status-update", "pad": "', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_body_size_limit(srv: InProcess, client: httpx.Client) -> None:
    exact = _padded(MAX_BODY)
    assert client.post(srv.webhook_path, content=exact, headers=srv.auth()).status_code == 200
    over = _padded(MAX_BODY + 1)
    with_length = client.post(srv.webhook_path, content=over, headers=srv.auth())
    assert with_length.status_code == 413 and "error" in with_length.json()

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for i in range(0, len(over), 64 * 1024):
            yield over[i : i + 64 * 1024]

    with srv.client() as fresh:
        chunked = fresh.post(srv.webhook_path, content=chunks(), headers=srv.auth())
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413 and "error" in chunked.json()
    huge = client.post(srv.webhook_path, content=b"{}", headers={**srv.auth(), "content-length": "2"})
    assert huge.status_code == 400  # the server still answers on this connection


# --- 5. the decision log ------------------------------------------------------------------

SENTINELS = ("SENTINEL-TWILIO-TOKEN-ab12", "SENTINEL-ACCOUNT-SID-cd34", "SENTINEL-VONAGE-KEY-ef56")


def test_decision_log(
    srv: InProcess, client: httpx.Client, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    srv.records_until_marker(client)  # everything earlier is on disk now
    start = len(srv.log_records())
    ready = client.get("/readyz").json()
    answered: list[str] = []

    def routed(name: str, call_id: str, **changes: Any) -> None:
        data = message(name, **changes)
        data["message"]["call"]["id"] = call_id
        data["message"]["phoneNumber"].update(
            twilioAuthToken=SENTINELS[0], twilioAccountSid=SENTINELS[1], vonageApiSecret=SENTINELS[2]
        )
        assert srv.post_webhook(client, data).status_code == 200
        answered.append(call_id)

    routed("assistant-request.pstn.json", "log-1")
    routed("assistant-request.anonymous-caller.json", "log-2")
    routed("transfer-destination-request.json", "log-3")
    routed("assistant-request.sip.json", "log-4")
    # None of these writes a line: 400, 401, other types.
    assert client.post(srv.webhook_path, content=b"nope", headers=srv.auth()).status_code == 400
    assert client.post(srv.webhook_path, content=b'{"message": {}}', headers=srv.auth()).status_code == 400
    unauthorized = dumps(message("assistant-request.pstn.json"))
    assert (
        client.post(srv.webhook_path, content=unauthorized, headers={"x-vapi-secret": "x"}).status_code == 401
    )
    assert srv.post_webhook(client, payload("status-update.in-progress.json")).content == b"{}"
    assert srv.post_webhook(client, payload("end-of-call-report.json")).content == b"{}"
    too_big = client.post(srv.webhook_path, content=_padded(MAX_BODY + 1), headers=srv.auth())
    assert too_big.status_code == 413
    routed("assistant-request.iso-timestamp.json", "log-5", timestamp="2026-01-01T19:00:00Z")

    records = srv.records_until_marker(client)[start:]
    assert [r["call_id"] for r in records] == answered
    keys = {
        "time", "call_id", "type", "route", "target", "reply", "policy", "crm_status", "crm_ms",
        "eval_us", "total_ms", "fallback_reason", "caller", "dialled",
    }  # fmt: skip
    for r in records:
        assert keys <= set(r), r
        assert r["policy"] == ready["version"]
        assert r["fallback_reason"] is None
        assert r["crm_status"] == "disabled" and r["crm_ms"] == 0
        assert r["eval_us"] >= 0 and 0 <= r["total_ms"] < 1000
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", r["time"])
    by_id = {r["call_id"]: r for r in records}
    picked = {
        k: [by_id[k][f] for f in ("type", "route", "target", "reply", "caller", "dialled")] for k in by_id
    }
    assert picked == {
        "log-1": ["assistant-request", "new-year", "desk", "assistantId", "+1415*****42", "+1650*****17"],
        "log-2": ["assistant-request", "withheld", None, "error", "anonymous", "+1650*****17"],
        "log-3": [
            "transfer-destination-request",
            "billing",
            None,
            "destination",
            "+1415*****42",
            "+1650*****17",
        ],
        "log-4": ["assistant-request", "sip-gold", None, "squadId", "+1415*****42", "anonymous"],
        "log-5": ["assistant-request", "known-caller", None, "squadId", "+1415*****42", "+1650*****17"],
    }
    text = srv.log_text()
    out, err = capfd.readouterr()
    captured = caplog.text + out + err
    for secret in (*SENTINELS, SECRET, HMAC_SECRET, ADMIN_TOKEN, "4155550142", "6505550117"):
        assert secret not in text
        assert secret not in captured


# --- 6. health, readiness, metrics --------------------------------------------------------


def test_healthz_and_readyz(srv: InProcess, client: httpx.Client) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    data = ready.json()
    assert set(data) == {"version", "loaded_at", "last_reload_ok", "errors", "problems"}
    assert isinstance(data["version"], str) and data["version"]
    assert data["last_reload_ok"] is True and data["errors"] == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", data["loaded_at"])


def test_metrics(srv: InProcess, client: httpx.Client) -> None:
    before = srv.metrics(client)
    srv.post_webhook(client, payload("assistant-request.pstn.json"))
    srv.post_webhook(client, payload("assistant-request.anonymous-caller.json"))
    srv.post_webhook(client, {"message": {"type": "status-update"}})
    client.post(srv.webhook_path, content=b"{}", headers={"x-vapi-secret": "no"})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    after = srv.metrics(client)
    for family, kind in (
        ("router_decisions_total", "counter"),
        ("router_decision_seconds", "histogram"),
        ("router_request_seconds", "histogram"),
        ("router_crm_lookups_total", "counter"),
        ("router_auth_failures_total", "counter"),
        ("router_policy_info", "gauge"),
        ("router_policy_reloads_total", "counter"),
        ("router_policy_last_reload_successful", "gauge"),
    ):
        assert f"# TYPE {family} {kind}" in text

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("router_decisions_total", route="new-year", outcome="matched") == 1
    assert grew("router_decisions_total", route="withheld", outcome="matched") == 1
    assert grew("router_decisions_total") == 2
    assert grew("router_decision_seconds_count") == 2
    assert grew("router_request_seconds_count") == 2
    assert grew("router_auth_failures_total") == 1
    version = client.get("/readyz").json()["version"]
    assert metric(after, "router_policy_info", version=version) == 1
    assert metric(after, "router_policy_reloads_total", result="success") >= 1
    assert metric(after, "router_policy_last_reload_successful") == 1


def test_a_reply_given_at_once_can_be_recorded_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The fast path writes a reply first and records it (metrics, decision log) after:
    nothing is lost, in order, and a record that fails does not stop the next ones."""
    server = loaded_server(tmp_path, POLICY)

    def answer(name: str) -> tuple[int, bytes]:
        body = dumps(payload(name))
        answer = server.answer_now(
            "POST", "", {"x-vapi-secret": SECRET}, body, time.perf_counter(), record_later=True
        )
        assert isinstance(answer, tuple)
        return answer

    def decided(**labels: str) -> float:
        return metric(parse_metrics(server.metrics.render().decode()), "router_decisions_total", **labels)

    status, reply = answer("assistant-request.pstn.json")
    assert status == 200 and json.loads(reply) == DESK_REPLY
    assert answer("assistant-request.anonymous-caller.json")[0] == 200
    assert decided() == 0  # answered, not yet recorded
    server.record_answered()
    assert decided(route="new-year") == decided(route="withheld") == 1
    lines = server.decision_log._buf.splitlines()  # not started: the lines wait for start()
    assert [json.loads(line)["route"] for line in lines] == ["new-year", "withheld"]

    real_record = server._record
    calls: list[str] = []

    def flaky(kind: str, *args: Any) -> None:
        calls.append(kind)
        if len(calls) == 1:
            raise RuntimeError("boom")
        real_record(kind, *args)

    server._record = flaky  # type: ignore[method-assign]
    answer("assistant-request.pstn.json")
    answer("assistant-request.anonymous-caller.json")
    with caplog.at_level("ERROR", logger="router.server.app"):
        server.record_answered()
    assert len(calls) == 2 and "recording an answered call failed" in caplog.text
    assert decided(route="withheld") == 2 and decided(route="new-year") == 1
    server.record_answered()  # nothing is recorded twice
    assert decided() == 3


def test_reload(tmp_path: Path) -> None:
    with InProcess(tmp_path, POLICY) as srv, srv.client() as client:
        old = client.get("/readyz").json()
        same = client.post("/-/reload", headers=srv.admin())
        assert same.status_code == 200 and same.json()["version"] == old["version"]

        # An invalid edit: an unknown target and an impossible date.
        broken = POLICY.replace("then: desk", "then: deks").replace("2026-01-01", "2026-02-30")
        srv.policy_path.write_text(broken, encoding="utf-8")
        refused = client.post("/-/reload", headers=srv.admin())
        assert refused.status_code == 422
        errors = refused.json()["errors"]
        assert refused.json()["version"] == old["version"]
        assert errors and all(
            re.match(rf"{re.escape(str(srv.policy_path))}:\d+:\d+: error: ", e) for e in errors
        )
        line = broken.splitlines().index("    then: deks") + 1
        assert any(e.startswith(f"{srv.policy_path}:{line}:11: error: ") and "deks" in e for e in errors), (
            errors
        )
        assert any(e.startswith(f"{srv.policy_path}:9:15: error: ") and "2026-02-30" in e for e in errors), (
            errors
        )
        # The old policy still answers; /readyz and the metrics show the failure.
        answer = srv.post_webhook(client, payload("assistant-request.pstn.json"))
        assert answer.status_code == 200 and answer.json() == DESK_REPLY
        ready = client.get("/readyz").json()
        assert ready["version"] == old["version"] and ready["last_reload_ok"] is False
        assert ready["errors"] == errors
        assert [
            f"{p['file']}:{p['line']}:{p['column']}: error: {p['message']} [{p['code']}]"
            for p in ready["problems"]
        ] == errors
        samples = srv.metrics(client)
        assert metric(samples, "router_policy_last_reload_successful") == 0
        assert metric(samples, "router_policy_reloads_total", result="failure") == 1
        assert metric(samples, "router_policy_info", version=old["version"]) == 1

        # The next good edit recovers.
        srv.policy_path.write_text(POLICY.replace("then: desk", "then: safe"), encoding="utf-8")
        recovered = client.post("/-/reload", headers=srv.admin())
        assert recovered.status_code == 200
        new = recovered.json()["version"]
        assert new != old["version"]
        ready = client.get("/readyz").json()
        assert (ready["version"], ready["last_reload_ok"], ready["errors"]) == (new, True, [])
        answer = srv.post_webhook(client, payload("assistant-request.pstn.json"))
        assert answer.json() == {"assistantId": SAFE}
        samples = srv.metrics(client)
        assert metric(samples, "router_policy_last_reload_successful") == 1
        assert metric(samples, "router_policy_info", version=new) == 1
        assert metric(samples, "router_policy_info", version=old["version"]) == 0
        last = srv.records_until_marker(client)[-1]
        assert (last["policy"], last["route"], last["target"]) == (new, "new-year", "safe")


# --- 6. /v1/explain and /v1/resolve -------------------------------------------------------


def test_explain_with_a_vapi_message(srv: InProcess, client: httpx.Client) -> None:
    response = client.post("/v1/explain", json=payload("assistant-request.pstn.json"), headers=srv.admin())
    assert response.status_code == 200
    data = response.json()
    assert (data["route"], data["target"], data["reply"]) == ("new-year", "desk", DESK_REPLY)
    assert [(s["route"], s["matched"]) for s in data["trace"]] == [
        ("sip-gold", False),
        ("withheld", False),
        ("blocked", False),
        ("new-year", True),
    ]
    assert all(isinstance(s["reason"], str) and s["reason"] for s in data["trace"])
    transfer = client.post(
        "/v1/explain", json=payload("transfer-destination-request.json"), headers=srv.admin()
    )
    assert transfer.status_code == 200 and transfer.json()["route"] == "billing"


def test_explain_with_call_facts(srv: InProcess, client: httpx.Client) -> None:
    facts = {"caller": "+14155550142", "dialled": "+16505550117", "at": "2026-03-02T10:00:00Z"}
    response = client.post("/v1/explain", json=facts, headers=srv.admin())
    assert response.status_code == 200
    data = response.json()
    assert (data["route"], data["target"], data["reply"]) == (
        "known-caller",
        None,
        {"squadId": KNOWN_SQUAD},
    )
    assert [s["route"] for s in data["trace"]] == [
        "sip-gold",
        "withheld",
        "blocked",
        "new-year",
        "known-caller",
    ]
    gold = client.post(
        "/v1/explain", json={**facts, "variables": {"account_tier": "gold"}}, headers=srv.admin()
    )
    assert gold.json()["route"] == "sip-gold" and gold.json()["reply"] == {"squadId": GOLD_SQUAD}
    bad = client.post("/v1/explain", content=b"[1, 2]", headers=srv.admin())
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("facts", "error"),
    [
        pytest.param({"tags": "vip"}, '"tags" must be a list', id="tags-string"),
        pytest.param({"tags": 5}, '"tags" must be a list', id="tags-number"),
        pytest.param({"crm": "tier=gold"}, '"crm" must be a mapping', id="crm-string"),
        pytest.param({"variables": [1]}, '"variables" must be a mapping', id="variables-list"),
        pytest.param({"crm_status": "maybe"}, '"crm_status" must be one of', id="crm-status-unknown"),
    ],
)
def test_explain_refuses_unusable_facts(
    srv: InProcess, client: httpx.Client, facts: dict[str, Any], error: str
) -> None:
    response = client.post("/v1/explain", json={"caller": "+14155550142", **facts}, headers=srv.admin())
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)


def test_resolve(srv: InProcess, client: httpx.Client) -> None:
    def resolve(body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        raw = dumps(body)
        return client.post("/v1/resolve", content=raw, headers=srv.auth(raw) if headers is None else headers)

    outbound = {"customer": {"number": "+14155550142"}, "phoneNumberId": "pn-1", "timestamp": 1767290405312}
    ok = resolve(outbound)
    assert ok.status_code == 200
    assert ok.json() == {**DESK_REPLY, "assistantOverrides": {"variableValues": {
        **DESK_REPLY["assistantOverrides"]["variableValues"], "dialled": "", "call": ""}}}  # fmt: skip
    later = resolve(
        {**outbound, "timestamp": 1767290405312 + 3600_000, "phoneNumber": {"number": "+16505550117"}}
    )
    assert later.json() == {"squadId": KNOWN_SQUAD}
    destination = resolve({"customer": {"number": "+15550000001"}, "phoneNumberId": "pn-1"})
    assert destination.status_code == 422
    assert set(destination.json()) == {"error", "route"} and destination.json()["route"] == "blocked"
    error = resolve({"customer": {"number": None}, "phoneNumberId": "pn-1"})
    assert error.status_code == 422
    assert error.json() == {"error": "Sorry, we can't take calls from withheld numbers.", "route": "withheld"}
    lines = [r for r in srv.records_until_marker(client) if r.get("type") == "resolve"]
    assert [(r["route"], r["reply"], r["caller"]) for r in lines[-4:]] == [
        ("new-year", "assistantId", "+1415*****42"),
        ("known-caller", "squadId", "+1415*****42"),
        ("blocked", "destination", "+1555*****01"),
        ("withheld", "error", "anonymous"),
    ]
    samples = srv.metrics(client)
    assert metric(samples, "router_decisions_total", route="withheld") >= 1
    refused = resolve(outbound, headers={"x-vapi-secret": "wrong"})
    assert (refused.status_code, refused.content) == (401, UNAUTHORIZED)
    via_hmac = client.post("/v1/resolve", content=dumps(outbound), headers=hmac_headers(dumps(outbound)))
    assert via_hmac.status_code == 200
    assert resolve({"customer": "+14155550142"}).status_code == 400
