"""DESIGN §9 spec drift: an unknown field inside an inline Vapi payload is a warning
[vapi-unknown-field] (an error under --strict), and `--vapi-spec FILE` (or VAPI_ROUTER_VAPI_SPEC)
on lint, test and serve checks payloads against a newer Vapi OpenAPI document. The newer
document here is the shared spec bundle with what Vapi "added" after this release: one
field, one firstMessageMode value and one endedReason value."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from reloadutil import until
from serverutil import VAPI_DIR, Subprocess, metric, payload, run_serve

from router.policy import vapi_spec
from router.policy.loader import lint_path

BIN = Path(sys.executable).parent
POLICY = """\
version: 1
routes: []
default:
  assistant:
    firstMessage: Hello
    voicemailDetectionMode: smart
"""
CASES = """\
cases:
  - name: everyone gets the assistant
    call: {caller: "+14155550142"}
    expect: {reply: {assistant: {firstMessage: Hello, voicemailDetectionMode: smart}}}
"""

NEW_MODE = "assistant-speaks-after-a-pause"  # a firstMessageMode value Vapi "added"
NEW_REASON = "customer-hung-up-during-the-pause"  # an endedReason value Vapi "added"
NEWER_POLICY = f"""\
version: 1
routes: []
default:
  assistant:
    firstMessage: Hello
    firstMessageMode: {NEW_MODE}
