"""Stage 3 checks: the default, settings, schedules and the zones they name. Pure."""

from __future__ import annotations

from collections.abc import Iterator

from router.errors import PolicyError, did_you_mean
from router.policy.checks.context import Context, zone_names
from router.policy.checks.numbers import country_hint
from router.policy.schedule_checks import check_schedule
from router.policy.zones import zones_current
from router.runtime import phone


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
        if isinstance(tz, str) and tz not in zone_names():
            yield w.error(f'unknown time zone "{tz}"{did_you_mean(tz, zone_names())}', "bad-timezone")
    if "region" in ctx.settings:
        w, region = ctx.settings["region"]
        if isinstance(region, str) and not phone.is_country(region):
            yield w.error(
                f'unknown region "{region}"; use an ISO 3166 code such as US or GB{country_hint(region)}',
                "bad-country",
            )


def schedules_valid(ctx: Context) -> Iterator[PolicyError]:
    for w, raw in ctx.schedules.values():
        if isinstance(raw, dict):
            yield from check_schedule(w.doc, w.pointer, raw, default_timezone=ctx.timezone)


def zones_name_places(ctx: Context) -> Iterator[PolicyError]:
    yield from zones_current(ctx.docs)
