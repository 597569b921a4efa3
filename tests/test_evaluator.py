"""router.runtime.evaluator: every condition kind, first match, default, transfers, the CRM pause,
and the key property: the indexed fast path decides exactly as the plain scan and explain."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.policy.loader import lint_texts, load_policy
from router.runtime import phone
from router.runtime.evaluator import asks_crm_first, evaluate, evaluate_linear, evaluate_transfer, explain
from router.runtime.facttypes import CrmStatus, Facts
from router.runtime.model import Decision, Policy

NY = ZoneInfo("America/New_York")
CRM = (
    "crm:\n"
    '  http: {url: "https://crm.example.com/c?phone=${caller}", tags: contact.tags,\n'
    "         fields: {tier: contact.tier, name: contact.name, vip: contact.vip, visits: contact.visits}}\n"
)
SCHEDULES = {
    "office": '{weekly: {mon-fri: ["09:00-17:00"]}, holidays: {country: US, subdivision: NY}}',
    "night": '{timezone: Europe/London, weekly: {mon-sun: ["22:00-06:00"]}}',
}
LISTS = {"blocked": '["+15550000001", "+1900*"]', "partners": '["+442079460123", "+33*"]'}


def load(text: str, *, allow: tuple[str, ...] = ()) -> Policy:
    """A policy from YAML text that must lint without a single problem (but those `allow`ed)."""
    loaded = lint_texts([("t.yaml", text)])
    assert [str(p) for p in loaded.problems if p.code not in allow] == []
    assert loaded.policy is not None
    return loaded.policy


def policy_text(routes: list[str], *, transfers: list[str] | None = None) -> str:
    """A policy around `routes` (YAML flow mappings), with the schedules and lists they name."""
    body = "\n".join(routes + (transfers or []))
    lines = ["version: 1", "settings: {timezone: America/New_York, region: US}", CRM.rstrip()]
    used = {k: v for k, v in SCHEDULES.items() if k in body}
    if used:
        lines += ["schedules:", *(f"  {k}: {v}" for k, v in used.items())]
    named = {k: v for k, v in LISTS.items() if k in body}
    if named:
        lines += ["lists:", *(f"  {k}: {v}" for k, v in named.items())]
    lines += ["routes:", *(f"  - {r}" for r in routes)]
    if transfers is not None:
        lines += ["transfers:", *(f"  - {r}" for r in transfers)]
    lines.append("default: {assistantId: default-assistant}")
    return "\n".join(lines) + "\n"


def facts(
    caller: str | None = "+14155550142",
    dialled: str | None = "+16505550117",
    at: datetime = datetime(2026, 3, 4, 10, 0, tzinfo=NY),  # a Wednesday, office open
    *,
    phone_number_id: str | None = "pn-main",
    call_id: str | None = "call-1",
    variables: dict[str, str] | None = None,
    crm_status: CrmStatus | None = "ok",
    tags: tuple[str, ...] = (),
    crm: dict[str, str] | None = None,
) -> Facts:
    return Facts(
        caller=caller,
        dialled=dialled,
        at=at,
        phone_number_id=phone_number_id,
        call_id=call_id,
        variables=variables or {},
        crm_status=crm_status,
        tags=frozenset(tags),
        crm=crm or {},
    )


def route_id(d: Decision) -> str | None:
    return None if d.route is None else d.route.id


def decide(policy: Policy, f: Facts) -> tuple[str | None, bool]:
    """evaluate's answer, after checking that the scan and explain give the same one."""
    fast = evaluate(policy, f)
    slow = evaluate_linear(policy, f)
    traced = explain(policy, f)
    answer = (route_id(fast), fast.needs_crm)
    assert (route_id(slow), slow.needs_crm) == answer
    assert (route_id(traced), traced.needs_crm) == answer
    return answer


# -- every condition kind ------------------------------------------------------------------

SAT = datetime(2026, 3, 7, 10, 0, tzinfo=NY)
MX = "+525512345678"
GB = "+442079460123"
FR_MOBILE = "+33612345678"

