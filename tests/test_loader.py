"""router.policy.loader: which files make a policy set, reading them (missing, unreadable,
too large, not UTF-8), lint_texts/lint_path (every problem, sorted by position; the fast
and positioned paths agree) and load_policy (PolicyInvalid with every error).

Merging files into one set and the ConfigMap layout are in tests/test_checks.py; the golden
lint output of every situation in tests/test_lint_golden.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from router.errors import PolicyError, PolicyInvalid
from router.policy.loader import (
    MAX_FILE_BYTES,
    lint_path,
    lint_texts,
    load_policy,
    policy_files,
    read_document,
    read_texts,
)

DEFAULT = "default: {error: Sorry.}\n"
GOOD = "version: 1\n" + DEFAULT
# Problems from the schema (unknown key) and from the checks (unknown targets), interleaved.
MIXED = (
    "version: 1\n"
    "routes:\n"
    "  - {id: a, when: {caller: '+44*'}, then: nowhere}\n"
    "  - {id: b, then: {error: x}, bogus: 1}\n"
    "default: nope\n"
)
MIXED_PROBLEMS = [
    'p.yaml:3:43: error: unknown target "nowhere" [unknown-target]',
    'p.yaml:4:31: error: unknown key "bogus" in routes[1] [unknown-key]',
    'p.yaml:5:10: error: unknown target "nope" [unknown-target]',
]
# A warning (the catch-all shadows "b") and, in the second text, an error as well.
SHADOWED = "version: 1\nroutes:\n  - {id: all, then: {error: a}}\n  - {id: b, when: {caller: '+44*'}, then: "
UNREACHABLE = (
    'p.yaml:3:10: warning: route "all" matches every call, so the 1 route after it can never match: '
    '"b" (p.yaml:4:6); give it a `when`, or move it last (or make it the `default`) [unreachable]'
)


def _write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _lines(problems: tuple[PolicyError, ...] | list[PolicyError], root: Path | None = None) -> list[str]:
    lines = [str(p) for p in problems]
    return [line.replace(f"{root}{os.sep}", "") for line in lines] if root else lines


# --- policy_files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(
            ["b.yaml", "a.yaml", "10.yaml", "9.yaml"],
            ["10.yaml", "9.yaml", "a.yaml", "b.yaml"],
            id="by-name-not-number",
        ),
        pytest.param(["b.yaml", "B.yaml", "_a.yaml"], ["B.yaml", "_a.yaml", "b.yaml"], id="code-point-order"),
        pytest.param(["main.yaml", "main.test.yaml", "other.test.yaml"], ["main.yaml"], id="no-test-files"),
        pytest.param(
            ["main.yaml", "main.yml", "main.YAML", "main.json", "yaml"], ["main.yaml"], id="only-dot-yaml"
        ),
        pytest.param(["main.yaml", ".hidden.yaml", "..data.yaml"], ["main.yaml"], id="no-dot-entries"),
        pytest.param(
            ["main.yaml", "dir.yaml/inner.yaml", "sub/x.yaml"], ["main.yaml"], id="top-level-files-only"
        ),
        pytest.param(["a.test.yaml"], [], id="nothing-left"),
    ],
)
def test_policy_files_of_a_directory(tmp_path: Path, names: list[str], expected: list[str]) -> None:
    _write(tmp_path, dict.fromkeys(names, GOOD))
    assert [p.name for p in policy_files(tmp_path)] == expected


def test_policy_files_follows_symlinks_and_keeps_their_own_names(tmp_path: Path) -> None:
    """A link counts under its own name (its place in the merge order), wherever it points;
    a dangling link, or one to a directory, is no file."""
    _write(tmp_path, {"store/zz-real.yaml": GOOD, "store/folder/x.yaml": GOOD, "b.yaml": GOOD})
    os.symlink("store/zz-real.yaml", tmp_path / "a.yaml")
    os.symlink("store/folder", tmp_path / "c.yaml")
    os.symlink("missing.yaml", tmp_path / "d.yaml")
    assert policy_files(tmp_path) == [tmp_path / "a.yaml", tmp_path / "b.yaml"]


@pytest.mark.parametrize("name", ["policy.yaml", "policy.test.yaml", "notes.txt", "missing.yaml"])
def test_a_file_path_is_the_whole_set_whatever_its_name(tmp_path: Path, name: str) -> None:
    """Naming one file says which file: no filtering (lint reports what is wrong with it)."""
    assert policy_files(tmp_path / name) == [tmp_path / name]


# --- read_texts ----------------------------------------------------------------------------------


def test_read_texts_gives_name_and_text_in_merge_order(tmp_path: Path) -> None:
    _write(tmp_path, {"b.yaml": "version: 1\n", "a.yaml": "version: 1\n# ü\n", "a.test.yaml": "cases: []\n"})
    assert read_texts(tmp_path) == [
        (str(tmp_path / "a.yaml"), "version: 1\n# ü\n"),
        (str(tmp_path / "b.yaml"), "version: 1\n"),
    ]
    assert read_texts(tmp_path / "b.yaml") == [(str(tmp_path / "b.yaml"), "version: 1\n")]


def _unix_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


def test_read_texts_problems(tmp_path: Path) -> None:
    """Each way a set cannot be read is one positioned problem naming the file at fault."""
    _write(tmp_path, {"empty/notes.txt": "x", "bytes/a.yaml": ""})
    (tmp_path / "bytes" / "b.yaml").write_bytes(b"version: 1\ndefault: {error: 'caf\xe9'}\n")
    with open(tmp_path / "big.yaml", "wb") as big:
        big.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written
    cases = {
        "missing": tmp_path / "missing",
        "empty": tmp_path / "empty",
        "bytes": tmp_path / "bytes",
        "big.yaml": tmp_path / "big.yaml",
        "s.yaml": tmp_path / "s.yaml",  # a Unix socket: open() fails with ENXIO, even for root
    }
    with _unix_socket(tmp_path / "s.yaml"):
        found: dict[str, str] = {}
        for label, path in cases.items():
            with pytest.raises(PolicyError) as raised:
                read_texts(path)
            found[label] = str(raised.value).replace(f"{tmp_path}{os.sep}", "")
    assert found == {
        "missing": "missing:1:1: error: no such file or directory [no-file]",
        "empty": "empty:1:1: error: no *.yaml policy files in this directory [no-file]",
        "bytes": "bytes/b.yaml:2:22: error: file is not UTF-8 text (byte 0xe9); save it as UTF-8 [not-text]",
        "big.yaml": "big.yaml:1:1: error: file is larger than 16 MiB [too-large]",
        "s.yaml": "s.yaml:1:1: error: cannot read: No such device or address [no-file]",
    }


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    with open(tmp_path / "max.yaml", "wb") as f:
        f.truncate(MAX_FILE_BYTES)
    [(_, text)] = read_texts(tmp_path / "max.yaml")
    assert len(text) == MAX_FILE_BYTES


def test_lint_path_reports_a_read_problem_as_its_only_problem(tmp_path: Path) -> None:
    loaded = lint_path(tmp_path / "missing.yaml")
    assert _lines(loaded.problems, tmp_path) == [
        "missing.yaml:1:1: error: no such file or directory [no-file]"
    ]
    assert (loaded.docs, loaded.policy, loaded.version) == ((), None, "")


# --- lint_texts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "positioned"])
def test_every_problem_sorted_by_position(fast: bool) -> None:
    """Schema and semantic problems together, top to bottom, whichever path read the file."""
    loaded = lint_texts([("p.yaml", MIXED)], fast=fast)
    assert _lines(loaded.problems) == MIXED_PROBLEMS
    assert loaded.policy is None


def test_problems_of_several_files_sort_by_file_then_line() -> None:
    texts = [
        ("b.yaml", "version: 1\nroutes:\n  - {id: r2, when: {caller: '+1*'}, then: t2}\n"),
        ("a.yaml", "version: 1\nroutes:\n  - {id: r1, when: {caller: '+44*'}, then: t1}\n" + DEFAULT),
    ]
    assert _lines(lint_texts(texts).problems) == [
        'a.yaml:3:44: error: unknown target "t1" [unknown-target]',
        'b.yaml:3:43: error: unknown target "t2" [unknown-target]',
    ]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(GOOD, id="valid"),
        pytest.param(MIXED, id="schema-and-semantic-problems"),
        pytest.param("version: 1\nlists: {l: [+441234]}\n" + DEFAULT, id="unquoted-plus-digits"),
        pytest.param("version: 1\ntargets: {t: &t {error: x}}\ndefault: *t\n", id="anchor-and-alias"),
        pytest.param("version: 1\nversion: 1\n" + DEFAULT, id="duplicate-key"),
        pytest.param("version: 1\nx: [\n", id="yaml-syntax"),
        pytest.param("- a\n", id="not-a-mapping"),
        pytest.param(SHADOWED + "{error: b}}\n" + DEFAULT, id="warning-only"),
    ],
)
def test_fast_and_positioned_paths_agree(text: str) -> None:
    fast = lint_texts([("p.yaml", text)], fast=True)
    positioned = lint_texts([("p.yaml", text)], fast=False)
    assert fast.problems == positioned.problems
    assert (fast.policy is None) == (positioned.policy is None)
    assert fast.version == positioned.version
    assert [d.data for d in fast.docs] == [d.data for d in positioned.docs]


def test_a_document_read_fast_finds_positions_when_asked() -> None:
    """The fast path has no positions until a problem needs one; then they are the positioned
    parse's, keys and values both."""
    text = "version: 1\nroutes:\n  - id: r\n    then: {error: x}\n" + DEFAULT
    fast, problems = read_document("p.yaml", text, fast=True)
    slow, _ = read_document("p.yaml", text, fast=False)
    assert fast is not None and slow is not None and problems == []
    assert type(fast.positions) is not dict  # lazy
    assert fast.data == slow.data
    for pointer in ("/routes/0/then", "/default", "/routes/0/id"):
        assert fast.position(pointer) == slow.position(pointer)
        assert fast.position(pointer, key=True) == slow.position(pointer, key=True)
    assert fast.position("/routes/0/then") == (4, 11)


