"""Section "reload": hot reload of a 10,000-route set on a running `vapi-router serve`, under load.

A `vapi-router serve` subprocess (one worker, uvloop + httptools, as in production) serves a
generated 10,000-route policy (its CRM an embedded file, so every call is answered locally)
while a client on loopback keeps `CONNECTIONS` keep-alive connections busy the whole time:
first paced at `RATE` requests a second (latency counted from when a request was due, so a
stall shows in full), then closed-loop (as fast as the server answers). Each phase runs
without reloads first (the baseline, same run), then `POST /-/reload` is timed `RELOADS`
times, each after the file was replaced by another 10,000-route version. Requests whose life
overlaps a reload are "during the reloads". The targets (DESIGN §7) are judged on the paced
phase. Also: start-up time to ready, the server's resident memory, the reload child's peak.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import orjson

from bench import Row, clean_env, log, percentile, stop_process
from bench.gen import Call, GeneratedPolicy, generate_calls, generate_policy, message_of
from router.runtime.phone import normalise

SIZE = 10_000
CALLS = 2_000
CONNECTIONS = 8
RELOADS = 3
RATE = 1000  # requests a second in all: far above any call centre's call rate, below saturation
BASELINE_S = 3.0
WARMUP_S = 0.5
SETTLE_S = 0.5  # load between reloads, so that one reload's aftermath is not the next one's
RELOAD_TARGET_S = 1.0
P99_TARGET_MS = 50.0
SECRET = "bench-webhook-secret"
ADMIN = "bench-admin-token"
BIN = Path(sys.executable).parent


# ---------------------------------------------------------------- a loopback load client


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: perf_counter() at send and at the last byte of the reply; status 0 = failed."""

    start: float
    end: float
    status: int
    body: bytes


class Load:
    """An HTTP/1.1 load client: `connections` connections, each sending the next request as soon
    as the previous reply is in (closed loop), or with `rate`, at `rate` requests a second in
    all on a fixed schedule. Then a request's latency counts from when it was due, so a stall
    shows in full even for the requests it delayed (no coordinated omission). It runs its own
    event loop in a thread and keeps every sample. With `fresh`, each request opens a new
    connection (and closes it).

    A transport error or a non-200 reply counts as a failure; the connection is then reopened."""

    def __init__(
        self,
        port: int,
        path: str,
        bodies: Sequence[bytes],
        *,
        headers: dict[str, str] | None = None,
        connections: int = CONNECTIONS,
        rate: float | None = None,
        fresh: bool = False,
    ) -> None:
        self.port = port
        self.rate = rate
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        close = "connection: close\r\n" if fresh else ""
        self.requests = [
            (
                f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(b)}\r\n{extra}{close}\r\n"
            ).encode()
            + b
            for b in bodies
        ]
        self.connections = connections
        self.fresh = fresh
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = False
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the load client did not start")

    def stop(self) -> list[Sample]:
        self._stop = True
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        return self.samples

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.status != 200]

    def between(self, t0: float, t1: float) -> list[Sample]:
        """The samples whose life overlaps [t0, t1] (perf_counter seconds)."""
        return [s for s in self.samples if s.end >= t0 and s.start <= t1]

    def _run(self) -> None:
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover
            loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        workers = [asyncio.create_task(self._worker(i)) for i in range(self.connections)]
        self._started.set()
        await asyncio.gather(*workers)

    async def _worker(self, index: int) -> None:
        clock = time.perf_counter
        n = len(self.requests)
        i = index * 7919  # spread the connections over the bodies
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        interval = self.connections / self.rate if self.rate else 0.0
        due = clock() + interval * index / self.connections
        while not self._stop:
            request = self.requests[i % n]
            i += 1
            if interval:
                if (wait := due - clock()) > 0:
                    await asyncio.sleep(wait)
                start, due = due, due + interval
            else:
                start = clock()
            try:
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = conn
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status, length, closing = _head(head)
                body = await reader.readexactly(length)
                self.samples.append(Sample(start, clock(), status, body))
                if closing or self.fresh:
                    writer.close()
                    conn = None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                self.samples.append(Sample(start, clock(), 0, b""))
                self.errors.append(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.01)
        if conn is not None:
            conn[1].close()


