"""Vapi's OpenAPI components -> the JSON Schema subset `lint` checks inline payloads with (pure).

tools/gen_vapi_schema.py writes the bundled router/policy/vapi.schema.json with it; `--vapi-spec
FILE` (router/policy/vapi_spec.py) runs it on a newer Vapi OpenAPI document at start-up.
"""

from __future__ import annotations

from typing import Any

# Components checked field by field (unknown fields are errors), with the noun messages use.
# Everything else they reference is checked shallowly: its JSON type and, for a union whose
# branches share a one-value discriminator (model/voice/transcriber `provider`, tool `type`),
# that discriminator. Deeper checks would multiply the size and false positives whenever
# the generated spec lags the live API; the rest of a payload is Vapi's to judge.
DEEP = {
    "CreateAssistantDTO": "an assistant",
    "AssistantOverrides": "assistant overrides",
    "CreateSquadDTO": "a squad",
    "SquadMemberDTO": "a squad member",
    "CreateWorkflowDTO": "a workflow",
    "WorkflowOverrides": "workflow overrides",
    "TransferDestinationNumber": "a number destination",
    "TransferDestinationSip": "a SIP destination",
    "TransferDestinationAssistant": "an assistant transfer destination",
    "HandoffDestinationAssistant": "an assistant handoff destination",
    "HandoffDestinationSquad": "a squad handoff destination",
    "HandoffDestinationDynamic": "a dynamic handoff destination",
    "ToolMessageStart": "a request-start message",
    "ToolMessageComplete": "a request-complete message",
    "ToolMessageFailed": "a request-failed message",
    "ToolMessageDelayed": "a request-response-delayed message",
    "TransferPlan": "a transfer plan",
    "TransferFallbackPlan": "a transfer fallback plan",
    "SummaryPlan": "a summary plan",
    "CustomMessage": "a custom message",
    "TextContent": "a text content",
    "Server": "a server",
    "StartSpeakingPlan": "a start-speaking plan",
    "StopSpeakingPlan": "a stop-speaking plan",
}
ASSISTANTS = ("CreateAssistantDTO", "AssistantOverrides")

WAIT = 'use "startSpeakingPlan.waitSeconds" instead'
# PROTOCOL §3.7: fields Vapi removed, with where their job went (checked to exist below).
LEGACY: dict[str, tuple[str | None, str]] = {
    "serverUrl": ("server.url", 'use "server.url" instead'),
    "serverUrlSecret": (
        "server.credentialId",
        'use "server.credentialId" (a bearer or HMAC credential) instead',
    ),
    "hipaaEnabled": ("compliancePlan.hipaaEnabled", 'use "compliancePlan.hipaaEnabled" instead'),
    "backchannelingEnabled": (None, "delete it"),
    "backgroundDenoisingEnabled": (
        "backgroundSpeechDenoisingPlan.smartDenoisingPlan.enabled",
        'use "backgroundSpeechDenoisingPlan.smartDenoisingPlan.enabled" instead',
    ),
    "messagePlan": (
        "hooks",
        'for idle messages use a "hooks" entry with on "customer.speech.timeout" and a "say" action',
    ),
    "endCallFunctionEnabled": ("model.tools", 'add a {type: endCall} tool to "model.tools" instead'),
    "forwardingPhoneNumber": (
        "model.tools",
        'add a {type: transferCall} tool to "model.tools", or route to a "destination" target',
    ),
    "responseDelaySeconds": ("startSpeakingPlan.waitSeconds", 'use "startSpeakingPlan.waitSeconds" instead'),
    "llmRequestDelaySeconds": (
        "startSpeakingPlan.waitSeconds",
        'use "startSpeakingPlan.waitSeconds" instead',
    ),
    "numWordsToInterruptAssistant": ("stopSpeakingPlan.numWords", 'use "stopSpeakingPlan.numWords" instead'),
}

# Fields the generated spec lost but the live API still takes (PROTOCOL §3.7: the last spec
# copy with it said 10-3600). The drift test pins this list, so a re-added field is noticed.
RESTORED = {"silenceTimeoutSeconds": {"type": "number", "minimum": 10, "maximum": 3600}}

# Not in the spec, but a squad member with neither says nothing about who answers.
MEMBER_NEEDS = {"anyOf": [{"required": ["assistantId"]}, {"required": ["assistant"]}]}