def test_an_error_compiles_nothing_and_a_warning_does_not_stop_compiling() -> None:
    warned = lint_texts([("p.yaml", SHADOWED + "{error: b}}\n" + DEFAULT)])
    assert _lines(warned.problems) == [UNREACHABLE]
    assert warned.errors == []
    assert warned.policy is not None and [r.id for r in warned.policy.routes] == ["all", "b"]
    both = lint_texts([("p.yaml", SHADOWED + "nope}\n" + DEFAULT)])
    assert _lines(both.problems) == [
        UNREACHABLE,
        'p.yaml:4:43: error: unknown target "nope" [unknown-target]',
    ]
    assert _lines(both.errors) == ['p.yaml:4:43: error: unknown target "nope" [unknown-target]']
    assert both.policy is None


def test_one_problem_per_position() -> None:
    """A value the schema refuses is not reported again by the checks at the same place."""
    text = "version: 1\nroutes:\n  - {id: a, when: {caller: '+44*'}, then: 5}\n" + DEFAULT
    assert _lines(lint_texts([("p.yaml", text)]).problems) == [
        "p.yaml:3:43: error: routes[0].then must be a string or a mapping, got a number (quote it) [bad-type]"
    ]


def test_compile_false_checks_only() -> None:
    loaded = lint_texts([("p.yaml", GOOD)], compile=False)
    assert (loaded.problems, loaded.policy) == ((), None)
    assert loaded.version == lint_texts([("p.yaml", GOOD)]).version


