"""router.policy.checks (through router.policy.loader): semantic problems of schema-valid policy sets, and
directory sets: merge order, names unique across files, sections at most once, skipped entries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from router.policy.checks import CHECKS, check
from router.policy.document import parse_document
from router.policy.loader import lint_path, lint_texts, policy_files

DEFAULT = 'default: {error: "Sorry."}\n'


def _lines(text: str) -> list[str]:
    return [str(p) for p in lint_texts([("p.yaml", "version: 1\n" + text)]).problems]


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param(
            "routes: []\n",
            [
                "p.yaml:1:1: error: the policy set has no `default`: add `default: <target>` for calls no "
                "route takes [missing-default]"
            ],
            id="default_present",
        ),
        pytest.param(
            "settings: {timezone: Europe/Londn, region: UK}\n" + DEFAULT,
            [
                'p.yaml:2:22: error: unknown time zone "Europe/Londn" (did you mean "Europe/London"?) '
                "[bad-timezone]",
                'p.yaml:2:44: error: unknown region "UK"; use an ISO 3166 code such as US or GB '
                '(did you mean "GB"?) [bad-country]',
            ],
            id="settings_valid",
        ),
        pytest.param(
            "crm: {timeout_ms: 500}\n" + DEFAULT,
            [
                "p.yaml:2:1: error: crm needs exactly one of `file`, `sqlite`, `postgres` or `http` "
                "[crm-source]"
            ],
            id="crm_valid-no-source",
        ),
        pytest.param(
            "crm:\n  http:\n    url: 'ftp://crm/${caller}?line=${dialled}'\n"
            "    headers: {X-Token: '${token}'}\n" + DEFAULT,
            [
                "p.yaml:4:10: error: ${dialled} is not available in the CRM url; use ${caller} "
                "[bad-template]",
                "p.yaml:4:10: error: crm.http.url must start with http:// or https:// [bad-url]",
                "p.yaml:5:24: error: ${token} is not allowed in a header; use ${env.NAME} [bad-template]",
            ],
            id="crm_valid-http",
        ),
        pytest.param(
            "settings: {deadline_ms: 1000}\ncrm: {http: {url: 'https://crm/${caller}'}, timeout_ms: 1000}\n"
            + DEFAULT,
            [
                "p.yaml:3:57: warning: crm.timeout_ms (1000) is not below settings.deadline_ms (1000): every "
                "slow lookup ends in the fallback [crm-timeout]"
            ],
            id="crm_valid-timeout",
        ),
        pytest.param(
            "routes:\n  - {id: a, when: {caller: '+44*'}, then: {error: x}}\n"
            "  - {id: a, when: {caller: '+33*'}, then: {error: y}}\n" + DEFAULT,
            ['p.yaml:4:10: error: route id "a" is used twice (first at p.yaml:3:6) [duplicate-id]'],
            id="unique_route_ids",
        ),
        pytest.param(
            "targets:\n  front-desk: {error: x}\nroutes:\n  - {id: a, then: frontdesk}\n"
            "default: front-desk\n",
            ['p.yaml:5:19: error: unknown target "frontdesk" (did you mean "front-desk"?) [unknown-target]'],
            id="references_resolve-target",
        ),
        pytest.param(
            "settings: {fallback: nobody}\n" + DEFAULT,
            ['p.yaml:2:22: error: unknown target "nobody" [unknown-target]'],
            id="references_resolve-fallback",
        ),
        pytest.param(
            "schedules:\n  office: {weekly: {mon: ['09:00-17:00']}}\n"
            "routes:\n  - {id: a, when: {during: ofice}, then: {error: x}}\n" + DEFAULT,
            [
                'p.yaml:3:3: warning: schedule "office" is defined but never used [unused]',
                'p.yaml:5:28: error: unknown schedule "ofice" (did you mean "office"?) [unknown-schedule]',
            ],
            id="references_resolve-schedule",
        ),
        pytest.param(
            "lists:\n  vips: ['+15550000001']\n"
            "routes:\n  - {id: a, when: {dialled: {in: [vips, vip]}}, then: {error: x}}\n" + DEFAULT,
            ['p.yaml:5:41: error: unknown list "vip" (did you mean "vips"?) [unknown-list]'],
            id="references_resolve-list",
        ),
        pytest.param(
            "targets:\n  a: {split: [{weight: 1, then: a}]}\ndefault: a\n",
            ['p.yaml:3:3: error: target "a" refers back to itself (a -> a) [target-cycle]'],
            id="references_resolve-cycle",
        ),
        pytest.param(
            "lists:\n  l: ['+1555', '+1900*', '1900*']\n"
            "routes:\n  - {id: a, when: {caller: {in: l}}, then: {error: x}}\n"
            "  - {id: b, when: {caller: ['+44 20 7946 0000', '020 7946 0000']}, then: {error: x}}\n"
            + DEFAULT,
            [
                'p.yaml:3:7: error: "+1555" is not a possible phone number [bad-number]',
                'p.yaml:3:26: error: "1900*" is not a valid prefix: write + and digits, then *, e.g. "+44*" '
                "[bad-prefix]",
                'p.yaml:6:49: error: "020 7946 0000" is not a possible phone number (numbers without '
                "+country "
                "need settings.region) [bad-number]",
            ],
            id="numbers_valid",
        ),
        pytest.param(
            "settings: {region: GB}\n"
            "routes:\n  - {id: b, when: {caller: '020 7946 0000'}, then: {error: x}}\n" + DEFAULT,
            [],
            id="numbers_valid-national-with-region",
        ),
        pytest.param(
            "routes:\n  - id: a\n    when:\n      caller: {prefix: '44', regex: '(\\d+)*1', country: uk, "
            "type: cell}\n"
            "    then: {error: x}\n" + DEFAULT,
            [
                'p.yaml:5:24: error: "44" is not a valid prefix: write + and digits, e.g. "+44" [bad-prefix]',
                "p.yaml:5:37: error: regex has a nested quantifier such as (a+)+ that can backtrack for "
                "seconds; "
                "rewrite it without repeating a repeated group [slow-regex]",
                'p.yaml:5:57: error: unknown country "uk" (did you mean "GB"?) [bad-country]',
                'p.yaml:5:67: error: unknown number type "cell"; one of fixed_line, fixed_line_or_mobile, '
                "mobile, "
                "pager, personal_number, premium_rate, shared_cost, toll_free, uan, unknown, voicemail, voip "
                "[bad-number-type]",
            ],
            id="numbers_valid-mapping",
        ),
        pytest.param(
            "routes:\n  - {id: a, when: {caller: {regex: '+1'}}, then: {error: x}}\n" + DEFAULT,
            ["p.yaml:3:36: error: invalid regex: nothing to repeat at position 0 [bad-regex]"],
            id="numbers_valid-regex",
        ),
        pytest.param(
            "targets:\n  t: {assistantId: x, error: y}\n  u: {description: nothing}\n"
            "  v: {squadId: s, assistantOverrides: {}}\n"
            "routes:\n  - {id: a, then: {split: [{weight: 0, then: t}, {weight: 0, then: u}]}}\n"
            "default: v\n",
            [
                "p.yaml:3:6: error: a target needs exactly one of assistantId, assistant, squadId, squad, "
                "destination, error, split; found assistantId, error [target-kind]",
                "p.yaml:4:6: error: a target needs exactly one of assistantId, assistant, squadId, squad, "
                "destination, error, split; found none [target-kind]",
                "p.yaml:5:19: error: assistantOverrides does not go with squadId; use squadOverrides "
                "[bad-overrides]",
                "p.yaml:7:27: error: split weights add up to 0; give at least one variant a weight "
                "[bad-split]",
                "p.yaml:7:37: warning: a variant with weight 0 never answers [bad-split]",
                "p.yaml:7:59: warning: a variant with weight 0 never answers [bad-split]",
            ],
            id="targets_well_formed",
        ),
        pytest.param(
            "targets:\n  desk: {assistantId: x}\n"
            "transfers:\n  - {id: a, when: {caller: '+44*'}, then: desk}\n  - {id: b, then: {squadId: s}}\n"
            + DEFAULT,
            [
                'p.yaml:5:43: error: a transfer answers with a destination or an error; target "desk" is '
                "assistantId [bad-transfer-target]",
                "p.yaml:6:19: error: a transfer answers with a destination or an error, not squadId "
                "[bad-transfer-target]",
            ],
            id="targets_well_formed-transfers",
        ),
        pytest.param(
            "targets:\n  flow: {workflowId: w, workflowOverrides: {variableValues: {a: b}}}\n"
            "routes:\n  - {id: a, then: {workflow: {name: x, nodes: [], edges: []}}}\n"
            "default: flow\n",
            [
                "p.yaml:3:10: error: workflowId: Vapi retired workflows on August 18, 2026; from August 19, "
                "2026 they no longer run. Use squadId (a saved squad) or squad (an inline one) instead "
                "[vapi-retired]",
                "p.yaml:3:25: error: workflowOverrides: Vapi retired workflows on August 18, 2026; from "
                "August 19, 2026 they no longer run. Use squadOverrides instead [vapi-retired]",
                "p.yaml:5:20: error: workflow: Vapi retired workflows on August 18, 2026; from August 19, "
                "2026 they no longer run. Use squad (an inline squad) or squadId instead [vapi-retired]",
            ],
            id="workflows_retired",
        ),
        pytest.param(
            "targets:\n  both: {assistantId: x, workflowId: w}\ndefault: both\n",
            [
                "p.yaml:3:9: error: a target needs exactly one of assistantId, assistant, squadId, squad, "
                "destination, error, split; found assistantId, workflowId [target-kind]",
                "p.yaml:3:26: error: workflowId: Vapi retired workflows on August 18, 2026; from August 19, "
                "2026 they no longer run. Use squadId (a saved squad) or squad (an inline one) instead "
                "[vapi-retired]",
            ],
            id="workflows_retired-never-offered",
        ),
        pytest.param(
            "default:\n  assistant: {firstMesage: hi, serverUrl: 'https://x', maxDurationSeconds: 1}\n",
            [
                'p.yaml:3:15: warning: unknown field "firstMesage" for an assistant (did you mean '
                '"firstMessage"?) '
                "[vapi-unknown-field]",
                'p.yaml:3:32: error: "serverUrl" was removed from Vapi\'s API; use "server.url" instead '
                "[vapi-legacy-field]",
                'p.yaml:3:76: error: "maxDurationSeconds" must be at least 10, got 1 [vapi-range]',
            ],
            id="targets_well_formed-inline-assistant",
        ),
        pytest.param(
            "default: {destination: {type: phone, number: '+15550001111'}}\n",
            ['p.yaml:2:31: error: "type" must be one of number, sip; got "phone" [vapi-enum]'],
            id="targets_well_formed-destination",
        ),
        pytest.param(
            "default:\n  assistantId: x\n  assistantOverrides:\n"
            "    variableValues: {a: '${callr}', b: '${crm.name}', c: '{{customer.number}}', d: "
            "'${route}'}\n",
            [
                'p.yaml:5:25: error: ${callr} is not a known reference (did you mean "caller"?); use '
                "${caller}, "
                "${dialled}, ${call.id}, ${route} or ${crm.FIELD} [bad-template]",
                "p.yaml:5:40: error: ${crm.name} reads the CRM, but the policy has no `crm` section "
                "[bad-template]",
            ],
            id="templates_resolve",
        ),
        pytest.param(
            "crm: {http: {url: 'https://crm/${caller}', fields: {name: contact.name}}}\n"
            "default: {error: 'Hello ${crm.name}, ${crm.nme}'}\n",
            [
                'p.yaml:3:18: error: ${crm.nme}: crm.http.fields has no field "nme" (did you mean "name"?); '
                "its fields: name [bad-template]"
            ],
            id="templates_resolve-http-fields",
        ),
        pytest.param(
            "schedules:\n  s: {timezone: Mars/Olympus, weekly: {mon: ['09:00-25:00']}, closed: "
            "['2026-02-30']}\n"
            "routes:\n  - {id: a, when: {outside: s}, then: {error: x}}\n" + DEFAULT,
            [
                'p.yaml:3:17: error: "Mars/Olympus" is not an IANA time zone; write a name like '
                '"Europe/London" '
                'or "UTC" [bad-timezone]',
                'p.yaml:3:46: error: "09:00-25:00" has a time that does not exist; use 00:00 to 23:59, or '
                "24:00 "
                "as an end [bad-window]",
                'p.yaml:3:72: error: "2026-02-30" is not a date (day is out of range for month); write '
                'YYYY-MM-DD, e.g. "2026-12-24" [bad-date]',
            ],
            id="schedules_valid",
        ),
        pytest.param(
            "routes:\n  - {id: a, when: {tags: [vip], crm: {tier: gold}, crm_status: ok}, then: {error: x}}\n"
            "  - {id: b, when: {crm_status: [disabled]}, then: {error: x}}\n" + DEFAULT,
            [
                "p.yaml:3:20: warning: `tags` reads the CRM but the policy has no `crm` section: it never "
                "matches [crm-disabled]",
                "p.yaml:3:33: warning: `crm` reads the CRM but the policy has no `crm` section: it never "
                "matches [crm-disabled]",
                'p.yaml:3:52: warning: without a `crm` section crm_status is always "disabled" '
                "[crm-disabled]",
            ],
            id="crm_conditions_need_crm",
        ),
        pytest.param(
            "routes:\n  - {id: all, when: {}, then: {error: x}}\n"
            "  - {id: uk, when: {caller: '+44*'}, then: {error: y}}\n" + DEFAULT,
            [
                'p.yaml:3:10: warning: route "all" matches every call, so the 1 route after it can never '
                'match: "uk" (p.yaml:4:6); give it a `when`, or move it last (or make it the `default`) '
                "[unreachable]"
            ],
            id="unreachable_routes-catch-all",
        ),
        pytest.param(
            "routes:\n  - {id: uk, when: {caller: '+44*'}, then: {error: x}}\n"
            "  - {id: uk-main, when: {caller: '+44*', dialled: '+16505550117'}, then: {error: y}}\n"
            "  - {id: fr, when: {caller: '+33*'}, then: {error: z}}\n" + DEFAULT,
            [
                'p.yaml:4:10: warning: route "uk-main" can never match: route "uk" (p.yaml:3:6) before it '
                'takes every such call (the same caller "+44*") [unreachable]'
            ],
            id="unreachable_routes-shadowed",
        ),
        pytest.param(
            "routes:\n  - {id: a, then: {error: x}}\n"
            "transfers:\n  - {id: t, when: {caller: '+44*'}, then: {error: y}}\n" + DEFAULT,
            [],
            id="unreachable_routes-transfers-are-a-separate-list",
        ),
        pytest.param(
            "schedules:\n  s: {weekly: {mon: ['09:00-17:00']}}\nlists:\n  l: []\n"
            "targets:\n  t: {error: x}\n  u: {error: y}\n"
            "routes:\n  - {id: a, then: {split: [{weight: 1, then: u}]}}\n" + DEFAULT,
            [
                'p.yaml:3:3: warning: schedule "s" is defined but never used [unused]',
                'p.yaml:5:3: warning: list "l" is defined but never used [unused]',
                'p.yaml:7:3: warning: target "t" is defined but never used [unused]',
            ],
            id="unused_names",
        ),
    ],
)
def test_semantic_problems(text: str, lines: list[str]) -> None:
    assert _lines(text) == lines


def test_checks_run_in_a_fixed_order_and_have_unique_names() -> None:
    names = [c.__name__ for c in CHECKS]
    assert len(names) == len(set(names))
    assert names[0] == "default_present"


def test_check_yields_every_problem_without_raising() -> None:
    doc = parse_document(
        "version: 1\nroutes:\n  - {id: a, then: nope}\n  - {id: a, then: nope}\n", file="p.yaml"
    )
    codes = sorted(p.code for p in check([doc]))
    assert codes == ["duplicate-id", "missing-default", "unknown-target", "unknown-target", "unreachable"]


def test_a_clean_set_compiles() -> None:
    loaded = lint_texts([("p.yaml", "version: 1\n" + DEFAULT)])
    assert loaded.problems == ()
    assert loaded.policy is not None


# ---------------------------------------------------------------- directory policy sets


def _write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _problems(path: Path) -> list[str]:
    return [str(p).replace(f"{path}{os.sep}", "") for p in lint_path(path).problems]


def test_files_merge_in_file_name_order(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "b.yaml": "version: 1\nroutes:\n  - {id: b, when: {caller: '+44*'}, then: {error: b}}\n",
            "a.yaml": "version: 1\nroutes:\n  - {id: a, when: {caller: '+33*'}, then: {error: a}}\n"
            + DEFAULT,
            "10-first.yaml": "version: 1\nroutes:\n  - {id: first, when: {caller: '+1*'}, then: {error: "
            "f}}\n",
        },
    )
    assert [p.name for p in policy_files(tmp_path)] == ["10-first.yaml", "a.yaml", "b.yaml"]
    loaded = lint_path(tmp_path)
    assert loaded.problems == ()
    assert loaded.policy is not None
    assert [r.id for r in loaded.policy.routes] == ["first", "a", "b"]


def test_a_catch_all_in_an_earlier_file_shadows_later_files(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "a.yaml": "version: 1\nroutes:\n  - {id: all, then: {error: a}}\n" + DEFAULT,
            "b.yaml": "version: 1\nroutes:\n  - {id: uk, when: {caller: '+44*'}, then: {error: b}}\n",
        },
    )
    assert _problems(tmp_path) == [
        'a.yaml:3:10: warning: route "all" matches every call, so the 1 route after it can never match: '
        '"uk" (b.yaml:3:6); give it a `when`, or move it last (or make it the `default`) [unreachable]'
    ]


def test_names_are_unique_across_files(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "a.yaml": "version: 1\ntargets:\n  desk: {error: a}\nlists:\n  l: ['+1900*']\n"
            "routes:\n  - {id: r, when: {caller: {in: l}}, then: desk}\n" + DEFAULT,
            "b.yaml": "version: 1\ntargets:\n  desk: {error: b}\nlists:\n  l: ['+1976*']\n"
            "routes:\n  - {id: r, when: {caller: '+44*'}, then: desk}\n",
        },
    )
    assert _problems(tmp_path) == [
        'b.yaml:3:3: error: target "desk" is defined twice (also at a.yaml:3:3) [duplicate-name]',
        'b.yaml:5:3: error: list "l" is defined twice (also at a.yaml:5:3) [duplicate-name]',
        'b.yaml:7:10: error: route id "r" is used twice (first at a.yaml:7:6) [duplicate-id]',
    ]


def test_pools_flags_and_state_are_declared_once_across_files(tmp_path: Path) -> None:
    """DESIGN §13's sections in a directory set: a pool or flag defined in two files, or
    `state` given twice (the single-file mistakes are golden cases: tests/cases/invalid/state-*)."""
    used = "routes:\n  - {id: r, when: {flag: storm}, then: {error: x, pool: sales}}\n"
    _write(
        tmp_path,
        {
            "a.yaml": "version: 1\nstate: {sqlite: a.db}\ncapacity:\n  sales: {max: 2}\n"
            "flags:\n  storm: {description: a}\n" + used + DEFAULT,
            "b.yaml": "version: 1\nstate: {sqlite: b.db}\ncapacity:\n  sales: {max: 3}\n"
            "flags:\n  storm: {description: b}\n",
        },
    )
    assert _problems(tmp_path) == [
        "b.yaml:2:1: error: `state` appears twice in the policy set (also at a.yaml:2:1) [duplicate-section]",
        'b.yaml:4:3: error: pool "sales" is defined twice (also at a.yaml:4:3) [duplicate-name]',
        'b.yaml:6:3: error: flag "storm" is defined twice (also at a.yaml:6:3) [duplicate-name]',
    ]


def test_a_name_defined_in_one_file_may_be_used_in_another(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "a.yaml": "version: 1\ntargets:\n  desk: {error: a}\nschedules:\n  s: {weekly: {mon: "
            "['09:00-17:00']}}\n",
            "b.yaml": "version: 1\nroutes:\n  - {id: r, when: {during: s}, then: desk}\ndefault: desk\n",
        },
    )
    assert _problems(tmp_path) == []


@pytest.mark.parametrize(
    ("section", "line"),
    [
        pytest.param(
            "settings: {timezone: UTC}", "b.yaml:2:1: error: `settings` appears twice", id="settings"
        ),
        pytest.param("crm: {file: crm.csv}", "b.yaml:2:1: error: `crm` appears twice", id="crm"),
        pytest.param("default: {error: b}", "b.yaml:2:1: error: `default` appears twice", id="default"),
    ],
)
def test_settings_crm_and_default_appear_at_most_once(tmp_path: Path, section: str, line: str) -> None:
    key = section.split(":")[0]
    first = "version: 1\nsettings: {region: US}\ncrm: {file: crm.csv}\n" + DEFAULT
    _write(tmp_path, {"a.yaml": first, "b.yaml": f"version: 1\n{section}\n", "crm.csv": "number,tags\n"})
    row = {"settings": 2, "crm": 3, "default": 4}[key]
    assert _problems(tmp_path) == [f"{line} in the policy set (also at a.yaml:{row}:1) [duplicate-section]"]


def test_test_files_hidden_entries_and_configmap_data_are_skipped(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "main.yaml": "version: 1\n" + DEFAULT,
            "main.test.yaml": "cases: []\n",
            ".draft.yaml": "not: a policy\n",
            "..2026_11_21/extra.yaml": "not: a policy\n",
            "notes.txt": "ignored\n",
            "sub/other.yaml": "not: a policy\n",
        },
    )
    os.symlink("..2026_11_21", tmp_path / "..data")
    assert [p.name for p in policy_files(tmp_path)] == ["main.yaml"]
    assert _problems(tmp_path) == []


def test_symlinks_are_followed_as_in_a_configmap_mount(tmp_path: Path) -> None:
    data = tmp_path / "..2026_11_21_06_00"
    _write(
        data, {"main.yaml": "version: 1\n" + DEFAULT, "crm.csv": "number,tags,name\n+14155550142,vip,Dana\n"}
    )
    os.symlink(data.name, tmp_path / "..data")
    os.symlink("..data/main.yaml", tmp_path / "main.yaml")
    os.symlink("..data/crm.csv", tmp_path / "crm.csv")
    os.symlink("missing.yaml", tmp_path / "dangling.yaml")
    assert [p.name for p in policy_files(tmp_path)] == ["main.yaml"]
    loaded = lint_path(tmp_path)
    assert loaded.problems == ()
    assert loaded.policy is not None


def test_crm_file_is_relative_to_its_policy_file_and_stays_inside(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "set/main.yaml": "version: 1\ncrm: {file: ../secrets.csv}\n" + DEFAULT,
            "secrets.csv": "number,tags\n",
            "ok/main.yaml": "version: 1\ncrm: {file: data/crm.csv}\ndefault: {error: 'Hi ${crm.name}'}\n",
            "ok/data/crm.csv": "number,tags,name\n",
        },
    )
    assert _problems(tmp_path / "set") == [
        'main.yaml:2:13: error: crm.file "../secrets.csv" is outside the policy directory [crm-file]'
    ]
    assert _problems(tmp_path / "ok") == []


@pytest.mark.parametrize(
    ("make", "line"),
    [
        pytest.param(lambda p: None, "{p}:1:1: error: no such file or directory [no-file]", id="missing"),
        pytest.param(
            lambda p: p.mkdir(),
            "{p}:1:1: error: no *.yaml policy files in this directory [no-file]",
            id="empty-dir",
        ),
    ],
)
def test_a_path_without_policies(tmp_path: Path, make: object, line: str) -> None:
    path = tmp_path / "policies"
    make(path)  # type: ignore[operator]
    assert [str(p) for p in lint_path(path).problems] == [line.format(p=path)]
