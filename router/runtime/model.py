"""Compiled, immutable policy types: Policy, Route, Target, RouteIndex, Decision. Pure.

Raw YAML lives in `Document`; these are what the compiler builds from checked documents and
what the evaluator walks (the conditions are in conditions.py and schedconds.py, the call's
facts in facttypes.py). Every node keeps its Source so explain, test and logs can point back
at the YAML line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from router.runtime.conditions import Condition
from router.runtime.schedconds import ScheduleRoutes
from router.runtime.schedules import Schedule
from router.runtime.statefacts import StateSettings

TARGET_KINDS = (
    "assistantId",
    "assistant",
    "squadId",
    "squad",
    "workflowId",
    "workflow",
    "destination",
    "error",
)
OVERRIDES = {
    "assistantId": "assistantOverrides",
    "assistant": "assistantOverrides",
    "squadId": "squadOverrides",
    "squad": "squadOverrides",
    "workflowId": "workflowOverrides",
    "workflow": "workflowOverrides",
}


class HasPosition(Protocol):
    def position(self, pointer: str, *, key: bool = False) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class Source:
    """Where a route or target was written. line:col is looked up only when asked for, so a
    reload that took the fast path (no positions) never pays for the positioned parse."""

    file: str
    pointer: str
    doc: HasPosition | None = field(default=None, compare=False, repr=False)

    @property
    def line(self) -> int:
        return self.doc.position(self.pointer)[0] if self.doc else 1

    @property
    def column(self) -> int:
        return self.doc.position(self.pointer)[1] if self.doc else 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ${…} holes, split at compile time: ('Hi ', ('crm', 'name'), '!')."""

    parts: tuple[str | tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Variant:
    upto: int  # cumulative weight bound (exclusive)
    target: Target


@dataclass(frozen=True, slots=True)
class Target:
    """What to answer. `body` is the reply with Template leaves; `prepared` is the reply
    serialised at compile time when nothing in it depends on the call. `spliced` is, for a
    templated reply, the same serialisation with a `%s` hole per ${…} reference: (format
    bytes with `%` doubled, the references in order, the indices of the references that make
    up the reply's one choice when only they decide whether it renders empty) — see
    replies.splice and replies.render_bytes; None where the reply must be rendered in full."""

    name: str | None
    kind: str  # one of TARGET_KINDS or "split"
    source: Source
    body: Mapping[str, object] = field(default_factory=dict)
    templated: bool = False
    prepared: bytes | None = None
    variants: tuple[Variant, ...] = ()
    total_weight: int = 0
    salt: str = ""
    # derived from body (so left out of eq/hash/repr like Source.doc)
    spliced: tuple[bytes, tuple[tuple[str, str], ...], tuple[int, ...]] | None = field(
        default=None, compare=False, repr=False
    )
    pool: str | None = None  # a call answered with this target holds a slot of this pool


@dataclass(frozen=True, slots=True)
class Route:
    id: str
    when: Condition
    then: Target
    source: Source
    position: int


@dataclass(frozen=True, slots=True)
class CrmSettings:
    file: str | None = None  # absolute path
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    tags: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    timeout_ms: int = 1000
    cache_ttl_s: float = 300.0
    # HTTP options for real CRMs (DESIGN §12)
    method: str = "GET"
    body: str | None = None
    found: str | None = None
    tags_split: str | None = None
    number_format: str = "e164"
    oauth2: Mapping[str, str] | None = None
    sqlite: str | None = None  # absolute path of the customers database
    postgres: Mapping[str, Any] | None = None  # {dsn, query, pool}
    max_body_bytes: int = 1024 * 1024  # a CRM answer, decompressed


@dataclass(frozen=True, slots=True)
class Settings:
    timezone: str = "UTC"
    region: str | None = None
    deadline_ms: int = 4000
    forward: Mapping[str, Any] | None = None  # settings.forward as checked (DESIGN §9)


@dataclass(frozen=True, slots=True)
class RouteIndex:
    """Candidate routes by key fact; each tuple holds route positions in ascending order.

    Every route is indexed under one clause its `when` requires (its key), so a route the
    index offers has that clause true: `residual[position]` is what remains to test (None:
    nothing, the route matches) and `decisions[position]` the prebuilt answer."""

    caller_exact: Mapping[str, tuple[int, ...]]
    caller_prefix: Mapping[str, tuple[int, ...]]
    caller_prefix_lengths: tuple[int, ...]
    caller_country: Mapping[str, tuple[int, ...]]
    # the calling codes of caller_country's regions: a caller of another code is in none
    caller_country_codes: frozenset[str]
    dialled_exact: Mapping[str, tuple[int, ...]]
    dialled_prefix: Mapping[str, tuple[int, ...]]
    dialled_prefix_lengths: tuple[int, ...]
    phone_number_id: Mapping[str, tuple[int, ...]]
    anonymous: tuple[int, ...]
    tags: Mapping[str, tuple[int, ...]]
    # tag-indexed routes for when tags are not known yet, up to the first that surely needs them
    tag_routes: tuple[int, ...]
    schedules: ScheduleRoutes
    always: tuple[int, ...]
    residual: tuple[Condition | None, ...]
    decisions: tuple[Decision, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    files: tuple[str, ...]
    settings: Settings
    crm: CrmSettings | None
    schedules: Mapping[str, Schedule]
    targets: Mapping[str, Target]
    routes: tuple[Route, ...]
    transfers: tuple[Route, ...]
    default: Target
    fallback: Target
    index: RouteIndex
    transfer_index: RouteIndex
    needs_crm: bool
    # Raises when a rendered reply fails Vapi's schema (a ${…} value out of its limits); set
    # by the compiler, which knows Vapi's schema (runtime does not import the policy stage).
    check_reply: Callable[[Target, bytes], None] | None = None
    # DESIGN §9: routes answering handoff-destination-request (squads)
    handoffs: tuple[Route, ...] = ()
    handoff_index: RouteIndex | None = None
    state: StateSettings | None = None  # None: no history, capacity or flags anywhere


@dataclass(frozen=True, slots=True)
class Step:
    route: str
    matched: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The route that matched (None: the default) and its target. `needs_crm` means a CRM
    fact was reached before the lookup: look up, then evaluate again."""

    route: Route | None
    target: Target | None
    needs_crm: bool = False
    trace: tuple[Step, ...] = ()