def _head(head: bytes) -> tuple[int, int, bool]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, closing = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            closing = True
    return status, length, closing


# ---------------------------------------------------------------- the server under test


class Served:
    """`vapi-router serve POLICY` as a subprocess on a free port (webhook secret + admin token)."""

    def __init__(self, policy: Path, *args: str, log_dir: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.argv = [str(BIN / "vapi-router"), "serve", str(policy), "--port", str(self.port), *args]
        self.log_dir = log_dir
        self.env = clean_env({"VAPI_SERVER_SECRET": SECRET, "ROUTER_ADMIN_TOKEN": ADMIN})
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0

    def start(self, timeout_s: float = 60.0) -> None:
        with (self.log_dir / "stderr.txt").open("wb") as err:
            started = time.perf_counter()
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=err, env=self.env)
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"vapi-router serve exited: {self.stderr()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - started > timeout_s:
                    raise RuntimeError("vapi-router serve not ready in time")
                time.sleep(0.01)
        self.ready_s = time.perf_counter() - started

    def stop(self) -> None:
        stop_process(self.proc, 15)

    def stderr(self) -> str:
        return (self.log_dir / "stderr.txt").read_text(encoding="utf-8", errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def status_kib(pid: int, field: str) -> int:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM) in KiB; 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                out.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


