"""Stage 3: semantic checks over a schema-valid policy set; every problem, none raised. Pure.

CHECKS is an ordered tuple of named generators, one concern each (as yamllint's rules).
"""

from __future__ import annotations

import importlib
import json
import re
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import combinations
from typing import Any

from router.errors import PolicyError, did_you_mean
from router.policy.compiler import PRIMARY, TEMPLATE, as_list
from router.policy.document import Document, pointer_of
from router.policy.reach import unreachable
from router.policy.replycheck import constrained_spots
from router.policy.retired import retired_keys
from router.policy.schedule_checks import check_schedule
from router.policy.sipchecks import check_number_or_sip
from router.policy.statechecks import state_references_resolve, state_values_valid
from router.policy.toolroutes import (
    CONTEXTS,
    TOOL_CONTEXTS,
    destination_kind,
    misplaced_keys,
    named_use_problem,
    tool_conditions,
)
from router.policy.vapi_payloads import check_payload
from router.policy.zones import zones_current
from router.runtime import phone
from router.runtime.model import OVERRIDES
from router.runtime.statefacts import HISTORY_REFS

NUMBER_KEYS = ("caller", "dialled")
REFS = ("caller", "dialled", "call.id", "route", *HISTORY_REFS)
# The stdlib's own regex parser (private, but the same module from 3.11 on): it sees through
# groups, so ((a)+)+ is caught as well as (a+)+.
_sre: Any = importlib.import_module("re._parser")
_REPEATS = frozenset({_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT)})


def nested_quantifier(pattern: str) -> bool:
    """Whether a repeat that can run many times holds a repeat of variable length, as in
    (a+)+, ((\\d)*)* or (\\d{1,3})+: those backtrack exponentially on a near miss."""

    def walk(items: Any, repeated: bool) -> bool:
        for op, av in items:
            if op in _REPEATS:
                low, high, sub = av
                if repeated and low != high:
                    return True
                if walk(sub, repeated or high > 1):
                    return True
            elif op is _sre.SUBPATTERN:
                if walk(av[-1], repeated):
                    return True
            elif op is _sre.BRANCH:
                if any(walk(branch, repeated) for branch in av[1]):
                    return True
            elif op in (_sre.ASSERT, _sre.ASSERT_NOT) and walk(av[1], repeated):
                return True
        return False

    return walk(_sre.parse(pattern), False)


_E164 = frozenset("+0123456789")  # every character a regex over caller/dialled ever sees
_CATEGORIES = {
    getattr(_sre, f"CATEGORY_{name}"): frozenset(c for c in _E164 if re.fullmatch(escape, c))
    for name, escape in (
        ("DIGIT", r"\d"),
        ("NOT_DIGIT", r"\D"),
        ("SPACE", r"\s"),
        ("NOT_SPACE", r"\S"),
        ("WORD", r"\w"),
        ("NOT_WORD", r"\W"),
    )
}
MAX_VARIABLE_REPEATS = 8  # 11 of \d* in a row take ~75 ms on a 16-character number


def ambiguous_repeat(pattern: str) -> bool:
    """Whether a repeat that can run many times holds a choice whose alternatives can start
    with the same character of a phone number (or match nothing), as in (1|12)+ or
    (\\d|\\d\\d)+: each repetition may take either way, so a near miss tries k^n paths."""

    def first(items: Any) -> tuple[frozenset[str], bool]:
        """The characters `items` can start with, and whether it can match empty."""
        chars: frozenset[str] = frozenset()
        for op, av in items:
            if op is _sre.LITERAL:
                return chars | ({chr(av)} & _E164), False
            if op is _sre.NOT_LITERAL:
                return chars | (_E164 - {chr(av)}), False
            if op is _sre.IN:
                return chars | char_class(av), False
            if op is _sre.SUBPATTERN:
                more, empty = first(av[-1])
            elif op in _REPEATS:
                more, empty = first(av[2])
                empty = empty or av[0] == 0
            elif op is _sre.BRANCH:
                options = [first(b) for b in av[1]]
                more = frozenset().union(*(c for c, _ in options))
                empty = any(e for _, e in options)
            elif op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
                continue  # zero width
            else:  # ANY, group references, anything else: assume the worst
                return chars | _E164, op is not _sre.ANY
            chars |= more
            if not empty:
                return chars, False
        return chars, True

    def char_class(items: Any) -> frozenset[str]:
        found: set[str] = set()
        negate = False
        for op, av in items:
            if op is _sre.NEGATE:
                negate = True
            elif op is _sre.LITERAL:
                found.add(chr(av))
            elif op is _sre.RANGE:
                found.update(c for c in _E164 if av[0] <= ord(c) <= av[1])
            else:
                found.update(_CATEGORIES.get(av, _E164) if op is _sre.CATEGORY else _E164)
        return _E164 - found if negate else _E164 & found

    def ambiguous(branches: Any) -> bool:
        options = [first(b) for b in branches]
        if any(empty for _, empty in options):
            return True
        return any(a & b for (a, _), (b, _) in combinations(options, 2))

    def walk(items: Any, repeated: bool) -> bool:
        for op, av in items:
            if op in _REPEATS:
                if walk(av[2], repeated or av[1] > 1):
                    return True
            elif op is _sre.SUBPATTERN:
                if walk(av[-1], repeated):
                    return True
            elif op is _sre.BRANCH:
                if repeated and ambiguous(av[1]):
                    return True
                if any(walk(branch, repeated) for branch in av[1]):
                    return True
            elif op in (_sre.ASSERT, _sre.ASSERT_NOT) and walk(av[1], repeated):
                return True
        return False

    return walk(_sre.parse(pattern), False)


