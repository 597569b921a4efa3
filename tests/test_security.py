"""Hostile input against the real router: auth headers on the wire, HMAC replays, admin
endpoints, crm.file escapes, YAML bombs, catastrophic regexes, and secrets in logs.

Auth cases go through a raw HTTP/1.1 socket, so duplicated headers, header-name case and
64 KB values reach uvicorn exactly as written (an HTTP client library would tidy them).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from crmserver import CrmServer
from hypothesis import given, settings
from hypothesis import strategies as st
from serverutil import (
    ADMIN_TOKEN,
    HMAC_SECRET,
    SECRET,
    InProcess,
    Subprocess,
    hmac_headers,
    payload,
    reply_problems,
    run_serve,
)
from vapiplans import JwksServer, jws, public_jwk, rsa_key

from router.policy.compiler import compile_policy
from router.policy.document import parse_document
from router.policy.loader import lint_path, lint_texts
from router.runtime import phone
from router.runtime.evaluator import evaluate
from router.runtime.facts import facts_from_message
from router.runtime.facttypes import Facts

UNAUTHORIZED = {"error": "unauthorized"}
POLICY = """\
version: 1
targets:
  desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
routes:
  - id: vip
    when: {caller: "+14155550142"}
    then: {assistantId: 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d}
default: desk
"""


def request_body(call_id: str = "sec-1") -> bytes:
    message = payload("assistant-request.pstn.json")
    message["message"]["call"]["id"] = call_id
    return json.dumps(message).encode()


def raw_post(port: int, path: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
    """POST over a plain socket: headers go out exactly as given (case, repeats, size)."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers]
    data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    status_line, _, rest = response.partition(b"\r\n")
    _, _, content = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), content