CONDITIONS = [
    # caller: exact after E.164 normalisation
    pytest.param('{caller: "+14155550142"}', {}, True, id="caller-exact"),
    pytest.param('{caller: "(415) 555-0142"}', {}, True, id="caller-national-format-with-region"),
    pytest.param('{caller: "415.555.0142"}', {}, True, id="caller-dotted-national"),
    pytest.param('{caller: "+1 415 555 0142"}', {}, True, id="caller-spaced-e164"),
    pytest.param('{caller: "+14155550143"}', {}, False, id="caller-other-number"),
    pytest.param('{caller: "+14155550142"}', {"caller": None}, False, id="caller-exact-anonymous"),
    pytest.param('{caller: "+1415*"}', {}, True, id="caller-prefix"),
    pytest.param('{caller: "+44*"}', {}, False, id="caller-prefix-miss"),
    pytest.param('{caller: "+44*"}', {"caller": GB}, True, id="caller-prefix-gb"),
    pytest.param('{caller: "+1415*"}', {"caller": None}, False, id="caller-prefix-anonymous"),
    pytest.param('{caller: ["+442079460123", "+1415*"]}', {}, True, id="caller-list-prefix-hit"),
    pytest.param('{caller: ["+442079460123", "+1415*"]}', {"caller": GB}, True, id="caller-list-exact-hit"),
    pytest.param('{caller: ["+442079460123", "+1212*"]}', {}, False, id="caller-list-miss"),
    pytest.param('{caller: {prefix: "+1415"}}', {}, True, id="caller-map-prefix"),
    pytest.param('{caller: {prefix: ["+44", "+1415"]}}', {}, True, id="caller-map-prefix-list"),
    pytest.param('{caller: {regex: "\\\\+1415555\\\\d{4}"}}', {}, True, id="caller-regex"),
    pytest.param('{caller: {regex: "\\\\+1415"}}', {}, False, id="caller-regex-is-a-full-match"),
    pytest.param("{caller: {in: blocked}}", {"caller": "+15550000001"}, True, id="caller-in-list-exact"),
    pytest.param("{caller: {in: blocked}}", {"caller": "+19005551234"}, True, id="caller-in-list-prefix"),
    pytest.param("{caller: {in: blocked}}", {}, False, id="caller-in-list-miss"),
    pytest.param("{caller: {in: [blocked, partners]}}", {"caller": FR_MOBILE}, True, id="caller-in-lists"),
    pytest.param("{caller: {country: US}}", {}, True, id="caller-country"),
    pytest.param("{caller: {country: [MX, ES]}}", {}, False, id="caller-country-miss"),
    pytest.param("{caller: {country: [MX, ES]}}", {"caller": MX}, True, id="caller-country-list"),
    pytest.param("{caller: {country: US}}", {"caller": None}, False, id="caller-country-anonymous"),
    pytest.param("{caller: {type: mobile}}", {"caller": FR_MOBILE}, True, id="caller-type-mobile"),
    pytest.param("{caller: {type: [fixed_line]}}", {"caller": GB}, True, id="caller-type-fixed"),
    pytest.param("{caller: {type: mobile}}", {"caller": GB}, False, id="caller-type-miss"),
    pytest.param("{caller: {anonymous: true}}", {"caller": None}, True, id="caller-anonymous"),
    pytest.param("{caller: {anonymous: true}}", {}, False, id="caller-anonymous-miss"),
    pytest.param("{caller: {anonymous: false}}", {}, True, id="caller-not-anonymous"),
    pytest.param("{caller: {anonymous: false}}", {"caller": None}, False, id="caller-not-anonymous-miss"),
    pytest.param(
        '{caller: {prefix: "+1", country: US, type: fixed_line_or_mobile, anonymous: false}}',
        {},
        True,
        id="caller-map-keys-anded",
    ),
    pytest.param('{caller: {prefix: "+1", country: CA}}', {}, False, id="caller-map-one-key-fails"),
    # dialled: the same forms
    pytest.param('{dialled: "+16505550117"}', {}, True, id="dialled-exact"),
    pytest.param('{dialled: "(650) 555-0117"}', {}, True, id="dialled-national-format"),
    pytest.param('{dialled: "+1650*"}', {}, True, id="dialled-prefix"),
    pytest.param('{dialled: ["+16505550199", "+1212*"]}', {}, False, id="dialled-list-miss"),
    pytest.param('{dialled: {prefix: "+1650", country: US}}', {}, True, id="dialled-map"),
    pytest.param('{dialled: "+16505550117"}', {"dialled": None}, False, id="dialled-missing"),
    pytest.param("{dialled: {anonymous: true}}", {"dialled": None}, True, id="dialled-anonymous"),
    # phone_number_id
    pytest.param("{phone_number_id: pn-main}", {}, True, id="phone-number-id"),
    pytest.param("{phone_number_id: [pn-a, pn-main]}", {}, True, id="phone-number-id-list"),
    pytest.param("{phone_number_id: pn-other}", {}, False, id="phone-number-id-miss"),
    pytest.param("{phone_number_id: pn-main}", {"phone_number_id": None}, False, id="phone-number-id-none"),
    # schedules
    pytest.param("{during: office}", {}, True, id="during-open"),
    pytest.param("{outside: office}", {}, False, id="outside-open"),
    pytest.param("{during: office}", {"at": SAT}, False, id="during-closed"),
    pytest.param("{outside: office}", {"at": SAT}, True, id="outside-closed"),
    pytest.param(
        "{during: office}", {"at": datetime(2026, 7, 3, 10, tzinfo=NY)}, False, id="during-observed-holiday"
    ),
    pytest.param(
        "{during: night}", {"at": datetime(2026, 3, 7, 5, 59, tzinfo=UTC)}, True, id="during-overnight"
    ),
    pytest.param(
        "{during: night}", {"at": datetime(2026, 3, 7, 6, 0, tzinfo=UTC)}, False, id="overnight-end-excluded"
    ),
    # tags
    pytest.param("{tags: [vip, gold]}", {"tags": ("gold",)}, True, id="tags-list-is-any"),
    pytest.param("{tags: [vip, gold]}", {"tags": ("silver",)}, False, id="tags-list-miss"),
    pytest.param("{tags: {any: [vip, gold]}}", {"tags": ("vip", "x")}, True, id="tags-any"),
    pytest.param("{tags: {all: [vip, gold]}}", {"tags": ("vip", "gold", "x")}, True, id="tags-all"),
    pytest.param("{tags: {all: [vip, gold]}}", {"tags": ("vip",)}, False, id="tags-all-miss"),
    pytest.param("{tags: {none: [spam]}}", {"tags": ("vip",)}, True, id="tags-none"),
    pytest.param("{tags: {none: [spam]}}", {"tags": ("spam",)}, False, id="tags-none-miss"),
    pytest.param("{tags: {none: [spam]}}", {"crm_status": "not_found"}, True, id="tags-none-without-record"),
    pytest.param(
        "{tags: {any: [vip], all: [gold], none: [spam]}}",
        {"tags": ("vip", "gold")},
        True,
        id="tags-any-all-none",
    ),
    pytest.param(
        "{tags: {any: [vip], all: [gold], none: [spam]}}",
        {"tags": ("vip", "gold", "spam")},
        False,
        id="tags-any-all-none-miss",
    ),
    # CRM fields compare as text
    pytest.param("{crm: {tier: gold}}", {"crm": {"tier": "gold"}}, True, id="crm-field"),
    pytest.param("{crm: {tier: [gold, silver]}}", {"crm": {"tier": "silver"}}, True, id="crm-field-list"),
    pytest.param("{crm: {tier: gold}}", {"crm": {"tier": "bronze"}}, False, id="crm-field-miss"),
    pytest.param("{crm: {tier: gold}}", {}, False, id="crm-field-absent"),
    pytest.param("{crm: {vip: true}}", {"crm": {"vip": "true"}}, True, id="crm-yaml-true-is-text-true"),
    pytest.param("{crm: {visits: 3}}", {"crm": {"visits": "3"}}, True, id="crm-yaml-int-is-text"),
    pytest.param(
        "{crm: {tier: gold, name: Dana}}", {"crm": {"tier": "gold", "name": "Sam"}}, False, id="crm-anded"
    ),
    pytest.param("{crm_status: ok}", {}, True, id="crm-status"),
    pytest.param("{crm_status: [timeout, error]}", {"crm_status": "timeout"}, True, id="crm-status-list"),
    pytest.param("{crm_status: [timeout, error]}", {}, False, id="crm-status-miss"),
    # variables (SIP X- headers)
    pytest.param("{variables: {extension: '204'}}", {"variables": {"extension": "204"}}, True, id="var"),
    pytest.param("{variables: {extension: 204}}", {"variables": {"extension": "204"}}, True, id="var-int"),
    pytest.param("{variables: {sip: true}}", {"variables": {"sip": "true"}}, True, id="var-bool"),
    pytest.param("{variables: {line: [a, b]}}", {"variables": {"line": "b"}}, True, id="var-list"),
    pytest.param("{variables: {line: a}}", {}, False, id="var-missing"),
    # combinators
    pytest.param('{any: [{caller: "+44*"}, {dialled: "+16505550117"}]}', {}, True, id="any"),
    pytest.param('{any: [{caller: "+44*"}, {dialled: "+1212*"}]}', {}, False, id="any-miss"),
    pytest.param('{all: [{caller: "+1415*"}, {dialled: "+1650*"}]}', {}, True, id="all"),
    pytest.param('{all: [{caller: "+1415*"}, {dialled: "+1212*"}]}', {}, False, id="all-miss"),
    pytest.param('{not: {caller: "+44*"}}', {}, True, id="not"),
    pytest.param('{not: {caller: "+1415*"}}', {}, False, id="not-miss"),
    pytest.param(
        '{not: {any: [{caller: "+44*"}, {all: [{during: office}, {tags: [spam]}]}]}}',
        {},
        True,
        id="nested",
    ),
    pytest.param(
        '{caller: "+1415*", any: [{during: office}, {tags: [vip]}], not: {crm_status: error}}',
        {},
        True,
        id="keys-and-combinators-anded",
    ),
    pytest.param(
        '{caller: "+1415*", dialled: "+16505550117", during: office, tags: [vip]}',
        {},
        False,
        id="many-keys-one-fails",
    ),
    pytest.param("{}", {"caller": None, "dialled": None}, True, id="empty-when-always"),
]


