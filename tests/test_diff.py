"""`vapi-router diff`: soundness against random calls, the rendered table, JSON and exit codes.

Soundness: for pairs of policy sets, random calls over the window (numbers drawn from the
named exact numbers and prefixes, real numbers of many countries and types, and random
digits; tags, CRM fields, statuses, variables and ids from the named values and random
ones) are decided by both sets; wherever the diff said a region is the same, both sets
must answer its calls alike (route, target and reply bytes), and every call whose answers
differ must lie in a region the diff reported.
"""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import phonenumbers
import pytest

from router import cli
from router.policy.loader import load_policy
from router.runtime.decide import decide
from router.runtime.facttypes import Facts
from router.runtime.model import Policy
from router.tools.diff import diff_policies
from router.tools.diffkeys import facts_for, outcome_key
from router.tools.diffspace import _example_numbers

ROOT = Path(__file__).resolve().parents[1]
START = date(2026, 11, 23)  # a Monday; Thanksgiving (US) is on the 26th
DAYS = 7
CALLS = 700  # per pair: bounded, the whole file runs in a few seconds

BASE = """\
version: 1
settings: {timezone: America/New_York, region: US}
crm: {file: crm.csv}
schedules:
  office:
    weekly: {mon-fri: ["08:00-12:30", "13:00-18:00"], sat: ["09:00-13:00"]}
    holidays: {country: US}
  denver:
    timezone: America/Denver
    weekly: {mon-fri: ["07:30-16:00"]}
  night:
    timezone: Europe/London
    weekly: {mon-sun: ["22:00-06:00"]}
lists:
  blocked: ["+15550000001", "+1900*"]
targets:
  desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}
  vip-desk:
    assistantId: 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d
    assistantOverrides: {variableValues: {name: "${crm.name}"}}
  on-call: {destination: {type: number, number: "+15550001111"}}
routes:
  - id: block
    when: {caller: {in: blocked}}
    then: {error: "No."}
  - id: brooklyn
    when: {caller: "+1718*"}
    then: {assistantId: 11111111-1111-4111-8111-111111111111}
  - id: vip-night
    when: {tags: {any: [vip]}, outside: office, dialled: "+16505550117"}
    then: on-call
  - id: vip
    when: {tags: [vip], crm: {tier: [gold, silver]}}
    then: vip-desk
  - id: mexico
    when: {caller: {country: MX}}
    then: {assistantId: 22222222-2222-4222-8222-222222222222}
  - id: denver
    when: {during: denver, dialled: "+17205550100"}
    then: desk
  - id: sip
    when: {variables: {lang: es}}
    then: {assistantId: 33333333-3333-4333-8333-333333333333}
  - id: ab
    when: {dialled: "+1650555*"}
    then:
      split:
        - {weight: 90, then: desk}
        - {weight: 10, then: {assistantId: 0b6a9e1c-5d4f-4c2a-8e7b-3f9d2a1c6e50}}
default: desk
"""
CRM = "number,tags,name,tier,first\n+14155550142,vip,Dana,gold,D\n"


def _edit(*pairs: tuple[str, str]) -> str:
    text = BASE
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


# (id, NEW's text): each an edit an ops engineer makes
EDITS = [
    pytest.param(BASE, id="identical"),
    pytest.param(
        _edit(("0b6a9e1c-5d4f-4c2a-8e7b-3f9d2a1c6e50", "0b6a9e1c-5d4f-4c2a-8e7b-3f9d2a1c6e51")),
        id="split-arm-id",
    ),
    pytest.param(
        _edit(("{weight: 90, then: desk}", "{weight: 80, then: desk}"), ("{weight: 10,", "{weight: 20,")),
        id="weights",
    ),
    pytest.param(_edit(('"08:00-12:30", "13:00-18:00"', '"08:00-18:00"')), id="lunch-open"),
    pytest.param(
        _edit(('when: {caller: "+1718*"}', 'when: {caller: ["+1718*", "+15551234567"]}')), id="exact-added"
    ),
    pytest.param(_edit(("tier: [gold, silver]", "tier: [gold]")), id="crm-value"),
    pytest.param(_edit(("{tags: [vip], crm", "{tags: {any: [vip], none: [churned]}, crm")), id="tag-none"),
    pytest.param(_edit(('name: "${crm.name}"', 'name: "${crm.first}"')), id="template-field"),
    pytest.param(_edit(("timezone: America/Denver", "timezone: America/Chicago")), id="zone"),
    pytest.param(
        _edit(("country: MX", "country: [MX, CA]"), ("lang: es", "lang: [es, pt]")), id="country-var"
    ),
    pytest.param(
        _edit(
            (
                "  - id: block\n",
                "  - id: toll\n    when: {caller: {type: toll_free}}\n    then: desk\n  - id: block\n",
            )
        ),
        id="type-first",
    ),
    pytest.param(_edit(("holidays: {country: US}", 'closed: ["2026-11-27"]')), id="holiday-to-closed"),
]


