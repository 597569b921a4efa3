"""The operator console over HTTP (DESIGN §14): login, session, CSRF, CSP, masking, every page.

A real server (uvicorn on 127.0.0.1) serves the bundled policies/main.yaml. The browser tests
are in test_console_browser.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from serverutil import ADMIN_TOKEN, InProcess

from router.server.activity import Hits
from router.server.console import CSP
from router.server.consolesession import SESSION_S, csrf_token, new_session, session_nonce
from router.server.consoleviews import mask_numbers

POLICY = Path("policies/main.yaml").read_text(encoding="utf-8")
SCRIPT = "<script>alert(1)</script>"
CRM = Path("policies/crm.csv").read_text(encoding="utf-8")
PAGES = ("", "/routes", "/calendar", "/simulate", "/decisions", "/shadow", "/flags", "/capacity")
FULL_NUMBERS = ("+14155550142", "+16505550117", "+14155550199")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with InProcess(tmp_path_factory.mktemp("console"), POLICY, files={"crm.csv": CRM}) as server:
        yield server


def login(srv: InProcess, token: str = ADMIN_TOKEN) -> tuple[httpx.Client, httpx.Response]:
    client = srv.client(follow_redirects=False)
    form = client.get("/-/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    response = client.post("/-/console/login", data={"csrf": csrf.group(1), "token": token})
    return client, response


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def call(srv: InProcess, client: httpx.Client, caller: str, call_id: str) -> None:
    message = {
        "type": "assistant-request",
        "timestamp": "2026-11-23T15:30:00Z",
        "call": {"id": call_id, "customer": {"number": caller}},
        "customer": {"number": caller},
        "phoneNumber": {"number": "+16505550117"},
    }
    assert srv.post_webhook(client, {"message": message}).status_code == 200


def test_pages_need_a_session(srv: InProcess) -> None:
    with srv.client(follow_redirects=False) as client:
        for page in PAGES:
            r = client.get(f"/-/console{page}")
            assert (r.status_code, r.headers["location"]) == (303, "/-/console/login"), page
        assert client.get("/-/console/login").status_code == 200


def test_login_sets_a_strict_httponly_session_cookie(srv: InProcess) -> None:
    client, r = login(srv)
    with closing(client):
        assert (r.status_code, r.headers["location"]) == (303, "/-/console")
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("vr_console="))
        attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/-/console", f"max-age={SESSION_S}"} <= attrs
        assert "secure" not in attrs  # plain http on loopback; https requests get Secure
        assert ADMIN_TOKEN not in cookie


def test_a_wrong_token_is_refused(srv: InProcess) -> None:
    client, r = login(srv, "not-the-token")
    with closing(client):
        assert r.status_code == 401
        assert "That is not the admin token." in r.text
        assert not any(h.startswith("vr_console=") for h in r.headers.get_list("set-cookie"))
        assert client.get("/-/console").status_code == 303


def test_login_without_its_csrf_token_is_refused(srv: InProcess) -> None:
    with srv.client(follow_redirects=False) as client:
        client.get("/-/console/login")
        r = client.post("/-/console/login", data={"token": ADMIN_TOKEN})
        assert r.status_code == 403
        assert "vr_console=" not in r.headers.get("set-cookie", "")


def test_every_page_loads_with_strict_headers(srv: InProcess) -> None:
    client, _ = login(srv)
    with closing(client):
        for page in PAGES:
            r = client.get(f"/-/console{page}")
            assert r.status_code == 200, page
            assert r.headers["content-security-policy"] == CSP
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["cache-control"] == "no-store"
            assert "<script>" not in r.text and " style=" not in r.text and "<style" not in r.text
            assert '<script src="/-/console/static/console.js" defer></script>' in r.text
        js = client.get("/-/console/static/console.js")
        assert js.headers["content-type"].startswith("text/javascript")
        assert client.get("/-/console/static/../console.py").status_code == 404
        assert client.get("/-/console/static/nope.js").status_code == 404


def test_a_post_without_the_csrf_token_is_refused(srv: InProcess) -> None:
    client, _ = login(srv)
    with closing(client):
        form = {"dialled": "+16505550117", "caller": "+14155550142"}
        assert client.post("/-/console/simulate", data=form).status_code == 403
        r = client.post("/-/console/simulate", data={**form, "csrf": "0" * 64})
        assert r.status_code == 403
        page = client.get("/-/console/simulate")
        assert client.post("/-/console/simulate", data={**form, "csrf": csrf_of(page)}).status_code == 200
        assert client.post("/-/console/logout").status_code == 403  # logging out needs it too


def test_an_expired_session_goes_back_to_login(srv: InProcess) -> None:
    client, _ = login(srv)
    with closing(client):
        page = client.get("/-/console/simulate")
        clock = srv.server.clock
        srv.server.clock = lambda: time.time() + SESSION_S + 1
        try:
            r = client.get("/-/console/routes")
            assert (r.status_code, r.headers["location"]) == (303, "/-/console/login?expired=1")
            form = {"dialled": "+16505550117", "csrf": csrf_of(page)}
            assert client.post("/-/console/simulate", data=form).status_code == 401
        finally:
            srv.server.clock = clock
        assert "Your session has ended" in client.get("/-/console/login?expired=1").text


def test_logout_ends_the_session(srv: InProcess) -> None:
    client, _ = login(srv)
    with closing(client):
        cookie = client.cookies["vr_console"]
        page = client.get("/-/console")
        r = client.post("/-/console/logout", data={"csrf": csrf_of(page)})
        assert (r.status_code, r.headers["location"]) == (303, "/-/console/login")
    with srv.client(follow_redirects=False, cookies={"vr_console": cookie}) as replay:
        assert replay.get("/-/console").status_code == 303  # the old cookie no longer works


def test_sessions_are_signed_by_the_admin_token() -> None:
    token, now = b"one-token", 1_800_000_000.0
    cookie = new_session(token, now)
    nonce = session_nonce(token, cookie, now)
    assert nonce is not None
    assert session_nonce(b"another-token", cookie, now) is None
    assert session_nonce(token, cookie, now + SESSION_S) is None
    expiry, n, mac = cookie.split(".")
    assert session_nonce(token, f"{int(expiry) + 999}.{n}.{mac}", now) is None
    assert session_nonce(None, cookie, now) is None
    assert csrf_token(token, nonce) != csrf_token(b"another-token", nonce)


def _simulate(client: httpx.Client, **fields: str) -> httpx.Response:
    page = client.get("/-/console/simulate")
    return client.post("/-/console/simulate", data={"csrf": csrf_of(page), **fields})


def test_simulate_agrees_with_v1_explain_and_masks_numbers(srv: InProcess) -> None:
    client, _ = login(srv)
    with closing(client):
        fields = {"caller": "+14155550142", "dialled": "+16505550117", "at": "2026-11-28T09:00", "tags": ""}
        r = _simulate(client, **fields)
        assert r.status_code == 200
        explained = client.post(
            "/v1/explain",
            headers=srv.admin(),
            json={"caller": "+14155550142", "dialled": "+16505550117", "at": "2026-11-28T09:00:00-05:00"},
        ).json()
        route = re.search(r'id="result-route">([^<]*)<', r.text)
        target = re.search(r'id="result-target">([^<]*)<', r.text)
        assert route is not None and target is not None
        assert (route.group(1), target.group(1)) == (explained["route"], explained["target"])
        assert re.findall(r'data-route="([^"]+)" data-matched="(\w+)"', r.text) == [
            (s["route"], "true" if s["matched"] else "false") for s in explained["trace"]
        ]
        for number in FULL_NUMBERS:
            assert number not in r.text
        assert "+1415*****42" in r.text


def test_a_script_in_a_crm_field_is_escaped(srv: InProcess) -> None:
    client, _ = login(srv)
    with closing(client):
        # simulate takes CRM facts from the form, as /v1/explain takes them from the body
        r = _simulate(client, dialled="+16505550117", crm=f"name={SCRIPT}", tags="vip")
        assert r.status_code == 200
        assert SCRIPT not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text


def test_a_script_in_a_query_or_a_call_id_is_escaped(srv: InProcess) -> None:
    client, _ = login(srv)
    with closing(client), srv.client() as webhook:
        call(srv, webhook, "+14155550143", SCRIPT)
        srv.server.metrics.flush()
        for url in (
            f"/-/console/decisions?route={SCRIPT}&outcome={SCRIPT}",
            f"/-/console/calendar?dialled={SCRIPT}",
            f"/-/console/calendar?dialled=%2B16505550117&from={SCRIPT}",
        ):
            r = client.get(url)
            assert SCRIPT not in r.text, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/-/console/decisions").text


def test_route_ids_cannot_carry_markup(tmp_path: Path) -> None:
    from router.policy.loader import lint_path

    (tmp_path / "p.yaml").write_text(
        POLICY.replace("id: block-spam", 'id: "<script>x</script>"'), encoding="utf-8"
    )
    assert lint_path(tmp_path / "p.yaml").policy is None


def test_recent_decisions_and_route_hits_come_from_the_server(srv: InProcess) -> None:
    client, _ = login(srv)
    with closing(client), srv.client() as webhook:
        for i in range(3):
            call(srv, webhook, "+14155550142", f"vip-{i}")
        call(srv, webhook, "+15550000001", "spam-1")
        srv.server.metrics.flush()
        page = client.get("/-/console/decisions?route=block-spam").text
        assert "spam-1" in page and "vip-0" not in page
        assert "+1555*****01" in page and "+15550000001" not in page
        assert "vip-2" in client.get("/-/console/decisions?outcome=matched").text
        routes = client.get("/-/console/routes").text
        row = re.search(r'<td>block-spam\s*</td>\s*<td class="num">(\d+)</td>', routes)
        assert row is not None and int(row.group(1)) >= 1
        assert re.search(r"<td>spanish-callers <span class=\"tag\">never hit</span>", routes)
        overview = client.get("/-/console").text
        assert 'id="reload-state">ok<' in overview


def test_the_ring_keeps_the_last_200(tmp_path: Path) -> None:
    from router.server.activity import RECENT, Activity

    activity = Activity()
    for i in range(RECENT + 50):
        activity.recent.append(("matched", {"call_id": str(i)}))
    assert len(activity.recent) == RECENT and activity.recent[0][1]["call_id"] == "50"


def test_hits_count_the_last_hour_and_day() -> None:
    hits = Hits()
    now = 1_800_000_000.0
    hits.add({("a", "matched"): 2}, now - 2 * 3600)
    hits.add({("a", "matched"): 3, ("default", "fallback"): 1}, now - 60)
    rows = {r.route: r for r in hits.routes(["a", "default", "b"], now)}
    assert (rows["a"].last_hour, rows["a"].last_day, rows["a"].last_hit) == (3, 5, now - 60)
    assert rows["b"].last_hit is None
    assert hits.outcomes(now, 60) == {"matched": 3, "fallback": 1}
    hits.add({("a", "matched"): 1}, now + 2 * 86400)  # a day later the old buckets are gone
    assert hits.routes(["a"], now + 2 * 86400)[0].last_day == 1


def test_calendar_page_is_the_map(srv: InProcess) -> None:
    client, _ = login(srv)
    with closing(client):
        r = client.get("/-/console/calendar", params={"dialled": "+1 650 555 0117", "from": "2026-12-21"})
        assert r.status_code == 200
        assert "<svg" in r.text and "office: Christmas Day" in r.text and "after-hours" in r.text
        assert "+16505550117" not in r.text and "+1650*****17" in r.text
        assert client.get("/-/console/calendar", params={"dialled": "nope"}).status_code == 400


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("caller +14155550142 is not in blocked", "caller +1415*****42 is not in blocked"),
        ('dialled "+16505550117"', 'dialled "+1650*****17"'),
        ("no number 12345 here", "no number 12345 here"),
    ],
)
def test_mask_numbers(text: str, masked: str) -> None:
    assert mask_numbers(text) == masked


# -- flags and capacity (live call state, DESIGN §13) -------------------------------------

STATE_POLICY = """\
version: 1
settings: {fallback: desk}
capacity:
  sales: {max: 2}
