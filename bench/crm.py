"""Customer data at scale (DESIGN §12): 1,000,000 customers in SQLite and in PostgreSQL.

Imports a generated 1,000,000-row CSV with `vapi-router crm import`, then measures: `serve`
start-up to ready and resident memory against an empty CRM, the SQLite lookup latency in
process, HTTP throughput of CRM-reading calls against the bare endpoint, and PostgreSQL
lookups (when its binaries are installed).
"""

from __future__ import annotations

import asyncio
import glob
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench import Row, log, percentile
from bench.gen import Call
from bench.http import (
    BIN,
    _alternate,
    _rss_mib,
    _Subject,
    bare_server,
    router_server,
    serving,
)
from bench.loadgen import FRESH_MARK
from router.crm.postgres import PostgresCrm
from router.crm.sqlite import SqliteCrm

if TYPE_CHECKING:
    from bench.pgserver import PgServer

CUSTOMERS = 1_000_000
LOOKUPS = 100_000
CALLS = 2_000
ROUNDS = 3
POLICY = """\
version: 1
crm: {sqlite: customers.db}
targets:
  front-desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
routes:
  - id: vip
    when: {tags: [vip]}
    then:
      assistantId: 8e9f0a1b-2c3d-4e5f-8a6b-7c8d9e0f1a02
      assistantOverrides: {variableValues: {name: "${crm.name}", tier: "${crm.tier}"}}
  - id: known
    when: {crm_status: ok}
    then:
      assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004
      assistantOverrides: {variableValues: {tier: "${crm.tier}"}}
default: front-desk
"""


def number(i: int) -> str:
    return f"+1212{2_000_000 + i:07d}"


def write_csv(path: Path, rows: int) -> None:
    tiers = ("gold", "silver", "bronze")
    with path.open("w", encoding="utf-8") as f:
        f.write("number,tags,tier,name,account\n")
        for i in range(rows):
            tags = "vip;gold" if i % 10 == 0 else ""
            f.write(f"{number(i)},{tags},{tiers[i % 3]},Customer {i},AC-{i:08d}\n")


def crm_import(csv: Path, db: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "vapi-router"), "crm", "import", str(csv), "--into", str(db)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"crm import failed: {done.stdout[-2000:]!r} {done.stderr[-2000:]!r}")
    return time.perf_counter() - start


def callers(count: int, customers: int, seed: int = 7) -> list[str]:
    """Callers of the load: 80 % in the CRM (anywhere in it), 20 % not."""
    rng = random.Random(seed)
    return [
        number(rng.randrange(customers)) if rng.random() < 0.8 else f"+1646{rng.randrange(10**7):07d}"
        for _ in range(count)
    ]


def write_bodies(path: Path, numbers: list[str]) -> Path:
    from bench.http import vapi_body

    at = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)
    with path.open("wb") as f:
        for i, caller in enumerate(numbers):
            call = Call(
                # every call its own id, as in real traffic (the loadgen fills the mark)
                call_id=f"crm-{i:06d}-{FRESH_MARK.decode()}",
                caller=caller,
                dialled="+16505550117",
                at=at,
                phone_number_id="7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e",
                tags=(),
                crm=(),
                crm_status=None,
                variables=(),
            )
            f.write(vapi_body(call) + b"\n")
    return path


def sqlite_lookups(db: Path, numbers: list[str]) -> tuple[float, float]:
    crm = SqliteCrm(db)
    samples = []
    for n in numbers:
        start = time.perf_counter_ns()
        crm.get(n)
        samples.append((time.perf_counter_ns() - start) / 1000)
    crm.close()
    return statistics.median(samples), percentile(samples, 99)


