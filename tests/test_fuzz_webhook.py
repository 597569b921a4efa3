"""Fuzz the real webhook: random JSON, real messages with one field made wrong, raw byte damage.

Oracle: never a 5xx; exactly the status the contract gives (400 for a body that is not JSON or
has no string message.type, 413 over 1 MiB, else 200); every 200 to an assistant-request or a
transfer-destination-request passes Vapi's schema (check_reply); every other type gets `{}`.
One server (with --capture on, so that path is fuzzed too) serves every example.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from serverutil import InProcess, iter_paths, payload, reply_problems

from router.server.http import MAX_BODY

POLICY = """\
version: 1
settings:
  timezone: America/New_York
  region: US
  deadline_ms: 1000
  fallback: desk
crm:
  file: crm.csv
schedules:
  office:
    weekly: {mon-fri: ["09:00-17:00"]}
    holidays: {country: US}
lists:
  blocked: ["+15550000001", "+1900*"]
targets:
  desk:
    assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004
    assistantOverrides:
      variableValues: {caller: "${caller}", call: "${call.id}", dialled: "${dialled}", route: "${route}"}
  vip-desk:
    assistantId: 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d
    assistantOverrides: {variableValues: {name: "${crm.name}", tier: "${crm.tier}"}}
routes:
  - id: blocked
    when: {caller: {in: blocked}}
    then: {error: "Sorry, we can't take your call."}
  - id: gold-sip
    when: {variables: {account_tier: gold}, not: {caller: {anonymous: true}}}
    then: {squadId: 5b1c9e7a-2d3f-4a6b-8c9d-0e1f2a3b4c5d}
  - id: vip
    when: {tags: {any: [vip]}, crm: {tier: [gold, platinum]}}
    then: vip-desk
  - id: withheld
    when: {caller: {anonymous: true}}
    then: {destination: {type: number, number: "+16505550100", message: ""}}
  - id: mobiles-abroad
    when: {caller: {country: [MX, GB], type: mobile}}
    then: {squadId: 6c2d0f8b-3e4a-4b7c-9d0e-1f2a3b4c5d6e}
  - id: regex
    when: {caller: {regex: '\\+1212\\d{7}'}, phone_number_id: 7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e}
    then: {assistantId: 7d1f0c52-3b9e-4a8e-9f0d-6c2b1e4a5d77}
  - id: after-hours
    when: {outside: office, dialled: "+1650555*"}
    then:
      split:
        - {weight: 50, then: desk}
        - {weight: 50, then: {assistantId: 0b6a9e1c-5d4f-4c2a-8e7b-3f9d2a1c6e50}}
transfers:
  - id: billing
    when: {crm_status: [ok, not_found]}
    then: {destination: {type: number, number: "+16505550101", message: "Transferring you to ${crm.name}."}}
default: desk
"""
CRM = "number,tags,name,tier\n+14155550142,vip,Dana,gold\n+14155550143,vip,,platinum\n+12125550100,,Sam,\n"
PAYLOADS = [
    "assistant-request.pstn.json",
    "assistant-request.iso-timestamp.json",
    "assistant-request.national-format-caller.json",
    "assistant-request.anonymous-caller.json",
    "assistant-request.sip.json",
    "transfer-destination-request.json",
    "status-update.in-progress.json",
]
TALLY: Counter[str] = Counter()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with InProcess(tmp_path_factory.mktemp("fuzz"), POLICY, files={"crm.csv": CRM}, capture=True) as server:
        yield server
    print(f"\nfuzz tally: {dict(sorted(TALLY.items()))}")


@pytest.fixture(scope="module")
def client(srv: InProcess) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


_REFUSED = object()


def parsed(body: bytes) -> Any:
    """The body as the server reads it: orjson, else what Python's json reads (a lone
    surrogate escape, a number too large for a double) except past 1,024 levels (issue 15)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            return _REFUSED
        try:
            return json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            return _REFUSED


def expected_status(body: bytes) -> int:
    if len(body) > MAX_BODY:
        return 413
    data = parsed(body)
    if data is _REFUSED:
        return 400
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return 400
    return 200


