"""Render problems, case results and explain traces as text, JSON, GitHub annotations or JUnit. Pure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from router.errors import PolicyError
from router.tools.cases import CaseResult, target_label
from router.tools.coverage import Coverage


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


def _gh_property(text: str) -> str:
    """A workflow command property: message escaping plus `,` and `:` (GitHub's toolkit)."""
    return _gh(text).replace(":", "%3A").replace(",", "%2C")


def problems_github(problems: Sequence[PolicyError]) -> str:
    """GitHub workflow commands: one ::error/::warning annotation per problem."""
    return "\n".join(
        f"::{p.severity} file={_gh_property(p.file)},line={p.line},col={p.column},title={p.code}"
        f"::{_gh(p.message)}"
        for p in sorted(problems)
    )


def coverage_line(cov: Coverage) -> str:
    line = f"coverage: {cov.reached} of {len(cov.total)} ({cov.percent:.1f}%)"
    if cov.missed:
        line += f"; not reached ({len(cov.missed)}): {', '.join(cov.missed)}"
    return line


def cases_text(results: Sequence[CaseResult], cov: Coverage | None = None, *, verbose: bool = False) -> str:
    lines = []
    for r in results:
        if not r.ok:
            lines.append(f"FAIL {r.file}:{r.line}: {r.name}")
            lines.extend(f"  {f}" for f in r.failures)
        elif verbose:
            lines.append(f"ok   {r.file}:{r.line}: {r.name} ({' / '.join(r.reached) or 'no transfer'})")
    passed = sum(r.ok for r in results)
    lines.append(
        f"{len(results)} case{'s' * (len(results) != 1)}, {passed} passed, {len(results) - passed} failed"
    )
    if cov is not None and results:  # no results: no policy ran, so no claim about its routes
        lines.append(coverage_line(cov))
    return "\n".join(lines)


def cases_json(results: Sequence[CaseResult], cov: Coverage | None = None) -> str:
    out: dict[str, Any] = {
        "cases": [
            {
                "file": r.file,
                "line": r.line,
                "name": r.name,
                "ok": r.ok,
                "route": r.route,
                "reached": list(r.reached),
                "failures": list(r.failures),
            }
            for r in results
        ],
        "passed": sum(r.ok for r in results),
        "failed": sum(not r.ok for r in results),
    }
    if cov is not None:
        out["coverage"] = {
            "reached": cov.reached,
            "total": len(cov.total),
            "percent": round(cov.percent, 1),
        }
        out["uncovered"] = list(cov.missed)
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
    lines.append(f"target: {target_label(data['target'], data['reply'])}")
    if data.get("fallback_reason"):
        lines.append(f"fallback: {data['fallback_reason']}")
    lines.append(f"reply:  {json.dumps(data['reply'])}")
    return "\n".join(lines)
