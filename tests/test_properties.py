"""Properties of the whole pipeline on generated input (hypothesis).

1. A policy generated in the schema's shape that lints without errors always compiles, and
   evaluating it on random facts never raises and always yields a target whose reply passes
   Vapi's schema; the indexed walk, the linear scan and `explain` agree.
2. Random text, random bytes and mutated real policies never crash `vapi-router lint`: it
   returns 0 or 1, prints only positioned problem lines, and returns 1 exactly when one of
   them is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import io
import json
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from serverutil import reply_problems

from router import cli
from router.policy.loader import lint_texts
from router.runtime.evaluator import asks_crm_first, evaluate, evaluate_linear, explain
from router.runtime.facttypes import CRM_STATUSES, Facts
from router.runtime.model import Policy
from router.runtime.replies import TemplateError, render
from router.server.live import build_live
from router.server.service import decide

ROOT = Path(__file__).resolve().parents[1]
PROBLEM_LINE = r"^.+:\d+:\d+: (error|warning): .+ \[[a-z0-9-]+\]$"
SUMMARY_LINE = r"^\d+ errors?, \d+ warnings?$"
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ policy strategy

NUMBERS = [
    "+15551234567",
    "+14155550142",
    "+16505550117",
    "+442071838750",
    "+447700900123",
    "+33142685300",
    "+525512345678",
    "+61291234567",
    "+819012345678",
    "+18005550199",
]
PREFIXES = ["+1", "+1555", "+44", "+447", "+33", "+52", "+8190"]
COUNTRIES = ["US", "GB", "FR", "MX", "AU", "JP", "CA"]
TYPES = ["mobile", "fixed_line", "toll_free", "voip", "fixed_line_or_mobile"]
REGEXES = [r"\+1555\d{7}", r"\+44\d+", r"\+(1|44)\d{6,12}", r"\+\d{8,15}", r"\+33[1-9]\d{8}", r"(\d+)+"]
ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Sydney", "Mars/Olympus"]
TAGS = ["vip", "partner", "churn-risk", "suspended", "new"]
FIELDS = ["tier", "name"]
SCHEDULES = ["office", "night", "weekend"]
LISTS = ["blocked", "vips"]
TARGETS = ["desk", "on-call", "sorry", "team", "flow", "ab"]
UUIDS = [
    "2ccabf54-ccd8-4dff-ae93-e830159c8004",
    "7d1f0c52-3b9e-4a8e-9f0d-6c2b1e4a5d77",
    "0b6a9e1c-5d4f-4c2a-8e7b-3f9d2a1c6e50",
]
TEMPLATE_TEXT = ["hello", "${caller}", "${dialled}", "${route}", "${call.id}", "${crm.tier}", "{{name}}"]


def small_list(elements: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[list[Any]]:
    return st.lists(elements, min_size=1, max_size=max_size)


def one_or_many(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(elements, small_list(elements))


number = st.sampled_from(NUMBERS)
number_or_prefix = st.one_of(number, st.sampled_from(PREFIXES).map(lambda p: p + "*"))
window = st.tuples(st.integers(0, 23), st.integers(0, 23)).map(lambda t: f"{t[0]:02d}:00-{t[1]:02d}:30")
# each plan is a partition of the week, so no day is given twice
WEEK_PLANS = [("mon-fri", "sat", "sun"), ("mon", "tue-thu", "fri-sun"), ("mon-sun",), ("sat-sun", "wed")]
date = st.dates(min_value=datetime(2025, 1, 1).date(), max_value=datetime(2027, 12, 31).date())


@st.composite
def schedule(draw: st.DrawFn) -> dict[str, Any]:
    days = draw(st.sampled_from(WEEK_PLANS))
    chosen = draw(st.lists(st.sampled_from(days), unique=True, max_size=len(days)))
    out: dict[str, Any] = {"weekly": {d: draw(small_list(window, 2)) for d in chosen}}
    if draw(st.booleans()):
        out["timezone"] = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):
        out["holidays"] = {"country": draw(st.sampled_from(["US", "GB", "FR"]))}
    if draw(st.booleans()):
        out["closed"] = [d.isoformat() for d in draw(small_list(date))]
    if draw(st.booleans()):
        out["special"] = {draw(date).isoformat(): draw(small_list(window, 2))}
    return out


def number_match(lists: tuple[str, ...]) -> st.SearchStrategy[Any]:
    optional: dict[str, st.SearchStrategy[Any]] = {
        "prefix": one_or_many(st.sampled_from(PREFIXES)),
        "regex": st.sampled_from(REGEXES),
        "country": one_or_many(st.sampled_from(COUNTRIES)),
        "type": one_or_many(st.sampled_from(TYPES)),
        "anonymous": st.booleans(),
    }
    if lists:
        optional["in"] = one_or_many(st.sampled_from(lists))
    mapping = st.fixed_dictionaries({}, optional=optional)
    return st.one_of(number_or_prefix, small_list(number_or_prefix), mapping)


@functools.cache  # strategies are built once per set of defined names: building them is slow
def condition(schedules: tuple[str, ...], lists: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    scalar = st.one_of(st.sampled_from(["gold", "platinum", "1", "es"]), st.integers(0, 3), st.booleans())
    when_schedule = (
        {"during": st.sampled_from(schedules), "outside": st.sampled_from(schedules)} if schedules else {}
    )
    leaf = st.fixed_dictionaries(
        {},
        optional={
            "caller": number_match(lists),
            "dialled": number_match(lists),
            "phone_number_id": one_or_many(st.sampled_from(["pn-1", "pn-2"])),
            **when_schedule,
            "tags": st.one_of(
                small_list(st.sampled_from(TAGS)),
                st.fixed_dictionaries(
                    {},
                    optional={k: small_list(st.sampled_from(TAGS)) for k in ("any", "all", "none")},
                ),
            ),
            "crm": st.dictionaries(st.sampled_from(FIELDS), one_or_many(scalar), min_size=1, max_size=2),
            "crm_status": one_or_many(st.sampled_from(CRM_STATUSES)),
            "variables": st.dictionaries(
                st.sampled_from(["account_tier", "lang"]), one_or_many(scalar), min_size=1, max_size=2
            ),
        },
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(lambda parts: {"any": parts}, small_list(inner, 2)),
            st.builds(lambda parts: {"all": parts}, small_list(inner, 2)),
            st.builds(lambda part: {"not": part}, inner),
            st.builds(lambda a, b: {**a, **b}, leaf, inner),
        ),
        max_leaves=4,
    )


def text_value(crm: bool) -> st.SearchStrategy[str]:
    words = TEMPLATE_TEXT if crm else [w for w in TEMPLATE_TEXT if "crm." not in w]
    return st.lists(st.sampled_from(words), min_size=1, max_size=3).map(" ".join)


def inline_target(names: tuple[str, ...], crm: bool) -> st.SearchStrategy[Any]:
    variables = st.dictionaries(st.sampled_from(["caller", "tier", "route"]), text_value(crm), max_size=2)
    simple = st.one_of(
        st.builds(
            lambda i, v: (
                {"assistantId": i, "assistantOverrides": {"variableValues": v}} if v else {"assistantId": i}
            ),
            st.sampled_from(UUIDS),
            variables,
        ),
        st.builds(lambda i: {"squadId": i}, st.sampled_from(UUIDS)),
        st.builds(lambda i: {"squadId": i, "squadOverrides": {}}, st.sampled_from(UUIDS)),
        st.builds(
            lambda n, m: {"destination": {"type": "number", "number": n, "message": m}},
            number,
            text_value(crm),
        ),
        st.just({"destination": {"type": "sip", "sipUri": "sip:desk@example.com"}}),
        # words first: an error made only of ${caller} renders empty for an anonymous caller
        # (test_template_that_renders_empty_gets_the_fallback below)
        st.builds(lambda t: {"error": "Sorry " + t}, text_value(crm)),
    )
    ref = st.sampled_from(names) if names else simple
    variant = st.fixed_dictionaries({"weight": st.integers(0, 100), "then": st.one_of(simple, ref)})
    return st.one_of(simple, st.builds(lambda vs: {"split": vs}, small_list(variant)))


@functools.cache
def target(names: tuple[str, ...], crm: bool) -> st.SearchStrategy[Any]:
    inline = inline_target(names, crm)
    return st.one_of(inline, st.sampled_from(names)) if names else inline


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    """A policy dict in the schema's shape; names are mostly defined, so many lint clean."""
    schedule_names = tuple(draw(st.lists(st.sampled_from(SCHEDULES), unique=True, max_size=2)))
    list_names = tuple(draw(st.lists(st.sampled_from(LISTS), unique=True, max_size=2)))
    target_names = tuple(draw(st.lists(st.sampled_from(TARGETS), unique=True, max_size=3)))
    crm = draw(st.booleans())
    policy: dict[str, Any] = {"version": 1}
    settings_: dict[str, Any] = {}
    if draw(st.booleans()):
        settings_["timezone"] = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):
        settings_["region"] = draw(st.sampled_from(["US", "GB"]))
    if draw(st.booleans()):
        settings_["deadline_ms"] = draw(st.integers(100, 7000))
    if draw(st.booleans()):
        settings_["fallback"] = draw(target(target_names, crm))
    if settings_:
        policy["settings"] = settings_
    if crm:
        policy["crm"] = {
            "http": {
                "url": "http://127.0.0.1:9/contacts?phone=${caller}",
                "tags": "contact.tags",
                "fields": {f: f"contact.{f}" for f in FIELDS},
            },
            "timeout_ms": draw(st.integers(1, 90)),
        }
    if schedule_names:
        policy["schedules"] = {n: draw(schedule()) for n in schedule_names}
    if list_names:
        policy["lists"] = {n: draw(small_list(number_or_prefix)) for n in list_names}
    if target_names:
        # a target may name one defined before it; never itself (lint reports cycles anyway)
        policy["targets"] = {n: draw(target(target_names[:i], crm)) for i, n in enumerate(target_names)}
    routes = []
    for i in range(draw(st.integers(0, 5))):
        route: dict[str, Any] = {"id": f"r{i}", "then": draw(target(target_names, crm))}
        if draw(st.integers(0, 4)):
            route["when"] = draw(condition(schedule_names, list_names))
        routes.append(route)
    if routes:
        policy["routes"] = routes
    policy["default"] = draw(target(target_names, crm))  # without one, lint says missing-default
    return policy


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    def some_number() -> str | None:
        return draw(st.one_of(st.none(), number, st.sampled_from(PREFIXES).map(lambda p: p + "9876543")))

    status = draw(st.one_of(st.none(), st.sampled_from(CRM_STATUSES)))
    return Facts(
        caller=some_number(),
        dialled=some_number(),
        at=draw(st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))),
        phone_number_id=draw(st.sampled_from([None, "pn-1", "pn-2"])),
        call_id=draw(st.sampled_from([None, "call-1"])),
        variables=draw(
            st.dictionaries(st.sampled_from(["account_tier", "lang"]), st.sampled_from(["gold", "es"]))
        ),
        crm_status=status,  # type: ignore[arg-type]
        tags=frozenset(draw(st.lists(st.sampled_from(TAGS), max_size=3))) if status == "ok" else frozenset(),
        crm=draw(st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(["gold", "platinum", "Ann"])))
        if status == "ok"
        else {},
    )


