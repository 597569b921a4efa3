"""The HTTP CRM's OAuth2 token endpoint is as hostile as the CRM can be: its answer is read under
the same cap as the CRM's (crm.max_body_bytes, 1 MiB by default), and a token fetch that
trickles is abandoned after timeout_ms, so that it neither fills memory nor holds the one
fetch every lookup waits on. `vapi-router serve` against a real token endpoint on loopback:

- `endless`: 200 and a JSON body that never ends (up to 64 MiB, so that a client without the
  cap stops too). Before the fix the router read the whole of it (client.post, then .json()).
- `trickle`: 200 and then a byte every 100 ms (for 20 s). httpx's read timeout is per read, so
  the fetch never timed out: every later lookup waited on it and failed, even once the
  endpoint answered well again.
- `ok`: a token, which the CRM API then takes: the caller is VIP.

Each call gets its 200 within the deadline whatever the endpoint does, from `default` while the
token cannot be had."""

from __future__ import annotations

import contextlib
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from hostileutil import SAFE, VIP, LimitedServe, LocalHttpServer, call_message, timed_call
from reloadutil import until
from serverutil import ADMIN_TOKEN, SECRET, dumps

DEADLINE_MS = 1000
TIMEOUT_MS = 500
SLACK_S = 0.3
ENDLESS_LIMIT = 64 << 20
TRICKLE_S = 20.0
TOKEN = "tok-SENTINEL-1"


class TokenEndpoint(LocalHttpServer):
    """POST /token answers by `mode`; GET /contacts answers a VIP contact to the right bearer."""

    def __init__(self) -> None:
        self.mode = "endless"
        self.sent: list[int] = []  # body bytes written per token request
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                mode = owner.mode
                if mode == "ok":
                    self._json(b'{"access_token": "%s", "expires_in": 3600}' % TOKEN.encode())
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True
                sent = 0
                chunk = b"a" * 65536 if mode == "endless" else b"a"
                end = time.monotonic() + TRICKLE_S  # bounded, like everything here
                with contextlib.suppress(OSError):
                    self.wfile.write(b'{"access_token": "')
                    while not owner.stopped and sent < ENDLESS_LIMIT and time.monotonic() < end:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        sent += len(chunk)
                        if mode == "trickle":
                            time.sleep(0.1)
                owner.sent.append(sent)

            def do_GET(self) -> None:
                if self.headers.get("authorization") != f"Bearer {TOKEN}":
                    self.send_response(401)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                self._json(b'{"contact": {"tags": ["vip"]}}')

            def _json(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._listen(Handler)
        self.url = f"http://127.0.0.1:{self.port}"


def policy(url: str) -> str:
    return f"""\
version: 1
settings: {{region: US, deadline_ms: {DEADLINE_MS}, fallback: safe}}
crm:
  http:
    url: "{url}/contacts?phone=${{caller}}"
    tags: contact.tags
    oauth2: {{token_url: "{url}/token", client_id: router, client_secret: "${{env.TOKEN_SECRET}}"}}
  timeout_ms: {TIMEOUT_MS}
  cache_ttl_s: 0
targets:
  safe: {{assistantId: {SAFE}}}
routes:
  - id: vip
    when: {{tags: [vip]}}
    then: {{assistantId: {VIP}}}
default: safe
"""


def call(srv: LimitedServe, i: int) -> tuple[int, float, str]:
    body = dumps(call_message(caller=f"+1212555{i:04d}", call_id=f"token-{i}"))
    status, seconds = timed_call(srv.base_url, body, srv.auth(body))
    records = srv.wait_log(lambda r: r.get("call_id") == f"token-{i}")
    [record] = [r for r in records if r.get("call_id") == f"token-{i}"]
    return status, seconds, record["route"]


def test_a_hostile_token_endpoint_costs_no_call_no_memory_and_not_the_next_token(tmp_path: Path) -> None:
    env = {"VAPI_SERVER_SECRET": SECRET, "ROUTER_ADMIN_TOKEN": ADMIN_TOKEN, "TOKEN_SECRET": "s"}
    with (
        TokenEndpoint() as endpoint,
        LimitedServe(tmp_path, policy(endpoint.url), nofile=1024, env=env) as srv,
    ):
        rss_before = srv.peak_rss_mb()
        endless = [call(srv, i) for i in range(3)]
        assert [(status, route) for status, _, route in endless] == [(200, "default")] * 3
        worst_endless = max(seconds for _, seconds, _ in endless)
        grew = srv.peak_rss_mb() - rss_before
        until(lambda: len(endpoint.sent) >= 3, 5, what="the endless answers cut off")
        # the router stopped reading at 1 MiB; the rest filled loopback's socket buffers
        assert max(endpoint.sent) < ENDLESS_LIMIT // 2, endpoint.sent

        endpoint.mode = "trickle"
        status, seconds, route = call(srv, 10)
        assert (status, route) == (200, "default") and seconds < DEADLINE_MS / 1000 + SLACK_S
        time.sleep(0.2)
        endpoint.mode = "ok"  # the endpoint is well again: the trickling fetch must not hold it up
        start = time.monotonic()
        until(lambda: call(srv, 20 + int(time.monotonic() * 10) % 1000)[2] == "vip", 6, what="a token again")
        recovered = time.monotonic() - start
        assert "Traceback" not in srv.stderr(), srv.stderr()[-3000:]
    assert worst_endless < DEADLINE_MS / 1000 + SLACK_S, worst_endless
    assert grew < 40, grew
    print(
        f"\nOAuth2 token endpoint: endless answers cut at {max(endpoint.sent) / 2**20:.1f} MiB sent, "
        f"worst call {worst_endless * 1000:.0f} ms, peak RSS +{grew:.0f} MB; after a trickle, "
        f"a token again {recovered:.1f} s after the endpoint recovered"
    )
