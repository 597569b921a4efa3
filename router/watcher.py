"""Change detection -> store.reload(): file events (incl. ConfigMap ..data swaps) and SIGHUP. [I/O]

Detecting a change is kept apart from acting on it (as uvicorn's reloader does): bursts of
events within the debounce window make one reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import watchfiles

from router.store import PolicyStore

log = logging.getLogger("router.watcher")
DEBOUNCE_MS = 200


def _relevant(path: Path) -> Callable[[watchfiles.Change, str], bool]:
    # A ConfigMap swaps a `..data` symlink; editors write temp files. Any change in the
    # policy directory may matter, so we reload and let an unchanged hash be a no-op.
    def keep(change: watchfiles.Change, name: str) -> bool:
        return not name.endswith(("~", ".swp", ".swx"))

    return keep


async def watch(store: PolicyStore, *, stop: asyncio.Event | None = None) -> None:
    """Reload the store whenever files under its path change, until cancelled."""
    target = store.path if store.path.is_dir() else store.path.parent
    async for _changes in watchfiles.awatch(
        target,
        watch_filter=_relevant(target),
        debounce=DEBOUNCE_MS,
        step=50,
        stop_event=stop,
        recursive=True,
        force_polling=None,
    ):
        result = await store.reload()
        if result.ok and result.changed:
            log.info("reloaded after a file change: %s", result.version)


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
