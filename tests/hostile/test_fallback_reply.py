"""The fallback's own reply, checked like every other one (issue 15 item 3: "every rendered reply
is checked against the limits lint knows before it is sent").

The fallback answers when a call's own facts fail (the CRM timed out, a `${crm.x}` has no
value, a reply broke Vapi's limits), so it renders leniently: a missing value is "". A
`${crm.phone}` in its `destination.number` thus sent `"number": ""`, or the CRM's `"x"`, with
a 200 that Vapi refuses. What a user expects of the last answer is that it cannot be wrong:

- lint refuses it (`fallback-template`, an error: `serve` will not start on it and a reload
  keeps the old policy) when a `${…}` value in a fallback target feeds a field Vapi limits,
  or is the whole of the reply's choice (`error: "${crm.msg}"`); free text around a value
  (`error: "Sorry ${crm.name}, …"`) and overrides Vapi does not limit stay fine;
- should such a fallback be served anyway (lint bypassed), its rendered reply is checked and
  the call gets a built-in polite refusal, with both reasons in the log."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hostileutil import SAFE
from serverutil import reply_problems

from router.policy.checks.targets import FALLBACK_TEMPLATE
from router.policy.compiler import compile_policy
from router.policy.document import parse_document
from router.policy.loader import lint_texts
from router.runtime.decide import LAST_RESORT, answer_fallback, decide, explain_answer
from router.runtime.facttypes import Facts

CALLER = "+14155550142"
NAMED = f"{{assistantId: {SAFE}, assistantOverrides: {{variableValues: {{n: '${{crm.name}}'}}}}}}"


def policy(fallback_line: str, targets: str, default: str = "desk") -> str:
    return f"""\
version: 1
settings: {{region: US{fallback_line}}}
crm:
  http: {{url: "http://127.0.0.1:9/c?p=${{caller}}", tags: t, fields: {{phone: p, name: n, message: m}}}}
targets:
  desk: {{assistantId: {SAFE}}}
  named: {NAMED}
{targets}routes:
  - id: vip
    when: {{tags: [vip]}}
    then: named
default: {default}
"""


AGENT = '  agent: {destination: {type: number, number: "${crm.phone}", message: "Connecting you"}}\n'
CASES = [
    pytest.param(
        policy(", fallback: agent", AGENT),
        ["policy.yaml:8:47: error: {message} [fallback-template]"],
        id="named-fallback-number-from-the-crm",
    ),
    pytest.param(
        policy("", AGENT, default="agent"),
        [
            'policy.yaml:6:3: warning: target "desk" is defined but never used [unused]',
            "policy.yaml:8:47: error: {message} [fallback-template]",
        ],
        id="the-default-is-the-fallback",
    ),
    pytest.param(
        policy(", fallback: sorry", '  sorry: {error: "${crm.message}"}\n'),
        ["policy.yaml:8:18: error: {message} [fallback-template]"],
        id="the-whole-choice-a-template",
    ),
    pytest.param(
        policy(
            ", fallback: both",
            AGENT + "  both: {split: [{weight: 1, then: desk}, {weight: 1, then: agent}]}\n",
        ),
        ["policy.yaml:8:47: error: {message} [fallback-template]"],
        id="a-split-variant",
    ),
    pytest.param(
        policy(", fallback: sorry", '  sorry: {error: "Sorry ${crm.name}, we are closed"}\n'),
        [],
        id="free-text-around-a-value-is-fine",
    ),
    pytest.param(
        policy(", fallback: named", ""),
        [],
        id="unlimited-overrides-are-fine",
    ),
    pytest.param(
        policy(", fallback: desk", AGENT.replace("agent:", "agent2:")).replace("then: named", "then: agent2"),
        [
            'policy.yaml:7:3: warning: target "named" is defined but never used [unused]',
            "policy.yaml:8:48: warning: a ${…} value feeds a field Vapi limits (length, pattern, enum or "
            "format); a call whose value breaks it gets the fallback [vapi-template-limit]",
        ],
        id="not-the-fallback-a-warning-as-before",
    ),
]


@pytest.mark.parametrize(("text", "problems"), CASES)
def test_lint_refuses_a_fallback_that_can_render_a_reply_vapi_refuses(text: str, problems: list[str]) -> None:
    loaded = lint_texts([("policy.yaml", text)])
    assert [str(p) for p in loaded.problems] == [p.replace("{message}", FALLBACK_TEMPLATE) for p in problems]


def unchecked(text: str) -> object:
    """The Policy compiled straight from the YAML: no checks, as if lint were bypassed."""
    return compile_policy([parse_document(text, file="policy.yaml")], version="t")


@pytest.mark.parametrize("phone", [None, "x", "+1" + "5" * 45], ids=["missing", "x", "47-characters"])
def test_a_fallback_rendered_out_of_vapis_limits_answers_the_last_resort(phone: str | None) -> None:
    compiled = unchecked(policy(", fallback: agent", AGENT))
    crm = {} if phone is None else {"phone": phone}
    facts = Facts(
        caller=CALLER, dialled=None, at=datetime.now(UTC), crm_status="ok", tags=frozenset({"vip"}), crm=crm
    )
    answer = decide(compiled, facts)  # `named` needs ${crm.name}: none, so the fallback answers
    assert answer.body == LAST_RESORT and answer.route == "vip" and answer.target is None
    assert reply_problems("assistant-request", json.loads(answer.body)) == []
    assert answer.fallback_reason is not None
    assert answer.fallback_reason.startswith("TemplateError: ${crm.name} has no value")
    why = answer.fallback_reason.split("; the fallback failed too: ", 1)[1]
    if phone is None:
        assert why == "TemplateError: the destination rendered empty for this call"
    else:
        assert why.startswith("ReplyInvalid: the rendered reply fails Vapi's schema at destination/number")
        assert phone not in answer.fallback_reason
    assert explain_answer(compiled, facts)["reply"] == json.loads(LAST_RESORT)


def test_a_valid_fallback_value_still_answers() -> None:
    compiled = unchecked(policy(", fallback: agent", AGENT))
    facts = Facts(caller=CALLER, dialled=None, at=datetime.now(UTC), crm={"phone": "+16505550100"})
    body, kind, _, target, reason = answer_fallback(compiled, facts, "deadline reached")
    assert (kind, target, reason) == ("destination", "agent", "deadline reached")
    assert json.loads(body)["destination"]["number"] == "+16505550100"
    # a transfer-destination-request takes a destination fallback as it is
    assert answer_fallback(compiled, facts, "deadline reached", transfer=True)[0] == body
