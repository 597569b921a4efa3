"""Stage 3: what the semantic checks read: the merged policy set with where each definition and
each use sits (Context), and positions to report problems at (Where). Pure.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from router.errors import PolicyError
from router.policy.document import Document, pointer_of
from router.policy.toolroutes import CONTEXTS
from router.runtime import phone

NUMBER_KEYS = ("caller", "dialled")


@cache
def zone_names() -> frozenset[str]:
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
    # every check walks the targets and conditions: walked once (the set no longer changes)
    _targets: list[tuple[Where, Any, str]] | None = field(default=None, repr=False, compare=False)
    _conditions: list[tuple[Where, dict[str, Any]]] | None = field(default=None, repr=False, compare=False)

    @property
    def region(self) -> str | None:
        entry = self.settings.get("region")
        return entry[1] if entry and isinstance(entry[1], str) and phone.is_country(entry[1]) else None

    @property
    def timezone(self) -> str:
        entry = self.settings.get("timezone")
        return str(entry[1]) if entry and entry[1] in zone_names() else "UTC"

    def all_targets(self) -> Iterator[tuple[Where, Any, str]]:
        """Every target position as (where, raw, context): route, transfer, named or default."""
        if self._targets is None:
            self._targets = list(self._walk_targets())
        return iter(self._targets)

    def _walk_targets(self) -> Iterator[tuple[Where, Any, str]]:
        for w, raw in self.targets.values():
            yield from walk_target(w, raw, "named")
        if self.default:
            yield from walk_target(self.default[0], self.default[1], "default")
        if "fallback" in self.settings:
            w, raw = self.settings["fallback"]
            yield from walk_target(w, raw, "default")
        for w, raw, section in self.routes:
            if "then" in raw:
                yield from walk_target(w.at("then"), raw["then"], CONTEXTS[section])

    def fallback_targets(self) -> list[tuple[Where, Any]]:
        """The targets the fallback may answer with: `settings.fallback` (else `default`), a
        name followed to its definition, a split to each of its variants."""
        entry = self.settings.get("fallback") or self.default
        todo = [entry] if entry else []
        out: list[tuple[Where, Any]] = []
        seen: set[int] = set()
        while todo:
            w, raw = todo.pop()
            if isinstance(raw, str) and raw in self.targets:
                w, raw = self.targets[raw]
            if not isinstance(raw, dict) or id(raw) in seen:
                continue
            seen.add(id(raw))
            out.append((w, raw))
            variants = raw.get("split")
            if isinstance(variants, list):
                todo += [
                    (w.at("split", i, "then"), v["then"])
                    for i, v in enumerate(variants)
                    if isinstance(v, dict) and "then" in v
                ]
        return out

    def conditions(self) -> Iterator[tuple[Where, dict[str, Any]]]:
        """Every condition position as (where, raw), nested ones too."""
        if self._conditions is None:
            self._conditions = list(self._walk_conditions())
        return iter(self._conditions)

    def _walk_conditions(self) -> Iterator[tuple[Where, dict[str, Any]]]:
        for w, raw, _ in self.routes:
            if isinstance(raw.get("when"), dict):
                yield from _walk_condition(w.at("when"), raw["when"])


def walk_target(w: Where, raw: Any, context: str) -> Iterator[tuple[Where, Any, str]]:
    yield w, raw, context
    if isinstance(raw, dict) and isinstance(raw.get("split"), list):
        for i, v in enumerate(raw["split"]):
            if isinstance(v, dict) and "then" in v:
                yield from walk_target(w.at("split", i, "then"), v["then"], context)


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
                        f"`settings` appears twice in the policy set (also at {pos(settings_at)})",
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
                            f"`{section}` appears twice in the policy set (also at {pos(previous[0])})",
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
                            f'{section[:-1]} "{name}" is defined twice (also at {pos(table[name][0])})',
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


def pos(w: Where) -> str:
    line, col = w.doc.position(w.pointer, key=True)
    return f"{w.doc.file}:{line}:{col}"
