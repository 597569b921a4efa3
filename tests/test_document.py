"""router.policy.document: YAML text -> Document; positions, duplicate keys, syntax errors, limits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from router.errors import PolicyError
from router.policy.document import MAX_NODES, Document, parse_document
from router.policy.fastdoc import fast_document

ROOT = Path(__file__).resolve().parent.parent


def _raises(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        parse_document(text, file="p.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(
            "version: 1\ntargets:\n  a: {assistantId: x\nroutes: []\n",
            "p.yaml:4:7: error: YAML syntax: the { opened at line 3, column 6 is not closed: "
            "a ',' or '}' is missing [yaml-syntax]",
            id="unclosed-brace-names-where-it-opened",
        ),
        pytest.param(
            'version: 1\ndefault: {error: "Sorry}\nroutes: []\n',
            "p.yaml:2:18: error: YAML syntax: this quoted value has no closing quote [yaml-syntax]",
            id="unclosed-quote-points-at-the-quote",
        ),
        pytest.param(
            "version: 1\ntargets:\n\ta: {assistantId: x}\n",
            "p.yaml:3:1: error: YAML syntax: a tab character; YAML indents with spaces, not tabs "
            "[yaml-syntax]",
            id="tab",
        ),
        pytest.param(
            "version: 1\nlists:\n  blocked: [*1900]\n",
            "p.yaml:3:13: error: YAML syntax: *1900 reads as a YAML alias, and there is no anchor &1900; "
            "a value that starts with * must be in quotes [yaml-syntax]",
            id="unquoted-star",
        ),
        pytest.param(
            "version: 1\ndefault: @front\n",
            'p.yaml:2:10: error: YAML syntax: a value cannot start with "@"; put the value in quotes '
            "[yaml-syntax]",
            id="reserved-character",
        ),
        pytest.param(
            "version: 1\ndefault:\n  error: Sorry: closed\n",
            'p.yaml:3:15: error: YAML syntax: a ": " inside a value: put the value in quotes, or start a '
            "nested mapping on its own line [yaml-syntax]",
            id="colon-in-value",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: a\n   then: x\n",
            "p.yaml:4:4: error: YAML syntax: this line is not indented like the block that starts at "
            "line 3, column 3 [yaml-syntax]",
            id="bad-indent",
        ),
        pytest.param(
            "version: 1\nlists:\n  blocked: &b ['+1', *b]\n",
            "p.yaml:3:12: error: an alias refers to the list or mapping that contains it (recursive alias) "
            "[too-large]",
            id="recursive-alias",
        ),
        pytest.param(
            "version: 1\nx: &m {a: 1, <<: *m}\n",
            "p.yaml:2:14: error: a merge key (<<) merges the mapping that contains it (recursive alias) "
            "[too-large]",
            id="recursive-merge",
        ),
    ],
)
def test_text_that_cannot_be_read_raises_one_positioned_problem(text: str, line: str) -> None:
    assert _raises(text) == line


def test_an_alias_bomb_is_refused_in_milliseconds_at_the_value_that_explodes() -> None:
    lines = ["version: 1", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    start = time.perf_counter()
    message = _raises("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 0.5
    assert message == (
        "p.yaml:8:5: error: this value expands to 5,380,840 values through aliases, more than the "
        f"{MAX_NODES:,} allowed (alias bomb?) [too-large]"
    )


def test_a_deeply_nested_document_is_a_problem_not_a_crash() -> None:
    text = "version: 1\nx: " + "[" * 300 + "]" * 300 + "\n"
    assert _raises(text).endswith("[too-large]") or _raises(text).endswith("[too-deep]")


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        pytest.param(
            "version: 1\ntargets:\n  a: {error: x}\n  a: {error: y}\n",
            ['p.yaml:4:3: error: duplicate key "a" (first at line 3); YAML keeps only one [duplicate-key]'],
            id="duplicate-key",
        ),
        pytest.param(
            "version: 1\nwhen: {caller: '+44*', dialled: '+1*', caller: '+33*'}\n",
            [
                'p.yaml:2:40: error: duplicate key "caller" (first at line 2); YAML keeps only one '
                "[duplicate-key]"
            ],
            id="duplicate-key-in-flow-mapping",
        ),
        pytest.param(
            "version: 1\n? [a, b]\n: x\n",
            ["p.yaml:2:3: error: a mapping key must be a plain value, not a list or mapping [bad-key]"],
            id="complex-key",
        ),
        pytest.param("version: 1\n", [], id="clean"),
    ],
)
def test_problems_found_while_reading(text: str, problems: list[str]) -> None:
    assert [str(p) for p in parse_document(text, file="p.yaml").problems] == problems


@pytest.mark.parametrize(
    ("text", "data"),
    [
        pytest.param("", None, id="empty"),
        pytest.param("# nothing yet\n", None, id="only-a-comment"),
        pytest.param("w: [10:00-14:00, 9:30]\n", {"w": ["10:00-14:00", "9:30"]}, id="times-stay-text"),
        pytest.param(
            "n: +15550001111\nm: [+44*, +1900]\n",
            {"n": "+15550001111", "m": ["+44*", "+1900"]},
            id="plus-numbers-stay-text",
        ),
        pytest.param(
            "d: 2026-12-24\nr: 2026-12-31..2027-01-01\n",
            {"d": "2026-12-24", "r": "2026-12-31..2027-01-01"},
            id="dates-stay-text",
        ),
        pytest.param(
            "i: 4000\nf: 1.5\nb: true\nn: null\ns: '10:00'\n",
            {"i": 4000, "f": 1.5, "b": True, "n": None, "s": "10:00"},
            id="other-scalars-as-yaml",
        ),
        pytest.param("1: a\ntrue: b\n", {"1": "a", "true": "b"}, id="keys-are-text"),
        pytest.param(
            "base: &b {x: 1, y: 2}\nmore: {<<: *b, y: 3, z: 4}\n",
            {"base": {"x": 1, "y": 2}, "more": {"x": 1, "y": 3, "z": 4}},
            id="merge-key-explicit-wins",
        ),
        pytest.param(
            "a: &a {x: 1}\nb: &b {y: 2}\nc: {<<: [*a, *b]}\n",
            {"a": {"x": 1}, "b": {"y": 2}, "c": {"x": 1, "y": 2}},
            id="merge-key-list",
        ),
        pytest.param("l: &l [a, b]\nm: *l\n", {"l": ["a", "b"], "m": ["a", "b"]}, id="alias"),
    ],
)
def test_data(text: str, data: Any) -> None:
    doc = parse_document(text, file="p.yaml")
    assert doc.data == data
    assert doc.problems == ()


POSITIONS = """\
version: 1
targets:
  front-desk:
    assistantId: abc