def compiled(data: dict[str, Any]) -> Policy | None:
    """lint_texts of the dumped policy: the Policy when it lints without errors."""
    text = yaml.safe_dump(data, sort_keys=False)
    loaded = lint_texts([("policy.yaml", text)])
    errors = loaded.errors
    event("lint clean" if not errors else "lint errors")
    if errors:
        assert loaded.policy is None
        return None
    assert loaded.policy is not None, "no errors, yet nothing compiled"
    return loaded.policy


def with_crm(f: Facts, tags: frozenset[str]) -> Facts:
    return Facts(
        caller=f.caller,
        dialled=f.dialled,
        at=f.at,
        phone_number_id=f.phone_number_id,
        call_id=f.call_id,
        variables=f.variables,
        crm_status="ok",
        tags=tags,
        crm={"tier": "gold"},
    )


@FAST
@given(policies(), st.lists(facts(), min_size=1, max_size=4))
def test_lint_clean_policies_compile_and_evaluate_on_random_facts(
    data: dict[str, Any], many: list[Facts]
) -> None:
    policy = compiled(data)
    assume(policy is not None)
    assert policy is not None
    for f in many:
        decision = evaluate(policy, f)
        linear = evaluate_linear(policy, f)
        traced = explain(policy, f)
        assert decision.needs_crm == linear.needs_crm == traced.needs_crm
        if f.crm_status is None and asks_crm_first(policy.index):  # the server skips this evaluation
            assert decision.needs_crm
        if decision.needs_crm:
            assert f.crm_status is None, "a CRM fact was asked for although the lookup happened"
            f = with_crm(f, frozenset({"vip"}))
            decision, linear, traced = evaluate(policy, f), evaluate_linear(policy, f), explain(policy, f)
            assert not decision.needs_crm
        assert decision.target is not None, "every assistant-request gets a target"
        assert (decision.route, decision.target) == (linear.route, linear.target)
        assert (decision.route, decision.target) == (traced.route, traced.target)
        route = decision.route.id if decision.route else "default"
        try:
            reply, _ = render(decision.target, f, route)
        except TemplateError:  # a ${crm.X} the record lacks: the service answers the fallback
            reply, _ = render(policy.fallback, f, "fallback", lenient=True)
        assert reply_problems("assistant-request", reply) == [], (reply, data)


