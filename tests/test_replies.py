"""router.runtime.replies: sticky weighted splits, ${…} templates, Vapi's {{…}} left alone."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from router.policy.loader import lint_texts
from router.runtime.facttypes import Facts
from router.runtime.model import Policy, Target
from router.runtime.replies import TemplateError, choose, render, render_bytes

POLICY = """version: 1
settings: {region: US}
crm:
  http: {url: "https://crm.example.com/c?phone=${caller}", fields: {name: contact.name, tier: contact.tier}}
targets:
  old-intake: {assistantId: old}
  new-intake: {assistantId: new}
  personal:
    assistantId: p-1
    assistantOverrides:
      firstMessage: "Hi ${crm.name}, you called ${dialled} from ${caller}."
      variableValues:
        caller: "${caller}"
        call: "${call.id}"
        route: "${route}"
        tier: "${crm.tier}"
        greeting: "Hello {{customer.name}} ({{ customer.number | default: 'unknown' }})"
        list: ["${caller}", 3, true, null, {nested: "${crm.tier}!"}]
  liquid-only:
    assistantId: l-1
    assistantOverrides: {firstMessage: "Hello {{customer.number}}, it is {{ 'now' | date: '%H:%M' }}"}
routes:
  - id: ab
    when: {dialled: "+16505550117"}
    then:
      split:
        - {weight: 90, then: old-intake}
        - {weight: 10, then: new-intake}
  - id: nested
    when: {dialled: "+16505550118"}
    then:
      split:
        - {weight: 50, then: {squadId: s-1}}
        - weight: 50
          then:
            split:
              - {weight: 1, then: {assistantId: w-1}}
              - {weight: 1, then: {assistantId: w-2}}
  - {id: personal, when: {dialled: "+16505550119"}, then: personal}
  - {id: liquid, when: {dialled: "+16505550120"}, then: liquid-only}
  - id: silent-transfer
    when: {dialled: "+16505550121"}
    then: {destination: {type: number, number: "+16505550100", message: ""}}