@pytest.mark.parametrize(("when", "given", "expected"), CONDITIONS)
def test_condition(when: str, given: dict[str, Any], expected: bool) -> None:
    policy = load(policy_text([f"{{id: r, when: {when}, then: {{assistantId: a}}}}"]))
    assert decide(policy, facts(**given)) == ("r" if expected else None, False)


def test_route_without_when_always_matches() -> None:
    policy = load(policy_text(["{id: r, then: {assistantId: a}}"]))
    assert decide(policy, facts(caller=None, dialled=None, phone_number_id=None)) == ("r", False)


# -- order, default, transfers -------------------------------------------------------------

ORDERED = load(
    policy_text(
        [
            '{id: blocked, when: {caller: {in: blocked}}, then: {error: "Sorry."}}',
            '{id: main-after-hours, when: {dialled: "+16505550117", outside: office},'
            " then: {assistantId: b}}",
            '{id: uk, when: {caller: "+44*"}, then: {assistantId: c}}',
            '{id: main, when: {dialled: "+16505550117"}, then: {assistantId: d}}',
            '{id: bay-area, when: {caller: "+1415*"}, then: {assistantId: e}}',
        ],
        transfers=[
            '{id: t-uk, when: {caller: "+44*"},'
            ' then: {destination: {type: number, number: "+442079460000"}}}',
            '{id: t-office, when: {during: office}, then: {error: "Nobody is free."}}',
        ],
    )
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({"caller": "+15550000001"}, "blocked", id="first-route-wins"),
        pytest.param({"at": SAT}, "main-after-hours", id="earlier-more-specific-route"),
        pytest.param({}, "main", id="later-route-when-earlier-fail"),
        pytest.param({"caller": GB}, "uk", id="caller-before-dialled-by-order"),
        pytest.param({"dialled": "+16505550199"}, "bay-area", id="last-route"),
        pytest.param({"dialled": "+16505550199", "caller": MX}, None, id="default"),
        pytest.param({"dialled": None, "caller": None}, None, id="default-anonymous"),
    ],
)
def test_first_match_in_order(given: dict[str, Any], expected: str | None) -> None:
    assert decide(ORDERED, facts(**given)) == (expected, False)


