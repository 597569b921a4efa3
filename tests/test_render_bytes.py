"""router.runtime.replies.render_bytes: the spliced reply is byte for byte orjson.dumps(render(...)[0]),
and raises where render does."""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from router.policy.loader import lint_path, lint_texts, policy_files
from router.runtime.facttypes import Facts
from router.runtime.model import Policy, Source, Target, Template
from router.runtime.replies import TemplateError, render, render_bytes, splice

REPO = Path(__file__).resolve().parents[1]

POLICY = r"""version: 1
settings: {region: US}
crm:
  http:
    url: "https://crm.example.com/c?phone=${caller}"
    fields: {name: c.name, agent: c.agent, phone: c.phone, sip: c.sip, msg: c.msg}
targets:
  by-agent: {assistantId: "${crm.agent}", assistantOverrides: {variableValues: {who: "${crm.name}"}}}
  agent-prefixed: {assistantId: "agent-${crm.agent}"}
  two-refs: {assistantId: "${crm.agent}${caller}"}
  to-number:
    destination:
      type: number
      number: "${crm.phone}"
      message: "100% \"sure\" \\ <@splice0:0@> %s ${crm.name}"
  to-sip: {destination: {type: sip, sipUri: "${crm.sip}", sipHeaders: {X-Caller: "${caller}"}}}
  to-sip-literal: {destination: {type: sip, sipUri: "sip:${crm.name}@pbx.example.com"}}
  squad: {squadId: "${crm.agent}"}
  flow:
    squadId: "${crm.agent}"
    squadOverrides: {variableValues: {r: "${route}", c: "${call.id}", d: "${dialled}"}}
  err: {error: "Sorry ${crm.name}"}
  err-only: {error: "${crm.msg}"}
  odd:
    assistantId: a-1
    assistantOverrides:
      firstMessage: "{{customer.name}} costs ${ 5"
      variableValues:
        x: "%s %% ${caller} %"
        y: [1, 2.5, true, null, "${crm.name}", {z: "${caller}"}]
        ü: "${dialled}/${call.id}"
routes:
  - {id: r1, when: {dialled: "+16505550101"}, then: by-agent}
  - {id: r2, when: {dialled: "+16505550102"}, then: agent-prefixed}
  - {id: r3, when: {dialled: "+16505550103"}, then: two-refs}
  - {id: r4, when: {dialled: "+16505550104"}, then: to-number}
  - {id: r5, when: {dialled: "+16505550105"}, then: to-sip}
  - {id: r6, when: {dialled: "+16505550106"}, then: to-sip-literal}
  - {id: r7, when: {dialled: "+16505550107"}, then: squad}
  - {id: r8, when: {dialled: "+16505550108"}, then: flow}
  - {id: r9, when: {dialled: "+16505550109"}, then: err}
  - {id: r10, when: {dialled: "+16505550110"}, then: err-only}
  - {id: r11, when: {dialled: "+16505550111"}, then: odd}
default: {error: "no"}
"""


def _load_text() -> Policy:
    loaded = lint_texts([("t.yaml", POLICY)])
    assert [str(p) for p in loaded.errors] == []
    assert loaded.policy is not None
    return loaded.policy


P = _load_text()
AT = datetime(2026, 3, 4, 15, tzinfo=UTC)


def facts(
    caller: str | None = "+14155550142",
    dialled: str | None = "+16505550101",
    call_id: str | None = "call-1",
    crm: dict[str, str] | None = None,
) -> Facts:
    return Facts(caller, dialled, AT, call_id=call_id, crm_status="ok" if crm else "not_found", crm=crm or {})


def old(leaf: Target, f: Facts, route: str, lenient: bool) -> bytes | tuple[str, str]:
    """What the server answered before render_bytes: render + orjson.dumps, or the error."""
    try:
        return orjson.dumps(render(leaf, f, route, lenient=lenient)[0])
    except (TemplateError, TypeError) as exc:  # orjson.JSONEncodeError is a TypeError
        return type(exc).__name__, str(exc)


def new(leaf: Target, f: Facts, route: str, lenient: bool) -> bytes | tuple[str, str]:
    try:
        return render_bytes(leaf, f, route, lenient=lenient)
    except (TemplateError, TypeError) as exc:
        return type(exc).__name__, str(exc)


# -- table ---------------------------------------------------------------------------------

