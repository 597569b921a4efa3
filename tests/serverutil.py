"""Start the real router for tests: in process (uvicorn in a thread) or `vapi-router serve` (subprocess).

Both write the policy to a temporary directory, take secrets through an env mapping, write
the decision log to a file, wait until /readyz answers 200 and stop promptly. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

# bench/ (beside router/), tests/ and ../shared/vapi come from pytest's pythonpath (pyproject).
import check_reply  # type: ignore[import-not-found]
import httpx
import jsonschema
import uvicorn
from check_reply import problems as _problems
from crmserver import ThreadedUvicorn, start_in_thread

from bench import clean_env, stop_process
from router.server.app import Server, create_app
from router.server.metrics import FLUSH_S
from router.server.serve import ServeOptions, build_server

ROOT = Path(__file__).resolve().parents[1]

VAPI_DIR = Path(__file__).resolve().parents[2] / "shared" / "vapi"  # ../shared beside the repo
PAYLOADS = VAPI_DIR / "payloads"

BIN = Path(sys.executable).parent
SECRET = "s3cret-SENTINEL-webhook-7f3a"
HMAC_SECRET = "hmac-SENTINEL-key-91c2"
ADMIN_TOKEN = "admin-SENTINEL-token-4be0"
STARTUP_S = 15.0


def payload(name: str) -> dict[str, Any]:
    """A message file from the shared Vapi payloads, parsed (a fresh copy each time)."""
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text(encoding="utf-8"))
    return data


def _extend_check_reply() -> None:
    """check_reply.py knows the assistant-request and transfer replies; the same check for the
    handoff reply (its schema file, which has no $refs) and the tool-calls and knowledge-base
    replies (in the bundle)."""
    check_reply.ROOTS.setdefault("tool-calls", "ServerMessageResponseToolCalls")
    check_reply.ROOTS.setdefault("knowledge-base-request", "ServerMessageResponseKnowledgeBaseRequest")
    check_reply.ROOTS.setdefault(
        "handoff-destination-request", "ServerMessageResponseHandoffDestinationRequest"
    )
    if "handoff-destination-request" not in check_reply._validators:
        spec = VAPI_DIR / "spec" / "schemas" / "ServerMessageResponseHandoffDestinationRequest.json"
        schema = check_reply._mend(json.loads(spec.read_text(encoding="utf-8")))
        check_reply._validators["handoff-destination-request"] = jsonschema.Draft7Validator(schema)


def reply_problems(kind: str, reply: Any) -> list[str]:
    """Every way `reply` fails Vapi's schema for answering a `kind` message (../shared/vapi)."""
    _extend_check_reply()
    found: list[str] = _problems(kind, reply)
    return found


def free_port() -> int:
    """A port nothing listens on right now (for a subprocess that binds it itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def hmac_headers(
    body: bytes,
    secret: str = HMAC_SECRET,
    *,
    timestamp: str | None = None,
    algorithm: str = "sha256",
    encoding: str = "hex",
    payload_format: str = "{timestamp}.{body}",
    header: str = "x-signature",
    timestamp_header: str = "x-timestamp",
) -> dict[str, str]:
    """Headers that sign `body` (the raw bytes sent) the way Vapi's HMAC credential does."""
    stamp = timestamp if timestamp is not None else str(int(time.time()))
    before, _, after = payload_format.partition("{body}")
    message = (
        before.replace("{timestamp}", stamp).encode() + body + after.replace("{timestamp}", stamp).encode()
    )
    digest = hmac.new(secret.encode(), message, algorithm).digest()
    signature = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    return {header: signature, timestamp_header: stamp, "content-type": "application/json"}


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()


