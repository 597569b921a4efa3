"""The `vapi-router` command line: lint formats and exit codes, explain, test, hours, schema.

Stable outputs are golden files, tests/cases/cli/<name>.out (stdout of the command, run from
the repository root) and <name>.err (its stderr, where there is any: the offline tools'
warnings); `UPDATE_GOLDEN=1 pytest tests/test_cli.py` rewrites them.
The fixture policies live in tests/cases/cli/{office,failing,broken,httpcrm,httpcrm-v2}/.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest

from router.cli import main
from router.policy.document import parse_document
from router.policy.schema import policy_schema

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "tests" / "cases" / "cli"
VAPI = ROOT.parent / "shared" / "vapi"
PAYLOADS = sorted(VAPI.glob("payloads/assistant-request.*.json")) + sorted(
    VAPI.glob("payloads/transfer-destination-request*.json")
)
UPDATE = bool(os.environ.get("UPDATE_GOLDEN"))

OFFICE = "tests/cases/cli/office"
FAILING = "tests/cases/cli/failing"
BROKEN = "tests/cases/cli/broken"
HTTPCRM = "tests/cases/cli/httpcrm"  # a live HTTP CRM: never called offline
CALL = ["--caller", "+14155550142", "--dialled", "+16505550117"]
MONDAY_10AM = ["--at", "2026-11-23T10:00:00-05:00"]
THANKSGIVING = ["--at", "2026-11-26T10:00:00-05:00"]


@pytest.fixture(autouse=True)
def _from_the_repository_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `vapi-router ARGV`, usage errors included."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- golden outputs

GOLDEN = [
    pytest.param(
        "lint-text",
        ["lint", "tests/cases/invalid/unknown-list.yaml", "tests/cases/invalid/shadowed-route.yaml"],
        1,
        id="lint-text-two-files",
    ),
    pytest.param(
        "lint-json", ["lint", "--format", "json", "tests/cases/invalid/unknown-list.yaml"], 1, id="lint-json"
    ),
    pytest.param(
        "lint-github",
        ["lint", "--format", "github", "tests/cases/invalid/unknown-list.yaml"],
        1,
        id="lint-github",
    ),
    pytest.param(
        "lint-strict", ["lint", "--strict", "tests/cases/invalid/unused-names.yaml"], 1, id="lint-strict"
    ),
    pytest.param("lint-clean", ["lint", "policies", OFFICE, FAILING], 0, id="lint-clean"),
    pytest.param("lint-clean-json", ["lint", "--format", "json", OFFICE], 0, id="lint-clean-json"),
    pytest.param("explain-text", ["explain", OFFICE, *CALL, *THANKSGIVING], 0, id="explain-text"),
    pytest.param("explain-json", ["explain", OFFICE, *CALL, *THANKSGIVING, "--json"], 0, id="explain-json"),
    pytest.param(
        "explain-anonymous",
        ["explain", OFFICE, "--caller", "anonymous", "--dialled", "+16505550117", *MONDAY_10AM],
        0,
        id="explain-anonymous",
    ),
    pytest.param(
        "explain-tags",
        [
            "explain",
            OFFICE,
            "--caller",
            "+14155550199",
            "--dialled",
            "+16505550117",
            *THANKSGIVING,
            "--tags",
            "a,vip",
        ],
        0,
        id="explain-tags",
    ),
    pytest.param(
        "explain-crm",
        [
            "explain",
            OFFICE,
            *CALL,
            *MONDAY_10AM,
            "--crm",
            "tier=gold",
            "--crm",
            "name=Ana",
            "--crm-status",
            "ok",
        ],
        0,
        id="explain-crm-fields",
    ),
    pytest.param(
        "explain-crm-status",
        ["explain", OFFICE, *CALL, "--crm-status", "timeout", "--json"],
        0,
        id="explain-crm-status",
    ),
    pytest.param(
        "explain-var",
        ["explain", OFFICE, *CALL, "--var", "account_tier=gold", "--var", "lang=es", "--json"],
        0,
        id="explain-var",
    ),
    pytest.param(
        "explain-phone-number-id",
        ["explain", OFFICE, *CALL, "--phone-number-id", "pn-spanish"],
        0,
        id="explain-phone-number-id",
    ),
    pytest.param(
        "explain-default",
        ["explain", OFFICE, "--caller", "+442079460000", "--dialled", "+16505550117", *MONDAY_10AM],
        0,
        id="explain-default",
    ),
    pytest.param(
        "explain-crm-assumed",
        ["explain", HTTPCRM, *CALL, *MONDAY_10AM],
        0,
        id="explain-http-crm-facts-assumed-warns",
    ),
    pytest.param(
        "explain-crm-assumed-json",
        ["explain", HTTPCRM, *CALL, *MONDAY_10AM, "--json"],
        0,
        id="explain-json-http-crm-facts-assumed-warns",
    ),
    pytest.param(
        "explain-crm-not-needed",
        ["explain", HTTPCRM, "--caller", "+15550000001", "--dialled", "+16505550117", *MONDAY_10AM],
        0,
        id="explain-http-crm-not-read-by-this-decision",
    ),
    pytest.param(
        "explain-crm-given",
        [
            "explain",
            HTTPCRM,
            *CALL,
            *MONDAY_10AM,
            "--crm-status",
            "ok",
            "--tags",
            "customer",
            "--crm",
            "company=Acme",
        ],
        0,
        id="explain-http-crm-facts-given",
    ),
    pytest.param(
        "replay-text",
        ["replay", HTTPCRM, "--requests", f"{HTTPCRM}/requests.jsonl"],
        0,
        id="replay-captured-facts-and-a-count-of-assumed-ones",
    ),
    pytest.param(
        "replay-json",
        ["replay", HTTPCRM, "--requests", f"{HTTPCRM}/requests.jsonl", "--json"],
        0,
        id="replay-json-crm-assumed",
    ),
    pytest.param(
        "replay-against-one",
        ["replay", HTTPCRM, "--requests", f"{HTTPCRM}/spam.jsonl", "--against", f"{HTTPCRM}-v2"],
        0,
        id="replay-one-decision-inline-targets-by-kind",
    ),
    pytest.param(
        "replay-office",
        ["replay", OFFICE, "--requests", f"{HTTPCRM}/spam.jsonl"],
        0,
        id="replay-one-request-file-crm-no-warning",
    ),
    pytest.param("test-text", ["test", OFFICE, FAILING], 1, id="test-text"),
    pytest.param("test-crm-assumed", ["test", HTTPCRM], 1, id="test-failure-on-assumed-crm-facts-says-so"),
    pytest.param("test-coverage", ["test", OFFICE, "--coverage"], 0, id="test-coverage"),
    pytest.param("test-json", ["test", FAILING, "--format", "json", "--coverage"], 1, id="test-json"),
    pytest.param("test-junit", ["test", OFFICE, FAILING, "--format", "junit"], 1, id="test-junit"),
    pytest.param("test-verbose", ["test", OFFICE, "-v"], 0, id="test-verbose-lists-every-case"),
    pytest.param("test-k", ["test", OFFICE, FAILING, "-k", "FRENCH"], 1, id="test-k-selects-by-name"),
    pytest.param(
        "test-coverage-arms",
        ["test", "tests/cases/cli/coverage", "--coverage", "-v"],
        0,
        id="test-coverage-splits-transfers-handoffs-default",
    ),
    pytest.param(
        "hours-holidays",
        ["hours", OFFICE, "office", "--from", "2026-12-21", "--days", "14"],
        0,
        id="hours-holidays",
    ),
    pytest.param(
        "hours-thanksgiving", ["hours", "policies", "office", "--from", "2026-11-23"], 0, id="hours-main"
    ),
    pytest.param(
        "map-christmas",
        ["map", "policies", "--dialled", "+1 650 555 0117", "--from", "2026-12-21"],
        0,
        id="map-text-closures-holidays-special",
    ),
    pytest.param(
        "map-christmas-svg",
        ["map", "policies", "--dialled", "+16505550117", "--from", "2026-12-21", "--format", "svg"],
        0,
        id="map-svg",
    ),
    pytest.param(
        "map-html",
        ["map", OFFICE, "--dialled", "+16505550117", "--from", "2026-11-23", "--days", "2", "--format=html"],
        0,
        id="map-html",
    ),
    pytest.param(
        "map-anonymous",
        ["map", "policies", "--dialled", "+16505550199", "--caller", "anonymous", "--from", "2026-11-28"],
        0,
        id="map-anonymous-spanish-line",
    ),
]


def _check_golden(name: str, out: str, suffix: str = ".out") -> None:
    golden = CLI / f"{name}{suffix}"
    if UPDATE:
        golden.write_text(out, encoding="utf-8")
    assert out == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "argv", "code"), GOLDEN)
def test_output_matches_golden(
    name: str, argv: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    got, out, err = run(argv, capsys)
    _check_golden(name, out)
    errors = CLI / f"{name}.err"
    if err or errors.exists():  # stderr is golden too where a command writes any: else empty
        if UPDATE and not err:
            errors.unlink()
        else:
            _check_golden(name, err, ".err")
    assert got == code


@pytest.mark.skipif(not PAYLOADS, reason="no Vapi example payloads beside the repository")
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.stem)
def test_explain_each_vapi_payload(payload: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["explain", OFFICE, "--request", str(payload), "--json"], capsys)
    assert (code, err) == (0, "")
    _check_golden(f"explain-request-{payload.stem}", out)
    data = json.loads(out)
    _assert_explain_shape(data)
    kind = json.loads(payload.read_text(encoding="utf-8"))["message"]["type"]
    assert _check_reply().problems(kind, data["reply"]) == []


def test_every_cli_golden_is_used() -> None:
    names = {p.values[0] for p in GOLDEN} | {f"explain-request-{p.stem}" for p in PAYLOADS}
    assert {p.stem for p in CLI.glob("*.out")} == names
    assert {p.stem for p in CLI.glob("*.err")} <= names


# ---------------------------------------------------------------- formats and shapes


def _assert_explain_shape(data: dict[str, Any]) -> None:
    assert list(data) == ["route", "target", "reply", "trace"]
    assert data["route"] is None or isinstance(data["route"], str)
    assert data["target"] is None or isinstance(data["target"], str)
    assert isinstance(data["reply"], dict)
    for step in data["trace"]:
        assert list(step) == ["route", "matched", "reason"]
        assert isinstance(step["route"], str) and isinstance(step["reason"], str) and step["reason"]
    matched = [s["route"] for s in data["trace"] if s["matched"]]
    # one entry per route tried, in order, up to the match
    assert matched == ([data["route"]] if data["route"] else [])
    if data["route"]:
        assert data["trace"][-1]["matched"]


def _check_reply() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_reply", VAPI / "check_reply.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lint_json_is_an_array_of_positioned_problems(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["lint", "--format", "json", "tests/cases/invalid/unknown-list.yaml"], capsys)
    assert code == 1
    problems = json.loads(out)
    assert problems == [
        {
            "file": "tests/cases/invalid/unknown-list.yaml",
            "line": 3,
            "column": 3,
            "severity": "warning",
            "code": "unused",
            "message": 'list "blocked" is defined but never used',
        },
        {
            "file": "tests/cases/invalid/unknown-list.yaml",
            "line": 6,
            "column": 26,
            "severity": "error",
            "code": "unknown-list",
            "message": 'unknown list "block" (did you mean "blocked"?)',
        },
    ]


def test_lint_json_of_a_clean_set_is_an_empty_array(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["lint", "--format", "json", "policies"], capsys) == (0, "[]\n", "")


def test_lint_github_annotations(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["lint", "--format", "github", "tests/cases/invalid/unknown-list.yaml"], capsys)
    assert code == 1
    lines = out.splitlines()
    pattern = re.compile(r"::(error|warning) file=([^,]+),line=(\d+),col=(\d+)(,title=[a-z-]+)?::(.+)")
    parsed = [pattern.fullmatch(line) for line in lines]
    assert all(parsed), lines
    assert [(m.group(1), m.group(2), m.group(3), m.group(4)) for m in parsed if m] == [
        ("warning", "tests/cases/invalid/unknown-list.yaml", "3", "3"),
        ("error", "tests/cases/invalid/unknown-list.yaml", "6", "26"),
    ]


def test_lint_github_escapes_newlines_and_percent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text('version: 1\ndefault: {error: "x"}\nroutes:\n  - {id: "a%b", then: {error: y}}\n')
    code, out, _ = run(["lint", "--format", "github", str(policy)], capsys)
    assert code == 1
    assert "%25" in out and "a%b" not in out
    assert len(out.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(["lint", "tests/cases/invalid/unused-names.yaml"], 0, id="warnings-pass"),
        pytest.param(
            ["lint", "--strict", "tests/cases/invalid/unused-names.yaml"], 1, id="strict-warnings-fail"
        ),
        pytest.param(["lint", "--strict", "policies"], 0, id="strict-clean-passes"),
        pytest.param(["lint", "tests/cases/invalid/unknown-target.yaml"], 1, id="errors-fail"),
        pytest.param(["lint", "policies", "tests/cases/invalid/unknown-target.yaml"], 1, id="any-path-fails"),
        pytest.param(["lint", "no/such/policy.yaml"], 1, id="missing-path"),
        pytest.param(["lint", "--format", "github", "--strict", OFFICE], 0, id="github-clean"),
    ],
)
def test_lint_exit_codes(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(argv, capsys)[0] == code


def test_lint_a_missing_path_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["lint", "no/such/policy.yaml"], capsys) == (
        1,
        "no/such/policy.yaml:1:1: error: no such file or directory [no-file]\n1 error, 0 warnings\n",
        "",
    )


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-command"),
        pytest.param(["frobnicate"], id="unknown-command"),
        pytest.param(["lint"], id="lint-without-path"),
        pytest.param(["lint", "--format", "xml", "policies"], id="lint-unknown-format"),
        pytest.param(["lint", "--stritc", "policies"], id="lint-unknown-flag"),
        pytest.param(["test", "--format", "tap", OFFICE], id="test-unknown-format"),
        pytest.param(["explain", OFFICE], id="explain-without-a-call"),
        pytest.param(["explain", OFFICE, "--caller", "+14155550142"], id="explain-without-dialled"),
        pytest.param(["explain", OFFICE, *CALL, "--crm", "tier"], id="explain-crm-without-equals"),
        pytest.param(["explain", OFFICE, *CALL, "--var", "=gold"], id="explain-var-without-key"),
        pytest.param(["explain", OFFICE, *CALL, "--at", "yesterday"], id="explain-bad-time"),
        pytest.param(["explain", OFFICE, *CALL, "--crm-status", "down"], id="explain-bad-crm-status"),
        pytest.param(["explain", OFFICE, "--request", "no/such/request.json"], id="explain-missing-request"),
        pytest.param(
            ["explain", OFFICE, "--request", "tests/cases/cli/office/crm.csv"], id="explain-request-not-json"
        ),
        pytest.param(["hours", OFFICE], id="hours-without-schedule"),
        pytest.param(["hours", OFFICE, "ofice"], id="hours-unknown-schedule"),
        pytest.param(["hours", OFFICE, "office", "--from", "21/12/2026"], id="hours-bad-date"),
        pytest.param(["hours", OFFICE, "office", "--days", "0"], id="hours-no-days"),
        pytest.param(["map", OFFICE], id="map-without-dialled"),
        pytest.param(["map", OFFICE, "--dialled", "call me"], id="map-bad-dialled"),
        pytest.param(["map", OFFICE, "--dialled", "+16505550117", "--from", "21/12/2026"], id="map-bad-date"),
        pytest.param(["map", OFFICE, "--dialled", "+16505550117", "--days", "0"], id="map-no-days"),
        pytest.param(["map", OFFICE, "--dialled", "+16505550117", "--format", "png"], id="map-bad-format"),
        pytest.param(["hours", OFFICE, "office", "--days", "many"], id="hours-days-not-a-number"),
        pytest.param(["schema", "extra"], id="schema-with-argument"),
    ],
)
def test_usage_errors_exit_2_with_a_message_on_stderr(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.strip()


def test_explain_usage_messages_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["explain", OFFICE, *CALL, "--crm", "tier"], capsys)[2] == (
        "vapi-router explain: --crm wants KEY=VALUE, got 'tier'\n"
    )
    assert run(["hours", OFFICE, "ofice"], capsys)[2] == (
        'vapi-router hours: no schedule "ofice" (schedules: office)\n'
    )


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["explain", BROKEN, *CALL], id="explain"),
        pytest.param(["explain", BROKEN, *CALL, "--json"], id="explain-json"),
        pytest.param(["test", BROKEN], id="test"),
        pytest.param(["test", f"{BROKEN}/broken.yaml"], id="test-file"),
        pytest.param(["test", BROKEN, "--coverage"], id="test-coverage"),
        pytest.param(["hours", BROKEN, "office"], id="hours"),
    ],
)
def test_a_policy_that_fails_lint_exits_1_with_the_problems_on_stderr(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == 1
    assert err == (
        'tests/cases/cli/broken/broken.yaml:7:11: error: unknown target "front-desk" (did you mean '
        '"front_desk"?) [unknown-target]\n1 error, 0 warnings\n'
    )
    assert "front-desk" not in out
    assert "every route is reached" not in out


def test_explain_json_shape_for_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["explain", OFFICE, *CALL, *THANKSGIVING, "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    _assert_explain_shape(data)
    assert (data["route"], data["target"]) == ("vip-after-hours", "on-call")


def test_explain_default_has_no_route_and_a_full_trace(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["explain", OFFICE, "--caller", "+442079460000", "--dialled", "+16505550117", *MONDAY_10AM, "--json"],
        capsys,
    )
    data = json.loads(out)
    _assert_explain_shape(data)
    assert (code, data["route"], data["target"]) == (0, None, "front-desk")
    assert [s["route"] for s in data["trace"]] == [
        "withheld",
        "spanish-line",
        "sip-gold",
        "crm-down",
        "vip-after-hours",
        "gold",
        "second-line",
    ]


def test_test_junit_is_valid_xml(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["test", OFFICE, FAILING, "--format", "junit"], capsys)
    assert code == 1
    suite = ET.fromstring(out)
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("11", "1", "0")
    cases = suite.findall("testcase")
    assert len(cases) == 11
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ['French <callers> & "the rest"']
    failure = failed[0].find("failure")
    assert failure is not None
    assert failure.get("message") == "route: expected uk, got default"
    assert failure.text is not None and "Désolé." in failure.text
    assert {c.get("file") for c in cases} == {
        "tests/cases/cli/office/office.test.yaml",
        "tests/cases/cli/failing/failing.test.yaml",
    }


def test_test_coverage_lists_routes_no_case_reaches(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["test", OFFICE, "--coverage"], capsys)
    assert code == 0
    assert out.splitlines()[-1] == "coverage: 8 of 9 (88.9%); not reached (1): route second-line"
    data = json.loads(run(["test", OFFICE, "--coverage", "--format", "json"], capsys)[1])
    assert data["uncovered"] == ["route second-line"]
    assert data["coverage"] == {"reached": 8, "total": 9, "percent": 88.9}
    assert (data["passed"], data["failed"]) == (9, 0)


@pytest.mark.parametrize(
    ("case", "lines"),
    [
        pytest.param(
            "call:\n    expect: {route: default}",
            ["p.test.yaml:3:10: error: `call:` is empty; give caller, dialled, ... [bad-cases]"],
            id="empty-call",
        ),
        pytest.param(
            "call: {caller: '+14155550142', tags: vip, crm: gold}\n    expect: {route: default}",
            [
                "p.test.yaml:3:42: error: `tags` must be a list [bad-cases]",
                "p.test.yaml:3:52: error: `crm` must be a mapping [bad-cases]",
            ],
            id="wrong-shapes",
        ),
        pytest.param(
            "call: {caler: '+14155550142'}\n    expect: {rout: default}",
            [
                'p.test.yaml:3:12: error: unknown key "caler" (did you mean "caller"?); one of caller, '
                "dialled, "
                "at, tags, crm, crm_status, phone_number_id, variables, call_id, flags, capacity, "
                "history [bad-cases]",
                'p.test.yaml:4:14: error: unknown key "rout" (did you mean "route"?); one of route, '
                "target, reply "
                "[bad-cases]",
            ],
            id="misspelt-keys-do-not-pass-silently",
        ),
        pytest.param(
            "expct: {route: default}",
            [
                "p.test.yaml:2:5: error: a case needs `call:` (facts) or `request:` (a captured message) "
                "[bad-cases]",
                "p.test.yaml:2:5: error: a case needs `expect:` with route, target or reply [bad-cases]",
                'p.test.yaml:3:5: error: unknown key "expct" in a case (did you mean "expect"?) [bad-cases]',
            ],
            id="misspelt-expect",
        ),
    ],
)
def test_test_case_files_are_checked_before_they_run(
    case: str, lines: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text('version: 1\ndefault: {error: "Sorry."}\n')
    (tmp_path / "p.test.yaml").write_text(f"cases:\n  - name: x\n    {case}\n")
    code, out, err = run(["test", str(tmp_path)], capsys)
    assert (code, out) == (1, "0 cases, 0 passed, 0 failed\n")
    summary = f"{len(lines)} error{'s' * (len(lines) != 1)}, 0 warnings"
    assert err.replace(f"{tmp_path}/", "").splitlines() == [*lines, summary]


def test_hours_names_the_holidays(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["hours", OFFICE, "office", "--from", "2026-12-21", "--days", "14"], capsys)
    assert code == 0
    assert "Fri 2026-12-25  closed (Christmas Day)" in out.splitlines()
    assert "Fri 2027-01-01  closed (New Year's Day)" in out.splitlines()


def test_schema_prints_the_draft_2020_12_policy_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["schema"], capsys)
    assert (code, err) == (0, "")
    schema = json.loads(out)
    assert schema == policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in [ROOT / "policies" / "main.yaml", CLI / "office" / "office.yaml"]:
        data = parse_document(path.read_text(encoding="utf-8"), file=str(path)).data
        assert list(validator.iter_errors(data)) == []
    assert list(validator.iter_errors({"version": 1, "rotues": []}))


@pytest.mark.parametrize(
    ("pct", "code", "err"),
    [
        pytest.param("88", 0, "", id="at-or-above"),
        pytest.param(
            "90", 1, "vapi-router test: coverage 88.9% is under --fail-under 90%\n", id="under-fails"
        ),
        pytest.param("101", 2, "vapi-router test: --fail-under wants 0 to 100, got 101\n", id="out-of-range"),
    ],
)
def test_test_fail_under(pct: str, code: int, err: str, capsys: pytest.CaptureFixture[str]) -> None:
    got, out, stderr = run(["test", OFFICE, "--fail-under", pct], capsys)
    assert (got, stderr) == (code, err)
    if code != 2:
        assert out.splitlines()[-1].startswith("coverage: 8 of 9 (88.9%)")


def test_test_k_that_selects_nothing_fails(capsys: pytest.CaptureFixture[str]) -> None:
    got, out, err = run(["test", OFFICE, "-k", "no such case"], capsys)
    assert (got, out) == (1, "")
    assert err == f"vapi-router test: no test case in {OFFICE} matches -k 'no such case'\n"
