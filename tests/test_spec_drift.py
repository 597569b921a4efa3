"""DESIGN §9 spec drift: an unknown field inside an inline Vapi payload is a warning
[vapi-unknown-field] (an error under --strict), and `--vapi-spec FILE` (or VAPI_ROUTER_VAPI_SPEC)
on lint, test and serve checks payloads against a newer Vapi OpenAPI document. The newer
document here is the shared spec bundle with one field Vapi "added" after this release."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from serverutil import VAPI_DIR, run_serve

from router.policy import vapi_spec

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


@pytest.fixture(scope="module")
def newer_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = json.loads((VAPI_DIR / "spec" / "bundles" / "router-closure.bundle.json").read_text())
    bundle["components"]["schemas"]["CreateAssistantDTO"]["properties"]["voicemailDetectionMode"] = {
        "type": "string",
        "enum": ["smart", "off"],
    }
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


def test_the_derivation_at_run_time_is_the_bundled_one() -> None:
    """The same generator code on the same spec gives the bundled document, ended reasons too."""
    bundled = vapi_spec.from_openapi(VAPI_DIR / "spec" / "bundles" / "router-closure.bundle.json")
    assert bundled["$defs"] == vapi_spec.bundled()["$defs"]
    assert bundled["x-ended-reasons"] == vapi_spec.bundled()["x-ended-reasons"]
    assert "customer-ended-call" in vapi_spec.ended_reasons()
