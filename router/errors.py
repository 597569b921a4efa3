"""PolicyError: the one positioned problem type every policy stage reports (all stages)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, order=True)
class PolicyError(Exception):
    """A problem at FILE:LINE:COL (1-based), with a stable kebab-case code.

    Ordering is by position, so a sorted list of problems reads top to bottom.
    """

    file: str
    line: int
    column: int
    message: str
    code: str
    severity: Severity = "error"
    pointer: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message} [{self.code}]"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
        }


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class PolicyInvalid(Exception):
    """Raised by load_policy when a policy set has errors; carries all of them."""

    def __init__(self, problems: list[PolicyError]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
