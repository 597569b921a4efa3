"""router.server.explainapi: /v1/explain (admin) and /v1/resolve (webhook auth) through the real
app on 127.0.0.1. What each refuses and with which whole body (400, 401, 413, 422), and the
two kinds of explain input: a Vapi message (CRM looked up live, cut by the deadline as the
server would) or call facts (CRM facts from the body, no lookup).

The admin token's rules are in tests/test_app.py (with one explain and one resolve of each
kind against a larger policy); these tests pin the endpoints' own contract.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from crmserver import CrmServer
from serverutil import SECRET, InProcess, payload

from router.server.http import MAX_BODY

DESK = "22222222-2222-4222-8222-222222222222"
VIP = "66666666-6666-4666-8666-666666666666"
KNOWN = "+14155550142"  # the caller of the shared assistant-request payload
VIP_CALLER = "+14155550177"
SLOW_CALLER = "+14155550188"  # the CRM never answers for this one


def policy_text(crm_url: str) -> str:
    return f"""\
version: 1
settings: {{timezone: UTC, region: US, deadline_ms: 300, fallback: desk}}
crm:
  http: {{url: "{crm_url}", tags: contact.tags}}
  timeout_ms: 1000
targets:
  desk: {{assistantId: {DESK}}}
routes:
  - id: closed
    when: {{caller: "+15550000001"}}
    then: {{error: "We are closed."}}
  - id: forward
    when: {{caller: "+15550000002"}}
    then: {{destination: {{type: number, number: "+16505550100", message: ""}}}}
  - id: known
    when: {{caller: "{KNOWN}"}}
    then: desk
  - id: vip
    when: {{tags: [vip]}}
    then: {{assistantId: {VIP}}}
transfers:
  - id: billing
    when: {{caller: "{KNOWN}"}}
    then: {{destination: {{type: number, number: "+16505550199", message: ""}}}}
