"""The reload's check, in a forked child: YAML parsing is C code that holds the interpreter
lock for its whole run, which in a thread would freeze every request behind it. Also the
two knobs that keep serving prompt while the parent compiles. [I/O]"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import orjson

from router.errors import PolicyError
from router.policy.loader import lint_texts

log = logging.getLogger("router.server.reloadchild")
_SWITCH_INTERVAL = sys.getswitchinterval()
CHECK_TIMEOUT_S = 60.0  # a check that takes longer is killed: the reload fails, serving goes on
CHECK_NICENESS = 10


@contextlib.contextmanager
def prompt_handover() -> Iterator[None]:
    """While this thread compiles, the event loop waits for the interpreter lock each time a
    request arrives, up to the switch interval (5 ms by default) per wait; 1 ms keeps
    latency near normal for a compile-time cost of a fraction of a percent."""
    sys.setswitchinterval(min(_SWITCH_INTERVAL, 0.001))
    try:
        yield
    finally:  # the value at start-up, not the one found: a shadow store may compile meanwhile
        sys.setswitchinterval(_SWITCH_INTERVAL)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
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
