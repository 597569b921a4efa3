"""The tool call behind a transfer- or handoff-destination-request, as facts and conditions. Pure.

`parameters` (the tool call's arguments) and `assistant` (the name of the assistant that
asks) ride in `Facts.variables` under keys no Vapi variable can have (they start with a NUL
character), so the hot assistant-request path keeps its Facts unchanged and the CRM lookup
carries them along like any variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from router.runtime.conditions import Condition
from router.runtime.facts import scalar_text
from router.runtime.facttypes import Facts

ASSISTANT_KEY = "\x00assistant"
PARAMETER_PREFIX = "\x00parameter:"


def tool_arguments(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """The arguments of the tool call a message asks about: `message.parameters` (Vapi's
    handoff-destination-request), else the function arguments of `message.toolCall` or of
    the first entry of `message.toolCallList` (an object, or JSON text of one)."""
    found = message.get("parameters")
    if isinstance(found, Mapping):
        return found
    call = message.get("toolCall")
    if not isinstance(call, Mapping):
        calls = message.get("toolCallList")
        call = calls[0] if isinstance(calls, list) and calls and isinstance(calls[0], Mapping) else {}
    function = call.get("function")
    args = function.get("arguments") if isinstance(function, Mapping) else None
    if isinstance(args, str):
        try:
            args = orjson.loads(args)
        except orjson.JSONDecodeError:
            return {}
    return args if isinstance(args, Mapping) else {}


def with_tool_call(facts: Facts, message: Mapping[str, Any]) -> Facts:
    """`facts` plus the asking assistant's name and the tool call's scalar arguments."""
    extra: dict[str, str] = {}
    assistant = message.get("assistant")
    name = assistant.get("name") if isinstance(assistant, Mapping) else None
    if isinstance(name, str) and name:
        extra[ASSISTANT_KEY] = name
    for key, value in tool_arguments(message).items():
        text = scalar_text(value)
        if isinstance(key, str) and text is not None:
            extra[PARAMETER_PREFIX + key] = text
    if not extra:
        return facts
    return replace(facts, variables={**facts.variables, **extra})


def visible_variables(variables: Mapping[str, str]) -> dict[str, str]:
    """The call's own variables, without the tool-call facts (for logs and explain)."""
    return {k: v for k, v in variables.items() if not k.startswith("\x00")}


@dataclass(frozen=True, slots=True)
class Parameter(Condition):
    """A tool-call argument is one of the values (compared as text)."""

    name: str
    values: frozenset[str]

    def test(self, facts: Facts) -> bool:
        return facts.variables.get(PARAMETER_PREFIX + self.name) in self.values

    def describe(self) -> str:
        return f"parameter {self.name} in [{', '.join(sorted(self.values))}]"

    def actual(self, facts: Facts) -> str:
        return f"{self.name} = {facts.variables.get(PARAMETER_PREFIX + self.name, '(none)')}"


@dataclass(frozen=True, slots=True)
class AssistantIs(Condition):
    """The assistant that asks is one of these names."""

    names: frozenset[str]

    def test(self, facts: Facts) -> bool:
        return facts.variables.get(ASSISTANT_KEY) in self.names

    def describe(self) -> str:
        return f"assistant in [{', '.join(sorted(self.names))}]"

    def actual(self, facts: Facts) -> str:
        return f"assistant = {facts.variables.get(ASSISTANT_KEY, '(none)')}"