def variable_repeats(pattern: str) -> int:
    """How many repeats of variable length the pattern holds: k of them in a row try about
    n^k/k! ways to split a number of n digits on a near miss."""

    def count(items: Any) -> int:
        total = 0
        for op, av in items:
            if op in _REPEATS:
                total += (av[0] != av[1]) + count(av[2])
            elif op is _sre.SUBPATTERN:
                total += count(av[-1])
            elif op is _sre.BRANCH:
                total += sum(count(b) for b in av[1])
            elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
                total += count(av[1])
        return total

    return count(_sre.parse(pattern))


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@dataclass
class Where:
    doc: Document
    pointer: str

    def error(self, message: str, code: str, *, severity: str = "error", key: bool = False) -> PolicyError:
        return self.doc.error(self.pointer, message, code, severity=severity, key=key)  # type: ignore[arg-type]

    def at(self, *tokens: str | int) -> Where:
        return Where(self.doc, self.pointer + pointer_of(*tokens))


@dataclass
class Context:
    """The merged set with where each definition and each use sits."""

    docs: Sequence[Document]
    crm_fields: frozenset[str] | None
    settings: dict[str, tuple[Where, Any]] = field(default_factory=dict)
    crm: tuple[Where, Any] | None = None
    default: tuple[Where, Any] | None = None
    targets: dict[str, tuple[Where, Any]] = field(default_factory=dict)
    schedules: dict[str, tuple[Where, Any]] = field(default_factory=dict)
    lists: dict[str, tuple[Where, Any]] = field(default_factory=dict)
    routes: list[tuple[Where, dict[str, Any], str]] = field(default_factory=list)  # (where, raw, section)
    problems: list[PolicyError] = field(default_factory=list)

    @property
    def region(self) -> str | None:
        entry = self.settings.get("region")
        return entry[1] if entry and isinstance(entry[1], str) and phone.is_country(entry[1]) else None

    @property
    def timezone(self) -> str:
        entry = self.settings.get("timezone")
        return str(entry[1]) if entry and entry[1] in _zones() else "UTC"

    def all_targets(self) -> Iterator[tuple[Where, Any, str]]:
        """Every target position as (where, raw, context): route, transfer, named or default."""
        for w, raw in self.targets.values():
            yield from _walk_target(w, raw, "named")
        if self.default:
            yield from _walk_target(self.default[0], self.default[1], "default")
        if "fallback" in self.settings:
            w, raw = self.settings["fallback"]
            yield from _walk_target(w, raw, "default")
        for w, raw, section in self.routes:
            if "then" in raw:
                yield from _walk_target(w.at("then"), raw["then"], CONTEXTS[section])

    def conditions(self) -> Iterator[tuple[Where, dict[str, Any]]]:
        for w, raw, _ in self.routes:
            if isinstance(raw.get("when"), dict):
                yield from _walk_condition(w.at("when"), raw["when"])


def _walk_target(w: Where, raw: Any, context: str) -> Iterator[tuple[Where, Any, str]]:
    yield w, raw, context
    if isinstance(raw, dict) and isinstance(raw.get("split"), list):
        for i, v in enumerate(raw["split"]):
            if isinstance(v, dict) and "then" in v:
                yield from _walk_target(w.at("split", i, "then"), v["then"], context)


def _walk_condition(w: Where, raw: dict[str, Any]) -> Iterator[tuple[Where, dict[str, Any]]]:
    yield w, raw
    for key in ("any", "all"):
        for i, sub in enumerate(raw.get(key) or []):
            if isinstance(sub, dict):
                yield from _walk_condition(w.at(key, i), sub)
    if isinstance(raw.get("not"), dict):
        yield from _walk_condition(w.at("not"), raw["not"])


