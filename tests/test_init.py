"""`vapi-router init DIR`: a set that lints clean (--strict), whose cases pass, already canonical."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.cli import main


def test_init_writes_a_set_that_lints_and_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "new"
    assert main(["init", str(target)]) == 0
    assert sorted(p.name for p in target.iterdir()) == ["crm.csv", "policy.test.yaml", "policy.yaml"]
    capsys.readouterr()
    assert main(["lint", "--strict", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["test", "--fail-under", "100", str(target)]) == 0
    assert "4 passed, 0 failed" in capsys.readouterr().out
    assert main(["fmt", "--check", str(target)]) == 0


def test_init_refuses_a_directory_that_is_not_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["init", str(tmp_path)]) == 2
    assert "is not empty: nothing written" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert main(["init", str(tmp_path / "notes.txt")]) == 2
    assert main(["init", str(tmp_path / "empty")]) == 0  # a new directory is made
    (tmp_path / "blank").mkdir()
    assert main(["init", str(tmp_path / "blank")]) == 0  # an empty one is used
