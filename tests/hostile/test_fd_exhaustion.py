"""Item 1 of issue 15: idle and slow connections must not take the descriptors Vapi's calls need.

`vapi-router serve` runs with RLIMIT_NOFILE at 256 while clients hold more connections than
that (never sending a byte, or sending a head or a body a byte at a time, reconnecting
whenever the server closes them). Every authenticated call, each on a fresh connection as
Vapi makes them, must still get its 200, and the server must log no traceback (the watcher
keeps polling the policy through it all)."""

from __future__ import annotations

import time
from pathlib import Path

from hostileutil import Attack, LimitedServe, calls, policy

NOFILE = 256


def test_idle_and_slow_connections_beyond_the_fd_limit_cost_no_call(tmp_path: Path) -> None:
    args = ("--header-timeout", "1", "--body-timeout", "1.5")
    with LimitedServe(tmp_path, policy(), nofile=NOFILE, args=args) as srv:
        with Attack(srv.port, idle=NOFILE + 100, slow_head=60, slow_body=60) as attack:
            time.sleep(1.0)  # the attack holds every connection it can before the calls begin
            answered = calls(srv, 25, pause_s=0.08)
            held = attack.peak_held
        statuses = [status for status, _ in answered]
        worst = max(seconds for _, seconds in answered)
        assert statuses == [200] * len(answered), statuses
        assert worst < 2.0, worst
        assert held > NOFILE, held  # the clients did hold more connections than descriptors
        assert attack.closed_by_server > 0
        assert srv.open_fds() < NOFILE
        assert "Traceback" not in srv.stderr(), srv.stderr()[-3000:]
        print(
            f"\nfd limit {NOFILE}: held {held}, closed {attack.closed_by_server}, "
            f"calls {statuses.count(200)}/{len(statuses)}, worst {worst * 1000:.0f} ms, "
            f"peak RSS {srv.peak_rss_mb():.0f} MB"
        )