@FAST
@given(
    policies(),
    facts(),
    st.sampled_from(["ok", "not_found", "timeout", "error"]),
    st.lists(st.sampled_from(TAGS), max_size=3),
    st.sampled_from([{}, {"tier": "gold"}, {"tier": "silver", "name": "Ann"}]),
)
def test_a_decision_that_reads_no_crm_fact_is_the_same_with_them(
    data: dict[str, Any], f: Facts, status: Any, tags: list[str], fields: dict[str, str]
) -> None:
    """What lets the server look a caller up before evaluating (server.live._looks_up_first):
    whatever the CRM says, a call that routed without asking for it routes the same."""
    policy = compiled(data)
    assume(policy is not None)
    assert policy is not None
    f = dataclasses.replace(f, crm_status=None, tags=frozenset(), crm={})
    before = evaluate(policy, f)
    assume(not before.needs_crm)
    looked_up = f.with_crm(status, frozenset(tags) if status == "ok" else frozenset(), fields)
    after = evaluate(policy, looked_up)
    assert (after.route, after.target) == (before.route, before.target)


@FAST
@given(policies())
def test_fast_and_positioned_parse_agree(data: dict[str, Any]) -> None:
    text = yaml.safe_dump(data, sort_keys=False)
    fast = lint_texts([("policy.yaml", text)], compile=False)
    slow = lint_texts([("policy.yaml", text)], fast=False, compile=False)
    assert [str(p) for p in fast.problems] == [str(p) for p in slow.problems]


