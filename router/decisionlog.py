"""One JSON line per answered routing request, written by a background thread. [I/O]

The event loop only enqueues a finished line; the file write (and any slow disk or pipe)
happens on the writer thread, so logging never blocks a call.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

import orjson

_STOP = object()
# After each write the writer waits this long, so that under load one write and one flush
# carry many lines (and the thread wakes, taking the GIL, a few hundred times a second at
# most instead of once per call). A line reaches the file at most this much later.
BATCH_S = 0.005


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
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._target = target
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._target is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def write(self, record: dict[str, Any]) -> None:
        if self._target is not None:
            self._queue.put(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def _run(self) -> None:
        stream: IO[bytes]
        own = self._target not in ("-", None)
        stream = open(str(self._target), "ab") if own else sys.stdout.buffer  # noqa: SIM115 - closed below
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                assert isinstance(item, bytes)
                chunk = [item]
                stopping = False
                while True:  # drain what is queued so a burst costs one flush
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        self._queue.put(_STOP)
                        stopping = True
                        break
                    assert isinstance(more, bytes)
                    chunk.append(more)
                stream.write(b"".join(chunk))
                stream.flush()
                if not stopping:
                    time.sleep(BATCH_S)
        finally:
            if own:
                stream.close()

    def close(self) -> None:
        """Flush what is queued and stop the writer."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=5)
            self._thread = None
