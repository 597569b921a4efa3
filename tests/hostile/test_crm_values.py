"""Item 3 of issue 15: a CRM value that breaks Vapi's limits (a `${crm.phone}` of "x", or of 47
characters, in destination.number) must not reach Vapi: the rendered reply is checked against
the limits lint knows and the call gets the fallback, the reason in the decision log. Lint
warns that the template feeds a constrained field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crmserver import CrmServer
from hostileutil import SAFE, call_message
from serverutil import InProcess, reply_problems

from router.policy.loader import lint_texts


def policy(crm_url: str) -> str:
    return f"""\
version: 1
settings: {{region: US, deadline_ms: 2000, fallback: safe}}
crm:
  http: {{url: "{crm_url}", tags: contact.tags, fields: {{phone: contact.phone, name: contact.name}}}}
  timeout_ms: 1000
  cache_ttl_s: 0
targets:
  safe: {{assistantId: {SAFE}}}
routes:
  - id: forward
    when: {{tags: [forward]}}
    then: {{destination: {{type: number, number: "${{crm.phone}}", message: "Hello ${{crm.name}}"}}}}
default: safe
"""


@pytest.mark.parametrize(
    ("phone", "good"),
    [
        pytest.param("+14155550199", True, id="valid"),
        pytest.param("x", False, id="too-short"),
        pytest.param("+1" + "5" * 45, False, id="47-characters"),
        pytest.param("x" * 100_000, False, id="100k-characters"),
    ],
)
def test_a_crm_value_that_breaks_vapis_limits_answers_the_fallback(
    tmp_path: Path, phone: str, good: bool
) -> None:
    caller = "+12125550111"
    with CrmServer() as crm:
        crm.contacts[caller] = {"tags": ["forward"], "phone": phone, "name": "Jo"}
        with InProcess(tmp_path, policy(crm.url_template)) as srv, srv.client() as client:
            response = srv.post_webhook(client, call_message(caller=caller, call_id="limits"))
            assert response.status_code == 200
            reply = response.json()
            assert reply_problems("assistant-request", reply) == []
            [record] = [r for r in srv.wait_log(lambda r: r.get("call_id") == "limits") if r.get("call_id")]
            if good:
                assert reply["destination"]["number"] == phone
                assert record["fallback_reason"] is None
            else:
                assert reply == {"assistantId": SAFE}
                assert "destination/number" in record["fallback_reason"]
                assert phone not in json.dumps(record)


def test_lint_warns_when_a_template_feeds_a_limited_field(tmp_path: Path) -> None:
    loaded = lint_texts([("policy.yaml", policy("http://127.0.0.1:9/contacts?phone=${caller}"))])
    limited = [p for p in loaded.problems if p.code == "vapi-template-limit"]
    assert [p.severity for p in limited] == ["warning"]
    assert limited[0].pointer == "/routes/0/then/destination/number"  # not the free-text message
    assert loaded.policy is not None
