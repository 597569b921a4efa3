"""crm.postgres against a real PostgreSQL server that the suite starts (tests/pgserver.py):
status mapping, a query past timeout_ms, a burst that exhausts the pool, a schema without
tags, a connection dropped mid-query, a server killed mid-run, and two `serve` replicas
sharing one database."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pgserver import PgServer
from serverutil import Subprocess, payload, reply_problems

from router.crm.postgres import PostgresCrm
from router.policy.crmcolumns import query_columns
from router.policy.loader import lint_path
from router.runtime.records import CrmRecord

SLOW = "+14155550199"  # the query sleeps 1 s for this caller


def table(postgres: PgServer, *, tags: str | None = "text") -> str:
    """A fresh customers table of the test's own, with two rows; its name."""
    name = f"c_{uuid.uuid4().hex[:10]}"
    tags_column = f", tags {tags}" if tags else ""
    tag_values = {"text": "'vip;gold'", "text[]": "ARRAY['vip','gold']"}.get(tags or "", "")
    postgres.run(
        f"CREATE TABLE {name} (number text PRIMARY KEY, tier text, visits int{tags_column})",
        f"INSERT INTO {name} (number, tier, visits{', tags' if tags else ''}) VALUES "
        f"('+14155550101', 'gold', 3{', ' + tag_values if tags else ''}), ('+14155550102', NULL, NULL"
        f"{', NULL' if tags else ''})",
    )
    return name


def query(name: str, columns: str = "tags, tier, visits") -> str:
    return (
        f"SELECT {columns} FROM {name}, "
        f"LATERAL (SELECT pg_sleep(CASE WHEN $1 = '{SLOW}' THEN 1 ELSE 0 END)) AS s "
        f"WHERE number = $1 OR ($1 = '{SLOW}' AND number = '+14155550101')"
    )


def crm(postgres: PgServer, name: str, *, timeout_ms: int = 300, pool: int = 4, **kw: Any) -> PostgresCrm:
    return PostgresCrm(dsn=postgres.dsn, query=query(name, **kw), pool=pool, timeout_ms=timeout_ms)


async def timed(client: PostgresCrm, number: str) -> tuple[CrmRecord, float]:
    start = time.perf_counter()
    record = await client.lookup(number)
    return record, time.perf_counter() - start


def test_rows_and_statuses(postgres: PgServer) -> None:
    names = [table(postgres, tags=kind) for kind in ("text", "text[]")]

    async def run() -> None:
        for name in names:
            client = crm(postgres, name)
            ada = await client.lookup("+14155550101")
            assert (ada.status, ada.tags, dict(ada.fields)) == (
                "ok",
                {"vip", "gold"},
                {"tier": "gold", "visits": "3"},
            )
            bare = await client.lookup("+14155550102")
            assert (bare.status, bare.tags, dict(bare.fields)) == ("ok", frozenset(), {})
            assert (await client.lookup("+14155550100")).status == "not_found"
            await client.aclose()

    asyncio.run(run())


def test_a_schema_without_tags(postgres: PgServer) -> None:
    name = table(postgres, tags=None)

    async def run() -> None:
        client = crm(postgres, name, columns="tier, visits")
        record = await client.lookup("+14155550101")
        fields = {"tier": "gold", "visits": "3"}
        assert (record.status, record.tags, dict(record.fields)) == ("ok", frozenset(), fields)
        await client.aclose()

    asyncio.run(run())


def test_a_query_error_is_an_error(postgres: PgServer) -> None:
    async def run() -> None:
        client = PostgresCrm(dsn=postgres.dsn, query="SELECT nope FROM missing_table WHERE n = $1")
        record = await client.lookup("+14155550101")
        assert (record.status, record.reason) == ("error", "query failed: UndefinedTableError")
        await client.aclose()

    asyncio.run(run())


def test_a_query_past_timeout_ms_is_a_timeout_and_the_pool_goes_on(postgres: PgServer) -> None:
    name = table(postgres)

    async def run() -> None:
        client = crm(postgres, name, timeout_ms=250, pool=1)
        assert (await client.lookup("+14155550101")).status == "ok"
        record, took = await timed(client, SLOW)
        assert (record.status, record.reason) == ("timeout", "timed out after 250 ms")
        assert took < 0.4
        # the one connection was cancelled or replaced in the background: the next lookup works
        record, took = await timed(client, "+14155550101")
        assert record.status == "ok" and took < 0.3
        await client.aclose()

    asyncio.run(run())


def test_a_burst_that_exhausts_the_pool(postgres: PgServer) -> None:
    name = table(postgres)

    async def run() -> None:
        client = crm(postgres, name, timeout_ms=400, pool=2)
        await client.lookup("+14155550101")  # connect
        start = time.perf_counter()
        burst = await asyncio.gather(*(timed(client, SLOW) for _ in range(12)))
        assert time.perf_counter() - start < 0.6  # nobody waited past timeout_ms for a connection
        assert {r.status for r, _ in burst} == {"timeout"}
        assert max(took for _, took in burst) < 0.55
        fast = await asyncio.gather(*(timed(client, "+14155550101") for _ in range(40)))
        assert {r.status for r, _ in fast} == {"ok"}
        await client.aclose()

    asyncio.run(run())


