"""Helpers for the hot-reload tests: policies whose replies name their version, broken edits,
a watching in-process server, the Kubernetes ConfigMap volume update, and polling.

The loopback load client and the 10,000-route generator are the benchmark's own (bench/),
so the tests and `make bench` measure the same way.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from serverutil import InProcess, dumps, payload

from bench.reload import Load, Sample  # serverutil puts bench/ on the path
from router.server.serve import build_server

__all__ = [
    "BROKEN",
    "Load",
    "Sample",
    "Watched",
    "assistant_id",
    "broken",
    "call",
    "configmap_update",
    "expected",
    "until",
    "versioned",
]

BAY_CALLER = "+14155550142"  # matches the `bay-area` route
OTHER_CALLER = "+12125550199"  # falls to the default
T = TypeVar("T")


def assistant_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def versioned(n: int, *, crm: str = "") -> str:
    """A valid policy whose every reply names version `n`. `crm` is an optional crm: block."""
    return f"""\
version: 1
settings: {{region: US, deadline_ms: 3000}}
{crm}targets:
  desk:
    assistantId: {assistant_id(n)}
    assistantOverrides: {{variableValues: {{caller: "${{caller}}", version: "{n}"}}}}
routes:
  - id: bay-area
    when: {{caller: "+1415*"}}
    then: desk
default: {{assistantId: {assistant_id(100_000 + n)}}}
"""


def expected(n: int, caller: str = BAY_CALLER) -> dict[str, Any]:
    """The reply version `n` gives a caller."""
    if caller.startswith("+1415"):
        return {
            "assistantId": assistant_id(n),
            "assistantOverrides": {"variableValues": {"caller": caller, "version": str(n)}},
        }
    return {"assistantId": assistant_id(100_000 + n)}


# Invalid edits of every stage (YAML, schema, semantic checks), each of a version whose replies
# would differ from every valid one if it ever went live; with the (line, col, code) reported.
BROKEN: dict[str, tuple[Callable[[str], str], tuple[int, int, str]]] = {
    "unknown-target": (lambda t: t.replace("then: desk", "then: dsek"), (10, 11, "unknown-target")),
    "yaml-syntax": (lambda t: t.replace("then: desk", "then: [desk"), (11, 8, "yaml-syntax")),
    "schema": (lambda t: t.replace("deadline_ms: 3000", "deadline_ms: 70000"), (2, 37, "bad-value")),
    "bad-number": (lambda t: t.replace('"+1415*"', '"+1415x"'), (9, 20, "bad-number")),
}


def broken(kind: str, n: int) -> str:
    return BROKEN[kind][0](versioned(n))


def call(caller: str | None = BAY_CALLER, call_id: str = "call-reload") -> dict[str, Any]:
    """An assistant-request from `caller` (a fresh copy of the shared PSTN payload)."""
    data = payload("assistant-request.pstn.json")
    data["message"]["customer"]["number"] = caller
    data["message"]["call"]["customer"]["number"] = caller
    data["message"]["call"]["id"] = call_id
    data["message"]["timestamp"] = int(datetime.now(UTC).timestamp() * 1000)
    return data


def body(caller: str = BAY_CALLER) -> bytes:
    return dumps(call(caller))


PROBLEM = re.compile(r"(?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning): .+ \[[a-z-]+\]")


def until(check: Callable[[], T | None], timeout_s: float = 10.0, *, what: str = "") -> T:
    """Poll `check` until it returns something truthy; that value (AssertionError at the deadline)."""
    end = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout_s} s: {what or check}")
        time.sleep(0.01)


class Watched(InProcess):
    """The in-process router (uvicorn in a thread) watching `policy` (a file or a directory)
    for changes, as `vapi-router serve` does by default."""

    def __init__(self, directory: Path, policy: Path, *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(directory, "", env=env)  # its own policy.yaml goes unused
        self.policy_path = policy
        self.options = replace(self.options, policy=str(policy), watch=True)
        self.server = build_server(self.options, env=self.env)

    def version(self, client: httpx.Client) -> str:
        data: dict[str, Any] = client.get("/readyz").json()
        return str(data["version"])

    def reply(self, client: httpx.Client, caller: str = BAY_CALLER) -> Any:
        response = self.post_webhook(client, call(caller))
        assert response.status_code == 200, response.text
        return response.json()

    def edit(self, client: httpx.Client, write: Callable[[int], None], n: int) -> None:
        """Write version `n` once and wait until it answers (the watcher catches up with an
        edit made before it listened, so even the first edit after start-up is never lost)."""
        write(n)
        until(lambda: self.reply(client) == expected(n), 10, what=f"version {n} live")


_stamps = itertools.count(1)


def configmap_update(mount: Path, files: Mapping[str, str]) -> None:
    """Update `mount` exactly as the kubelet's AtomicWriter updates a ConfigMap volume:
    write the files into a new `..<timestamp>` directory, create the user-visible
    `name -> ..data/name` symlinks, point a new `..data_tmp` symlink at the new directory
    and rename it over `..data` (the one atomic step), then delete the old directory."""
    mount.mkdir(parents=True, exist_ok=True)
    data = mount / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    stamp = f"..2026_11_21_10_00_{next(_stamps):02d}.{os.getpid()}"
    (mount / stamp).mkdir()
    for name, text in files.items():
        (mount / stamp / name).write_text(text, encoding="utf-8")
    for name in files:
        link = mount / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)
    tmp = mount / "..data_tmp"
    tmp.symlink_to(stamp)
    os.rename(tmp, data)
    for link in mount.iterdir():  # keys no longer in the ConfigMap
        if not link.name.startswith(".") and link.name not in files:
            link.unlink()
    if old is not None:
        for f in (mount / old).iterdir():
            f.unlink()
        (mount / old).rmdir()
