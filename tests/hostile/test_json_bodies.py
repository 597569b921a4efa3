"""Item 6 of issue 15: a body Python's json accepts is not "not JSON". JavaScript's
JSON.stringify writes a string cut inside an emoji as a lone surrogate escape ("Jo\\ud83d");
orjson refuses it, json reads it. Such a body still gets its 200, in a field the router never
reads and in ones it reads and echoes. A body that is really not JSON (or nested past any
parser's depth) still gets 400, and the server keeps answering."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostileutil import SAFE, call_message
from serverutil import InProcess, dumps, reply_problems

from router.server.fasthttp import WebhookProtocol

PROTOCOLS = ["router.server.fasthttp:WebhookProtocol", "httptools"]


def with_surrogate(where: str) -> bytes:
    message = call_message(caller="+14155550142", call_id="surrogate-call")
    if where == "unread":
        message["message"]["artifact"] = {"note": "SURROGATE"}
    elif where == "call-id":
        message["message"]["call"]["id"] = "SURROGATE"
    elif where == "name":
        message["message"]["customer"]["name"] = "SURROGATE"
    return dumps(message).replace(b'"SURROGATE"', b'"Jo\\ud83d"')


@pytest.mark.parametrize("http", PROTOCOLS)
@pytest.mark.parametrize("where", ["unread", "call-id", "name"])
def test_a_lone_surrogate_escape_is_json(tmp_path: Path, http: str, where: str) -> None:
    protocol: str | type[WebhookProtocol] = WebhookProtocol if http.startswith("router") else http
    with InProcess(tmp_path, _policy(), http=protocol) as srv, srv.client() as client:
        response = srv.post_webhook(client, with_surrogate(where))
        assert response.status_code == 200, response.text
        reply = response.json()
        assert reply["assistantId"] == SAFE
        assert reply_problems("assistant-request", reply) == []
        for garbage in (b'{"message": ', b"[" * 200_000, b'{"message": {"type": "x"}}\xff'):
            assert srv.post_webhook(client, garbage).status_code == 400
        assert srv.post_webhook(client, call_message()).status_code == 200


def _policy() -> str:
    return f"""\
version: 1
settings: {{region: US, fallback: safe}}
targets:
  safe: {{assistantId: {SAFE}}}
routes:
  - id: echo
    when: {{caller: "+1415555*"}}
    then:
      assistantId: {SAFE}
      assistantOverrides: {{variableValues: {{call: "${{call.id}}"}}}}
default: safe
"""