def build_context(docs: Sequence[Document], crm_fields: frozenset[str] | None) -> Context:
    ctx = Context(docs, crm_fields)
    settings_at: Where | None = None
    for doc in docs:
        data = doc.data if isinstance(doc.data, dict) else {}
        root = Where(doc, "")
        if isinstance(data.get("settings"), dict):
            if settings_at is not None:  # DESIGN §2: settings appear at most once in the set
                ctx.problems.append(
                    root.at("settings").error(
                        f"`settings` appears twice in the policy set (also at {_pos(settings_at)})",
                        "duplicate-section",
                        key=True,
                    )
                )
            else:
                settings_at = root.at("settings")
                for key, value in data["settings"].items():
                    ctx.settings[key] = (root.at("settings", key), value)
        for section in ("crm", "default"):
            if section in data:
                previous = getattr(ctx, section)
                if previous is not None:
                    ctx.problems.append(
                        root.at(section).error(
                            f"`{section}` appears twice in the policy set (also at {_pos(previous[0])})",
                            "duplicate-section",
                            key=True,
                        )
                    )
                else:
                    setattr(ctx, section, (root.at(section), data[section]))
        for section in ("targets", "schedules", "lists"):
            table: dict[str, tuple[Where, Any]] = getattr(ctx, section)
            for name, raw in (data.get(section) or {}).items():
                w = root.at(section, name)
                if name in table:
                    ctx.problems.append(
                        w.error(
                            f'{section[:-1]} "{name}" is defined twice (also at {_pos(table[name][0])})',
                            "duplicate-name",
                            key=True,
                        )
                    )
                    continue
                table[name] = (w, raw)
        for section in CONTEXTS:
            for i, raw in enumerate(data.get(section) or []):
                if isinstance(raw, dict):
                    ctx.routes.append((root.at(section, i), raw, section))
    return ctx


def _pos(w: Where) -> str:
    line, col = w.doc.position(w.pointer, key=True)
    return f"{w.doc.file}:{line}:{col}"


# ---------------------------------------------------------------- the checks


def default_present(ctx: Context) -> Iterator[PolicyError]:
    if ctx.default is None and ctx.docs:
        doc = ctx.docs[0]
        yield doc.error(
            "",
            "the policy set has no `default`: add `default: <target>` for calls no route takes",
            "missing-default",
        )


def settings_valid(ctx: Context) -> Iterator[PolicyError]:
    if "timezone" in ctx.settings:
        w, tz = ctx.settings["timezone"]
        if isinstance(tz, str) and tz not in _zones():
            yield w.error(f'unknown time zone "{tz}"{did_you_mean(tz, _zones())}', "bad-timezone")
    if "region" in ctx.settings:
        w, region = ctx.settings["region"]
        if isinstance(region, str) and not phone.is_country(region):
            yield w.error(
                f'unknown region "{region}"; use an ISO 3166 code such as US or GB{_country_hint(region)}',
                "bad-country",
            )


def crm_valid(ctx: Context) -> Iterator[PolicyError]:
    if ctx.crm is None or not isinstance(ctx.crm[1], dict):
        return
    w, raw = ctx.crm
    sources = [k for k in ("file", "sqlite", "postgres", "http") if k in raw]
    if len(sources) != 1:
        yield w.error(
            "crm needs exactly one of `file`, `sqlite`, `postgres` or `http`", "crm-source", key=True
        )
    yield from _crm_postgres_valid(w, raw.get("postgres"))
    http = raw.get("http")
    if isinstance(http, dict):
        yield from _crm_http_options_valid(w.at("http"), http)
        url = http.get("url")
        if isinstance(url, str):
            if not url.startswith(("http://", "https://")):
                yield w.at("http", "url").error("crm.http.url must start with http:// or https://", "bad-url")
            for ref in (m.group(1).strip() for m in TEMPLATE.finditer(url)):
                if ref != "caller":
                    yield w.at("http", "url").error(
                        f"${{{ref}}} is not available in the CRM url; use ${{caller}}", "bad-template"
                    )
        for name, value in (http.get("headers") or {}).items():
            for ref in (m.group(1).strip() for m in TEMPLATE.finditer(str(value))):
                if not re.fullmatch(r"env\.[A-Za-z_][A-Za-z0-9_]*", ref):
                    yield w.at("http", "headers", name).error(
                        f"${{{ref}}} is not allowed in a header; use ${{env.NAME}}", "bad-template"
                    )
    deadline = ctx.settings.get("deadline_ms", (None, 4000))[1]
    timeout = raw.get("timeout_ms")
    if isinstance(timeout, int) and isinstance(deadline, int) and timeout >= deadline:
        yield w.at("timeout_ms").error(
            f"crm.timeout_ms ({timeout}) is not below settings.deadline_ms ({deadline}): every slow lookup "
            "ends in the fallback",
            "crm-timeout",
            severity="warning",
        )


