"""PolicyStore: the live policy; reload() swaps one reference, only on success. [I/O]

The load paths: the first load reads, checks and compiles in this process (fast ryaml path
for valid text, the positioned path for problems: policy/loader.py); a reload checks in a
forked child (server/reloadchild.py) and compiles in a thread; what serving a policy needs
besides it (CRM client, state store) is built by server/live.py.

A request takes `store.live` once and finishes on that snapshot, so a reload never changes
a decision half-way. Reloads are serialised; an invalid edit leaves the old policy live.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from router.errors import PolicyError
from router.policy.compiler import compile_policy, version_of
from router.policy.fastdoc import document_from_data
from router.policy.loader import Loaded, lint_path, lint_texts, read_texts
from router.runtime.model import Policy
from router.server.live import Live, build_live, close_later, crm_stamp
from router.server.reloadchild import check_in_child, gc_paused, prompt_handover
from router.server.statecall import workers_refusal

log = logging.getLogger("router.server.store")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    version: str
    problems: tuple[PolicyError, ...] = ()  # positioned values, up to /readyz and /-/reload
    changed: bool = True
    # failed for want of descriptors (EMFILE, ENFILE), not for what the files say: the watcher
    # tries again, since the change it saw was never read
    retry: bool = False


_SHORT = (errno.EMFILE, errno.ENFILE)


def short_of_descriptors(exc: BaseException | None) -> bool:
    """Whether `exc` (or the OS error it was raised from) is the OS lacking descriptors."""
    cause = exc.__cause__ if isinstance(exc, PolicyError) else exc
    return isinstance(cause, OSError) and cause.errno in _SHORT


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
        workers: int = 1,
    ) -> None:
        """`checker`: the reload's check (default: check_in_child, a forked process);
        `compiler`: Documents -> Policy. Both injectable, so tests observe or break them
        without reaching into this module. `workers`: `serve --workers`; a policy whose
        live call state the workers would keep apart fails to load, as at start-up."""
        self.path = path
        self.checker = checker if checker is not None else check_in_child
        self.compiler = compiler
        self.workers = workers
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
        refusal = workers_refusal(loaded.policy, self.workers)
        if refusal:  # serve refuses this at start-up; a reload must not let it in either
            return _state_problem(loaded, refusal)
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
                close_later(old.crm)
            if old is not None and old.state is not None and old.state is not built.state:
                close_later(old.state)
            result = ReloadResult(True, loaded.policy.version, changed=changed)
        else:
            if reported:
                problems = reported
            elif isinstance(built, PolicyError):
                problems = (built,)
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
        with gc_paused():
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
                failed = self._apply(Loaded((), (exc,), None, ""), None)
                return replace(failed, retry=True) if short_of_descriptors(exc) else failed
            except OSError as exc:  # no thread or descriptor to read with: a failed reload too
                problem = PolicyError(str(self.path), 1, 1, f"cannot read: {exc.strerror or exc}", "no-file")
                failed = self._apply(Loaded((), (problem,), None, ""), None)
                return replace(failed, retry=True) if short_of_descriptors(exc) else failed
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
        with gc_paused(), prompt_handover():
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


def _state_problem(loaded: Loaded, why: str) -> PolicyError:
    for section in ("state", "capacity", "flags"):
        for doc in loaded.docs:
            if isinstance(doc.data, dict) and section in doc.data:
                return doc.error(f"/{section}", why, "state-workers", key=True)
    return PolicyError(str(loaded.docs[0].file if loaded.docs else "?"), 1, 1, why, "state-workers")


def _crm_problem(loaded: Loaded, exc: Exception) -> PolicyError:
    for doc in loaded.docs:
        if isinstance(doc.data, dict) and "crm" in doc.data:
            return doc.error("/crm", f"crm cannot be used: {exc}", "crm-config")
    return PolicyError(str(loaded.docs[0].file if loaded.docs else "?"), 1, 1, f"crm: {exc}", "crm-config")