def check(srv: InProcess, client: httpx.Client, body: bytes) -> None:
    """Post `body` (authenticated) and hold the answer to the contract."""
    started = time.perf_counter()
    response = client.post(srv.webhook_path, content=body, headers=srv.auth(body))
    elapsed = time.perf_counter() - started
    status = response.status_code
    TALLY["examples"] += 1
    TALLY[f"status {status}"] += 1
    assert status < 500, response.text
    assert status == expected_status(body), (status, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    reply = response.json()
    if status != 200:
        assert isinstance(reply, dict) and isinstance(reply.get("error"), str)
        event(f"status {status}")
        return
    kind = parsed(body)["message"]["type"]
    if kind in ("assistant-request", "transfer-destination-request"):
        assert reply_problems(kind, reply) == [], reply
        assert elapsed < 1.0 + 0.15
        TALLY[f"routed {kind} -> {next(iter(reply), '{}')}"] += 1
        event(f"200 {kind}")
    else:
        assert response.content == b"{}"
        event("200 other type")


# --- values that are wrong in every way ------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)


def deep_dumps(value: Any) -> bytes:
    """json.dumps for values nested up to ~1,100 deep (`nest`), past the default recursion
    limit of the pytest stack it runs on (json's encoder counts each level)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5000))
    try:
        return json.dumps(value).encode()
    finally:
        sys.setrecursionlimit(limit)


def nest(depth: int, kind: str) -> Any:
    value: Any = "+14155550142"
    for _ in range(depth):
        value = [value] if kind == "list" else {"number": value}
    return value


# fmt: off
ODD_VALUES: list[Any] = [
            None, 0, -1, 1.5, True, [], {}, "", " ", "null", "anonymous", "+", "++14155550142",
            "+1 (415) 555-0142", "00441632960961", "+525512345678", "+447700900123", "+19005550100",
            "(415) 555-0142 ext. 12", "sip:+14155550142@x", "\u0000", "\ufeff+14155550142", "١٢٣٤٥٦٧٨٩٠",
            "2026-13-45T99:99:99Z", "2026-01-01T18:00:05", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
            "1767290405312", "1e309", 1e300, -1e300, 2**64 - 1, -(2**63), 10**30, 1767290405312000,
            "${caller}", "${crm.name}", "{{customer.number}}", "gold", "vip",
]
# fmt: on

weird = st.one_of(
    json_values,
    st.sampled_from(ODD_VALUES),
    st.integers(min_value=1, max_value=1100).flatmap(
        lambda d: st.sampled_from([nest(d, "list"), nest(d, "dict")])
    ),
    st.builds(
        lambda n, c: c * n, st.integers(1000, 200_000), st.sampled_from(["9", "+", "é", "\u0000", "🙂"])
    ),
    st.from_regex(r"\+?[0-9 ()\-.]{0,24}", fullmatch=True),
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real message with one field (at any depth, the message itself included) made wrong."""
    data = payload(draw(st.sampled_from(PAYLOADS)))
    paths = [p for p in iter_paths(data) if p]
    path = draw(st.sampled_from(paths))
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()) and isinstance(parent, dict) and draw(st.integers(0, 3)) == 0:
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(weird)
    return deep_dumps(data)


@st.composite
def random_json(draw: st.DrawFn) -> bytes:
    """Arbitrary JSON, often shaped like a message with a real or random type."""
    value = draw(json_values)
    shape = draw(st.integers(0, 2))
    if shape == 1:
        value = {"message": value}
    elif shape == 2:
        kind = draw(
            st.sampled_from(["assistant-request", "transfer-destination-request", "tool-calls"]) | st.text()
        )
        extra = draw(
            st.dictionaries(st.sampled_from(["call", "customer", "phoneNumber", "timestamp"]), json_values)
        )
        value = {"message": {"type": kind, **extra}}
    return deep_dumps(value)


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    """A real message with bytes overwritten or inserted: invalid UTF-8, truncation, noise."""
    raw = json.dumps(payload(draw(st.sampled_from(PAYLOADS)))).encode()
    at = draw(st.integers(0, len(raw)))
    noise = draw(
        st.binary(min_size=1, max_size=8) | st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])
    )
    if draw(st.booleans()):
        return raw[:at] + noise + raw[at:]
    if draw(st.booleans()):
        return raw[:at]
    return raw[:at] + noise + raw[at + len(noise) :]


# About 2,000 bodies per run by default; FUZZ_EXAMPLES=N scales every test (N for the first).
SCALE = int(os.environ.get("FUZZ_EXAMPLES", "1000")) / 1000
SETTINGS = settings(
    max_examples=int(1000 * SCALE),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@SETTINGS
@given(body=mutated())
def test_mutated_messages(srv: InProcess, client: httpx.Client, body: bytes) -> None:
    check(srv, client, body)


@settings(SETTINGS, max_examples=int(500 * SCALE))
@given(body=random_json())
def test_random_json(srv: InProcess, client: httpx.Client, body: bytes) -> None:
    check(srv, client, body)


@settings(SETTINGS, max_examples=int(300 * SCALE))
@given(body=damaged_bytes())
def test_damaged_bytes(srv: InProcess, client: httpx.Client, body: bytes) -> None:
    check(srv, client, body)


@st.composite
def api_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """/v1/explain or /v1/resolve with call facts, outbound-call bodies or any JSON."""
    path = draw(st.sampled_from(["/v1/explain", "/v1/resolve"]))
    keys = [
        "caller",
        "dialled",
        "at",
        "tags",
        "crm",
        "crm_status",
        "variables",
        "phone_number_id",
        "transfer",
    ]
    keys += ["customer", "phoneNumberId", "phoneNumber", "timestamp", "message"]
    value = draw(st.dictionaries(st.sampled_from(keys), weird, max_size=6) | json_values)
    if path == "/v1/resolve" and draw(st.booleans()):
        number = draw(st.sampled_from(["+14155550142", "+12125550100", "+447700900123"]) | weird)
        value = {"customer": {"number": number}, "phoneNumberId": draw(weird), "timestamp": draw(weird)}
    return path, json.dumps(value).encode()


@settings(SETTINGS, max_examples=int(200 * SCALE))
@given(request=api_bodies())
def test_explain_and_resolve_never_fail(
    srv: InProcess, client: httpx.Client, request: tuple[str, bytes]
) -> None:
    path, body = request
    headers = srv.admin() if path == "/v1/explain" else srv.auth(body)
    response = client.post(path, content=body, headers=headers)
    TALLY[f"{path} {response.status_code}"] += 1
    assert response.status_code in (200, 400, 413, 422), response.text[:300]
    data = response.json()
    if path == "/v1/explain" and response.status_code == 200:
        assert {"route", "target", "reply", "trace"} <= set(data)
    if path == "/v1/resolve" and response.status_code == 200:
        assert reply_problems("assistant-request", data) == []


def test_the_server_still_routes_after_the_fuzz(srv: InProcess, client: httpx.Client) -> None:
    response = srv.post_webhook(client, payload("assistant-request.pstn.json"))
    assert (
        response.status_code == 200
        and response.json()["assistantId"] == "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    )
    assert client.get("/readyz").status_code == 200
