"""Stage 4: checked Documents -> Policy: conditions, targets, prepared replies, route indexes. Pure.

The input has passed schema and semantic checks, so this stage asserts rather than reports:
a leftover problem here is a bug in the checks, not in the policy.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import regex

from router.policy.document import Document, pointer_of
from router.policy.replycheck import check_rendered
from router.policy.statecompile import STATE_CONDITIONS, state_condition, state_settings
from router.policy.toolroutes import tool_message
from router.runtime import phone
from router.runtime.conditions import (
    All,
    Always,
    Anonymous,
    AnyOf,
    Condition,
    CrmField,
    CrmStatusIs,
    Not,
    NumberCountry,
    NumberRegex,
    NumberSet,
    NumberType,
    PhoneNumberId,
    Tags,
    Variable,
)
from router.runtime.facts import scalar_text
from router.runtime.model import (
    TARGET_KINDS,
    CrmSettings,
    Decision,
    Policy,
    Route,
    RouteIndex,
    Settings,
    Source,
    Target,
    Template,
    Variant,
)
from router.runtime.replies import splice
from router.runtime.schedconds import Open, ScheduleClock, ScheduleRoutes
from router.runtime.schedules import Schedule, compile_schedule
from router.runtime.sip import SipMatch, compile_patterns, is_sip
from router.runtime.toolcall import AssistantIs, Parameter

TEMPLATE = re.compile(r"\$\{([^}]*)\}")
PRIMARY = (*TARGET_KINDS, "split")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    # Policy values are schema-checked scalars; they compare with the call's facts as text.
    return scalar_text(value) or ""


def parse_template(text: str) -> Template | str:
    """'Hi ${crm.name}' -> Template(('Hi ', ('crm', 'name'))); plain text stays a str."""
    if "${" not in text:
        return text
    parts: list[str | tuple[str, str]] = []
    last = 0
    for m in TEMPLATE.finditer(text):
        if m.start() > last:
            parts.append(text[last : m.start()])
        ref = m.group(1).strip()
        head, _, rest = ref.partition(".")
        parts.append(("crm", rest) if head == "crm" else (ref, ""))
        last = m.end()
    if last < len(text):
        parts.append(text[last:])
    return Template(tuple(parts))


def template_refs(text: str) -> list[str]:
    return [m.group(1).strip() for m in TEMPLATE.finditer(text)]


class _Set:
    """The merged policy set: each section with the document and pointer it came from."""

    def __init__(self, docs: Sequence[Document]) -> None:
        self.docs = docs
        self.settings: dict[str, Any] = {}
        self.crm: tuple[Document, dict[str, Any]] | None = None
        self.default: tuple[Document, str, Any] | None = None
        self.schedules: dict[str, tuple[Document, Any]] = {}
        self.lists: dict[str, list[str]] = {}
        self.targets: dict[str, tuple[Document, str, Any]] = {}
        self.routes: list[tuple[Document, str, dict[str, Any]]] = []
        self.transfers: list[tuple[Document, str, dict[str, Any]]] = []
        self.handoffs: list[tuple[Document, str, dict[str, Any]]] = []
        for doc in docs:
            data = doc.data if isinstance(doc.data, dict) else {}
            self.settings.update(data.get("settings") or {})
            if "crm" in data:
                self.crm = (doc, data["crm"])
            if "default" in data:
                self.default = (doc, "/default", data["default"])
            for name, raw in (data.get("schedules") or {}).items():
                self.schedules[name] = (doc, raw)
            self.lists.update(data.get("lists") or {})
            for name, raw in (data.get("targets") or {}).items():
                self.targets[name] = (doc, pointer_of("targets", name), raw)
            for i, raw in enumerate(data.get("routes") or []):
                self.routes.append((doc, pointer_of("routes", i), raw))
            for i, raw in enumerate(data.get("transfers") or []):
                self.transfers.append((doc, pointer_of("transfers", i), raw))
            for i, raw in enumerate(data.get("handoffs") or []):
                self.handoffs.append((doc, pointer_of("handoffs", i), raw))


def source(doc: Document, pointer: str) -> Source:
    return Source(doc.file, pointer, doc)


class Compiler:
    def __init__(self, docs: Sequence[Document], *, crm_file: str | None = None) -> None:
        self.set = _Set(docs)
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

    # ------------------------------------------------------------ numbers

    def number_entries(self, entries: list[str]) -> tuple[frozenset[str], frozenset[str]]:
        exact: set[str] = set()
        prefixes: set[str] = set()
        for entry in entries:
            if entry.endswith("*"):
                prefixes.add(entry[:-1])
            else:
                e164 = phone.normalise(entry, self.settings.region)
                assert e164 is not None, entry
                exact.add(e164)
        return frozenset(exact), frozenset(prefixes)

    def number_condition(self, which: str, raw: Any) -> Condition:
        if not isinstance(raw, dict):
            entries = [str(x) for x in as_list(raw)]
            sips = [e for e in entries if is_sip(e)]
            numbers = [e for e in entries if not is_sip(e)]
            exact, prefixes = self.number_entries(numbers)
            label = "is " + ", ".join(numbers)
            if not sips:
                return _numberset(which, exact, prefixes, label)
            sip = SipMatch(which, compile_patterns(sips), ", ".join(sips))
            return AnyOf((_numberset(which, exact, prefixes, label), sip)) if numbers else sip
        parts: list[Condition] = []
        if "prefix" in raw:
            prefixes = frozenset(p.rstrip("*") for p in as_list(raw["prefix"]))
            parts.append(
                _numberset(which, frozenset(), prefixes, "starts with " + ", ".join(sorted(prefixes)))
            )
        if "in" in raw:
            names = as_list(raw["in"])
            exact, prefixes = self.number_entries([e for n in names for e in self.set.lists[n]])
            parts.append(_numberset(which, exact, prefixes, "in " + ", ".join(names)))
        if "regex" in raw:
            parts.append(NumberRegex(which, regex.compile(raw["regex"])))
        if "country" in raw:
            parts.append(NumberCountry(which, frozenset(c.upper() for c in as_list(raw["country"]))))
        if "type" in raw:
            parts.append(NumberType(which, frozenset(as_list(raw["type"]))))
        if "anonymous" in raw:
            parts.append(Anonymous(which, bool(raw["anonymous"])))
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    # ------------------------------------------------------------ conditions

    def condition(self, raw: Any) -> Condition:
        if not raw:
            return Always()
        parts: list[Condition] = []
        for key, value in raw.items():
            part = self.condition_key(key, value)
            parts.extend(part.parts if isinstance(part, All) else (part,))
        return parts[0] if len(parts) == 1 else _all(parts)

    def condition_key(self, key: str, value: Any) -> Condition:
        if key in ("caller", "dialled"):
            return self.number_condition(key, value)
        if key == "phone_number_id":
            return PhoneNumberId(frozenset(as_list(value)))
        if key in ("during", "outside"):
            return Open(self.clocks[value], key == "during")
        if key == "tags":
            if isinstance(value, list):
                return Tags(frozenset(value), frozenset(), frozenset())
            return Tags(
                frozenset(value.get("any", [])),
                frozenset(value.get("all", [])),
                frozenset(value.get("none", [])),
            )
        if key == "crm":
            fields = [CrmField(k, frozenset(_text(x) for x in as_list(v))) for k, v in value.items()]
            return fields[0] if len(fields) == 1 else All(tuple(fields))
        if key == "crm_status":
            return CrmStatusIs(frozenset(as_list(value)))
        if key == "variables":
            found = [Variable(k, frozenset(_text(x) for x in as_list(v))) for k, v in value.items()]
            return found[0] if len(found) == 1 else All(tuple(found))
        if key == "parameters":
            args = [Parameter(k, frozenset(_text(x) for x in as_list(v))) for k, v in value.items()]
            return args[0] if len(args) == 1 else All(tuple(args))
        if key == "assistant":
            return AssistantIs(frozenset(as_list(value)))
        if key == "any":
            return AnyOf(tuple(self.condition(c) for c in value))
        if key == "all":
            return _all([self.condition(c) for c in value])
        if key == "not":
            return Not(self.condition(value))
        if key in STATE_CONDITIONS:
            return state_condition(key, value)
        raise AssertionError(f"unchecked condition key {key}")

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
            any(_reads_crm(r.when) or target_reads(r.then) for r in (*routes, *transfers, *handoffs))
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


def _all(parts: Sequence[Condition]) -> All:
    """Keys are ANDed in any order, so test the ones that need no CRM lookup first: a route
    whose call facts already fail then never asks for the CRM. This is also what makes
    skipping a route whose index key misses exact for facts that are still waiting for the
    CRM (the evaluator's fast path and the plain scan agree on `needs_crm`)."""
    return All(tuple(sorted(parts, key=_reads_crm)))


def _numberset(which: str, exact: frozenset[str], prefixes: frozenset[str], label: str) -> NumberSet:
    return NumberSet(which, exact, prefixes, label, tuple(sorted({len(p) for p in prefixes})))


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


def _reads_crm(cond: Condition) -> bool:
    if isinstance(cond, All | AnyOf):
        return any(_reads_crm(p) for p in cond.parts)
    if isinstance(cond, Not):
        return _reads_crm(cond.part)
    return cond.needs_crm


def build_index(routes: Sequence[Route]) -> RouteIndex:
    """Index each route under its most selective top-level key so a decision looks at the
    few routes that can match instead of all of them. A route is indexed under a clause
    that its `when` requires (keys are ANDed), so skipping it when the key misses is exact."""
    ce: dict[str, list[int]] = defaultdict(list)
    cp: dict[str, list[int]] = defaultdict(list)
    cc: dict[str, list[int]] = defaultdict(list)
    de: dict[str, list[int]] = defaultdict(list)
    dp: dict[str, list[int]] = defaultdict(list)
    pn: dict[str, list[int]] = defaultdict(list)
    tg: dict[str, list[int]] = defaultdict(list)
    anonymous: list[int] = []
    tag_routes: list[int] = []
    tags_surely_needed = False
    sched: dict[str, tuple[ScheduleClock, list[int], list[int]]] = {}
    always: list[int] = []
    residual: list[Condition | None] = []
    keys = [_best_key(r.when.parts if isinstance(r.when, All) else (r.when,)) for r in routes]
    # a route that needs all of several tags is indexed under the one fewest routes name
    tag_count = Counter(t for k in keys if isinstance(k, Tags) for t in (*k.any, *k.all))
    for r, key in zip(routes, keys, strict=True):
        parts = r.when.parts if isinstance(r.when, All) else (r.when,)
        i = r.position
        assert i == len(residual), "routes are numbered in order"
        residual.append(_residual(parts, key))
        if isinstance(key, NumberSet):
            exact, prefix = (ce, cp) if key.which == "caller" else (de, dp)
            for n in key.exact:
                exact[n].append(i)
            for p in key.prefixes:
                prefix[p].append(i)
        elif isinstance(key, PhoneNumberId):
            for x in key.ids:
                pn[x].append(i)
        elif isinstance(key, Anonymous):
            anonymous.append(i)
        elif isinstance(key, NumberCountry):
            for c in key.countries:
                cc[c].append(i)
        elif isinstance(key, Tags):
            if not tags_surely_needed:
                tag_routes.append(i)
                # a route that reads the CRM before any call fact stops a CRM-pending
                # evaluation: later tag routes are never reached before the lookup
                tags_surely_needed = isinstance(parts[0], Tags | CrmField | CrmStatusIs)
            rarest = min(sorted(key.all), key=tag_count.__getitem__, default=None)
            for t in key.any if rarest is None else (rarest,):
                tg[t].append(i)
        elif isinstance(key, Open):
            entry = sched.setdefault(key.schedule.name, (key.clock, [], []))
            (entry[1] if key.open else entry[2]).append(i)
        else:
            always.append(i)

    def freeze(d: Mapping[str, list[int]]) -> dict[str, tuple[int, ...]]:
        return {k: tuple(sorted(set(v))) for k, v in d.items()}

    return RouteIndex(
        caller_exact=freeze(ce),
        caller_prefix=freeze(cp),
        caller_prefix_lengths=tuple(sorted({len(p) for p in cp})),
        caller_country=freeze(cc),
        dialled_exact=freeze(de),
        dialled_prefix=freeze(dp),
        dialled_prefix_lengths=tuple(sorted({len(p) for p in dp})),
        phone_number_id=freeze(pn),
        anonymous=tuple(anonymous),
        tags=freeze(tg),
        tag_routes=tuple(tag_routes),
        schedules=ScheduleRoutes(tuple((s, tuple(o), tuple(c)) for s, o, c in sched.values())),
        always=tuple(always),
        residual=tuple(residual),
        decisions=tuple(Decision(r, r.then) for r in routes),
    )


def _residual(parts: Sequence[Condition], key: Condition | None) -> Condition | None:
    """What a route offered by the index under `key` still has to pass. The index offers a
    route only when its key holds, except tags (their index entry is only a first tag, and
    before the CRM lookup every tag route is offered), so those keep their test."""
    rest = list(parts)
    if key is not None and not isinstance(key, Tags):
        rest.remove(key)
    rest = [p for p in rest if not isinstance(p, Always)]
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else All(tuple(rest))


_RANK: dict[type, float] = {NumberSet: 0, PhoneNumberId: 1, Anonymous: 2, NumberCountry: 3, Tags: 4, Open: 5}


def _best_key(parts: Sequence[Condition]) -> Condition | None:
    best: Condition | None = None
    rank = 99.0
    for p in parts:
        r = _RANK.get(type(p), 99.0)
        if isinstance(p, NumberSet) and p.which == "dialled":
            r = 0.5
        if isinstance(p, Anonymous) and (p.which != "caller" or not p.expected):
            r = 99
        if isinstance(p, NumberCountry) and p.which != "caller":
            r = 99
        if isinstance(p, Tags) and not (p.any or p.all):
            r = 99
        if r < rank:
            best, rank = p, r
    return best


def version_of(texts: Sequence[tuple[str, str]]) -> str:
    """A short content hash of the policy set: what /readyz and the decision log show."""
    h = hashlib.sha256()
    for name, text in texts:
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()[:12]


def compile_policy(docs: Sequence[Document], *, version: str = "", crm_file: str | None = None) -> Policy:
    """Checked documents -> Policy (trusts its input; run the checks first)."""
    return Compiler(docs, crm_file=crm_file).policy(version)