def test_a_connection_dropped_mid_query(postgres: PgServer) -> None:
    name = table(postgres)

    async def run() -> None:
        client = crm(postgres, name, timeout_ms=3000, pool=1)
        assert (await client.lookup("+14155550101")).status == "ok"
        lookup = asyncio.create_task(timed(client, SLOW))
        await asyncio.sleep(0.2)
        await postgres.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'vapi-router' AND query LIKE '%pg_sleep%'"
        )
        record, took = await lookup
        assert record.status == "error" and "database unavailable" in record.reason
        assert took < 1.0
        for _ in range(100):  # after the backoff, one lookup reconnects
            if (await client.lookup("+14155550101")).status == "ok":
                break
            await asyncio.sleep(0.02)
        assert (await client.lookup("+14155550101")).status == "ok"
        await client.aclose()

    asyncio.run(run())


def test_a_server_killed_mid_run(own_postgres: PgServer) -> None:
    name = table(own_postgres)

    async def run() -> None:
        client = crm(own_postgres, name, timeout_ms=300, pool=2)
        assert (await client.lookup("+14155550101")).status == "ok"
        own_postgres.kill()
        records = [await timed(client, "+14155550101") for _ in range(20)]
        assert {r.status for r, _ in records} == {"error"}, [(r.status, r.reason, t) for r, t in records]
        assert max(took for _, took in records) < 0.35
        # backing off: most of these failed at once, without a connection attempt
        assert sum(took < 0.002 for _, took in records) >= 15
        await asyncio.to_thread(own_postgres.start)
        deadline = time.monotonic() + 10
        while (await client.lookup("+14155550101")).status != "ok":
            assert time.monotonic() < deadline, "no reconnect within 10 s of the restart"
            await asyncio.sleep(0.05)
        await client.aclose()

    asyncio.run(run())


def test_lint_knows_the_query_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "set")  # unset, it would add an [env-unset] warning
    assert query_columns("SELECT tags, c.tier, first_name AS name FROM c WHERE number = $1") == {
        "tags",
        "tier",
        "name",
    }
    assert query_columns("SELECT * FROM c WHERE number = $1") is None
    (tmp_path / "p.yaml").write_text(
        "version: 1\n"
        "crm:\n"
        "  postgres:\n"
        '    dsn: "postgresql://router@db/crm?password=${env.PGPASSWORD}"\n'
        '    query: "SELECT tags, tier, first_name AS name FROM customers WHERE number = $2"\n'
        "routes:\n"
        "  - id: gold\n"
        "    when: {crm: {teir: gold}}\n"
        "    then: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}\n"
        "default: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}\n",
        encoding="utf-8",
    )
    assert [str(p).replace(str(tmp_path), "") for p in lint_path(tmp_path / "p.yaml").problems] == [
        "/p.yaml:5:12: error: crm.postgres.query must take the caller's E.164 number as $1 [crm-query]",
        '/p.yaml:8:18: error: crm.teir: the query in crm.postgres has no field "teir" (did you mean '
        '"tier"?); its fields: name, tier [unknown-crm-field]',
    ]


POLICY = """\
version: 1
settings: {deadline_ms: 1500}
crm:
  postgres: {dsn: "postgresql://postgres@127.0.0.1:${env.PGPORT}/postgres", query: "QUERY", pool: 3}
  timeout_ms: 400
targets:
  front-desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
routes:
  - id: down
    when: {crm_status: [error, timeout]}
    then: front-desk
  - id: gold
    when: {crm: {tier: gold}}
    then:
      assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004
      assistantOverrides: {variableValues: {tier: "${crm.tier}"}}
default: front-desk
"""


def message(caller: str) -> dict[str, Any]:
    data = payload("assistant-request.pstn.json")
    data["message"]["customer"]["number"] = caller
    data["message"]["call"]["customer"]["number"] = caller
    return data


def test_two_replicas_share_one_database(postgres: PgServer, tmp_path: Path) -> None:
    name = table(postgres)
    policy = POLICY.replace("QUERY", query(name, columns="tags, tier"))
    env = {"VAPI_SERVER_SECRET": "s3cret-SENTINEL-webhook-7f3a", "ROUTER_ADMIN_TOKEN": "admin-token"}
    env["PGPORT"] = str(postgres.port)
    a = Subprocess(tmp_path / "a", policy, env=env, args=("--workers", "2"))
    b = Subprocess(tmp_path / "b", policy, env=env)
    with a, b, a.client() as ca, b.client() as cb:
        for server, client in ((a, ca), (b, cb)):
            for _ in range(4):
                reply = server.post_webhook(client, message("+14155550101"))
                assert reply.status_code == 200
                assert reply_problems("assistant-request", reply.json()) == []
                assert reply.json()["assistantOverrides"]["variableValues"] == {"tier": "gold"}
        postgres.run(f"UPDATE {name} SET tier = 'silver' WHERE number = '+14155550101'")
        for server, client in ((a, ca), (b, cb)):  # one database: no replica keeps a stale copy
            assert "assistantOverrides" not in server.post_webhook(client, message("+14155550101")).json()
        start = time.perf_counter()
        slow = b.post_webhook(cb, message(SLOW))  # the query sleeps past timeout_ms
        assert slow.status_code == 200 and time.perf_counter() - start < 1.5
        assert slow.json() == {"assistantId": "2ccabf54-ccd8-4dff-ae93-e830159c8004"}
