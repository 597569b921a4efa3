"""Section "instructions": CPU instructions per request, router against bare Starlette. [bench]

Wall-clock figures on this shared 2-vCPU machine move by a third between runs (neighbours,
caches); instruction counts move by under 1 % (string hashes are seeded per process). Under
`valgrind --tool=callgrind` one child process builds both servers in process, the router's
`WebhookProtocol` and uvicorn's httptools protocol with `bench.bareapp`, each on a transport
that counts what it is written, and feeds them the same HTTP/1.1 requests, one at a time,
each answered before the next is sent. The counters run only around the measured requests
(`callgrind_control -i on/off`, a dump per case), so start-up and warm-up are not counted.

What is counted is the server's user-space work for a request: the HTTP parser, the app,
the routing and the decision log's line, plus the few turns of the event loop the harness
waits for each reply (one for the router, which answers in the parser's callback; more for
uvicorn's task per request, so the bare endpoint's count carries a little more of them).
System calls are the kernel's and not counted: `bench http` measures them with the rest.
The router's stages are counted on their own too (the body's JSON, auth, facts, the
decision), so a change shows where it moved the count.

Skipped when valgrind is not installed (it is on every machine kind here; `apt-get install
valgrind` elsewhere).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import Row, clean_env, log
from bench.loadgen import FRESH_MARK, build_requests

CASES = 2_000  # requests per case: the count is exact, a few thousand only average the bodies
WARM = 4_000  # requests before counting: every cache the server keeps is as in a long run


class _Transport(asyncio.Transport):
    """A connection's transport that counts the writes and the replies' statuses."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False
        self.statuses: dict[bytes, int] = {}

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += 1
        status = bytes(data[9:12]) if bytes(data[:5]) == b"HTTP/" else b"part"  # uvicorn: head, body
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _requests(bodies: list[bytes], secret: str) -> list[bytes]:
    return build_requests("127.0.0.1", 8000, "/webhook/vapi", bodies, [("x-vapi-secret", secret)])


def _protocol(app: Any, http: str) -> tuple[Any, _Transport]:
    import uvicorn
    from uvicorn.server import ServerState

    config = uvicorn.Config(app, http=http, loop="uvloop", log_level="warning", access_log=False)
    config.load()
    protocol_class: Any = config.http_protocol_class
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def _serve(protocol: Any, transport: _Transport, requests: list[bytes]) -> None:
    """Each request answered before the next: the loop turns until the reply is written."""
    for request in requests:
        before = transport.written
        protocol.data_received(request)
        while transport.written == before:
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the turn after the reply: the decision log's line is recorded


def _counter(on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], capture_output=True)


def _dump(name: str) -> None:
    subprocess.run(["callgrind_control", "-d", name, str(os.getpid())], capture_output=True)


