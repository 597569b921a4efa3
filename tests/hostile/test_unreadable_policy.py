"""Item 4 of issue 15: an OS error while reading the policy (a directory or a file made
unreadable) is a failed reload like any other: POST /-/reload answers 422 with the problem,
/readyz and /metrics say the last reload failed, the last good policy keeps answering, and the
watcher notices a `chmod 000` of the file by itself. Root reads anything, so as root the
server runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (setpriv): file modes apply."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from hostileutil import SAFE, call_message, policy
from serverutil import Subprocess, metric

SETPRIV = shutil.which("setpriv")


def ready(srv: Subprocess) -> dict[str, Any]:
    with srv.client() as client:
        data: dict[str, Any] = client.get("/readyz").json()
        return data


def wait_ready_state(srv: Subprocess, ok: bool, timeout_s: float = 5.0) -> dict[str, Any]:
    end = time.monotonic() + timeout_s
    while True:
        data = ready(srv)
        if data["last_reload_ok"] is ok or time.monotonic() > end:
            return data
        time.sleep(0.05)


@pytest.mark.skipif(os.geteuid() == 0 and SETPRIV is None, reason="root without setpriv reads any file")
def test_an_unreadable_policy_is_a_failed_reload(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "policy.yaml").write_text(policy(), encoding="utf-8")
    srv = Subprocess(tmp_path, policy())
    srv.argv[srv.argv.index(str(srv.policy_path))] = str(policies)
    srv.argv.remove("--no-watch")
    if os.geteuid() == 0:
        assert SETPRIV is not None
        srv.argv[:0] = [SETPRIV, "--bounding-set", "-dac_override,-dac_read_search", "--"]
    try:
        with srv, srv.client() as client:
            assert ready(srv)["last_reload_ok"] is True
            # the directory: an explicit reload
            policies.chmod(0)
            response = client.post("/-/reload", headers=srv.admin())
            assert response.status_code == 422, response.text
            assert "cannot read" in " ".join(response.json()["errors"])
            data = ready(srv)
            assert data["last_reload_ok"] is False and data["errors"], data
            assert metric(srv.metrics(client), "router_policy_last_reload_successful") == 0
            answer = srv.post_webhook(client, call_message())
            assert answer.status_code == 200 and answer.json()["assistantId"] == SAFE
            policies.chmod(0o755)
            assert client.post("/-/reload", headers=srv.admin()).status_code == 200
            assert ready(srv)["last_reload_ok"] is True
            # the file: the watcher notices the mode change alone
            (policies / "policy.yaml").chmod(0)
            data = wait_ready_state(srv, False)
            assert data["last_reload_ok"] is False, data
            (policies / "policy.yaml").chmod(0o644)
            assert wait_ready_state(srv, True)["last_reload_ok"] is True
            assert "Traceback" not in srv.stderr(), srv.stderr()[-3000:]
    finally:
        policies.chmod(0o755)
        (policies / "policy.yaml").chmod(0o644)
