"""Stage 3 checks: the crm section (sources, URLs, queries, templates) and the conditions that read
the CRM. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from router.errors import PolicyError, did_you_mean
from router.policy.checks.context import Context, Where
from router.policy.compilebase import TEMPLATE, as_list


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


def crm_source(crm: dict[str, Any]) -> str:
    """How a lint message names where the CRM's fields come from."""
    if "http" in crm:
        return "crm.http.fields"
    if "sqlite" in crm:
        return f'the table "customers" in "{crm.get("sqlite")}"'
    if "postgres" in crm:
        return "the query in crm.postgres"
    return f'the CRM file "{crm.get("file")}"'


def known_crm_fields(ctx: Context) -> tuple[dict[str, Any] | None, frozenset[str] | None]:
    crm = ctx.crm[1] if ctx.crm and isinstance(ctx.crm[1], dict) else None
    if crm is not None and isinstance(crm.get("http"), dict):
        return crm, frozenset((crm["http"].get("fields") or {}).keys())
    return crm, (ctx.crm_fields if crm is not None else None)


def crm_condition_fields_known(ctx: Context) -> Iterator[PolicyError]:
    """`crm: {field: …}` over a field the CRM never returns can never match."""
    crm, known = known_crm_fields(ctx)
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
                    f'crm.{name}: {crm_source(crm)} has no field "{name}"'
                    f"{did_you_mean(str(name), known)}; its fields: {has}",
                    "unknown-crm-field",
                    key=True,
                )


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
