"""PolicyStore: the live policy (+ its CRM client); reload() swaps one reference, only on success. [I/O]

A request takes `store.live` once and finishes on that snapshot, so a reload never changes
a decision half-way. Reloads are serialised; an invalid edit leaves the old policy live.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from router.compiler import target_reads_crm
from router.crm import CrmClient, FileCrm, HttpCrm
from router.errors import PolicyError
from router.loader import Loaded, lint_path
from router.model import Policy, Target

log = logging.getLogger("router.store")


@dataclass(frozen=True, slots=True)
class Live:
    """One loaded policy with what serving it needs."""

    policy: Policy
    crm: CrmClient | None
    loaded_at: float
    crm_targets: frozenset[int] = field(default_factory=frozenset)  # id() of targets whose reply reads CRM

    def reads_crm(self, target: Target) -> bool:
        return id(target) in self.crm_targets


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    version: str
    problems: tuple[str, ...] = ()
    changed: bool = True


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
    assert s.url is not None
    return HttpCrm(
        url=s.url,
        headers=s.headers,
        tags=s.tags,
        fields=s.fields,
        timeout_ms=s.timeout_ms,
        cache_ttl_s=s.cache_ttl_s,
        env=env,
    )


def build_live(policy: Policy, previous: Live | None, env: Mapping[str, str]) -> Live:
    # An unchanged HTTP CRM keeps its client: its pool and its cache survive the reload.
    if previous is not None and previous.policy.crm == policy.crm and isinstance(previous.crm, HttpCrm):
        crm: CrmClient | None = previous.crm
    else:
        crm = make_crm(policy, env)
    crm_targets = frozenset(id(t) for t in _all_targets(policy) if target_reads_crm(t))
    return Live(policy, crm, time.time(), crm_targets)


class PolicyStore:
    """Holds the live policy and reloads it from `path`."""

    def __init__(
        self,
        path: Path,
        *,
        env: Mapping[str, str] | None = None,
        loader: Callable[[Path], Loaded] = lint_path,
        on_change: Callable[[PolicyStore, ReloadResult], None] | None = None,
    ) -> None:
        self.path = path
        self.env: Mapping[str, str] = env if env is not None else os.environ
        self.loader = loader
        self.on_change = on_change
        self.live: Live | None = None
        self.last_reload_ok = False
        self.last_success_at = 0.0
        self.errors: tuple[str, ...] = ()
        self.reloads = 0
        self._lock = asyncio.Lock()

    def _apply(self, loaded: Loaded) -> ReloadResult:
        problems = tuple(str(p) for p in loaded.errors or loaded.problems) if loaded.policy is None else ()
        result: ReloadResult
        if loaded.policy is not None:
            try:
                live = build_live(loaded.policy, self.live, self.env)
            except Exception as exc:  # a CRM file or env variable that cannot be used
                problems = (_crm_problem(loaded, exc),)
            else:
                changed = self.live is None or self.live.policy.version != loaded.policy.version
                old = self.live
                self.live = live
                self.last_reload_ok, self.errors = True, ()
                self.last_success_at = live.loaded_at
                result = ReloadResult(True, loaded.policy.version, changed=changed)
                if old is not None and old.crm is not None and old.crm is not live.crm:
                    _close_later(old.crm)
                self._notify(result)
                return result
        self.last_reload_ok, self.errors = False, problems
        result = ReloadResult(False, self.live.policy.version if self.live else "", problems, changed=False)
        self._notify(result)
        return result

    def _notify(self, result: ReloadResult) -> None:
        self.reloads += 1
        if result.ok:
            log.info("policy %s is live (%s)", result.version, self.path)
        else:
            log.error(
                "policy reload failed; keeping %s:\n%s",
                result.version or "nothing",
                "\n".join(result.problems),
            )
        if self.on_change is not None:
            self.on_change(self, result)

    def load_now(self) -> ReloadResult:
        """Synchronous first load (before serving)."""
        return self._apply(self.loader(self.path))

    async def reload(self) -> ReloadResult:
        """Read, lint and compile off the event loop, then swap; concurrent calls queue up."""
        async with self._lock:
            loaded = await asyncio.to_thread(self.loader, self.path)
            return self._apply(loaded)


def _crm_problem(loaded: Loaded, exc: Exception) -> str:
    for doc in loaded.docs:
        if isinstance(doc.data, dict) and "crm" in doc.data:
            return str(doc.error("/crm", f"crm cannot be used: {exc}", "crm-config"))
    return str(
        PolicyError(str(loaded.docs[0].file if loaded.docs else "?"), 1, 1, f"crm: {exc}", "crm-config")
    )


def _close_later(crm: CrmClient) -> None:
    # Requests in flight may still hold the old client; close it once they are done.
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_later(30, lambda: loop.create_task(crm.aclose()))
