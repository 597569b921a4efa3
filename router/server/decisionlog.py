"""One JSON line per answered routing request, written in batches. [I/O]

The event loop collects finished lines and writes them every BATCH_S in one write. A
regular file (the usual `--decision-log FILE`, or stdout redirected to one) is written
from the event loop: the write lands in the page cache. A pipe or terminal (stdout under
a container runtime) can stall when its reader does, so its batches go to a writer thread
instead, every PIPE_BATCH_S, and a stalled reader never blocks a call.

Why not a thread for everything: on this kind of 2-vCPU VM a second thread that wakes
often slows the event loop's own thread by a fifth to a third (its GIL hand-offs move the
loop between CPUs). Writing per line from a thread cost more than routing the call; a
thread that wakes twice a second costs nothing measurable (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import stat
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

import orjson

_STOP = b""  # batches are never empty
BATCH_S = 0.01  # lines wait on the event loop at most this long (written from the loop)
PIPE_BATCH_S = 0.5  # ... or this long, for a pipe or terminal (written by the thread)


_second: list[Any] = [-1, ""]  # the last whole second stamped and its ISO text


def timestamp(now: float | None = None) -> str:
    """UTC time with milliseconds, as datetime.isoformat(timespec="milliseconds") writes it
    ('2026-11-21T07:37:37.027+00:00'), at a third of its cost: the seconds are formatted
    once per second."""
    now = time.time() if now is None else now
    second = int(now)
    micro = round((now - second) * 1e6)  # rounded to microseconds first, as datetime does
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    if second != _second[0]:
        _second[:] = second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{micro // 1000:03d}+00:00"


class DecisionLog:
    """Writes decision records to stdout ("-"), a file (appended), or nowhere (None)."""

    def __init__(self, target: str | None = "-") -> None:
        self._target = target
        # lines on the event loop, not yet written. One growing buffer, not a list of lines: a
        # line's bytes object is freed at once and its memory reused while still in the CPU's
        # cache, where a batch of lines kept alive for BATCH_S made every call pay cache misses
        # (in process, 7 µs per call against 1.5 µs now)
        self._buf = bytearray()
        self._stream: IO[bytes] | None = None
        self._own = target not in ("-", None)
        self._threaded = False
        self._batch_s = BATCH_S
        self._batches: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._started = False

    def start(self) -> None:
        if self._target is None or self._started:
            return
        self._started = True
        stream: IO[bytes] | None
        if self._own:
            try:  # a FIFO (or device) may block on open: the thread opens it
                regular = stat.S_ISREG(os.stat(str(self._target)).st_mode)
            except FileNotFoundError:
                regular = True  # created by the open below
            except OSError:
                regular = False
            stream = open(str(self._target), "ab") if regular else None  # noqa: SIM115
        else:
            stream = sys.stdout.buffer
            try:
                regular = stat.S_ISREG(os.fstat(sys.stdout.buffer.fileno()).st_mode)
            except (OSError, ValueError):  # no file descriptor (a test's stdout)
                regular = False
        self._stream = stream
        if not regular:
            self._threaded, self._batch_s = True, PIPE_BATCH_S
            self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
            self._thread.start()
        if self._buf and self._timer is None:  # written before start()
            self._flush()

    def write(self, record: dict[str, Any]) -> None:
        """Encode one record; it is written within the batch time (at once without a loop)."""
        if self._target is None:
            return
        lines = self._buf
        first = not lines
        try:
            lines += orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # a lone surrogate from the request (a call id): written as json escapes it
            lines += json.dumps(record, separators=(",", ":"), default=str).encode() + b"\n"
        if first:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called outside the server (a tool, a test)
                self._flush()
                return
            self._timer = loop.call_later(self._batch_s, self._flush)

    def _flush(self) -> None:
        self._timer = None
        buf = self._buf
        if not buf or not self._started:  # before start(): kept for it
            return
        try:
            if self._threaded:
                self._batches.put(bytes(buf))
            elif self._stream is not None:
                self._stream.write(buf)
                self._stream.flush()
        finally:  # a failed write loses its batch, as it would any later one
            buf.clear()

    def _run(self) -> None:
        # the thread's own reference: close() may give up waiting for a stalled reader
        stream = self._stream
        if stream is None:
            stream = open(str(self._target), "ab")  # noqa: SIM115 - a FIFO: may wait for a reader
        try:
            while True:
                batch = self._batches.get()
                if batch == _STOP:
                    break
                stream.write(batch)
                stream.flush()
        finally:
            if self._own:
                stream.close()

    def close(self) -> None:
        """Write what is collected and stop (on the event loop's thread, or once it stopped)."""
        if self._timer is not None:
            self._timer.cancel()
        self._flush()
        if self._thread is not None:
            self._batches.put(_STOP)  # the thread closes a stream it writes
            self._thread.join(timeout=5)
            self._thread = None
        elif self._stream is not None and self._own:
            self._stream.close()
        self._stream = None
        self._started = False
