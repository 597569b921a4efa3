"""`vapi-router lint` on one file per situation a user can get wrong, against its golden `.out`.

tests/cases/invalid/<situation>.yaml holds the mistake and <situation>.out the exact text
`vapi-router lint tests/cases/invalid/<situation>.yaml` prints from the repository root;
tests/cases/valid/ holds files that must lint clean (their .out is empty).
Regenerate after a deliberate change with `UPDATE_GOLDEN=1 pytest tests/test_lint_golden.py`,
then read the diff as a new user would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from router.cli import main
from router.errors import PolicyError
from router.policy.loader import lint_texts, read_texts

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"
POLICIES = sorted([*CASES.glob("invalid/*.yaml"), *CASES.glob("valid/*.yaml")])
UPDATE = bool(os.environ.get("UPDATE_GOLDEN"))


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.mark.parametrize("policy", POLICIES, ids=_id)
def test_lint_output_matches_golden(
    policy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code = main(["lint", policy.relative_to(ROOT).as_posix()])
    out = capsys.readouterr().out
    golden = policy.with_suffix(".out")
    if UPDATE:
        golden.write_text(out, encoding="utf-8")
    assert out == golden.read_text(encoding="utf-8")
    has_errors = any(": error: " in line for line in out.splitlines())
    assert code == (1 if has_errors else 0)


@pytest.mark.parametrize("policy", POLICIES, ids=_id)
def test_situation_has_the_outcome_its_folder_promises(policy: Path) -> None:
    out = policy.with_suffix(".out").read_text(encoding="utf-8")
    if policy.parent.name == "valid":
        assert out == ""
    else:
        assert out, "an invalid situation must produce at least one problem"
        last = out.splitlines()[-1]
        assert last.endswith(("warning", "warnings")), last


def test_every_golden_file_has_its_policy() -> None:
    outs = {p.with_suffix(".yaml") for p in [*CASES.glob("invalid/*.out"), *CASES.glob("valid/*.out")]}
    assert outs == set(POLICIES)


def test_there_are_at_least_30_situations() -> None:
    assert len(list(CASES.glob("invalid/*.yaml"))) >= 30


def test_an_alias_bomb_is_refused_quickly(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    code = main(["lint", str(CASES / "invalid" / "alias-bomb.yaml")])
    assert time.perf_counter() - start < 1.0
    assert code == 1
    assert "[too-large]" in capsys.readouterr().out


@pytest.mark.parametrize("policy", POLICIES, ids=_id)
def test_the_fast_path_reports_what_the_positioned_path_reports(
    policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    try:
        texts = read_texts(policy.relative_to(ROOT))
    except PolicyError:
        pytest.skip("unreadable on purpose")
    assert lint_texts(texts, fast=True).problems == lint_texts(texts, fast=False).problems
