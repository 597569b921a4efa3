"""router.tools.offline: the CRM facts the offline tools decide on, per CRM source and call,
and when those facts are made up (`assumes_crm`: exactly when the server would have looked
the caller up in a CRM the tools cannot call)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.policy.loader import lint_path
from router.runtime.decide import decide
from router.runtime.facttypes import Facts
from router.runtime.model import Policy
from router.tools.crmimport import import_file
from router.tools.offline import assumes_crm, local_crm, remote_kind, with_offline_crm

CUSTOMER, STRANGER, SPAM, GREETED = "+14155550142", "+14155550199", "+15550000001", "+14155550177"
CSV = "number,tags,company\n+14155550142,customer,Acme\n+14155550177,,Initech\n"

SOURCES = {
    "none": "",
    "file": "crm: {file: crm.csv}\n",
    "sqlite": "crm: {sqlite: customers.db}\n",
    "http": "crm:\n  http: {url: 'https://crm.example.invalid/c?phone=${caller}', tags: c.tags,"
    " fields: {company: c.company}}\n",
    "postgres": "crm:\n  postgres: {dsn: 'postgresql://router@db.invalid/crm',"
    " query: 'SELECT tags, company FROM customers WHERE number = $1'}\n",
}
ROUTES = """\
targets:
  customers: {assistantId: 8e9f0a1b-2c3d-4e5f-8a6b-7c8d9e0f1a02}
  greeted:
    assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004
    assistantOverrides: {variableValues: {company: "${crm.company}"}}
routes:
  - id: block-spam
    when: {caller: "+15550000001"}
    then: {error: "Sorry."}
  - id: greeted
    when: {caller: "+14155550177"}
    then: greeted
  - id: customers
    when: {tags: [customer]}
    then: customers
default: {assistantId: 5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f}
"""
NO_CRM_ROUTES = ROUTES.replace("    when: {tags: [customer]}", '    when: {caller: "+1999*"}').replace(
    '{company: "${crm.company}"}', '{company: "none"}'
)


def _policy(tmp_path: Path, source: str) -> Policy:
    (tmp_path / "crm.csv").write_text(CSV)
    assert import_file(tmp_path / "crm.csv", tmp_path / "customers.db").problems == ()
    routes = NO_CRM_ROUTES if source == "none" else ROUTES
    (tmp_path / "policy.yaml").write_text("version: 1\n" + SOURCES[source] + routes)
    loaded = lint_path(tmp_path / "policy.yaml")
    assert loaded.policy is not None, loaded.problems
    return loaded.policy


# (source, caller, crm_status decided on, route, made up?)
TABLE = [
    ("none", CUSTOMER, "disabled", None, False),
    ("file", CUSTOMER, "ok", "customers", False),
    ("file", STRANGER, "not_found", None, False),
    ("sqlite", CUSTOMER, "ok", "customers", False),  # read as the server reads it
    ("sqlite", STRANGER, "not_found", None, False),
    ("sqlite", GREETED, "ok", "greeted", False),
    ("http", CUSTOMER, "not_found", None, True),  # the route's condition needed the lookup
    ("http", GREETED, "not_found", "greeted", True),  # only the reply reads ${crm.company}
    ("http", SPAM, "not_found", "block-spam", False),  # decided before any CRM condition
    ("http", None, "not_found", None, False),  # anonymous: the server looks nobody up either
    ("postgres", CUSTOMER, "not_found", None, True),
    ("postgres", SPAM, "not_found", "block-spam", False),
]


@pytest.mark.parametrize(
    ("source", "caller", "status", "route", "assumed"),
    [pytest.param(*row, id=f"{row[0]}-{row[1] or 'anonymous'}") for row in TABLE],
)
def test_offline_crm_facts_and_when_they_are_made_up(
    tmp_path: Path, source: str, caller: str | None, status: str, route: str | None, assumed: bool
) -> None:
    policy = _policy(tmp_path, source)
    facts = Facts(caller=caller, dialled="+16505550117", at=datetime(2026, 11, 23, 15, 30, tzinfo=UTC))
    with local_crm(policy) as crm:
        assert (crm is None) == (source in ("none", "http", "postgres"))
        decided = with_offline_crm(policy, facts, crm)
        made_up = assumes_crm(policy, facts, crm)
    answer = decide(policy, decided)
    assert (decided.crm_status, answer.route, made_up) == (status, route, assumed)
    assert remote_kind(policy) == (source if source in ("http", "postgres") else None)
    if source == "sqlite" and caller == GREETED:
        assert answer.reply["assistantOverrides"] == {"variableValues": {"company": "Initech"}}
