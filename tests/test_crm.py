"""router.crm.clients: the file CRM's formats and errors; every HttpCrm outcome against a real local CRM."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from crmserver import CrmServer, Mode, refused_url

import router.crm.clients
from router.crm.clients import POOL_SIZE, CrmFileError, CrmRecord, FileCrm, HttpCrm

T = TypeVar("T")
VIP = "+15551234567"
OTHER = "+15557654321"
CONTACT = {"tags": ["vip", "gold"], "tier": "gold", "name": "Ada", "vip": True, "visits": 3, "note": None}
FIELDS = {"tier": "contact.tier", "name": "results.0.name", "vip": "contact.vip", "visits": "contact.visits"}
TIMEOUT_MS = 150
# What a loaded 2-core host may add to a 150 ms timeout; still far below the CRM's 5 s answer.
SLACK_S = 0.4


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Clock:
    """An injected monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def started() -> Iterator[CrmServer]:
    with CrmServer() as server:
        yield server


@pytest.fixture
def crm_server(started: CrmServer) -> CrmServer:
    started.reset()
    started.contacts[VIP] = dict(CONTACT)
    return started


def http_crm(server: CrmServer, **options: Any) -> HttpCrm:
    settings: dict[str, Any] = {"url": server.url_template, "tags": "contact.tags", "fields": FIELDS}
    return HttpCrm(**(settings | options))


def lookups(server: CrmServer, *numbers: str, **options: Any) -> list[CrmRecord]:
    """Look the numbers up one after another through one HttpCrm."""

    async def go() -> list[CrmRecord]:
        async with http_crm(server, **options) as crm:
            return [await crm.lookup(n) for n in numbers]

    return run(go())


# --- FileCrm ---------------------------------------------------------------------------------

