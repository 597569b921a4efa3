"""router.tools.cases: run_file/run_case on small *.test.yaml files. Passing cases, what a
failing case says, cases from a captured request file, CRM facts from the case or from the
embedded CRM file, the clock for cases without `at`, `-k` selection, bad case files as
positioned problems, and which routes no case reaches.

The `vapi-router test` command's output (text, JSON, JUnit, coverage lines) is in
tests/test_cli.py and its goldens; the renderers alone in tests/test_report.py."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from router.policy.loader import lint_path
from router.runtime.model import Policy
from router.tools.cases import CaseResult, run_file
from router.tools.coverage import coverage

DESK = "22222222-2222-4222-8222-222222222222"
VIP = "66666666-6666-4666-8666-666666666666"
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SUNDAY_10 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

POLICY = f"""\
version: 1
settings: {{timezone: UTC, region: US}}
crm: {{file: crm.csv}}
schedules:
  office: {{weekly: {{mon-fri: ["09:00-17:00"]}}}}
targets:
  desk:
    assistantId: {DESK}
    assistantOverrides: {{variableValues: {{caller: "${{caller}}"}}}}
  sorry: {{error: "Sorry, we are closed."}}
routes:
  - id: vip
    when: {{tags: [vip]}}
    then: {{assistantId: {VIP}}}
  - id: uk
    when: {{caller: "+44*"}}
    then: sorry
  - id: weekend
    when: {{outside: office}}
    then: sorry
transfers:
  - id: billing
    when: {{caller: "+14155550142"}}
    then: {{destination: {{type: number, number: "+16505550100", message: ""}}}}
default: desk
"""
CRM = "number,tags,name\n+14155550177,vip,Dana\n"
AT = "2026-11-23T10:00:00Z"  # a Monday, office open


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    (tmp_path / "p.yaml").write_text(POLICY, encoding="utf-8")
    (tmp_path / "crm.csv").write_text(CRM, encoding="utf-8")
    loaded = lint_path(tmp_path / "p.yaml")
    assert loaded.problems == ()
    assert loaded.policy is not None
    return loaded.policy


def _run(
    policy: Policy, tmp_path: Path, cases: str, *, now: datetime = MONDAY_10, pattern: str | None = None
) -> tuple[list[CaseResult], list[str]]:
    test_file = tmp_path / "p.test.yaml"
    test_file.write_text(cases, encoding="utf-8")
    results, problems = run_file(policy, test_file, now=now, pattern=pattern)
    return results, [str(p).replace(f"{tmp_path}{os.sep}", "") for p in problems]


def _summary(
    results: list[CaseResult], tmp_path: Path
) -> list[tuple[str, int, str, str | None, tuple[str, ...]]]:
    return [(r.file.replace(f"{tmp_path}{os.sep}", ""), r.line, r.name, r.route, r.failures) for r in results]


def _request(tmp_path: Path, name: str, message: dict[str, Any]) -> None:
    (tmp_path / name).write_text(json.dumps({"message": message}), encoding="utf-8")


ASSISTANT_REQUEST = {
    "type": "assistant-request",
    "timestamp": 1795428000000,  # 2026-11-23T10:00:00Z
    "customer": {"number": "+442079460000"},
    "phoneNumber": {"number": "+16505550117"},
    "call": {"id": "c-1", "type": "inboundPhoneCall"},
}


# --- cases that pass --------------------------------------------------------------------------------


def test_passing_cases(policy: Policy, tmp_path: Path) -> None:
    _request(tmp_path, "uk.json", ASSISTANT_REQUEST)
    _request(
        tmp_path,
        "transfer.json",
        {**ASSISTANT_REQUEST, "type": "transfer-destination-request", "customer": {"number": "+14155550142"}},
    )
    results, problems = _run(
        policy,
        tmp_path,
        f"""\
cases:
  - name: route and target
    call: {{caller: "+442079460000", at: "{AT}"}}
    expect: {{route: uk, target: sorry}}
  - name: the whole reply
    call: {{caller: "(415) 555-0100", at: "{AT}"}}
    expect: {{route: default, target: desk, reply: {{assistantId: {DESK},
             assistantOverrides: {{variableValues: {{caller: "+14155550100"}}}}}}}}
  - call: {{caller: "+14155550142", at: "{AT}"}}
    transfer: true
    expect: {{route: billing}}
  - name: a captured request
    request: uk.json
    expect: {{route: uk}}
  - name: a captured transfer request
    request: transfer.json
    expect: {{route: billing}}
