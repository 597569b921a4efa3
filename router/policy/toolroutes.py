"""What `transfers:` and `handoffs:` routes may say that assistant-request routes may not (DESIGN §9). Pure.

A transfer or handoff answers a tool call of the assistant already on the line, so its
routes may look at the tool call (`parameters`, `assistant`) and its replies may carry a
`message` (transfers and handoffs) and a `result` (handoffs). An assistant-request has no
tool call: there those keys are an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

# routes section -> the context its targets are checked in
CONTEXTS: Final = {"routes": "route", "transfers": "transfer", "handoffs": "handoff"}
TOOL_CONTEXTS: Final = ("transfer", "handoff")
TOOL_CONDITIONS: Final = ("parameters", "assistant")
ANSWERS: Final = ("destination", "error", "split")


def destination_kind(context: str) -> str:
    """The vapi_payloads kind a `destination` is checked as, in this context. A named target
    may serve a transfer too, so it gets the widest (number, SIP or assistant); an
    assistant-request route narrows it below (`misplaced_keys`)."""
    if context == "handoff":
        return "handoffDestination"
    if context in ("transfer", "named"):
        return "transferDestination"
    return "destination"


def misplaced_keys(raw: Any, context: str) -> Iterator[tuple[str, str]]:
    """(key, message) for each key of an inline target that its context cannot send."""
    if not isinstance(raw, dict):
        return
    tool = context in TOOL_CONTEXTS or context == "named"
    for key in ("message", "result"):
        if key not in raw:
            continue
        if not tool:
            yield (
                key,
                f"`{key}` goes only in a transfers: or handoffs: route; an assistant-request has "
                "no tool call",
            )
        elif key == "result" and context == "transfer":
            yield key, "`result` goes only in a handoffs: route (Vapi's transfer reply has none)"
        elif not any(k in raw for k in ("destination", "error")):
            yield key, f"`{key}` goes beside a `destination` or an `error`"
    dest = raw.get("destination")
    if context in ("route", "default") and isinstance(dest, dict) and dest.get("type") == "assistant":
        yield (
            "destination",
            (
                "an assistant-request cannot answer with an assistant destination; use assistantId or "
                "assistant (destination type assistant is for transfers)"
            ),
        )


def named_use_problem(named: Any, context: str) -> str | None:
    """Why a named target cannot answer in `context` (an assistant-request route or the
    default), or None."""
    if context not in ("route", "default") or not isinstance(named, dict):
        return None
    dest = named.get("destination")
    if isinstance(dest, dict) and dest.get("type") == "assistant":
        return "it is an assistant destination, which only a transfer can answer with"
    extra = [k for k in ("message", "result") if k in named]
    if extra:
        return f"it has `{extra[0]}`, which only a transfer or handoff can send"
    return None


def tool_conditions(
    when: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path inside `when`, key) of every `parameters`/`assistant` condition, nested too."""
    if not isinstance(when, dict):
        return
    for key, value in when.items():
        if key in TOOL_CONDITIONS:
            yield (*path, key), key
        elif key in ("any", "all") and isinstance(value, list):
            for i, sub in enumerate(value):
                yield from tool_conditions(sub, (*path, key, i))
        elif key == "not":
            yield from tool_conditions(value, (*path, key))


def tool_message(value: Any) -> Any:
    """A transfer's `message` as Vapi's schema takes it: a plain string becomes the
    request-start ToolMessage with that content; an object goes as written."""
    if isinstance(value, str):
        return {"type": "request-start", "content": value}
    return value