default: {{error: "Nobody can take your call."}}
"""


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    with CrmServer() as server:
        yield server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, crm: CrmServer) -> Iterator[InProcess]:
    with InProcess(tmp_path_factory.mktemp("explainapi"), policy_text(crm.url_template)) as server:
        yield server


@pytest.fixture
def client(srv: InProcess, crm: CrmServer) -> Iterator[httpx.Client]:
    crm.reset()
    crm.contacts[VIP_CALLER] = {"tags": ["vip"]}
    crm.modes[SLOW_CALLER] = "hang"
    with srv.client() as c:
        yield c


def _answer(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json()


def _explain(srv: InProcess, client: httpx.Client, body: bytes | Any) -> tuple[int, Any]:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return _answer(client.post("/v1/explain", content=content, headers=srv.admin()))


# --- /v1/explain: what it refuses -----------------------------------------------------------------

NOT_AN_OBJECT = {"error": "expected a JSON object: a Vapi message or call facts"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(b"", NOT_AN_OBJECT, id="empty"),
        pytest.param(b"{", NOT_AN_OBJECT, id="not-json"),
        pytest.param(b"null", NOT_AN_OBJECT, id="null"),
        pytest.param(b'"caller"', NOT_AN_OBJECT, id="string"),
        pytest.param(b'[{"caller": "+14155550142"}]', NOT_AN_OBJECT, id="list"),
        pytest.param(b'{"tags": "vip"}', {"error": '"tags" must be a list'}, id="tags-not-a-list"),
        pytest.param(b'{"crm": ["tier"]}', {"error": '"crm" must be a mapping'}, id="crm-not-a-mapping"),
        pytest.param(b'{"variables": "x=1"}', {"error": '"variables" must be a mapping'}, id="variables"),
        pytest.param(
            b'{"crm_status": "slow"}',
            {"error": '"crm_status" must be one of ok, not_found, timeout, error, disabled'},
            id="crm-status",
        ),
        pytest.param(
            b'{"message": "not a mapping", "tags": 1}',
            {"error": '"tags" must be a list'},
            id="a-message-that-is-no-mapping-means-call-facts",
        ),
    ],
)
def test_explain_refuses(srv: InProcess, client: httpx.Client, body: bytes, error: dict[str, str]) -> None:
    assert _explain(srv, client, body) == (400, error)


def test_explain_needs_the_admin_token_before_anything_else(srv: InProcess, client: httpx.Client) -> None:
    response = client.post("/v1/explain", content=b"{", headers={"x-vapi-secret": SECRET})
    assert _answer(response) == (401, {"error": "unauthorized"})


def test_explain_refuses_a_body_over_the_limit_as_too_large(srv: InProcess, client: httpx.Client) -> None:
    body = orjson.dumps({"caller": KNOWN, "pad": " " * MAX_BODY})
    status, _ = _explain(srv, client, body)
    assert status == 413


# --- /v1/explain: call facts or a Vapi message ---------------------------------------------------


def _trace(*steps: tuple[str, bool, str]) -> list[dict[str, Any]]:
    return [{"route": r, "matched": m, "reason": why} for r, m, why in steps]


def _version(client: httpx.Client) -> str:
    version: str = client.get("/readyz").json()["version"]
    return version


def test_call_facts_take_crm_facts_from_the_body(
    srv: InProcess, client: httpx.Client, crm: CrmServer
) -> None:
    status, data = _explain(srv, client, {"caller": VIP_CALLER, "tags": ["vip"]})
    caller = f"({VIP_CALLER})"
    assert (status, data) == (
        200,
        {
            "route": "vip",
            "target": None,
            "reply": {"assistantId": VIP},
            "trace": _trace(
                ("closed", False, f"caller is +15550000001: no {caller}"),
                ("forward", False, f"caller is +15550000002: no {caller}"),
                ("known", False, f"caller is {KNOWN}: no {caller}"),
                ("vip", True, "tags any of [vip]: yes (tags [vip])"),
            ),
            "policy": _version(client),
        },
    )
    assert crm.requests == 0


def test_call_facts_without_crm_facts_are_not_found_in_the_crm(
    srv: InProcess, client: httpx.Client, crm: CrmServer
) -> None:
    """The CRM is never asked for call facts: no tags given is no tags."""
    status, data = _explain(srv, client, {"caller": VIP_CALLER})
    assert (status, data["route"], data["reply"]) == (200, None, {"error": "Nobody can take your call."})
    assert data["trace"][-1] == {
        "route": "vip",
        "matched": False,
        "reason": "tags any of [vip]: no (tags [])",
    }
    assert crm.requests == 0


def test_call_facts_ask_for_the_transfer_routes(srv: InProcess, client: httpx.Client) -> None:
    status, data = _explain(srv, client, {"caller": KNOWN, "transfer": True})
    assert (status, data) == (
        200,
        {
            "route": "billing",
            "target": None,
            "reply": {"destination": {"type": "number", "number": "+16505550199", "message": ""}},
            "trace": _trace(("billing", True, f"caller is {KNOWN}: yes ({KNOWN})")),
            "policy": _version(client),
        },
    )


def _message(caller: str) -> dict[str, Any]:
    message = payload("assistant-request.pstn.json")
    message["message"]["customer"]["number"] = caller
    message["message"]["call"]["customer"]["number"] = caller
    return message


def test_a_vapi_message_looks_the_crm_up_live(srv: InProcess, client: httpx.Client, crm: CrmServer) -> None:
    status, data = _explain(srv, client, _message(VIP_CALLER))
    assert (status, data["route"], data["reply"]) == (200, "vip", {"assistantId": VIP})
    assert data["trace"][-1] == {
        "route": "vip",
        "matched": True,
        "reason": "tags any of [vip]: yes (tags [vip])",
    }
    assert crm.requests == 1


def test_a_transfer_message_asks_for_the_transfer_routes(srv: InProcess, client: httpx.Client) -> None:
    status, data = _explain(srv, client, payload("transfer-destination-request.json"))
    assert (status, data["route"], [s["route"] for s in data["trace"]]) == (200, "billing", ["billing"])


def test_a_message_whose_lookup_runs_out_of_time_gets_the_fallback(
    srv: InProcess, client: httpx.Client, crm: CrmServer
) -> None:
    """As the server answers it: the deadline, not the CRM, ended the lookup."""
    status, data = _explain(srv, client, _message(SLOW_CALLER))
    assert status == 200
    assert (data["route"], data["target"], data["reply"]) == (None, "desk", {"assistantId": DESK})
    reason = re.fullmatch(r"deadline reached after (\d+) ms of CRM lookup", data["fallback_reason"])
    assert reason is not None, data["fallback_reason"]
    assert 200 <= int(reason.group(1)) < 1000  # deadline_ms 300 less the margin; the CRM's own 1 s
    assert crm.requests == 1


def test_a_message_without_a_type_is_still_a_message(srv: InProcess, client: httpx.Client) -> None:
    """{"message": {...}} is read as a Vapi message, however little it says: an anonymous call."""
    status, data = _explain(srv, client, {"message": {}})
    assert (status, data["route"], data["reply"]) == (200, None, {"error": "Nobody can take your call."})
    assert data["trace"][0] == {
        "route": "closed",
        "matched": False,
        "reason": "caller is +15550000001: no (anonymous)",
    }


# --- /v1/resolve -------------------------------------------------------------------------------------

EXPECTED_SHAPE = {"error": 'expected {"customer": {"number": …}, "phoneNumberId": … or "phoneNumber": {…}}'}


def _resolve(
    srv: InProcess, client: httpx.Client, body: bytes | Any, *, signed: bool = True
) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = srv.auth(raw) if signed else {"content-type": "application/json"}
    return _answer(client.post("/v1/resolve", content=raw, headers=headers))


@pytest.mark.parametrize(
    ("body", "signed", "expected"),
    [
        pytest.param(
            b" " * (MAX_BODY + 1), False, (413, {"error": "body too large"}), id="too-large-before-auth"
        ),
        pytest.param(b"{}", False, (401, {"error": "unauthorized"}), id="unauthenticated"),
        pytest.param(b"{", True, (400, {"error": "body is not JSON"}), id="not-json"),
        pytest.param(b"[]", True, (400, EXPECTED_SHAPE), id="list"),
        pytest.param(b"{}", True, (400, EXPECTED_SHAPE), id="no-customer"),
        pytest.param(
            b'{"customer": "+14155550142"}', True, (400, EXPECTED_SHAPE), id="customer-not-a-mapping"
        ),
        pytest.param(
            {"customer": {"number": "+15550000001"}},
            True,
            (422, {"error": "We are closed.", "route": "closed"}),
            id="error-route",
        ),
        pytest.param(
            {"customer": {"number": "+15550000009"}},
            True,
            (422, {"error": "Nobody can take your call.", "route": "default"}),
            id="error-default",
        ),
        pytest.param(
            {"customer": {"number": "+15550000002"}},
            True,
            (
                422,
                {
                    "error": "the decision is a destination, which an outbound call cannot use",
                    "route": "forward",
                },
            ),
            id="destination",
        ),
        pytest.param({"customer": {"number": KNOWN}}, True, (200, {"assistantId": DESK}), id="assistant"),
        pytest.param(
            {"customer": {"number": "(415) 555-0142"}},
            True,
            (200, {"assistantId": DESK}),
            id="national-format",
        ),
        pytest.param(
            {"customer": {"number": VIP_CALLER}}, True, (200, {"assistantId": VIP}), id="crm-looked-up"
        ),
    ],
)
def test_resolve(
    srv: InProcess, client: httpx.Client, body: bytes | Any, signed: bool, expected: tuple[int, Any]
) -> None:
    assert _resolve(srv, client, body, signed=signed) == expected