NASTY = 'Dana "D" \\ O\'Neil %s %% "," \n\t\x00\x1f\x7f é € 😀 \u2028 <@splice0:0@> ${crm.x}'
EMPTY = re.compile(r"TemplateError: the (\w+) rendered empty for this call")


@pytest.mark.parametrize(
    ("target", "crm", "caller", "lenient", "expected"),
    [
        pytest.param(
            "by-agent",
            {"agent": "a-7", "name": "Dana"},
            "+14155550142",
            False,
            b'{"assistantId":"a-7","assistantOverrides":{"variableValues":{"who":"Dana"}}}',
            id="plain",
        ),
        pytest.param(
            "by-agent",
            {"agent": "a-7", "name": NASTY},
            "+14155550142",
            False,
            b'{"assistantId":"a-7","assistantOverrides":{"variableValues":{"who":'
            + orjson.dumps(NASTY)
            + b"}}}",
            id="escaped-value",
        ),
        pytest.param(
            "by-agent", {"agent": "", "name": "Dana"}, None, False, "assistantId", id="empty-choice"
        ),
        pytest.param(
            "by-agent",
            {"agent": "", "name": "Dana"},
            None,
            True,
            b'{"assistantId":"","assistantOverrides":{"variableValues":{"who":"Dana"}}}',
            id="empty-choice-lenient",
        ),
        pytest.param(
            "by-agent",
            {"agent": ""},
            None,
            False,
            r"TemplateError: \$\{crm.name\} has no value for this caller \(crm_status ok\)",
            id="missing-field-before-empty-choice",
        ),
        pytest.param(
            "by-agent",
            {"name": "Dana"},
            None,
            True,
            b'{"assistantId":"","assistantOverrides":{"variableValues":{"who":"Dana"}}}',
            id="missing-field-lenient",
        ),
        pytest.param("agent-prefixed", {"agent": ""}, None, False, b'{"assistantId":"agent-"}', id="prefix"),
        pytest.param("two-refs", {"agent": ""}, None, False, "assistantId", id="two-refs-empty"),
        pytest.param("two-refs", {"agent": ""}, "+1415", False, b'{"assistantId":"+1415"}', id="two-refs"),
        pytest.param("to-number", {"phone": "", "name": "x"}, None, False, "destination", id="number-empty"),
        pytest.param(
            "to-number",
            {"phone": "+15550001111", "name": "Dana"},
            None,
            False,
            b'{"destination":{"type":"number","number":"+15550001111",'
            b'"message":"100% \\"sure\\" \\\\ <@splice0:0@> %s Dana"}}',
            id="number-marker-like-text",
        ),
        pytest.param("to-sip", {"sip": ""}, "+1", False, "destination", id="sip-empty"),
        pytest.param(
            "to-sip-literal",
            {"name": ""},
            None,
            False,
            b'{"destination":{"type":"sip","sipUri":"sip:@pbx.example.com"}}',
            id="sip-literal-never-empty",
        ),
        pytest.param("squad", {"agent": ""}, None, False, "squadId", id="squad-empty"),
        pytest.param("flow", {"agent": ""}, None, False, "squadId", id="flow-empty"),
        pytest.param("err", {"name": ""}, None, False, b'{"error":"Sorry "}', id="error-literal"),
        pytest.param("err-only", {"msg": ""}, None, False, "error", id="error-empty"),
        pytest.param(
            "odd",
            {"name": '","'},
            '%s"%',
            False,
            b'{"assistantId":"a-1","assistantOverrides":{"firstMessage":"{{customer.name}} costs ${ 5",'
            b'"variableValues":{"x":"%s %% %s\\"% %","y":[1,2.5,true,null,"\\",\\"",{"z":"%s\\"%"}],'
            b'"\xc3\xbc":"+16505550101/call-1"}}}',
            id="percent-and-separator",
        ),
        pytest.param(
            "odd",
            {"name": "\ud800"},
            None,
            False,
            "TypeError: str is not valid UTF-8: surrogates not allowed",  # orjson.JSONEncodeError
            id="lone-surrogate",
        ),
    ],
)
def test_render_bytes_table(
    target: str, crm: dict[str, str], caller: str | None, lenient: bool, expected: bytes | str
) -> None:
    leaf = P.targets[target]
    assert leaf.templated and leaf.prepared is None and leaf.spliced is not None
    f = facts(caller, crm=crm)
    got = new(leaf, f, "r1", lenient)
    assert got == old(leaf, f, "r1", lenient)
    if isinstance(expected, bytes):
        assert got == expected
    else:
        assert isinstance(got, tuple)
        text = ": ".join(got)
        if re.fullmatch(r"\w+", expected):  # a kind: its choice rendered empty
            assert EMPTY.fullmatch(text) and EMPTY.fullmatch(text)[1] == expected  # type: ignore[index]
        else:
            assert re.fullmatch(expected, text), text


