"""Tests for router.policy.vapi_payloads: inline Vapi payloads in policy targets, checked at lint time."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest

from router.policy.vapi_payloads import KINDS, PayloadProblem, check_payload

SHARED = Path(__file__).resolve().parents[2] / "shared"
SPEC = SHARED / "vapi" / "spec"
PAYLOADS = SHARED / "vapi" / "payloads"
REPO = Path(__file__).resolve().parents[1]
SUBSET: dict[str, Any] = json.loads((REPO / "router" / "policy" / "vapi.schema.json").read_text())

needs_spec = pytest.mark.skipif(not SPEC.is_dir(), reason="../shared/vapi/spec is not beside the repo")

ASSISTANT: dict[str, Any] = {
    "name": "Acme After-Hours",
    "firstMessage": "Hi {{customer.number}}, we're closed right now.",
    "firstMessageMode": "assistant-speaks-first",
    "maxDurationSeconds": 300,
    "silenceTimeoutSeconds": 30,  # gone from the generated spec, still honoured (PROTOCOL §3.7)
    "backgroundSound": "off",
    "model": {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Take a message."}],
    },
    "voice": {"provider": "vapi", "voiceId": "Elliot"},
    "transcriber": {"provider": "deepgram", "model": "nova-3", "language": "en"},
    "serverMessages": ["status-update", "end-of-call-report", 'transcript[transcriptType="final"]'],
    "clientMessages": ["transcript", "hang"],
    "endCallPhrases": ["goodbye", "bye now"],
    "voicemailDetection": "off",
    "server": {"url": "https://hooks.example.com/vapi", "timeoutSeconds": 20},
    "startSpeakingPlan": {"waitSeconds": 0.4, "smartEndpointingEnabled": "livekit"},
    "stopSpeakingPlan": {"numWords": 2, "voiceSeconds": 0.2, "backoffSeconds": 1},
    "metadata": {"team": "support", "tier": 1},
}
DESTINATION: dict[str, Any] = {
    "type": "number",
    "number": "+16505550188",
    "extension": "204",
    "callerId": "{{phoneNumber.number}}",
    "message": {
        "type": "custom-message",
        "content": "Connecting you now.",
        "contents": [{"type": "text", "text": "Le transfiero ahora.", "language": "es"}],
    },
    "transferPlan": {"mode": "blind-transfer", "timeout": 30, "fallbackPlan": {"message": "Sorry."}},
}


def problems(kind: str, value: Any) -> list[tuple[str, str, str]]:
    return [(p.pointer, p.message, p.code) for p in check_payload(kind, value)]


# --- good payloads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        pytest.param("assistant", ASSISTANT, id="full-assistant"),
        pytest.param("assistant", {}, id="empty-assistant"),
        pytest.param("assistant", {"backgroundSound": "https://cdn.example.com/lounge.mp3"}, id="sound-url"),
        pytest.param("assistantOverrides", {"variableValues": {"a": {"b": [1, None]}}}, id="variables-any"),
        pytest.param("assistantOverrides", {"firstMessage": "Hola", "tools:append": []}, id="overrides"),
        pytest.param("squadOverrides", {"variableValues": {"tier": "gold"}}, id="squad-overrides"),
        pytest.param(
            "squad",
            {
                "name": "front",
                "members": [
                    {"assistant": ASSISTANT, "assistantOverrides": {"firstMessage": "Hi"}},
                    {"assistantId": "1a2b3c4d-0000-4000-8000-00000000a002"},
                ],
                "membersOverrides": {"maxDurationSeconds": 600},
            },
            id="squad-inline-member",
        ),
        pytest.param(
            "workflow", {"name": "intake", "nodes": [{"type": "conversation"}], "edges": []}, id="wf"
        ),
        pytest.param("workflowOverrides", {"variableValues": {"x": 1}}, id="workflow-overrides"),
        pytest.param("destination", DESTINATION, id="number"),
        pytest.param(
            "destination", {"type": "sip", "sipUri": "sip:q@pbx.example.net", "message": ""}, id="sip"
        ),
    ],
)
def test_good_payloads_have_no_problems(kind: str, value: Any) -> None:
    assert problems(kind, value) == []


@needs_spec
@pytest.mark.parametrize("path", sorted(PAYLOADS.glob("response.*.json")), ids=lambda p: p.stem)
def test_vapi_example_replies_have_no_problems(path: Path) -> None:
    reply = json.loads(path.read_text())
    for kind in KINDS:
        if kind in reply:
            assert problems(kind, reply[kind]) == [], kind


# --- bad payloads -------------------------------------------------------------------------------------


def listed(words: str) -> str:
    """An enum as messages list it, from whitespace-separated values."""
    return ", ".join(words.split())


MODES = listed(
    "assistant-speaks-first assistant-speaks-first-with-model-generated-message assistant-waits-for-user"
)
MODEL_PROVIDERS = listed("""
    anthropic anthropic-bedrock anyscale cerebras custom-llm deepinfra deep-seek google groq inflection-ai
    minimax openai openrouter perplexity-ai together-ai xai vapi
