"""CRM facts offline, one rule for `explain`, `test` and `replay`: as the server would see them. [read]

Without a CRM: `disabled`. With a CRM the tools can read exactly as the server does (the
embedded file, the SQLite database): the caller's record from it. An anonymous caller:
`not_found` (the server looks nobody up either). A CRM that is never called offline (http,
postgres): `not_found` is assumed, and `assumes_crm` says when a decision depended on that
assumption, so that each tool can say so rather than report an invented fact as the truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Final

from router.crm.clients import FileCrm
from router.crm.sqlite import SqliteCrm
from router.policy.compiler import target_reads_crm
from router.runtime.decide import evaluate_for, wants_crm
from router.runtime.facttypes import CrmStatus, Facts
from router.runtime.model import Policy

LocalCrm = FileCrm | SqliteCrm
ASSUMED: Final[CrmStatus] = "not_found"  # the crm_status the tools assume for a CRM they cannot call


@contextmanager
def local_crm(policy: Policy) -> Iterator[LocalCrm | None]:
    """The policy's CRM when it can be read offline as the server reads it (the embedded file,
    the SQLite database), closed at the end of the block; None for no CRM, http or postgres."""
    s = policy.crm
    crm: LocalCrm | None = None
    if s is not None and s.file:
        crm = FileCrm.from_path(Path(s.file), region=policy.settings.region)
    elif s is not None and s.sqlite:
        crm = SqliteCrm(Path(s.sqlite))  # as router.server.live.make_crm opens it
    try:
        yield crm
    finally:
        if isinstance(crm, SqliteCrm):
            crm.close()


def remote_kind(policy: Policy) -> str | None:
    """`http` or `postgres` when the policy's CRM is one the tools never call, else None."""
    s = policy.crm
    if s is None or s.file or s.sqlite:
        return None
    return "postgres" if s.postgres is not None else "http"


def with_offline_crm(policy: Policy, facts: Facts, crm: LocalCrm | None) -> Facts:
    """`facts` with the CRM facts the server would look up (`crm` from local_crm(policy));
    for a CRM that cannot be called offline, crm_status ASSUMED (see assumes_crm)."""
    if policy.crm is None:
        return replace(facts, crm_status="disabled")
    if facts.caller is None or crm is None:
        return replace(facts, crm_status=ASSUMED)
    record = crm.get(facts.caller)
    return replace(facts, crm_status=record.status, tags=record.tags, crm=dict(record.fields))


def assumes_crm(policy: Policy, facts: Facts, crm: LocalCrm | None, *, transfer: bool = False) -> bool:
    """Whether with_offline_crm made up CRM facts that this call's decision depends on: the
    policy's CRM cannot be read offline, the caller has a number (an anonymous one is
    `not_found` live too), and the decision, before any CRM facts are in, stops for them or
    answers a reply that reads them: exactly when the server would have looked the caller up."""
    if crm is not None or remote_kind(policy) is None or facts.caller is None:
        return False
    bare = replace(facts, crm_status=None, tags=frozenset(), crm={})
    try:
        decision = evaluate_for(policy, bare, transfer=transfer)
    except Exception:  # a regex past its time limit: the fallback answers, on no CRM fact
        return False
    return wants_crm(decision, target_reads_crm)