def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-crm-") as tmp:
        directory = Path(tmp)
        big, empty = directory / "big", directory / "empty"
        big.mkdir()
        empty.mkdir()
        csv = directory / "customers.csv"
        started = time.perf_counter()
        write_csv(csv, CUSTOMERS)
        log(
            f"  wrote {CUSTOMERS:,} customers ({csv.stat().st_size / 2**20:.0f} MiB CSV)"
            f" in {time.perf_counter() - started:.1f} s"
        )
        import_s = crm_import(csv, big / "customers.db")
        (directory / "one.csv").write_text("number,tags,tier,name,account\n+12120000000,,gold,One,AC-1\n")
        crm_import(directory / "one.csv", empty / "customers.db")
        size = (big / "customers.db").stat().st_size / 2**20
        log(f"  crm import: {import_s:.1f} s, {size:.0f} MiB database")
        rows.append(
            Row(
                "crm",
                f"import {CUSTOMERS:,} rows (CSV)",
                "crm import s / database MiB",
                f"{import_s:.1f} / {size:.0f}",
            )
        )
        for d in (big, empty):
            (d / "policy.yaml").write_text(POLICY, encoding="utf-8")

        numbers = callers(LOOKUPS, CUSTOMERS)
        p50, p99 = sqlite_lookups(big / "customers.db", numbers)
        rows.append(
            Row(
                "crm",
                f"sqlite, {CUSTOMERS:,} customers",
                "lookup p50 / p99 µs (in process, 80 % found)",
                f"{p50:.1f} / {p99:.1f}",
                "p99 ≤ 1000",
                p99 <= 1000,
            )
        )

        bodies = write_bodies(directory / "calls.jsonl", callers(CALLS, CUSTOMERS, seed=11))
        with ExitStack() as stack:
            bare = _Subject(
                "bare Starlette", stack.enter_context(serving(bare_server("bare", directory))), bodies
            )
            empty_router = stack.enter_context(
                serving(router_server("empty", empty / "policy.yaml", directory))
            )
            big_router = stack.enter_context(serving(router_server("big", big / "policy.yaml", directory)))
            rss_empty, rss_big = _rss_mib(empty_router), _rss_mib(big_router)
            rows.append(
                Row(
                    "crm",
                    f"serve, sqlite {CUSTOMERS:,}",
                    "start-up to ready s",
                    f"{big_router.ready_s:.2f} (empty CRM {empty_router.ready_s:.2f})",
                    "≤ 2",
                    big_router.ready_s <= 2,
                )
            )
            # Callers cycled through 2,000 customers, each call with its own id. The empty CRM
            # gets the same load: a server keeps memory per call it answered (each decision
            # until its call ends), which is not the CRM's.
            subject = _Subject(f"sqlite {CUSTOMERS:,}", big_router, bodies, fresh=0)
            empty_subject = _Subject("sqlite, one customer", empty_router, bodies, fresh=0)
            _alternate([bare, subject, empty_subject], 1, 32, ROUNDS)
            rss_after, rss_empty_after = _rss_mib(big_router), _rss_mib(empty_router)
            grown = max(rss_big - rss_empty, rss_after - rss_empty_after)
            rows.append(
                Row(
                    "crm",
                    f"serve, sqlite {CUSTOMERS:,}",
                    "RSS MiB above an empty CRM (idle / after the same load)",
                    f"{rss_big - rss_empty:.1f} / {rss_after - rss_empty_after:.1f}",
                    "≤ 50",
                    grown <= 50,
                )
            )
            ratios = [
                r["rps"] / b["rps"] for b, r in zip(bare.runs[(1, 32)], subject.runs[(1, 32)], strict=True)
            ]
            ratio = statistics.median(ratios)
            rps = statistics.median(r["rps"] for r in subject.runs[(1, 32)])
            p99_ms = statistics.median(r["p99_us"] for r in subject.runs[(1, 32)]) / 1000
            rows.append(
                Row(
                    "crm",
                    f"HTTP, sqlite {CUSTOMERS:,}, 1 worker, 32 conn",
                    "CRM-reading calls vs bare endpoint (req/s, p99 ms)",
                    f"x{ratio:.2f} ({rps:,.0f}, {p99_ms:.2f})",
                    "≥ x0.90",
                    ratio >= 0.9,
                )
            )
            empty_ratios = [
                r["rps"] / b["rps"]
                for b, r in zip(bare.runs[(1, 32)], empty_subject.runs[(1, 32)], strict=True)
            ]
            rows.append(
                Row(
                    "crm",
                    "HTTP, sqlite of one customer (the empty CRM), 1 worker, 32 conn",
                    "the same calls, none found, vs bare endpoint",
                    f"x{statistics.median(empty_ratios):.2f}",
                    "",
                    None,
                )
            )
        rows += postgres_rows(directory, numbers[:20_000])
    return rows


