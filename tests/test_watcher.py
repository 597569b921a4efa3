"""router.server.watcher on a real PolicyStore and real files: edits, directory sets, the Kubernetes
ConfigMap `..data` swap (directory and single-file paths), bursts, editor temp files, SIGHUP."""

from __future__ import annotations

import asyncio
import itertools
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from reloadutil import configmap_update, versioned

from router.server.store import PolicyStore, ReloadResult
from router.server.watcher import DEBOUNCE_MS, POLL_S, Debounce, install_sighup, watch

QUIET_S = POLL_S + DEBOUNCE_MS / 1000 + 0.4  # long enough for a reload that is coming to have come


def store_at(path: Path) -> PolicyStore:
    store = PolicyStore(path)
    assert store.load_now().ok, store.errors
    return store


@asynccontextmanager
async def watching(store: PolicyStore, **options: float) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(watch(store, stop=stop, **options))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def until_live(store: PolicyStore, version: str, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while store.live is None or store.live.policy.version != version:
        assert time.monotonic() < end, f"{version} not live; errors: {store.errors}"
        await asyncio.sleep(0.01)


async def first_edit(store: PolicyStore, write: Callable[[], object]) -> None:
    """The first edit after the watcher started: seen even if it came before the watch did."""
    before = store.live.policy.version if store.live else None
    write()
    end = time.monotonic() + 10
    while store.live is None or store.live.policy.version == before:
        assert time.monotonic() < end, "the first edit was never picked up"
        await asyncio.sleep(0.01)


def version_after(store: PolicyStore, write: Callable[[], object]) -> str:
    """The version `store` would load after `write` (computed on a scratch store)."""
    write()
    scratch = PolicyStore(store.path)
    assert scratch.load_now().ok, scratch.errors
    assert scratch.live is not None
    return scratch.live.policy.version


def test_file_edit_and_atomic_save(tmp_path: Path) -> None:
    policy = tmp_path / "main.yaml"
    policy.write_text(versioned(1), encoding="utf-8")
    store = store_at(policy)

    async def run() -> None:
        async with watching(store):
            await first_edit(store, lambda: policy.write_text(versioned(2), encoding="utf-8"))
            # an editor's save: a temp file renamed over the policy
            tmp = tmp_path / ".main.yaml.swp"
            tmp.write_text(versioned(3), encoding="utf-8")
            os.replace(tmp, policy)
            await until_live(store, version_after(store, lambda: None))

    asyncio.run(run())
    assert store.last_reload_ok


def split_set(n: int) -> tuple[str, str]:
    """versioned(n) as two files of a set: everything but the routes, and the routes."""
    head, _, rest = versioned(n).partition("routes:\n")
    routes, _, default = rest.partition("default:")
    return head + "default:" + default, "version: 1\nroutes:\n" + routes


def test_directory_set_files_added_changed_removed(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    a, b = split_set(1)
    (policies / "a.yaml").write_text(a, encoding="utf-8")
    (policies / "b.yaml").write_text(b, encoding="utf-8")
    store = store_at(policies)
    extra = 'version: 1\nroutes:\n  - {id: nyc, when: {caller: "+1212*"}, then: desk}\n'

    async def run() -> None:
        async with watching(store):
            await first_edit(store, lambda: (policies / "a.yaml").write_text(split_set(2)[0]))
            target = version_after(store, lambda: (policies / "c.yaml").write_text(extra))
            await until_live(store, target)
            assert store.live is not None and [r.id for r in store.live.policy.routes] == ["bay-area", "nyc"]
            target = version_after(store, lambda: (policies / "c.yaml").unlink())
            await until_live(store, target)
            # files that are not part of the set change nothing: no reload at all
            reloads = store.reloads
            (policies / "a.test.yaml").write_text("cases: []\n", encoding="utf-8")
            (policies / "notes.txt").write_text("hello\n", encoding="utf-8")
            await asyncio.sleep(QUIET_S)
            assert store.reloads == reloads

    asyncio.run(run())


def configmap_set(n: int) -> dict[str, str]:
    return {"main.yaml": versioned(n)}


def test_configmap_symlink_swap_of_a_directory(tmp_path: Path) -> None:
    mount = tmp_path / "config"
    configmap_update(mount, configmap_set(1))
    assert (mount / "..data").is_symlink() and (mount / "main.yaml").is_symlink()
    store = store_at(mount)
    assert store.live is not None and store.live.policy.files == (str(mount / "main.yaml"),)

    async def run() -> None:
        async with watching(store):
            n = iter(range(2, 100))
            await first_edit(store, lambda: configmap_update(mount, configmap_set(next(n))))
            for k in (200, 201):  # every later update is seen the first time
                target = version_after(store, lambda k=k: configmap_update(mount, configmap_set(k)))  # type: ignore[misc]
                await until_live(store, target, timeout_s=5)
            # a second key appears in the ConfigMap: a second file of the set
            files = configmap_set(202) | {"extra.yaml": "version: 1\nroutes:\n  - {id: x, then: desk}\n"}
            target = version_after(store, lambda: configmap_update(mount, files))
            await until_live(store, target, timeout_s=5)
            assert store.live is not None and len(store.live.policy.files) == 2

    asyncio.run(run())
    assert sorted(p.name for p in mount.iterdir() if not p.name.startswith("..2026")) == [
        "..data",
        "extra.yaml",
        "main.yaml",
    ]


def test_configmap_symlink_swap_of_a_single_file_path(tmp_path: Path) -> None:
    mount = tmp_path / "config"
    configmap_update(mount, configmap_set(1))
    store = store_at(mount / "main.yaml")  # --policy /etc/router/main.yaml, a symlink

    async def run() -> None:
        async with watching(store):
            n = iter(range(2, 100))
            await first_edit(store, lambda: configmap_update(mount, configmap_set(next(n))))
            target = version_after(store, lambda: configmap_update(mount, configmap_set(300)))
            await until_live(store, target, timeout_s=5)

    asyncio.run(run())


@pytest.mark.parametrize(
    ("changes", "asks", "due"),
    [
        pytest.param([], [0.0, 5.0], [None, None], id="nothing-changed"),
        pytest.param([0.0], [0.1, 0.2, 0.3], [0.1, 0.0, -0.1], id="one-change-then-quiet"),
        # 20 writes 5 ms apart: one burst, due 200 ms after the last one
        pytest.param([i * 0.005 for i in range(20)], [0.1, 0.295], [0.195, 0.0], id="a-burst-is-one-reload"),
        # writes that never stop: due 2 s after the first, quiet or not
        pytest.param([i * 0.1 for i in range(40)], [1.9, 2.0], [0.1, 0.0], id="never-quiet-max-delay"),
    ],
)
def test_debounce(changes: list[float], asks: list[float], due: list[float | None]) -> None:
    debounce = Debounce()  # 200 ms quiet, 2 s at most
    for t in changes:
        debounce.changed(t)
    got = [debounce.due_in(t) for t in asks]
    assert [None if g is None else round(g, 6) for g in got] == due


def test_debounce_starts_a_new_burst_after_the_reload() -> None:
    debounce = Debounce(quiet_s=1.0, max_delay_s=10.0)
    debounce.changed(0.0)
    assert debounce.due_in(1.0) == 0.0
    debounce.done()
    assert debounce.due_in(1.0) is None
    debounce.changed(5.0)  # a change after the reload: measured from itself, not from 0.0
    assert debounce.due_in(5.5) == 0.5


def test_a_burst_of_writes_makes_one_reload(tmp_path: Path) -> None:
    """End to end, without timing assumptions: writes while a reload is pending join it."""
    policy = tmp_path / "main.yaml"
    policy.write_text(versioned(1), encoding="utf-8")
    store = store_at(policy)

    async def run() -> None:
        async with watching(store):
            await first_edit(store, lambda: policy.write_text(versioned(2), encoding="utf-8"))
            await asyncio.sleep(QUIET_S)
            before = store.reloads
            for i in range(20):  # well inside one debounce window, however busy the machine
                policy.write_text(versioned(10 + i), encoding="utf-8")
            await until_live(store, version_after(store, lambda: None))
            await asyncio.sleep(QUIET_S)
            assert store.reloads - before == 1
            assert store.last_reload_ok

    asyncio.run(run())


def test_an_invalid_edit_is_a_failed_reload_and_the_next_good_one_recovers(tmp_path: Path) -> None:
    policy = tmp_path / "main.yaml"
    policy.write_text(versioned(1), encoding="utf-8")
    store = store_at(policy)

    async def run() -> None:
        async with watching(store):
            await first_edit(store, lambda: policy.write_text(versioned(2), encoding="utf-8"))
            good = store.live
            policy.write_text(versioned(3).replace("then: desk", "then: dsek"), encoding="utf-8")
            end = time.monotonic() + 5
            while store.last_reload_ok:
                assert time.monotonic() < end
                await asyncio.sleep(0.01)
            assert store.live is good
            assert [str(p) for p in store.errors] == [
                f'{policy}:10:11: error: unknown target "dsek" (did you mean "desk"?) [unknown-target]'
            ]
            await until_live(store, version_after(store, lambda: policy.write_text(versioned(4))))
            assert store.last_reload_ok and store.errors == ()

    asyncio.run(run())


def test_sighup_reloads(tmp_path: Path) -> None:
    policy = tmp_path / "main.yaml"
    policy.write_text(versioned(1), encoding="utf-8")
    store = store_at(policy)
    target = version_after(store, lambda: policy.write_text(versioned(2), encoding="utf-8"))

    async def run() -> None:
        remove = install_sighup(store)  # pytest runs tests in the main thread: a real handler
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            await until_live(store, target, timeout_s=5)
        finally:
            remove()

    asyncio.run(run())
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


def test_an_edit_before_the_watch_began_is_caught_up(tmp_path: Path) -> None:
    policy = tmp_path / "main.yaml"
    policy.write_text(versioned(1), encoding="utf-8")
    store = store_at(policy)
    target = version_after(store, lambda: policy.write_text(versioned(2), encoding="utf-8"))

    async def run() -> None:
        async with watching(store):  # the edit above came between the load and the watch
            await until_live(store, target, timeout_s=5)

    asyncio.run(run())


def test_other_files_beside_the_policy_neither_reload_nor_delay_it(tmp_path: Path) -> None:
    """A decision log written beside the policy file changes all the time: it must not count."""
    policy = tmp_path / "main.yaml"
    policy.write_text(versioned(1), encoding="utf-8")
    store = store_at(policy)

    async def scribble(stop: asyncio.Event) -> None:
        with (tmp_path / "decisions.jsonl").open("a", encoding="utf-8") as f:
            while not stop.is_set():
                f.write('{"route": "bay-area"}\n')
                f.flush()
                await asyncio.sleep(0.01)

    async def run() -> None:
        stop = asyncio.Event()
        writer = asyncio.create_task(scribble(stop))
        try:
            async with watching(store):
                await asyncio.sleep(QUIET_S)
                reloads = store.reloads
                await asyncio.sleep(QUIET_S)
                assert store.reloads == reloads  # (the catch-up at start was a no-op anyway)
                started = time.monotonic()
                await until_live(store, version_after(store, lambda: policy.write_text(versioned(2))))
                assert time.monotonic() - started < 1.5  # not held back until the log goes quiet
        finally:
            stop.set()
            await writer

    asyncio.run(run())


def test_an_edit_of_the_embedded_crm_file_reloads(tmp_path: Path) -> None:
    crm = tmp_path / "crm.csv"
    crm.write_text("number,tags\n+14155550142,vip\n", encoding="utf-8")
    policy = tmp_path / "main.yaml"
    policy.write_text(versioned(1, crm="crm:\n  file: crm.csv\n"), encoding="utf-8")
    store = store_at(policy)

    def tags() -> frozenset[str]:
        assert store.live is not None and store.live.crm is not None
        return asyncio.run(store.live.crm.lookup("+14155550142")).tags

    assert tags() == {"vip"}

    async def run() -> None:
        async with watching(store):
            await asyncio.sleep(QUIET_S)
            before = store.live
            crm.write_text("number,tags\n+14155550142,gold\n", encoding="utf-8")
            end = time.monotonic() + 5
            while store.live is before:
                assert time.monotonic() < end, "the CRM edit was not picked up"
                await asyncio.sleep(0.01)

    asyncio.run(run())
    assert tags() == {"gold"}


# Run in a child whose RLIMIT_NOFILE is low, with every descriptor then taken: what the watcher
# and the store see when the process is out of descriptors (EMFILE), with nothing faked.
_OUT_OF_DESCRIPTORS = """
import asyncio, errno, os, sys
from pathlib import Path
from router.server.store import PolicyStore
from router.server.watcher import snapshot
store = PolicyStore(Path(sys.argv[1]))
assert store.load_now().ok
seen = snapshot(store)
held = []
try:
    while len(held) < 1000:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError as exc:
    assert exc.errno == errno.EMFILE, exc
try:
    snapshot(store)
    print("snapshot: a state")
except OSError as exc:
    print("snapshot: raised", errno.errorcode[exc.errno])
for fd in held[-8:]:  # a few back: enough for the event loop, not for reading the files
    os.close(fd)
held = held[:-8]
loop = asyncio.new_event_loop()
while True:  # and take the rest again, so that the reload finds none
    try:
        held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        break
result = loop.run_until_complete(store.reload())
print("reload:", result.ok, "retry" if result.retry else "final", result.problems[0].message)
for fd in held:
    os.close(fd)
result = loop.run_until_complete(store.reload())
print("reload:", result.ok, "retry" if result.retry else "final", len(snapshot(store)) == len(seen))
"""


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_out_of_descriptors_the_snapshot_raises_and_the_reload_asks_for_a_retry(
    tmp_path: Path, kind: str
) -> None:
    """EMFILE is not a state of the files: a snapshot that cannot list the directory raises
    (watch skips that poll) instead of returning a set without the policy files, which would
    look like a change; a reload that cannot read them fails with `retry` set (watch tries
    again, see tests/hostile/test_watcher_emfile.py on the wire)."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "main.yaml").write_text(versioned(1), encoding="utf-8")
    path = policies if kind == "directory" else policies / "main.yaml"

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    out = subprocess.run(
        [sys.executable, "-c", _OUT_OF_DESCRIPTORS, str(path)],
        preexec_fn=lower,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "snapshot: raised EMFILE",
        "reload: False retry cannot read: Too many open files",
        "reload: True final True",
    ]


class ShortOnce(PolicyStore):
    """A real store whose first `short` reloads fail as a reload does when the process has no
    descriptor to read with (retry set), without reading; later ones are the store's own."""

    def __init__(self, path: Path, short: int) -> None:
        super().__init__(path)
        self.short = short
        self.attempts: list[float] = []
        self.finished = 0  # reloads that returned (a started one may still be reading)

    async def reload(self) -> ReloadResult:
        self.attempts.append(time.monotonic())
        try:
            if len(self.attempts) <= self.short:
                version = self.live.policy.version if self.live else ""
                return ReloadResult(False, version, changed=False, retry=True)
            return await super().reload()
        finally:
            self.finished += 1


RETRY = 0.1


def test_a_reload_short_of_descriptors_is_tried_again_backing_off(tmp_path: Path) -> None:
    """The change was seen and the files look the same afterwards: only the retry brings the
    edit in. Retries come `retry_s` after the first failure (plus the debounce), then twice
    that, and so on (RETRY_S in production; shorter here to keep the test short)."""
    policy = tmp_path / "main.yaml"
    policy.write_text(versioned(1), encoding="utf-8")
    store = ShortOnce(policy, short=0)
    assert store.load_now().ok

    async def run() -> None:
        async with watching(store, retry_s=RETRY):
            # the catch-up reload at start (a no-op), finished: one still reading when the
            # edit lands would load it itself, and the retries would never be needed
            while not store.finished:
                await asyncio.sleep(0.01)
            store.attempts.clear()
            store.short = 2  # this edit's first two reloads find no descriptor
            target = version_after(store, lambda: policy.write_text(versioned(2), encoding="utf-8"))
            await until_live(store, target, timeout_s=10)

    asyncio.run(run())
    assert len(store.attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(store.attempts)]
    debounce = DEBOUNCE_MS / 1000
    for gap, wait in zip(gaps, [RETRY, 2 * RETRY], strict=True):
        assert wait + debounce - 0.05 <= gap <= wait + debounce + POLL_S + 0.3, gaps