def _policy(root: Path, name: str, text: str) -> Policy:
    d = root / name
    d.mkdir()
    (d / "policy.yaml").write_text(text)
    (d / "crm.csv").write_text(CRM)
    return load_policy(d)


def _number(rng: random.Random, named: list[str]) -> str | None:
    pick = rng.random()
    if pick < 0.08:
        return None
    if pick < 0.4 and named:
        return rng.choice(named).rstrip("*")  # a named number, or a prefix as a number
    if pick < 0.6 and named:
        base = rng.choice(named).rstrip("*")
        width = rng.randint(max(len(base) + 1, 10), 13)
        return base + "".join(rng.choice("0123456789") for _ in range(width - len(base)))
    if pick < 0.85:
        return rng.choice(_example_numbers())
    cc = rng.choice(["1", "44", "52", "1", "33", "91"])
    digits = "".join(rng.choice("0123456789") for _ in range(10))
    return f"+{cc}{digits}"


def _random_facts(rng: random.Random) -> Facts:
    from router.runtime import phone

    named = ["+15550000001", "+1900*", "+1718*", "+16505550117", "+17205550100", "+1650555*", "+15551234567"]
    caller = _number(rng, named)
    dialled = _number(rng, named)
    caller = phone.normalise(caller) if caller else None
    dialled = phone.normalise(dialled) if dialled else None
    minute = rng.randrange(DAYS * 24 * 60 + 120)
    at = datetime(2026, 11, 23, 5, 0, tzinfo=UTC) + timedelta(minutes=minute, seconds=rng.randrange(60))
    status = rng.choice(["ok", "ok", "ok", "not_found", "timeout", "error"])
    tags = (
        frozenset(t for t in ("vip", "churned", "gold", "x") if rng.random() < 0.4)
        if status == "ok"
        else frozenset()
    )
    crm: dict[str, str] = {}
    if status == "ok":
        for f, values in (
            ("tier", ["gold", "silver", "bronze", ""]),
            ("name", ["Dana", ""]),
            ("first", ["D"]),
        ):
            if rng.random() < 0.7:
                crm[f] = rng.choice(values)
    variables = {"lang": rng.choice(["es", "pt", "en"])} if rng.random() < 0.5 else {}
    return Facts(caller, dialled, at, rng.choice([None, "pn-1"]), "call-1", variables, status, tags, crm)  # type: ignore[arg-type]


@pytest.mark.parametrize("new_text", EDITS)
def test_diff_is_sound_on_random_calls(tmp_path: Path, new_text: str) -> None:
    old, new = _policy(tmp_path, "old", BASE), _policy(tmp_path, "new", new_text)
    result = diff_policies(old, new, START, DAYS)
    window = (datetime(2026, 11, 23, 5, 0, tzinfo=UTC), datetime(2026, 11, 30, 5, 0, tzinfo=UTC))
    rng = random.Random(f"diff-{new_text}")
    unseen = 0
    for _ in range(CALLS):
        facts = _random_facts(rng)
        if not window[0] <= facts.at < window[1]:
            continue
        a, b = decide(old, facts_for(old, facts)), decide(new, facts_for(new, facts))
        same = (a.route, a.target, a.body, a.fallback_reason) == (
            b.route,
            b.target,
            b.body,
            b.fallback_reason,
        )
        reported = result.differs(facts)
        if reported is None:
            unseen += 1
            assert same, f"a call in a region the diff never built answers differently: {facts}"
        elif not reported:
            assert same, f"diff said 'same' but: {facts}\n old {a}\n new {b}"
            assert outcome_key(old, facts) == outcome_key(new, facts)
    assert unseen < CALLS // 20, f"{unseen} random calls fell in regions the diff never built"
    assert bool(result.differences) == (new_text != BASE)