KEPT: tuple[str, ...] = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength")
KEPT += ("maxLength", "minItems", "maxItems", "pattern", "format")
DISCRIMINATORS = ("provider", "type", "on")


class Deriver:
    """Turns OpenAPI 3.0 components into the router's JSON Schema 2020-12 subset."""

    def __init__(self, components: dict[str, Any]) -> None:
        self.components = components

    def component(self, ref: str) -> tuple[str, dict[str, Any]]:
        name = ref.rsplit("/", 1)[-1]
        return name, self.components[name]

    def definition(self, name: str) -> dict[str, Any]:
        src = self.components[name]
        props = {key: self.node(value) for key, value in src["properties"].items()}
        out: dict[str, Any] = {"x-noun": DEEP[name], "type": "object"}
        if name in ASSISTANTS:
            props.update(RESTORED)
            out["x-legacy"] = {key: advice for key, (_, advice) in LEGACY.items()}
        out["properties"] = props
        out["additionalProperties"] = False
        if src.get("required"):
            out["required"] = list(src["required"])
        if name == "SquadMemberDTO":
            out.update(MEMBER_NEEDS)
        return out

    def node(self, src: dict[str, Any]) -> dict[str, Any]:
        nullable = bool(src.get("nullable"))
        if "oneOf" in src or "anyOf" in src:
            out = self.union(src.get("oneOf") or src["anyOf"])
        elif len(src.get("allOf", ())) == 1:
            out = self.node(src["allOf"][0])
        elif "$ref" in src:
            name, comp = self.component(src["$ref"])
            out = {"$ref": f"#/$defs/{name}"} if name in DEEP else self.shallow(comp)
        else:
            out = self.scalar(src)
        if nullable:
            out = {"anyOf": [out, {"type": "null"}]} if "type" not in out else _with_null(out)
        return out

    def scalar(self, src: dict[str, Any]) -> dict[str, Any]:
        kind = src.get("type")
        enum = src.get("enum")
        # Spec bug: TransferPlan.sipVerb and BackoffPlan.type say "object" over string enums.
        if kind == "object" and enum and all(isinstance(v, str) for v in enum):
            kind = "string"
        out: dict[str, Any] = {"type": kind} if kind else {}
        if enum is not None and kind != "array":  # PROTOCOL §3.8: array-level enums are a spec defect
            out["enum"] = list(enum)
        out.update({key: src[key] for key in KEPT if key in src})
        if kind == "array" and "items" in src:
            out["items"] = self.node(src["items"])
        return out

    def shallow(self, comp: dict[str, Any]) -> dict[str, Any]:
        if "oneOf" in comp or "anyOf" in comp:
            return self.union(comp.get("oneOf") or comp["anyOf"])
        if comp.get("type", "object") == "object":
            return {"type": "object"}
        return self.scalar(comp)

    def union(self, branches: list[dict[str, Any]]) -> dict[str, Any]:
        rendered: list[dict[str, Any]] = []
        objects: list[dict[str, Any]] = []
        for branch in branches:
            if "$ref" in branch:
                name, comp = self.component(branch["$ref"])
                if name not in DEEP and comp.get("type", "object") == "object" and "oneOf" not in comp:
                    objects.append(comp)
                    continue
            rendered.append(self.node(branch))
        if objects:
            rendered.append(discriminated(objects))
        unique: list[dict[str, Any]] = []
        for schema in rendered:
            if schema not in unique:
                unique.append(schema)
        # A bare {"type": T} branch accepts everything its narrower T siblings do.
        bare = {s["type"] for s in unique if list(s) == ["type"] and isinstance(s["type"], str)}
        unique = [s for s in unique if list(s) == ["type"] or s.get("type") not in bare]
        return unique[0] if len(unique) == 1 else {"anyOf": unique}