flags:
  storm: {description: "storm closure: every call hears <b>the</b> closure message"}
targets:
  desk: {assistantId: desk-assistant}
  sales-desk: {assistantId: sales-assistant, pool: sales}
  overflow: {assistantId: overflow-assistant}
routes:
  - id: storm
    when: {flag: storm}
    then: {error: "We are closed because of the storm."}
  - id: sales
    when: {capacity: {sales: available}}
    then: sales-desk
  - id: overflow
    when: {capacity: {sales: full}}
    then: overflow
default: desk
"""


@pytest.fixture(scope="module")
def stateful(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """`state:` omitted: flags and pools in-process, as `serve` with one worker keeps them."""
    with InProcess(tmp_path_factory.mktemp("console-state"), STATE_POLICY) as server:
        yield server


def switch(client: httpx.Client, **fields: str) -> httpx.Response:
    page = client.get("/-/console/flags")
    return client.post("/-/console/flags", data={"csrf": csrf_of(page), "flag": "storm", **fields})


def decided_route(srv: InProcess, client: httpx.Client, call_id: str) -> str:
    call(srv, client, "+14155550142", call_id)
    line = next(r for r in srv.wait_log(lambda r: r.get("call_id") == call_id) if r.get("call_id") == call_id)
    return str(line["route"])


def test_a_flag_switched_in_the_console_is_the_flags_apis_switch(stateful: InProcess) -> None:
    srv = stateful
    client, _ = login(srv)
    with closing(client), srv.client() as api:
        page = client.get("/-/console/flags")
        assert page.status_code == 200 and 'data-flag="storm"' in page.text
        assert 'data-state="off"' in page.text and "<b>the</b>" not in page.text  # escaped
        assert decided_route(srv, api, "before-storm") == "sales"
        reason = f"storm <i>closure</i> called in by {FULL_NUMBERS[0]}"
        r = switch(client, on="on", reason=reason, ttl="2h")
        assert (r.status_code, r.headers["location"]) == (303, "/-/console/flags?switched=storm")
        try:
            listed = api.get("/v1/flags", headers=srv.admin()).json()["flags"]
            assert [(f["name"], f["on"], f["reason"]) for f in listed] == [("storm", True, reason)]
            assert 7190 < listed[0]["until"] - time.time() <= 7200
            audit = srv.wait_log(lambda r: r.get("type") == "flag")
            line = next(r for r in audit if r.get("type") == "flag")
            assert (line["flag"], line["on"], line["ttl_s"], line["reason"], line["by"]) == (
                "storm",
                True,
                7200.0,
                reason,
                "console",
            )
            assert decided_route(srv, api, "in-the-storm") == "storm"
            shown = client.get("/-/console/flags?switched=storm").text
            assert 'id="switched"' in shown and 'data-state="on"' in shown
            assert "&lt;i&gt;closure&lt;/i&gt;" in shown and "<i>" not in shown
            assert FULL_NUMBERS[0] not in shown and "+1415*****42" in shown
        finally:
            r = switch(client, on="off", reason="storm over")
        assert r.status_code == 303
        assert api.get("/v1/flags", headers=srv.admin()).json()["flags"][0]["on"] is False
        assert decided_route(srv, api, "after-storm") in ("sales", "overflow")


def test_a_flag_switch_needs_the_csrf_token_and_a_reason(stateful: InProcess) -> None:
    srv = stateful
    client, _ = login(srv)
    with closing(client), srv.client() as api:
        form = {"flag": "storm", "on": "on", "reason": "storm"}
        assert client.post("/-/console/flags", data=form).status_code == 403
        assert client.post("/-/console/flags", data={**form, "csrf": "0" * 64}).status_code == 403
        for fields, problem in (
            ({"on": "on", "reason": "  "}, "reason must be a non-empty text"),
            ({"on": "on"}, "reason must be a non-empty text"),
            ({"on": "on", "reason": "r", "ttl": "soon"}, "The TTL must be a duration such as 90s"),
            ({"on": "maybe", "reason": "r"}, "Switch the flag on or off."),
        ):
            r = switch(client, **fields)
            assert r.status_code == 400, fields
            error = re.search(r'id="flag-error">([^<]*)<', r.text)
            assert error is not None and problem in error.group(1), fields
        r = switch(client, flag="strom", on="on", reason="typo")
        assert r.status_code == 404 and "declares no such flag" in r.text
        assert api.get("/v1/flags", headers=srv.admin()).json()["flags"][0]["on"] is False
        flag_lines = [r for r in srv.records_until_marker(api) if r.get("type") == "flag"]
        assert not [r for r in flag_lines if r["reason"] in ("r", "typo", "storm")]  # nothing switched


def test_capacity_shows_each_pool_in_use_of_max(stateful: InProcess) -> None:
    srv = stateful
    client, _ = login(srv)
    with closing(client), srv.client() as api:
        for i in range(3):  # two hold the pool's slots, the third overflows
            call(srv, api, f"+1415555031{i}", f"held-{i}-{time.monotonic_ns()}")
        srv.server.metrics.state.reserved("sales", False)  # a call that lost the race
        r = client.get("/-/console/capacity")
        assert r.status_code == 200
        row = re.search(r'<tr data-pool="sales" class="level-(\w+)">(.*?)</tr>', r.text, re.S)
        assert row is not None and row.group(1) == "full"
        assert re.search(r'class="num in-use">2 / 2<', row.group(2))
        assert 'class="gauge gauge-full"' in row.group(
            2
        ) and 'class="gauge-fill" x="0" y="0" width="100.0"' in row.group(2)
        assert re.search(r'class="num refused">1<', row.group(2))
        assert " style=" not in r.text and "<style" not in r.text
        assert "+1415555031" not in client.get("/-/console/decisions").text


def test_flags_and_capacity_say_what_the_policy_lacks(srv: InProcess, tmp_path: Path) -> None:
    client, _ = login(srv)  # policies/main.yaml: no live call state at all
    with closing(client):
        assert 'id="absent"' in client.get("/-/console/flags").text
        assert 'id="absent"' in client.get("/-/console/capacity").text
    pools_only = STATE_POLICY.split("flags:")[0] + "targets:" + STATE_POLICY.split("targets:")[1]
    pools_only = pools_only.replace("    when: {flag: storm}\n", "    when: {capacity: {sales: full}}\n")
    with InProcess(tmp_path, pools_only) as other:
        client, _ = login(other)
        with closing(client):
            assert 'id="no-flags"' in client.get("/-/console/flags").text
            assert 'data-pool="sales"' in client.get("/-/console/capacity").text


SHADOW_LIVE = "version: 1\ndefault: {assistantId: live-default}\n"
SHADOW_CANDIDATE = """\
version: 1
routes:
  - id: us-new
    when: {caller: "+1*"}
    then: {assistantId: candidate-us}
