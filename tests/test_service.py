"""router.server.service through the real server: CRM facts (file and HTTP), lazy and cached lookups,
and the deadline: whatever the CRM does, a valid reply within deadline_ms."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from crmserver import CrmServer, Mode, refused_url
from serverutil import ADMIN_TOKEN, SECRET, InProcess, metric, payload, reply_problems

SAFE = "11111111-1111-4111-8111-111111111111"
VIP = "22222222-2222-4222-8222-222222222222"
CRM_TOKEN = "crm-SENTINEL-token-5d9e"
SLACK_S = 0.15
ENV = {"VAPI_SERVER_SECRET": SECRET, "ROUTER_ADMIN_TOKEN": ADMIN_TOKEN, "CRM_TOKEN": CRM_TOKEN}


def policy(crm: str, *, deadline_ms: int, timeout_ms: int, transfers: str = "") -> str:
    return f"""\
version: 1
settings: {{region: US, deadline_ms: {deadline_ms}, fallback: safe}}
crm:
{crm}
  timeout_ms: {timeout_ms}
  cache_ttl_s: 300
lists:
  blocked: ["+15550000001"]
targets:
  safe: {{assistantId: {SAFE}}}
routes:
  - id: blocked
    when: {{caller: {{in: blocked}}}}
    then: {{error: "Sorry, we can't take your call."}}
  - id: vip
    when: {{tags: [vip]}}
    then:
      assistantId: {VIP}
      assistantOverrides: {{variableValues: {{name: "${{crm.name}}", tier: "${{crm.tier}}"}}}}
  - id: crm-ok
    when: {{crm_status: ok}}
    then: {{assistantId: {SAFE}, assistantOverrides: {{variableValues: {{status: ok}}}}}}
  - id: crm-not-found
    when: {{crm_status: not_found}}
    then: {{assistantId: {SAFE}, assistantOverrides: {{variableValues: {{status: not_found}}}}}}
  - id: crm-timeout
    when: {{crm_status: timeout}}
    then: {{assistantId: {SAFE}, assistantOverrides: {{variableValues: {{status: timeout}}}}}}
  - id: crm-error
    when: {{crm_status: error}}
    then: {{assistantId: {SAFE}, assistantOverrides: {{variableValues: {{status: error}}}}}}
{transfers}default: safe
"""


def http_crm(url: str) -> str:
    return f"""\
  http:
    url: "{url}"
    headers: {{Authorization: "Bearer ${{env.CRM_TOKEN}}", X-Tenant: northwind}}
    tags: contact.tags
    fields: {{name: contact.firstName, tier: results.0.tier}}"""


_numbers = itertools.count(1000)


def fresh_number() -> str:
    """A caller number no earlier test used (the router's CRM cache outlives a test)."""
    return f"+1415555{next(_numbers):04d}"


def call(caller: str | None, call_id: str = "call-1") -> dict[str, Any]:
    data = payload("assistant-request.pstn.json")
    data["message"]["customer"]["number"] = caller
    data["message"]["call"]["customer"]["number"] = caller
    data["message"]["call"]["id"] = call_id
    return data


def status_of(reply: dict[str, Any]) -> str | None:
    value = reply.get("assistantOverrides", {}).get("variableValues", {}).get("status")
    return value if isinstance(value, str) else None


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    with CrmServer() as server:
        yield server


@pytest.fixture
def crm_server(crm: CrmServer) -> CrmServer:
    crm.reset()
    return crm


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, crm: CrmServer) -> Iterator[InProcess]:
    """The HTTP CRM's own timeout (250 ms) is well inside the deadline (1500 ms)."""
    text = policy(http_crm(crm.url_template), deadline_ms=1500, timeout_ms=250)
    with InProcess(tmp_path_factory.mktemp("outcomes"), text, env=ENV) as server:
        yield server