def test_default_target_when_nothing_matches() -> None:
    d = evaluate(ORDERED, facts(caller=MX, dialled="+12125550100"))
    assert d.route is None
    assert d.target is ORDERED.default
    assert d.target.body == {"assistantId": "default-assistant"}


def test_decision_carries_route_and_target() -> None:
    d = evaluate(ORDERED, facts(caller="+15550000001"))
    assert d.route is ORDERED.routes[0]
    assert d.target is ORDERED.routes[0].then
    assert d.target.kind == "error"


@pytest.mark.parametrize(
    ("given", "expected", "kind"),
    [
        pytest.param({"caller": GB}, "t-uk", "destination", id="first-transfer"),
        pytest.param({}, "t-office", "error", id="second-transfer"),
        pytest.param({"at": SAT}, None, None, id="no-transfer-matches"),
    ],
)
def test_transfers(given: dict[str, Any], expected: str | None, kind: str | None) -> None:
    d = evaluate_transfer(ORDERED, facts(**given))
    assert route_id(d) == expected
    assert (d.target.kind if d.target else None) == kind
    traced = explain(ORDERED, facts(**given), transfer=True)
    assert route_id(traced) == expected
    assert [s.route for s in traced.trace] == ["t-uk", "t-office"][: 1 if expected == "t-uk" else 2]


