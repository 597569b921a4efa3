"""CRM facts offline, one rule for `explain`, `test` and `replay`: as the server would see them. [read]

Without a CRM: `disabled`. With the embedded file: the caller's record from it. An anonymous
caller, or a live HTTP CRM (never called offline): `not_found`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from router.crm.clients import FileCrm
from router.runtime.facttypes import Facts
from router.runtime.model import Policy


def file_crm(policy: Policy) -> FileCrm | None:
    """The policy's embedded CRM file, read once; None for no CRM or an HTTP CRM."""
    if policy.crm is not None and policy.crm.file:
        return FileCrm.from_path(Path(policy.crm.file), region=policy.settings.region)
    return None


def with_offline_crm(policy: Policy, facts: Facts, crm: FileCrm | None) -> Facts:
    """`facts` with the CRM facts the server would look up (`crm` from file_crm(policy))."""
    if policy.crm is None:
        return replace(facts, crm_status="disabled")
    if facts.caller is None or crm is None:
        return replace(facts, crm_status="not_found")
    record = crm.get(facts.caller)
    return replace(facts, crm_status=record.status, tags=record.tags, crm=dict(record.fields))
