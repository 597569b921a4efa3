"""`vapi-router init DIR`: a small, working policy set to start from. [edge]

A policy (schedule, CRM tags, a blocklist, a transfer number), its embedded CRM file and a
`policy.test.yaml` whose cases pass; `lint --strict`, `test` and `fmt --check` are clean on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

POLICY = """\
# A starting policy: replace the assistant ids and numbers with yours, then
#   vapi-router lint --strict .   every problem, positioned
#   vapi-router test .            the cases in policy.test.yaml
#   vapi-router serve .           the webhook (see the README for auth)
# Editors: `vapi-router schema > policy.schema.json` and a first line of
#   # yaml-language-server: $schema=policy.schema.json
version: 1
settings:
  timezone: America/New_York
  region: US                   # numbers written without +1 are read as US numbers
  deadline_ms: 3000
  fallback: reception          # what callers get when the CRM is slow or anything fails

crm:
  file: crm.csv                # number, tags (a;b), then any fields: ${crm.name}
  timeout_ms: 800

schedules:
  office:
    weekly: {mon-fri: ["09:00-17:00"]}

lists:
  blocked: ["+15550000001"]

targets:
  reception:
    assistantId: 00000000-0000-4000-8000-000000000001
    assistantOverrides: {variableValues: {caller: "${caller}"}}
  vip-desk:
    assistantId: 00000000-0000-4000-8000-000000000002
    assistantOverrides: {variableValues: {name: "${crm.name}"}}
  after-hours:
    assistantId: 00000000-0000-4000-8000-000000000003

routes:
  - id: blocked
    when: {caller: {in: blocked}}
    then: {error: "Sorry, we can't take your call."}

  - id: vip
    description: callers tagged vip in crm.csv, greeted by name
    when: {tags: [vip]}
    then: vip-desk

  - id: after-hours
    when: {outside: office}
    then: after-hours

default: reception
"""

CRM = """\
number,tags,name
+15555550101,vip,Dana
+15555550102,,Sam
"""

CASES = """\
# Run with `vapi-router test .`; each case is a call and what it must be answered with.
cases:
  - name: a blocked caller hears the error
    call: {caller: "+15550000001", dialled: "+15555550100", at: "2026-11-16T10:00:00-05:00"}
    expect:
      route: blocked
      reply: {error: "Sorry, we can't take your call."}

  - name: Dana (vip in crm.csv) gets the VIP desk, by name
    call: {caller: "+15555550101", dialled: "+15555550100", at: "2026-11-16T10:00:00-05:00"}
    expect:
      route: vip
      target: vip-desk
      reply:
        assistantId: 00000000-0000-4000-8000-000000000002
        assistantOverrides: {variableValues: {name: Dana}}

  - name: Sam (no tags) in office hours gets reception
    call: {caller: "+15555550102", dialled: "+15555550100", at: "2026-11-16T10:00:00-05:00"}
    expect: {route: null, target: reception}

  - name: after 17:00 the after-hours assistant answers
    call: {caller: "+15555550102", dialled: "+15555550100", at: "2026-11-16T19:00:00-05:00"}
    expect: {route: after-hours, target: after-hours}
"""

FILES = {"policy.yaml": POLICY, "crm.csv": CRM, "policy.test.yaml": CASES}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("init", help="write a working policy set (policy, CRM file, passing tests) into DIR")
    p.add_argument("dir", metavar="DIR", help="a new or empty directory")
    p.set_defaults(func=cmd_init)


def init(target: Path) -> list[Path]:
    """Write the set into `target` (created if missing); raises FileExistsError when it is not
    an empty directory."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} is not empty" if target.is_dir() else f"{target} is a file")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in FILES.items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    try:
        written = init(target)
    except FileExistsError as exc:
        print(f"vapi-router init: {exc}: nothing written (choose a new or empty directory)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"vapi-router init: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print(f"next: vapi-router lint --strict {target} && vapi-router test {target}")
    return 0