# ------------------------------------------------------------------ lint never crashes


def sources() -> list[Path]:
    return [ROOT / "policies" / "main.yaml", *sorted(ROOT.glob("examples/*/*.yaml"))]


SOURCES = [p for p in sources() if not p.name.endswith(".test.yaml")]


@pytest.fixture(scope="module")
def lint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding every CRM file the sources name, so crm.file resolves."""
    directory = tmp_path_factory.mktemp("lint")
    for crm in [
        ROOT / "policies" / "crm.csv",
        *ROOT.glob("examples/*/crm.*"),
        *ROOT.glob("examples/*/contacts.*"),
    ]:
        shutil.copy(crm, directory / crm.name)
    return directory


def run_lint(directory: Path, content: bytes, name: str = "mutant.yaml") -> tuple[int, list[str]]:
    path = directory / name
    path.write_bytes(content)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(["lint", str(path)])
    return code, out.getvalue().splitlines()


def assert_lint_output(code: int, lines: list[str], *, in_test: bool = True) -> None:
    assert code in (0, 1), code
    if lines:
        *problems, summary = lines
        assert re.fullmatch(SUMMARY_LINE, summary), summary
    else:
        problems = []
    for line in problems:
        assert re.fullmatch(PROBLEM_LINE, line), line
    has_error = any(re.fullmatch(r"^.+:\d+:\d+: error: .*", line) for line in problems)
    assert code == (1 if has_error else 0), lines
    if in_test:
        event("lint exit 1" if code else "lint exit 0")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real policy with 1-4 random line or byte mutations."""
    source = draw(st.sampled_from(SOURCES))
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(
            st.sampled_from(
                ["delete", "duplicate", "swap", "indent", "dedent", "tab", "insert", "truncate", "bytes"]
            )
        )
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = " " * draw(st.integers(1, 5)) + lines[i]
        elif op == "dedent":
            lines[i] = lines[i].lstrip(" ")
        elif op == "tab":
            lines[i] = "\t" + lines[i]
        elif op == "insert":
            at = draw(st.integers(0, len(lines[i])))
            piece = draw(
                st.sampled_from([":", ": ", '"', "'", "- ", "{", "[", "]", "&a ", "*a", "<<: ", "#", "!!"])
            )
            lines[i] = lines[i][:at] + piece + lines[i][at:]
        elif op == "truncate":
            lines = lines[: i + 1]
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            raw = bytearray(lines[i].encode("utf-8", "surrogateescape"))
            if raw:
                raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
            lines[i] = raw.decode("utf-8", "surrogateescape")
    event(f"source {source.parent.name}/{source.name}")
    return "".join(lines).encode("utf-8", "surrogateescape")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=mutated())
