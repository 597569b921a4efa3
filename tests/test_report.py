"""router.tools.report: every renderer on fixed inputs, compared whole with its golden file.

tests/cases/report/<renderer>-<input>.out holds the exact text each renderer returns for
the inputs below (problems, case results, coverage, explain answers). Regenerate after a
deliberate change with `UPDATE_GOLDEN=1 pytest tests/test_report.py`, then read the diff.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from router.errors import PolicyError
from router.tools import report
from router.tools.cases import CaseResult
from router.tools.coverage import Coverage

GOLDEN = Path(__file__).resolve().parent / "cases" / "report"
UPDATE = bool(os.environ.get("UPDATE_GOLDEN"))

# Out of order on purpose (the renderers sort by position), across two files, with both
# severities and the characters GitHub's workflow commands must escape (%, CR, LF).
PROBLEMS = [
    PolicyError("b.yaml", 3, 10, 'unknown target "desk"', "unknown-target"),
    PolicyError(
        "a.yaml",
        12,
        5,
        'route "all" matches every call, so the 1 route after it can never match: "uk" (a.yaml:14:7)',
        "unreachable",
        "warning",
    ),
    PolicyError("a.yaml", 2, 1, "100% of callers\nhear this;\r\nsplit weights add up to 0", "bad-split"),
    PolicyError("dir with space/ü.yaml", 1, 1, "file is not UTF-8 text (byte 0xe9)", "not-text"),
]
ONE_ERROR = [PolicyError("p.yaml", 4, 3, 'unknown target "x"', "unknown-target")]
ONE_WARNING = [PolicyError("p.yaml", 4, 3, "crm.name may be empty", "maybe-empty", "warning")]

RESULTS = [
    CaseResult(
        "office.test.yaml", 2, "withheld numbers hear a refusal", (), "withheld", reached=("route withheld",)
    ),
    CaseResult(
        "office.test.yaml",
        5,
        'French <callers> & "the rest"',
        ("route: expected uk, got default", 'reply.error: expected "Désolé.", got (absent)'),
        None,
        reached=("default", "split default arm 2 of 2"),
    ),
    CaseResult("office.test.yaml", 8, "a transfer nobody takes", (), None),
    CaseResult(
        "other.test.yaml",
        1,
        "one failure",
        ("target: expected desk, got (inline)",),
        "uk",
        reached=("route uk",),
    ),
]
ALL_PASS = [RESULTS[0], RESULTS[2]]
COVERAGE = Coverage(
    (
        "route withheld",
        "route uk",
        "route second-line",
        "default",
        "split default arm 1 of 2",
        "split default arm 2 of 2",
    ),
    ("route second-line", "split default arm 1 of 2"),
)
FULL_COVERAGE = Coverage(("route withheld", "default"), ())
NO_ITEMS = Coverage((), ())

EXPLAIN_MATCH = {
    "route": "vip-after-hours",
    "target": "on-call",
    "reply": {"destination": {"type": "number", "number": "+15550001111", "message": "Connecting you."}},
    "trace": [
        {"route": "block-spam", "matched": False, "reason": "caller in blocked: no (+14155550142)"},
        {
            "route": "vip-after-hours",
            "matched": True,
            "reason": "dialled is +16505550117: yes (+16505550117); tags any of [vip]: yes (tags [vip]); "
            "outside office: yes (office is closed at Thu 2026-11-26 10:00 EST, Thanksgiving Day)",
        },
    ],
    "policy": "0123456789ab",
}
EXPLAIN_DEFAULT = {
    "route": None,
    "target": None,
    "reply": {"error": "Sorry, nobody can take your call — ünïcode stays."},
    "trace": [],
}
EXPLAIN_FALLBACK = {
    "route": None,
    "target": "front-desk",
    "reply": {"assistantId": "2ccabf54-ccd8-4dff-ae93-e830159c8004"},
    "trace": [{"route": "vip", "matched": False, "reason": "needs the CRM lookup first"}],
    "fallback_reason": "deadline reached after 750 ms of CRM lookup",
}

RENDERS: dict[str, Callable[[], str]] = {
    "problems-text": lambda: report.problems_text(PROBLEMS),
    "problems-text-one-error": lambda: report.problems_text(ONE_ERROR),
    "problems-text-one-warning": lambda: report.problems_text(ONE_WARNING),
    "problems-text-none": lambda: report.problems_text([]),
    "problems-json": lambda: report.problems_json(PROBLEMS),
    "problems-json-none": lambda: report.problems_json([]),
    "problems-github": lambda: report.problems_github(PROBLEMS),
    "problems-github-none": lambda: report.problems_github([]),
    "cases-text": lambda: report.cases_text(RESULTS),
    "cases-text-verbose": lambda: report.cases_text(RESULTS, verbose=True),
    "cases-text-coverage": lambda: report.cases_text(RESULTS, COVERAGE),
    "cases-text-all-pass-full-coverage": lambda: report.cases_text(ALL_PASS, FULL_COVERAGE),
    "cases-text-one-case": lambda: report.cases_text(RESULTS[:1]),
    "cases-text-no-cases": lambda: report.cases_text([], COVERAGE),
    "cases-json": lambda: report.cases_json(RESULTS),
    "cases-json-coverage": lambda: report.cases_json(RESULTS, COVERAGE),
    "cases-json-no-items": lambda: report.cases_json([], NO_ITEMS),
    "cases-junit": lambda: report.cases_junit(RESULTS),
    "cases-junit-no-cases": lambda: report.cases_junit([]),
    "explain-text-match": lambda: report.explain_text(EXPLAIN_MATCH),
    "explain-text-default": lambda: report.explain_text(EXPLAIN_DEFAULT),
    "explain-text-fallback": lambda: report.explain_text(EXPLAIN_FALLBACK),
}


@pytest.mark.parametrize("name", list(RENDERS))
def test_renderer_output_matches_golden(name: str) -> None:
    out = RENDERS[name]()
    golden = GOLDEN / f"{name}.out"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(out.encode("utf-8"))  # bytes: a CR in a message stays a CR
    assert out == golden.read_bytes().decode("utf-8")


def test_every_golden_file_has_its_renderer() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.out")) == sorted(RENDERS)


# The goldens are read by people; these say what a machine reading the same output relies on.


def test_json_renderings_parse_to_what_they_were_given() -> None:
    problems: list[dict[str, Any]] = json.loads(report.problems_json(PROBLEMS))
    assert problems == [p.as_dict() for p in sorted(PROBLEMS)]
    cases = json.loads(report.cases_json(RESULTS, COVERAGE))
    assert [c["name"] for c in cases["cases"]] == [r.name for r in RESULTS]
    assert (cases["passed"], cases["failed"], cases["uncovered"]) == (2, 2, list(COVERAGE.missed))


def test_junit_parses_and_keeps_the_failures_text() -> None:
    suite = ET.fromstring(report.cases_junit(RESULTS))
    assert (suite.get("tests"), suite.get("failures")) == ("4", "2")
    failures = [(c.get("name"), f.get("message"), f.text) for c in suite for f in c.findall("failure")]
    assert failures == [
        (RESULTS[1].name, RESULTS[1].failures[0], "\n".join(RESULTS[1].failures)),
        ("one failure", "target: expected desk, got (inline)", "target: expected desk, got (inline)"),
    ]


def test_github_annotations_are_one_line_each() -> None:
    lines = report.problems_github(PROBLEMS).split("\n")
    assert len(lines) == len(PROBLEMS)
    assert all(line.startswith(("::error file=", "::warning file=")) for line in lines)
    assert not any("\r" in line for line in lines)


def test_github_escapes_commas_and_colons_in_the_file_property() -> None:
    problem = PolicyError("teams/sales, east: v2.yaml", 3, 1, "unknown target", "unknown-target")
    assert report.problems_github([problem]) == (
        "::error file=teams/sales%2C east%3A v2.yaml,line=3,col=1,title=unknown-target::unknown target"
    )
