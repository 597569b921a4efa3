"""Change detection -> store.reload(): file events (incl. ConfigMap ..data swaps) and SIGHUP. [I/O]

Detecting a change is kept apart from acting on it (as uvicorn's reloader does): a burst of
events makes one reload, once the files have been quiet for the debounce time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import watchfiles

from router.store import PolicyStore

log = logging.getLogger("router.watcher")
DEBOUNCE_MS = 200  # reload once the files have been quiet this long...
MAX_DELAY_MS = 2000  # ...or this long after the first change, if they never go quiet
STEP_MS = 50
RETRY_S = 1.0


def _relevant(store: PolicyStore) -> Callable[[watchfiles.Change, str], bool]:
    """Changes that can change what a reload loads: the policy file (or a directory set's
    top-level *.yaml), ConfigMap internals (the `..data` swap and its `..<timestamp>`
    directories) and the embedded CRM file. Anything else beside the policy (a decision log,
    a capture, editor temp files) must not keep the watcher busy."""
    root = Path(os.path.abspath(store.path))
    directory = root.is_dir()
    base = root if directory else root.parent

    def keep(change: watchfiles.Change, name: str) -> bool:
        path = Path(os.path.abspath(name))
        if path == root:
            return True
        try:
            parts = path.relative_to(base).parts
        except ValueError:
            return False
        if not parts:
            return False
        if parts[0].startswith(".."):
            return True
        if directory and len(parts) == 1 and path.suffix == ".yaml" and not path.name.endswith(".test.yaml"):
            return True
        live = store.live
        crm = live.policy.crm.file if live is not None and live.policy.crm is not None else None
        return crm is not None and path.name == Path(crm).name and os.path.realpath(path) == crm

    return keep


async def watch(store: PolicyStore, *, stop: asyncio.Event | None = None) -> None:
    """Reload the store after files under its path change, until cancelled (or `stop` is set).

    watchfiles hands over a batch as soon as one 50 ms step adds no *new* path to it, so
    the writes of one save (or of a script writing a file twenty times) arrive in several
    batches; reloading per batch would reload mid-write. Detection therefore only notes
    the time, and the reload waits until the files have been quiet for DEBOUNCE_MS."""
    target = store.path if store.path.is_dir() else store.path.parent
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    first = last = 0.0

    async def detect() -> None:
        nonlocal first, last
        while stop is None or not stop.is_set():
            try:
                async for _changes in watchfiles.awatch(
                    target,
                    watch_filter=_relevant(store),
                    debounce=MAX_DELAY_MS,
                    step=STEP_MS,
                    stop_event=stop,
                    recursive=store.path.is_dir(),  # a set's CRM file may sit in a subdirectory
                ):
                    last = loop.time()
                    if not changed.is_set():
                        first = last
                        changed.set()
                return
            except Exception as exc:  # e.g. the directory was replaced: watch it again
                log.error("watching %s failed (%s); retrying in %g s", target, exc, RETRY_S)
                await asyncio.sleep(RETRY_S)

    detector = asyncio.create_task(detect())
    # awatch registers its watch before it first waits, so once the detector has run one step
    # every later change is seen. A change before that (say, between the start-up load and
    # now) would be missed: one reload catches up (a no-op when nothing changed).
    await asyncio.sleep(0)
    first = last = loop.time()
    changed.set()
    try:
        while True:
            waiter = asyncio.create_task(changed.wait())
            await asyncio.wait({waiter, detector}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():  # stopped
                waiter.cancel()
                return
            while (wait := min(last + DEBOUNCE_MS / 1000, first + MAX_DELAY_MS / 1000) - loop.time()) > 0:
                await asyncio.sleep(wait)
            changed.clear()
            try:
                result = await store.reload()
            except Exception:  # never stop watching (store.reload reports its own faults)
                log.exception("reloading %s failed", store.path)
                continue
            if result.ok and result.changed:
                log.info("reloaded after a file change: %s", result.version)
    finally:
        detector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await detector


def install_sighup(store: PolicyStore) -> Callable[[], None]:
    """SIGHUP -> reload; returns a function that removes the handler."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[Any]] = set()

    def on_hup() -> None:
        task = loop.create_task(store.reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests), or no signals
        return lambda: None

    def remove() -> None:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGHUP)

    return remove