GOLD = CrmRecord("ok", frozenset({"vip", "gold"}), {"tier": "gold", "vip": "true", "visits": "3"})


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param(
            "crm.csv",
            "number,tags,tier,vip,visits,note\n+15551234567, vip; gold ;,gold,true,3,\n+15557654321,,,,,\n",
            id="csv",
        ),
        pytest.param(
            "crm.json",
            '{"+15551234567": {"tags": ["vip", "gold"], "tier": "gold", "vip": true, "visits": 3,'
            ' "note": null},\n "+15557654321": {}}',
            id="json",
        ),
        pytest.param(
            "crm.yaml",
            "+15551234567: {tags: [vip, gold], tier: gold, vip: true, visits: 3, note: ~}\n+15557654321:\n",
            id="yaml",
        ),
        pytest.param(
            "crm.yml",
            "'+1 555 123 4567':\n  tags: [vip, gold]\n  tier: gold\n  vip: true\n  visits: 3\n"
            "+1-555-765-4321: {tags: []}\n",
            id="yml-spaced-numbers",
        ),
    ],
)
def test_file_formats_give_the_same_records(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    crm = FileCrm.from_path(path)
    assert crm.get(VIP) == GOLD
    assert crm.get(OTHER) == CrmRecord("ok")
    assert crm.get("+15550000000") == CrmRecord("not_found")
    assert run(crm.lookup(VIP)) == GOLD


@pytest.mark.parametrize(
    ("name", "text", "region", "number"),
    [
        pytest.param("crm.csv", "number,tier\n(555) 123-4567,gold\n", "US", "+15551234567", id="csv-us"),
        pytest.param("crm.csv", "Number,tier\n020 7946 0018,gold\n", "GB", "+442079460018", id="csv-gb"),
        pytest.param("crm.yaml", "020 7946 0018: {tier: gold}\n", "GB", "+442079460018", id="yaml-gb"),
        pytest.param("crm.json", '{"+44 20 7946 0018": {"tier": "gold"}}', "US", "+442079460018", id="intl"),
    ],
)
def test_file_numbers_are_normalised(tmp_path: Path, name: str, text: str, region: str, number: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert FileCrm.from_path(path, region=region).get(number) == CrmRecord("ok", fields={"tier": "gold"})


def test_file_csv_quoted_cells_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(
        '\ufeffnumber,tags,address\n+15551234567,vip,"1 Main St\nSpringfield"\n', encoding="utf-8"
    )
    record = FileCrm.from_path(path).get(VIP)
    assert record == CrmRecord("ok", frozenset({"vip"}), {"address": "1 Main St\nSpringfield"})


NATIONAL = 'not a phone number: "%s" (no +country and no region)'
NESTED = 'field "address" must be a plain value, not a list or mapping: {"city": "x"}'


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        pytest.param(
            "crm.csv",
            "phone,tags\n+15551234567,vip\n",
            1,
            'the header has no "number" column: "phone,tags"',
            id="no-number",
        ),
        pytest.param(
            "crm.csv", "number,tier,tier\n", 1, 'column "tier" appears twice in the header', id="dup-column"
        ),
        pytest.param(
            "crm.csv",
            "number\n+15551234567\nnot-a-number\n",
            3,
            'not a phone number: "not-a-number"',
            id="bad-number",
        ),
        pytest.param(
            "crm.csv", "number\n5551234567\n", 2, NATIONAL % "5551234567", id="national-without-region"
        ),
        pytest.param(
            "crm.csv",
            "number,a\n+15551234567,b,c\n",
            2,
            '3 cells but the header has 2 columns (extra "c")',
            id="extra-cell",
        ),
        pytest.param(
            "crm.csv",
            "number\n+15551234567,x\n",
            2,
            '2 cells but the header has 1 column (extra "x")',
            id="extra-cell-one-column",
        ),
        pytest.param(
            "crm.csv",
            'number,note\n+15557654321,"two\nlines"\n+1 555 765 4321,\n',
            4,
            '"+1 555 765 4321" is +15557654321 again (first on line 2)',
            id="duplicate-after-multiline-cell",
        ),
        pytest.param(
            "crm.json",
            '{\n "+15551234567": {,}\n}',
            2,
            "not JSON: Expecting property name enclosed in double quotes",
            id="json-syntax",
        ),
        pytest.param(
            "crm.json", '["+15551234567"]', 1, "the top level must map numbers to contacts", id="json-list"
        ),
        pytest.param(
            "crm.json", '{\n "+15551234567": {},\n "12": {}\n}', 3, NATIONAL % "12", id="json-bad-number"
        ),
        pytest.param(
            "crm.json",
            '{\n "+15551234567": {"tags": "vip"}\n}',
            2,
            '"tags" must be a list of words, not "vip"',
            id="json-tags",
        ),
        pytest.param(
            "crm.json",
            '{"+15551234567": ["vip"]}',
            1,
            'a contact must be a mapping of tags and fields, not ["vip"]',
            id="json-list-contact",
        ),
        pytest.param(
            "crm.yaml",
            "+15551234567:\n  tags: [vip]\n+15557654321:\n  address: {city: x}\n",
            3,
            NESTED,
            id="yaml-nested",
        ),
        pytest.param(
            "crm.txt",
            "number\n",
            None,
            'unknown CRM file type ".txt": use .csv, .json, .yaml or .yml',
            id="suffix",
        ),
    ],
)
def test_file_problems_name_the_line(
    tmp_path: Path, name: str, text: str, line: int | None, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CrmFileError) as caught:
        FileCrm.from_path(path)
    assert (caught.value.line, caught.value.message) == (line, message)
    assert str(caught.value) == (message if line is None else f"line {line}: {message}")


@pytest.mark.parametrize(
    ("text", "line", "start"),
    [
        pytest.param(
            "+15551234567: {}\n+15551234567: {}\n", 2, 'duplicate key "+15551234567"', id="duplicate"
        ),
        pytest.param("+15551234567: [\n", 2, "YAML syntax:", id="syntax"),
    ],
)
def test_file_yaml_problems_come_from_the_policy_reader(
    tmp_path: Path, text: str, line: int, start: str
) -> None:
    path = tmp_path / "crm.yaml"
    path.write_text(text)
    with pytest.raises(CrmFileError) as caught:
        FileCrm.from_path(path)
    assert caught.value.line == line
    assert caught.value.message.startswith(start)


def test_file_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(CrmFileError, match=r"^cannot read nope\.csv: No such file or directory$"):
        FileCrm.from_path(tmp_path / "nope.csv")
    for name in ("empty.csv", "empty.json", "empty.yaml"):
        (tmp_path / name).write_text("{}" if name.endswith(".json") else "")
        assert FileCrm.from_path(tmp_path / name).get(VIP).status == "not_found"


# --- HttpCrm outcomes ------------------------------------------------------------------------

OK = CrmRecord(
    "ok", frozenset({"vip", "gold"}), {"tier": "gold", "name": "Ada", "vip": "true", "visits": "3"}
)