def test_identical_sets_exit_0_and_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(ROOT / "policies", tmp_path / "a")
    code = cli.main(["diff", str(ROOT / "policies"), str(tmp_path / "a"), "--from", "2026-11-23"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"No difference: {ROOT / 'policies'} and {tmp_path / 'a'} answer every call alike")


def test_a_changed_target_reads_as_rows_with_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _policy(tmp_path, "old", BASE)
    _policy(
        tmp_path,
        "new",
        _edit(("22222222-2222-4222-8222-222222222222", "22222222-2222-4222-8222-222222222223")),
    )
    code = cli.main(["diff", str(tmp_path / "old"), str(tmp_path / "new"), "--from", "2026-11-23"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0].startswith("3 groups of calls answer differently")
    assert out[2].startswith("| # | caller | dialled | CRM | time |")
    same = "mexico → assistantId 22222222-2222-4222-8222-222222222222"
    change = (
        "same route and target; reply assistantId 22222222-2222-4222-8222-222222222222 → "
        "22222222-2222-4222-8222-222222222223"
    )
    mx = "other number (country MX)"
    assert out[4:7] == [
        f"| 1 | {mx} | any | no tag vip | any time | {same} | {change} |",
        f"| 2 | {mx} | any but +16505550117 | tier=other or none | any time | {same} | {change} |",
        f"| 3 | {mx} | any | tier=other or none | office open: Mon 2026-11-23 08:00–12:30, "
        f"Mon 2026-11-23 13:00–18:00 (+7 more) | {same} | {change} |",
    ]
    assert out[-3].startswith("  1. --caller +52")


def test_json_lists_each_row_with_both_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _policy(tmp_path, "old", BASE)
    _policy(tmp_path, "new", _edit(('"08:00-12:30", "13:00-18:00"', '"08:00-18:00"')))
    code = cli.main(["diff", str(tmp_path / "old"), str(tmp_path / "new"), "--from", "2026-11-23", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["same"] is False
    rows = data["differences"]
    assert {r["old"]["route"] for r in rows} == {"vip-night"}
    assert all(r["new"]["route"] != "vip-night" for r in rows)
    assert all(r["dialled"] == "+16505550117" for r in rows)
    # lunch on the four working days of Thanksgiving week (the 26th is a holiday)
    lunch = {s[0] for r in rows for s in r["slices"]}
    assert lunch == {f"2026-11-{d}T12:30:00-05:00" for d in (23, 24, 25, 27)}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--days", "0"], "vapi-router diff: --days wants 1 to 366 days, got 0", id="days"),
        pytest.param(
            ["--from", "23/11"], "vapi-router diff: --from wants YYYY-MM-DD, got '23/11'", id="from"
        ),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    policies = str(ROOT / "policies")
    assert cli.main(["diff", policies, policies, *argv]) == 2
    assert capsys.readouterr().err.strip() == message


def test_example_numbers_cover_countries() -> None:
    assert len({phonenumbers.region_code_for_number(phonenumbers.parse(n)) for n in _example_numbers()}) > 200


def test_live_call_state_is_named_as_not_compared(capsys: pytest.CaptureFixture[str]) -> None:
    """Flags, pools and history are not a region dimension yet: diff says so instead of
    implying that every call with state is decided alike."""
    example = str(ROOT / "examples" / "storm-and-capacity")
    assert cli.main(["diff", example, example]) == 0
    out = capsys.readouterr().out
    assert "note: live call state (history, capacity, flags) is compared as empty state only" in out
    assert cli.main(["diff", str(ROOT / "policies"), str(ROOT / "policies")]) == 0
    assert "live call state" not in capsys.readouterr().out
