"""Section "forward": settings.forward (DESIGN §9), notifications queued and answered types proxied.

The upstream is bench.upstream, its own process on 127.0.0.1: it answers every POST at once
("fast") or after SLOW_MS ("slow"), and counts what it received. In process (this process,
on uvloop, as the server runs): the webhook's cost of one `Forwarder.notify` call; how many
notifications one Forwarder delivers per second to the fast upstream (its queue drained by
one task, one request at a time); with the slow upstream, how the default queue fills and
drops (counted) while notify's cost stays flat; `proxy()` latency for `tool-calls`. Then
through the real server: `vapi-router serve` (one worker) answering status-update and
end-of-call-report messages from bench.loadgen at 32 connections, without settings.forward
and with it (fast and slow upstream), alternating; router_forward_total read from /metrics
and checked against the requests sent and what the upstream received.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from bench import Row, clean_env, log, percentile
from bench.http import Served, _Subject, free_port, router_server, serving
from router.server.forward import DEFAULT_QUEUE, Forwarder, ForwardSettings

T = TypeVar("T")
SLOW_MS = 50
NOTIFY_BURST = 5_000  # notifications queued at once to the fast upstream
SLOW_SENT = 5_000  # notifications offered to the slow upstream, paced
SLOW_PACE_S = 0.004  # a pause after every 10 of them: about 2,500 a second
PROXIED = 2_000  # tool-calls proxied one at a time
PROXY_TASKS, PROXY_EACH = 32, 100  # then 32 at once
BOUND_S = 20.0  # any wait for deliveries gives up after this
ROUNDS = 3
CONNECTIONS = 32
CALLS = 2_000  # call ids in the server bodies, three messages each
RESULTS = ("ok", "error", "timeout", "dropped")

TOOL_CALLS = {
    "message": {
        "type": "tool-calls",
        "call": {"id": "bench-forward-tools"},
        "toolCallList": [
            {"id": "t-1", "type": "function", "function": {"name": "lookup", "arguments": {"order": "A-1"}}}
        ],
    }
}

POLICY = """\
version: 1
settings:
  fallback: front-desk
FORWARD
targets:
  front-desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
routes: []
default: front-desk
"""


def _policy(url: str | None) -> str:
    forward = f'  forward: {{url: "{url}", timeout_ms: 3000}}' if url else ""
    return POLICY.replace("FORWARD\n", forward + "\n" if forward else "")


_REPORT: dict[str, Any] = {  # what an end-of-call-report carries beside the call (payloads/)
    "startedAt": "2026-01-01T18:00:07.001Z",
    "endedAt": "2026-01-01T18:04:19.388Z",
    "cost": 0.2114,
    "phoneNumber": {"id": "7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e", "number": "+16505550117"},
    "artifact": {"transcript": "AI: Thanks for calling Acme...\nUser: I need to move my delivery..."},
    "analysis": {"summary": "Caller rescheduled a delivery to Friday."},
}


def notification_bodies(count: int) -> list[bytes]:
    """Per call: status-update in-progress, status-update ended, end-of-call-report (the shapes
    of ../shared/vapi/payloads), each call id new."""
    out = []
    ended_reason = "customer-ended-call"
    for i in range(count):
        call = {
            "id": f"fwd-{i:06d}",
            "orgId": "a3f9c1d2-44b6-4e0a-8f7e-2b9d61c5e003",
            "type": "inboundPhoneCall",
        }
        ended = {**call, "status": "ended", "endedReason": ended_reason}
        at = 1767290407002 + i * 1000
        messages: list[dict[str, Any]] = [
            {"type": "status-update", "status": "in-progress", "call": {**call, "status": "in-progress"}},
            {"type": "status-update", "status": "ended", "endedReason": ended_reason, "call": ended},
            {"type": "end-of-call-report", "endedReason": ended_reason, "call": ended, **_REPORT},
        ]
        for n, message in enumerate(messages):
            out.append(orjson.dumps({"message": {**message, "timestamp": at + n * 125_000}}))
    return out


def upstream(name: str, directory: Path, delay_ms: float) -> Served:
    port = free_port()
    argv = [sys.executable, "-m", "bench.upstream", str(port), str(delay_ms)]
    return Served(name, argv, port, clean_env({}), directory, ready_path="/count")


def posts(server: Served) -> int:
    """What the upstream has received (its GET /count)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/count", timeout=5) as r:
        return int(json.load(r)["posts"])


def url_of(server: Served) -> str:
    return f"http://127.0.0.1:{server.port}/vapi"


