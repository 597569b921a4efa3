"""Section "http": assistant-request throughput and latency on loopback, beside a bare Starlette app.

Servers run as subprocesses, as in production: `vapi-router serve` (uvloop + httptools,
access log off, decision log to a file, metrics on, a webhook secret), once on the bundled
policies/ and once on a generated 1,000-route policy, and `uvicorn bench.bareapp:app` with
the same settings (reads the body, returns a constant reply). The load generator
(bench.loadgen, its own process) keeps 1 or 32 keep-alive connections busy with realistic
~1.5 KB Vapi bodies; each run is preceded by a short warm-up. Runs alternate (bare, router,
router, bare, router, router, …) and the table gives medians over the rounds and the median
of each round's router/bare ratio, so drift on this shared machine hits both alike. Server
CPU per request (from /proc, the whole process tree) is the figure least moved by neighbours.
"""

from __future__ import annotations

import csv
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from bench import Row, clean_env, log, stop_process
from bench.gen import START, Call, generate_calls, generate_policy, message_of
from bench.loadgen import FRESH_MARK
from router.runtime.phone import normalise

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SECRET = "bench-webhook-secret"
HEADERS = (("x-vapi-secret", SECRET),)
CONNECTIONS = (1, 32)
WORKERS = (1, 2)
ROUNDS = 3
DURATION_S = 2.0
WARMUP_S = 0.3  # inside every run: connections open and the first replies are not counted
CALLS = 2_000
RATIO_TARGET = 0.90
NEW_CALLER_TARGET = 1.0  # every call from a new caller (DESIGN §15)
P99_TARGET_MS = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
UVICORN_FLAGS = ("--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning")


# ---------------------------------------------------------------- request bodies


# What a real assistant-request carries beside the fields the router reads (shape of
# ../shared/vapi/payloads/assistant-request.pstn.json): the body size the server must parse.
_CALL_EXTRA: dict[str, Any] = {
    "orgId": "a3f9c1d2-44b6-4e0a-8f7e-2b9d61c5e003",
    "createdAt": "2026-01-01T18:00:05.190Z",
    "updatedAt": "2026-01-01T18:00:05.190Z",
    "phoneCallProvider": "twilio",
    "phoneCallProviderId": "CA4e2b7d90c1f84a3b9e6d5c2a1f0e9d8c",
    "phoneCallTransport": "pstn",
    "assistantId": None,
    "squadId": None,
    "workflowId": None,
}
_NUMBER_EXTRA: dict[str, Any] = {
    "orgId": "a3f9c1d2-44b6-4e0a-8f7e-2b9d61c5e003",
    "provider": "twilio",
    "name": "Acme Main Line",
    "status": "active",
    "assistantId": None,
    "squadId": None,
    "workflowId": None,
    "server": {"url": "https://router.example.com/vapi/assistant-request", "timeoutSeconds": 20},
    "fallbackDestination": {"type": "number", "number": "+16505550100", "message": ""},
    "hooks": None,
    "twilioAccountSid": "AC…redacted…",
    "createdAt": "2025-11-03T09:12:44.002Z",
    "updatedAt": "2025-12-20T16:40:10.517Z",
}


def vapi_body(call: Call) -> bytes:
    """A full-size Vapi assistant-request body for a call (about 1.5 KB)."""
    data = message_of(call)
    message = data["message"]
    message["call"] = {**message["call"], **_CALL_EXTRA}
    message["phoneNumber"] = {**message["phoneNumber"], **_NUMBER_EXTRA}
    message["artifact"] = {"messages": [], "messagesOpenAIFormatted": []}
    return orjson.dumps(data)


def bundled_calls(count: int, *, seed: int = 3) -> list[Call]:
    """Calls for policies/main.yaml: its CRM's contacts, blocked and unknown callers, anonymous
    and national-format ids, the main, Spanish and other 1650555 lines, over two weeks."""
    rng = random.Random(seed)
    known = ("+14155550142", "+14155550143", "+525512345678", "+15550000001", "+19005550123")
    calls = []
    for i in range(count):
        roll = rng.random()
        caller: str | None
        if roll < 0.3:
            caller = rng.choice(known)
        elif roll < 0.35:
            caller = None
        elif roll < 0.4:
            caller = f"({rng.randrange(201, 990)}) 555-{rng.randrange(10_000):04d}"
        else:
            caller = f"+1{rng.randrange(201, 990)}555{rng.randrange(10_000):04d}"
        line = rng.random()
        dialled = "+16505550117" if line < 0.6 else "+16505550199" if line < 0.8 else "+16505550150"
        calls.append(
            Call(
                call_id=f"bench-{seed}-{i:06d}",
                caller=caller,
                dialled=dialled,
                at=START + timedelta(seconds=rng.randrange(14 * 86_400)),
                phone_number_id="7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e",
                tags=(),
                crm=(),
                crm_status=None,
                variables=(),
            )
        )
    return calls