_ENV_ONLY = re.compile(r"env\.[A-Za-z_][A-Za-z0-9_]*")


def _crm_postgres_valid(w: Where, pg: Any) -> Iterator[PolicyError]:
    if not isinstance(pg, dict):
        return
    dsn = pg.get("dsn")
    if isinstance(dsn, str):
        if not dsn.startswith(("postgresql://", "postgres://")):
            yield w.at("postgres", "dsn").error("crm.postgres.dsn must be a postgresql:// URL", "bad-url")
        for ref in (m.group(1).strip() for m in TEMPLATE.finditer(dsn)):
            if not _ENV_ONLY.fullmatch(ref):
                yield w.at("postgres", "dsn").error(
                    f"${{{ref}}} is not allowed in the dsn; use ${{env.NAME}}", "bad-template"
                )
    query = pg.get("query")
    if isinstance(query, str):
        if not re.search(r"\$1(?!\d)", query):
            yield w.at("postgres", "query").error(
                "crm.postgres.query must take the caller's E.164 number as $1", "crm-query"
            )
        elif re.search(r"\$(?!1(?!\d))\d+", query):
            yield w.at("postgres", "query").error(
                "crm.postgres.query has one parameter, the caller's number: $1", "crm-query"
            )
        if not re.match(r"\s*(select|with)\b", query, re.IGNORECASE):
            yield w.at("postgres", "query").error(
                "crm.postgres.query must be a SELECT (or WITH … SELECT) returning one row", "crm-query"
            )


def _crm_http_options_valid(w: Where, http: dict[str, Any]) -> Iterator[PolicyError]:
    body = http.get("body")
    if isinstance(body, str):
        for ref in (m.group(1).strip() for m in TEMPLATE.finditer(body)):
            if ref != "caller":
                yield w.at("body").error(
                    f"${{{ref}}} is not available in the CRM body; use ${{caller}}", "bad-template"
                )
        if http.get("method", "GET") == "GET":
            yield w.at("body").error(
                "crm.http.body is sent only with `method: POST`", "crm-method", severity="warning"
            )
    fields: dict[str, Any] = http["fields"] if isinstance(http.get("fields"), dict) else {}
    paths = [(w.at(k), http.get(k)) for k in ("found", "tags")]
    paths += [(w.at("fields", str(k)), v) for k, v in fields.items()]
    for where, value in paths:
        if isinstance(value, str) and not all(value.split(".")):
            yield where.error(f'"{value}" is not a dotted path such as contact.tags', "bad-path")
    oauth2 = http.get("oauth2")
    if isinstance(oauth2, dict):
        token_url = oauth2.get("token_url")
        if isinstance(token_url, str) and not token_url.startswith(("http://", "https://")):
            yield w.at("oauth2", "token_url").error(
                "crm.http.oauth2.token_url must start with http:// or https://", "bad-url"
            )
        for name, value in oauth2.items():
            for ref in (m.group(1).strip() for m in TEMPLATE.finditer(str(value))):
                if not _ENV_ONLY.fullmatch(ref):
                    yield w.at("oauth2", name).error(
                        f"${{{ref}}} is not allowed here; use ${{env.NAME}}", "bad-template"
                    )


def _crm_source(crm: dict[str, Any]) -> str:
    """How a lint message names where the CRM's fields come from."""
    if "http" in crm:
        return "crm.http.fields"
    if "sqlite" in crm:
        return f'the table "customers" in "{crm.get("sqlite")}"'
    if "postgres" in crm:
        return "the query in crm.postgres"
    return f'the CRM file "{crm.get("file")}"'


def _known_crm_fields(ctx: Context) -> tuple[dict[str, Any] | None, frozenset[str] | None]:
    crm = ctx.crm[1] if ctx.crm and isinstance(ctx.crm[1], dict) else None
    if crm is not None and isinstance(crm.get("http"), dict):
        return crm, frozenset((crm["http"].get("fields") or {}).keys())
    return crm, (ctx.crm_fields if crm is not None else None)