@pytest.fixture(scope="module")
def secret_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """x-vapi-secret / Bearer configured, and the admin token."""
    env = {"VAPI_SERVER_SECRET": SECRET, "ROUTER_ADMIN_TOKEN": ADMIN_TOKEN}
    with InProcess(tmp_path_factory.mktemp("secret"), POLICY, env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def hmac_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """HMAC only (sha256, hex, {timestamp}.{body}, 300 s window)."""
    with InProcess(tmp_path_factory.mktemp("hmac"), POLICY, env={"VAPI_HMAC_SECRET": HMAC_SECRET}) as srv:
        yield srv


def assert_answer(status: int, content: bytes, expected: int) -> None:
    assert status == expected, content
    if expected == 401:  # never says which part failed
        assert json.loads(content) == UNAUTHORIZED
    else:
        assert reply_problems("assistant-request", json.loads(content)) == []


# ------------------------------------------------------------------ shared secret on the wire

BIG = "x" * 65536
SECRET_HEADERS = [
    pytest.param([], 401, id="missing"),
    pytest.param([("x-vapi-secret", "")], 401, id="empty"),
    pytest.param([("x-vapi-secret", " ")], 401, id="blank"),
    pytest.param([("x-vapi-secret", SECRET), ("x-vapi-secret", SECRET)], 401, id="duplicated-same"),
    pytest.param([("x-vapi-secret", "wrong"), ("x-vapi-secret", SECRET)], 401, id="duplicated-wrong-first"),
    pytest.param([("x-vapi-secret", SECRET), ("x-vapi-secret", "wrong")], 401, id="duplicated-right-first"),
    pytest.param([("x-vapi-secret", SECRET + BIG)], 401, id="oversized-64KB-secret-prefix"),
    pytest.param([("x-vapi-secret", BIG)], 401, id="oversized-64KB"),
    pytest.param([("x-vapi-secret", SECRET.upper())], 401, id="value-upper-cased"),
    pytest.param([("x-vapi-secret", SECRET.lower())], 401, id="value-lower-cased"),
    pytest.param([("x-vapi-secret", SECRET.swapcase())], 401, id="value-swapcased"),
    pytest.param([("x-vapi-secret", SECRET[:-1])], 401, id="value-prefix"),
    pytest.param([("x-vapi-secret", SECRET + "0")], 401, id="value-plus-one"),
    pytest.param([("x-vapi-secret", f"Bearer {SECRET}")], 401, id="bearer-in-x-vapi-secret"),
    pytest.param([("x-vapi-secrets", SECRET)], 401, id="name-misspelt"),
    pytest.param([("authorization", f"Bearer {SECRET.upper()}")], 401, id="bearer-value-cased"),
    pytest.param([("authorization", "Bearer ")], 401, id="bearer-empty"),
    pytest.param([("authorization", f"Basic {SECRET}")], 401, id="basic-scheme"),
    pytest.param([("authorization", SECRET)], 401, id="authorization-no-scheme"),
    pytest.param([("authorization", f"Bearer {SECRET}")] * 2, 401, id="bearer-duplicated"),
    pytest.param([("authorization", f"Bearer {SECRET}{BIG}")], 401, id="bearer-oversized-64KB"),
    pytest.param([("x-vapi-secret", SECRET)], 200, id="x-vapi-secret"),
    pytest.param([("X-VAPI-SECRET", SECRET)], 200, id="name-upper"),
    pytest.param([("X-Vapi-Secret", SECRET)], 200, id="name-title"),
    pytest.param([("x-VaPi-SeCrEt", SECRET)], 200, id="name-mixed"),
    pytest.param([("x-vapi-secret", f"  {SECRET}  ")], 200, id="value-padded-by-http-whitespace"),
    pytest.param([("Authorization", f"Bearer {SECRET}")], 200, id="bearer"),
    pytest.param([("AUTHORIZATION", f"bearer {SECRET}")], 200, id="bearer-name-and-scheme-cased"),
    pytest.param([("authorization", f"BEARER {SECRET}")], 200, id="bearer-scheme-upper"),
    # any one configured scheme that passes admits (DESIGN §4)
    pytest.param([("x-vapi-secret", "wrong"), ("authorization", f"Bearer {SECRET}")], 200, id="one-of-two"),
]


@pytest.mark.parametrize(("headers", "expected"), SECRET_HEADERS)
def test_shared_secret_headers_on_the_wire(
    secret_srv: InProcess, headers: list[tuple[str, str]], expected: int
) -> None:
    body = request_body()
    status, content = raw_post(
        secret_srv.port, "/webhook/vapi", [("content-type", "application/json"), *headers], body
    )
    assert_answer(status, content, expected)


def test_refused_requests_write_no_decision_line(secret_srv: InProcess) -> None:
    with secret_srv.client() as client:
        before = len(secret_srv.records_until_marker(client))
        for i in range(5):
            body = request_body(f"refused-{i}")
            assert raw_post(secret_srv.port, "/webhook/vapi", [("x-vapi-secret", "nope")], body)[0] == 401
        records = secret_srv.records_until_marker(client)
    assert not [r for r in records if str(r.get("call_id", "")).startswith("refused-")]
    assert len(records) == before + 1  # only the first marker


# ------------------------------------------------------------------ HMAC


def signed(body: bytes, offset_s: float = 0, **kw: Any) -> list[tuple[str, str]]:
    stamp = kw.pop("timestamp", None) or str(int(time.time() + offset_s))
    return list(hmac_headers(body, timestamp=stamp, **kw).items())


BODY = request_body("hmac-1")
OTHER = request_body("hmac-2")
HMAC_CASES: list[Any] = [
    pytest.param(lambda: signed(BODY), BODY, 200, id="valid"),
    pytest.param(lambda: signed(BODY, -290), BODY, 200, id="290s-old-inside-window"),
    pytest.param(lambda: signed(BODY, +290), BODY, 200, id="290s-ahead-inside-window"),
    pytest.param(lambda: signed(BODY, -301), BODY, 401, id="stale-301s"),
    pytest.param(lambda: signed(BODY, -86400), BODY, 401, id="stale-a-day"),
    pytest.param(lambda: signed(BODY, +301), BODY, 401, id="future-301s"),
    pytest.param(lambda: signed(BODY, +86400 * 365), BODY, 401, id="future-a-year"),
    pytest.param(lambda: signed(BODY, timestamp=str(int(time.time() * 1000))), BODY, 200, id="timestamp-ms"),
    pytest.param(lambda: signed(BODY, timestamp="0"), BODY, 401, id="timestamp-zero"),
    pytest.param(lambda: signed(BODY, timestamp=f"{time.time():e}"), BODY, 401, id="timestamp-exponent"),
    pytest.param(lambda: signed(BODY, timestamp="nan"), BODY, 401, id="timestamp-nan"),
    pytest.param(lambda: signed(BODY, timestamp=f"-{int(time.time())}"), BODY, 401, id="timestamp-negative"),
    pytest.param(lambda: signed(OTHER), BODY, 401, id="signature-over-a-different-body"),
    pytest.param(lambda: signed(BODY + b" "), BODY, 401, id="signature-over-body-plus-space"),
    pytest.param(lambda: signed(BODY, secret="wrong-key"), BODY, 401, id="wrong-key"),
    pytest.param(lambda: signed(BODY, encoding="base64"), BODY, 401, id="base64-when-hex-configured"),
    pytest.param(lambda: signed(BODY, algorithm="sha1"), BODY, 401, id="sha1-when-sha256-configured"),
    pytest.param(lambda: signed(BODY)[1:], BODY, 401, id="signature-missing"),
    pytest.param(lambda: [signed(BODY)[0]], BODY, 401, id="timestamp-missing"),
    pytest.param(lambda: [signed(BODY)[0], *signed(BODY)], BODY, 401, id="signature-duplicated"),
    pytest.param(lambda: [("x-signature", BIG), *signed(BODY)[1:]], BODY, 401, id="signature-oversized"),
    pytest.param(lambda: [(k.upper(), v) for k, v in signed(BODY)], BODY, 200, id="header-names-upper-cased"),
    pytest.param(lambda: [("x-vapi-secret", HMAC_SECRET)], BODY, 401, id="hmac-key-as-shared-secret"),
]


@pytest.mark.parametrize(("make_headers", "body", "expected"), HMAC_CASES)
def test_hmac_on_the_wire(
    hmac_srv: InProcess, make_headers: Callable[[], list[tuple[str, str]]], body: bytes, expected: int
) -> None:
    status, content = raw_post(hmac_srv.port, "/webhook/vapi", make_headers(), body)
    assert_answer(status, content, expected)


def test_a_replay_outside_the_window_is_refused(hmac_srv: InProcess) -> None:
    """The very bytes of an accepted request, sent again once the window has passed."""
    headers = signed(BODY)
    assert raw_post(hmac_srv.port, "/webhook/vapi", headers, BODY)[0] == 200
    real = hmac_srv.server.clock
    try:
        hmac_srv.server.clock = lambda: real() + 301
        assert_answer(*raw_post(hmac_srv.port, "/webhook/vapi", headers, BODY), 401)
        hmac_srv.server.clock = lambda: real() - 301  # a server clock behind: the request is "future"
        assert_answer(*raw_post(hmac_srv.port, "/webhook/vapi", headers, BODY), 401)
    finally:
        hmac_srv.server.clock = real


# ------------------------------------------------------------------ admin endpoints

ADMIN_PATHS = [("/-/reload", b""), ("/v1/explain", request_body("explain-1"))]
ADMIN_HEADERS = [
    pytest.param([], 401, id="no-token"),
    pytest.param([("authorization", "Bearer wrong")], 401, id="wrong-token"),
    pytest.param([("authorization", "Bearer ")], 401, id="empty-token"),
    pytest.param([("authorization", f"Bearer {ADMIN_TOKEN.upper()}")], 401, id="token-cased"),
    pytest.param([("authorization", f"Bearer {SECRET}")], 401, id="webhook-secret-as-admin-token"),
    pytest.param([("x-vapi-secret", SECRET)], 401, id="webhook-auth-only"),
    pytest.param([("x-vapi-secret", ADMIN_TOKEN)], 401, id="admin-token-in-wrong-header"),
    pytest.param([("authorization", ADMIN_TOKEN)], 401, id="token-without-bearer"),
    pytest.param([("authorization", f"Bearer {ADMIN_TOKEN}")] * 2, 401, id="token-duplicated"),
    pytest.param([("authorization", f"Bearer {ADMIN_TOKEN}{BIG}")], 401, id="token-oversized"),
    pytest.param([("Authorization", f"Bearer {ADMIN_TOKEN}")], 200, id="right-token"),
]


@pytest.mark.parametrize(("path", "body"), ADMIN_PATHS, ids=["reload", "explain"])
@pytest.mark.parametrize(("headers", "expected"), ADMIN_HEADERS)
def test_admin_endpoints_need_the_admin_token(
    secret_srv: InProcess, path: str, body: bytes, headers: list[tuple[str, str]], expected: int
) -> None:
    status, content = raw_post(secret_srv.port, path, headers, body)
    assert status == expected, content
    if expected == 401:
        assert json.loads(content) == UNAUTHORIZED


@pytest.mark.parametrize(("path", "body"), ADMIN_PATHS, ids=["reload", "explain"])
def test_admin_endpoints_are_closed_without_a_configured_token(
    hmac_srv: InProcess, path: str, body: bytes
) -> None:
    """No ROUTER_ADMIN_TOKEN: no token opens them, not even an empty one."""
    for headers in ([], [("authorization", "Bearer ")], [("authorization", "Bearer")], signed(body)):
        status, content = raw_post(hmac_srv.port, path, headers, body)
        assert (status, json.loads(content)) == (401, UNAUTHORIZED)


def test_resolve_needs_webhook_auth(secret_srv: InProcess) -> None:
    body = json.dumps({"customer": {"number": "+14155550142"}, "phoneNumber": {"number": "+16505550117"}})
    assert_answer(
        *raw_post(secret_srv.port, "/v1/resolve", [("authorization", "Bearer x")], body.encode()), 401
    )
    status, _ = raw_post(secret_srv.port, "/v1/resolve", [("x-vapi-secret", SECRET)], body.encode())
    assert status == 200


# ------------------------------------------------------------------ crm.file outside the policy directory

OUTSIDE = "number,tags,name\n+14155550142,vip,OUTSIDE-SENTINEL-7c1d\n"


def crm_policy(name: str) -> str:
    return f"version: 1\ncrm:\n  file: {json.dumps(name)}\ndefault: {{assistantId: abc}}\n"


def _escape_dotdot(policy_dir: Path) -> str:
    return "../outside/secret.csv"


def _escape_absolute(policy_dir: Path) -> str:
    return "/etc/passwd"


def _escape_absolute_secret(policy_dir: Path) -> str:
    return str(policy_dir.parent / "outside" / "secret.csv")


def _escape_through_subdir(policy_dir: Path) -> str:
    (policy_dir / "sub").mkdir(exist_ok=True)
    return "sub/../../outside/secret.csv"


def _escape_symlink(policy_dir: Path) -> str:
    (policy_dir / "crm.csv").symlink_to("../outside/secret.csv")
    return "crm.csv"


def _escape_symlinked_dir(policy_dir: Path) -> str:
    (policy_dir / "data").symlink_to(policy_dir.parent / "outside", target_is_directory=True)
    return "data/secret.csv"


@pytest.mark.parametrize(
    "make_name",
    [
        pytest.param(_escape_dotdot, id="dotdot"),
        pytest.param(_escape_absolute, id="absolute-etc-passwd"),
        pytest.param(_escape_absolute_secret, id="absolute-path-outside"),
        pytest.param(_escape_through_subdir, id="through-a-subdirectory"),
        pytest.param(_escape_symlink, id="symlink-to-a-file-outside"),
        pytest.param(_escape_symlinked_dir, id="symlinked-directory"),
    ],
)
def test_crm_file_outside_the_policy_directory(tmp_path: Path, make_name: Callable[[Path], str]) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.csv").write_text(OUTSIDE, encoding="utf-8")
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    name = make_name(policy_dir)
    text = crm_policy(name)
    (policy_dir / "policy.yaml").write_text(text, encoding="utf-8")
    where = policy_dir / "policy.yaml"
    expected = f'{where}:3:9: error: crm.file "{name}" is outside the policy directory [crm-file]'
    assert [str(p) for p in lint_path(policy_dir / "policy.yaml").problems] == [expected]
    assert [str(p) for p in lint_path(policy_dir).problems] == [expected]
    result = run_serve(policy_dir, text, env={"VAPI_SERVER_SECRET": SECRET})
    assert result.returncode == 3, result.stderr
    assert expected in result.stderr
    assert "OUTSIDE-SENTINEL" not in result.stdout + result.stderr


def test_crm_file_symlink_inside_the_directory_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real.csv").write_text(OUTSIDE, encoding="utf-8")
    (tmp_path / "crm.csv").symlink_to("real.csv")
    (tmp_path / "policy.yaml").write_text(crm_policy("crm.csv"), encoding="utf-8")
    assert lint_path(tmp_path / "policy.yaml").problems == ()


# ------------------------------------------------------------------ YAML bombs

LIMIT_S = 5.0
LIMIT_RSS_MB = 500


def billion_laughs() -> str:
    lines = ["version: 1", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\ndefault: {error: hi}\n"


def wide_alias() -> str:
    """Quadratic, not exponential: one 2,000-item list referenced 2,000 times."""
    items = ", ".join(f'"+1555{i:07d}"' for i in range(2000))
    return f"version: 1\nlists:\n  a: &a [{items}]\n  b: [{', '.join(['*a'] * 2000)}]\n"


BOMBS = [
    pytest.param(
        billion_laughs,
        ":8:5: error: this value expands to 5,380,840 values through aliases, more than the 2,000,000 "
        "allowed (alias bomb?) [too-large]",
        id="billion-laughs",
    ),
    pytest.param(
        wide_alias,
        ":4:6: error: this value expands to 4,002,001 values through aliases, more than the 2,000,000 "
        "allowed (alias bomb?) [too-large]",
        id="wide-alias",
    ),
    pytest.param(
        lambda: "version: 1\nx: " + "[" * 10000 + "]" * 10000 + "\n",
        ":2:203: error: nesting deeper than 200 levels [too-deep]",
        id="10000-deep-flow-lists",
    ),
    pytest.param(
        lambda: "version: 1\nx: " + "{a: " * 10000 + "1" + "}" * 10000 + "\n",
        ":2:800: error: nesting deeper than 200 levels [too-deep]",
        id="10000-deep-flow-mappings",
    ),
    pytest.param(
        lambda: "version: 1\nx:\n" + "- " * 10000 + "x\n",
        ":3:399: error: nesting deeper than 200 levels [too-deep]",
        id="10000-deep-block-lists",
    ),
    pytest.param(
        lambda: "version: 1\ndefault: {error: hi}\n# " + "x" * (20 * 2**20) + "\n",
        ":1:1: error: file is larger than 16 MiB [too-large]",
        id="20MB-file",
    ),
]


# The child reports its own peak RSS (VmHWM, reset by exec): ru_maxrss from wait4 would
# include the pytest process it was forked from.
LINT_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
from router.cli import main
code = main(["lint", sys.argv[1]])
sys.stdout.flush()
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(int(peak.split()[1]) // 1024, file=sys.stderr)
sys.exit(code)
"""


def lint_in_child(path: Path) -> tuple[int, str, float, float]:
    """`vapi-router lint PATH` in a child under RLIMIT_AS 2 GiB: (exit, stdout, seconds, peak RSS MB)."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", LINT_CHILD, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    elapsed = time.perf_counter() - started
    return result.returncode, result.stdout, elapsed, float(result.stderr.split()[-1])


BOMB_FIGURES: dict[str, tuple[float, float]] = {}


@pytest.mark.parametrize(("make", "problem"), BOMBS)
def test_yaml_bombs_are_refused_in_bounded_time_and_memory(
    tmp_path: Path, make: Callable[[], str], problem: str, request: pytest.FixtureRequest
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(make(), encoding="utf-8")
    code, out, seconds, rss_mb = lint_in_child(path)
    BOMB_FIGURES[request.node.callspec.id] = (seconds, rss_mb)
    size = path.stat().st_size
    print(f"\n{request.node.callspec.id}: {size:,} bytes, {seconds:.2f} s, peak RSS {rss_mb:.0f} MB")
    assert out.splitlines() == [f"{path}{problem}", "1 error, 0 warnings"]
    assert code == 1
    assert seconds < LIMIT_S
    assert rss_mb < LIMIT_RSS_MB


def test_serve_refuses_a_bomb(tmp_path: Path) -> None:
    result = run_serve(tmp_path, billion_laughs(), env={"VAPI_SERVER_SECRET": SECRET})
    assert result.returncode == 3
    assert "(alias bomb?) [too-large]" in result.stderr


def test_reload_of_a_bomb_keeps_the_old_policy(tmp_path: Path) -> None:
    with InProcess(tmp_path, POLICY) as srv, srv.client() as client:
        srv.policy_path.write_text("version: 1\nx: " + "[" * 10000 + "]" * 10000 + "\n", encoding="utf-8")
        started = time.perf_counter()
        response = client.post("/-/reload", headers=srv.admin())
        assert time.perf_counter() - started < LIMIT_S
        assert response.status_code == 422
        assert any("[too-deep]" in e for e in response.json()["errors"])
        reply = srv.post_webhook(client, payload("assistant-request.pstn.json"))
        assert reply.json() == {"assistantId": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"}


# ------------------------------------------------------------------ regexes

REGEX_BUDGET_S = 0.050  # CPU time of this thread: what evaluation spends, whatever else the
# shared machine runs (wall time on a loaded 2-core host measures the other processes too)
# Worst cases for backtracking over an E.164 number: the longest possible, all one digit,
# and a near miss at the end (the patterns below end in 0, so every number here fails).
ADVERSARIAL = ["+123456789012345", "+111111111111111", "+199999999999999", "+4412345678901"]


def regex_policy(pattern: str) -> str:
    return (
        "version: 1\nroutes:\n  - id: r\n"
        f"    when: {{caller: {{regex: {json.dumps(pattern)}}}}}\n"
        "    then: {error: x}\ndefault: {error: y}\n"
    )


SLOW = [
    pytest.param(r"\+(\d+)+0", "nested", id="(d+)+"),
    pytest.param(r"\+((\d+)+)+0", "nested", id="((d+)+)+"),
    pytest.param(r"\+(\d*)*0", "nested", id="(d*)*"),
    pytest.param(r"\+(?:\d{1,3})+0", "nested", id="(d{1,3})+"),
    pytest.param(r"\+(\d+\d+)+0", "nested", id="(d+d+)+"),
    pytest.param(r"\+(?=(\d+)+)\d+", "nested", id="nested-in-lookahead"),
    pytest.param(r"\+(\d|\d)+0", "choice", id="(d|d)+"),
    pytest.param(r"\+(\d|\d|\d|\d)+0", "choice", id="(d|d|d|d)+"),
    pytest.param(r"\+(\d|\d\d)+0", "choice", id="(d|dd)+"),
    pytest.param(r"\+(1|12)+0", "choice", id="(1|12)+"),
    pytest.param(r"\+(?:[0-5]\d|[4-9])+0", "choice", id="overlapping-first-digits"),
    pytest.param(r"\+" + r"\d*" * 11 + "0", "many", id="eleven-d*"),
]
MESSAGES = {
    "nested": "regex has a nested quantifier such as (a+)+ that can backtrack for seconds; rewrite it "
    "without repeating a repeated group",
    "choice": "regex repeats a choice whose alternatives can match the same digit, such as (\\d|\\d\\d)+, "
    "that can backtrack for seconds; make the alternatives exclusive",
    "many": "regex has 11 repeats of variable length (more than 8) that can backtrack for a long time on a "
    "near miss; use fewer * + ? and {m,n}",
}
SAFE = [
    pytest.param(r"\+1\d{10}", id="us"),
    pytest.param(r"\+44(?:7\d{9}|20\d{8})", id="uk-mobile-or-london"),
    pytest.param(r"\+(?:1|44|33)\d+", id="country-choice-then-digits"),
    pytest.param(r"\+1(?:555|800)\d{7}", id="us-ranges"),
    pytest.param(r"\+\d{7,15}", id="any-length"),
    pytest.param(r"\+(?:1\d|2\d)+", id="repeated-exclusive-choice"),
    pytest.param(r"\+[1-9]\d*0?", id="optional-tail"),
    pytest.param(r".*", id="anything"),
]


@pytest.mark.parametrize(("pattern", "kind"), SLOW)
def test_lint_flags_catastrophic_regexes(pattern: str, kind: str) -> None:
    problems = [str(p) for p in lint_texts([("p.yaml", regex_policy(pattern))]).problems]
    assert problems == [f"p.yaml:4:28: error: {MESSAGES[kind]} [slow-regex]"]


def compiled_without_lint(pattern: str) -> Any:
    """A Policy with this regex, compiled straight from the YAML: no checks, as if lint were skipped."""
    return compile_policy([parse_document(regex_policy(pattern), file="p.yaml")], version="t")


def worst_evaluation_s(pattern: str) -> float:
    policy = compiled_without_lint(pattern)
    worst = 0.0
    for number in ADVERSARIAL:
        facts = Facts(caller=number, dialled=None, at=facts_at())
        started = time.thread_time()
        decision = evaluate(policy, facts)
        worst = max(worst, time.thread_time() - started)
        assert decision.target is not None
    return worst


def facts_at() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("pattern", SAFE)
def test_realistic_regexes_pass_lint_and_evaluate_fast(pattern: str) -> None:
    assert lint_texts([("p.yaml", regex_policy(pattern))]).problems == ()
    assert worst_evaluation_s(pattern) < REGEX_BUDGET_S


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param(r"\+(\d+)+0", id="(d+)+"),
        pytest.param(r"\+(\d*)*0", id="(d*)*"),
        pytest.param(r"\+(\d|\d)+0", id="(d|d)+"),
        pytest.param(r"\+(\d|\d\d)+0", id="(d|dd)+"),
        pytest.param(r"\+(\d+\d+)+0", id="(d+d+)+"),
        pytest.param(r"\+" + r"\d*" * 8 + "0", id="eight-d*"),
    ],
)
def test_one_level_of_backtracking_is_bounded_by_the_number_length(pattern: str) -> None:
    """Bypassing lint: numbers are E.164 (at most 16 characters) before any regex runs, so a
    pattern that backtracks exponentially in one dimension tries at most ~2^15 paths."""
    assert worst_evaluation_s(pattern) < REGEX_BUDGET_S


def test_two_levels_of_nesting_are_bounded_at_evaluation_too() -> None:
    """Stdlib re would take seconds here (minutes for ((\\d|\\d)+)+0); the regex engine with its
    per-match timeout either answers or raises TimeoutError, which the server turns into the
    fallback. Either way the call is not held."""
    for pattern in (r"\+((\d+)+)+0", r"\+((\d|\d)+)+0", r"\+((\d*)*)*0"):
        policy = compiled_without_lint(pattern)
        for number in ADVERSARIAL:
            started = time.thread_time()
            with contextlib.suppress(TimeoutError):
                evaluate(policy, Facts(caller=number, dialled=None, at=facts_at()))
            assert time.thread_time() - started < REGEX_BUDGET_S, (pattern, number)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.from_regex(r"[+0-9 ()\-.]{0,40}", fullmatch=True)))
def test_a_number_is_e164_or_nothing_before_any_regex(text: str) -> None:
    """What a regex can ever see: None, or + and 1-15 digits (normalise caps the input first)."""
    for region in (None, "US", "GB"):
        number = phone.normalise(text, region)
        assert number is None or re.fullmatch(r"\+\d{1,15}", number), number


def test_a_huge_caller_field_never_reaches_a_regex() -> None:
    started = time.perf_counter()
    message = {"type": "assistant-request", "customer": {"number": "1" * 1_000_000}}
    facts = facts_from_message(message, region="US", now=facts_at())
    assert facts.caller is None
    assert time.perf_counter() - started < REGEX_BUDGET_S


# ------------------------------------------------------------------ secrets and numbers in logs

CRM_TOKEN = "crm-SENTINEL-token-55aa"
TWILIO_TOKEN = "twilio-SENTINEL-authtoken-0e9f"
WRONG_SECRET = "wrong-SENTINEL-secret-3c3c"
OAUTH_CLIENT_SECRET = "oauth-SENTINEL-client-secret-19ab"
OAUTH_SIGNING_KEY = "oauth-SENTINEL-signing-key-0123456789abcdef"
JWKS_URL_TOKEN = "jwks-SENTINEL-url-token-77e1"  # a credential in the JWKS URL: never logged
JWKS_KEY = rsa_key()
BODY_SENTINEL = "body-SENTINEL-junk-8d8d"
CALLERS = {  # E.164 -> how the CRM answers for it
    "+14155550142": "ok",
    "+14155550143": "hang",
    "+14155550144": "500",
    "+14155550145": "garbage",
    "+14155550146": "drop",
    "+14155550147": "not_found",
}
DIALLED = "+16505550117"
LOG_POLICY = """\
version: 1
settings: {{deadline_ms: 600, fallback: desk, region: US}}
crm:
  http:
    url: "{url}"
    headers: {{Authorization: "Bearer ${{env.CRM_TOKEN}}", X-Api-Key: "${{env.CRM_TOKEN}}"}}
    tags: contact.tags
    fields: {{name: contact.name}}
  timeout_ms: 200
  cache_ttl_s: 0
targets:
  desk: {{assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}}
  named:
    assistantId: 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d
    assistantOverrides: {{variableValues: {{n: "${{crm.name}}"}}}}
routes:
  - id: named
    when: {{tags: [vip]}}
    then: named
  - id: nameless
    when: {{crm_status: not_found}}
    then: named
transfers:
  - id: t
    then: {{destination: {{type: number, number: "+16505550100"}}}}
default: desk
"""


def forbidden(number: str) -> list[str]:
    """Ways a full number could show in a log: E.164, digits, national digits, URL-encoded."""
    digits = number[1:]
    return [number, digits, digits[1:] if number.startswith("+1") else digits[2:], "%2B" + digits]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Everything `vapi-router serve` wrote (decision log, stdout, stderr at INFO) while serving
    calls full of secrets and numbers, down every CRM failure path, with refused requests too."""
    tmp_path = tmp_path_factory.mktemp("logs")
    env = {
        "VAPI_SERVER_SECRET": SECRET,
        "VAPI_HMAC_SECRET": HMAC_SECRET,
        "ROUTER_ADMIN_TOKEN": ADMIN_TOKEN,
        "CRM_TOKEN": CRM_TOKEN,
        "ROUTER_OAUTH_CLIENT_ID": "vapi",
        "ROUTER_OAUTH_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
        "ROUTER_OAUTH_SIGNING_KEY": OAUTH_SIGNING_KEY,
        "VAPI_OAUTH_ISSUER": "https://auth.example.com/",
        "VAPI_OAUTH_AUDIENCE": "vapi-router",
    }
    tokens: list[str] = []
    signatures: list[str] = []
    ended = 0
    with CrmServer() as crm, JwksServer() as jwks:
        jwks.keys = [public_jwk(JWKS_KEY, "k1")]
        env["VAPI_OAUTH_JWKS_URL"] = f"{jwks.url}?access_token={JWKS_URL_TOKEN}"
        crm.contacts["+14155550142"] = {"tags": ["vip"]}  # no name: ${crm.name} fails, a fallback is logged
        crm.modes.update({n: m for n, m in CALLERS.items() if m != "ok"})  # type: ignore[misc]
        with Subprocess(tmp_path, LOG_POLICY.format(url=crm.url_template), env=env) as srv:
            answered = 0
            with srv.client() as client:
                for i, (caller, _) in enumerate(CALLERS.items()):
                    for form in (caller, f"({caller[2:5]}) {caller[5:8]}-{caller[8:]}"):
                        message = payload("assistant-request.pstn.json")
                        message["message"]["call"]["id"] = f"log-{i}-{len(form)}"
                        message["message"]["customer"]["number"] = form
                        message["message"]["call"]["customer"]["number"] = form
                        phone_number = message["message"]["phoneNumber"]
                        phone_number["number"] = DIALLED
                        phone_number["twilioAuthToken"] = TWILIO_TOKEN
                        phone_number["twilioAccountSid"] = "AC" + TWILIO_TOKEN
                        phone_number["server"]["secret"] = SECRET
                        phone_number["credentialId"] = TWILIO_TOKEN
                        response = srv.post_webhook(client, message)
                        assert response.status_code == 200
                        answered += 1
                transfer = payload("transfer-destination-request.json")
                transfer["message"]["customer"] = {"number": "+14155550142"}
                assert srv.post_webhook(client, transfer).status_code == 200
                answered += 1
                body = request_body("hmac-log")
                signed = hmac_headers(body)
                signatures.append(signed["x-signature"])
                assert client.post(srv.webhook_path, content=body, headers=signed).status_code == 200
                answered += 1
                # credentials in the query string: the URL is never logged either
                query = f"{srv.webhook_path}?secret={SECRET}&access_token={ADMIN_TOKEN}"
                assert client.post(query, content=body, headers=srv.auth(body)).status_code == 200
                answered += 1
                wrong_query = f"{srv.webhook_path}?secret={WRONG_SECRET}"
                json_only = {"content-type": "application/json"}
                assert client.post(wrong_query, content=body, headers=json_only).status_code == 401
                # OAuth2: a token from the router's token URL, one from the authorization server
                form = {"grant_type": "client_credentials", "client_id": "vapi"}
                issued = client.post("/oauth/token", data=form | {"client_secret": OAUTH_CLIENT_SECRET})
                now = int(time.time())
                claims = {
                    "iss": "https://auth.example.com/",
                    "aud": "vapi-router",
                    "iat": now,
                    "exp": now + 60,
                }
                basic = httpx.BasicAuth("vapi", OAUTH_CLIENT_SECRET)
                issued_basic = client.post(
                    "/oauth/token", data={"grant_type": "client_credentials"}, auth=basic
                )
                tokens += [issued.json()["access_token"], jws(claims, JWKS_KEY, "RS256", kid="k1")]
                tokens.append(issued_basic.json()["access_token"])
                for token in tokens:
                    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
                    assert client.post(srv.webhook_path, content=body, headers=headers).status_code == 200
                    answered += 1
                wrong = client.post("/oauth/token", data=form | {"client_secret": WRONG_SECRET})
                assert wrong.status_code == 401
                wrong_basic = httpx.BasicAuth("vapi", WRONG_SECRET)
                wrong = client.post(
                    "/oauth/token", data={"grant_type": "client_credentials"}, auth=wrong_basic
                )
                assert wrong.status_code == 401
                wrong_signed = hmac_headers(body, WRONG_SECRET)
                signatures.append(wrong_signed["x-signature"])
                refused = [
                    {"x-vapi-secret": WRONG_SECRET},
                    {"authorization": f"Bearer {WRONG_SECRET}"},
                    wrong_signed,
                    {"x-vapi-secret": SECRET.upper()},
                    {"authorization": f"Bearer {tokens[0][:-4]}AAAA"},
                    {"authorization": f"Bearer {tokens[1][:-4]}AAAA"},
                    {"authorization": f"Bearer {jws(claims, JWKS_KEY, 'RS256', kid='unknown')}"},
                ]
                for headers in refused:
                    assert client.post(srv.webhook_path, content=body, headers=headers).status_code == 401
                for token in (WRONG_SECRET, SECRET):
                    reload = client.post("/-/reload", headers={"authorization": f"Bearer {token}"})
                    assert reload.status_code == 401
                explained = client.post("/v1/explain", content=body, headers=srv.admin())
                assert explained.status_code == 200
                junk = f'{{"message": {{"type": "assistant-request", "x": "{BODY_SENTINEL}"'.encode()
                assert client.post(srv.webhook_path, content=junk, headers=srv.auth()).status_code == 400
                # how the calls ended, as Vapi reports it: numbers, credentials and the
                # debugging artifacts of a failed assistant-request (logged on purpose)
                for message in ended_messages(tokens[0]):
                    assert srv.post_webhook(client, message).status_code == 200
                    ended += 1
            srv.stop()
        logs = {"decision log": srv.log_text(), "stdout": srv.stdout(), "stderr": srv.stderr()}
    logs["answered"] = str(answered)
    logs["ended"] = str(ended)
    logs["tokens"] = json.dumps(tokens)
    logs["signatures"] = json.dumps(signatures)
    return logs


def ended_messages(token: str) -> list[dict[str, Any]]:
    """A status-update `ended` by assistant-request-failed and an end-of-call-report, for two
    calls routed in `logged`, carrying every number and credential Vapi might put in them."""
    failed = payload("status-update.ended-assistant-request-failed.json")
    failed["message"]["call"]["id"] = "log-0-12"
    failed["message"]["customer"] = {"number": "+14155550142"}
    failed["message"]["phoneNumber"] = {"number": DIALLED, "twilioAuthToken": TWILIO_TOKEN}
    failed["message"]["inboundPhoneCallDebuggingArtifacts"] = {
        "assistantRequestError": "Request failed with status code 401",
        "assistantRequest": {
            "url": f"https://vapi:{SECRET}@router.example/webhook/vapi?secret={SECRET}",
            "headers": {"x-vapi-secret": SECRET, "authorization": f"Bearer {token}"},
            "body": {"message": {"customer": {"number": "+14155550142"}, "phoneNumber": {"number": DIALLED}}},
        },
        "assistantRequestResponse": "no answer from https://router.example/webhook/vapi?caller=%2B14155550144",
        "credentialId": TWILIO_TOKEN,
    }
    report = payload("end-of-call-report.json")
    report["message"]["call"]["id"] = "log-1-12"
    report["message"]["customer"] = {"number": "+14155550143"}
    report["message"]["phoneNumber"] = {"number": DIALLED, "twilioAuthToken": TWILIO_TOKEN}
    report["message"]["artifact"]["transcript"] = "User: call me back on +14155550143, code " + SECRET
    return [failed, report]


SECRETS = [SECRET, HMAC_SECRET, ADMIN_TOKEN, CRM_TOKEN, TWILIO_TOKEN, WRONG_SECRET, BODY_SENTINEL]
SECRETS += [OAUTH_CLIENT_SECRET, OAUTH_SIGNING_KEY, JWKS_URL_TOKEN]
SECRETS += [SECRET.upper(), "SENTINEL"]
NUMBERS = [form for n in (*CALLERS, DIALLED) for form in forbidden(n)]
# httpx logs each CRM request at INFO with its URL; the bug test below covers those lines
HTTPX_LINE = re.compile(r"^.* INFO httpx: HTTP Request: .*$\n?", re.MULTILINE)


def test_no_secret_and_no_full_number_in_any_log_line(logged: dict[str, str]) -> None:
    lines = [json.loads(line) for line in logged["decision log"].splitlines()]
    records = [r for r in lines if r["type"] != "call-ended"]
    assert len(records) == int(logged["answered"])  # 400s and 401s write none
    assert len(lines) - len(records) == int(logged["ended"])
    assert {r["caller"] for r in records} >= {phone.mask(n) for n in CALLERS}
    assert {r["crm_status"] for r in records} >= {"ok", "timeout", "error", "not_found"}
    assert any(r["fallback_reason"] for r in records)  # the failing paths were really taken
    tokens = json.loads(logged["tokens"])
    assert len(tokens) == 3
    signatures = json.loads(logged["signatures"])
    assert len(signatures) == 2
    # each token whole, and its signature alone; the HMAC signatures sent, right and wrong
    needles = [*SECRETS, *NUMBERS, *tokens, *(token.rsplit(".", 1)[1] for token in tokens), *signatures]
    for where in ("decision log", "stdout", "stderr"):
        text = HTTPX_LINE.sub("", logged[where])
        for needle in needles:
            assert needle not in text, f"{needle!r} in the {where}: ...{_around(text, needle)}..."


def test_crm_requests_do_not_log_the_callers_number(logged: dict[str, str]) -> None:
    lines = HTTPX_LINE.findall(logged["stderr"])
    assert not [line for line in lines if any(n in line for n in NUMBERS)], lines[:3]


def _around(text: str, needle: str) -> str:
    at = text.find(needle)
    return text[max(0, at - 120) : at + 120]