def postgres_rows(directory: Path, numbers: list[str]) -> list[Row]:
    from bench.pgserver import PgServer, init_cluster

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))  # as tests/conftest.py looks
    binary = Path(found[-1]) if found else None
    if binary is None:
        log("  PostgreSQL is not installed (`make system-deps`): no PostgreSQL figures")
        return [Row("crm", "postgres", "lookups", "skipped: PostgreSQL not installed")]
    # not under `directory`: when root, postgres runs as nobody, who cannot enter it
    home = Path(tempfile.mkdtemp(prefix="bench-crm-pg-"))
    template = init_cluster(binary.parent, home)
    server = PgServer(binary.parent, template)
    try:
        server.start()
        started = time.perf_counter()
        asyncio.run(_load_postgres(server))
        log(f"  postgres: {CUSTOMERS:,} rows loaded in {time.perf_counter() - started:.1f} s")
        return asyncio.run(_measure_postgres(server, numbers))
    finally:
        server.close()
        shutil.rmtree(home, ignore_errors=True)


async def _load_postgres(server: PgServer) -> None:
    import asyncpg

    connection = await asyncpg.connect(server.dsn)
    try:
        await connection.execute(
            "CREATE TABLE customers (number text PRIMARY KEY, tags text, tier text, name text, account text)"
        )
        tiers = ("gold", "silver", "bronze")
        await connection.copy_records_to_table(
            "customers",
            records=(
                (number(i), "vip;gold" if i % 10 == 0 else None, tiers[i % 3], f"Customer {i}", f"AC-{i:08d}")
                for i in range(CUSTOMERS)
            ),
        )
        await connection.execute("VACUUM ANALYZE customers")
    finally:
        await connection.close()


async def _measure_postgres(server: PgServer, numbers: list[str]) -> list[Row]:
    crm = PostgresCrm(
        dsn=server.dsn,
        query="SELECT tags, tier, name FROM customers WHERE number = $1",
        pool=10,
        timeout_ms=1000,
    )
    try:
        for n in numbers[:500]:  # connect, prepare
            await crm.lookup(n)
        samples: list[float] = []
        statuses: dict[str, int] = {}
        for n in numbers[:5_000]:
            record = await crm.lookup(n)
            samples.append(record.ms * 1000)
            statuses[record.status] = statuses.get(record.status, 0) + 1
        p50, p99 = statistics.median(samples), percentile(samples, 99)
        queue = list(numbers)
        done = 0
        start = time.perf_counter()

        async def worker() -> None:
            nonlocal done
            while queue:
                await crm.lookup(queue.pop())
                done += 1

        await asyncio.gather(*(worker() for _ in range(32)))
        rate = done / (time.perf_counter() - start)
    finally:
        await crm.aclose()
    found = statuses.get("ok", 0) / max(1, sum(statuses.values()))
    return [
        Row(
            "crm",
            f"postgres, {CUSTOMERS:,} customers",
            f"lookup p50 / p99 µs (one at a time, {found:.0%} found)",
            f"{p50:.0f} / {p99:.0f}",
        ),
        Row(
            "crm",
            f"postgres, {CUSTOMERS:,} customers",
            "lookups/s, 32 concurrent, pool 10, one process",
            f"{rate:,.0f}",
        ),
    ]