def test_policy_without_transfers_answers_none() -> None:
    policy = load(policy_text(['{id: r, when: {caller: "+44*"}, then: {assistantId: a}}']))
    assert evaluate_transfer(policy, facts()) == Decision(None, None)


# -- the CRM pause ---------------------------------------------------------------------------

CRM_POLICY = load(
    policy_text(
        [
            '{id: main, when: {dialled: "+16505550117"}, then: {assistantId: a}}',
            '{id: uk-vip, when: {tags: [vip], caller: "+44*"}, then: {assistantId: b}}',
            "{id: vip, when: {tags: [vip]}, then: {assistantId: c}}",
            "{id: gold, when: {crm: {tier: gold}}, then: {assistantId: d}}",
            '{id: bay-area, when: {caller: "+1415*"}, then: {assistantId: e}}',
        ]
    )
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({"crm_status": None}, ("main", False), id="route-before-crm-needs-no-lookup"),
        pytest.param(
            {"crm_status": None, "dialled": "+12125550100", "caller": GB}, (None, True), id="reaches-tags"
        ),
        pytest.param(
            {"crm_status": None, "dialled": "+12125550100"},
            (None, True),
            id="call-facts-fail-first-but-vip-route-still-needs-crm",
        ),
        pytest.param(
            {"crm_status": "ok", "dialled": "+12125550100", "tags": ("vip",)},
            ("vip", False),
            id="after-lookup",
        ),
        pytest.param(
            {"crm_status": "ok", "dialled": "+12125550100", "crm": {"tier": "gold"}},
            ("gold", False),
            id="after-lookup-field",
        ),
        pytest.param(
            {"crm_status": "not_found", "dialled": "+12125550100"}, ("bay-area", False), id="not-found"
        ),
    ],
)
def test_crm_pending_stops_at_the_first_route_reading_crm(
    given: dict[str, Any], expected: tuple[str | None, bool]
) -> None:
    assert decide(CRM_POLICY, facts(**given)) == expected