""",
    )
    assert problems == []
    assert _summary(results, tmp_path) == [
        ("p.test.yaml", 2, "route and target", "uk", ()),
        ("p.test.yaml", 5, "the whole reply", None, ()),
        ("p.test.yaml", 9, "case 3", "billing", ()),  # unnamed: its position in the file
        ("p.test.yaml", 12, "a captured request", "uk", ()),
        ("p.test.yaml", 15, "a captured transfer request", "billing", ()),
    ]
    assert all(r.ok for r in results)


# --- what a failing case says ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expect", "failures"),
    [
        pytest.param("{route: vip}", ("route: expected vip, got uk",), id="route"),
        pytest.param("{route: default}", ("route: expected default, got uk",), id="route-default"),
        pytest.param("{target: desk}", ("target: expected desk, got sorry",), id="target"),
        pytest.param(
            "{reply: {error: Sorry.}}",
            ('reply.error: expected "Sorry.", got "Sorry, we are closed."',),
            id="reply-value",
        ),
        pytest.param(
            f"{{reply: {{assistantId: {VIP}}}}}",
            (
                f'reply.assistantId: expected "{VIP}", got (absent)',
                'reply.error: expected (absent), got "Sorry, we are closed."',
            ),
            id="reply-keys",
        ),
        pytest.param(
            "{route: vip, target: desk, reply: {}}",
            (
                "route: expected vip, got uk",
                "target: expected desk, got sorry",
                'reply.error: expected (absent), got "Sorry, we are closed."',
            ),
            id="everything-at-once",
        ),
    ],
)
def test_what_a_failing_case_says(
    policy: Policy, tmp_path: Path, expect: str, failures: tuple[str, ...]
) -> None:
    results, problems = _run(
        policy, tmp_path, f'cases:\n  - call: {{caller: "+442079460000", at: "{AT}"}}\n    expect: {expect}\n'
    )
    assert problems == []
    assert [(r.route, r.failures, r.ok) for r in results] == [("uk", failures, False)]


def test_an_inline_target_is_named_inline(policy: Policy, tmp_path: Path) -> None:
    results, _ = _run(
        policy,
        tmp_path,
        f'cases:\n  - call: {{caller: "+14155550177", at: "{AT}"}}\n    expect: {{target: desk}}\n',
    )
    assert results[0].failures == ("target: expected desk, got inline assistantId",)


@pytest.mark.parametrize(
    ("files", "failure"),
    [
        pytest.param(
            {},
            "cannot read request r.json: [Errno 2] No such file or directory: '{dir}/r.json'",
            id="missing",
        ),
        pytest.param(
            {"r.json": "{"},
            "cannot read request r.json: Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1)",
            id="not-json",
        ),
    ],
)
def test_a_request_file_that_cannot_be_read_fails_its_case(
    policy: Policy, tmp_path: Path, files: dict[str, str], failure: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    results, problems = _run(policy, tmp_path, "cases:\n  - request: r.json\n    expect: {route: uk}\n")
    assert problems == []
    assert [(r.route, r.failures) for r in results] == [(None, (failure.format(dir=tmp_path),))]


# --- CRM facts and the clock ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "route"),
    [
        pytest.param('{caller: "+14155550177"}', "vip", id="from-the-embedded-file"),
        pytest.param('{caller: "+14155550177", tags: []}', None, id="the-case-says-no-tags"),
        pytest.param('{caller: "+14155550177", crm_status: timeout}', None, id="the-case-says-timeout"),
        pytest.param('{caller: "+14155550100", tags: [vip]}', "vip", id="the-case-gives-tags"),
    ],
)
def test_crm_facts_come_from_the_case_else_from_the_crm_file(
    policy: Policy, tmp_path: Path, call: str, route: str | None
) -> None:
    call = call.replace("}", f', at: "{AT}"}}')
    results, _ = _run(policy, tmp_path, f"cases:\n  - call: {call}\n    expect: {{route: vip}}\n")
    assert results[0].route == route


def test_a_request_case_takes_crm_facts_from_its_call(policy: Policy, tmp_path: Path) -> None:
    _request(tmp_path, "r.json", ASSISTANT_REQUEST)
    results, problems = _run(
        policy, tmp_path, "cases:\n  - request: r.json\n    call: {tags: [vip]}\n    expect: {route: vip}\n"
    )
    assert (problems, [(r.route, r.failures) for r in results]) == ([], [("vip", ())])


@pytest.mark.parametrize(
    ("now", "route"), [(MONDAY_10, None), (SUNDAY_10, "weekend")], ids=["monday", "sunday"]
)
def test_a_case_without_at_is_decided_at_now(
    policy: Policy, tmp_path: Path, now: datetime, route: str
) -> None:
    results, _ = _run(
        policy,
        tmp_path,
        'cases:\n  - call: {caller: "+14155550100"}\n    expect: {route: default}\n',
        now=now,
    )
    assert results[0].route == route


def test_pattern_selects_cases_by_name_ignoring_case(policy: Policy, tmp_path: Path) -> None:
    text = "".join(
        f'  - name: {name}\n    call: {{caller: "+14155550100", at: "{AT}"}}\n'
        "    expect: {route: default}\n"
        for name in ("UK callers", "US callers", "the uk line")
    )
    results, _ = _run(policy, tmp_path, "cases:\n" + text, pattern="uK")
    assert [(r.name, r.line) for r in results] == [("UK callers", 2), ("the uk line", 8)]


# --- bad case files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param(
            "- a\n",
            ["p.test.yaml:1:1: error: a test file needs `cases:` with a list of cases [bad-cases]"],
            id="not-a-mapping",
        ),
        pytest.param(
            "cases: {a: 1}\n",
            ["p.test.yaml:1:1: error: a test file needs `cases:` with a list of cases [bad-cases]"],
            id="cases-not-a-list",
        ),
        pytest.param(
            "cases: [1]\n",
            ["p.test.yaml:1:9: error: a case must be a mapping [bad-cases]"],
            id="case-not-a-mapping",
        ),
        pytest.param(
            "cases:\n  - call: {}\n    expect: {route: x}\n  - call: {}\n    expect: {route: x}\ncases: []\n",
            [
                'p.test.yaml:6:1: error: duplicate key "cases" (first at line 1); YAML keeps only one '
                "[duplicate-key]"
            ],
            id="duplicate-key",
        ),
        pytest.param(
            "cases: [\n",
            ["p.test.yaml:2:1: error: YAML syntax: did not find expected node content [yaml-syntax]"],
            id="yaml-syntax",
        ),
        pytest.param(
            "cases:\n  - request: r.json\n    call: {caller: '+1415'}\n    expect: {route: uk}\n",
            [
                'p.test.yaml:3:12: error: unknown key "caller"; one of tags, crm, crm_status, flags, '
                "capacity, "
                "history [bad-cases]"
            ],
            id="a-request-case-takes-only-crm-facts-and-state",
        ),
        pytest.param(
            "cases:\n  - call: {crm_status: timout}\n    expect: {route: uk}\n",
            [
                "p.test.yaml:2:24: error: crm_status must be one of ok, not_found, timeout, error, disabled "
                '(did you mean "timeout"?) [bad-cases]'
            ],
            id="crm-status",
        ),
        pytest.param(
            "cases:\n  - call: {at: '2026-11-23T10:00:00'}\n    expect: {route: uk}\n",
            [
                "p.test.yaml:2:16: error: `at` '2026-11-23T10:00:00' has no UTC offset: write it with one, "
                "e.g. "
                "2026-11-21T22:00:00-05:00 (or Z for UTC) [bad-cases]"
            ],
            id="at-without-offset",
        ),
        pytest.param(
            "cases:\n  - call: {at: 'monday'}\n    expect: {route: uk}\n",
            [
                "p.test.yaml:2:16: error: `at` must be ISO 8601 with an offset, e.g. "
                "2026-11-21T22:00:00-05:00 "
                "[bad-cases]"
            ],
            id="at-not-a-time",
        ),
        pytest.param(
            "cases:\n  - call: {variables: [a]}\n    expect: [route]\n",
            [
                "p.test.yaml:2:5: error: a case needs `expect:` with route, target or reply [bad-cases]",
                "p.test.yaml:2:23: error: `variables` must be a mapping [bad-cases]",
            ],
            id="every-problem-of-a-case",
        ),
        pytest.param(
            "cases:\n  - call: [caller]\n    expect: {route: uk}\n",
            ["p.test.yaml:2:11: error: must be a mapping [bad-cases]"],
            id="call-not-a-mapping",
        ),
    ],
)
def test_bad_case_files_are_positioned_problems_and_nothing_runs(
    policy: Policy, tmp_path: Path, text: str, lines: list[str]
) -> None:
    results, problems = _run(policy, tmp_path, text)
    assert results == []
    assert problems == lines


def test_one_bad_case_stops_the_good_ones_too(policy: Policy, tmp_path: Path) -> None:
    text = f'cases:\n  - call: {{caller: "+442079460000", at: "{AT}"}}\n    expect: {{route: uk}}\n'
    text += "  - call: {}\n"
    results, problems = _run(policy, tmp_path, text)
    assert results == []
    assert problems == [
        "p.test.yaml:4:5: error: a case needs `expect:` with route, target or reply [bad-cases]"
    ]


# --- what no case reaches ----------------------------------------------------------------------------------


def test_the_routes_no_case_reaches(policy: Policy, tmp_path: Path) -> None:
    results, _ = _run(
        policy,
        tmp_path,
        f"""\
cases:
  - call: {{caller: "+442079460000", at: "{AT}"}}
    expect: {{route: uk}}
  - call: {{caller: "+14155550177", at: "{AT}"}}
    expect: {{route: vip}}
  - call: {{caller: "+14155550100", at: "{AT}"}}
    transfer: true
    expect: {{route: default}}
""",
    )
    assert [r.reached for r in results] == [("route uk",), ("route vip",), ()]  # no transfer route took it
    cov = coverage(policy, (r.reached for r in results))
    assert cov.total == ("route vip", "route uk", "route weekend", "transfer billing", "default")
    assert cov.missed == ("route weekend", "transfer billing", "default")
