"""`vapi-router serve` as a subprocess: refusing to start, --insecure, --path, stdout decision
log without secrets, SIGTERM, and --workers 2 under load."""

from __future__ import annotations

import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from serverutil import SECRET, Subprocess, dumps, metric, payload, reply_problems, run_serve

DESK = "22222222-2222-4222-8222-222222222222"
SAFE = "11111111-1111-4111-8111-111111111111"
POLICY = f"""\
version: 1
settings: {{region: US, deadline_ms: 2000}}
targets:
  desk:
    assistantId: {DESK}
    assistantOverrides: {{variableValues: {{caller: "${{caller}}"}}}}
routes:
  - id: bay-area
    when: {{caller: "+1415*"}}
    then: desk
default: {{assistantId: {SAFE}}}
"""
SENTINEL = "SENTINEL-twilio-auth-token-0b7d"
# uvicorn re-raises a SIGTERM it handled once it has shut down gracefully; a kill would be -9.
STOPPED = (0, -signal.SIGTERM)


def call(caller: str | None, call_id: str = "call-1") -> dict[str, Any]:
    data = payload("assistant-request.pstn.json")
    data["message"]["customer"]["number"] = caller
    data["message"]["call"]["customer"]["number"] = caller
    data["message"]["call"]["id"] = call_id
    data["message"]["phoneNumber"]["twilioAuthToken"] = SENTINEL
    return data


def expected(caller: str) -> dict[str, Any]:
    if caller.startswith("+1415"):
        return {"assistantId": DESK, "assistantOverrides": {"variableValues": {"caller": caller}}}
    return {"assistantId": SAFE}


def test_refuses_to_start_without_webhook_auth(tmp_path: Path) -> None:
    result = run_serve(tmp_path, POLICY, env={"ROUTER_ADMIN_TOKEN": "admin"})
    assert result.returncode == 2
    assert "no webhook auth configured" in result.stderr
    assert "VAPI_SERVER_SECRET" in result.stderr and "--insecure" in result.stderr


def test_refuses_bad_auth_settings(tmp_path: Path) -> None:
    result = run_serve(tmp_path, POLICY, env={"VAPI_HMAC_SECRET": "k", "VAPI_HMAC_ALGORITHM": "md5"})
    assert result.returncode == 2
    assert "VAPI_HMAC_ALGORITHM must be one of" in result.stderr and "k" not in result.stderr.split(":")[-1]


def test_refuses_an_invalid_policy(tmp_path: Path) -> None:
    broken = POLICY.replace("then: desk", "then: dsek").replace('"+1415*"', '"+1415x"')
    result = run_serve(tmp_path, broken, env={"VAPI_SERVER_SECRET": SECRET})
    assert result.returncode == 3
    policy = tmp_path / "policy.yaml"
    lines = [line for line in result.stderr.splitlines() if line.startswith(str(policy))]
    assert lines, result.stderr
    assert all(
        re.fullmatch(rf"{re.escape(str(policy))}:\d+:\d+: (error|warning): .+ \[[a-z-]+\]", x) for x in lines
    )
    assert any(x.startswith(f"{policy}:10:11: error: ") and '"dsek"' in x for x in lines), lines
    assert any(x.startswith(f"{policy}:9:20: error: ") and '"+1415x"' in x for x in lines), lines
    assert "is invalid; not starting" in result.stderr


def test_insecure_and_path(tmp_path: Path) -> None:
    with (
        Subprocess(tmp_path, POLICY, env={}, args=("--insecure",), path="/vapi/in") as srv,
        srv.client() as client,
    ):
        moved = client.post("/vapi/in", content=dumps(call("+14155550142")))
        default = client.post("/webhook/vapi", content=dumps(call("+14155550142")))
        assert client.get("/healthz").status_code == 200
    assert moved.status_code == 200 and moved.json() == expected("+14155550142")
    assert default.status_code == 404
    assert srv.stop() in STOPPED


def test_serves_logs_to_stdout_and_keeps_secrets_out(tmp_path: Path) -> None:
    env = {"VAPI_SERVER_SECRET": SECRET, "ROUTER_ADMIN_TOKEN": "admin-SENTINEL-77"}
    with Subprocess(tmp_path, POLICY, env=env, stdout_log=True) as srv, srv.client() as client:
        version = client.get("/readyz").json()["version"]
        replies = [
            srv.post_webhook(client, call(n, f"c{i}")) for i, n in enumerate(("+14155550142", "+12125550100"))
        ]
        anonymous = srv.post_webhook(client, call(None, "c2"))
        refused = client.post(
            srv.webhook_path, content=dumps(call("+14155550142")), headers={"x-vapi-secret": "no"}
        )
        bad = client.post(srv.webhook_path, content=b"{", headers=srv.auth())
        client.post("/-/reload", headers={"authorization": "Bearer admin-SENTINEL-77"})
        records = srv.wait_log(lambda r: r.get("call_id") == "c2")
    assert [r.json() for r in replies] == [expected("+14155550142"), expected("+12125550100")]
    assert anonymous.json() == {"assistantId": SAFE}
    assert (refused.status_code, bad.status_code) == (401, 400)
    assert srv.stop() in STOPPED  # SIGTERM: a graceful, prompt exit
    records = srv.log_records()
    assert [(r["call_id"], r["route"], r["caller"], r["policy"]) for r in records] == [
        ("c0", "bay-area", "+1415*****42", version),
        ("c1", "default", "+1212*****00", version),
        ("c2", "default", "anonymous", version),
    ]
    out, err = srv.stdout(), srv.stderr()
    assert "serving" in err  # the startup line names what it serves ...
    for secret in (SECRET, "admin-SENTINEL-77", SENTINEL, "4155550142", "2125550100"):
        assert secret not in out and secret not in err  # ... and never a secret or a number


def test_two_workers(tmp_path: Path) -> None:
    callers = [f"+1{'415' if i % 2 else '212'}555{i:04d}" for i in range(50)]
    with (
        Subprocess(tmp_path, POLICY, args=("--workers", "2")) as srv,
        srv.client(limits=httpx.Limits(max_connections=8)) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        responses = list(pool.map(lambda n: srv.post_webhook(client, call(n)), callers))
        samples = srv.settled_metrics(client, "router_decisions_total", 50)
        ready = client.get("/readyz").json()
    assert [r.status_code for r in responses] == [200] * 50
    assert [r.json() for r in responses] == [expected(n) for n in callers]
    assert all(reply_problems("assistant-request", r.json()) == [] for r in responses)
    assert metric(samples, "router_decisions_total") == 50
    assert metric(samples, "router_decisions_total", route="bay-area", outcome="matched") == 25
    assert metric(samples, "router_request_seconds_count") == 50
    assert metric(samples, "router_policy_info", version=ready["version"]) >= 1
    assert srv.stop() in STOPPED
