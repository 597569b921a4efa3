"""DESIGN §11 items beside `diff`: zones on every `at`, no zero-case `test`, `--version`,
exit 4 for a taken port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from router import cli

ROOT = Path(__file__).resolve().parents[1]
POLICIES = str(ROOT / "policies")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("vapi-router 0.")


def test_explain_at_without_offset_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "explain",
        POLICIES,
        "--caller",
        "+14155550142",
        "--dialled",
        "+16505550117",
        "--at",
        "2026-11-23T10:00",
    ]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "vapi-router explain: --at '2026-11-23T10:00' has no UTC offset: write it with one, "
        "e.g. 2026-11-23T10:00:00-05:00"
    )


def test_case_at_without_offset_is_positioned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(ROOT / "policies" / "main.yaml", tmp_path)
    shutil.copy(ROOT / "policies" / "crm.csv", tmp_path)
    (tmp_path / "main.test.yaml").write_text(
        "cases:\n  - name: x\n"
        "    call: {caller: '+14155550142', dialled: '+16505550117', at: '2026-11-23T10:00'}\n"
        "    expect: {route: vip}\n"
    )
    assert cli.main(["test", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/main.test.yaml:3:" in err
    assert "`at` '2026-11-23T10:00' has no UTC offset" in err


def test_a_set_without_cases_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(ROOT / "policies" / "main.yaml", tmp_path)
    shutil.copy(ROOT / "policies" / "crm.csv", tmp_path)
    assert cli.main(["test", str(tmp_path), "--coverage"]) == 1
    assert capsys.readouterr().err.strip() == f"vapi-router test: no test cases found in {tmp_path}"


def test_a_set_without_cases_is_still_linted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text("version: 1\nroutes: []\ndefault: nowhere\n")
    assert cli.main(["test", str(tmp_path)]) == 1
    assert 'unknown target "nowhere"' in capsys.readouterr().err


def test_serve_on_a_taken_port_exits_4() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "router",
                "serve",
                POLICIES,
                "--port",
                str(port),
                "--insecure",
                "--no-watch",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 4
    assert (
        done.stderr.strip()
        == f"vapi-router serve: cannot listen on 127.0.0.1:{port}: the port is already in use"
    )
    assert "serving" not in done.stderr


UNSET_POLICY = """\
version: 1
crm:
  http:
    url: "https://crm.example.com/contacts?phone=${caller}"
    headers: {Authorization: "Bearer ${env.VAPI_ROUTER_TEST_UNSET}"}
default: {error: "Sorry."}
"""


def test_serve_with_an_unset_env_reference_exits_3(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(UNSET_POLICY, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "VAPI_ROUTER_TEST_UNSET"}
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "router",
            "serve",
            str(policy),
            "--port",
            str(port),
            "--insecure",
            "--no-watch",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"{policy}:5:30: warning: ${{env.VAPI_ROUTER_TEST_UNSET}} is not set in this environment: "
        "export VAPI_ROUTER_TEST_UNSET before `serve` (which refuses to start without it) [env-unset]",
        "0 errors, 1 warning",
        f"vapi-router serve: the policy at {policy} uses unset environment variables; not starting",
    ]


@pytest.mark.parametrize(
    ("flags", "code"),
    [pytest.param([], 0, id="a-warning"), pytest.param(["--strict"], 1, id="strict-an-error")],
)
def test_lint_env_unset(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    code: int,
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(UNSET_POLICY, encoding="utf-8")
    monkeypatch.delenv("VAPI_ROUTER_TEST_UNSET", raising=False)
    assert cli.main(["lint", str(policy), *flags]) == code
    assert "[env-unset]" in capsys.readouterr().out
    monkeypatch.setenv("VAPI_ROUTER_TEST_UNSET", "s3cret")
    assert cli.main(["lint", str(policy), *flags]) == 0