class _Base:
    """What both ways of running share: base URL, clients, decision log and readiness."""

    def _write_policy(self, directory: Path, policy_text: str, files: Mapping[str, str] | None) -> None:
        """policy.yaml and any side files (a CRM file...) in `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.policy_path = directory / "policy.yaml"
        self.policy_path.write_text(policy_text, encoding="utf-8")
        for name, content in (files or {}).items():
            (directory / name).write_text(content, encoding="utf-8")

    base_url: str
    log_path: Path
    policy_path: Path
    env: dict[str, str]
    webhook_path: str

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.base_url, **kwargs)

    def wait_ready(self, deadline_s: float = STARTUP_S) -> dict[str, Any]:
        """Poll /readyz until it answers 200 (the policy is live); its JSON."""
        end = time.monotonic() + deadline_s
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while True:
                self._check_alive()
                try:
                    response = client.get("/readyz")
                    if response.status_code == 200:
                        data: dict[str, Any] = response.json()
                        return data
                except httpx.TransportError:
                    pass
                if time.monotonic() > end:
                    raise RuntimeError(f"router at {self.base_url} not ready within {deadline_s} s")
                time.sleep(0.02)

    def _check_alive(self) -> None:
        pass

    def auth(self, body: bytes = b"") -> dict[str, str]:
        """Webhook auth headers from the env this server was started with."""
        if "VAPI_SERVER_SECRET" in self.env:
            return {"x-vapi-secret": self.env["VAPI_SERVER_SECRET"], "content-type": "application/json"}
        if "VAPI_HMAC_SECRET" in self.env:
            e = self.env
            return hmac_headers(
                body,
                e["VAPI_HMAC_SECRET"],
                algorithm=e.get("VAPI_HMAC_ALGORITHM", "sha256"),
                encoding=e.get("VAPI_HMAC_ENCODING", "hex"),
                payload_format=e.get("VAPI_HMAC_PAYLOAD", "{timestamp}.{body}"),
                header=e.get("VAPI_HMAC_HEADER", "x-signature"),
                timestamp_header=e.get("VAPI_HMAC_TIMESTAMP_HEADER", "x-timestamp"),
            )
        return {"content-type": "application/json"}

    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.env.get('ROUTER_ADMIN_TOKEN', '')}"}

    def post_webhook(self, client: httpx.Client, message: Any, **kwargs: Any) -> httpx.Response:
        body = message if isinstance(message, bytes) else dumps(message)
        return client.post(self.webhook_path, content=body, headers=self.auth(body), **kwargs)

    # --- the decision log ---------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]

    def wait_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0
    ) -> list[dict[str, Any]]:
        """Decision records once one satisfies `predicate` (the writer thread is asynchronous)."""
        end = time.monotonic() + timeout_s
        while True:
            records = self.log_records()
            if any(predicate(r) for r in records):
                return records
            if time.monotonic() > end:
                raise AssertionError(f"no decision log line matched within {timeout_s} s: {records[-3:]}")
            time.sleep(0.005)

    def records_until_marker(self, client: httpx.Client) -> list[dict[str, Any]]:
        """Send a marker assistant-request and wait for its line: every line queued before it is then
        written too (one writer thread, FIFO). The records before the marker."""
        marker = f"marker-{time.monotonic_ns()}"
        message = payload("assistant-request.pstn.json")
        message["message"]["call"]["id"] = marker
        assert self.post_webhook(client, message).status_code == 200
        records = self.wait_log(lambda r: r.get("call_id") == marker)
        index = next(i for i, r in enumerate(records) if r.get("call_id") == marker)
        return records[:index]

    # --- metrics ------------------------------------------------------------------------

    def metrics(self, client: httpx.Client) -> dict[str, float]:
        """The /metrics samples as {'name{labels}': value} (labels as printed)."""
        response = client.get("/metrics")
        assert response.status_code == 200, response.text
        return parse_metrics(response.text)

    def settled_metrics(self, client: httpx.Client, name: str, expected: float) -> dict[str, float]:
        """The /metrics samples once `name` reaches `expected`, or after 5 flush intervals: each
        --workers process publishes its counts every FLUSH_S, and /metrics sums them all."""
        end = time.monotonic() + 5 * FLUSH_S
        samples = self.metrics(client)
        while metric(samples, name) < expected and time.monotonic() < end:
            time.sleep(0.05)
            samples = self.metrics(client)
        return samples


def parse_metrics(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        samples[name] = float(value)
    return samples


def metric(samples: Mapping[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            total += value
    return total


class InProcess(_Base):
    """`with InProcess(tmp, policy_text, env=...) as srv:` the app of build_server + create_app,
    served by uvicorn (uvloop + httptools, as in production) on a pre-bound 127.0.0.1 socket."""

    def __init__(
        self,
        directory: Path,
        policy_text: str,
        *,
        env: Mapping[str, str] | None = None,
        path: str = "/webhook/vapi",
        files: Mapping[str, str] | None = None,
        capture: bool = False,
        http: str | type[asyncio.Protocol] = "router.server.fasthttp:WebhookProtocol",
    ) -> None:
        self._write_policy(directory, policy_text, files)
        self.http = http  # uvicorn's HTTP protocol: serve's, unless a test compares another
        self.log_path = directory / "decisions.jsonl"
        self.capture_path = directory / "capture.jsonl" if capture else None
        self.env = (
            dict(env)
            if env is not None
            else {"VAPI_SERVER_SECRET": SECRET, "ROUTER_ADMIN_TOKEN": ADMIN_TOKEN}
        )
        self.webhook_path = path
        self.options = ServeOptions(
            policy=str(self.policy_path),
            path=path,
            watch=False,
            decision_log=str(self.log_path),
            capture=str(self.capture_path) if self.capture_path else None,
        )
        self.server: Server = build_server(self.options, env=self.env)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._uvicorn: ThreadedUvicorn | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.server, path=self.webhook_path),
            loop="uvloop",
            http=self.http,
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._uvicorn, self._thread, started = start_in_thread(config, self._sock, STARTUP_S)
        if not started:
            self.stop()
            raise RuntimeError("the router did not start")
        self.wait_ready()

    def _check_alive(self) -> None:
        if self._thread is not None and not self._thread.is_alive():
            raise RuntimeError("the router's server thread ended")

    def stop(self) -> None:
        if self._uvicorn is not None and self._thread is not None:
            self._uvicorn.should_exit = True
            self._thread.join(10)
            assert not self._thread.is_alive(), "the router did not stop within 10 s"
        self._sock.close()
        self._uvicorn = None
        self._thread = None


def loaded_server(directory: Path, policy_text: str) -> Server:
    """The Server that `InProcess(directory, policy_text)` would serve, with its policy loaded
    and not served: for tests that call its methods (answer_now, record_answered) directly."""
    unstarted = InProcess(directory, policy_text)
    unstarted.stop()  # releases the socket it bound
    unstarted.server.store.load_now()
    return unstarted.server


class Subprocess(_Base):
    """`with Subprocess(tmp, policy_text, env=..., args=[...]) as srv:` runs `vapi-router serve`.

    stdout and stderr go to files in `directory` (read them with .stdout() / .stderr())."""

    def __init__(
        self,
        directory: Path,
        policy_text: str,
        *,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        path: str = "/webhook/vapi",
        files: Mapping[str, str] | None = None,
        stdout_log: bool = False,
    ) -> None:
        self._write_policy(directory, policy_text, files)
        self.stdout_path = directory / "stdout.txt"
        self.stderr_path = directory / "stderr.txt"
        # stdout_log: the default `--decision-log -`, read back from the captured stdout
        self.log_path = self.stdout_path if stdout_log else directory / "decisions.jsonl"
        self.env = (
            dict(env)
            if env is not None
            else {"VAPI_SERVER_SECRET": SECRET, "ROUTER_ADMIN_TOKEN": ADMIN_TOKEN}
        )
        self.webhook_path = path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.argv = [
            str(BIN / "vapi-router"),
            "serve",
            str(self.policy_path),
            "--port",
            str(self.port),
            "--no-watch",
            *(() if stdout_log else ("--decision-log", str(self.log_path))),
            *(("--path", path) if path != "/webhook/vapi" else ()),
            *args,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def process_env(self) -> dict[str, str]:
        return clean_env(self.env)

    def start(self) -> None:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, env=self.process_env())
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"vapi-router serve exited with {self.proc.returncode}:\n{self.stderr()}")

    def stop(self) -> int | None:
        """SIGTERM, then wait (SIGKILL after 10 s); the exit code."""
        if self.proc is None:
            return None
        stop_process(self.proc, 10)
        return self.proc.returncode

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


def run_serve(
    directory: Path, policy_text: str, *args: str, env: Mapping[str, str], timeout_s: float = 20
) -> subprocess.CompletedProcess[str]:
    """`vapi-router serve` expected to exit by itself (refusing to start): its result."""
    directory.mkdir(parents=True, exist_ok=True)
    policy_path = directory / "policy.yaml"
    policy_path.write_text(policy_text, encoding="utf-8")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("VAPI_", "ROUTER_", "PROMETHEUS_"))}
    return subprocess.run(
        [str(BIN / "vapi-router"), "serve", str(policy_path), "--port", str(free_port()), *args],
        env=keep | dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def iter_paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path (keys and list indexes) into a JSON value, the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from iter_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from iter_paths(item, (*prefix, i))
