"""Generated policy sets and calls for the benchmarks: realistic, deterministic, any size.

`generate_policy(n)` returns the YAML text of an n-route policy (most routes keyed by a dialled
number or a caller prefix, some by caller country, phone-number id or tags, a handful by
schedule, a few that always need evaluating) together with the values it uses, so that
`generate_calls` can aim calls at routes (hits) or beside them (misses). `facts_of` and
`message_of` turn a call into evaluator Facts or a Vapi `assistant-request` body, for the
in-process and the HTTP benchmarks alike.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from router.runtime.facttypes import CrmStatus, Facts

# NANP area codes for the generated +1 AAA 555 XXXX numbers (fictional 555 exchange).
AREAS = ("650", "415", "212", "312", "617", "206", "303", "512", "646", "718", "305", "404")
# Caller countries, each with a mobile number prefix that phonenumbers places in it.
COUNTRY_PREFIX = {
    "GB": "+447400",
    "FR": "+33612",
    "DE": "+4915123",
    "MX": "+5222212",
    "ES": "+34612",
    "IT": "+39312",
    "BR": "+55119612",
    "AU": "+61412",
    "JP": "+81901",
    "IN": "+91812",
    "NL": "+31612",
    "SE": "+46701",
    "AR": "+549112",
    "CO": "+57321",
}
TAGS = (*tuple(f"tag{i:02d}" for i in range(40)), "vip", "spam", "gold")
SCHEDULES = ("office", "support", "weekend-desk", "night-line", "sales")
TIMEZONES = ("America/New_York", "America/Chicago", "Europe/London", "America/Los_Angeles", "UTC")
START = datetime(2026, 3, 2, tzinfo=UTC)  # calls spread over the 60 days from here


@dataclass(frozen=True, slots=True)
class GeneratedPolicy:
    """A generated policy's YAML and the values its routes are keyed by."""

    text: str
    routes: int
    dialled: tuple[str, ...]
    caller_prefixes: tuple[str, ...]
    countries: tuple[str, ...]
    phone_number_ids: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Call:
    """One inbound call, before normalisation: what a Vapi message or a test case would carry."""

    call_id: str
    caller: str | None
    dialled: str | None
    at: datetime
    phone_number_id: str | None
    tags: tuple[str, ...]
    crm: tuple[tuple[str, str], ...]
    crm_status: CrmStatus | None  # None: the CRM lookup has not happened yet
    variables: tuple[tuple[str, str], ...]


def dialled_number(k: int) -> str:
    return f"+1{AREAS[(k // 10_000) % len(AREAS)]}555{k % 10_000:04d}"


def caller_prefix(k: int) -> str:
    """Distinct NANP prefixes of 5 to 8 characters ('+1415', '+1415555', '+141655')."""
    area = 200 + k % 800
    rest = k // 800
    if rest == 0:
        return f"+1{area}"
    return f"+1{area}{rest - 1:03d}" if rest <= 1000 else f"+1{area}{rest - 1001:02d}"


def tag_set(k: int) -> tuple[str, ...]:
    """Distinct tag conditions: each tag alone, then pairs that must all be present."""
    if k < len(TAGS):
        return (TAGS[k],)
    k -= len(TAGS)
    first, second = divmod(k, len(TAGS) - 1)
    first %= len(TAGS)
    return (TAGS[first], TAGS[(first + 1 + second) % len(TAGS)])