# ---------------------------------------------------------------- in process


class _Counted:
    """A Forwarder on a registry of its own, and its router_forward_total by result."""

    def __init__(self, url: str, queue: int) -> None:
        self.registry = CollectorRegistry()
        counter = Counter("router_forward_total", "forwarded", ["type", "result"], registry=self.registry)
        self.forwarder = Forwarder(ForwardSettings(url=url, timeout_ms=3000, queue=queue), counter)

    def results(self) -> dict[str, int]:
        totals = dict.fromkeys(RESULTS, 0)
        for family in self.registry.collect():
            for s in family.samples:
                if s.name == "router_forward_total":
                    totals[s.labels["result"]] += int(s.value)
        return totals

    def finished(self) -> int:
        """Notifications whose fate is known: sent (any result) or dropped."""
        return sum(self.results().values())


async def _until(done: Callable[[], bool], bound_s: float = BOUND_S) -> float:
    """Seconds until done() (polled every 2 ms), at most bound_s."""
    start = time.perf_counter()
    while not done() and time.perf_counter() - start < bound_s:
        await asyncio.sleep(0.002)
    return time.perf_counter() - start


def _timed_notify(forwarder: Forwarder, body: bytes) -> float:
    start = time.perf_counter_ns()
    forwarder.notify("status-update", body)
    return (time.perf_counter_ns() - start) / 1000


async def _fast(fast: Served, bodies: Sequence[bytes]) -> dict[str, Any]:
    c = _Counted(url_of(fast), NOTIFY_BURST * 2)
    try:
        for body in bodies[:200]:  # the connection, the worker task, the first sends
            c.forwarder.notify("status-update", body)
        await _until(lambda: c.finished() >= 200)
        before_posts = await asyncio.to_thread(posts, fast)
        before = c.results()
        start = time.perf_counter()
        costs = [_timed_notify(c.forwarder, bodies[i % len(bodies)]) for i in range(NOTIFY_BURST)]
        waited = await _until(lambda: c.finished() >= 200 + NOTIFY_BURST)
        elapsed = time.perf_counter() - start
        after = c.results()
        received = await asyncio.to_thread(posts, fast) - before_posts
    finally:
        await c.forwarder.aclose()
    delta = {k: after[k] - before[k] for k in RESULTS}
    return {
        "costs": costs,
        "rate": delta["ok"] / elapsed,
        "delta": delta,
        "received": received,
        "timed_out": waited >= BOUND_S,
    }


async def _slow(slow: Served, bodies: Sequence[bytes]) -> dict[str, Any]:
    c = _Counted(url_of(slow), DEFAULT_QUEUE)
    accepted: list[float] = []
    dropped: list[float] = []
    queue = c.forwarder.queue
    try:
        start = time.perf_counter()
        for i in range(SLOW_SENT):
            full = queue.full()
            (dropped if full else accepted).append(_timed_notify(c.forwarder, bodies[i % len(bodies)]))
            if i % 10 == 9:
                await asyncio.sleep(SLOW_PACE_S)
        elapsed = time.perf_counter() - start
        results = c.results()
        queued = queue.qsize()
    finally:
        await c.forwarder.aclose()  # the rest of the queue is abandoned: the process "stops"
    return {
        "accepted": accepted,
        "dropped": dropped,
        "results": results,
        "queued": queued,
        "elapsed": elapsed,
    }


async def _proxy(fast: Served) -> dict[str, Any]:
    c = _Counted(url_of(fast), 10)
    body = orjson.dumps(TOOL_CALLS)
    message = TOOL_CALLS["message"]
    wrong = 0

    async def once() -> float:
        nonlocal wrong
        start = time.perf_counter_ns()
        status, reply = await c.forwarder.proxy("tool-calls", message, body)
        took = (time.perf_counter_ns() - start) / 1000
        if status != 200 or orjson.loads(reply).get("results", [{}])[0].get("result") != "done":
            wrong += 1
        return took

    try:
        for _ in range(100):
            await once()
        one = [await once() for _ in range(PROXIED)]

        async def worker() -> list[float]:
            return [await once() for _ in range(PROXY_EACH)]

        start = time.perf_counter()
        many = [x for xs in await asyncio.gather(*(worker() for _ in range(PROXY_TASKS))) for x in xs]
        rate = len(many) / (time.perf_counter() - start)
    finally:
        await c.forwarder.aclose()
    return {"one": one, "many": many, "rate": rate, "wrong": wrong, "results": c.results()}


