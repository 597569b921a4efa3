"""router.server.store.PolicyStore without HTTP: swaps only on success, snapshots stay intact, reloads
are serialised, the check child (its answers, its death, its time limit), CRM clients, GC."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from reloadutil import BROKEN, broken, versioned

from router.crm.clients import FileCrm, HttpCrm
from router.errors import PolicyError
from router.policy.loader import read_texts
from router.server.reloadchild import check_in_child
from router.server.store import PolicyStore, ReloadResult


def make(tmp_path: Path, text: str) -> tuple[PolicyStore, Path]:
    policy = tmp_path / "main.yaml"
    policy.write_text(text, encoding="utf-8")
    return PolicyStore(policy, env={}), policy


def live_version(store: PolicyStore) -> str:
    assert store.live is not None
    return store.live.policy.version


def test_load_now_and_a_reload_that_changes_nothing(tmp_path: Path) -> None:
    seen: list[ReloadResult] = []
    store, _ = make(tmp_path, versioned(1))
    store.on_change = lambda s, r: seen.append(r)
    first = store.load_now()
    assert first.ok and first.changed and store.last_reload_ok and store.errors == ()
    assert store.live is not None and store.last_success_at == store.live.loaded_at

    same = asyncio.run(store.reload())
    assert same == ReloadResult(True, first.version, changed=False)
    assert store.reloads == 1 and seen == [first]  # an unchanged hash is no reload at all


def test_a_reload_swaps_one_reference_and_leaves_the_old_snapshot_alone(tmp_path: Path) -> None:
    store, policy = make(tmp_path, versioned(1))
    store.load_now()
    old = store.live
    assert old is not None
    old_routes, old_default = old.policy.routes, old.policy.default
    policy.write_text(versioned(2), encoding="utf-8")

    result = asyncio.run(store.reload())

    assert result.ok and result.changed and result.version != old.policy.version
    assert store.live is not old and live_version(store) == result.version
    # what a request in flight holds is untouched: same objects, same replies
    assert old.policy.routes is old_routes and old.policy.default is old_default
    assert old.policy.targets["desk"].body["assistantId"].endswith("000000000001")
    assert store.live.policy.targets["desk"].body["assistantId"].endswith("000000000002")
    assert store.reloads == 2 and store.last_success_at == store.live.loaded_at >= old.loaded_at


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_an_invalid_edit_never_goes_live(tmp_path: Path, kind: str) -> None:
    store, policy = make(tmp_path, versioned(1))
    store.load_now()
    good, success_at = store.live, store.last_success_at
    policy.write_text(broken(kind, 2), encoding="utf-8")

    result = asyncio.run(store.reload())

    line, col, code = BROKEN[kind][1]
    assert not result.ok and not result.changed
    assert good is not None and result.version == good.policy.version
    assert store.live is good and store.last_success_at == success_at
    assert not store.last_reload_ok and store.errors == result.problems
    assert len(result.problems) == 1
    (problem,) = result.problems  # a positioned value, not a string
    assert (problem.file, problem.line, problem.column, problem.code) == (str(policy), line, col, code)
    assert str(problem).startswith(f"{policy}:{line}:{col}: error: ")

    policy.write_text(versioned(3), encoding="utf-8")
    recovered = asyncio.run(store.reload())
    assert recovered.ok and recovered.changed and store.last_reload_ok and store.errors == ()
    assert live_version(store) == recovered.version != result.version


def test_the_same_invalid_edit_is_checked_again_each_time(tmp_path: Path) -> None:
    store, policy = make(tmp_path, versioned(1))
    store.load_now()
    policy.write_text(broken("unknown-target", 2), encoding="utf-8")

    async def twice() -> tuple[ReloadResult, ReloadResult]:
        return await store.reload(), await store.reload()

    a, b = asyncio.run(twice())
    assert not a.ok and a == b and store.reloads == 3  # failures are never skipped by hash


def test_a_missing_policy_path_fails_and_keeps_the_old_policy(tmp_path: Path) -> None:
    store, policy = make(tmp_path, versioned(1))
    store.load_now()
    good = store.live
    policy.unlink()
    result = asyncio.run(store.reload())
    assert not result.ok and store.live is good
    assert [str(p) for p in result.problems] == [f"{policy}:1:1: error: no such file or directory [no-file]"]


def test_a_crm_file_that_disappears_fails_the_reload_at_its_position(tmp_path: Path) -> None:
    (tmp_path / "crm.csv").write_text("number,tags\n+14155550142,vip\n", encoding="utf-8")
    store, policy = make(tmp_path, versioned(1, crm="crm:\n  file: crm.csv\n"))
    assert store.load_now().ok
    assert store.live is not None and isinstance(store.live.crm, FileCrm)
    good = store.live
    (tmp_path / "crm.csv").unlink()
    policy.write_text(versioned(2, crm="crm:\n  file: crm.csv\n"), encoding="utf-8")
    result = asyncio.run(store.reload())
    assert not result.ok and store.live is good
    assert str(result.problems[0]).startswith(f"{policy}:4:9: error: crm.file ")


def test_an_edit_of_the_embedded_crm_file_alone_is_reloaded(tmp_path: Path) -> None:
    """The CRM file is no part of the version hash, yet a reload must read it again."""
    crm = tmp_path / "crm.csv"
    crm.write_text("number,tags\n+14155550142,vip\n", encoding="utf-8")
    store, _ = make(tmp_path, versioned(1, crm="crm:\n  file: crm.csv\n"))
    store.load_now()
    first = store.live

    async def run() -> tuple[ReloadResult, ReloadResult]:
        unchanged = await store.reload()
        crm.write_text("number,tags\n+14155550142,gold\n+14155550143,vip\n", encoding="utf-8")
        return unchanged, await store.reload()

    unchanged, reread = asyncio.run(run())
    assert first is not None and unchanged == ReloadResult(True, first.policy.version, changed=False)
    assert reread.ok and not reread.changed and store.reloads == 2  # the same policy version...
    assert store.live is not first and store.live is not None and store.live.crm is not None
    assert asyncio.run(store.live.crm.lookup("+14155550142")).tags == {"gold"}  # ...new CRM data


def test_reloads_never_overlap(tmp_path: Path) -> None:
    store, policy = make(tmp_path, versioned(1))
    store.load_now()
    spans: list[tuple[float, float]] = []

    def timed(texts: list[tuple[str, str]]) -> bytes | None:  # the real check, timed
        started = time.monotonic()
        try:
            return check_in_child(texts)
        finally:
            spans.append((started, time.monotonic()))

    store.checker = timed

    async def many(n: int) -> list[ReloadResult]:
        return await asyncio.gather(*(store.reload() for _ in range(n)))

    async def run() -> None:
        # invalid: every call does the whole work, one after the other
        policy.write_text(broken("unknown-target", 2), encoding="utf-8")
        failed = await many(6)
        assert [r.ok for r in failed] == [False] * 6 and len(spans) == 6
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))

        # valid: the first does the work, the others find the same content live
        spans.clear()
        policy.write_text(versioned(3), encoding="utf-8")
        done = await many(6)
        assert [r.changed for r in done] == [True] + [False] * 5 and len(spans) == 1
        assert {r.version for r in done} == {live_version(store)}

    asyncio.run(run())


def test_the_check_child_answers_plain_data_or_problems(tmp_path: Path) -> None:
    policy = tmp_path / "main.yaml"
    policy.write_text(versioned(1), encoding="utf-8")
    good = orjson.loads(check_in_child(read_texts(policy)) or b"null")
    assert good["ok"] is True and good["crm_file"] is None
    assert good["data"][0]["routes"][0]["id"] == "bay-area"

    policy.write_text(broken("bad-number", 2), encoding="utf-8")
    bad = orjson.loads(check_in_child(read_texts(policy)) or b"null")
    assert bad == {
        "ok": False,
        "problems": [
            PolicyError(str(policy), 9, 20, '"+1415x" is not a possible phone number', "bad-number").as_dict()
        ],
    }


def _slow_child(texts: list[tuple[str, str]], conn: Any) -> None:
    time.sleep(30)


def _dying_child(texts: list[tuple[str, str]], conn: Any) -> None:
    os._exit(3)


def test_a_check_that_outlasts_its_time_limit_is_killed_and_reported(tmp_path: Path) -> None:
    policy = tmp_path / "main.yaml"
    policy.write_text(versioned(1), encoding="utf-8")
    before = set(_children())
    started = time.monotonic()
    answer = orjson.loads(check_in_child(read_texts(policy), timeout_s=0.2, child=_slow_child) or b"null")
    assert time.monotonic() - started < 5
    message = "checking the policy took longer than 0.2 s; it was not loaded"
    problem = PolicyError(str(policy), 1, 1, message, "check-timeout")
    assert answer == {"ok": False, "problems": [problem.as_dict()]}
    assert set(_children()) <= before  # killed and reaped


def _children() -> list[int]:
    out: list[int] = []
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{tid}/children", encoding="ascii") as f:
            out.extend(int(c) for c in f.read().split())
    return out


def test_a_check_child_that_dies_falls_back_to_a_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, policy = make(tmp_path, versioned(1))
    store.load_now()
    store.checker = lambda texts: check_in_child(texts, child=_dying_child)
    policy.write_text(versioned(2), encoding="utf-8")
    result = asyncio.run(store.reload())
    assert result.ok and result.changed and live_version(store) == result.version
    assert "the policy check process died (exit code 3)" in caplog.text


def test_a_fault_while_compiling_fails_the_reload_not_the_server(tmp_path: Path) -> None:
    store, policy = make(tmp_path, versioned(1))
    store.load_now()
    good = store.live
    real = store.compiler

    def broken_compiler(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")

    store.compiler = broken_compiler
    policy.write_text(versioned(2), encoding="utf-8")
    result = asyncio.run(store.reload())
    message = "internal error while loading the policy: KeyError: 'a bug'"
    assert not result.ok and store.live is good
    assert [str(p) for p in result.problems] == [f"{policy}:1:1: error: {message} [internal]"]
    store.compiler = real
    assert asyncio.run(store.reload()).changed


def test_gc_stays_enabled_and_the_live_policy_is_frozen(tmp_path: Path) -> None:
    store, policy = make(tmp_path, versioned(1))
    store.load_now()
    policy.write_text(versioned(2), encoding="utf-8")
    asyncio.run(store.reload())
    assert gc.isenabled()
    # frozen: out of the collector's generations, so no collection walks the policy again
    assert gc.get_freeze_count() > 0 and store.live is not None
    assert all(o is not store.live and o is not store.live.policy for o in gc.get_objects())


def http_crm(url: str) -> str:
    return f'crm:\n  http: {{url: "{url}"}}\n  timeout_ms: 500\n'


def test_an_unchanged_http_crm_keeps_its_client_across_reloads(tmp_path: Path) -> None:
    store, policy = make(tmp_path, versioned(1, crm=http_crm("http://127.0.0.1:9/c?p=${caller}")))
    store.load_now()
    assert store.live is not None
    client = store.live.crm
    assert isinstance(client, HttpCrm)

    async def edits() -> None:
        policy.write_text(versioned(2, crm=http_crm("http://127.0.0.1:9/c?p=${caller}")), encoding="utf-8")
        assert (await store.reload()).changed
        assert store.live is not None and store.live.crm is client  # pool and cache survive
        policy.write_text(versioned(3, crm=http_crm("http://127.0.0.1:9/other?p=${caller}")))
        assert (await store.reload()).changed
        assert store.live is not None and store.live.crm is not client
        assert isinstance(store.live.crm, HttpCrm)
        await store.live.crm.aclose()

    asyncio.run(edits())
    asyncio.run(client.aclose())


def test_reload_runs_off_the_event_loop(tmp_path: Path) -> None:
    """While a reload of a large set runs, the event loop keeps turning (no long stall)."""
    routes = "".join(
        f'  - {{id: r{i}, when: {{dialled: "+1650555{i:04d}"}}, then: desk}}\n' for i in range(3000)
    )
    text = versioned(1).replace("routes:\n", "routes:\n" + routes)
    store, policy = make(tmp_path, text)
    assert store.load_now().ok
    policy.write_text(text.replace("000000000001", "000000000002"), encoding="utf-8")

    async def measure() -> tuple[ReloadResult, float, int]:
        gaps: list[float] = []
        stop = threading.Event()

        async def ticker() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                gaps.append(time.perf_counter() - t)

        task = asyncio.create_task(ticker())
        result = await store.reload()
        stop.set()
        await task
        return result, max(gaps), len(gaps)

    result, worst, ticks = asyncio.run(measure())
    assert result.ok and result.changed
    assert ticks > 20 and worst < 0.25, (ticks, worst)