def test_pending_decision_has_no_route_nor_target() -> None:
    d = evaluate(CRM_POLICY, facts(crm_status=None, dialled=None))
    assert d == Decision(None, None, needs_crm=True)
    traced = explain(CRM_POLICY, facts(crm_status=None, dialled=None))
    assert [(s.route, s.matched) for s in traced.trace] == [(r, False) for r in ("main", "uk-vip", "vip")]
    assert traced.trace[-1].reason == "needs the CRM lookup first"


@pytest.mark.parametrize(
    "when",
    [
        pytest.param('{tags: [vip], dialled: "+16505550117"}', id="crm-key-written-first"),
        pytest.param('{dialled: "+16505550117", tags: [vip]}', id="call-key-written-first"),
        pytest.param("{crm: {tier: gold}, caller: {country: GB}, during: office}", id="crm-field-first"),
    ],
)
def test_call_facts_are_tested_before_crm_facts(when: str) -> None:
    """A route whose call facts already fail never asks for the CRM, whatever the key order."""
    policy = load(
        policy_text([f"{{id: r, when: {when}, then: {{assistantId: a}}}}", "{id: s, then: {assistantId: b}}"])
    )
    assert decide(policy, facts(crm_status=None, dialled="+12125550100", caller=MX)) == ("s", False)


def test_pending_facts_reach_a_tag_route_behind_one_whose_call_facts_fail() -> None:
    policy = load(
        policy_text(
            [
                "{id: sip-vip, when: {tags: [vip], variables: {line: sip}}, then: {assistantId: a}}",
                "{id: gold, when: {tags: {all: [gold, a]}}, then: {assistantId: b}}",
                "{id: rest, then: {assistantId: c}}",
            ]
        )
    )
    assert decide(policy, facts(crm_status=None)) == (None, True)
    assert decide(policy, facts(crm_status="ok", tags=("a", "gold"))) == ("gold", False)
    assert decide(policy, facts(crm_status="ok", tags=("vip",))) == ("rest", False)


# -- the key property: index == scan == explain ----------------------------------------------

CALLERS = ["+14155550142", "+14155559876", GB, "+442071234567", FR_MOBILE, MX, "+15550000001"]
DIALLED = ["+16505550117", "+16505550199", "+12125550100", "+18005550199"]
ATOMS: dict[str, list[str]] = {
    "caller": [
        '"+14155550142"',
        '"(415) 555-9876"',
        '"+1415*"',
        '"+44*"',
        '"+4420*"',
        '["+442079460123", "+33*"]',
        '{prefix: "+1"}',
        "{country: GB}",
        "{country: [MX, FR]}",
        "{country: US}",
        "{anonymous: true}",
        "{anonymous: false}",
        "{type: mobile}",
        '{regex: "\\\\+1415555\\\\d+"}',
        "{in: blocked}",
        '{prefix: "+1", country: US}',
    ],
    "dialled": ['"+16505550117"', '"+16505550199"', '"+1650*"', '"+1212*"', '["+18005550199", "+1212*"]'],
    "phone_number_id": ["pn-1", "[pn-2, pn-3]"],
    "tags": [
        "[vip]",
        "[gold, vip]",
        "{all: [vip, gold]}",
        "{any: [a, b]}",
        "{none: [spam]}",
        "{all: [a, spam]}",
    ],
    "during": ["office", "night"],
    "outside": ["office", "night"],
    "crm": ["{tier: gold}", "{tier: [gold, silver]}"],
    "crm_status": ["ok", "[timeout, error]", "not_found"],
    "variables": ["{line: sip}", "{line: [pstn, sip]}"],
    "any": ['[{caller: "+44*"}, {dialled: "+1650*"}]', "[{tags: [vip]}, {during: office}]"],
    "not": ['{caller: "+1415*"}', "{tags: [spam]}"],
    "all": ["[{caller: {country: GB}}, {outside: office}]"],
}