def _run_loop(work: Callable[[], Awaitable[T]]) -> T:
    import uvloop

    async def main() -> T:
        return await work()

    return uvloop.run(main())


def _us(values: Sequence[float]) -> str:
    def one(x: float) -> str:
        return f"{x:.1f}" if x < 100 else f"{x:,.0f}"

    return f"{one(statistics.median(values))} / {one(percentile(values, 99))}"


def in_process(fast: Served, slow: Served) -> list[Row]:
    bodies = notification_bodies(200)
    f = _run_loop(lambda: _fast(fast, bodies))
    log(
        f"  in process, fast upstream: notify p50/p99 {_us(f['costs'])} µs; "
        f"{f['rate']:,.0f} delivered/s; {f['delta']}; upstream received {f['received']}"
    )
    s = _run_loop(lambda: _slow(slow, bodies))
    log(
        f"  in process, slow upstream ({SLOW_MS} ms): accepted {len(s['accepted'])} dropped "
        f"{len(s['dropped'])} in {s['elapsed']:.1f} s; {s['results']}; queued {s['queued']}"
    )
    p = _run_loop(lambda: _proxy(fast))
    log(
        f"  in process, proxy: one at a time {_us(p['one'])} µs; {PROXY_TASKS} at once {_us(p['many'])} µs, "
        f"{p['rate']:,.0f}/s; wrong replies {p['wrong']}; {p['results']}"
    )
    d = f["delta"]
    fast_ok = d["ok"] == NOTIFY_BURST == f["received"] and not f["timed_out"]
    r = s["results"]
    # every notification offered is accounted for: delivered or failing (done), dropped,
    # still queued, or the one in flight when the forwarder closed
    offered = r["ok"] + r["error"] + r["timeout"] + r["dropped"] + s["queued"]
    slow_ok = r["dropped"] == len(s["dropped"]) and SLOW_SENT - offered in (0, 1)
    return [
        Row(
            "forward",
            "in process: notify, fast upstream",
            f"µs per notify call p50 / p99 ({NOTIFY_BURST:,} queued at once)",
            _us(f["costs"]),
        ),
        Row(
            "forward",
            "in process: notify, fast upstream",
            "delivered/s (one drain task, one request at a time); ok / sent; upstream received",
            f"{f['rate']:,.0f}; {d['ok']:,} / {NOTIFY_BURST:,}; {f['received']:,}",
            "all delivered",
            fast_ok,
        ),
        Row(
            "forward",
            f"in process: notify, upstream {SLOW_MS} ms, queue {DEFAULT_QUEUE:,}",
            "µs per notify call p50 / p99: while the queue has room; once full (dropped)",
            f"{_us(s['accepted'])} ({len(s['accepted']):,} calls); "
            f"{_us(s['dropped'])} ({len(s['dropped']):,})",
        ),
        Row(
            "forward",
            f"in process: notify, upstream {SLOW_MS} ms, queue {DEFAULT_QUEUE:,}",
            f"offered {SLOW_SENT:,} in {s['elapsed']:.1f} s: delivered / dropped (counted) / left queued",
            f"{r['ok']:,} / {r['dropped']:,} / {s['queued']:,}",
            "all accounted",
            slow_ok,
        ),
        Row(
            "forward",
            "in process: proxy() tool-calls, fast upstream",
            f"µs p50 / p99: one at a time ({PROXIED:,}); {PROXY_TASKS} at once (req/s)",
            f"{_us(p['one'])}; {_us(p['many'])} ({p['rate']:,.0f})",
            "all relayed",
            p["wrong"] == 0 and p["results"]["ok"] == 100 + PROXIED + PROXY_TASKS * PROXY_EACH,
        ),
    ]


# ---------------------------------------------------------------- through the server