def crm_condition_fields_known(ctx: Context) -> Iterator[PolicyError]:
    """`crm: {field: …}` over a field the CRM never returns can never match."""
    crm, known = _known_crm_fields(ctx)
    if crm is None or known is None:
        return
    for w, cond in ctx.conditions():
        fields = cond.get("crm")
        if not isinstance(fields, dict):
            continue
        for name in fields:
            if str(name) not in known:
                has = ", ".join(sorted(known)) or "none"
                yield w.at("crm", str(name)).error(
                    f'crm.{name}: {_crm_source(crm)} has no field "{name}"'
                    f"{did_you_mean(str(name), known)}; its fields: {has}",
                    "unknown-crm-field",
                    key=True,
                )


def unique_route_ids(ctx: Context) -> Iterator[PolicyError]:
    seen: dict[str, Where] = {}
    for w, raw, _ in ctx.routes:
        rid = raw.get("id")
        if not isinstance(rid, str):
            continue
        if rid in seen:
            yield w.at("id").error(
                f'route id "{rid}" is used twice (first at {_pos(seen[rid].at("id"))})', "duplicate-id"
            )
        else:
            seen[rid] = w


def references_resolve(ctx: Context) -> Iterator[PolicyError]:
    for w, raw, _ in ctx.all_targets():
        if isinstance(raw, str) and raw not in ctx.targets:
            yield w.error(f'unknown target "{raw}"{did_you_mean(raw, ctx.targets)}', "unknown-target")
    for name in ctx.targets:
        loop = _cycle(ctx, name, name, set())
        if loop is not None:
            w, _ = ctx.targets[name]
            path = " -> ".join([name, *loop])
            yield w.error(f'target "{name}" refers back to itself ({path})', "target-cycle", key=True)
    for w, cond in ctx.conditions():
        for key in ("during", "outside"):
            schedule = cond.get(key)
            if isinstance(schedule, str) and schedule not in ctx.schedules:
                yield w.at(key).error(
                    f'unknown schedule "{schedule}"{did_you_mean(schedule, ctx.schedules)}',
                    "unknown-schedule",
                )
        for key in NUMBER_KEYS:
            spec = cond.get(key)
            if isinstance(spec, dict) and "in" in spec:
                for i, name in enumerate(as_list(spec["in"])):
                    if isinstance(name, str) and name not in ctx.lists:
                        at = w.at(key, "in", i) if isinstance(spec["in"], list) else w.at(key, "in")
                        yield at.error(
                            f'unknown list "{name}"{did_you_mean(name, ctx.lists)}', "unknown-list"
                        )


def _cycle(ctx: Context, start: str, name: str, seen: set[str]) -> list[str] | None:
    """The names from `name` back to `start` when target `start` is on a loop, else None.

    A target that only leads into someone else's loop is not reported for it."""
    entry = ctx.targets.get(name)
    if entry is None:
        return None
    seen.add(name)
    for _, raw, _ in _walk_target(entry[0], entry[1], "named"):
        if not isinstance(raw, str):
            continue
        if raw == start:
            return [raw]
        if raw not in seen and (rest := _cycle(ctx, start, raw, seen)) is not None:
            return [raw, *rest]
    return None


def _country_hint(code: str) -> str:
    """did_you_mean over ISO 3166 codes, knowing the usual slip: the UK is "GB"."""
    if code.upper() == "UK":
        return ' (did you mean "GB"?)'
    return did_you_mean(code.upper(), phone.countries())


def _check_number(w: Where, text: Any, region: str | None) -> Iterator[PolicyError]:
    if not isinstance(text, str):
        return
    if text.endswith("*"):
        if not re.fullmatch(r"\+\d{1,14}\*", text):
            yield w.error(
                f'"{text}" is not a valid prefix: write + and digits, then *, e.g. "+44*"', "bad-prefix"
            )
        return
    if phone.normalise(text, region) is None:
        hint = "" if text.startswith("+") or region else " (numbers without +country need settings.region)"
        yield w.error(f'"{text}" is not a possible phone number{hint}', "bad-number")


def numbers_valid(ctx: Context) -> Iterator[PolicyError]:
    region = ctx.region
    for w, entries in ctx.lists.values():
        for i, text in enumerate(entries if isinstance(entries, list) else []):
            yield from _check_number(w.at(i), text, region)
    for w, cond in ctx.conditions():
        for key in NUMBER_KEYS:
            if key not in cond:
                continue
            spec = cond[key]
            if isinstance(spec, str):
                yield from check_number_or_sip(w.at(key), spec, region, _check_number)
            elif isinstance(spec, list):
                for i, text in enumerate(spec):
                    yield from check_number_or_sip(w.at(key, i), text, region, _check_number)
            elif isinstance(spec, dict):
                yield from _number_mapping(w.at(key), spec)