def test_route_and_call_references() -> None:
    leaf = P.targets["flow"]
    f = facts(dialled=None, call_id=None, crm={"agent": "w-1"})
    assert render_bytes(leaf, f, 'odd "route"') == (
        b'{"squadId":"w-1","squadOverrides":{"variableValues":{"r":"odd \\"route\\"","c":"","d":""}}}'
    )


def test_prepared_targets_answer_their_prepared_bytes() -> None:
    leaf = P.default
    assert leaf.prepared is not None and leaf.spliced is None
    assert render_bytes(leaf, facts(), "default") is leaf.prepared


def test_a_split_is_followed_like_render_does() -> None:
    loaded = lint_path(REPO / "examples" / "ab-split")
    assert loaded.policy is not None
    split = next(r.then for r in loaded.policy.routes if r.then.kind == "split")
    for i in range(50):
        f = facts(f"+1415555{i:04d}")
        assert render_bytes(split, f, "r") == orjson.dumps(render(split, f, "r")[0])


def test_spliced_is_not_part_of_equality() -> None:
    leaf = P.targets["by-agent"]
    plain = dataclasses.replace(leaf, spliced=None)
    assert plain == leaf
    assert "spliced" not in repr(leaf)


# -- what splice declines, and targets only hand-built bodies reach ---------------------------


def hand(kind: str, body: dict[str, Any]) -> Target:
    return Target("hand", kind, Source("t.yaml", "/x"), body=body, templated=True, spliced=splice(kind, body))


CALLER = Template((("caller", ""),))


@pytest.mark.parametrize(
    ("kind", "body", "spliced"),
    [
        pytest.param(
            "destination",
            {"destination": {"type": Template((("crm", "type"),)), "number": "+1", "sipUri": CALLER}},
            False,
            id="templated-destination-type",
        ),
        pytest.param("assistantId", {"assistantId": "", "x": CALLER}, False, id="always-empty"),
        pytest.param("assistantId", {"x": CALLER}, False, id="choice-missing"),
        pytest.param("destination", {"destination": {"type": "number", "x": CALLER}}, False, id="no-number"),
        pytest.param("assistantId", {"assistantId": Template(())}, False, id="template-of-nothing"),
        pytest.param("assistantId", {"assistantId": Template(("100% a${b",))}, True, id="literal-only"),
        pytest.param(
            "assistantId", {"assistantId": Template(("", ("caller", "")))}, True, id="empty-literal"
        ),
        pytest.param(
            "assistantId", {"assistantId": "a", "x": Template((("nope", ""),))}, True, id="unknown-ref"
        ),
        pytest.param("assistantId", {"assistantId": CALLER, "x": {1, 2}}, False, id="unserialisable"),
        pytest.param("assistantId", {"assistantId": CALLER, 3: "x"}, False, id="non-str-key"),
        pytest.param("assistantId", {"assistantId": CALLER, "x": (CALLER,)}, True, id="template-in-tuple"),
        pytest.param("destination", {"destination": CALLER}, True, id="destination-as-text"),
        pytest.param(
            "destination", {"destination": {"number": CALLER, "sipUri": "sip:a@b"}}, True, id="untyped"
        ),
        pytest.param(
            "assistantId",
            {
                "assistantId": CALLER,
                "t": "<@splice0:0@> <@splice1:",
                "u": Template(("<@splice2:", ("caller", ""))),
            },
            True,
            id="marker-text",
        ),
    ],
)
def test_hand_built_targets(kind: str, body: dict[str, Any], spliced: bool) -> None:
    leaf = hand(kind, body)
    assert (leaf.spliced is not None) == spliced
    for f in (facts(), facts(None), facts(""), facts(crm={"type": "number"}), facts("\ud800")):
        for lenient in (False, True):
            assert new(leaf, f, "r", lenient) == old(leaf, f, "r", lenient)


# -- property: every templated target in the repository, many calls --------------------------


def _policy_sets() -> list[Path]:
    examples = sorted(d for d in (REPO / "examples").iterdir() if d.is_dir() and policy_files(d))
    return [REPO / "policies", *examples]


