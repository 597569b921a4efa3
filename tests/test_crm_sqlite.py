"""crm.sqlite and `vapi-router crm import`: bad rows as FILE:LINE:COL in one run, the database
left alone on any problem, an atomic replace seen without a policy reload, lint of columns."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from serverutil import InProcess, payload, reply_problems

from router.cli import main
from router.crm.sqlite import SqliteCrm
from router.policy.loader import lint_path
from router.tools.crmimport import import_file

GOOD_CSV = "number,tags,tier,name\n+14155550101,vip;gold,gold,Ada\n+14155550102,,silver,\n"


def imported(tmp_path: Path, text: str = GOOD_CSV, name: str = "crm.csv") -> Path:
    source = tmp_path / name
    source.write_text(text, encoding="utf-8")
    db = tmp_path / "customers.db"
    result = import_file(source, db)
    assert result.problems == ()
    return db


def test_import_and_lookup(tmp_path: Path) -> None:
    crm = SqliteCrm(imported(tmp_path))
    ada = crm.get("+14155550101")
    assert (ada.status, ada.tags, dict(ada.fields)) == (
        "ok",
        {"vip", "gold"},
        {"tier": "gold", "name": "Ada"},
    )
    bare = crm.get("+14155550102")
    assert (bare.status, bare.tags, dict(bare.fields)) == ("ok", frozenset(), {"tier": "silver"})
    assert crm.get("+14155550199").status == "not_found"
    assert crm.columns == {"tier", "name"}
    crm.close()


def test_every_bad_row_is_reported_and_the_database_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = imported(tmp_path)
    before = db.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "tier,number,tags\n"
        "gold,+14155550101,vip\n"
        'gold,"not a number",vip\n'
        "gold,+1 415 555 0101,\n"
        "silver,,\n"
        "gold,+14155550103,vip,surplus\n"
        "gold,4155550104,\n",
        encoding="utf-8",
    )
    assert main(["crm", "import", str(bad), "--into", str(db)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f'{bad}:3:6: error: not a phone number: "not a number" [crm-import]',
        f'{bad}:4:6: error: "+1 415 555 0101" is +14155550101 again (first on line 2) [crm-import]',
        f"{bad}:5:8: error: no number [crm-import]",
        f'{bad}:6:23: error: 4 cells but the header has 3 columns (extra "surplus") [crm-import]',
        f'{bad}:7:6: error: not a phone number: "4155550104" (no +country and no region: use --region) '
        "[crm-import]",
    ]
    assert err.strip() == f"5 problems; {db} was not changed"
    assert db.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_region_and_json_and_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_file = tmp_path / "national.csv"
    csv_file.write_text("number,tier\n(415) 555-0101,gold\n", encoding="utf-8")
    db = tmp_path / "c.db"
    assert main(["crm", "import", str(csv_file), "--into", str(db), "--region", "US"]) == 0
    assert capsys.readouterr().out == f"imported 1 customer into {db} (fields: tier)\n"
    assert SqliteCrm(db).get("+14155550101").fields == {"tier": "gold"}
    data = tmp_path / "crm.json"
    data.write_text(
        '{\n  "+14155550101": {"tags": ["vip"], "tier": "gold"},\n  "nope": {"tier": 1},\n'
        '  "+14155550102": {"tags": "vip"}\n}\n',
        encoding="utf-8",
    )
    assert main(["crm", "import", str(data), "--into", str(db)]) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f'{data}:3:3: error: not a phone number: "nope" [crm-import]',
        f'{data}:4:3: error: "tags" must be a list of words, not "vip" [crm-import]',
    ]
    yaml_file = tmp_path / "crm.yaml"
    yaml_file.write_text('"+14155550101": {tags: [vip], tier: 3}\n"+14155550102": {}\n', encoding="utf-8")
    assert main(["crm", "import", str(yaml_file), "--into", str(db)]) == 0
    crm = SqliteCrm(db)
    assert (crm.get("+14155550101").tags, crm.get("+14155550101").fields) == ({"vip"}, {"tier": "3"})
    assert crm.get("+14155550102").status == "ok"


def test_an_atomic_replace_is_seen_without_a_reload(tmp_path: Path) -> None:
    db = imported(tmp_path)
    now = [0.0]
    crm = SqliteCrm(db, check_interval_s=1.0, clock=lambda: now[0])
    assert crm.get("+14155550101").fields["tier"] == "gold"
    (tmp_path / "v2.csv").write_text("number,tier\n+14155550101,platinum\n", encoding="utf-8")
    assert import_file(tmp_path / "v2.csv", db).problems == ()
    assert crm.get("+14155550101").fields["tier"] == "gold"  # checked at most once a second
    now[0] = 1.0
    assert dict(crm.get("+14155550101").fields) == {"tier": "platinum"}
    assert crm.get("+14155550102").status == "not_found"
    os.unlink(db)  # gone for a moment (mid-deploy): the open file keeps serving
    now[0] = 2.0
    assert crm.get("+14155550101").status == "ok"
    crm.close()


def test_a_table_without_tags(tmp_path: Path) -> None:
    db = tmp_path / "plain.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE customers (number TEXT PRIMARY KEY, tier TEXT, visits INTEGER)")
    con.execute("INSERT INTO customers VALUES ('+14155550101', 'gold', 3)")
    con.commit()
    con.close()
    record = SqliteCrm(db).get("+14155550101")
    assert (record.status, record.tags, dict(record.fields)) == (
        "ok",
        frozenset(),
        {"tier": "gold", "visits": "3"},
    )


POLICY = """\
version: 1
crm: {sqlite: customers.db}
targets:
  front-desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