def child(directory: Path) -> None:
    """Under callgrind: build, warm, then count each case between a zeroing and a dump."""
    from bench.bareapp import app as bare_app
    from bench.http import SECRET, fresh_call, generated_policy_dir, write_bodies

    os.environ["VAPI_SERVER_SECRET"] = SECRET
    import orjson
    from starlette.datastructures import Headers

    from router.server.app import create_app
    from router.server.auth import verify_webhook
    from router.server.serve import ServeOptions, build_server
    from router.server.service import base_facts, decide_now

    gen_dir, calls = generated_policy_dir(directory / "gen", 1_000)
    template = write_bodies(directory / "fresh.jsonl", [fresh_call(c) for c in calls]).read_bytes()
    parts = [line.split(FRESH_MARK) for line in template.splitlines()]
    # every request a new caller in a new call, as in `bench http`'s every-caller-new rows
    bodies = [(b"%06d" % i).join(parts[i % len(parts)]) for i in range(WARM + 2 * CASES)]
    server = build_server(
        ServeOptions(policy=str(gen_dir), watch=False, decision_log=str(directory / "decisions.jsonl"))
    )
    app = create_app(server)
    server.store.load_now()
    server.decision_log.start()
    live = server.store.live
    assert live is not None
    warm, first, second = bodies[:WARM], bodies[WARM : WARM + CASES], bodies[WARM + CASES :]
    headers = Headers(raw=[(b"x-vapi-secret", SECRET.encode())])
    messages = [orjson.loads(b)["message"] for b in second]

    def each(f: Callable[[Any], object], items: list[Any]) -> Callable[[], None]:
        def run() -> None:
            for item in items:
                f(item)

        return run

    async def main() -> None:
        # made on the running loop: uvicorn's protocol takes the loop it schedules tasks on
        router, router_t = _protocol(app, "router.server.fasthttp:WebhookProtocol")
        bare, bare_t = _protocol(bare_app, "httptools")
        await _serve(router, router_t, _requests(warm, SECRET))
        await _serve(bare, bare_t, _requests(warm[:CASES], SECRET))
        for name, proto, transport, batch in (
            ("bare", bare, bare_t, first),
            ("router", router, router_t, first),
        ):
            requests = _requests(batch, SECRET)
            _counter(True)
            await _serve(proto, transport, requests)
            _counter(False)
            _dump(name)
            # every request answered 200 (a refusal would count far fewer instructions)
            assert set(transport.statuses) - {b"part"} == {b"200"}, transport.statuses
        stages = (
            ("json", each(orjson.loads, second)),
            ("auth", each(lambda b: verify_webhook(server.auth, headers, b, now=time.time()), second)),
            ("facts", each(lambda m: base_facts(live.policy, m), messages)),
            ("decide", each(lambda m: decide_now(live, m, started=time.perf_counter()), messages)),
        )
        for name, run in stages:
            _counter(True)
            run()
            _counter(False)
            _dump(name)

    asyncio.run(main())


def _counts(directory: Path, name: str) -> dict[str, int]:
    """The event totals (Ir, DLmr, ...) of the dump made for `name`, per request."""
    for path in directory.glob("cg.out*"):
        text = path.read_text(errors="replace")
        if re.search(rf"^desc: Trigger: .*\b{name}$", text, re.M):  # callgrind_control -d NAME
            events = re.search(r"^events: (.*)$", text, re.M)
            totals = re.search(r"^totals: (.*)$", text, re.M)
            if events and totals:
                return dict(zip(events.group(1).split(), map(int, totals.group(1).split()), strict=True))
    raise RuntimeError(f"no callgrind dump for {name} in {directory}")


def run() -> list[Row]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        log("  valgrind not installed: instruction counts skipped")
        return [Row("instructions", "per request", "instructions", "skipped: valgrind not installed")]
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        directory = Path(tmp)
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--cache-sim=yes"]
        argv += [f"--callgrind-out-file={directory}/cg.out.%p", sys.executable, "-m", "bench.instructions"]
        started = time.perf_counter()
        done = subprocess.run([*argv, str(directory)], capture_output=True, env=clean_env({}), timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"callgrind run failed: {done.stderr.decode(errors='replace')[-2000:]}")
        log(f"  callgrind run: {time.perf_counter() - started:.0f} s")
        counts = {n: _counts(directory, n) for n in ("bare", "router", "json", "auth", "facts", "decide")}

    def per(name: str, *events: str) -> float:
        return sum(counts[name][e] for e in events) / CASES

    def pair(*events: str, digits: int = 0) -> str:
        router, bare = per("router", *events), per("bare", *events)
        return f"{router:,.{digits}f} / {bare:,.{digits}f} (×{router / bare:.2f})"

    case = "1,000 routes, every caller new, one connection"
    return [
        Row("instructions", case, "instructions/request: router / bare (ratio)", pair("Ir")),
        Row(
            "instructions",
            case,
            "simulated last-level cache misses/request (read + write): router / bare",
            pair("DLmr", "DLmw", digits=1),
        ),
        Row(
            "instructions",
            case,
            "simulated L1 data cache misses/request: router / bare",
            pair("D1mr", "D1mw"),
        ),
        Row(
            "instructions",
            case,
            "router stages, instructions: JSON body / auth / facts / decision (facts included)",
            " / ".join(f"{per(n, 'Ir'):,.0f}" for n in ("json", "auth", "facts", "decide")),
        ),
    ]


if __name__ == "__main__":
    child(Path(sys.argv[1]))