default: {error: "Sorry, no one can take your call."}
"""


def load() -> Policy:
    loaded = lint_texts([("t.yaml", POLICY)])
    assert [str(p) for p in loaded.problems] == []
    assert loaded.policy is not None
    return loaded.policy


P = load()


def route(route_id: str) -> Target:
    return next(r.then for r in P.routes if r.id == route_id)


def facts(
    caller: str | None = "+14155550142",
    call_id: str | None = "call-1",
    *,
    crm: dict[str, str] | None = None,
    dialled: str | None = "+16505550119",
) -> Facts:
    return Facts(
        caller=caller,
        dialled=dialled,
        at=datetime(2026, 3, 4, 15, tzinfo=UTC),
        call_id=call_id,
        crm_status="ok" if crm else "not_found",
        crm=crm or {},
    )


def callers(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"+1{rng.randrange(200, 999)}{rng.randrange(10**7):07d}" for _ in range(n)]


# -- splits --------------------------------------------------------------------------------


def test_split_is_sticky_per_caller() -> None:
    split = route("ab")
    for caller in callers(200):
        first = choose(split, facts(caller, "call-a"))
        assert all(choose(split, facts(caller, f"call-{i}")) is first for i in range(5))


def test_anonymous_split_sticks_to_the_call_id() -> None:
    split = route("ab")
    picks = {choose(split, facts(None, f"call-{i}")).name for i in range(200)}
    assert picks == {"old-intake", "new-intake"}
    for i in range(50):
        assert choose(split, facts(None, f"call-{i}")) is choose(split, facts(None, f"call-{i}"))


def test_anonymous_without_call_id_still_answers() -> None:
    assert choose(route("ab"), facts(None, None)).kind == "assistantId"


def test_split_distribution_follows_weights() -> None:
    split = route("ab")
    counts = Counter(choose(split, facts(c)).name for c in callers(10_000))
    assert abs(counts["new-intake"] / 10_000 - 0.10) <= 0.03
    assert counts["old-intake"] + counts["new-intake"] == 10_000


def test_nested_split_distribution() -> None:
    split = route("nested")
    leaves = (choose(split, facts(c)).body for c in callers(10_000, seed=1))
    counts = Counter(body.get("assistantId", "squad") for body in leaves)
    assert abs(counts["squad"] / 10_000 - 0.50) <= 0.03
    assert abs(counts["w-1"] / 10_000 - 0.25) <= 0.03
    assert abs(counts["w-2"] / 10_000 - 0.25) <= 0.03


def test_render_follows_the_split_to_a_leaf() -> None:
    reply, leaf = render(route("ab"), facts(), "ab")
    assert leaf.kind == "assistantId"
    assert leaf.name in ("old-intake", "new-intake")
    assert reply == dict(leaf.body)
    assert leaf.prepared == orjson.dumps(reply)


# -- templates -----------------------------------------------------------------------------


def test_templates_are_filled_everywhere() -> None:
    f = facts(crm={"name": "Dana", "tier": "gold"})
    reply, leaf = render(route("personal"), f, "personal")
    assert leaf.name == "personal"
    assert reply == {
        "assistantId": "p-1",
        "assistantOverrides": {
            "firstMessage": "Hi Dana, you called +16505550119 from +14155550142.",
            "variableValues": {
                "caller": "+14155550142",
                "call": "call-1",
                "route": "personal",
                "tier": "gold",
                "greeting": "Hello {{customer.name}} ({{ customer.number | default: 'unknown' }})",
                "list": ["+14155550142", 3, True, None, {"nested": "gold!"}],
            },
        },
    }


def test_rendering_does_not_touch_the_compiled_target() -> None:
    target = route("personal")
    before = orjson.dumps(target.body, default=repr)
    render(target, facts(crm={"name": "Dana", "tier": "gold"}), "personal")
    render(target, facts("+14155550143", crm={"name": "Sam", "tier": "silver"}), "personal")
    assert orjson.dumps(target.body, default=repr) == before


def test_anonymous_caller_fills_empty() -> None:
    reply, _ = render(route("personal"), facts(None, crm={"name": "A", "tier": "b"}), "personal")
    assert reply["assistantOverrides"]["variableValues"]["caller"] == ""


def test_missing_crm_field_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"\$\{crm.name\} has no value for this caller"):
        render(route("personal"), facts(), "personal")


def test_lenient_fills_missing_crm_fields_with_empty_text() -> None:
    reply, _ = render(route("personal"), facts(crm={"tier": "gold"}), "personal", lenient=True)
    assert reply["assistantOverrides"]["firstMessage"] == "Hi , you called +16505550119 from +14155550142."


def test_vapi_liquid_placeholders_pass_untouched() -> None:
    target = route("liquid")
    assert not target.templated
    reply, _ = render(target, facts(), "liquid")
    assert reply["assistantOverrides"]["firstMessage"] == (
        "Hello {{customer.number}}, it is {{ 'now' | date: '%H:%M' }}"
    )


@pytest.mark.parametrize(
    "route_id",
    [
        pytest.param("liquid", id="liquid-only"),
        pytest.param("silent-transfer", id="silent-destination"),
    ],
)
def test_non_templated_targets_are_prepared(route_id: str) -> None:
    target = route(route_id)
    assert not target.templated
    assert target.prepared == orjson.dumps(target.body)
    reply, leaf = render(target, facts(), route_id)
    assert orjson.dumps(reply) == leaf.prepared


def test_default_and_leaf_targets_are_prepared() -> None:
    assert P.default.prepared == orjson.dumps({"error": "Sorry, no one can take your call."})
    for name in ("old-intake", "new-intake", "liquid-only"):
        t = P.targets[name]
        assert t.prepared == orjson.dumps(t.body)
    assert P.targets["personal"].prepared is None


def test_render_bytes_is_render_then_dumps() -> None:
    """The server's path (spliced at compile time; tests/test_render_bytes.py has the rest)."""
    target = route("personal")
    assert target.spliced is not None
    f = facts(crm={"name": 'Dana "D" \\ O\'Neil', "tier": "gold\n"})
    assert render_bytes(target, f, "personal") == orjson.dumps(render(target, f, "personal")[0])
    with pytest.raises(TemplateError, match=r"\$\{crm.name\} has no value for this caller"):
        render_bytes(target, facts(), "personal")
    liquid = route("liquid")
    assert render_bytes(liquid, facts(), "liquid") is liquid.prepared