class ChildPeak:
    """Polls the server's child processes (the reload check runs in a forked child) and keeps
    the largest peak RSS seen (VmHWM: shared copy-on-write pages included)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self.seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="child-rss", daemon=True)

    def __enter__(self) -> ChildPeak:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)

    def _poll(self) -> None:
        known: set[int] = set()
        while not self._stop.wait(0.005):
            for child in children_of(self.pid):
                known.add(child)
                self.peak_kib = max(self.peak_kib, status_kib(child, "VmHWM"))
            self.seen = len(known)


# ---------------------------------------------------------------- the section


def bench_policy(gen: GeneratedPolicy, calls: Sequence[Call], k: int) -> tuple[str, str]:
    """Version `k` of the served set: `gen` with an embedded CRM file of the callers of `calls`
    in place of its unreachable HTTP CRM (every call is answered locally, lookups included)
    and assistant ids of its own (another version, other replies, routes in the same order).
    The policy text and the CSV text."""
    text = re.sub(r"^crm:\n(?:  .*\n)+", "crm:\n  file: crm.csv\n", gen.text, count=1, flags=re.M)
    rows = ["number,tags,tier,name"]
    seen: set[str] = set()
    for call in calls:
        number = normalise(call.caller) if call.caller and call.crm_status == "ok" else None
        if number is not None and number not in seen:
            seen.add(number)
            rows.append(f"{number},{';'.join(call.tags)},{dict(call.crm).get('tier', '')},Dana")
    return text.replace("-4000-8000-", f"-4000-8{k:03d}-"), "\n".join(rows) + "\n"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _latency(samples: Sequence[Sample]) -> tuple[float, float, float]:
    ms = sorted((s.end - s.start) for s in samples)
    if not ms:
        return (0.0, 0.0, 0.0)
    return statistics.median(ms), percentile(ms, 99), ms[-1]


def run(size: int = SIZE, reloads: int = RELOADS) -> list[Row]:
    case = f"{size:,} routes"
    directory = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    try:
        log(f"  {case}: generating the policy")
        gen = generate_policy(size)
        calls = generate_calls(gen, CALLS, seed=7)
        bodies = [orjson.dumps(message_of(c)) for c in calls]
        versions = [bench_policy(gen, calls, k) for k in range(2 * reloads + 1)]
        texts = [text for text, _ in versions]
        (directory / "crm.csv").write_text(versions[0][1], encoding="utf-8")
        policy = directory / "policy.yaml"
        policy.write_text(texts[0], encoding="utf-8")
        server = Served(
            policy, "--no-watch", "--decision-log", str(directory / "decisions.jsonl"), log_dir=directory
        )
        log(f"  {case}: starting vapi-router serve")
        server.start()
        try:
            rss_ready = status_kib(server.pid, "VmRSS")
            with ChildPeak(server.pid) as child:
                paced = _phase(server, policy, texts[1 : reloads + 1], bodies, RATE, f"{case}, {RATE} req/s")
                closed = _phase(server, policy, texts[reloads + 1 :], bodies, None, f"{case}, closed loop")
            rss_peak = status_kib(server.pid, "VmHWM")
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    median_reload = statistics.median(paced.reload_s)
    rows = [
        Row("reload", case, "start-up to ready (serve → /readyz 200)", f"{server.ready_s:.2f} s"),
        Row(
            "reload",
            case,
            f"POST /-/reload under {RATE} req/s: median of {len(paced.reload_s)} (all)",
            f"{_ms(median_reload)} ({', '.join(f'{s * 1000:.0f}' for s in paced.reload_s)} ms)",
            f"≤ {RELOAD_TARGET_S:g} s",
            median_reload <= RELOAD_TARGET_S,
        ),
    ]
    for phase, label in ((paced, f"{RATE} req/s"), (closed, "closed loop")):
        rows += phase.rows(case, label, target=phase is paced)
    rows += [
        Row(
            "reload",
            case,
            "server RSS: ready / peak",
            f"{rss_ready / 1024:.0f} / {rss_peak / 1024:.0f} MiB",
        ),
        Row(
            "reload",
            case,
            "reload child: peak RSS (shared pages included)",
            f"{child.peak_kib / 1024:.0f} MiB ({child.seen} children seen)",
        ),
    ]
    return rows


@dataclass
class Phase:
    """One load pattern: its baseline, its reloads and the requests that overlapped them."""

    reload_s: list[float]
    baseline: list[Sample]
    during: list[Sample]
    total: int
    failed: int

    def rows(self, case: str, label: str, *, target: bool) -> list[Row]:
        b50, b99, bmax = _latency(self.baseline)
        d50, d99, dmax = _latency(self.during)
        rate = len(self.baseline) / BASELINE_S
        rows = [
            Row(
                "reload",
                case,
                f"{label}, {CONNECTIONS} connections: requests / failed",
                f"{self.total} / {self.failed}",
                "0 failed",
                self.failed == 0,
            ),
            Row(
                "reload",
                case,
                f"{label}, no reload: req/s; p50 / p99 / max",
                f"{rate:.0f}; {_ms(b50)} / {_ms(b99)} / {_ms(bmax)}",
            ),
            Row(
                "reload",
                case,
                f"{label}, during the reloads: requests; p50 / p99 / max",
                f"{len(self.during)}; {_ms(d50)} / {_ms(d99)} / {_ms(dmax)}",
                f"p99 ≤ {P99_TARGET_MS:g} ms" if target else "",
                (bool(self.during) and d99 * 1000 <= P99_TARGET_MS) if target else None,
            ),
        ]
        if not target:
            rows.append(
                Row(
                    "reload",
                    case,
                    f"{label}: reload times",
                    ", ".join(f"{s * 1000:.0f}" for s in self.reload_s) + " ms",
                )
            )
        return rows


def _phase(
    server: Served, policy: Path, texts: list[str], bodies: list[bytes], rate: float | None, what: str
) -> Phase:
    reload_s: list[float] = []
    during: list[Sample] = []
    admin = {"authorization": f"Bearer {ADMIN}"}
    with (
        Load(server.port, "/webhook/vapi", bodies, headers={"x-vapi-secret": SECRET}, rate=rate) as load,
        httpx.Client(base_url=server.base_url, timeout=30.0) as client,
    ):
        log(f"  {what}: warm-up and {BASELINE_S:g} s without reloads")
        time.sleep(WARMUP_S)
        baseline_from = time.perf_counter()
        time.sleep(BASELINE_S)
        baseline_until = time.perf_counter()
        for k, text in enumerate(texts, start=1):
            time.sleep(SETTLE_S)
            policy.write_text(text, encoding="utf-8")
            t0 = time.perf_counter()
            response = client.post("/-/reload", headers=admin)
            t1 = time.perf_counter()
            assert response.status_code == 200 and response.json()["changed"], response.text
            reload_s.append(t1 - t0)
            window = load.between(t0, t1)
            during.extend(window)
            log(f"  {what}: reload {k}: {_ms(t1 - t0)}, {len(window)} requests answered meanwhile")
        time.sleep(SETTLE_S)
    baseline = [s for s in load.samples if s.start >= baseline_from and s.end <= baseline_until]
    return Phase(reload_s, baseline, during, len(load.samples), len(load.failures))