"""


@pytest.fixture(scope="module")
def newer_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = json.loads((VAPI_DIR / "spec" / "bundles" / "router-closure.bundle.json").read_text())
    bundle["components"]["schemas"]["CreateAssistantDTO"]["properties"]["voicemailDetectionMode"] = {
        "type": "string",
        "enum": ["smart", "off"],
    }
    schemas = bundle["components"]["schemas"]
    schemas["CreateAssistantDTO"]["properties"]["firstMessageMode"]["enum"].append(NEW_MODE)
    for name in ("ServerMessageEndOfCallReport", "ServerMessageStatusUpdate", "Call"):
        schemas[name]["properties"]["endedReason"]["enum"].append(NEW_REASON)
    path = tmp_path_factory.mktemp("spec") / "openapi.json"
    path.write_text(json.dumps(bundle))
    return path


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("VAPI_")}
    return subprocess.run(
        [str(BIN / "vapi-router"), *args], env=keep | (env or {}), capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("args", "use_spec", "by_env", "code", "warned"),
    [
        pytest.param(["lint"], False, False, 0, True, id="lint-warns"),
        pytest.param(["lint", "--strict"], False, False, 1, True, id="lint-strict-fails"),
        pytest.param(["lint", "--strict"], True, False, 0, False, id="lint-newer-spec"),
        pytest.param(["lint", "--strict"], True, True, 0, False, id="lint-newer-spec-by-env"),
        pytest.param(["test"], False, False, 0, False, id="test-loads-with-warning"),
        pytest.param(["test"], True, False, 0, False, id="test-newer-spec"),
    ],
)
def test_unknown_fields_and_a_newer_spec(
    tmp_path: Path, newer_spec: Path, args: list[str], use_spec: bool, by_env: bool, code: int, warned: bool
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    (tmp_path / "policy.test.yaml").write_text(CASES)
    extra = ["--vapi-spec", str(newer_spec)] if use_spec and not by_env else []
    env = {vapi_spec.ENV: str(newer_spec)} if by_env else {}
    result = run(args[0], str(policy), *args[1:], *extra, env=env)
    assert result.returncode == code, result.stdout + result.stderr
    assert ("[vapi-unknown-field]" in result.stdout + result.stderr) == warned


@pytest.mark.parametrize(
    ("command", "content"),
    [
        pytest.param("lint", None, id="lint-missing-file"),
        pytest.param("test", "not json", id="test-not-json"),
        pytest.param("lint", '{"openapi": "3.0.0"}', id="lint-no-components"),
    ],
)
def test_an_unusable_spec_exits_2(tmp_path: Path, command: str, content: str | None) -> None:
    spec = tmp_path / "spec.json"
    if content is not None:
        spec.write_text(content)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    result = run(command, str(policy), "--vapi-spec", str(spec))
    assert result.returncode == 2 and "--vapi-spec" in result.stderr


def test_serve_refuses_an_unusable_spec(tmp_path: Path) -> None:
    result = run_serve(
        tmp_path, POLICY, "--vapi-spec", str(tmp_path / "absent.json"), env={"VAPI_SERVER_SECRET": "s"}
    )
    assert result.returncode == 2 and "--vapi-spec" in result.stderr


def test_serve_lints_and_serves_with_a_newer_spec(tmp_path: Path, newer_spec: Path) -> None:
    """A policy only the newer spec accepts: refused by the bundled schema, served by
    `serve --vapi-spec --workers 2` (both workers are started afresh, so the spec must reach
    them through VAPI_ROUTER_VAPI_SPEC), checked with it again on reload, and the new
    endedReason is a label of its own in router_call_outcomes_total, not "other"."""
    (tmp_path / "bundled").mkdir()
    (tmp_path / "bundled" / "p.yaml").write_text(NEWER_POLICY)
    assert [p.code for p in lint_path(tmp_path / "bundled" / "p.yaml").errors] == ["vapi-enum"]
    call = payload("assistant-request.pstn.json")
    end = payload("end-of-call-report.json")
    end["message"]["call"]["id"], end["message"]["endedReason"] = call["message"]["call"]["id"], NEW_REASON
    args = ("--vapi-spec", str(newer_spec), "--workers", "2")
    with Subprocess(tmp_path / "serve", NEWER_POLICY, args=args) as srv, srv.client() as client:

        def first_messages() -> set[Any]:  # 8 fresh connections: the kernel spreads them over both workers
            out = set()
            for _ in range(8):
                with srv.client() as fresh:
                    out.add(srv.post_webhook(fresh, call).json()["assistant"]["firstMessage"])
            return out

        def serving_pids() -> set[str]:
            response = client.get("/metrics")  # a starting worker's empty metrics file: a 500
            text = response.text if response.status_code == 200 else ""
            return {m for m in re.findall(r'router_policy_info\{[^}]*pid="(\d+)"[^}]*\} 1', text)}

        until(lambda: len(serving_pids()) == 2, 20, what="two workers serving")
        reply = srv.post_webhook(client, call)
        assert reply.json() == {"assistant": {"firstMessage": "Hello", "firstMessageMode": NEW_MODE}}
        assert first_messages() == {"Hello"}
        srv.policy_path.write_text(NEWER_POLICY.replace(NEW_MODE, "assistant-speaks-never"))
        refused = client.post("/-/reload", headers=srv.admin())  # the reload does check
        assert refused.status_code == 422 and "[vapi-enum]" in refused.text
        srv.policy_path.write_text(NEWER_POLICY.replace("Hello", "Hello again"))
        reload = client.post("/-/reload", headers=srv.admin())
        assert reload.status_code == 200, reload.text
        until(lambda: first_messages() == {"Hello again"}, 15, what="both workers on the reloaded policy")
        # one keep-alive connection, one worker: the end joins the decision that worker made
        assert srv.post_webhook(client, call).status_code == 200
        assert srv.post_webhook(client, end).status_code == 200
        samples = srv.settled_metrics(client, "router_call_outcomes_total", 1)
    assert metric(samples, "router_call_outcomes_total", ended_reason=NEW_REASON) == 1


def test_the_derivation_at_run_time_is_the_bundled_one() -> None:
    """The same generator code on the same spec gives the bundled document, ended reasons too."""
    bundled = vapi_spec.from_openapi(VAPI_DIR / "spec" / "bundles" / "router-closure.bundle.json")
    assert bundled["$defs"] == vapi_spec.bundled()["$defs"]
    assert bundled["x-ended-reasons"] == vapi_spec.bundled()["x-ended-reasons"]
    assert "customer-ended-call" in vapi_spec.ended_reasons()
