"""`serve --max-connections N` on the wire: past N open connections the server closes the ones
that have waited longest without a request being answered, oldest first, and a call on a
fresh connection still gets its 200 (tests/test_connguard.py has the arithmetic on its own).

Connections are opened one at a time, each once the server holds the one before (its
descriptor shows in /proc), so their order is the order the server saw them in."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from pathlib import Path

from hostileutil import LimitedServe, calls, policy

CAP = 20
EXTRA = 10
WAIT_S = 3.0


def closed_by_server(held: list[socket.socket], known: set[int]) -> set[int]:
    """`known` and the indexes of the other sockets the server has since closed (EOF or reset)."""
    index = {sock: i for i, sock in enumerate(held) if i not in known}
    readable, _, _ = select.select(list(index), [], [], 0) if index else ([], [], [])
    out = set(known)
    for sock in readable:
        try:
            data = sock.recv(1)
        except OSError:
            data = b""
        if not data:
            out.add(index[sock])
    return out


def test_past_max_connections_the_longest_idle_close_first(tmp_path: Path) -> None:
    args = ("--max-connections", str(CAP))
    with LimitedServe(tmp_path, policy(), nofile=1024, args=args) as srv:
        time.sleep(0.2)  # the readiness probe's connection is gone
        base = srv.open_fds()
        held: list[socket.socket] = []
        gone: set[int] = set()
        try:
            for i in range(CAP + EXTRA):
                held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
                end = time.monotonic() + WAIT_S
                if i < CAP:  # until the server holds it
                    while srv.open_fds() < base + i + 1 and time.monotonic() < end:
                        time.sleep(0.002)
                else:  # at 21 open, 2 close (1 over, 1 of slack); at the next 21, 2 more...
                    want = 2 * ((i - CAP) // 2 + 1)
                    while len(gone) < want and time.monotonic() < end:
                        gone = closed_by_server(held, gone)
                        time.sleep(0.002)
                time.sleep(0.003)  # loop.time() counts whole ms: no two share a `since`
            assert gone == set(range(EXTRA)), sorted(gone)
            assert srv.open_fds() <= base + CAP
            # calls on fresh connections, as Vapi makes them: each pushes out the oldest idle
            answered = calls(srv, 5, pause_s=0.02)
            assert [status for status, _ in answered] == [200] * 5
            time.sleep(0.1)
            gone = closed_by_server(held, gone)
            assert gone == set(range(len(gone))) and len(gone) > EXTRA, sorted(gone)  # oldest first
            worst = max(seconds for _, seconds in answered)
            print(
                f"\n--max-connections {CAP}: {CAP + EXTRA} idle opened, the {len(gone)} oldest closed, "
                f"calls {len(answered)}/{len(answered)} 200, worst {worst * 1000:.0f} ms"
            )
        finally:
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.close()