@pytest.mark.parametrize(
    ("mode", "number", "expected"),
    [
        pytest.param("ok", VIP, OK, id="ok"),
        pytest.param("ok", OTHER, CrmRecord("not_found"), id="unknown-number"),
        pytest.param("not_found", VIP, CrmRecord("not_found"), id="not-found"),
        pytest.param("slow", VIP, OK, id="slow-within-timeout"),
        pytest.param("500", VIP, CrmRecord("error", reason="HTTP 500"), id="http-500"),
        pytest.param("garbage", VIP, CrmRecord("error", reason="body is not JSON"), id="garbage"),
        pytest.param("drop", VIP, CrmRecord("error", reason="connection dropped"), id="drop"),
        pytest.param("hang", VIP, CrmRecord("timeout", reason=f"timed out after {TIMEOUT_MS} ms"), id="hang"),
    ],
)
def test_http_outcomes(crm_server: CrmServer, mode: Mode, number: str, expected: CrmRecord) -> None:
    crm_server.mode = mode
    crm_server.slow_ms = 20
    started = time.perf_counter()
    [record] = lookups(crm_server, number, timeout_ms=TIMEOUT_MS)
    elapsed = time.perf_counter() - started
    assert record == CrmRecord(
        expected.status, expected.tags, expected.fields, record.ms, False, expected.reason
    )
    assert 0 < record.ms <= elapsed * 1000
    assert elapsed < TIMEOUT_MS / 1000 + SLACK_S
    assert crm_server.seen[0].phone == number  # ${caller} was URL-encoded: a raw '+' reads as a space


def test_http_slow_past_the_timeout_is_a_timeout(crm_server: CrmServer) -> None:
    crm_server.mode = "slow"
    crm_server.slow_ms = 5000
    started = time.perf_counter()
    [record] = lookups(crm_server, VIP, timeout_ms=TIMEOUT_MS)
    assert (record.status, record.reason) == ("timeout", f"timed out after {TIMEOUT_MS} ms")
    assert TIMEOUT_MS / 1000 <= time.perf_counter() - started < TIMEOUT_MS / 1000 + SLACK_S


def test_http_refused() -> None:
    async def go() -> CrmRecord:
        async with HttpCrm(url=refused_url() + "/contacts?phone=${caller}") as crm:
            return await crm.lookup(VIP)

    record = run(go())
    assert (record.status, record.reason) == ("error", "connection refused")


def test_http_per_number_mode(crm_server: CrmServer) -> None:
    crm_server.contacts[OTHER] = {"tags": ["new"]}
    crm_server.modes[VIP] = "500"
    assert [r.status for r in lookups(crm_server, VIP, OTHER)] == ["error", "ok"]


@pytest.mark.parametrize(
    ("contact", "tags", "fields"),
    [
        pytest.param({"tier": "gold"}, frozenset(), {"tier": "gold"}, id="no-tags-key"),
        pytest.param({"tags": "vip", "tier": 2}, frozenset(), {"tier": "2"}, id="tags-a-string"),
        pytest.param({"tags": ["vip", 3]}, frozenset(), {}, id="tags-not-all-strings"),
        pytest.param(
            {"tags": [], "tier": {"a": 1}, "name": None}, frozenset(), {}, id="nested-and-null-fields"
        ),
        pytest.param(
            {"tags": ["x"], "tier": 1.5, "vip": False},
            frozenset({"x"}),
            {"tier": "1.5", "vip": "false"},
            id="scalars",
        ),
    ],
)
def test_http_paths_that_miss_still_ok(
    crm_server: CrmServer, contact: dict[str, Any], tags: frozenset[str], fields: dict[str, str]
) -> None:
    crm_server.contacts[VIP] = contact
    [record] = lookups(
        crm_server, VIP, fields={**FIELDS, "deep": "results.7.tier", "index": "contact.tier.0"}
    )
    assert (record.status, record.tags, record.fields) == ("ok", tags, fields)


def test_http_without_paths_gives_no_tags_or_fields(crm_server: CrmServer) -> None:
    [record] = lookups(crm_server, VIP, tags=None, fields=None)
    assert (record.status, record.tags, record.fields) == ("ok", frozenset(), {})


def test_http_unexpected_exception_is_an_error() -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom")

    async def go() -> CrmRecord:
        async with HttpCrm(url="http://crm.test/c/${caller}", transport=httpx.MockTransport(explode)) as crm:
            return await crm.lookup(VIP)

    record = run(go())
    assert (record.status, record.reason) == ("error", "RuntimeError")


