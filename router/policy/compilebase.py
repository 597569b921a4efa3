"""What the compiler's parts and the checks share: the merged policy set (PolicySet), ${…}
templates, PRIMARY (the target kinds) and as_list. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from router.policy.document import Document, pointer_of
from router.runtime.model import TARGET_KINDS, Source, Template

TEMPLATE = re.compile(r"\$\{([^}]*)\}")
PRIMARY = (*TARGET_KINDS, "split")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


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


class PolicySet:
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