DEADLINE_MS = 300
TRANSFERS = """\
transfers:
  - id: vip-transfer
    when: {tags: [vip]}
    then: {destination: {type: number, number: "+15550002222", message: ""}}
  - id: named-transfer
    when: {tags: [named]}
    then: {destination: {type: number, number: "+15550003333", message: "Connecting ${crm.name}."}}
"""


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory, crm: CrmServer) -> Iterator[InProcess]:
    """The deadline (300 ms) cuts the CRM before its own timeout (2000 ms) does."""
    text = policy(http_crm(crm.url_template), deadline_ms=DEADLINE_MS, timeout_ms=2000, transfers=TRANSFERS)
    with InProcess(tmp_path_factory.mktemp("tight"), text, env=ENV) as server:
        yield server


# --- 3. the embedded file CRM --------------------------------------------------------------

CSV = "number,tags,name,tier\n+14155550142,vip;plumbing,Dana,gold\n(415) 555-0143,plumbing,Sam,silver\n"


def test_file_crm_drives_tag_routes(tmp_path: Path) -> None:
    text = policy("  file: crm.csv", deadline_ms=1000, timeout_ms=200)
    with InProcess(tmp_path, text, env=ENV, files={"crm.csv": CSV}) as srv, srv.client() as client:
        replies = [
            srv.post_webhook(client, call(n)).json() for n in ("+14155550142", "+14155550143", "+14155550199")
        ]
        anonymous = srv.post_webhook(client, call(None)).json()
        blocked = srv.post_webhook(client, call("+15550000001")).json()
        records = srv.records_until_marker(client)
        samples = srv.metrics(client)
    assert blocked == {"error": "Sorry, we can't take your call."}
    assert replies == [
        {"assistantId": VIP, "assistantOverrides": {"variableValues": {"name": "Dana", "tier": "gold"}}},
        {"assistantId": SAFE, "assistantOverrides": {"variableValues": {"status": "ok"}}},
        {"assistantId": SAFE, "assistantOverrides": {"variableValues": {"status": "not_found"}}},
    ]
    assert status_of(anonymous) == "not_found"
    assert [(r["route"], r["crm_status"]) for r in records] == [
        ("vip", "ok"),
        ("crm-ok", "ok"),
        ("crm-not-found", "not_found"),
        ("crm-not-found", "not_found"),
        # the file CRM is read before the evaluation (server.live._looks_up_first): a route that
        # needs no CRM fact still logs what the file says; the HTTP CRM is not asked (below)
        ("blocked", "not_found"),
    ]
    assert metric(samples, "router_crm_lookups_total", status="ok") == 3  # the marker is Dana again
    assert metric(samples, "router_crm_lookups_total", status="not_found") == 2  # not the anonymous one


# --- 3. the HTTP CRM -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "known", "expected"),
    [
        pytest.param("ok", True, "ok", id="ok"),
        pytest.param("ok", False, "not_found", id="not-found-404"),
        pytest.param("not_found", True, "not_found", id="not-found-mode"),
        pytest.param("hang", True, "timeout", id="hang-is-timeout"),
        pytest.param("slow", True, "timeout", id="slow-is-timeout"),
        pytest.param("500", True, "error", id="500-is-error"),
        pytest.param("garbage", True, "error", id="garbage-is-error"),
        pytest.param("drop", True, "error", id="drop-is-error"),
    ],
)
def test_http_crm_outcomes_are_routable(
    outcomes: InProcess, crm_server: CrmServer, mode: Mode, known: bool, expected: str
) -> None:
    number = fresh_number()
    if known:
        crm_server.contacts[number] = {"tags": ["plumbing"], "firstName": "Ada", "tier": "gold"}
    crm_server.modes[number] = mode
    crm_server.slow_ms = 1000
    with outcomes.client() as client:
        before = outcomes.metrics(client)
        response = outcomes.post_webhook(client, call(number, f"outcome-{mode}"))
        record = outcomes.wait_log(
            lambda r: r["call_id"] == f"outcome-{mode}" and r["caller"][-2:] == number[-2:]
        )[-1]
        after = outcomes.metrics(client)
    assert response.status_code == 200
    assert status_of(response.json()) == expected
    assert reply_problems("assistant-request", response.json()) == []
    assert crm_server.requests == 1
    assert (record["route"], record["crm_status"], record["fallback_reason"]) == (
        f"crm-{expected}".replace("_", "-"),
        expected,
        None,
    )
    assert record["crm_ms"] > 0
    grown = metric(after, "router_crm_lookups_total", status=expected) - metric(
        before, "router_crm_lookups_total", status=expected
    )
    assert grown == 1


