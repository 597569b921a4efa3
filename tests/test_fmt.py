"""`vapi-router fmt`: one canonical layout, comments kept, idempotent, the same compiled policy."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from router.cli import main
from router.policy.loader import lint_texts, read_texts
from router.tools.cases import policy_sets
from router.tools.fmt import format_text, yaml_files

ROOT = Path(__file__).resolve().parent.parent
SETS = [s for top in ("policies", "examples") for s in policy_sets(ROOT / top)]
FILES = sorted(yaml_files([ROOT / "policies", ROOT / "examples"]))

MESSY = """\
# the head comment\x20\x20\x20
version:    1
settings: {region: US}   # inline
lists:
    blocked: [+15550000001, "+1900*"]
routes:
-   id: a    # first
    when: {any: [{caller: +14155550142}, {tags: [vip]}]}
    then:
        error: "Sorry."
# between routes
-   id: b
    then: {error: 'No.'}
default:
    error: |
      kept\x20\x20
      as is


"""

CANONICAL = """\
# the head comment
version: 1
settings: {region: US}   # inline
lists:
  blocked: ["+15550000001", "+1900*"]
routes:
  - id: a    # first
    when: {any: [{caller: "+14155550142"}, {tags: [vip]}]}
    then:
      error: "Sorry."
# between routes
  - id: b
    then: {error: 'No.'}
default:
  error: |
    kept\x20\x20
    as is
"""


def test_the_canonical_layout() -> None:
    assert format_text(MESSY) == CANONICAL
    assert format_text(CANONICAL) == CANONICAL


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_shipped_file_is_canonical_and_fmt_is_idempotent(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    once = format_text(text, str(path))
    assert once == text, "run `vapi-router fmt` on it"
    assert format_text(once, str(path)) == once


@pytest.mark.parametrize("policy_set", SETS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_formatted_set_compiles_to_the_same_policy(policy_set: Path) -> None:
    texts = read_texts(policy_set)
    # a layout that is not canonical (4-space indentation, no quotes on +numbers), then fmt
    messy = [(f, re.sub(r'"(\+[0-9]+)"', r"\1", t.replace("\n  ", "\n    "))) for f, t in texts]
    formatted = [(f, format_text(t, f)) for f, t in texts]
    before = _compiled(texts)
    assert _compiled(formatted) == before
    assert _compiled(messy) == before  # the mangling itself changes nothing
    reformatted = [(f, format_text(t, f)) for f, t in messy]
    assert messy != texts
    assert _compiled(reformatted) == before


def _compiled(texts: list[tuple[str, str]]) -> str:
    """The compiled Policy, as a value (some parts compare by identity; the version hashes the text)."""
    policy = lint_texts(texts).policy
    assert policy is not None
    return repr(replace(policy, version=""))


def test_fmt_check_lists_and_changes_nothing_then_fmt_rewrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messy = tmp_path / "policy.yaml"
    messy.write_text(MESSY, encoding="utf-8")
    tidy = tmp_path / "sub" / "other.test.yaml"
    tidy.parent.mkdir()
    tidy.write_text(CANONICAL, encoding="utf-8")
    assert main(["fmt", "--check", str(tmp_path)]) == 1
    assert capsys.readouterr().out == f"would reformat {messy}\n"
    assert messy.read_text(encoding="utf-8") == MESSY
    assert main(["fmt", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"reformatted {messy}\n"
    assert messy.read_text(encoding="utf-8") == CANONICAL
    assert main(["fmt", "--check", str(tmp_path)]) == 0


def test_a_file_fmt_cannot_read_is_reported_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1\nb: 2   \n", encoding="utf-8")
    assert main(["fmt", str(bad)]) == 1
    assert capsys.readouterr().err.startswith(f"{bad}:2:2: error: YAML syntax: ")
    assert bad.read_text(encoding="utf-8") == "a: [1\nb: 2   \n"