def _leaves(target: Target) -> Iterator[Target]:
    if target.kind == "split":
        for v in target.variants:
            yield from _leaves(v.target)
    else:
        yield target


def _templated_leaves(policy: Policy) -> list[Target]:
    roots = [*(r.then for r in policy.routes), policy.default, policy.fallback, *policy.targets.values()]
    found: dict[int, Target] = {}
    for root in roots:
        for leaf in _leaves(root):
            if leaf.templated:
                found[id(leaf)] = leaf
    return list(found.values())


def _crm_fields(value: Any) -> set[str]:
    if isinstance(value, Template):
        return {p[1] for p in value.parts if isinstance(p, tuple) and p[0] == "crm"}
    if isinstance(value, dict):
        return {f for v in value.values() for f in _crm_fields(v)}
    if isinstance(value, list):
        return {f for v in value for f in _crm_fields(v)}
    return set()


PIECES = [
    *"abcXYZ019 +-_.:@/",
    '"',
    "\\",
    '","',
    '\\"',
    "%",
    "%s",
    "%%",
    "\n",
    "\r",
    "\t",
    "\b",
    "\f",
    "\x00",
    "\x01",
    "\x1f",
    "\x7f",
    "\x80",
    "é",
    "ß",
    "€",
    "中文",
    "😀",
    "\u2028",
    "\u2029",
    "\ufeff",
    "<@splice0:",
    "0@>",
    "${caller}",
    "{{customer.name}}",
    "[",
    "]",
    "{",
    "}",
    ",",
]


def text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return ""
    if roll < 0.17:
        return "ok\ud800" if rng.random() < 0.5 else "\udfff"  # lone surrogates: orjson refuses both ways
    return "".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 12)))


def optional(rng: random.Random, value: str) -> str | None:
    roll = rng.random()
    return None if roll < 0.2 else "" if roll < 0.3 else text(rng) if roll < 0.45 else value


def random_facts(rng: random.Random, fields: set[str]) -> Facts:
    crm = {}
    for name in sorted(fields):
        roll = rng.random()
        if roll < 0.75:  # else missing
            crm[name] = text(rng) if roll < 0.5 else f"{name}-{rng.randrange(1000)}"
    return Facts(
        optional(rng, f"+1415555{rng.randrange(10_000):04d}"),
        optional(rng, "+16505550117"),
        AT,
        call_id=optional(rng, f"call-{rng.randrange(10**6)}"),
        crm_status=rng.choice(["ok", "not_found", "timeout", "error", "disabled"]),
        crm=crm,
    )


CORPUS = [pytest.param(path, id=str(path.relative_to(REPO))) for path in _policy_sets()]


def test_the_corpus_has_templated_targets() -> None:
    policies = [lint_path(p.values[0]).policy for p in CORPUS]  # type: ignore[arg-type]
    assert sum(len(_templated_leaves(p)) for p in policies if p is not None) >= 10


@pytest.mark.parametrize("path", CORPUS)
def test_bundled_templated_targets_are_spliced(path: Path) -> None:
    policy = lint_path(path).policy
    assert policy is not None
    for leaf in _templated_leaves(policy):
        assert leaf.spliced is not None, leaf.name  # the fast path, not the fallback


@pytest.mark.parametrize("source", [*CORPUS, pytest.param(None, id="table-policy")])
def test_render_bytes_matches_render_then_dumps(source: Path | None) -> None:
    policy = P if source is None else lint_path(source).policy
    assert policy is not None
    leaves = _templated_leaves(policy)
    routes = ["default", "fallback", *(r.id for r in policy.routes), 'q"uote\\', "ü%s"]
    rng = random.Random(str(source))
    outcomes: set[str] = set()
    for leaf in leaves:
        fields = _crm_fields(leaf.body) | {"unused"}
        for _ in range(400):
            f = random_facts(rng, fields)
            route = rng.choice(routes)
            for lenient in (False, True):
                got = new(leaf, f, route, lenient)
                assert got == old(leaf, f, route, lenient), (leaf.name, f, route, lenient)
                outcomes.add("bytes" if isinstance(got, bytes) else got[0])
    assert not leaves or "bytes" in outcomes  # some examples template nothing
    if source is None:  # TypeError: orjson refusing a lone surrogate, both ways
        assert outcomes == {"bytes", "TemplateError", "TypeError"}