default: {assistantId: live-default}
"""


def test_the_overview_shows_a_failed_reload_with_its_positions(tmp_path: Path) -> None:
    with InProcess(tmp_path, SHADOW_LIVE) as srv, srv.client() as hook:
        srv.policy_path.write_text("version: 1\ndefault: {assistantId: x}\nroutes: [oops\n", encoding="utf-8")
        refused = hook.post("/-/reload", headers=srv.admin())
        assert refused.status_code == 422
        [error] = refused.json()["errors"]
        client, _ = login(srv)
        with closing(client):
            page = client.get("/-/console")
            assert page.status_code == 200
            assert re.search(r'id="reload-state">failed<', page.text)
            where, _, rest = error.partition(": error: ")
            assert where.startswith(f"{srv.policy_path}:") and where in page.text  # FILE:LINE:COL
            assert rest[rest.rindex("[") :] in page.text  # the problem's code


def test_the_shadow_page_lists_the_calls_the_candidate_would_route_elsewhere(tmp_path: Path) -> None:
    from router.server.store import PolicyStore

    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(SHADOW_CANDIDATE, encoding="utf-8")
    srv = InProcess(tmp_path / "live", SHADOW_LIVE)
    srv.server.shadow = PolicyStore(candidate)
    with srv, srv.client() as hook:
        call(srv, hook, "+14155550142", "call-us-1")
        call(srv, hook, "+442079460958", "call-uk-1")  # the same answer under both: not listed
        srv.wait_log(lambda r: r.get("shadow_diff"))
        client, _ = login(srv)
        with closing(client):
            page = client.get("/-/console/shadow")
            assert page.status_code == 200 and 'id="shadow-off"' not in page.text
            rows = re.findall(
                r"<tr><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", page.text
            )
            assert rows == [("call-us-1", "default", "us-new")]
