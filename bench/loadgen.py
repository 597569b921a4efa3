"""python -m bench.loadgen: a closed-loop HTTP/1.1 load generator for the HTTP benchmarks.

N keep-alive connections, each with one request in flight (send, read the whole response,
send the next), for a fixed duration, recording every request's latency. It runs in its own
process on uvloop with bare Protocols: requests are prepared bytes, a response is split by
its content-length without a full HTTP parser, so a request costs the generator a few µs of
CPU (it reports its own CPU per request; `bench http` compares it with a raw server to show
the ceiling). Requests sent during the warm-up are not counted; requests still in flight at
the end are awaited (up to --grace seconds) so that slow replies are measured, not dropped.

    python -m bench.loadgen --port 8000 --path /webhook/vapi --bodies bodies.jsonl \\
        -c 32 -d 5 -H 'x-vapi-secret: s3cret'

With --fresh-callers N, every `######` in a body becomes six digits of a counter that starts
at N and steps once per request (so every call comes from a caller the server has not seen,
as long as N carries on from the previous run against that server); `fresh_next` reports
where the counter stopped.

prints one JSON object: requests, rps, p50/p90/p99/max latency in µs, the five slowest
replies with the time they were sent, statuses, errors,
the distinct reply bodies seen (the first `--keep-bodies`, with counts) and CPU µs/request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

_HEAD_END = b"\r\n\r\n"
_LENGTH = b"\r\ncontent-length:"
FRESH_MARK = b"######"


def build_requests(
    host: str, port: int, path: str, bodies: Sequence[bytes], headers: Sequence[tuple[str, str]]
) -> list[bytes]:
    """Complete POST requests (head + body), one per body, ready to write."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    out = []
    for body in bodies:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"{extra}content-length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode("latin-1") + body)
    return out


class _Run:
    """Shared state of one run: the request ring, the clock window and what was recorded."""

    def __init__(self, requests: Sequence[bytes], record_from: int, stop_at: int, keep_bodies: int) -> None:
        self.requests = requests
        self.next = 0
        self.record_from = record_from
        self.stop_at = stop_at
        self.latencies = array("q")
        self.sent = array("q")  # when each recorded request was sent, ns after record_from
        self.in_window = 0  # responses completed between record_from and stop_at
        self.statuses: Counter[int] = Counter()
        self.bodies: Counter[bytes] = Counter()
        self.keep_bodies = keep_bodies
        self.errors: Counter[str] = Counter()
        self.open = 0
        self.finished: asyncio.Future[None] | None = None
        # --fresh-callers: each request cut at its FRESH_MARK, and the counter
        self.parts: list[list[bytes]] | None = None
        self.fresh = 0

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


class _Connection(asyncio.Protocol):
    __slots__ = ("buf", "closing", "length", "need", "run", "sent_at", "transport")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.need = -1  # bytes of the whole response once its head is parsed
        self.length = 0
        self.sent_at = 0
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        self.run.open += 1
        self.send(time.perf_counter_ns())

    def send(self, now: int) -> None:
        run = self.run
        assert self.transport is not None
        if now >= run.stop_at:
            self.closing = True
            self.transport.close()
            return
        requests = run.requests
        self.sent_at = now
        if run.parts is None:
            self.transport.write(requests[run.next % len(requests)])
        else:
            self.transport.write(
                (b"%06d" % (run.fresh % 1_000_000)).join(run.parts[run.next % len(requests)])
            )
            run.fresh += 1
        run.next += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            if self.need < 0:
                end = buf.find(_HEAD_END)
                if end < 0:
                    self.buf = buf
                    return
                head = buf[:end].lower()
                at = head.find(_LENGTH)
                if at < 0:
                    self.fail("response without content-length")
                    return
                stop = head.find(b"\r", at + 2)
                self.length = int(head[at + len(_LENGTH) : stop if stop >= 0 else end])
                self.need = end + 4 + self.length
            if len(buf) < self.need:
                self.buf = buf
                return
            now = time.perf_counter_ns()
            run = self.run
            if self.sent_at >= run.record_from:
                run.latencies.append(now - self.sent_at)
                run.sent.append(self.sent_at - run.record_from)
                run.statuses[int(buf[9:12])] += 1
                if run.keep_bodies:
                    body = buf[self.need - self.length : self.need]
                    if body in run.bodies or len(run.bodies) < run.keep_bodies:
                        run.bodies[body] += 1
                    else:
                        run.bodies[b"(other)"] += 1
            if run.record_from <= now < run.stop_at:
                run.in_window += 1
            buf = buf[self.need :]
            self.need = -1
            self.send(now)
            if not buf:
                self.buf = b""
                return

    def fail(self, reason: str) -> None:
        self.run.errors[reason] += 1
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.run.errors["connection closed by the server"] += 1
        self.run.closed()


