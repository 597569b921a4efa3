"""Stage 4: checked Documents -> Policy: conditions, targets, prepared replies, route indexes. Pure.

The input has passed schema and semantic checks, so this stage asserts rather than reports:
a leftover problem here is a bug in the checks, not in the policy. Conditions compile in
condcompile.py, the route index in routeindex.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from router.policy.compilebase import PRIMARY, PolicySet, parse_template, source
from router.policy.condcompile import ConditionCompiler, reads_crm
from router.policy.document import Document
from router.policy.replycheck import check_rendered
from router.policy.routeindex import build_index
from router.policy.statecompile import state_settings
from router.policy.toolroutes import tool_message
from router.runtime.model import CrmSettings, Policy, Route, Settings, Target, Template, Variant
from router.runtime.replies import splice
from router.runtime.schedconds import ScheduleClock
from router.runtime.schedules import Schedule, compile_schedule


class Compiler(ConditionCompiler):
    def __init__(self, docs: Sequence[Document], *, crm_file: str | None = None) -> None:
        self.set = PolicySet(docs)
        s = self.set.settings
        self.settings = Settings(
            timezone=s.get("timezone", "UTC"),
            region=s.get("region"),
            deadline_ms=s.get("deadline_ms", 4000),
            forward=s.get("forward"),
        )
        self.crm_file = crm_file
        self.schedules: dict[str, Schedule] = {
            name: compile_schedule(name, raw, default_timezone=self.settings.timezone)
            for name, (_, raw) in self.set.schedules.items()
        }
        self.clocks = {name: ScheduleClock(s) for name, s in self.schedules.items()}
        self.targets: dict[str, Target] = {}

    # ------------------------------------------------------------ targets

    def named_target(self, name: str) -> Target:
        if name not in self.targets:
            doc, pointer, raw = self.set.targets[name]
            self.targets[name] = self.target(doc, pointer, raw, name=name, salt=name)
        return self.targets[name]

    def target(
        self, doc: Document, pointer: str, raw: Any, *, name: str | None = None, salt: str = ""
    ) -> Target:
        if isinstance(raw, str):
            return self.named_target(raw)
        src = source(doc, pointer)
        kind = next(k for k in PRIMARY if k in raw)
        if kind == "split":
            variants: list[Variant] = []
            upto = 0
            for i, v in enumerate(raw["split"]):
                upto += int(v["weight"])
                sub = self.target(doc, f"{pointer}/split/{i}/then", v["then"], salt=f"{salt}/{i}")
                variants.append(Variant(upto, sub))
            return Target(name, "split", src, variants=tuple(variants), total_weight=upto, salt=salt)
        # a transfer's plain-string message goes as the ToolMessage Vapi's schema requires
        body = {
            k: _templated(tool_message(v) if k == "message" else v)
            for k, v in raw.items()
            if k not in ("description", "pool")
        }
        templated = _has_template(body)
        prepared = None if templated else orjson.dumps(body)
        spliced = splice(kind, body) if templated else None
        return Target(
            name,
            kind,
            src,
            body=body,
            templated=templated,
            prepared=prepared,
            spliced=spliced,
            pool=raw.get("pool"),
        )

    # ------------------------------------------------------------ policy

    def routes(self, entries: list[tuple[Document, str, dict[str, Any]]]) -> tuple[Route, ...]:
        out = []
        for position, (doc, pointer, raw) in enumerate(entries):
            then = self.target(doc, pointer + "/then", raw["then"], salt=raw["id"])
            out.append(
                Route(raw["id"], self.condition(raw.get("when")), then, source(doc, pointer), position)
            )
        return tuple(out)

    def crm(self) -> CrmSettings | None:
        if self.set.crm is None:
            return None
        _, raw = self.set.crm
        http = raw.get("http") or {}
        oauth2 = http.get("oauth2")
        return CrmSettings(
            file=self.crm_file if "file" in raw else None,
            url=http.get("url"),
            headers=dict(http.get("headers") or {}),
            tags=http.get("tags"),
            fields=dict(http.get("fields") or {}),
            timeout_ms=int(raw.get("timeout_ms", 1000)),
            cache_ttl_s=float(raw.get("cache_ttl_s", 300)),
            method=str(http.get("method", "GET")).upper(),
            body=http.get("body"),
            found=http.get("found"),
            tags_split=http.get("tags_split"),
            number_format=http.get("number_format", "e164"),
            oauth2={k: str(v) for k, v in oauth2.items()} if isinstance(oauth2, dict) else None,
            sqlite=self.crm_file if "sqlite" in raw else None,
            postgres=dict(raw["postgres"]) if isinstance(raw.get("postgres"), dict) else None,
            max_body_bytes=int(raw.get("max_body_bytes", 1024 * 1024)),
        )

    def policy(self, version: str) -> Policy:
        assert self.set.default is not None, "checks guarantee a default"
        doc, pointer, raw_default = self.set.default
        default = self.target(doc, pointer, raw_default, salt="default")
        fallback = default
        if "fallback" in self.set.settings:
            fdoc = next(
                d
                for d in self.set.docs
                if isinstance(d.data, dict) and "fallback" in (d.data.get("settings") or {})
            )
            fallback = self.target(fdoc, "/settings/fallback", self.set.settings["fallback"], salt="fallback")
        routes = self.routes(self.set.routes)
        transfers = self.routes(self.set.transfers)
        handoffs = self.routes(self.set.handoffs)
        for name in self.set.targets:
            self.named_target(name)
        crm = self.crm()
        reads: dict[int, bool] = {}  # routes share named targets: test each one once

        def target_reads(t: Target) -> bool:
            if id(t) not in reads:
                reads[id(t)] = _target_reads_crm(t)
            return reads[id(t)]

        needs_crm = crm is not None and (
            any(reads_crm(r.when) or target_reads(r.then) for r in (*routes, *transfers, *handoffs))
            or target_reads(default)
        )
        return Policy(
            version=version,
            files=tuple(d.file for d in self.set.docs),
            settings=self.settings,
            crm=crm,
            schedules=self.schedules,
            targets=self.targets,
            routes=routes,
            transfers=transfers,
            default=default,
            fallback=fallback,
            index=build_index(routes),
            transfer_index=build_index(transfers),
            handoffs=handoffs,
            handoff_index=build_index(handoffs),
            needs_crm=needs_crm,
            check_reply=check_rendered,
            state=state_settings(
                self.set.docs,
                (*routes, *transfers),
                [default, fallback, *self.targets.values(), *(r.then for r in routes)],
            ),
        )


def _templated(value: Any) -> Any:
    if isinstance(value, str):
        return parse_template(value)
    if isinstance(value, dict):
        return {k: _templated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_templated(v) for v in value]
    return value


def _has_template(value: Any) -> bool:
    if isinstance(value, Template):
        return True
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return False


def _template_parts(value: Any) -> list[str | tuple[str, str]]:
    if isinstance(value, Template):
        return list(value.parts)
    if isinstance(value, dict):
        return [p for v in value.values() for p in _template_parts(v)]
    if isinstance(value, list):
        return [p for v in value for p in _template_parts(v)]
    return []


def _target_reads_crm(target: Target) -> bool:
    if target.kind == "split":
        return any(_target_reads_crm(v.target) for v in target.variants)
    return any(isinstance(p, tuple) and p[0] == "crm" for p in _template_parts(target.body))


def target_reads_crm(target: Target) -> bool:
    """Whether rendering this target (any split variant) needs CRM fields."""
    return _target_reads_crm(target)


def version_of(texts: Sequence[tuple[str, str]]) -> str:
    """A short content hash of the policy set: what /readyz and the decision log show."""
    h = hashlib.sha256()
    for name, text in texts:
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()[:12]


def compile_policy(docs: Sequence[Document], *, version: str = "", crm_file: str | None = None) -> Policy:
    """Checked documents -> Policy (trusts its input; run the checks first)."""
    return Compiler(docs, crm_file=crm_file).policy(version)
