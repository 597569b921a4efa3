"""The watcher when the process has no descriptor left (EMFILE): it must keep watching, and an
edit made meanwhile must go live once descriptors are back.

`vapi-router serve` runs with RLIMIT_NOFILE 64 and `--max-connections` far above it (no cap
to protect it), and clients hold connections until every descriptor is taken. The policy is
then edited: the watcher sees the change (stat needs no descriptor), but its reload cannot
open the file. Before the fix that reload was the end of it: the change was "seen", the files
looked the same afterwards, and the edit never went live. Now the watcher either does not
see the change until it has a descriptor to look with (snapshot() raises on EMFILE), or, when
one was free for the look and none for the read, tries the failed reload again
(router/server/watcher.py, RETRY_S; tests/test_watcher.py has that path on its own). Which
of the two happens depends on the moment a descriptor frees up (uvloop's accept frees one
briefly when it hits EMFILE); the test holds either way."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

from hostileutil import LimitedServe
from reloadutil import call, expected, until, versioned

NOFILE = 64
HOLD_S = 1.0
EMFILE_LOGGED = "cannot read: Too many open files"


def reply(srv: LimitedServe) -> object:
    with srv.client(timeout=2) as client:
        response = srv.post_webhook(client, call())
        assert response.status_code == 200, response.text
        return response.json()


def take_every_descriptor(srv: LimitedServe) -> list[socket.socket]:
    """Connections until the server holds NOFILE descriptors (bounded: 2 × NOFILE tries, 10 s)."""
    held: list[socket.socket] = []
    end = time.monotonic() + 10
    while srv.open_fds() < NOFILE and len(held) < 2 * NOFILE and time.monotonic() < end:
        with contextlib.suppress(OSError):
            held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=1))
        time.sleep(0.002)
    return held


def test_an_edit_made_while_descriptors_are_out_goes_live_once_they_are_back(tmp_path: Path) -> None:
    args = ("--max-connections", "1000", "--header-timeout", "60")
    with LimitedServe(tmp_path, versioned(1), nofile=NOFILE, args=args) as srv:
        assert reply(srv) == expected(1)
        held = take_every_descriptor(srv)
        try:
            assert srv.open_fds() == NOFILE, srv.open_fds()
            srv.policy_path.write_text(versioned(2), encoding="utf-8")
            time.sleep(HOLD_S)  # a poll and a debounce, twice over: the old watcher lost the edit here
            assert srv.open_fds() == NOFILE  # out of descriptors all along
            refused = EMFILE_LOGGED in srv.stderr()
        finally:
            for sock in held:
                sock.close()
        start = time.monotonic()
        until(lambda: reply(srv) == expected(2), 12, what="the edit made during EMFILE live")
        took = time.monotonic() - start
        with srv.client() as client:
            assert client.get("/readyz").json()["last_reload_ok"] is True
        # the watcher is still watching
        srv.policy_path.write_text(versioned(3), encoding="utf-8")
        until(lambda: reply(srv) == expected(3), 10, what="a later edit live")
        assert "Traceback" not in srv.stderr(), srv.stderr()[-3000:]
        path = "a reload refused, then retried" if refused else "the change seen once they closed"
        print(
            f"\nEMFILE: {len(held)} connections held; the edit live {took:.2f} s after they closed ({path})"
        )