async def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int,
    duration: float,
    warmup: float = 0.0,
    grace: float = 10.0,
    keep_bodies: int = 0,
    fresh_callers: int | None = None,
) -> dict[str, Any]:
    """Drive `connections` closed loops for warmup + duration seconds; the summary."""
    loop = asyncio.get_running_loop()
    start = time.perf_counter_ns()
    record_from = start + int(warmup * 1e9)
    stop_at = record_from + int(duration * 1e9)
    run = _Run(requests, record_from, stop_at, keep_bodies)
    if fresh_callers is not None:
        run.parts = [r.split(FRESH_MARK) for r in requests]
        run.fresh = fresh_callers
    run.finished = loop.create_future()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    protocols = []
    for _ in range(connections):
        _transport, protocol = await loop.create_connection(lambda: _Connection(run), host, port)
        protocols.append(protocol)
    # Nothing new starts after stop_at; wait for the replies in flight, then give up on them.
    await asyncio.sleep(max(0.0, (stop_at - time.perf_counter_ns()) / 1e9))
    try:
        await asyncio.wait_for(asyncio.shield(run.finished), grace)
    except TimeoutError:
        run.errors["no reply within grace"] += run.open
        for protocol in protocols:
            if protocol.transport is not None and not protocol.closing:
                protocol.closing = True
                protocol.transport.abort()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    lat = sorted(run.latencies)
    n = len(lat)
    slowest = sorted(zip(run.latencies, run.sent, strict=True), reverse=True)[:5]

    def pct(q: float) -> float:
        return lat[min(n - 1, max(0, round(q / 100 * n) - 1))] / 1000 if n else float("nan")

    window = (stop_at - record_from) / 1e9
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "connections": connections,
        "seconds": window,
        "requests": n,
        "sent": run.next,
        "rps": run.in_window / window,
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": pct(99),
        "max_us": lat[-1] / 1000 if n else float("nan"),
        # the five slowest replies: [latency ms, sent ms after the start]
        "slowest": [[round(x / 1e6, 1), round(at / 1e6, 1)] for x, at in slowest],
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "errors": dict(run.errors),
        "bodies": {k.decode("utf-8", "replace"): v for k, v in run.bodies.most_common()},
        "fresh_next": run.fresh,
        "loadgen_cpu_us_per_request": cpu * 1e6 / max(1, run.next),
    }


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"not NAME: VALUE: {text!r}")
    return name.strip(), value.strip()


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/webhook/vapi")
    p.add_argument("--bodies", required=True, help="file of request bodies, one per line (JSON lines)")
    p.add_argument("-c", "--connections", type=int, default=1)
    p.add_argument("-d", "--duration", type=float, default=3.0, help="seconds measured")
    p.add_argument("-w", "--warmup", type=float, default=0.0, help="seconds run first, not measured")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to wait for replies in flight")
    p.add_argument("-H", "--header", type=_header, action="append", default=[])
    p.add_argument("--keep-bodies", type=int, default=0, help="count up to this many distinct replies")
    p.add_argument("--fresh-callers", type=int, default=None, help="fill ###### with a counter from N")
    args = p.parse_args(argv)
    with open(args.bodies, "rb") as f:
        bodies = [line.rstrip(b"\n") for line in f if line.strip()]
    requests = build_requests(args.host, args.port, args.path, bodies, args.header)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    result = runner(
        run_load(
            args.host,
            args.port,
            requests,
            connections=args.connections,
            duration=args.duration,
            warmup=args.warmup,
            grace=args.grace,
            keep_bodies=args.keep_bodies,
            fresh_callers=args.fresh_callers,
        )
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
