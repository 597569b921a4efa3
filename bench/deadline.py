"""Section "deadline": with a CRM that never answers, every reply still lands within deadline_ms.

`vapi-router serve` (one worker, as in production) routes on a policy whose routes need the
CRM for every caller, and its HTTP CRM is bench.crmhang: connections are accepted and
requests read, but no byte ever comes back. The load generator sends calls with distinct
callers (no cache hit, no single-flight sharing) on 32 connections, then on 200: more
than the CRM client's pool (crm.POOL_SIZE), so lookups also queue for a connection. Every
reply's latency is recorded from the client's side (send to last byte) and compared with
deadline_ms: max and p99. The decision log's total_ms (from when the server parsed the
request) is shown beside it. The server's deadline for a call that waits counts from when
the request's bytes reached the machine (TCP_INFO), so a request that sat unread in a burst
is not given the full deadline again. The load generator also reports its five slowest
replies with the time they were sent.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

from bench import Row, clean_env, log
from bench.gen import START, Call
from bench.http import Served, free_port, load, router_server, serving, write_bodies

DEADLINE_MS = 1000
TIMEOUT_MS = 950  # the CRM's own timeout: as close to the deadline as lint allows it
CONNECTIONS = (32, 200)
DURATION_S = 3.0
CALLS = 2_000

POLICY = """\
version: 1
settings: {{timezone: UTC, region: US, deadline_ms: {deadline}, fallback: front-desk}}
crm:
  http: {{url: "http://127.0.0.1:{port}/contacts?phone=${{caller}}", tags: contact.tags}}
  timeout_ms: {timeout}
targets:
  front-desk: {{assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}}
  vip-desk: {{assistantId: 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d}}
routes:
  - {{id: vip, when: {{tags: {{any: [vip]}}}}, then: vip-desk}}
default: front-desk
"""


def distinct_calls(count: int) -> list[Call]:
    return [
        Call(
            call_id=f"deadline-{i:06d}",
            caller=f"+1{212 + i // 10_000}555{i % 10_000:04d}",
            dialled="+16505550117",
            at=START,
            phone_number_id="pn-main",
            tags=(),
            crm=(),
            crm_status=None,
            variables=(),
        )
        for i in range(count)
    ]


def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-deadline-") as tmp:
        directory = Path(tmp)
        crm_port = free_port()
        crm = Served(
            "crmhang",
            [sys.executable, "-m", "bench.crmhang", str(crm_port)],
            crm_port,
            clean_env({}),
            directory,
            ready_path="",
        )
        policy = directory / "policy.yaml"
        policy.write_text(
            POLICY.format(deadline=DEADLINE_MS, port=crm_port, timeout=TIMEOUT_MS), encoding="utf-8"
        )
        bodies = write_bodies(directory / "calls.jsonl", distinct_calls(CALLS))
        decisions = directory / "router.decisions.jsonl"
        seen = 0
        with serving(crm), serving(router_server("router", policy, directory)) as router:
            for connections in CONNECTIONS:
                r = load(
                    router, bodies, connections=connections, duration=DURATION_S, warmup=0, keep_bodies=5
                )
                time.sleep(0.2)  # the decision log's writer batches lines for a few ms
                lines = decisions.read_bytes().splitlines()
                records = [orjson.loads(line) for line in lines[seen:]]
                seen = len(lines)
                server_max = max((rec["total_ms"] for rec in records), default=float("nan"))
                statuses = Counter(rec["crm_status"] for rec in records)
                total = r["requests"]
                ok = r["statuses"].get("200", 0)
                log(
                    f"  {connections} conn: {total} replies, p50 {r['p50_us'] / 1000:.0f} "
                    f"p99 {r['p99_us'] / 1000:.0f} max {r['max_us'] / 1000:.0f} ms; "
                    f"{r['errors'] or 'no errors'}; slowest [ms, sent at ms]: {r['slowest']}"
                )
                case = f"CRM never answers, {connections} conn, deadline_ms {DEADLINE_MS}"
                within = r["max_us"] <= DEADLINE_MS * 1000
                all_ok = ok == total > 0 and not r["errors"]
                rows += [
                    Row(
                        "deadline",
                        case,
                        "replies 200 / sent (distinct reply bodies)",
                        f"{ok} / {r['sent']} ({len(r['bodies'])})",
                        "all 200",
                        all_ok and r["sent"] == total,
                    ),
                    Row(
                        "deadline",
                        case,
                        "reply latency ms at the client: p50 / p99 / max",
                        f"{r['p50_us'] / 1000:.0f} / {r['p99_us'] / 1000:.0f} / {r['max_us'] / 1000:.0f}",
                        f"max ≤ {DEADLINE_MS}",
                        within,
                    ),
                    Row(
                        "deadline",
                        case,
                        "server's own total_ms max (decision log); crm_status counts",
                        f"{server_max:.0f}; " + ", ".join(f"{k} {v}" for k, v in statuses.most_common()),
                    ),
                ]
    return rows