def generated_policy(seed: int, size: int) -> Policy:
    """Random routes of one to three condition keys drawn from small pools, so that calls hit
    several routes at once. Routes that an earlier one would shadow are skipped (lint warns)."""
    rng = random.Random(seed)
    keys = list(ATOMS)
    chosen: list[dict[str, str]] = []
    for _ in range(size * 20):  # bounded: late draws are mostly shadowed
        if len(chosen) == size:
            break
        picked = rng.sample(keys, rng.choice((1, 2, 2, 3, 3)))
        if "during" in picked and "outside" in picked:
            continue
        if not {"caller", "dialled", "phone_number_id"} & set(picked) and rng.random() < 0.8:
            picked.append(rng.choice(("caller", "dialled", "phone_number_id")))  # mostly narrow routes
        when = {k: rng.choice(ATOMS[k]) for k in picked}
        if any(prior.items() <= when.items() for prior in chosen):
            continue
        chosen.append(when)
    conditions = [", ".join(f"{k}: {v}" for k, v in w.items()) for w in chosen]
    routes = [f"{{id: r{i}, when: {{{c}}}, then: {{assistantId: a{i}}}}}" for i, c in enumerate(conditions)]
    if seed % 3 == 0:
        routes.append("{id: last, then: {assistantId: z}}")
    text = policy_text(routes)
    for name in set(SCHEDULES) | set(LISTS):  # name every schedule and list, so none is unused
        if name not in text:
            extra = f"{{outside: {name}}}" if name in SCHEDULES else f"{{caller: {{in: {name}}}}}"
            routes.insert(0, f"{{id: uses-{name}, when: {extra}, then: {{assistantId: u}}}}")
            text = policy_text(routes)
    # Random conditions may cover later ones semantically (a prefix over a number): dead
    # routes are still routes for comparing the index with a linear walk.
    return load(text, allow=("unreachable",))


GENERATED = [generated_policy(seed, size) for seed, size in ((1, 12), (2, 25), (3, 40), (4, 60), (5, 80))]
ZONES = [UTC, NY, ZoneInfo("Asia/Kolkata"), timezone(timedelta(hours=-3))]

fact_strategy = st.builds(
    facts,
    caller=st.sampled_from([*CALLERS, None, "+14155551111", "+447700900123", "+19005550000"]),
    dialled=st.sampled_from([*DIALLED, None, "+16505550000"]),
    at=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.sampled_from(ZONES)
    ),
    phone_number_id=st.sampled_from(["pn-1", "pn-2", "pn-3", "pn-9", None]),
    variables=st.sampled_from([{}, {"line": "sip"}, {"line": "pstn"}]),
    crm_status=st.sampled_from([None, None, "ok", "ok", "not_found", "timeout", "error", "disabled"]),
    tags=st.lists(st.sampled_from(["vip", "gold", "a", "b", "spam"]), max_size=3).map(tuple),
    crm=st.sampled_from([{}, {"tier": "gold"}, {"tier": "silver"}]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(GENERATED), f=fact_strategy)
def test_index_decides_as_the_scan_and_explain(policy: Policy, f: Facts) -> None:
    fast = evaluate(policy, f)
    slow = evaluate_linear(policy, f)
    assert (route_id(fast), fast.needs_crm) == (route_id(slow), slow.needs_crm)
    assert fast.target is slow.target
    traced = explain(policy, f)
    assert (route_id(traced), traced.needs_crm, traced.target) == (
        route_id(fast),
        fast.needs_crm,
        fast.target,
    )
    ids = [r.id for r in policy.routes]
    tried = [s.route for s in traced.trace]
    assert tried == ids[: len(tried)]
    assert all(not s.matched for s in traced.trace[:-1])
    if fast.route is not None:
        assert traced.trace[-1].matched and tried[-1] == fast.route.id
    elif not fast.needs_crm:
        assert tried == ids


def test_generated_policies_exercise_every_index_key() -> None:
    """The property above is only as good as the index entries the policies fill."""
    for name in (
        "caller_exact",
        "caller_prefix",
        "caller_country",
        "dialled_exact",
        "dialled_prefix",
        "phone_number_id",
        "anonymous",
        "tags",
        "tag_routes",
        "always",
    ):
        assert any(getattr(p.index, name) for p in GENERATED), name
    assert any(p.index.schedules.entries for p in GENERATED)
    decisions = [
        evaluate(p, facts(caller=c, dialled=d, crm_status=s, tags=("vip",) if s else ()))
        for p in GENERATED
        for c in (*CALLERS, None)
        for d in DIALLED
        for s in (None, "ok")
    ]
    assert sum(d.route is not None for d in decisions) > len(decisions) // 4
    assert any(d.needs_crm for d in decisions)
    assert any(d.route is None and not d.needs_crm for d in decisions)