def test_http_crm_request_headers_tags_and_fields(outcomes: InProcess, crm_server: CrmServer) -> None:
    number = fresh_number()
    crm_server.contacts[number] = {"tags": ["vip"], "firstName": "Ada", "tier": "platinum"}
    with outcomes.client() as client:
        response = outcomes.post_webhook(client, call(number))
    assert response.json() == {
        "assistantId": VIP,
        "assistantOverrides": {"variableValues": {"name": "Ada", "tier": "platinum"}},
    }
    [seen] = crm_server.seen
    assert (seen.path, seen.phone) == ("/contacts", number)
    assert seen.headers["authorization"] == f"Bearer {CRM_TOKEN}"
    assert seen.headers["x-tenant"] == "northwind"
    assert CRM_TOKEN not in outcomes.log_text()


def test_no_lookup_unless_a_reached_route_needs_it(outcomes: InProcess, crm_server: CrmServer) -> None:
    with outcomes.client() as client:
        blocked = outcomes.post_webhook(client, call("+15550000001"))  # decided before any CRM route
        anonymous = outcomes.post_webhook(client, call(None))
    assert blocked.json() == {"error": "Sorry, we can't take your call."}
    assert status_of(anonymous.json()) == "not_found"
    assert crm_server.requests == 0


def test_lookups_are_cached(outcomes: InProcess, crm_server: CrmServer) -> None:
    known, unknown = fresh_number(), fresh_number()
    crm_server.contacts[known] = {"tags": ["vip"], "firstName": "Ada", "tier": "gold"}
    with outcomes.client() as client:
        first = [outcomes.post_webhook(client, call(n)).json() for n in (known, unknown)]
        assert crm_server.requests == 2
        crm_server.mode = "500"  # a cached answer does not ask again
        second = [outcomes.post_webhook(client, call(n)).json() for n in (known, unknown)]
    assert crm_server.requests == 2
    assert first == second
    assert status_of(second[1]) == "not_found"


def test_failures_are_not_cached(outcomes: InProcess, crm_server: CrmServer) -> None:
    number = fresh_number()
    crm_server.contacts[number] = {"tags": ["plumbing"]}
    crm_server.modes[number] = "500"
    with outcomes.client() as client:
        assert status_of(outcomes.post_webhook(client, call(number)).json()) == "error"
        crm_server.modes.pop(number)
        assert status_of(outcomes.post_webhook(client, call(number)).json()) == "ok"
    assert crm_server.requests == 2


def test_template_without_a_value_falls_back(outcomes: InProcess, crm_server: CrmServer) -> None:
    number = fresh_number()
    crm_server.contacts[number] = {"tags": ["vip"], "tier": "gold"}  # no firstName: ${crm.name} fails
    with outcomes.client() as client:
        response = outcomes.post_webhook(client, call(number, "no-name"))
        record = outcomes.wait_log(lambda r: r["call_id"] == "no-name")[-1]
        samples = outcomes.metrics(client)
    assert response.status_code == 200
    assert response.json() == {"assistantId": SAFE}
    assert record["target"] == "safe" and record["crm_status"] == "ok"
    assert record["fallback_reason"] and "crm.name" in record["fallback_reason"]
    assert metric(samples, "router_decisions_total", outcome="fallback") >= 1


# --- 4. the deadline -----------------------------------------------------------------------