def _q(text: str) -> str:
    return f'"{text}"'


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def generate_policy(routes: int, *, seed: int = 0) -> GeneratedPolicy:
    """The YAML text of a clean (lint-free) policy of exactly `routes` routes (at least 10)."""
    if routes < 10:
        raise ValueError("at least 10 routes")
    rng = random.Random(seed)
    n_sched = min(len(SCHEDULES), max(1, routes // 200))
    n_country = min(len(COUNTRY_PREFIX), max(1, routes // 50))
    n_pnid = max(1, routes // 50)
    n_tag = max(1, routes * 3 // 100)
    n_always = 2  # a variables route and a crm_status route: evaluated for every call
    fixed = 2 + n_sched + n_always  # blocklist + anonymous first, schedules and always at the end
    rest = routes - fixed - n_country - n_pnid - n_tag
    n_prefix = max(1, rest * 35 // 100)
    n_dialled = rest - n_prefix
    n_targets = min(8, rest)
    counter = iter(range(routes))

    def target() -> str:
        return f"t{next(counter) % n_targets}"

    dialled = [dialled_number(k) for k in range(n_dialled)]
    prefixes = [caller_prefix(k) for k in range(n_prefix)]
    countries = list(COUNTRY_PREFIX)[:n_country]
    pnids = [f"pn-{k:05d}" for k in range(n_pnid)]
    schedules = SCHEDULES[:n_sched]

    middle: list[str] = []
    for k, number in enumerate(dialled):
        extra = ""
        if k % 10 == 3:
            extra = f", outside: {schedules[k % n_sched]}"
        elif k % 20 == 7:
            extra = ", tags: {any: [vip]}"
        middle.append(f'{{id: d{k}, when: {{dialled: "{number}"{extra}}}, then: {target()}}}')
    for k, p in enumerate(prefixes):
        when = f'caller: "{p}*"'
        if k % 7 == 5:
            when += f", dialled: {_list([p[:2] + AREAS[k % len(AREAS)] + '*'])}"
        middle.append(f"{{id: p{k}, when: {{{when}}}, then: {target()}}}")
    for k in range(n_country):
        chosen = [countries[k]]
        middle.append(f"{{id: c{k}, when: {{caller: {{country: {_list(chosen)}}}}}, then: {target()}}}")
    for k, pnid in enumerate(pnids):
        middle.append(f"{{id: n{k}, when: {{phone_number_id: {pnid}}}, then: {target()}}}")
    tag_sets = [tag_set(k) for k in range(n_tag)]
    for k, chosen_tags in enumerate(tag_sets):
        tags = f"{{all: {_list(chosen_tags)}}}" if len(chosen_tags) > 1 else _list(chosen_tags)
        middle.append(f"{{id: g{k}, when: {{tags: {tags}}}, then: {target()}}}")
    rng.shuffle(middle)

    lines = [
        "version: 1",
        "settings: {timezone: America/New_York, region: US}",
        "crm:",
        "  http:",
        '    url: "https://crm.example.com/contacts?phone=${caller}"',
        "    tags: contact.tags",
        "    fields: {tier: contact.tier, name: contact.firstName}",
        "  timeout_ms: 800",
        "schedules:",
    ]
    for k, name in enumerate(schedules):
        lines.append(
            f"  {name}: {{timezone: {TIMEZONES[k]}, holidays: {{country: US}}, "
            f'weekly: {{mon-fri: ["08:00-12:30", "13:00-18:00"], sat: ["09:00-13:00"]}}}}'
        )
    lines += [
        "lists:",
        '  blocked: ["+15550000001", "+15550000002", "+1900*", "+1976*"]',
        "targets:",
    ]
    for k in range(n_targets):
        lines.append(
            f"  t{k}: {{assistantId: 00000000-0000-4000-8000-{k:012d}, "
            'assistantOverrides: {variableValues: {caller: "${caller}", route: "${route}"}}}'
        )
    lines += [
        "  front-desk: {assistantId: 2ccabf54-ccd8-4dff-ae93-e830159c8004}",
        "routes:",
        '  - {id: blocked, when: {caller: {in: blocked}}, then: {error: "Sorry, we can\'t take your call."}}',
        "  - {id: anonymous, when: {caller: {anonymous: true}, dialled: "
        f'"{dialled[0]}"}}, then: front-desk}}',
    ]
    lines += [f"  - {r}" for r in middle]
    lines += [
        f"  - {{id: sip-line, when: {{variables: {{line: sip}}}}, then: {target()}}}",
        "  - {id: crm-down, when: {crm_status: [timeout, error]}, then: front-desk}",
    ]
    for k, name in enumerate(schedules):
        lines.append(
            f"  - {{id: s{k}, when: {{outside: {name}, variables: {{desk: {name}}}}}, then: {target()}}}"
        )
    lines.append("default: front-desk")
    text = "\n".join(lines) + "\n"
    return GeneratedPolicy(
        text=text,
        routes=routes,
        dialled=tuple(dialled),
        caller_prefixes=tuple(prefixes),
        countries=tuple(countries),
        phone_number_ids=tuple(pnids),
        tags=tuple(sorted({t for ts in tag_sets for t in ts} | {"vip"})),
    )


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _caller(gen: GeneratedPolicy, rng: random.Random, hit: bool) -> str:
    """An E.164 caller: in a generated prefix or country when `hit`, else an unrouted one."""
    roll = rng.random()
    if hit and gen.caller_prefixes and roll < 0.7:
        p = rng.choice(gen.caller_prefixes)
        return p + _digits(rng, 12 - len(p))
    if hit and gen.countries:
        prefix = COUNTRY_PREFIX[rng.choice(gen.countries)]
        return prefix + _digits(rng, 6)
    if roll < 0.5:  # a country no route names
        return rng.choice(("+420601", "+48601", "+35387")) + _digits(rng, 6)
    return "+1199" + _digits(rng, 7)  # area 199 is no generated prefix


def generate_calls(
    gen: GeneratedPolicy,
    count: int,
    *,
    seed: int = 1,
    hit_ratio: float = 0.7,
    anonymous_ratio: float = 0.05,
    pending_ratio: float = 0.1,
) -> list[Call]:
    """`count` calls: about `hit_ratio` of them aimed at a route key, some anonymous, and
    `pending_ratio` before the CRM lookup (crm_status None)."""
    rng = random.Random(seed)
    calls = []
    for i in range(count):
        hit = rng.random() < hit_ratio
        kind = rng.random()
        caller: str | None = _caller(gen, rng, hit and 0.45 <= kind < 0.85)
        if rng.random() < anonymous_ratio:
            caller = None
        # a routed line, or one no route names
        dialled = rng.choice(gen.dialled) if hit and kind < 0.45 else "+1888555" + _digits(rng, 4)
        pnid = rng.choice(gen.phone_number_ids) if hit and kind >= 0.85 else "pn-unrouted"
        tags: tuple[str, ...] = ()
        if rng.random() < 0.3:
            tags = tuple(rng.sample(gen.tags, min(2, len(gen.tags))))
        status: CrmStatus | None = "ok" if tags or rng.random() < 0.5 else "not_found"
        if rng.random() < pending_ratio:
            status = None
        elif rng.random() < 0.02:
            status = "timeout"
        at = START + timedelta(seconds=rng.randrange(60 * 86_400))
        variables = (("desk", rng.choice(SCHEDULES)),) if rng.random() < 0.2 else ()
        crm = (("tier", rng.choice(("gold", "silver"))), ("name", "Dana")) if status == "ok" else ()
        calls.append(
            Call(
                call_id=f"call-{seed}-{i:06d}",
                caller=caller,
                dialled=dialled,
                at=at,
                phone_number_id=pnid,
                tags=tags if status == "ok" else (),
                crm=crm,
                crm_status=status,
                variables=variables,
            )
        )
    return calls


def facts_of(call: Call) -> Facts:
    """The evaluator's Facts for a call (numbers are already E.164)."""
    return Facts(
        caller=call.caller,
        dialled=call.dialled,
        at=call.at,
        phone_number_id=call.phone_number_id,
        call_id=call.call_id,
        variables=dict(call.variables),
        crm_status=call.crm_status,
        tags=frozenset(call.tags),
        crm=dict(call.crm),
    )


def message_of(call: Call) -> dict[str, Any]:
    """A Vapi `assistant-request` webhook body for a call (the shape Vapi POSTs)."""
    customer = {"number": call.caller}
    return {
        "message": {
            "type": "assistant-request",
            "timestamp": int(call.at.timestamp() * 1000),
            "call": {
                "id": call.call_id,
                "type": "inboundPhoneCall",
                "status": "ringing",
                "phoneNumberId": call.phone_number_id,
                "customer": customer,
                "assistantOverrides": {"variableValues": dict(call.variables)},
            },
            "phoneNumber": {"id": call.phone_number_id, "number": call.dialled},
            "customer": customer,
        }
    }