# --- cache and single-flight -----------------------------------------------------------------


def test_cache_hit_within_ttl_and_expiry(crm_server: CrmServer) -> None:
    clock = Clock()

    async def go() -> list[CrmRecord]:
        async with http_crm(crm_server, cache_ttl_s=60, clock=clock) as crm:
            first, hit = await crm.lookup(VIP), await crm.lookup(VIP)
            clock.now += 59.9
            still = await crm.lookup(VIP)
            clock.now += 0.1
            return [first, hit, still, await crm.lookup(VIP)]

    first, hit, still, expired = run(go())
    assert (first.cached, hit.cached, still.cached, expired.cached) == (False, True, True, False)
    assert hit == CrmRecord("ok", OK.tags, OK.fields, hit.ms, True)
    assert hit.ms < first.ms
    assert crm_server.requests == 2


@pytest.mark.parametrize(
    ("mode", "status", "requests"),
    [
        pytest.param("not_found", "not_found", 1, id="not-found-cached"),
        pytest.param("500", "error", 2, id="500-not-cached"),
        pytest.param("garbage", "error", 2, id="garbage-not-cached"),
        pytest.param("drop", "error", 2, id="drop-not-cached"),
        pytest.param("hang", "timeout", 2, id="timeout-not-cached"),
    ],
)
def test_cache_keeps_answers_not_failures(
    crm_server: CrmServer, mode: Mode, status: str, requests: int
) -> None:
    crm_server.mode = mode
    records = lookups(crm_server, VIP, VIP, timeout_ms=TIMEOUT_MS)
    assert [r.status for r in records] == [status, status]
    assert crm_server.requests == requests


def test_cache_disabled_with_zero_ttl(crm_server: CrmServer) -> None:
    assert [r.cached for r in lookups(crm_server, VIP, VIP, cache_ttl_s=0)] == [False, False]
    assert crm_server.requests == 2


def test_cache_evicts_the_oldest(crm_server: CrmServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router.crm.clients, "CACHE_SIZE", 2)
    numbers = ["+15550000001", "+15550000002", "+15550000003"]
    records = lookups(crm_server, *numbers, numbers[2], numbers[1], numbers[0])
    assert [r.cached for r in records] == [False, False, False, True, True, False]
    assert crm_server.requests == 4


def test_single_flight_shares_one_request(crm_server: CrmServer) -> None:
    crm_server.mode = "slow"
    crm_server.slow_ms = 50

    async def go() -> list[CrmRecord]:
        async with http_crm(crm_server) as crm:
            return await asyncio.gather(*(crm.lookup(VIP) for _ in range(20)))

    records = run(go())
    assert {(r.status, r.tags, r.cached) for r in records} == {("ok", OK.tags, False)}
    assert crm_server.requests == 1


def test_single_flight_survives_a_cancelled_caller(crm_server: CrmServer) -> None:
    crm_server.mode = "slow"
    crm_server.slow_ms = 50

    async def go() -> tuple[asyncio.Task[CrmRecord], CrmRecord]:
        async with http_crm(crm_server) as crm:
            first = asyncio.create_task(crm.lookup(VIP))
            second = asyncio.create_task(crm.lookup(VIP))
            await asyncio.sleep(0)  # one turn: both are now waiting on the shared fetch
            first.cancel()
            return first, await second

    first, second = run(go())
    assert first.cancelled()
    assert second.status == "ok"
    assert crm_server.requests == 1


def test_single_flight_late_joiner_ends_with_the_fetch(crm_server: CrmServer) -> None:
    crm_server.mode = "hang"

    async def go() -> list[CrmRecord]:
        async with http_crm(crm_server, timeout_ms=TIMEOUT_MS) as crm:
            first = asyncio.create_task(crm.lookup(VIP))
            await asyncio.sleep(TIMEOUT_MS / 2000)  # join half-way through the shared fetch
            return [await crm.lookup(VIP), await first]

    late, first = run(go())
    assert (late.status, first.status) == ("timeout", "timeout")
    assert late.ms < TIMEOUT_MS * 0.75 < first.ms
    assert crm_server.requests == 1


def test_aclose_ends_lookups_in_flight(crm_server: CrmServer) -> None:
    crm_server.mode = "hang"

    async def go() -> CrmRecord:
        crm = http_crm(crm_server)
        pending = asyncio.create_task(crm.lookup(VIP))
        await asyncio.sleep(0)
        await crm.aclose()
        return await pending

    record = run(go())
    assert (record.status, record.reason) == ("error", "CRM client closed")


