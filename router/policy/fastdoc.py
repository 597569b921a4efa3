"""The fast path of stage 1: YAML text -> Document with ryaml (Rust, ~12x faster, no
positions), positions computed by the positioned parse (document.py) only when a problem
is reported. Also a Document for data the reload child parsed. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from router.errors import PolicyError
from router.policy.document import Document, parse_document


class _LazyParse:
    """The positioned parse of a text, done on first use (only when a problem is reported)."""

    def __init__(self, text: str, file: str) -> None:
        self.text, self.file = text, file
        self._doc: Document | None = None

    def doc(self) -> Document:
        if self._doc is None:
            try:
                self._doc = parse_document(self.text, file=self.file)
            except PolicyError:  # cannot happen for text the fast parser accepted; be total anyway
                self._doc = Document(self.file, None, {"": (1, 1)})
        return self._doc


class LazyPositions(Mapping[str, tuple[int, int]]):
    """pointer -> line:col, computed by the positioned parse on first lookup."""

    def __init__(self, parse: _LazyParse, *, keys: bool) -> None:
        self._parse, self._keys = parse, keys

    def _map(self) -> Mapping[str, tuple[int, int]]:
        doc = self._parse.doc()
        return doc.key_positions if self._keys else doc.positions

    def __getitem__(self, pointer: str) -> tuple[int, int]:
        return self._map()[pointer]

    def __contains__(self, pointer: object) -> bool:
        return pointer in self._map()

    def __iter__(self) -> Iterator[str]:
        return iter(self._map())

    def __len__(self) -> int:
        return len(self._map())


# Text the fast parser would read differently from parse_document goes the positioned way:
# anchors, aliases and merge keys (parse_document bounds alias expansion and applies <<), and
# unquoted +digits (a phone number to us, an int to YAML 1.2).
_NEEDS_POSITIONED = re.compile(r"(?:^|[\s\[{,:-])(?:[&*][A-Za-z0-9_-]|\+\d)|<<")


def fast_document(text: str, *, file: str) -> Document | None:
    """The Document of `text` without positions (they come on demand), or None when the
    fast parser is unavailable or the text needs the positioned parse."""
    try:
        import ryaml
    except ImportError:  # pragma: no cover - ryaml is a dependency; keep working without it
        return None
    if _NEEDS_POSITIONED.search(text):
        return None
    try:
        data = ryaml.loads(text)  # type: ignore[attr-defined]
    except Exception:  # syntax errors, duplicate keys: the positioned parse says where
        return None
    if not isinstance(data, dict):
        return None
    parse = _LazyParse(text, file)
    return Document(file, data, LazyPositions(parse, keys=False), LazyPositions(parse, keys=True))


def document_from_data(file: str, data: Any, text: str) -> Document:
    """A Document for data parsed elsewhere (the reload child), positions on demand from `text`."""
    parse = _LazyParse(text, file)
    return Document(file, data, LazyPositions(parse, keys=False), LazyPositions(parse, keys=True))