def test_env_references_are_checked_against_the_given_environment() -> None:
    text = (
        "version: 1\ncrm:\n  http:\n    url: https://crm.example.com/c?phone=${caller}\n"
        "    headers: {Authorization: 'Bearer ${env.LOADER_TOKEN}'}\n    tags: contact.tags\n" + DEFAULT
    )
    unset = lint_texts([("p.yaml", text)], environ={})
    assert _lines(unset.problems) == [
        "p.yaml:5:30: warning: ${env.LOADER_TOKEN} is not set in this environment: export LOADER_TOKEN "
        "before `serve` (which refuses to start without it) [env-unset]"
    ]
    assert unset.policy is not None  # a warning
    assert lint_texts([("p.yaml", text)], environ={"LOADER_TOKEN": "t"}).problems == ()


def test_the_version_is_the_content_of_every_file() -> None:
    one = lint_texts([("a.yaml", GOOD)]).version
    assert one == lint_texts([("a.yaml", GOOD)]).version
    assert one != lint_texts([("a.yaml", GOOD + "# changed\n")]).version
    assert one != lint_texts([("a.yaml", GOOD), ("b.yaml", "version: 1\n")]).version


# --- load_policy ------------------------------------------------------------------------------------


def test_load_policy_raises_every_error_of_every_file(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "b.yaml": MIXED,
            "a.yaml": "version: 1\nroutes:\n  - {id: r, when: {caller: '+1*'}, then: gone}\n",
        },
    )
    with pytest.raises(PolicyInvalid) as raised:
        load_policy(tmp_path)
    lines = [
        'a.yaml:3:42: error: unknown target "gone" [unknown-target]',
        *(line.replace("p.yaml", "b.yaml") for line in MIXED_PROBLEMS),
    ]
    assert _lines(raised.value.problems, tmp_path) == lines
    assert str(raised.value).replace(f"{tmp_path}{os.sep}", "") == "\n".join(lines)


def test_load_policy_raises_the_errors_without_the_warnings(tmp_path: Path) -> None:
    _write(tmp_path, {"p.yaml": SHADOWED + "nope}\n" + DEFAULT})
    assert len(lint_path(tmp_path).problems) == 2
    with pytest.raises(PolicyInvalid) as raised:
        load_policy(tmp_path)
    assert _lines(raised.value.problems, tmp_path) == [
        'p.yaml:4:43: error: unknown target "nope" [unknown-target]'
    ]


def test_load_policy_of_an_unreadable_path_raises_the_read_problem(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid) as raised:
        load_policy(tmp_path / "nothing")
    assert _lines(raised.value.problems, tmp_path) == [
        "nothing:1:1: error: no such file or directory [no-file]"
    ]


def test_load_policy_returns_the_compiled_set(tmp_path: Path) -> None:
    _write(tmp_path, {"a.yaml": SHADOWED + "{error: b}}\n" + DEFAULT})
    policy = load_policy(tmp_path)
    assert policy.files == (str(tmp_path / "a.yaml"),)
    assert [r.id for r in policy.routes] == ["all", "b"]
    assert policy.version == lint_path(tmp_path).version
