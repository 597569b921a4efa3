"""PolicyStore: the live policy (+ its CRM client); reload() swaps one reference, only on success. [I/O]

A request takes `store.live` once and finishes on that snapshot, so a reload never changes
a decision half-way. Reloads are serialised; an invalid edit leaves the old policy live.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from router.compiler import compile_policy, target_reads_crm, version_of
from router.crm import CrmClient, FileCrm, HttpCrm
from router.document import document_from_data
from router.errors import PolicyError
from router.loader import Loaded, lint_path, lint_texts, read_texts
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

    def _build(self, loaded: Loaded) -> Live | Exception | None:
        if loaded.policy is None:
            return None
        try:
            return build_live(loaded.policy, self.live, self.env)
        except Exception as exc:  # a CRM file or env variable that cannot be used
            return exc

    def _apply(
        self, loaded: Loaded, built: Live | Exception | None, reported: tuple[str, ...] = ()
    ) -> ReloadResult:
        """Swap to `built` if it is a Live policy; otherwise record the failure and keep serving."""
        if isinstance(built, Live) and loaded.policy is not None:
            changed = self.live is None or self.live.policy.version != loaded.policy.version
            old, self.live = self.live, built
            self.last_reload_ok, self.errors = True, ()
            self.last_success_at = built.loaded_at
            if old is not None and old.crm is not None and old.crm is not built.crm:
                _close_later(old.crm)
            result = ReloadResult(True, loaded.policy.version, changed=changed)
        else:
            if reported:
                problems = reported
            elif isinstance(built, Exception):
                problems = (_crm_problem(loaded, built),)
            else:
                problems = tuple(str(p) for p in loaded.errors or loaded.problems)
            self.last_reload_ok, self.errors = False, problems
            result = ReloadResult(
                False, self.live.policy.version if self.live else "", problems, changed=False
            )
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
        loaded = self.loader(self.path)
        return self._apply(loaded, self._build(loaded))

    async def reload(self) -> ReloadResult:
        """Read, check and compile without stalling the event loop, then swap one reference.

        Checking runs in a forked child: YAML parsing is C code that holds the interpreter
        lock for its whole run, which in a thread would freeze every request behind it. The
        parent only decodes the child's plain data (one short orjson call) and compiles it
        in a thread, where pure-Python work yields the lock every few milliseconds.
        Concurrent calls queue on a lock, so reloads never overlap."""
        async with self._lock:
            try:
                texts = await asyncio.to_thread(read_texts, self.path)
            except PolicyError as exc:
                return self._apply(Loaded((), (exc,), None, ""), None)
            version = version_of(texts)
            if self.live is not None and self.last_reload_ok and version == self.live.policy.version:
                return ReloadResult(True, version, changed=False)
            loaded, reported = await self._check_and_compile(texts, version)
            built = await asyncio.to_thread(self._build, loaded)
            return self._apply(loaded, built, reported)

    async def _check_and_compile(
        self, texts: list[tuple[str, str]], version: str
    ) -> tuple[Loaded, tuple[str, ...]]:
        raw = await asyncio.to_thread(check_in_child, texts)
        if raw is None:  # no fork here, or the child died: do the same work in a thread
            return await asyncio.to_thread(lint_texts, texts), ()
        payload = orjson.loads(raw)
        if not payload["ok"]:
            return Loaded((), (), None, version), tuple(payload["problems"])
        docs = [
            document_from_data(name, data, text)
            for (name, text), data in zip(texts, payload["data"], strict=True)
        ]
        policy = await asyncio.to_thread(compile_policy, docs, version=version, crm_file=payload["crm_file"])
        return Loaded(tuple(docs), (), policy, version, payload["crm_file"]), ()


def _child(texts: list[tuple[str, str]], conn: Connection) -> None:
    try:
        loaded = lint_texts(texts, compile=False)
        if loaded.errors or not loaded.docs:
            payload: dict[str, Any] = {
                "ok": False,
                "problems": [str(p) for p in loaded.errors or loaded.problems],
            }
        else:
            payload = {"ok": True, "data": [d.data for d in loaded.docs], "crm_file": loaded.crm_file}
        conn.send_bytes(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS))
    finally:
        conn.close()


def check_in_child(texts: list[tuple[str, str]]) -> bytes | None:
    """Run the checks of a policy set in a forked process; its answer, or None if that failed."""
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:  # pragma: no cover - platforms without fork
        return None
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(texts, send), daemon=True, name="vapi-router-check")
    try:
        process.start()
    except OSError:
        return None
    send.close()
    try:
        return receive.recv_bytes()
    except EOFError:
        log.error("the policy check process died (exit code %s)", process.exitcode)
        return None
    finally:
        receive.close()
        process.join(5)


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