def fresh_call(call: Call) -> Call:
    """The call with its caller's last six digits left for the loadgen to fill from its counter
    (--fresh-callers): a caller the server has never seen, on every request, in a call of its
    own (the call id takes the same digits, as every real call has its own id: the server
    remembers each decision by call id until the call ends). A caller-prefix route longer
    than the digits kept is missed more often than with `call`."""
    mark = FRESH_MARK.decode()
    call = replace(call, call_id=f"{call.call_id}-{mark}")
    if call.caller is None or len(call.caller) < 9:
        return call
    return replace(call, caller=call.caller[:-6] + mark)


def write_bodies(path: Path, calls: Sequence[Call]) -> Path:
    path.write_bytes(b"".join(vapi_body(c) + b"\n" for c in calls))
    return path


def generated_policy_dir(directory: Path, routes: int, calls: int = CALLS) -> tuple[Path, list[Call]]:
    """A generated policy whose CRM is a file (the generated one points at an unreachable host),
    holding the tagged callers of the generated calls; the calls, with their CRM status unset."""
    gen = generate_policy(routes)
    head, rest = gen.text.split("crm:\n", 1)
    rest = rest[rest.index("schedules:\n") :]
    text = head + "crm:\n  file: crm.csv\n  timeout_ms: 800\n" + rest
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policy.yaml").write_text(text, encoding="utf-8")
    made = generate_calls(gen, calls)
    with (directory / "crm.csv").open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["number", "tags", "tier", "name"])
        seen: set[str] = set()
        for c in made:
            # only numbers the router's normaliser keeps (the generator also makes impossible ones)
            if c.caller and c.crm_status == "ok" and c.caller not in seen and normalise(c.caller) == c.caller:
                seen.add(c.caller)
                fields = dict(c.crm)
                out.writerow([c.caller, ";".join(c.tags), fields.get("tier", ""), fields.get("name", "")])
    return directory, [replace(c, tags=(), crm=(), crm_status=None) for c in made]


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (uvicorn's workers), from /proc."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return pids


def cpu_seconds(pids: Sequence[int]) -> float:
    """user + system CPU of the processes (and their reaped children's share is not included)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / CLK_TCK


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Served:
    """A server subprocess on a free port; `ready_s` is Popen → first 200 from `ready_path`
    (or, when it is "", the first accepted connection)."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str]
    directory: Path
    ready_path: str = "/readyz"
    proc: subprocess.Popen[bytes] | None = None
    ready_s: float = 0.0
    pids: list[int] = field(default_factory=list)

    def start(self, timeout_s: float = 60.0) -> None:
        out = (self.directory / f"{self.name}.out").open("wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                if not self.ready_path:  # a server that never answers: accepting is ready
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"{self.name} not ready after {timeout_s} s: {self.output()[-2000:]}")
            time.sleep(0.01)
        self.ready_s = time.perf_counter() - started
        self.pids = process_tree(self.proc.pid)

    def output(self) -> str:
        return (self.directory / f"{self.name}.out").read_text(encoding="utf-8", errors="replace")

    def cpu(self) -> float:
        if self.proc is None:
            return 0.0
        self.pids = process_tree(self.proc.pid)
        return cpu_seconds(self.pids)

    def stop(self) -> None:
        stop_process(self.proc, 15)


@contextmanager
def serving(server: Served) -> Iterator[Served]:
    try:
        server.start()
        yield server
    finally:  # also when it never became ready
        server.stop()


def router_server(
    name: str, policy: Path, directory: Path, *, workers: int = 1, extra: Sequence[str] = ()
) -> Served:
    port = free_port()
    argv = [str(BIN / "vapi-router"), "serve", str(policy), "--port", str(port)]
    argv += ["--workers", str(workers), "--decision-log", str(directory / f"{name}.decisions.jsonl"), *extra]
    return Served(name, argv, port, clean_env({"VAPI_SERVER_SECRET": SECRET}), directory)


def bare_server(name: str, directory: Path, *, workers: int = 1) -> Served:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.bareapp:app", "--port", str(port)]
    argv += ["--workers", str(workers), *UVICORN_FLAGS]
    return Served(name, argv, port, clean_env({}), directory)


def raw_server(name: str, directory: Path) -> Served:
    port = free_port()
    argv = [sys.executable, "-m", "bench.bareapp", "raw", str(port)]
    return Served(name, argv, port, clean_env({}), directory, ready_path="/")


def load(
    server: Served,
    bodies: Path,
    *,
    connections: int,
    duration: float = DURATION_S,
    warmup: float = WARMUP_S,
    keep_bodies: int = 0,
    grace: float = 10.0,
    fresh_callers: int | None = None,
) -> dict[str, Any]:
    """One loadgen run against a server; its summary plus the server's CPU µs per request."""
    argv = [sys.executable, "-m", "bench.loadgen", "--port", str(server.port), "--bodies", str(bodies)]
    argv += ["-c", str(connections), "-d", str(duration), "-w", str(warmup), "--grace", str(grace)]
    argv += ["--keep-bodies", str(keep_bodies)]
    if fresh_callers is not None:
        argv += ["--fresh-callers", str(fresh_callers)]
    for k, v in HEADERS:
        argv += ["-H", f"{k}: {v}"]
    before = server.cpu()
    done = subprocess.run(argv, capture_output=True, check=False, cwd=ROOT, timeout=duration + grace + 60)
    after = server.cpu()
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed: {done.stderr.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["server_cpu_us_per_request"] = (after - before) * 1e6 / max(1, result["sent"])
    return result


# ---------------------------------------------------------------- the section


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def _median(runs: Sequence[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


@dataclass
class _Subject:
    """One server under test and every run it got."""

    label: str
    server: Served
    bodies: Path
    runs: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)
    fresh: int | None = None  # new callers: where the loadgen's caller counter goes on from

    def load(self, *, connections: int, duration: float = DURATION_S) -> dict[str, Any]:
        r = load(
            self.server, self.bodies, connections=connections, duration=duration, fresh_callers=self.fresh
        )
        if self.fresh is not None:
            self.fresh = r["fresh_next"]
        return r


def _alternate(subjects: Sequence[_Subject], workers: int, connections: int, rounds: int) -> None:
    for s in subjects:  # warm-up: imports, caches, the first CRM lookups, both workers
        s.load(connections=connections, duration=1.0)
    for i in range(rounds):
        order = subjects if i % 2 == 0 else [subjects[0], *reversed(subjects[1:])]
        for s in order:
            r = s.load(connections=connections)
            s.runs.setdefault((workers, connections), []).append(r)
            log(
                f"    {s.label:<24} {workers}w {connections:>2}c: {r['rps']:>7,.0f} req/s  "
                f"p50 {_ms(r['p50_us'])} p99 {_ms(r['p99_us'])} ms  "
                f"cpu {r['server_cpu_us_per_request']:.0f} µs/req"
            )


def _rows(bare: _Subject, router: _Subject, workers: int, connections: int) -> list[Row]:
    key = (workers, connections)
    b_runs, r_runs = bare.runs[key], router.runs[key]
    ratios = [r["rps"] / b["rps"] for b, r in zip(b_runs, r_runs, strict=True)]
    cpu_ratios = [
        r["server_cpu_us_per_request"] / b["server_cpu_us_per_request"]
        for b, r in zip(b_runs, r_runs, strict=True)
        if b["server_cpu_us_per_request"] > 0
    ]
    ratio = statistics.median(ratios)
    target = NEW_CALLER_TARGET if router.fresh is not None else RATIO_TARGET
    case = f"{router.label}, {workers} worker{'s' * (workers > 1)}, {connections} conn"
    p99 = _median(r_runs, "p99_us")
    statuses: dict[str, int] = {}
    errors = 0
    for r in r_runs:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
        errors += sum(r["errors"].values())
    ok = set(statuses) == {"200"} and errors == 0
    return [
        Row(
            "http",
            case,
            "req/s: router / bare (median of paired ratios)",
            f"{_median(r_runs, 'rps'):,.0f} / {_median(b_runs, 'rps'):,.0f} (×{ratio:.2f})",
            f"≥ ×{target:.2f}",
            ratio >= target,
        ),
        Row(
            "http",
            case,
            "latency ms p50 / p99: router (bare)",
            f"{_ms(_median(r_runs, 'p50_us'))} / {_ms(p99)} "
            f"({_ms(_median(b_runs, 'p50_us'))} / {_ms(_median(b_runs, 'p99_us'))})",
            f"p99 ≤ {P99_TARGET_MS:g}" if connections == 32 else "",
            p99 <= P99_TARGET_MS * 1000 if connections == 32 else None,
        ),
        Row(
            "http",
            case,
            "server CPU µs/request: router / bare (ratio)",
            f"{_median(r_runs, 'server_cpu_us_per_request'):.0f} / "
            f"{_median(b_runs, 'server_cpu_us_per_request'):.0f} (×{statistics.median(cpu_ratios):.2f})"
            if cpu_ratios
            else "n/a",
        ),
        Row(
            "http",
            case,
            "router replies: 200 / answered (errors)",
            f"{statuses.get('200', 0):,} / {sum(statuses.values()):,} ({errors})",
            "all 200",
            ok,
        ),
    ]


def _ceiling(directory: Path, bodies: Path) -> list[Row]:
    """The load generator against a server that does nearly nothing: what it can drive at most."""
    with serving(raw_server("raw", directory)) as raw:
        load(raw, bodies, connections=32, duration=1.0)
        runs = [load(raw, bodies, connections=32) for _ in range(2)]
    rps = _median(runs, "rps")
    cpu = _median(runs, "loadgen_cpu_us_per_request")
    log(f"    loadgen vs raw uvloop server: {rps:,.0f} req/s, loadgen {cpu:.1f} µs CPU/req")
    return [
        Row(
            "http",
            "load generator ceiling (raw uvloop server, 32 conn)",
            "req/s; load generator CPU µs/request",
            f"{rps:,.0f}; {cpu:.1f}",
        )
    ]


def run(
    workers: Sequence[int] = WORKERS, connections: Sequence[int] = CONNECTIONS, rounds: int = ROUNDS
) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        directory = Path(tmp)
        bundled_bodies = write_bodies(directory / "bundled.jsonl", bundled_calls(CALLS))
        gen_dir, gen_calls = generated_policy_dir(directory / "gen1000", 1_000)
        gen_bodies = write_bodies(directory / "gen1000.jsonl", gen_calls)
        fresh_bodies = write_bodies(directory / "fresh1000.jsonl", [fresh_call(c) for c in gen_calls])
        size = statistics.mean(len(b) for b in bundled_bodies.read_bytes().splitlines())
        log(f"  bodies: {CALLS} calls per policy, {size:.0f} bytes on average")
        rows += _ceiling(directory, bundled_bodies)
        for n in workers:
            with ExitStack() as stack:
                bare = _Subject(
                    "bare Starlette",
                    stack.enter_context(serving(bare_server(f"bare{n}", directory, workers=n))),
                    bundled_bodies,
                )
                subjects = [
                    bare,
                    _Subject(
                        "policies/ (bundled)",
                        stack.enter_context(
                            serving(router_server(f"bundled{n}", ROOT / "policies", directory, workers=n))
                        ),
                        bundled_bodies,
                    ),
                    _Subject(
                        "1,000 generated routes",
                        stack.enter_context(serving(router_server(f"gen{n}", gen_dir, directory, workers=n))),
                        gen_bodies,
                    ),
                    _Subject(
                        "1,000 routes, every caller new",
                        stack.enter_context(
                            serving(router_server(f"fresh{n}", gen_dir, directory, workers=n))
                        ),
                        fresh_bodies,
                        fresh=0,
                    ),
                ]
                footprint = [(s.label, s.server.ready_s, _rss_mib(s.server)) for s in subjects]
                for c in connections:
                    log(f"  {n} worker(s), {c} connection(s)")
                    _alternate(subjects, n, c, rounds)
                    for s in subjects[1:]:
                        rows += _rows(bare, s, n, c)
                rows.append(
                    Row(
                        "http",
                        f"{n} worker{'s' * (n > 1)}, idle after start",
                        "start-up to ready s / RSS MiB (all processes): "
                        + ", ".join(f[0] for f in footprint),
                        ", ".join(f"{ready:.2f} s / {rss:.0f}" for _, ready, rss in footprint),
                    )
                )
    return rows


def _rss_mib(server: Served) -> float:
    return sum(rss_kib(p) for p in process_tree(server.proc.pid)) / 1024 if server.proc else 0.0