def test_index_on_the_bundled_policy() -> None:
    policy = load_policy(Path(__file__).parent.parent / "policies")
    rng = random.Random(7)
    for _ in range(300):
        f = facts(
            caller=rng.choice([*CALLERS, None, "+19005550000", "+16505550111"]),
            dialled=rng.choice([*DIALLED, "+16505550117", "+16505550199", None]),
            at=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(60 * 24 * 60)),
            crm_status=rng.choice([None, "ok", "not_found", "timeout"]),
            tags=rng.choice([(), ("vip",)]),
        )
        decide(policy, f)


@pytest.mark.parametrize(
    ("routes", "first"),
    [
        ("  - {id: a, when: {tags: [vip]}, then: desk}\n", True),
        ("  - {id: a, when: {crm: {tier: gold}}, then: desk}\n", True),
        ("  - {id: a, when: {crm: {tier: gold}, dialled: '+16505550117'}, then: desk}\n", False),  # indexed
        ("  - {id: a, when: {crm_status: [ok]}, then: desk}\n", True),
        ("  - {id: a, when: {dialled: '+16505550117', tags: [vip]}, then: desk}\n", False),
        (
            "  - {id: a, when: {caller: '+1900*'}, then: desk}\n"
            "  - {id: b, when: {tags: [vip]}, then: desk}\n",
            False,
        ),
        ("  - {id: a, when: {variables: {lang: es}}, then: desk}\n", False),
    ],
)
def test_asks_crm_first_only_when_every_evaluation_stops_at_route_0(routes: str, first: bool) -> None:
    policy = load(
        f"version: 1\n{CRM}targets:\n  desk: {{assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}}\n"
        f"routes:\n{routes}default: desk\n",
        allow=("unreachable-route", "shadowed-route"),
    )
    assert asks_crm_first(policy.index) is first
    if first:
        for caller in ("+14155550101", "+19005550100", None):
            facts = Facts(caller=caller, dialled="+16505550117", at=datetime(2026, 1, 5, 15, tzinfo=UTC))
            assert evaluate(policy, facts).needs_crm


# Callers of several calling codes, some of them sharing a code with a routed country.
FRESH_CALLERS = [
    GB,
    "+447400123456",  # GB mobile
    "+441534123456",  # JE, code 44
    FR_MOBILE,
    MX,
    "+14155550142",
    "+16135550142",  # CA
    "+18765550142",  # JM, a NANP region
    "+390669812345",  # VA by leading digits, code 39
    "+420601123456",
    "+35387123456",
    "+80012345678",  # non-geographic
    "+999123456",  # no such code
    "+4420",  # too short: not placed
]


@pytest.mark.parametrize("caller", FRESH_CALLERS)
def test_country_routes_decide_a_just_normalised_caller_as_the_scan(caller: str) -> None:
    """evaluate skips the country lookup of a caller normalise has just split (phone.SPLITS)
    when its calling code has no routed region: the same decisions as the scan."""
    for countries in ("GB", "[FR, MX]", "US", "[CA, JM]", "VA", "[IT, JE]", "[DE, CZ]"):
        policy = load(
            policy_text(
                [
                    f"{{id: c, when: {{caller: {{country: {countries}}}}}, then: {{assistantId: a}}}}",
                    '{id: p, when: {caller: "+1*"}, then: {assistantId: b}}',
                ]
            )
        )
        phone.clear_caches()
        e164 = phone.normalise(caller)
        assert (e164 in phone.SPLITS) is (e164 == caller and caller != "+4420")
        f = facts(caller=caller, crm_status="ok")
        fast, slow = evaluate(policy, f), evaluate_linear(policy, f)
        assert (route_id(fast), fast.target) == (route_id(slow), slow.target), countries
