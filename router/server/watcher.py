"""Change detection -> store.reload(): polled file state (incl. ConfigMap ..data swaps) and SIGHUP. [I/O]

Detecting a change is kept apart from acting on it (as uvicorn's reloader does): a burst of
changes makes one reload, once the files have been quiet for the debounce time.

Detection polls: every POLL_S the event loop stats the few files a reload reads (the
policy file or a set's top-level *.yaml, the ConfigMap `..` entries, the embedded CRM
file). That costs tens of µs a poll, needs no inotify watch (and no inotify limits), sees a
ConfigMap's symlink swap like any edit, and uses no thread. A watcher thread (watchfiles)
woke twenty times a second to take the GIL, and on a 2-vCPU VM those hand-offs cost the
event loop 5 % of its throughput under load (bench/RESULTS.md).
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

from router.server.store import PolicyStore, short_of_descriptors

log = logging.getLogger("router.server.watcher")
POLL_S = 0.25  # how often the files are looked at
DEBOUNCE_MS = 200  # reload once the files have been quiet this long...
MAX_DELAY_MS = 2000  # ...or this long after the first change, if they never go quiet
RETRY_S = 0.5  # a reload that found no descriptor to read with is tried again after this,
MAX_RETRY_S = 8.0  # doubling up to this while descriptors stay short

Snapshot = tuple[tuple[str, int, int, int, int], ...]  # (path, mtime_ns, size, inode, mode) per file


def snapshot(store: PolicyStore) -> Snapshot:
    """The state of every file a reload of `store` reads: the policy file (or a directory
    set's top-level *.yaml, not *.test.yaml), ConfigMap internals (`..data` and the
    `..<timestamp>` directory it points to) and the embedded CRM file. Symlinks are followed,
    so a ConfigMap swap shows as a new inode. Other files beside the policy (a decision log,
    a capture, editor temp files) are not part of it."""
    root = Path(os.path.abspath(store.path))
    try:
        directory = root.is_dir()
    except OSError:  # a parent without permission: a state too
        directory = False
    base = root if directory else root.parent
    paths = [] if directory else [str(root)]
    try:
        with os.scandir(base) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("..") or (
                    directory and name.endswith(".yaml") and not name.endswith(".test.yaml")
                ):
                    paths.append(entry.path)
    except OSError as exc:
        if short_of_descriptors(exc):  # nothing seen: not a state (watch looks again)
            raise
        # the directory is gone for now: that is a state too
    live = store.live
    if live is not None and live.policy.crm is not None and live.policy.crm.file:
        paths.append(live.policy.crm.file)
    state = []
    for path in sorted(paths):
        try:
            st = os.stat(path)
        except OSError:
            state.append((path, -1, -1, -1, -1))
            continue
        # the mode too: a `chmod 000` changes nothing else, and the next reload must fail
        state.append((path, st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode))
    return tuple(state)


class Debounce:
    """When a burst of changes is due for its one reload: once the files have been quiet for
    `quiet_s`, or `max_delay_s` after the burst's first change if they never go quiet. Pure:
    the caller passes the time, so tests drive it with a fake clock."""

    def __init__(self, quiet_s: float = DEBOUNCE_MS / 1000, max_delay_s: float = MAX_DELAY_MS / 1000) -> None:
        self.quiet_s, self.max_delay_s = quiet_s, max_delay_s
        self.first: float | None = None  # the burst's first change; None: nothing pending
        self.last = 0.0

    def changed(self, now: float) -> None:
        """A change was seen at `now`."""
        if self.first is None:
            self.first = now
        self.last = now

    def due_in(self, now: float) -> float | None:
        """Seconds until the reload is due (<= 0: now), or None when no change is pending."""
        if self.first is None:
            return None
        return min(self.last + self.quiet_s, self.first + self.max_delay_s) - now

    def done(self) -> None:
        """The reload has started: later changes make a new burst."""
        self.first = None


async def watch(store: PolicyStore, *, stop: asyncio.Event | None = None, retry_s: float = RETRY_S) -> None:
    """Reload the store after the files it reads change, until cancelled (or `stop` is set).

    An editor's save or a script writing a file twenty times spans several polls;
    reloading at the first changed poll would reload mid-write. Detection therefore only
    notes the time, and the reload waits until the Debounce says the burst is over.
    One reload at start catches up with any change since the start-up load (a no-op when
    nothing changed). A reload that could not read the files for want of descriptors
    (EMFILE) is tried again, `retry_s` later and backing off: the change it was for would
    otherwise be lost, since the files then look as they did when it was seen."""
    loop = asyncio.get_running_loop()
    seen: Snapshot | None = None
    with contextlib.suppress(OSError):
        seen = snapshot(store)
    debounce = Debounce()
    debounce.changed(loop.time())
    first_retry_s, retry_at = retry_s, None
    while stop is None or not stop.is_set():
        if retry_at is not None and loop.time() >= retry_at:
            retry_at = None
            debounce.changed(loop.time())
        wait = debounce.due_in(loop.time())
        if wait is not None and wait <= 0:
            debounce.done()
            # taken before the reload reads the files: a write during the reload shows
            # at the next poll (and reloads again; a no-op if the texts are the same)
            with contextlib.suppress(OSError):
                seen = snapshot(store)
            try:
                result = await store.reload()
            except Exception:  # never stop watching (store.reload reports its own faults)
                log.exception("reloading %s failed", store.path)
            else:
                if result.retry:
                    retry_at, retry_s = loop.time() + retry_s, min(retry_s * 2, MAX_RETRY_S)
                else:
                    retry_at, retry_s = None, first_retry_s
                if result.ok and result.changed:
                    log.info("reloaded after a file change: %s", result.version)
            continue
        pause = POLL_S if wait is None else min(POLL_S, wait)
        if retry_at is not None:
            pause = min(pause, max(0.0, retry_at - loop.time()))
        await asyncio.sleep(pause)
        try:
            now = snapshot(store)
        except OSError:  # no descriptor to look with (EMFILE): look again at the next poll
            continue
        if now != seen:
            seen = now
            debounce.changed(loop.time())


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