def _number_mapping(w: Where, spec: dict[str, Any]) -> Iterator[PolicyError]:
    if "prefix" in spec:
        many = isinstance(spec["prefix"], list)
        for i, p in enumerate(as_list(spec["prefix"])):
            if isinstance(p, str) and not re.fullmatch(r"\+\d{1,14}\*?", p):
                yield (w.at("prefix", i) if many else w.at("prefix")).error(
                    f'"{p}" is not a valid prefix: write + and digits, e.g. "+44"', "bad-prefix"
                )
    if isinstance(spec.get("regex"), str):
        pattern = spec["regex"]
        try:
            re.compile(pattern)
        except re.error as exc:
            yield w.at("regex").error(f"invalid regex: {exc}", "bad-regex")
        else:
            if nested_quantifier(pattern):
                yield w.at("regex").error(
                    "regex has a nested quantifier such as (a+)+ that can backtrack for seconds; "
                    "rewrite it without repeating a repeated group",
                    "slow-regex",
                )
            elif ambiguous_repeat(pattern):
                yield w.at("regex").error(
                    "regex repeats a choice whose alternatives can match the same digit, such as "
                    "(\\d|\\d\\d)+, that can backtrack for seconds; make the alternatives exclusive",
                    "slow-regex",
                )
            elif (n := variable_repeats(pattern)) > MAX_VARIABLE_REPEATS:
                yield w.at("regex").error(
                    f"regex has {n} repeats of variable length (more than {MAX_VARIABLE_REPEATS}) that "
                    "can backtrack for a long time on a near miss; use fewer * + ? and {m,n}",
                    "slow-regex",
                )
    if "country" in spec:
        many = isinstance(spec["country"], list)
        for i, c in enumerate(as_list(spec["country"])):
            if isinstance(c, str) and not phone.is_country(c.upper()):
                yield (w.at("country", i) if many else w.at("country")).error(
                    f'unknown country "{c}"{_country_hint(c)}', "bad-country"
                )
    if "type" in spec:
        many = isinstance(spec["type"], list)
        for i, t in enumerate(as_list(spec["type"])):
            if isinstance(t, str) and t not in phone.NUMBER_TYPES:
                yield (w.at("type", i) if many else w.at("type")).error(
                    f'unknown number type "{t}"{did_you_mean(t, phone.NUMBER_TYPES)}; one of '
                    f"{', '.join(phone.NUMBER_TYPES)}",
                    "bad-number-type",
                )


def targets_well_formed(ctx: Context) -> Iterator[PolicyError]:
    for w, raw, context in ctx.all_targets():
        if not isinstance(raw, dict):
            if context in TOOL_CONTEXTS and isinstance(raw, str) and raw in ctx.targets:
                kind = _kind(ctx.targets[raw][1])
                if kind not in ("destination", "error", None):
                    yield w.error(
                        f'a {context} answers with a destination or an error; target "{raw}" is {kind}',
                        "bad-transfer-target",
                    )
            if isinstance(raw, str) and raw in ctx.targets:
                why = named_use_problem(ctx.targets[raw][1], context)
                if why:
                    yield w.error(
                        f'target "{raw}" cannot answer an assistant-request: {why}', "bad-target-use"
                    )
            continue
        kinds = [k for k in PRIMARY if k in raw]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            yield w.error(f"a target needs exactly one of {', '.join(PRIMARY)}; found {found}", "target-kind")
            continue
        kind = kinds[0]
        for key in ("assistantOverrides", "squadOverrides", "workflowOverrides"):
            if key in raw and OVERRIDES.get(kind) != key:
                wanted = OVERRIDES.get(kind)
                hint = f"; use {wanted}" if wanted else f"; a {kind} target takes no overrides"
                yield w.at(key).error(f"{key} does not go with {kind}{hint}", "bad-overrides", key=True)
        if context in TOOL_CONTEXTS and kind not in ("destination", "error", "split"):
            yield w.error(
                f"a {context} answers with a destination or an error, not {kind}", "bad-transfer-target"
            )
        for key, message in misplaced_keys(raw, context):
            yield w.at(key).error(message, "bad-tool-reply", key=True)
        if kind == "split" and isinstance(raw["split"], list):
            weights = [v.get("weight") for v in raw["split"] if isinstance(v, dict)]
            if all(isinstance(x, int) for x in weights) and sum(weights) <= 0:  # type: ignore[arg-type]
                yield w.at("split").error(
                    "split weights add up to 0; give at least one variant a weight", "bad-split"
                )
            for i, x in enumerate(weights):
                if x == 0:
                    yield w.at("split", i, "weight").error(
                        "a variant with weight 0 never answers", "bad-split", severity="warning"
                    )
        for key in (kind, "assistantOverrides", "squadOverrides", "workflowOverrides", "message"):
            if key in raw and isinstance(raw[key], dict):
                payload = destination_kind(context) if key == "destination" else key
                for p in check_payload(payload, raw[key]):
                    yield Where(w.doc, w.pointer + pointer_of(key) + p.pointer).error(
                        p.message,
                        p.code,
                        key=p.code in ("vapi-unknown-field", "vapi-legacy-field"),
                        # Vapi's spec drifts: a field newer than it is a warning (--strict: error)
                        severity="warning" if p.code == "vapi-unknown-field" else "error",
                    )
                for spot in constrained_spots(key, raw[key], _has_template):
                    yield Where(w.doc, w.pointer + pointer_of(key) + spot).error(
                        "a ${…} value feeds a field Vapi limits (length, pattern, enum or format); "
                        "a call whose value breaks it gets the fallback",
                        "vapi-template-limit",
                        severity="warning",
                    )