""")
TRANSCRIBER_PROVIDERS = listed("""
    assembly-ai azure custom-transcriber deepgram 11labs gladia google speechmatics talkscriber openai
    cartesia soniox xai vapi
""")
SERVER_MESSAGES = listed("""
    assistant.started assistant.speechStarted conversation-update end-of-call-report function-call hang
    language-changed language-change-detected model-output phone-call-control speech-update status-update
    transcript transcript[transcriptType="final"] tool-calls transfer-destination-request
    handoff-destination-request transfer-update user-interrupted voice-input chat.created chat.deleted
    session.created session.updated session.deleted call.deleted call.delete.failed call.artifact.upload
""")
TRANSFER_MODES = listed("""
    blind-transfer blind-transfer-add-summary-to-sip-header warm-transfer-say-message
    warm-transfer-say-summary warm-transfer-twiml
    warm-transfer-wait-for-operator-to-speak-first-and-then-say-message
    warm-transfer-wait-for-operator-to-speak-first-and-then-say-summary warm-transfer-experimental
""")


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        pytest.param(
            "assistant",
            {"firstMesage": "Hi"},
            [
                (
                    "/firstMesage",
                    'unknown field "firstMesage" for an assistant (did you mean "firstMessage"?)',
                    "vapi-unknown-field",
                )
            ],
            id="unknown-field-hint",
        ),
        pytest.param(
            "assistant",
            {"variables": {"a": 1}},
            [("/variables", 'unknown field "variables" for an assistant', "vapi-unknown-field")],
            id="unknown-field-no-hint",
        ),
        pytest.param(
            "assistant",
            {"serverUrl": "https://x.example.com"},
            [
                (
                    "/serverUrl",
                    '"serverUrl" was removed from Vapi\'s API; use "server.url" instead',
                    "vapi-legacy-field",
                )
            ],
            id="legacy-server-url",
        ),
        pytest.param(
            "assistantOverrides",
            {"numWordsToInterruptAssistant": 2},
            [
                (
                    "/numWordsToInterruptAssistant",
                    '"numWordsToInterruptAssistant" was removed from Vapi\'s API; '
                    'use "stopSpeakingPlan.numWords" instead',
                    "vapi-legacy-field",
                )
            ],
            id="legacy-num-words",
        ),
        pytest.param(
            "assistant",
            {"backchannelingEnabled": True},
            [
                (
                    "/backchannelingEnabled",
                    '"backchannelingEnabled" was removed from Vapi\'s API; delete it',
                    "vapi-legacy-field",
                )
            ],
            id="legacy-no-replacement",
        ),
        pytest.param(
            "assistant",
            {"maxDurationSeconds": 5},
            [("/maxDurationSeconds", '"maxDurationSeconds" must be at least 10, got 5', "vapi-range")],
            id="below-minimum",
        ),
        pytest.param(
            "assistant",
            {"silenceTimeoutSeconds": 5000},
            [
                (
                    "/silenceTimeoutSeconds",
                    '"silenceTimeoutSeconds" must be at most 3600, got 5000',
                    "vapi-range",
                )
            ],
            id="restored-field-range",
        ),
        pytest.param(
            "assistant",
            {"name": "A" * 41},
            [("/name", '"name" must be at most 40 characters, got 41', "vapi-length")],
            id="name-too-long",
        ),
        pytest.param(
            "assistant",
            {"endCallPhrases": ["bye", "k"]},
            [
                (
                    "/endCallPhrases/1",
                    '"endCallPhrases[1]" must be at least 2 characters, got 1',
                    "vapi-length",
                )
            ],
            id="item-too-short",
        ),
        pytest.param(
            "assistant",
            {"firstMessageMode": "speak-first"},
            [
                (
                    "/firstMessageMode",
                    f'"firstMessageMode" must be one of {MODES}; got "speak-first" '
                    '(did you mean "assistant-speaks-first"?)',
                    "vapi-enum",
                )
            ],
            id="enum",
        ),
        pytest.param(
            "assistant",
            {"backgroundSound": "offce"},
            [
                (
                    "/backgroundSound",
                    '"backgroundSound" must be one of off, office; got "offce" (did you mean "office"?)',
                    "vapi-enum",
                )
            ],
            id="enum-or-url",
        ),
        pytest.param(
            "assistant",
            {"firstMessageInterruptionsEnabled": "yes"},
            [
                (
                    "/firstMessageInterruptionsEnabled",
                    '"firstMessageInterruptionsEnabled" must be true or false, got string',
                    "vapi-type",
                )
            ],
            id="type",
        ),
        pytest.param(
            "assistant",
            {"model": {"model": "gpt-4o"}},
            [
                (
                    "/model",
                    f'"model" needs "provider": one of {MODEL_PROVIDERS}',
                    "vapi-required",
                )
            ],
            id="model-without-provider",
        ),
        pytest.param(
            "assistant",
            {"voice": "Elliot"},
            [("/voice", '"voice" must be an object, got string', "vapi-type")],
            id="voice-not-object",
        ),
        pytest.param(
            "assistant",
            {"transcriber": {"provider": "deepgrm"}},
            [
                (
                    "/transcriber/provider",
                    f'"provider" must be one of {TRANSCRIBER_PROVIDERS}; got "deepgrm" '
                    '(did you mean "deepgram"?)',
                    "vapi-enum",
                )
            ],
            id="provider-typo",
        ),
        pytest.param(
            "assistant",
            {"serverMessages": ["status-update", "assistant-request"]},
            [
                (
                    "/serverMessages/1",
                    f'"serverMessages[1]" must be one of {SERVER_MESSAGES}; got "assistant-request" '
                    '(did you mean "assistant.started"?)',
                    "vapi-enum",
                )
            ],
            id="server-messages-item",
        ),
        pytest.param(
            "assistant",
            {"server": {"url": "https://x.example.com", "timeoutSeconds": 0, "secret": "s"}},
            [
                ("/server/secret", 'unknown field "secret" for a server', "vapi-unknown-field"),
                ("/server/timeoutSeconds", '"timeoutSeconds" must be at least 1, got 0', "vapi-range"),
            ],
            id="server",
        ),
        pytest.param(
            "assistant",
            {"startSpeakingPlan": {"waitSeconds": 6}},
            [("/startSpeakingPlan/waitSeconds", '"waitSeconds" must be at most 5, got 6', "vapi-range")],
            id="start-speaking-plan",
        ),
        pytest.param(
            "assistant",
            "front-desk",
            [("", '"assistant" must be an object, got string', "vapi-type")],
            id="not-an-object",
        ),
        pytest.param(
            "assistantOverrides",
            {"variableValues": ["a", "b"]},
            [("/variableValues", '"variableValues" must be an object, got array', "vapi-type")],
            id="variable-values-list",
        ),
        pytest.param(
            "squadOverrides",
            {"variables": {}},
            [
                (
                    "/variables",
                    'unknown field "variables" for assistant overrides (did you mean "variableValues"?)',
                    "vapi-unknown-field",
                )
            ],
            id="squad-overrides-variables",
        ),
        pytest.param(
            "squad", {}, [("", 'a squad needs "members"', "vapi-required")], id="squad-without-members"
        ),
        pytest.param(
            "squad",
            {"members": [{"assistantOverrides": {}}]},
            [("/members/0", 'a squad member needs "assistantId" or "assistant"', "vapi-required")],
            id="member-without-assistant",
        ),
        pytest.param(
            "squad",
            {"members": [{"assistantId": "a"}, {"assistant": {"firstMessageMode": "first"}}]},
            [
                (
                    "/members/1/assistant/firstMessageMode",
                    f'"firstMessageMode" must be one of {MODES}; got "first"',
                    "vapi-enum",
                )
            ],
            id="member-inline-assistant",
        ),
        pytest.param(
            "squad",
            {
                "members": [
                    {
                        "assistantId": "a",
                        "assistantDestinations": [{"type": "assistant", "assistantNme": "B"}],
                    }
                ]
            },
            [
                (
                    "/members/0/assistantDestinations/0/assistantNme",
                    'unknown field "assistantNme" for an assistant handoff destination '
                    '(did you mean "assistantName"?)',
                    "vapi-unknown-field",
                )
            ],
            id="member-destination",
        ),
        pytest.param(
            "workflow",
            {"nodes": []},
            [
                ("", 'a workflow needs "edges"', "vapi-required"),
                ("", 'a workflow needs "name"', "vapi-required"),
            ],
            id="workflow-required",
        ),
        pytest.param(
            "workflowOverrides",
            {"variableValues": {}, "firstMessage": "Hi"},
            [("/firstMessage", 'unknown field "firstMessage" for workflow overrides', "vapi-unknown-field")],
            id="workflow-overrides-only-variables",
        ),
        pytest.param(
            "destination",
            {"number": "+15550001111"},
            [("", 'a destination needs "type": one of number, sip', "vapi-required")],
            id="destination-without-type",
        ),
        pytest.param(
            "destination",
            {"type": "phone", "number": "+15550001111"},
            [("/type", '"type" must be one of number, sip; got "phone"', "vapi-enum")],
            id="destination-bad-type",
        ),
        pytest.param(
            "destination",
            {"type": "number", "number": "12"},
            [("/number", '"number" must be at least 3 characters, got 2', "vapi-length")],
            id="number-too-short",
        ),
        pytest.param(
            "destination",
            {"type": "number", "number": "+15550001111", "sipUri": "sip:x@y"},
            [("/sipUri", 'unknown field "sipUri" for a number destination', "vapi-unknown-field")],
            id="number-with-sip-field",
        ),
        pytest.param(
            "destination",
            {"type": "sip", "sipURI": "sip:x@y"},
            [
                ("", 'a SIP destination needs "sipUri"', "vapi-required"),
                (
                    "/sipURI",
                    'unknown field "sipURI" for a SIP destination (did you mean "sipUri"?)',
                    "vapi-unknown-field",
                ),
            ],
            id="sip-misspelt",
        ),
        pytest.param(
            "destination",
            {"type": "number", "number": "+15550001111", "message": 5},
            [("/message", '"message" must be a string or an object, got number', "vapi-type")],
            id="message-type",
        ),
        pytest.param(
            "destination",
            {
                "type": "number",
                "number": "+15550001111",
                "message": {"type": "custom-message", "content": "x" * 1001},
            },
            [("/message/content", '"content" must be at most 1000 characters, got 1001', "vapi-length")],
            id="custom-message-length",
        ),
        pytest.param(
            "destination",
            {"type": "number", "number": "+15550001111", "extension": "12345678901"},
            [("/extension", '"extension" must be at most 10 characters, got 11', "vapi-length")],
            id="extension-length",
        ),
        pytest.param(
            "destination",
            {"type": "sip", "sipUri": "sip:x@y", "transferPlan": {"timeout": 601}},
            [
                (
                    "/transferPlan",
                    f'a transfer plan needs "mode": one of {TRANSFER_MODES}',
                    "vapi-required",
                ),
                ("/transferPlan/timeout", '"timeout" must be at most 600, got 601', "vapi-range"),
            ],
            id="transfer-plan",
        ),
        pytest.param(
            "destination",
            {
                "type": "sip",
                "sipUri": "sip:x@y",
                "transferPlan": {"mode": "blind-transfer", "sipVerb": "invite"},
            },
            [
                (
                    "/transferPlan/sipVerb",
                    '"sipVerb" cannot be sent: Vapi\'s published schema types it as an object, '
                    "so every value "
                    "fails validation; leave it out (the default is refer)",
                    "vapi-unsendable",
                ),
                (
                    "/transferPlan/sipVerb",
                    '"sipVerb" must be one of refer, bye, dial; got "invite"',
                    "vapi-enum",
                ),
            ],
            id="sip-verb",
        ),
        pytest.param(
            "destination",
            {
                "type": "sip",
                "sipUri": "sip:q@pbx.example.net",
                "transferPlan": {"mode": "blind-transfer", "sipVerb": "dial"},
            },
            [
                (
                    "/transferPlan/sipVerb",
                    '"sipVerb" cannot be sent: Vapi\'s published schema types it as an object, '
                    "so every value "
                    "fails validation; leave it out (the default is refer)",
                    "vapi-unsendable",
                )
            ],
            id="sip-verb-unsendable",  # every reply must pass Vapi's schema (check_reply.py)
        ),
    ],
)
def test_bad_payloads(kind: str, value: Any, expected: list[tuple[str, str, str]]) -> None:
    assert problems(kind, value) == expected


def test_problems_are_values_with_stable_codes() -> None:
    found = check_payload("assistant", {"a/b~c": 1})
    assert found == [
        PayloadProblem("/a~1b~0c", 'unknown field "a/b~c" for an assistant', "vapi-unknown-field")
    ]


def test_subset_schema_is_valid_and_small() -> None:
    jsonschema.Draft202012Validator.check_schema(SUBSET)
    assert (REPO / "router" / "policy" / "vapi.schema.json").stat().st_size < 150_000


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown payload kind 'assistantId'"):
        check_payload("assistantId", "x")


# --- templates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        pytest.param(
            "assistant", {"name": "Desk for ${crm.company_name_which_is_long_enough}"}, id="maxLength"
        ),
        pytest.param("assistant", {"firstMessageMode": "${crm.mode}"}, id="enum"),
        pytest.param("assistant", {"endCallPhrases": ["${crm.x}"]}, id="item-minLength"),
        pytest.param("assistant", {"backgroundSound": "${crm.sound}"}, id="enum-or-url"),
        pytest.param("assistant", {"model": {"provider": "${crm.llm}"}}, id="provider"),
        pytest.param("destination", {"type": "number", "number": "${caller}"}, id="number-minLength"),
        pytest.param(
            "destination",
            {"type": "number", "number": "+15550001111", "callerId": "${dialled}"},
            id="caller-id",
        ),
        pytest.param(
            "squad", {"members": [{"assistant": {"voicemailMessage": "${route} " + "x" * 1000}}]}, id="nested"
        ),
    ],
)
def test_templated_strings_are_exempt_from_value_checks(kind: str, value: Any) -> None:
    assert problems(kind, value) == []


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        pytest.param(
            "assistant",
            {"maxDurationSeconds": "${crm.limit}"},
            [("/maxDurationSeconds", '"maxDurationSeconds" must be a number, got string', "vapi-type")],
            id="still-a-string",
        ),
        pytest.param(
            "assistant",
            {"name": "{{customer.name}} and a name that is far too long"},
            [("/name", '"name" must be at most 40 characters, got 49', "vapi-length")],
            id="liquid-is-checked-as-written",  # Vapi validates {{…}} before filling it in
        ),
    ],
)
def test_templates_do_not_excuse_everything(
    kind: str, value: Any, expected: list[tuple[str, str, str]]
) -> None:
    assert problems(kind, value) == expected


# --- drift against Vapi's spec ------------------------------------------------------------------------

# Fields the subset knowingly adds to what the generated spec lists (see tools/gen_vapi_schema.py).
RESTORED = {"CreateAssistantDTO": {"silenceTimeoutSeconds"}, "AssistantOverrides": {"silenceTimeoutSeconds"}}
# unions by `type` that gen_vapi_schema.py builds; Vapi has no components of these names
UNIONS = ("Destination", "TransferDestination", "HandoffDestination", "ToolMessage")
SPEC_DEFS = sorted(name for name in SUBSET["$defs"] if name not in UNIONS)


def spec_components() -> dict[str, Any]:
    bundle = json.loads((SPEC / "bundles" / "router-closure.bundle.json").read_text())
    components: dict[str, Any] = bundle["components"]["schemas"]
    return components


@needs_spec
@pytest.mark.parametrize("name", SPEC_DEFS)
def test_subset_field_names_are_vapis(name: str) -> None:
    ours = set(SUBSET["$defs"][name]["properties"])
    theirs = set(spec_components()[name]["properties"])
    assert ours - theirs == RESTORED.get(name, set()), "fields Vapi does not have"
    assert theirs - ours == set(), "fields Vapi added: run tools/gen_vapi_schema.py"


def limits_rows() -> list[Any]:
    if not SPEC.is_dir():
        return []
    limits = json.loads((SPEC / "limits.json").read_text())
    return [
        pytest.param(name, field, facts, id=f"{name}.{field}")
        for name, entry in limits.items()
        if name in SUBSET["$defs"]
        for field, facts in entry["constraints"].items()
    ]


@needs_spec
@pytest.mark.parametrize(("name", "field", "facts"), limits_rows())
def test_subset_enums_and_limits_are_vapis(name: str, field: str, facts: dict[str, Any]) -> None:
    ours = SUBSET["$defs"][name]["properties"][field]
    if facts.get("type") == "array":
        ours = ours.get("items", {})  # PROTOCOL §3.8: only items.enum applies
        facts = {k.removeprefix("items."): v for k, v in facts.items() if k.startswith("items.")}
    for key in ("enum", "minimum", "maximum", "minLength", "maxLength"):
        assert ours.get(key) == facts.get(key), key


@needs_spec
@pytest.mark.parametrize("name", ["CreateAssistantDTO", "AssistantOverrides", "CreateWorkflowDTO"])
@pytest.mark.parametrize("field", ["model", "voice", "transcriber"])
def test_subset_providers_are_vapis(name: str, field: str) -> None:
    components = spec_components()
    branches = components[name]["properties"][field]["oneOf"]
    theirs = {components[b["$ref"].rsplit("/", 1)[-1]]["properties"]["provider"]["enum"][0] for b in branches}
    ours = SUBSET["$defs"][name]["properties"][field]
    assert set(ours["properties"]["provider"]["enum"]) == theirs
    assert ours["required"] == ["provider"]


@needs_spec
@pytest.mark.parametrize(
    "name", ["CreateSquadDTO", "TransferDestinationNumber", "TransferDestinationSip", "TransferPlan"]
)
def test_subset_required_fields_are_vapis(name: str) -> None:
    assert SUBSET["$defs"][name]["required"] == spec_components()[name]["required"]


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_spec
def test_committed_schema_is_what_the_generator_makes() -> None:
    generator = load(REPO / "tools" / "gen_vapi_schema.py", "gen_vapi_schema")
    text = (REPO / "router" / "policy" / "vapi.schema.json").read_text()
    assert generator.render(generator.derive(SPEC)) == text, "run tools/gen_vapi_schema.py"


# --- agreement with ../shared/vapi/check_reply.py -----------------------------------------------------

CHECK_REPLY = SHARED / "vapi" / "check_reply.py"
needs_check_reply = pytest.mark.skipif(
    not CHECK_REPLY.is_file(), reason="../shared/vapi/check_reply.py is absent"
)


@needs_check_reply
@pytest.mark.parametrize(
    "reply",
    [
        pytest.param({"assistant": ASSISTANT}, id="inline-assistant"),
        pytest.param(
            {
                "assistantId": "2ccabf54-ccd8-4dff-ae93-e830159c8004",
                "assistantOverrides": {"variableValues": {"c": "+1"}},
            },
            id="assistant-id-overrides",
        ),
        pytest.param(
            {
                "squad": {"members": [{"assistant": ASSISTANT}, {"assistantId": "b"}]},
                "squadOverrides": {"firstMessageMode": "assistant-waits-for-user"},
            },
            id="squad",
        ),
        pytest.param(
            {"workflowId": "w", "workflowOverrides": {"variableValues": {"x": 1}}}, id="workflow-id"
        ),
        pytest.param({"destination": DESTINATION}, id="number-destination"),
        pytest.param(
            {
                "destination": {
                    "type": "sip",
                    "sipUri": "sip:q@pbx.example.net",
                    "sipHeaders": {"X-A": "b"},
                    "message": "",
                }
            },
            id="sip-destination",
        ),
    ],
)
def test_payloads_we_pass_vapis_schema_passes(reply: dict[str, Any]) -> None:
    for kind in KINDS:
        if kind in reply:
            assert problems(kind, reply[kind]) == [], kind
    assert load(CHECK_REPLY, "check_reply").problems("assistant-request", reply) == []
