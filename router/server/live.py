"""Live: one loaded policy with what serving it needs (its CRM client, its state store),
built once per (re)load; unchanged clients and stores are kept across reloads. [I/O]"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from router.crm.clients import CrmClient, FileCrm, HttpCrm
from router.policy.compiler import target_reads_crm
from router.policy.condcompile import reads_crm
from router.runtime.evaluator import asks_crm_first
from router.runtime.model import Policy, Target
from router.state.base import StateStore
from router.state.make import make_state


@dataclass(frozen=True, slots=True)
class Live:
    """One loaded policy with what serving it needs."""

    policy: Policy
    crm: CrmClient | None
    loaded_at: float
    crm_targets: frozenset[int] = field(default_factory=frozenset)  # id() of targets whose reply reads CRM
    crm_stamp: tuple[int, int] | None = None  # the embedded CRM file's (mtime, size) when it was read
    state: StateStore | None = None  # live call state (DESIGN §13); None: the policy reads none
    # the caller is looked up before the evaluation (_looks_up_first)
    crm_first: bool = False

    def reads_crm(self, target: Target) -> bool:
        return id(target) in self.crm_targets


def _all_targets(policy: Policy) -> list[Target]:
    out: list[Target] = []
    stack = [policy.default, policy.fallback, *policy.targets.values()]
    stack += [r.then for r in (*policy.routes, *policy.transfers)]
    while stack:
        t = stack.pop()
        out.append(t)
        stack.extend(v.target for v in t.variants)
    return out


def make_crm(policy: Policy, env: Mapping[str, str]) -> CrmClient | None:
    """The CRM client a policy asks for (raises ValueError/CrmFileError on bad settings)."""
    s = policy.crm
    if s is None:
        return None
    if s.file:
        return FileCrm.from_path(Path(s.file), region=policy.settings.region)
    if s.sqlite:
        from router.crm.sqlite import SqliteCrm

        return SqliteCrm(Path(s.sqlite))
    if s.postgres is not None:
        from router.crm.postgres import POOL_SIZE, PostgresCrm  # asyncpg only when a policy uses it

        return PostgresCrm(
            dsn=s.postgres["dsn"],
            query=s.postgres["query"],
            pool=int(s.postgres.get("pool", POOL_SIZE)),
            timeout_ms=s.timeout_ms,
            env=env,
        )
    assert s.url is not None
    return HttpCrm(
        url=s.url,
        headers=s.headers,
        tags=s.tags,
        fields=s.fields,
        timeout_ms=s.timeout_ms,
        cache_ttl_s=s.cache_ttl_s,
        max_body_bytes=s.max_body_bytes,
        env=env,
        method=s.method,
        body=s.body,
        found=s.found,
        tags_split=s.tags_split,
        number_format=s.number_format,
        oauth2=s.oauth2,
        region=policy.settings.region,
    )


def crm_stamp(policy: Policy) -> tuple[int, int] | None:
    """(mtime, size) of the policy's embedded CRM file: it is no part of the version hash,
    yet a reload must pick up an edit of it."""
    if policy.crm is None or policy.crm.file is None:
        return None
    try:
        st = os.stat(policy.crm.file)
    except OSError:
        return (0, -1)
    return (st.st_mtime_ns, st.st_size)


def build_live(policy: Policy, previous: Live | None, env: Mapping[str, str]) -> Live:
    stamp = crm_stamp(policy)  # before reading: a write meanwhile makes the next reload read again
    # An unchanged HTTP or database CRM keeps its client: its pool and its cache survive the
    # reload (and a SQLite file is not reread: an atomic replace of it is seen by the client).
    if (
        previous is not None
        and previous.policy.crm == policy.crm
        and previous.crm is not None
        and not isinstance(previous.crm, FileCrm)
    ):
        crm: CrmClient | None = previous.crm
    else:
        crm = make_crm(policy, env)
    # Routes share named targets: test each distinct target once, not once per route.
    distinct = {id(t): t for t in _all_targets(policy)}
    crm_targets = frozenset(i for i, t in distinct.items() if target_reads_crm(t))
    state = _state_for(policy, previous, env)
    first = _looks_up_first(policy, crm, crm_targets)
    return Live(policy, crm, time.time(), crm_targets, stamp, state, first)


def _looks_up_first(policy: Policy, crm: CrmClient | None, crm_targets: frozenset[int]) -> bool:
    """Whether an assistant-request's caller is looked up before the policy is evaluated,
    which spares the evaluation that would stop for the CRM (or whose target reads it) and
    be done again on the record. The decision is the same either way: a route that reads
    no CRM fact decides alike with or without them (tests/test_properties.py).

    When every evaluation stops at route 0 for it (asks_crm_first), whatever the CRM. And
    with the file CRM when anything in the policy reads CRM facts: its lookup is a read of
    a dict in memory, cheaper than the evaluation it spares; the decision log then gives
    every call's crm_status, also where the route that decided read none. A CRM that costs
    a database read or a request (SQLite, PostgreSQL, HTTP) is asked only when a route or
    the reply needs it."""
    if crm is None:
        return False
    if asks_crm_first(policy.index):
        return True
    return isinstance(crm, FileCrm) and (
        bool(crm_targets) or any(reads_crm(route.when) for route in policy.routes)
    )


def _state_for(policy: Policy, previous: Live | None, env: Mapping[str, str]) -> StateStore | None:
    """The policy's state store: the previous one while it lives in the same place, so a
    reload keeps every slot held and every flag switched."""
    if policy.state is None:
        return None
    before = previous.policy.state if previous is not None else None
    if (
        previous is not None
        and previous.state is not None
        and before is not None
        and before.where == policy.state.where
    ):
        return previous.state
    return make_state(policy.state, env)


def close_later(crm: CrmClient | StateStore) -> None:
    """Close a replaced client or store once the requests that may still hold it are done."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_later(30, lambda: loop.create_task(crm.aclose()))