def forward_totals(server: Served) -> dict[str, int]:
    """router_forward_total by result, from the server's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
        text = r.read().decode()
    totals = dict.fromkeys(RESULTS, 0)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "router_forward_total":
                totals[s.labels["result"]] += int(s.value)
    return totals


@contextmanager
def _servers(directory: Path, fast: Served, slow: Served) -> Iterator[list[_Subject]]:
    bodies = directory / "notifications.jsonl"
    bodies.write_bytes(b"".join(b + b"\n" for b in notification_bodies(CALLS)))
    subjects = []
    with ExitStack() as stack:
        for name, label, up in (("off", "forward off", None), ("fast", "forward, fast", fast),
                                ("slow", f"forward, {SLOW_MS} ms", slow)):  # fmt: skip
            policy = directory / f"{name}.yaml"
            policy.write_text(_policy(url_of(up) if up else None), encoding="utf-8")
            server = stack.enter_context(serving(router_server(name, policy, directory)))
            subjects.append(_Subject(label, server, bodies))
        yield subjects


def _drained(server: Served) -> dict[str, int]:
    """router_forward_total once it stops moving (the queue drained), at most BOUND_S."""
    start = time.perf_counter()
    totals = forward_totals(server)
    while time.perf_counter() - start < BOUND_S:
        time.sleep(0.1)
        now = forward_totals(server)
        if now == totals:
            break
        totals = now
    return totals


def through_server(directory: Path, fast: Served, slow: Served) -> list[Row]:
    rows: list[Row] = []
    key = (1, CONNECTIONS)
    with _servers(directory, fast, slow) as subjects:
        off, on_fast, on_slow = subjects
        for s in subjects:  # warm-up: imports, the upstream connection, the first sends
            s.load(connections=CONNECTIONS, duration=1.0)
        before = _drained(on_fast.server)
        received_before = posts(fast)
        for i in range(ROUNDS):  # alternate, so drift on this shared machine hits all alike
            for s in subjects if i % 2 == 0 else [off, *reversed(subjects[1:])]:
                r = s.load(connections=CONNECTIONS)
                s.runs.setdefault(key, []).append(r)
                log(
                    f"    {s.label:<16} {CONNECTIONS}c: {r['rps']:>7,.0f} req/s"
                    f"  p99 {r['p99_us'] / 1000:.2f} ms  cpu {r['server_cpu_us_per_request']:.0f} µs/req"
                )
        after = _drained(on_fast.server)
        fast_delta = {k: after[k] - before[k] for k in RESULTS}
        received = posts(fast) - received_before
        fast_sent = sum(r["sent"] for r in on_fast.runs[key])
        slow_totals = forward_totals(on_slow.server)
        base = off.runs[key]
        for s in (on_fast, on_slow):
            runs = s.runs[key]
            ratio = statistics.median(r["rps"] / b["rps"] for b, r in zip(base, runs, strict=True))
            cpu = statistics.median(r["server_cpu_us_per_request"] for r in runs)
            cpu_off = statistics.median(r["server_cpu_us_per_request"] for r in base)
            p99 = statistics.median(r["p99_us"] for r in runs) / 1000
            p99_off = statistics.median(r["p99_us"] for r in base) / 1000
            all_200 = all(set(r["statuses"]) == {"200"} and not r["errors"] for r in runs + base)
            case = f"serve, 1 worker, {CONNECTIONS} conn, forward to the {s.label.split(', ')[1]} upstream"
            rows += [
                Row(
                    "forward",
                    case,
                    "status-update/end-of-call-report req/s: forward on / off (median of paired ratios)",
                    f"{statistics.median(r['rps'] for r in runs):,.0f} / "
                    f"{statistics.median(b['rps'] for b in base):,.0f} (×{ratio:.2f})",
                ),
                Row(
                    "forward",
                    case,
                    "p99 ms; server CPU µs/request: on (off)",
                    f"{p99:.2f} ({p99_off:.2f}); {cpu:.0f} ({cpu_off:.0f})",
                    "all 200",
                    all_200,
                ),
            ]
        counted = sum(fast_delta.values())
        rows.append(
            Row(
                "forward",
                f"serve, forward to the fast upstream ({ROUNDS} runs)",
                "requests sent = counted (ok + dropped + error + timeout); ok = upstream received",
                f"{fast_sent:,} = {counted:,} ({fast_delta['ok']:,} + {fast_delta['dropped']:,} + "
                f"{fast_delta['error']:,} + {fast_delta['timeout']:,}); {fast_delta['ok']:,} = {received:,}",
                "both equal",
                fast_sent == counted and fast_delta["ok"] == received,
            )
        )
        rows.append(
            Row(
                "forward",
                f"serve, forward to the {SLOW_MS} ms upstream (warm-up + {ROUNDS} runs)",
                f"router_forward_total ok / dropped / error + timeout (queue {DEFAULT_QUEUE:,})",
                f"{slow_totals['ok']:,} / {slow_totals['dropped']:,} / "
                f"{slow_totals['error'] + slow_totals['timeout']:,}",
            )
        )
    return rows


def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-forward-") as tmp:
        directory = Path(tmp)
        with (
            serving(upstream("up-fast", directory, 0)) as fast,
            serving(upstream("up-slow", directory, SLOW_MS)) as slow,
        ):
            rows += in_process(fast, slow)
            rows += through_server(directory, fast, slow)
    return rows
