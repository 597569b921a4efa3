"""What the hostile-client tests share: a policy, `serve` under a low fd limit, raw-socket
attackers that hold connections open, and the figures the README quotes (peak RSS)."""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import subprocess
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from serverutil import Subprocess, dumps, payload

SAFE = "11111111-1111-4111-8111-111111111111"
VIP = "66666666-6666-4666-8666-666666666666"
WEBHOOK = "/webhook/vapi"


def policy(crm_url: str | None = None, *, deadline_ms: int = 1000, timeout_ms: int = 5000) -> str:
    """`vip` callers (CRM tag) get VIP; without a CRM url, every caller gets SAFE."""
    crm = (
        f"""crm:
  http:
    url: "{crm_url}"
    tags: contact.tags
    fields: {{name: contact.firstName, phone: contact.phone}}
  timeout_ms: {timeout_ms}
  cache_ttl_s: 0
"""
        if crm_url
        else ""
    )
    routes = (
        f"""routes:
  - id: local
    when: {{caller: "+1415555*"}}
    then:
      assistantId: {SAFE}
      assistantOverrides: {{variableValues: {{call: "${{call.id}}"}}}}
  - id: vip
    when: {{tags: [vip]}}
    then: {{assistantId: {VIP}}}
"""
        if crm_url
        else ""
    )
    return f"""\
version: 1
settings: {{region: US, deadline_ms: {deadline_ms}, fallback: safe}}
{crm}targets:
  safe: {{assistantId: {SAFE}}}
{routes}default: safe
"""


def call_message(caller: str = "+14155550100", call_id: str = "call-1") -> dict[str, Any]:
    message = payload("assistant-request.pstn.json")
    message["message"]["call"]["id"] = call_id
    message["message"]["call"]["customer"]["number"] = caller
    message["message"]["customer"]["number"] = caller
    return message


class LimitedServe(Subprocess):
    """`vapi-router serve` with RLIMIT_NOFILE lowered to `nofile` (soft and hard)."""

    def __init__(self, directory: Path, policy_text: str, *, nofile: int, **kwargs: Any) -> None:
        super().__init__(directory, policy_text, **kwargs)
        self.nofile = nofile
        self.argv.remove("--no-watch")  # the watcher polls the policy throughout

    def start(self) -> None:
        nofile = self.nofile

        def lower() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=err, env=self.process_env(), preexec_fn=lower
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def peak_rss_mb(self) -> float:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        return kb / 1024

    def open_fds(self) -> int:
        assert self.proc is not None
        return len(list(Path(f"/proc/{self.proc.pid}/fd").iterdir()))


class Attack:
    """Connections that hold the server's descriptors: `idle` send nothing, `slow_head` send a
    request head a byte at a time, `slow_body` a head then its body a byte at a time. A
    connection the server closes is opened again at once, for as long as the attack runs."""

    DRIP_S = 0.1

    def __init__(self, port: int, *, idle: int = 0, slow_head: int = 0, slow_body: int = 0) -> None:
        self.port = port
        self.plan = ["idle"] * idle + ["head"] * slow_head + ["body"] * slow_body
        self.opened = 0
        self.closed_by_server = 0
        self.peak_held = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Attack:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, kind: str) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        except OSError:
            return None
        sock.setblocking(False)
        self.opened += 1
        if kind == "body":
            head = f"POST {WEBHOOK} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            with contextlib.suppress(OSError):
                sock.send((head + "content-length: 100000\r\n\r\n").encode())
        return sock

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        socks: dict[socket.socket, str] = {}
        drip = f"POST {WEBHOOK} HTTP/1.1\r\nx-pad: " + "a" * 10_000
        sent: dict[socket.socket, int] = {}
        next_drip = time.monotonic()
        while not self._stop.is_set():
            have = Counter(socks.values())
            for kind in [k for k, n in Counter(self.plan).items() for _ in range(n - have[k])]:
                sock = self._open(kind)
                if sock is None:
                    break
                socks[sock] = kind
                sent[sock] = 0
                selector.register(sock, selectors.EVENT_READ)
            self.peak_held = max(self.peak_held, len(socks))
            for key, _ in selector.select(timeout=0.02):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.closed_by_server += 1
                    selector.unregister(sock)
                    sock.close()
                    del socks[sock], sent[sock]
            if time.monotonic() >= next_drip:
                next_drip += self.DRIP_S
                for sock, kind in socks.items():
                    if kind == "idle":
                        continue
                    byte = drip[sent[sock] % len(drip)] if kind == "head" else "x"
                    with contextlib.suppress(OSError):
                        sock.send(byte.encode())
                        sent[sock] += 1
        for sock in socks:
            sock.close()
        selector.close()


