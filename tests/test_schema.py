"""router.policy.schema: JSON Schema problems rendered in our words, at the YAML line:col."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from router.policy.document import parse_document
from router.policy.schema import policy_schema, validate

ROOT = Path(__file__).resolve().parent.parent


def _lines(text: str) -> list[str]:
    return [str(p) for p in sorted(validate(parse_document(text, file="p.yaml")))]


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param(
            "",
            ["p.yaml:1:1: error: the file is empty; a policy starts with `version: 1` [empty-file]"],
            id="empty",
        ),
        pytest.param(
            "- version: 1\n",
            [
                "p.yaml:1:1: error: a policy file must be a mapping (version, routes, ...), got a list "
                "[bad-type]"
            ],
            id="list",
        ),
        pytest.param(
            "default: x\n",
            ['p.yaml:1:1: error: the policy needs "version" [missing-key]'],
            id="missing-version",
        ),
        pytest.param(
            "version: 2\n",
            ["p.yaml:1:10: error: version must be 1, got 2 [bad-value]"],
            id="wrong-version",
        ),
        pytest.param(
            "version: '1'\n",
            ['p.yaml:1:10: error: version must be 1, got "1" [bad-value]'],
            id="version-as-text",
        ),
        pytest.param(
            "version: 1\nrotues: []\n",
            ['p.yaml:2:1: error: unknown key "rotues" (did you mean "routes"?) [unknown-key]'],
            id="misspelt-top-level-key",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: a\n    when: {caler: '+44*'}\n    then: x\n",
            [
                'p.yaml:4:12: error: unknown key "caler" in routes[0].when (did you mean "caller"?) '
                "[unknown-key]"
            ],
            id="misspelt-condition-key",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: a\n    when: {not: {dialled: {prefx: '+1'}}}\n    then: x\n",
            [
                'p.yaml:4:28: error: unknown key "prefx" in routes[0].when.not.dialled (did you mean '
                '"prefix"?)'
                " [unknown-key]"
            ],
            id="misspelt-nested-condition-key",
        ),
        pytest.param(
            "version: 1\ntargets:\n  a: {assistantID: x}\n",
            [
                'p.yaml:3:7: error: unknown key "assistantID" in targets.a (did you mean "assistantId"?) '
                "[unknown-key]"
            ],
            id="misspelt-target-key",
        ),
        pytest.param(
            "version: 1\ntargets:\n  a: {colour: red}\n",
            ['p.yaml:3:7: error: unknown key "colour" in targets.a [unknown-key]'],
            id="unknown-key-without-a-close-match",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: a\n",
            ['p.yaml:3:5: error: routes[0] needs "then" [missing-key]'],
            id="route-without-then",
        ),
        pytest.param(
            "version: 1\nsettings: {deadline_ms: '4000'}\n",
            [
                "p.yaml:2:25: error: settings.deadline_ms must be a whole number, got a string "
                "(remove the quotes) [bad-type]"
            ],
            id="quoted-number",
        ),
        pytest.param(
            "version: 1\nsettings: {deadline_ms: 9000}\n",
            ["p.yaml:2:25: error: settings.deadline_ms must be at most 7000, got 9000 [bad-value]"],
            id="above-maximum",
        ),
        pytest.param(
            "version: 1\ncrm: {file: a.csv, timeout_ms: 0}\n",
            ["p.yaml:2:32: error: crm.timeout_ms must be at least 1, got 0 [bad-value]"],
            id="below-minimum",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: 42\n    then: x\n",
            ["p.yaml:3:9: error: routes[0].id must be a string, got a number (quote it) [bad-type]"],
            id="number-for-text",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: a\n    when: {caller: {country: [true, NO]}}\n    then: x\n",
            [
                "p.yaml:4:31: error: routes[0].when.caller.country[0] must be a string, got true (quote it) "
                "[bad-type]"
            ],
            id="boolean-for-text-but-NO-is-text",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: a\n    then: {split: [{weight: 1.5, then: x}]}\n",
            [
                "p.yaml:4:29: error: routes[0].then.split[0].weight must be a whole number, got the decimal "
                "number 1.5 [bad-type]"
            ],
            id="decimal-for-integer",
        ),
        pytest.param(
            "version: 1\nroutes: {a: {then: x}}\n",
            ["p.yaml:2:9: error: routes must be a list, got a mapping [bad-type]"],
            id="mapping-for-list",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: a\n    when: {caller: 44}\n    then: x\n",
            [
                "p.yaml:4:20: error: routes[0].when.caller must be a string, a list or a mapping, got a "
                "number "
                "(quote it) [bad-type]"
            ],
            id="several-types",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: a\n    when: {crm_status: time_out}\n    then: x\n",
            [
                "p.yaml:4:24: error: routes[0].when.crm_status must be one of ok, not_found, timeout, error, "
                'disabled, got "time_out" (did you mean "timeout"?) [bad-value]'
            ],
            id="enum",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: a\n    when: {any: []}\n    then: {error: ''}\n",
            [
                "p.yaml:4:17: error: routes[0].when.any must not be empty [bad-value]",
                "p.yaml:5:19: error: routes[0].then.error must not be empty [bad-value]",
            ],
            id="empty-list-and-text",
        ),
        pytest.param(
            "version: 1\ntargets:\n  front desk: {error: x}\n",
            [
                'p.yaml:3:3: error: "front desk" is not a valid name: use letters, digits, "-", "_" and "." '
                "(start with a letter or digit) [bad-name]"
            ],
            id="bad-name",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: -uk\n    then: x\n",
            [
                'p.yaml:3:9: error: routes[0].id "-uk" is not a valid name: use letters, digits, "-", "_" '
                "and "
                '"." (start with a letter or digit) [bad-name]'
            ],
            id="bad-route-id",
        ),
        pytest.param(
            "version: 1\nschedules:\n  office: {weekly: {mon: [9-5]}}\n",
            [
                'p.yaml:3:27: error: schedules.office.weekly.mon[0] "9-5" is not valid; write HH:MM-HH:MM '
                "[bad-value]"
            ],
            id="window-pattern",
        ),
        pytest.param(
            "version: 1\nschedules:\n  office: {holidays: {subdivision: NY}}\n",
            ['p.yaml:3:22: error: schedules.office.holidays needs "country" [missing-key]'],
            id="holidays-without-country",
        ),
        pytest.param(
            "version: 1\ncrm: {http: {headers: {}}}\n",
            ['p.yaml:2:13: error: crm.http needs "url" [missing-key]'],
            id="http-crm-without-url",
        ),
        pytest.param(
            "version: 1\nroutes:\n  - id: a\n    then: {split: [{then: x}]}\n",
            ['p.yaml:4:20: error: routes[0].then.split[0] needs "weight" [missing-key]'],
            id="split-without-weight",
        ),
        pytest.param(
            "version: 1\nrotues: []\nroutes: 3\nsettings: {zone: UTC}\n",
            [
                'p.yaml:2:1: error: unknown key "rotues" (did you mean "routes"?) [unknown-key]',
                "p.yaml:3:9: error: routes must be a list, got a number [bad-type]",
                'p.yaml:4:12: error: unknown key "zone" in settings (did you mean "timezone"?) [unknown-key]',
            ],
            id="every-problem-sorted-by-position",
        ),
    ],
)
def test_schema_problems(text: str, lines: list[str]) -> None:
    assert _lines(text) == lines


def test_the_bundled_policy_has_no_schema_problems() -> None:
    path = ROOT / "policies" / "main.yaml"
    assert _lines(path.read_text(encoding="utf-8")) == []


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = policy_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_names_follow_one_rule_everywhere() -> None:
    schema = policy_schema()
    name = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    for section in ("schedules", "lists", "targets"):
        assert schema["properties"][section]["propertyNames"]["pattern"] == name
    assert schema["$defs"]["route"]["properties"]["id"]["pattern"] == name
