"""Render problems, case results and explain traces as text, JSON, GitHub annotations or JUnit. Pure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from router.errors import PolicyError
from router.tools.cases import CaseResult


def problems_text(problems: Sequence[PolicyError]) -> str:
    lines = [str(p) for p in sorted(problems)]
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if problems:
        lines.append(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    return "\n".join(lines)


def problems_json(problems: Sequence[PolicyError]) -> str:
    return json.dumps([p.as_dict() for p in sorted(problems)], indent=2)


def _gh(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def problems_github(problems: Sequence[PolicyError]) -> str:
    """GitHub workflow commands: one ::error/::warning annotation per problem."""
    return "\n".join(
        f"::{p.severity} file={_gh(p.file)},line={p.line},col={p.column},title={p.code}::{_gh(p.message)}"
        for p in sorted(problems)
    )


def cases_text(results: Sequence[CaseResult], uncovered: Sequence[str] | None = None) -> str:
    lines = []
    for r in results:
        if not r.ok:
            lines.append(f"FAIL {r.file}:{r.line}: {r.name}")
            lines.extend(f"  {f}" for f in r.failures)
    passed = sum(r.ok for r in results)
    lines.append(
        f"{len(results)} case{'s' * (len(results) != 1)}, {passed} passed, {len(results) - passed} failed"
    )
    if uncovered is not None:
        if uncovered:
            lines.append(f"routes no case reaches ({len(uncovered)}): {', '.join(uncovered)}")
        elif results:  # no results at all: no policy loaded, so no claim about its routes
            lines.append("every route is reached by a case")
    return "\n".join(lines)


def cases_json(results: Sequence[CaseResult], uncovered: Sequence[str] | None = None) -> str:
    out: dict[str, Any] = {
        "cases": [
            {
                "file": r.file,
                "line": r.line,
                "name": r.name,
                "ok": r.ok,
                "route": r.route,
                "failures": list(r.failures),
            }
            for r in results
        ],
        "passed": sum(r.ok for r in results),
        "failed": sum(not r.ok for r in results),
    }
    if uncovered is not None:
        out["uncovered"] = list(uncovered)
    return json.dumps(out, indent=2)


def cases_junit(results: Sequence[CaseResult]) -> str:
    failed = sum(not r.ok for r in results)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name="vapi-router" tests="{len(results)}" failures="{failed}" errors="0">',
    ]
    for r in results:
        head = f"  <testcase classname={quoteattr(r.file)} name={quoteattr(r.name)} file={quoteattr(r.file)}"
        head += f' line="{r.line}"'
        if r.ok:
            lines.append(head + "/>")
        else:
            body = escape("\n".join(r.failures))
            lines.append(head + ">")
            lines.append(f"    <failure message={quoteattr(r.failures[0])}>{body}</failure>")
            lines.append("  </testcase>")
    lines.append("</testsuite>")
    return "\n".join(lines)


def explain_text(data: dict[str, Any]) -> str:
    lines = []
    for step in data["trace"]:
        mark = "MATCH" if step["matched"] else "no   "
        lines.append(f"{mark} {step['route']}: {step['reason']}")
    route = data["route"] or "default (no route matched)"
    lines.append(f"route:  {route}")
    lines.append(f"target: {data['target'] or '(inline)'}")
    if data.get("fallback_reason"):
        lines.append(f"fallback: {data['fallback_reason']}")
    lines.append(f"reply:  {json.dumps(data['reply'])}")
    return "\n".join(lines)