routes:
  - id: uk
    when: {caller: "+44*"}
    then: front-desk
"""


@pytest.mark.parametrize(
    ("pointer", "key", "position"),
    [
        pytest.param("", False, (1, 1), id="root"),
        pytest.param("/version", False, (1, 10), id="scalar"),
        pytest.param("/version", True, (1, 1), id="scalar-key"),
        pytest.param("/targets/front-desk", False, (4, 5), id="mapping-value"),
        pytest.param("/targets/front-desk", True, (3, 3), id="mapping-key"),
        pytest.param("/routes/0", False, (6, 5), id="list-item"),
        pytest.param("/routes/0/when/caller", False, (7, 20), id="flow-value"),
        pytest.param("/routes/0/when/caller", True, (7, 12), id="flow-key"),
        pytest.param("/routes/0/when/caller/prefix", False, (7, 20), id="missing-child-falls-back-to-parent"),
        pytest.param("/routes/7/then", False, (6, 3), id="missing-item-falls-back-to-list"),
    ],
)
def test_positions(pointer: str, key: bool, position: tuple[int, int]) -> None:
    doc = parse_document(POSITIONS, file="p.yaml")
    assert doc.position(pointer, key=key) == position


def test_error_renders_at_the_pointer() -> None:
    doc = parse_document(POSITIONS, file="p.yaml")
    problem = doc.error("/routes/0/then", 'unknown target "front-desk"', "unknown-target")
    assert str(problem) == 'p.yaml:8:11: error: unknown target "front-desk" [unknown-target]'
    assert problem.pointer == "/routes/0/then"


def test_keys_with_slash_and_tilde_are_escaped_in_pointers() -> None:
    doc = parse_document("a/b: 1\nc~d: 2\n", file="p.yaml")
    assert doc.position("/a~1b") == (1, 6)
    assert doc.position("/c~0d") == (2, 6)


def test_merged_values_keep_the_position_of_their_anchor() -> None:
    doc = parse_document("base: &b {x: 1}\nmore:\n  <<: *b\n  y: 2\n", file="p.yaml")
    assert doc.position("/more/x") == (1, 14)
    assert doc.position("/more/y") == (4, 6)


def test_a_document_is_a_frozen_value() -> None:
    doc = parse_document("version: 1\n", file="p.yaml")
    assert isinstance(doc, Document)
    with pytest.raises(AttributeError):
        doc.file = "other.yaml"  # type: ignore[misc]


YAML_FILES = sorted(
    p
    for pattern in ("tests/cases/**/*.yaml", "policies/**/*.yaml", "examples/**/*.yaml")
    for p in ROOT.glob(pattern)
)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_fast_parser_reads_what_the_positioned_parser_reads(path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        pytest.skip("not UTF-8 (a lint case)")
    fast = fast_document(text, file="p.yaml")
    if fast is None:  # the fast path declined; the positioned parse is used
        return
    assert fast.data == parse_document(text, file="p.yaml").data
    assert fast.problems == ()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: 1\na: 2\n", id="duplicate-key"),
        pytest.param("a: &x [1]\nb: *x\n", id="alias"),
        pytest.param("a: {<<: {b: 1}}\n", id="merge-key"),
        pytest.param("n: +15550001111\n", id="plus-number"),
        pytest.param("a: [\n", id="syntax-error"),
        pytest.param("- 1\n", id="not-a-mapping"),
    ],
)
def test_the_fast_parser_declines_what_needs_the_positioned_parse(text: str) -> None:
    assert fast_document(text, file="p.yaml") is None
