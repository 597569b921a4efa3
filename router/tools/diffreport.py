"""`diff` output: regions that differ alike merged into rows, as a Markdown table or JSON. [pure]

A row is a product of classes (one set per axis) that all change the same way, OLD -> NEW;
an axis whose set holds every class reads "any". Rows are what an ops engineer reads in a
pull request: who calls, which number, what the CRM says, when, and both answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from router.runtime.decide import Answer
from router.tools.diff import Difference, DiffResult, Space
from router.tools.diffrows import Axes, Row, grouped
from router.tools.diffspace import ABSENT, shown

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# ---------------------------------------------------------------- cells


def _join(labels: Sequence[str], limit: int = 4) -> str:
    labels = sorted(dict.fromkeys(labels))
    more = f" (+{len(labels) - limit} more)" if len(labels) > limit else ""
    return " or ".join(labels[:limit]) + more


def _slices(space: Space, allowed: Sequence[frozenset[Any]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for s in space.slices:
        if all(bit in ok for bit, ok in zip(s.state, allowed, strict=True)):
            if out and out[-1][1] == s.start:
                out[-1] = (out[-1][0], s.end)
            else:
                out.append((s.start, s.end))
    return out


def _when(a: datetime, b: datetime, zone: ZoneInfo) -> str:
    a, b = a.astimezone(zone), b.astimezone(zone)
    first = f"{_DAYS[a.weekday()]} {a:%Y-%m-%d %H:%M}"
    same_day = (b - a).days < 1 and (a.date() == b.date() or (b.hour, b.minute) == (0, 0))
    last = f"{b:%H:%M}" if same_day else f"{_DAYS[b.weekday()]} {b:%m-%d %H:%M}"
    return f"{first}–{last}"


def _numbers(chosen: frozenset[Any], domain: frozenset[Any], label: Callable[[Any], str]) -> str:
    """`any`, the classes, or `any but …` when that is shorter."""
    if chosen == domain:
        return "any"
    left = domain - chosen
    if len(left) <= 2 < len(chosen):
        return "any but " + _join([label(k) for k in left])
    return _join([label(k) for k in chosen])


@dataclass(frozen=True, slots=True)
class Cells:
    caller: str
    dialled: str
    call: str  # phone number id, variables, message type
    crm: str
    time: str
    slices: list[tuple[datetime, datetime]]


def cells(space: Space, axes: Axes, domains: Sequence[frozenset[Any]], row: Row) -> Cells:
    full = [row[i] == domains[i] for i in range(len(row))]
    a = space.atoms
    caller = _numbers(row[0], domains[0], lambda k: a.caller.label(space.callers[k]))
    dialled = _numbers(
        row[1], domains[1], lambda k: a.dialled.label(space.dialled[k]).replace("anonymous", "none")
    )
    i = 2
    call = [] if full[i] else [f"phone number id {_join([shown(v) for v in row[i]])}"]
    i += 1
    for name in axes.variables:
        call += [] if full[i] else [f"{name}={_join([shown(v) for v in row[i]])}"]
        i += 1
    crm = [] if full[i] else [f"status {_join(list(row[i]))}"]
    i += 1
    for tag in axes.tags:
        if not full[i]:
            crm.append(f"tag {tag}" if True in row[i] else f"no tag {tag}")
        i += 1
    for name in axes.fields:
        if not full[i]:
            values = [v for v in row[i] if v != ABSENT]
            crm.append(
                f"no {name}"
                if not values
                else f"{name}={_join([shown(v) for v in values])}" + (" or none" if ABSENT in row[i] else "")
            )
        i += 1
    time = []
    allowed = list(row[i : i + axes.columns])
    for (label, _), ok in zip(space.columns, allowed, strict=True):
        if len(ok) == 1:
            time.append(f"{label} {'open' if True in ok else 'closed'}")
    i += axes.columns
    if not full[i]:
        call.append("transfer-destination-request" if True in row[i] else "assistant-request")
    return Cells(
        caller,
        dialled,
        "; ".join(call) or "any",
        "; ".join(crm) or "any",
        " and ".join(time) or "any time",
        _slices(space, allowed),
    )


def answer_text(answer: Answer, *, transfer: bool) -> str:
    route = answer.route or ("no transfer route" if transfer else "default")
    return f"{route} → {answer.target or _inline(answer)}"


def _inline(answer: Answer) -> str:
    reply = answer.reply
    if not reply:
        return "{} (no transfer)"
    kind = next(iter(reply))
    return f"{kind} {_short(reply[kind])}"


def _short(value: Any, limit: int = 40) -> str:
    if isinstance(value, dict):
        value = value.get("number") or value.get("sipUri") or value.get("name") or "{…}"
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reply_change(old: Answer, new: Answer) -> str:
    """The top-level reply keys that differ, old -> new."""
    a, b = old.reply, new.reply
    keys = [k for k in dict.fromkeys((*a, *b)) if a.get(k) != b.get(k)]
    return "; ".join(f"{k} {_short(a.get(k, '—'))} → {_short(b.get(k, '—'))}" for k in keys[:3])


def example_flags(d: Difference, zone: ZoneInfo) -> str:
    f = d.region.facts
    flags = [f"--caller {f.caller or 'anonymous'}", f"--dialled {f.dialled or 'none'}"]
    flags.append(f"--at {f.at.astimezone(zone).isoformat(timespec='minutes')}")
    if f.caller and f.crm_status not in ("not_found", "disabled"):
        flags.append(f"--crm-status {f.crm_status}")
    if f.tags and f.caller:
        flags.append("--tags " + ",".join(sorted(f.tags)))
    flags += [f"--crm {k}={v}" for k, v in sorted(f.crm.items()) if f.caller]
    flags += [f"--var {k}={v}" for k, v in sorted(f.variables.items())]
    if f.phone_number_id:
        flags.append(f"--phone-number-id {f.phone_number_id}")
    if d.region.transfer:
        flags.append("--transfer")
    return " ".join(flags)


# ---------------------------------------------------------------- renderers


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def diff_text(result: DiffResult, old: str, new: str) -> str:
    space = result.space
    zone = ZoneInfo(space.zone)
    window = f"{result.start} + {result.days} day{'s' * (result.days != 1)} ({space.zone})"
    if not result.differences:
        lines = [
            f"No difference: {old} and {new} answer every call alike over {window}; "
            f"{result.regions:,} regions compared."
        ]
        return "\n".join(lines + [f"note: {n}" for n in result.notes])
    axes, domains, groups = grouped(result)
    rows = [
        (d, cells(space, axes, domains, row))
        for g in groups
        for row, d in zip(g.rows, g.examples, strict=True)
    ]
    show_call = any(c.call != "any" for _, c in rows)
    head = [
        "#",
        "caller",
        "dialled",
        *(["call"] if show_call else []),
        "CRM",
        "time",
        f"OLD ({old})",
        f"NEW ({new})",
    ]
    out = [
        f"{len(rows)} group{'s' * (len(rows) != 1)} of calls "
        f"answer{'s' * (len(rows) == 1)} differently, {old} → {new}, over {window}; "
        f"{result.regions:,} regions compared.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    examples = []
    for n, (d, c) in enumerate(rows, 1):
        transfer = d.region.transfer
        new_text = answer_text(d.new, transfer=transfer)
        if d.change == "reply":
            new_text = f"same route and target; reply {reply_change(d.old, d.new)}"
        when = c.time
        if c.slices and c.time != "any time":
            more = f" (+{len(c.slices) - 2} more)" if len(c.slices) > 2 else ""
            when += ": " + ", ".join(_when(a, b, zone) for a, b in c.slices[:2]) + more
        cols = [str(n), c.caller, c.dialled, *([c.call] if show_call else []), c.crm, when]
        cols += [answer_text(d.old, transfer=transfer), new_text]
        out.append("| " + " | ".join(_cell(x) for x in cols) + " |")
        examples.append(f"  {n}. {example_flags(d, zone)}")
    out += ["", "For example (`vapi-router explain PATH …` shows why):", *examples]
    return "\n".join(out + [f"note: {n}" for n in result.notes])


def _answer_json(answer: Answer) -> dict[str, Any]:
    return {
        "route": answer.route,
        "target": answer.target,
        "reply": answer.reply,
        "fallback_reason": answer.fallback_reason,
    }


def diff_json(result: DiffResult, old: str, new: str) -> str:
    space = result.space
    zone = ZoneInfo(space.zone)
    axes, domains, groups = grouped(result)
    found = []
    for g in groups:
        for row, d in zip(g.rows, g.examples, strict=True):
            c = cells(space, axes, domains, row)
            found.append(
                {
                    "caller": c.caller,
                    "dialled": c.dialled,
                    "call": c.call,
                    "crm": c.crm,
                    "time": c.time,
                    "slices": [
                        [a.astimezone(zone).isoformat(), b.astimezone(zone).isoformat()] for a, b in c.slices
                    ],
                    "change": d.change,
                    "old": _answer_json(d.old),
                    "new": _answer_json(d.new),
                    "example": example_flags(d, zone),
                }
            )
    data = {
        "old": old,
        "new": new,
        "from": result.start.isoformat(),
        "days": result.days,
        "timezone": space.zone,
        "regions": result.regions,
        "same": not result.differences,
        "differences": found,
        "notes": result.notes,
    }
    return json.dumps(data, indent=2, ensure_ascii=False)