def _has_template(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def workflows_retired(ctx: Context) -> Iterator[PolicyError]:
    """workflowId/workflow/workflowOverrides: Vapi no longer runs workflows (DESIGN §9)."""
    for w, raw, _ in ctx.all_targets():
        for key, message in retired_keys(raw):
            yield w.at(key).error(message, "vapi-retired", key=True)


def tool_conditions_placed(ctx: Context) -> Iterator[PolicyError]:
    """`parameters` and `assistant` read a tool call: only transfers and handoffs have one."""
    for w, raw, section in ctx.routes:
        if section == "routes":
            for path, key in tool_conditions(raw.get("when")):
                yield w.at("when", *path).error(
                    f"`{key}` reads the tool call of a transfer or handoff; an assistant-request has none",
                    "bad-condition",
                    key=True,
                )


def _kind(raw: Any) -> str | None:
    if isinstance(raw, dict):
        return next((k for k in PRIMARY if k in raw), None)
    return None


def templates_resolve(ctx: Context) -> Iterator[PolicyError]:
    crm, known_fields = _known_crm_fields(ctx)
    for w, raw, _ in ctx.all_targets():
        if not isinstance(raw, dict):
            continue
        for pointer, text in _strings(raw, ""):
            for ref in (m.group(1).strip() for m in TEMPLATE.finditer(text)):
                at = Where(w.doc, w.pointer + pointer)
                head, _, field_name = ref.partition(".")
                if head == "crm" and field_name:
                    if crm is None:
                        yield at.error(
                            f"${{{ref}}} reads the CRM, but the policy has no `crm` section", "bad-template"
                        )
                    elif known_fields is not None and field_name not in known_fields:
                        source = _crm_source(crm)
                        has = ", ".join(sorted(known_fields)) or "none"
                        yield at.error(
                            f'${{{ref}}}: {source} has no field "{field_name}"'
                            f"{did_you_mean(field_name, known_fields)}; its fields: {has}",
                            "bad-template",
                        )
                elif ref not in REFS:
                    choices = [*REFS, *(f"crm.{f}" for f in known_fields or ())]
                    yield at.error(
                        f"${{{ref}}} is not a known reference{did_you_mean(ref, choices)}; use "
                        "${caller}, ${dialled}, ${call.id}, ${route} or ${crm.FIELD}",
                        "bad-template",
                    )


def _strings(value: Any, pointer: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield pointer, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k != "split":
                yield from _strings(v, pointer + pointer_of(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, pointer + pointer_of(i))


def schedules_valid(ctx: Context) -> Iterator[PolicyError]:
    for w, raw in ctx.schedules.values():
        if isinstance(raw, dict):
            yield from check_schedule(w.doc, w.pointer, raw, default_timezone=ctx.timezone)


def crm_conditions_need_crm(ctx: Context) -> Iterator[PolicyError]:
    if ctx.crm is not None:
        return
    for w, cond in ctx.conditions():
        for key in ("tags", "crm"):
            if key in cond:
                yield w.at(key).error(
                    f"`{key}` reads the CRM but the policy has no `crm` section: it never matches",
                    "crm-disabled",
                    severity="warning",
                    key=True,
                )
        status = cond.get("crm_status")
        if status is not None and "disabled" not in as_list(status):
            yield w.at("crm_status").error(
                'without a `crm` section crm_status is always "disabled"',
                "crm-disabled",
                severity="warning",
                key=True,
            )


def unreachable_routes(ctx: Context) -> Iterator[PolicyError]:
    """A route an earlier route covers (policy.reach) can never match: a warning at the dead
    route naming the earlier one's position. A route that matches every call is one problem
    at that route, listing the routes after it, not one warning per dead route."""
    for section in CONTEXTS:
        routes = [
            (w, raw, raw.get("when") or {})
            for w, raw, sec in ctx.routes
            if sec == section and isinstance(raw.get("when") or {}, dict)
        ]
        for i, (w, raw, when) in enumerate(routes):
            if not when and i + 1 < len(routes):
                after = routes[i + 1 :]
                names = ", ".join(f'"{r.get("id")}" ({_pos(rw.at("id"))})' for rw, r, _ in after[:5])
                more = f" and {len(after) - 5} more" if len(after) > 5 else ""
                yield w.at("id").error(
                    f'route "{raw.get("id")}" matches every call, so the {len(after)} '
                    f"{CONTEXTS[section]}{'s' * (len(after) != 1)} after it can never match: {names}{more}; "
                    "give it a `when`, or move it last (or make it the `default`)",
                    "unreachable",
                    severity="warning",
                )
                routes = routes[: i + 1]
                break
        if len(routes) > REACH_LIMIT:  # pairwise analysis is quadratic: exact repeats only
            yield from _repeated_conditions(routes)
            continue
        pairs = [(str(raw.get("id")), when) for _, raw, when in routes]
        for j, i, why in unreachable(pairs, ctx.region):
            (w, raw, _), (ew, eraw, _) = routes[j], routes[i]
            yield w.at("id").error(
                f'route "{raw.get("id")}" can never match: route "{eraw.get("id")}" '
                f"({_pos(ew.at('id'))}) before it takes every such call ({why})",
                "unreachable",
                severity="warning",
            )


REACH_LIMIT = 500  # routes per section analysed pairwise


def _repeated_conditions(routes: list[tuple[Where, Any, dict[str, Any]]]) -> Iterator[PolicyError]:
    earlier: dict[str, tuple[Where, Any]] = {}
    for w, raw, when in routes:
        key = json.dumps(when, sort_keys=True)
        if key in earlier:
            ew, eraw = earlier[key]
            yield w.at("id").error(
                f'route "{raw.get("id")}" can never match: route "{eraw.get("id")}" '
                f"({_pos(ew.at('id'))}) before it has the same conditions",
                "unreachable",
                severity="warning",
            )
        earlier.setdefault(key, (w, raw))


def zones_name_places(ctx: Context) -> Iterator[PolicyError]:
    yield from zones_current(ctx.docs)


def unused_names(ctx: Context) -> Iterator[PolicyError]:
    used_targets = {raw for _, raw, _ in ctx.all_targets() if isinstance(raw, str)}
    used_schedules: set[str] = set()
    used_lists: set[str] = set()
    for _, cond in ctx.conditions():
        used_schedules.update(v for k, v in cond.items() if k in ("during", "outside") and isinstance(v, str))
        for key in NUMBER_KEYS:
            spec = cond.get(key)
            if isinstance(spec, dict) and "in" in spec:
                used_lists.update(x for x in as_list(spec["in"]) if isinstance(x, str))
    for kind, table, used in (
        ("target", ctx.targets, used_targets),
        ("schedule", ctx.schedules, used_schedules),
        ("list", ctx.lists, used_lists),
    ):
        for name, (w, _) in table.items():
            if name not in used:
                yield w.error(
                    f'{kind} "{name}" is defined but never used', "unused", severity="warning", key=True
                )


Check = Callable[[Context], Iterator[PolicyError]]
CHECKS: tuple[Check, ...] = (
    default_present,
    settings_valid,
    crm_valid,
    unique_route_ids,
    references_resolve,
    numbers_valid,
    targets_well_formed,
    workflows_retired,
    tool_conditions_placed,
    templates_resolve,
    schedules_valid,
    zones_name_places,
    crm_conditions_need_crm,
    crm_condition_fields_known,
    unreachable_routes,
    unused_names,
    state_references_resolve,
    state_values_valid,
)


def check(
    docs: Sequence[Document], *, crm_fields: frozenset[str] | None = None, tolerant: bool = False
) -> Iterator[PolicyError]:
    """Every semantic problem of a policy set (duplicates across files first).

    `tolerant` runs the checks on a set that already failed the schema, so one run shows
    every problem; a check that trips over a malformed value is skipped rather than crash."""
    try:
        ctx = build_context(docs, crm_fields)
    except Exception:
        if not tolerant:
            raise
        return
    yield from ctx.problems
    for rule in CHECKS:
        try:
            found = list(rule(ctx))
        except Exception:
            if not tolerant:
                raise
            continue
        yield from found