def test_lint_of_mutated_policies_is_positioned(lint_dir: Path, content: bytes) -> None:
    assert_lint_output(*run_lint(lint_dir, content))


@settings(max_examples=150, deadline=None)
@given(
    content=st.one_of(
        st.text().map(str.encode),
        st.binary(max_size=200),
        st.text(alphabet=st.sampled_from(list("ab:- \t\n'\"{}[]&*!#|>%@`,?")), max_size=80).map(str.encode),
    )
)
def test_lint_of_random_text_is_positioned(lint_dir: Path, content: bytes) -> None:
    assert_lint_output(*run_lint(lint_dir, content, "random.yaml"))


def test_unmutated_sources_lint(lint_dir: Path) -> None:
    """The mutation base is sound: each source alone lints without crashing."""
    for source in SOURCES:
        assert_lint_output(*run_lint(lint_dir, source.read_bytes(), source.name), in_test=False)


# ------------------------------------------------------------------ found by the properties


@pytest.mark.parametrize(
    "then",
    [
        pytest.param('{error: "${caller}"}', id="error-only-caller"),
        pytest.param('{destination: {type: number, number: "${caller}"}}', id="destination-number-caller"),
    ],
)
def test_template_that_renders_empty_gets_the_fallback(then: str) -> None:
    """Lint-clean, yet for an anonymous caller ${caller} is "": Vapi refuses such a reply."""
    text = f"version: 1\nsettings: {{fallback: desk}}\ntargets: {{desk: {{assistantId: {UUIDS[0]}}}}}\n"
    loaded = lint_texts([("policy.yaml", text + f"routes: [{{id: r, then: {then}}}]\ndefault: desk\n")])
    assert loaded.policy is not None, loaded.problems
    message = {"type": "assistant-request", "call": {"id": "c1"}}  # no customer: anonymous
    outcome = asyncio.run(decide(build_live(loaded.policy, None, {}), message, started=time.perf_counter()))
    assert reply_problems("assistant-request", json.loads(outcome.body)) == []