# --- configuration ---------------------------------------------------------------------------


def test_env_headers_reach_the_crm(crm_server: CrmServer) -> None:
    headers = {
        "Authorization": "Bearer ${env.CRM_TOKEN}",
        "X-Tenant": "${env.TENANT}-eu",
        "Accept": "application/vnd.crm+json",  # replaces the default, case-insensitively
    }
    lookups(crm_server, VIP, headers=headers, env={"CRM_TOKEN": "s3cret", "TENANT": "acme"})
    seen = crm_server.seen[0]
    assert (seen.path, seen.phone) == ("/contacts", VIP)
    assert {k: seen.headers[k] for k in ("authorization", "x-tenant", "accept", "user-agent")} == {
        "authorization": "Bearer s3cret",
        "x-tenant": "acme-eu",
        "accept": "application/vnd.crm+json",
        "user-agent": "vapi-router",
    }
    assert seen.names.count("accept") == 1


@pytest.mark.parametrize(
    ("options", "error"),
    [
        pytest.param(
            {"headers": {"Authorization": "Bearer ${env.CRM_TOKEN}"}, "env": {"OTHER": "s3cret"}},
            "environment variable CRM_TOKEN is not set (used in a CRM header)",
            id="missing-env",
        ),
        pytest.param(
            {"url": "crm.example.com/c?p=${caller}"}, "the CRM url must be an absolute", id="no-scheme"
        ),
        pytest.param({"tags": "contact..tags"}, '"contact..tags" is not a dotted path', id="bad-path"),
    ],
)
def test_http_configuration_errors(options: dict[str, Any], error: str) -> None:
    settings: dict[str, Any] = {"url": "https://crm.example.com/c?p=${caller}"} | options
    with pytest.raises(ValueError) as caught:
        HttpCrm(**settings)
    assert str(caught.value).startswith(error)
    assert "s3cret" not in str(caught.value)


def test_a_hanging_crm_cannot_queue_lookups_past_the_pool(crm_server: CrmServer) -> None:
    """More concurrent lookups than connections: the extra ones fail at once instead of queueing
    behind hung requests (which made replies late under load), and every fetch is released
    when its callers give up."""
    crm_server.mode = "hang"
    crm = http_crm(crm_server, timeout_ms=300)
    numbers = [f"+1415555{i:04d}" for i in range(POOL_SIZE + 50)]

    async def go() -> tuple[list[CrmRecord], float, int]:
        started = time.perf_counter()
        lookups = asyncio.gather(*(crm.lookup(n) for n in numbers))
        await asyncio.sleep(0.05)  # every lookup has started; POOL_SIZE of them hang
        # what the server asks before it waits: a new number fails at once, a number in
        # flight joins its request
        assert crm.cached("+14155559999") == CrmRecord(
            "error", reason="CRM overloaded: too many lookups in flight"
        )
        assert crm.cached(numbers[0]) is None
        records = await lookups
        elapsed = time.perf_counter() - started
        left = len(crm._inflight)
        await crm.aclose()
        return list(records), elapsed, left

    records, elapsed, left = run(go())
    statuses = [r.status for r in records]
    assert statuses.count("timeout") == POOL_SIZE
    assert statuses.count("error") == 50
    assert {r.reason for r in records if r.status == "error"} == {
        "CRM overloaded: too many lookups in flight"
    }
    assert elapsed < 1.5, elapsed  # 300 ms timeout + slack on a shared machine; queueing took seconds
    assert left == 0


def test_file_reports_every_bad_row_and_a_quote_inside_a_cell_is_text(tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text('number,note\n+15551234567,5" screen\nnope,x\n+15557654321\n+15550000000,"open\n')
    with pytest.raises(CrmFileError) as caught:
        FileCrm.from_path(path)
    assert [(p.line, p.col, p.message) for p in caught.value.problems] == [
        (3, 1, 'not a phone number: "nope"'),
        (4, 13, 'short row: 1 cell but the header has 2 columns (no "note")'),
        (5, 14, 'unterminated quote: "open" runs to the end of the file'),
    ]
    path.write_text('number,note\n+15551234567,5" screen\n')
    assert FileCrm.from_path(path).get("+15551234567").fields == {"note": '5" screen'}