def discriminated(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """{type: object} plus the property every branch pins to one value, if there is one."""

    def pinned(comp: dict[str, Any], key: str) -> list[Any] | None:
        enum = comp.get("properties", {}).get(key, {}).get("enum")
        return enum if isinstance(enum, list) and len(enum) == 1 else None

    for key in DISCRIMINATORS:
        if all(pinned(comp, key) for comp in objects):
            values: list[Any] = []
            for comp in objects:
                if (value := pinned(comp, key)[0]) not in values:  # type: ignore[index]
                    values.append(value)
            out: dict[str, Any] = {"type": "object"}
            if all(key in comp.get("required", ()) for comp in objects):
                out["required"] = [key]
            out["properties"] = {key: {"type": "string", "enum": values}}
            return out
    return {"type": "object"}


def _with_null(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema["type"]
    out = dict(schema, type=[*([kind] if isinstance(kind, str) else kind), "null"])
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def destination(
    branches: tuple[tuple[str, str], ...] = (
        ("number", "TransferDestinationNumber"),
        ("sip", "TransferDestinationSip"),
    ),
    noun: str = "a destination",
) -> dict[str, Any]:
    """A union chosen by `type`, so a problem is reported against the branch meant."""

    def branch(value: str, name: str) -> dict[str, Any]:
        return {
            "if": {"properties": {"type": {"const": value}}, "required": ["type"]},
            "then": {"$ref": f"#/$defs/{name}"},
        }

    return {
        "x-noun": noun,
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string", "enum": [value for value, _ in branches]}},
        "allOf": [branch(value, name) for value, name in branches],
    }


# ServerMessageResponseTransferDestinationRequest.destination and .message,
# ServerMessageResponseHandoffDestinationRequest.destination (typed only `object` in the
# spec; the handoff tool's destinations are these three)
TRANSFER_DESTINATION = (
    ("number", "TransferDestinationNumber"),
    ("sip", "TransferDestinationSip"),
    ("assistant", "TransferDestinationAssistant"),
)
HANDOFF_DESTINATION = (
    ("assistant", "HandoffDestinationAssistant"),
    ("squad", "HandoffDestinationSquad"),
    ("dynamic", "HandoffDestinationDynamic"),
)
TOOL_MESSAGE = (
    ("request-start", "ToolMessageStart"),
    ("request-complete", "ToolMessageComplete"),
    ("request-failed", "ToolMessageFailed"),
    ("request-response-delayed", "ToolMessageDelayed"),
)


def has_path(components: dict[str, Any], start: str, dotted: str) -> bool:
    """Whether a dotted path exists below a component (any branch of a union will do)."""
    nodes = [components[start]]
    for part in dotted.split("."):
        found = []
        while nodes:
            node = nodes.pop()
            if "$ref" in node:
                nodes.append(components[node["$ref"].rsplit("/", 1)[-1]])
                continue
            nodes.extend(node.get("allOf", []) + node.get("oneOf", []) + node.get("anyOf", []))
            if part in node.get("properties", {}):
                found.append(node["properties"][part])
        nodes = found
    return bool(nodes)


def derive(components: dict[str, Any], source: str) -> dict[str, Any]:
    """The whole schema document from OpenAPI `components.schemas` (the router-closure bundle
    or a whole Vapi OpenAPI document); `source` names it in the $comment."""
    for field, (path, _) in LEGACY.items():
        if path and not has_path(components, "CreateAssistantDTO", path):
            raise ValueError(f"legacy {field}: replacement {path} is not in the spec any more")
    deriver = Deriver(components)
    defs = {name: deriver.definition(name) for name in DEEP}
    defs["Destination"] = destination()
    defs["TransferDestination"] = destination(TRANSFER_DESTINATION, "a transfer destination")
    defs["HandoffDestination"] = destination(HANDOFF_DESTINATION, "a handoff destination")
    defs["ToolMessage"] = destination(TOOL_MESSAGE, "a tool message")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:vapi-router:vapi-payloads",
        "title": "The parts of Vapi's assistant-request reply that vapi-router checks at lint time",
        "$comment": f"Generated by tools/gen_vapi_schema.py from {source}; do not edit by hand.",
        "$defs": defs,
        "x-ended-reasons": ended_reasons(components),
    }


# The messages that carry an endedReason; its label values in router_call_outcomes_total.
ENDED_REASON_SOURCES = ("ServerMessageStatusUpdate", "ServerMessageEndOfCallReport", "Call")


def ended_reasons(components: dict[str, Any]) -> list[str]:
    """Every endedReason value Vapi's enums list (sorted, deduplicated)."""
    values: set[str] = set()
    for name in ENDED_REASON_SOURCES:
        enum = components.get(name, {}).get("properties", {}).get("endedReason", {}).get("enum", ())
        values.update(v for v in enum if isinstance(v, str))
    return sorted(values)