routes:
  - id: vip
    when: {tags: [vip], crm: {tierr: gold}}
    then:
      assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004
      assistantOverrides: {variableValues: {who: "${crm.nmae}"}}
default: front-desk
"""


def test_lint_reads_the_schema(tmp_path: Path) -> None:
    imported(tmp_path)
    (tmp_path / "p.yaml").write_text(POLICY, encoding="utf-8")
    assert [str(p) for p in lint_path(tmp_path / "p.yaml").problems] == [
        f'{tmp_path}/p.yaml:7:31: error: crm.tierr: the table "customers" in "customers.db" has no field '
        '"tierr" (did you mean "tier"?); its fields: name, tier [unknown-crm-field]',
        f'{tmp_path}/p.yaml:10:50: error: ${{crm.nmae}}: the table "customers" in "customers.db" has no '
        'field "nmae" (did you mean "name"?); its fields: name, tier [bad-template]',
    ]
    (tmp_path / "customers.db").unlink()
    assert [p.code for p in lint_path(tmp_path / "p.yaml").problems] == ["crm-file"]


def message(caller: str) -> dict[str, Any]:
    data = payload("assistant-request.pstn.json")
    data["message"]["customer"]["number"] = caller
    data["message"]["call"]["customer"]["number"] = caller
    return data


def test_serves_from_sqlite_and_picks_up_a_replace(tmp_path: Path) -> None:
    imported(tmp_path)
    policy = POLICY.replace("tierr", "tier").replace("nmae", "name")
    with InProcess(tmp_path, policy) as srv, srv.client() as client:
        reply = srv.post_webhook(client, message("+14155550101"))
        assert reply.status_code == 200 and reply_problems("assistant-request", reply.json()) == []
        assert reply.json()["assistantOverrides"]["variableValues"] == {"who": "Ada"}
        (tmp_path / "v2.csv").write_text("number,tags,tier,name\n+14155550101,vip,gold,Grace\n")
        assert import_file(tmp_path / "v2.csv", tmp_path / "customers.db").problems == ()
        os.utime(tmp_path / "customers.db")
        deadline = 50
        while deadline and srv.post_webhook(client, message("+14155550101")).json().get(
            "assistantOverrides", {}
        ).get("variableValues") != {"who": "Grace"}:
            deadline -= 1
            time.sleep(0.05)
        assert deadline, "the replaced database was not picked up within 2.5 s"


def test_a_locked_file_is_an_error_at_once_and_the_reply_comes_within_the_deadline(tmp_path: Path) -> None:
    db = imported(tmp_path)
    policy = POLICY.replace("tierr", "tier").replace("nmae", "name")
    crm = SqliteCrm(db)
    with InProcess(tmp_path, policy) as srv, srv.client() as client:
        assert srv.post_webhook(client, message("+14155550101")).json()["assistantOverrides"]
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("BEGIN EXCLUSIVE")  # another process writes the file in place
        try:
            start = time.perf_counter()
            record = crm.get("+14155550101")
            assert time.perf_counter() - start < 0.1  # not sqlite3's default busy timeout of 5 s
            assert (record.status, record.reason) == ("error", "SQLite: OperationalError")
            start = time.perf_counter()
            reply = srv.post_webhook(client, message("+14155550102"))
            assert time.perf_counter() - start < 1.0
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert reply.status_code == 200 and reply.json() == {
            "assistantId": "2ccabf54-ccd8-4dff-ae93-e830159c8004"  # front-desk: no crm_status ok
        }
        assert srv.wait_log(lambda r: r.get("crm_status") == "error")[-1]["fallback_reason"] is None
    assert crm.get("+14155550101").status == "ok"  # usable again at once
    crm.close()


def test_the_lookups_of_one_turn_of_the_loop_share_one_read_transaction(tmp_path: Path) -> None:
    db = imported(tmp_path)
    crm = SqliteCrm(db)
    writer = sqlite3.connect(db, isolation_level=None, timeout=0)

    async def turns() -> None:
        assert [crm.get(n).status for n in ("+14155550101", "+14155550102", "+14155550199")] == [
            "ok",
            "ok",
            "not_found",
        ]
        with pytest.raises(sqlite3.OperationalError):  # the shared lock is held within the turn
            writer.execute("BEGIN EXCLUSIVE")
        await asyncio.sleep(0)  # the turn ends: so does the read transaction
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("UPDATE customers SET tier = 'platinum' WHERE number = '+14155550101'")
        writer.execute("COMMIT")  # written in place: seen by the next lookup
        assert [crm.get("+14155550101").fields["tier"] for _ in range(2)] == ["platinum", "platinum"]

    asyncio.run(turns())
    writer.execute("BEGIN EXCLUSIVE")  # nothing held once the loop is gone
    writer.execute("ROLLBACK")

    async def two_lookups() -> None:
        crm.get("+14155550101")
        crm.get("+14155550102")  # a read transaction until the end of this turn
        asyncio.get_running_loop().stop()  # ...which never comes: the loop stops first

    loop = asyncio.new_event_loop()
    task = loop.create_task(two_lookups())
    loop.run_forever()
    assert task.done()
    loop.close()
    assert crm.get("+14155550101").status == "ok"  # outside a loop: the stale turn is ended
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("ROLLBACK")
    writer.close()
    crm.close()


def test_the_offline_tools_read_the_sqlite_crm_as_the_server_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """explain, test and replay look a caller up in the SQLite database (it is local), with no
    warning: the same record, route and reply as the running server, not an assumed not_found."""
    imported(tmp_path)
    policy = POLICY.replace("tierr", "tier").replace("nmae", "name")
    with InProcess(tmp_path, policy) as srv, srv.client() as client:
        live = srv.post_webhook(client, message("+14155550101")).json()
    assert live["assistantOverrides"]["variableValues"] == {"who": "Ada"}
    policy_file = str(tmp_path / "policy.yaml")

    call = ["--caller", "+14155550101", "--dialled", "+16505550117"]
    assert main(["explain", policy_file, *call, "--json"]) == 0
    out, err = capsys.readouterr()
    assert (json.loads(out)["route"], json.loads(out)["reply"], err) == ("vip", live, "")

    (tmp_path / "policy.test.yaml").write_text(
        "cases:\n"
        "  - name: Ada is a gold vip in the database\n"
        '    call: {caller: "+14155550101", dialled: "+16505550117"}\n'
        "    expect: {route: vip, reply: " + json.dumps(live) + "}\n"
        "  - name: a number not in the database\n"
        '    call: {caller: "+14155550199", dialled: "+16505550117"}\n'
        "    expect: {route: default}\n",
        encoding="utf-8",
    )
    assert main(["test", policy_file]) == 0
    assert capsys.readouterr() == ("2 cases, 2 passed, 0 failed\n", "")

    requests = tmp_path / "calls.jsonl"  # no captured CRM facts: looked up in the database
    requests.write_text(json.dumps(message("+14155550101")) + "\n", encoding="utf-8")
    assert main(["replay", policy_file, "--requests", str(requests), "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    [decision] = report["decisions"]
    assert (decision["route"], decision["reply"], decision["crm_assumed"], err) == ("vip", live, False, "")
    assert report["crm_assumed"]["count"] == 0