def timed_post(srv: InProcess, client: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = srv.post_webhook(client, body)
    return response, time.perf_counter() - started


@pytest.mark.parametrize("mode", ["hang", "slow", "500", "garbage", "drop", "ok"])
def test_deadline_whatever_the_crm_does(tight: InProcess, crm_server: CrmServer, mode: Mode) -> None:
    number = fresh_number()
    crm_server.contacts[number] = {"tags": ["vip"], "firstName": "Ada", "tier": "gold"}
    crm_server.mode = mode
    crm_server.slow_ms = 2 * DEADLINE_MS
    with tight.client() as client:
        response, elapsed = timed_post(tight, client, call(number, f"deadline-{mode}"))
        record = tight.wait_log(lambda r: r["call_id"] == f"deadline-{mode}")[-1]
    assert response.status_code == 200
    assert reply_problems("assistant-request", response.json()) == []
    assert elapsed < DEADLINE_MS / 1000 + SLACK_S, f"{mode}: {elapsed * 1000:.0f} ms"
    assert record["total_ms"] < DEADLINE_MS
    if mode in ("hang", "slow"):  # the deadline cut the lookup: the fallback answers
        assert response.json() == {"assistantId": SAFE}
        assert record["crm_status"] == "timeout" and record["fallback_reason"]
        assert "deadline" in record["fallback_reason"]
    elif mode == "ok":
        assert response.json()["assistantId"] == VIP and record["route"] == "vip"
    else:
        assert status_of(response.json()) == "error" and record["route"] == "crm-error"


def test_deadline_under_concurrency_with_a_hanging_crm(tight: InProcess, crm_server: CrmServer) -> None:
    crm_server.mode = "hang"
    bodies = [call(fresh_number(), f"hang-{i}") for i in range(24)]
    with tight.client(limits=httpx.Limits(max_connections=32)) as client, ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda body: timed_post(tight, client, body), bodies))
    slowest = max(elapsed for _, elapsed in results)
    assert [r.status_code for r, _ in results] == [200] * len(bodies)
    assert all(reply_problems("assistant-request", r.json()) == [] for r, _ in results)
    assert slowest < DEADLINE_MS / 1000 + SLACK_S, f"slowest {slowest * 1000:.0f} ms"
    assert crm_server.requests == len(bodies)
    with tight.client() as client:
        records = [r for r in tight.records_until_marker(client) if (r["call_id"] or "").startswith("hang-")][
            -24:
        ]
    assert sorted(r["call_id"] for r in records) == sorted(f"hang-{i}" for i in range(24))
    assert all(r["total_ms"] < DEADLINE_MS and "deadline" in r["fallback_reason"] for r in records)


def test_deadline_with_a_refusing_crm(tmp_path: Path) -> None:
    text = policy(
        http_crm(refused_url() + "/contacts?phone=${caller}"), deadline_ms=DEADLINE_MS, timeout_ms=2000
    )
    with InProcess(tmp_path, text, env=ENV) as srv, srv.client() as client:
        response, elapsed = timed_post(srv, client, call(fresh_number(), "refused"))
        record = srv.wait_log(lambda r: r["call_id"] == "refused")[-1]
    assert response.status_code == 200 and status_of(response.json()) == "error"
    assert elapsed < DEADLINE_MS / 1000 + SLACK_S
    assert (record["route"], record["crm_status"]) == ("crm-error", "error")


def test_transfer_within_the_deadline_and_its_fallback(tight: InProcess, crm_server: CrmServer) -> None:
    vip, nameless = fresh_number(), fresh_number()
    crm_server.contacts[vip] = {"tags": ["vip"]}
    crm_server.contacts[nameless] = {"tags": ["named"]}  # no firstName: the route's ${crm.name} fails

    def transfer(number: str, call_id: str) -> tuple[httpx.Response, float]:
        message = payload("transfer-destination-request.json")
        message["message"]["customer"]["number"] = number
        message["message"]["call"]["id"] = call_id
        return timed_post(tight, client, message)

    with tight.client() as client:
        routed, _ = transfer(vip, "t-vip")
        unrendered, _ = transfer(nameless, "t-nameless")
        crm_server.mode = "hang"
        hung, elapsed = transfer(fresh_number(), "t-hung")
        records = {r["call_id"]: r for r in tight.records_until_marker(client)}
    assert routed.json() == {"destination": {"type": "number", "number": "+15550002222", "message": ""}}
    assert hung.status_code == 200 and elapsed < DEADLINE_MS / 1000 + SLACK_S
    # The fallback (an assistant) is no answer to a transfer request: no transfer instead.
    assert (unrendered.status_code, unrendered.content) == (200, b"{}")
    assert (hung.status_code, hung.content) == (200, b"{}")
    assert "crm.name" in records["t-nameless"]["fallback_reason"]
    assert "deadline" in records["t-hung"]["fallback_reason"]
    for r in (routed, unrendered, hung):
        assert reply_problems("transfer-destination-request", r.json()) == []
