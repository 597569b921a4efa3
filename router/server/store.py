"""PolicyStore: the live policy (+ its CRM client); reload() swaps one reference, only on success. [I/O]

A request takes `store.live` once and finishes on that snapshot, so a reload never changes
a decision half-way. Reloads are serialised; an invalid edit leaves the old policy live.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from router.crm.clients import CrmClient, FileCrm, HttpCrm
from router.errors import PolicyError
from router.policy.compiler import compile_policy, target_reads_crm, version_of
from router.policy.document import document_from_data
from router.policy.loader import Loaded, lint_path, lint_texts, read_texts
from router.runtime.model import Policy, Target
from router.state.base import StateStore
from router.state.make import make_state

log = logging.getLogger("router.server.store")
_SWITCH_INTERVAL = sys.getswitchinterval()
CHECK_TIMEOUT_S = 60.0  # a check that takes longer is killed: the reload fails, serving goes on
CHECK_NICENESS = 10


@dataclass(frozen=True, slots=True)
class Live:
    """One loaded policy with what serving it needs."""

    policy: Policy
    crm: CrmClient | None
    loaded_at: float
    crm_targets: frozenset[int] = field(default_factory=frozenset)  # id() of targets whose reply reads CRM
    crm_stamp: tuple[int, int] | None = None  # the embedded CRM file's (mtime, size) when it was read
    state: StateStore | None = None  # live call state (DESIGN §13); None: the policy reads none

    def reads_crm(self, target: Target) -> bool:
        return id(target) in self.crm_targets


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    version: str
    problems: tuple[PolicyError, ...] = ()  # positioned values, up to /readyz and /-/reload
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
    return Live(policy, crm, time.time(), crm_targets, stamp, _state_for(policy, previous, env))


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


class PolicyStore:
    """Holds the live policy and reloads it from `path`."""

    def __init__(
        self,
        path: Path,
        *,
        env: Mapping[str, str] | None = None,
        loader: Callable[[Path], Loaded] = lint_path,
        on_change: Callable[[PolicyStore, ReloadResult], None] | None = None,
        checker: Callable[[list[tuple[str, str]]], bytes | None] | None = None,
        compiler: Callable[..., Policy] = compile_policy,
    ) -> None:
        """`checker`: the reload's check (default: check_in_child, a forked process);
        `compiler`: Documents -> Policy. Both injectable, so tests observe or break them
        without reaching into this module."""
        self.path = path
        self.checker = checker if checker is not None else check_in_child
        self.compiler = compiler
        self.env: Mapping[str, str] = env if env is not None else os.environ
        self.loader = loader
        self.on_change = on_change
        self.live: Live | None = None
        self.last_reload_ok = False
        self.last_success_at = 0.0
        self.errors: tuple[PolicyError, ...] = ()
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
        self, loaded: Loaded, built: Live | Exception | None, reported: tuple[PolicyError, ...] = ()
    ) -> ReloadResult:
        """Swap to `built` if it is a Live policy; otherwise record the failure and keep serving."""
        if isinstance(built, Live) and loaded.policy is not None:
            changed = self.live is None or self.live.policy.version != loaded.policy.version
            old, self.live = self.live, built
            self.last_reload_ok, self.errors = True, ()
            self.last_success_at = built.loaded_at
            if old is not None and old.crm is not None and old.crm is not built.crm:
                _close_later(old.crm)
            if old is not None and old.state is not None and old.state is not built.state:
                _close_later(old.state)
            result = ReloadResult(True, loaded.policy.version, changed=changed)
        else:
            if reported:
                problems = reported
            elif isinstance(built, Exception):
                problems = (_crm_problem(loaded, built),)
            else:
                problems = tuple(loaded.errors or loaded.problems)
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
                "\n".join(str(p) for p in result.problems),
            )
        if self.on_change is not None:
            self.on_change(self, result)

    def load_now(self, checked: Loaded | None = None) -> ReloadResult:
        """Synchronous first load (before serving). `checked`: this path as the caller just
        loaded it, used if the files still hash to its version (start-up loads once, not twice)."""
        with _gc_paused():
            loaded = (
                checked if checked is not None and _current(self.path, checked) else self.loader(self.path)
            )
            built = self._build(loaded)
        return self._apply(loaded, built)

    async def reload(self) -> ReloadResult:
        """Read, check and compile without stalling the event loop, then swap one reference.

        Checking runs in a forked child: YAML parsing is C code that holds the interpreter
        lock for its whole run, which in a thread would freeze every request behind it. The
        parent only decodes the child's plain data (one short orjson call) and compiles it
        in a thread, where pure-Python work hands the lock over every millisecond.
        Concurrent calls queue on a lock, so reloads never overlap."""
        async with self._lock:
            try:
                texts = await asyncio.to_thread(read_texts, self.path)
            except PolicyError as exc:
                return self._apply(Loaded((), (exc,), None, ""), None)
            except OSError as exc:  # no thread or descriptor to read with: a failed reload too
                problem = PolicyError(str(self.path), 1, 1, f"cannot read: {exc.strerror or exc}", "no-file")
                return self._apply(Loaded((), (problem,), None, ""), None)
            version = version_of(texts)
            live = self.live
            if (
                live is not None
                and self.last_reload_ok
                and version == live.policy.version
                and live.crm_stamp == crm_stamp(live.policy)
            ):
                return ReloadResult(True, version, changed=False)
            raw = await asyncio.to_thread(self.checker, texts)
            loaded, reported, built = await asyncio.to_thread(self._compile_checked, raw, texts, version)
            return self._apply(loaded, built, reported)

    def _compile_checked(
        self, raw: bytes | None, texts: list[tuple[str, str]], version: str
    ) -> tuple[Loaded, tuple[PolicyError, ...], Live | Exception | None]:
        """The child's answer -> (Loaded, problems it reported, Live to swap in); in a thread.
        A fault in checking or compiling (a bug) fails this reload, never the server."""
        with _gc_paused(), _prompt_handover():
            try:
                return self._compile_payload(raw, texts, version)
            except Exception as exc:
                log.exception("checking or compiling the policy failed")
                message = f"internal error while loading the policy: {type(exc).__name__}: {exc}"
                problem = PolicyError(texts[0][0] if texts else str(self.path), 1, 1, message, "internal")
                return Loaded((), (), None, version), (problem,), None

    def _compile_payload(
        self, raw: bytes | None, texts: list[tuple[str, str]], version: str
    ) -> tuple[Loaded, tuple[PolicyError, ...], Live | Exception | None]:
        if raw is None:  # no fork here, or the child died: do the same work in this thread
            loaded = lint_texts(texts)
            return loaded, (), self._build(loaded)
        payload = orjson.loads(raw)
        if not payload["ok"]:
            return Loaded((), (), None, version), tuple(PolicyError(**p) for p in payload["problems"]), None
        docs = tuple(
            document_from_data(name, data, text)
            for (name, text), data in zip(texts, payload["data"], strict=True)
        )
        crm_file = payload["crm_file"]
        policy = self.compiler(docs, version=version, crm_file=crm_file)
        loaded = Loaded(docs, (), policy, version, crm_file)
        return loaded, (), self._build(loaded)


def _current(path: Path, loaded: Loaded) -> bool:
    try:
        return loaded.policy is not None and version_of(read_texts(path)) == loaded.version
    except PolicyError:
        return False


@contextlib.contextmanager
def _prompt_handover() -> Iterator[None]:
    """While this thread compiles, the event loop waits for the interpreter lock each time a
    request arrives, up to the switch interval (5 ms by default) per wait; 1 ms keeps
    latency near normal for a compile-time cost of a fraction of a percent."""
    sys.setswitchinterval(min(_SWITCH_INTERVAL, 0.001))
    try:
        yield
    finally:  # the value at start-up, not the one found: a shadow store may compile meanwhile
        sys.setswitchinterval(_SWITCH_INTERVAL)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic collection while a policy is built, and none of what was built afterwards.

    Building allocates as many objects as the live policy holds; the collector would walk
    them all (and the whole heap, in a full collection) while holding the interpreter lock:
    ~50-150 ms for 10,000 routes, a stall for every request in flight. Policies hold no
    reference cycles, so reference counting alone frees an old one; what exists when
    building ends is frozen (gc.freeze, as long-running servers do after start-up), so
    later collections only walk what requests leave behind."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _child(texts: list[tuple[str, str]], conn: Connection) -> None:
    # A collection would touch every object inherited from the server (copy-on-write of the
    # whole heap) for garbage that dies with this short-lived process anyway.
    gc.disable()
    # Serving calls comes first: on a busy host the check gives way to the server's threads
    # (it still has a whole core whenever one is free, so an idle host reloads as fast).
    with contextlib.suppress(OSError):
        os.nice(CHECK_NICENESS)
    code = 1
    try:
        loaded = lint_texts(texts, compile=False)
        if loaded.errors or not loaded.docs:
            payload: dict[str, Any] = {
                "ok": False,
                "problems": [p.as_dict() for p in loaded.errors or loaded.problems],
            }
        else:
            payload = {"ok": True, "data": [d.data for d in loaded.docs], "crm_file": loaded.crm_file}
        conn.send_bytes(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS))
        code = 0
    finally:
        conn.close()
        # Leave without multiprocessing's exit handlers: they flush stdout, whose lock the
        # server's decision-log thread may have held at the moment of the fork (forever, here).
        os._exit(code)


def check_in_child(
    texts: list[tuple[str, str]],
    *,
    timeout_s: float = CHECK_TIMEOUT_S,
    child: Callable[[list[tuple[str, str]], Connection], None] | None = None,
) -> bytes | None:
    """Run the checks of a policy set in a forked process; its answer, or None if that failed.
    A check that outlasts `timeout_s` (a pathological file) is killed and answers a problem."""
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:  # pragma: no cover - platforms without fork
        return None
    try:
        receive, send = ctx.Pipe(duplex=False)
    except OSError:  # no descriptors left (EMFILE): check in this process instead
        return None
    target = child if child is not None else _child
    process = ctx.Process(target=target, args=(texts, send), daemon=True, name="vapi-router-check")
    try:
        process.start()
    except OSError:
        return None
    send.close()
    try:
        if not receive.poll(timeout_s):
            process.kill()
            message = f"checking the policy took longer than {timeout_s:g} s; it was not loaded"
            problem = PolicyError(texts[0][0] if texts else "?", 1, 1, message, "check-timeout")
            log.error("%s", problem)
            return orjson.dumps({"ok": False, "problems": [problem.as_dict()]})
        return receive.recv_bytes()
    except EOFError:
        process.join(5)
        log.error("the policy check process died (exit code %s)", process.exitcode)
        return None
    finally:
        receive.close()
        process.join(5)


def _crm_problem(loaded: Loaded, exc: Exception) -> PolicyError:
    for doc in loaded.docs:
        if isinstance(doc.data, dict) and "crm" in doc.data:
            return doc.error("/crm", f"crm cannot be used: {exc}", "crm-config")
    return PolicyError(str(loaded.docs[0].file if loaded.docs else "?"), 1, 1, f"crm: {exc}", "crm-config")


def _close_later(crm: CrmClient | StateStore) -> None:
    # Requests in flight may still hold the old client; close it once they are done.
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_later(30, lambda: loop.create_task(crm.aclose()))