def timed_call(
    base_url: str, body: bytes, headers: dict[str, str], timeout_s: float = 5.0
) -> tuple[int, float]:
    """One webhook POST on a fresh connection (as Vapi sends them), with a raw socket (no client
    library's set-up in the time): (status, or 0 when none came; seconds)."""
    port = int(base_url.rsplit(":", 1)[1])
    head = f"POST {WEBHOOK} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "content-length")
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(head.encode() + b"\r\n" + body)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return 0, time.perf_counter() - start
                data += chunk
            top, _, rest = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in top.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    return 0, time.perf_counter() - start
                rest += chunk
            return int(top.split(b" ")[1]), time.perf_counter() - start
    except OSError:
        return 0, time.perf_counter() - start


def calls(
    server: Subprocess, n: int, *, pause_s: float = 0.05, message: Callable[[int], Any] | None = None
) -> list[tuple[int, float]]:
    out = []
    for i in range(n):
        body = dumps(message(i) if message else call_message(call_id=f"hostile-{i}"))
        out.append(timed_call(server.base_url, body, server.auth(body)))
        time.sleep(pause_s)
    return out


def gzip_bomb(inflated_mb: int) -> bytes:
    """`inflated_mb` MiB of spaces inside a JSON string, gzipped (about 1,000 to 1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    out = [packer.compress(b'{"contact": {"tags": ["vip"], "pad": "')]
    block = b" " * (1 << 20)
    out += [packer.compress(block) for _ in range(inflated_mb)]
    out.append(packer.compress(b'"}}') + packer.flush())
    return b"".join(out)


class LocalHttpServer:
    """A ThreadingHTTPServer on a free loopback port, served from a daemon thread while in
    `with`; `stopped` tells a handler still writing that the test is over."""

    stopped = False

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.stopped = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class HostileCrm(LocalHttpServer):
    """`with HostileCrm() as crm:` a CRM whose answers attack the client: `endless` streams a
    JSON body that never ends, `bomb` sends `bomb` (a gzip bomb), `ok` a small VIP record."""

    def __init__(self, bomb: bytes = b"") -> None:
        self.mode = "ok"
        self.bomb = bomb
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle(self) -> None:
                with contextlib.suppress(OSError):
                    super().handle()

            def do_GET(self) -> None:
                owner.requests += 1
                mode = owner.mode
                self.send_response(200)
                self.send_header("content-type", "application/json")
                if mode == "endless":
                    self.send_header("connection", "close")
                    self.end_headers()
                    chunk = b'"x", ' * 13_000
                    with contextlib.suppress(OSError):
                        self.wfile.write(b'{"contact": {"tags": [')
                        while not owner.stopped:
                            self.wfile.write(chunk)
                    self.close_connection = True
                    return
                body = b'{"contact": {"tags": ["vip"]}}' if mode == "ok" else owner.bomb
                if mode == "bomb":
                    self.send_header("content-encoding", "gzip")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

        self._listen(Handler)
        self.url_template = f"http://127.0.0.1:{self.port}/contacts?phone=${{caller}}"


def post_bytes(body: bytes, headers: dict[str, str]) -> bytes:
    """One webhook POST as raw HTTP/1.1 bytes (keep-alive)."""
    head = f"POST {WEBHOOK} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "content-length")
    return head.encode() + b"\r\n" + body


def read_responses(sock: socket.socket, n: int) -> list[tuple[int, bytes, float]]:
    """The next `n` responses on `sock` (content-length framed): (status, body, perf_counter at its end)."""
    out: list[tuple[int, bytes, float]] = []
    data = b""
    while len(out) < n:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(out)} responses"
            data += chunk
        top, _, data = data.partition(b"\r\n\r\n")
        lines = top.split(b"\r\n")
        length = next(int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length"))
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, f"closed inside response {len(out) + 1}"
            data += chunk
        out.append((int(lines[0].split(b" ")[1]), data[:length], time.perf_counter()))
        data = data[length:]
    return out
