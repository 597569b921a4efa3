"""Stage 1: YAML text -> Document (plain data + a JSON-pointer -> line:col map). Pure.

PyYAML's composer gives nodes with marks; we build the data ourselves so that every value
keeps its position, duplicate keys are caught (safe_load keeps the last silently), and
plain scalars are read with YAML 1.2's core schema (see `scalar`), so the YAML 1.1
surprises that bite routing files (`NO` as false, `10:00` as 600) cannot happen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from router.errors import PolicyError, Severity

try:  # libyaml's C parser is ~10x faster; positions are identical
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

# Alias expansion is bounded so that a "billion laughs" document is a problem, not an OOM.
MAX_NODES = 2_000_000
MAX_DEPTH = 200

_SCALAR_LOADER = yaml.SafeLoader("")


def escape(token: str) -> str:
    """One RFC 6901 pointer token."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer_of(*tokens: str | int) -> str:
    return "".join("/" + escape(str(t)) for t in tokens)


@dataclass(frozen=True, slots=True)
class Document:
    """One policy file: its data, where each value (and each mapping key) sits, and the
    problems found while reading it (duplicate keys, limits)."""

    file: str
    data: Any
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    key_positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    problems: tuple[PolicyError, ...] = ()

    def position(self, pointer: str, *, key: bool = False) -> tuple[int, int]:
        """line:col of the value at `pointer` (or of its key), else of the nearest parent."""
        p = pointer
        while True:
            if key and p in self.key_positions:
                return self.key_positions[p]
            if p in self.positions:
                return self.positions[p]
            if not p:
                return (1, 1)
            p = p[: p.rfind("/")]

    def error(
        self, pointer: str, message: str, code: str, *, severity: Severity = "error", key: bool = False
    ) -> PolicyError:
        line, col = self.position(pointer, key=key)
        return PolicyError(self.file, line, col, message, code, severity, pointer)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[str, tuple[int, int]] = {}
        self.key_positions: dict[str, tuple[int, int]] = {}
        self.problems: list[PolicyError] = []
        self.count = 0

    def build(self, node: yaml.Node, pointer: str, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Limit(node, f"document expands to more than {MAX_NODES:,} values (alias bomb?)")
        if depth > MAX_DEPTH:
            raise _Limit(node, f"nesting deeper than {MAX_DEPTH} levels", "too-deep")
        self.positions[pointer] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in _merged_pairs(node):
                key = self.key(key_node)
                child = pointer + "/" + escape(key)
                if key in out:
                    first = self.key_positions[child]
                    self.problems.append(
                        PolicyError(
                            self.file,
                            key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                            f'duplicate key "{key}" (first at line {first[0]}); YAML keeps only one',
                            "duplicate-key",
                            pointer=child,
                        )
                    )
                    continue
                self.key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self.build(value_node, child, depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, f"{pointer}/{i}", depth + 1) for i, item in enumerate(node.value)]
        return scalar(node)

    def key(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.ScalarNode):
            value = scalar(node)
            return value if isinstance(value, str) else str(node.value)
        self.problems.append(
            PolicyError(
                self.file,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                "a mapping key must be a plain value, not a list or mapping",
                "bad-key",
            )
        )
        return f"<complex key at line {node.start_mark.line + 1}>"


class _Limit(Exception):
    def __init__(self, node: yaml.Node, message: str, code: str = "too-large") -> None:
        self.node, self.message, self.code = node, message, code


def _merged_pairs(
    node: yaml.MappingNode, within: frozenset[int] = frozenset()
) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    """Pairs of a mapping with YAML merge keys (<<) applied, explicit keys winning."""
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    own: list[tuple[yaml.Node, yaml.Node]] = []
    within = within | {id(node)}
    for k, v in node.value:
        if k.tag == "tag:yaml.org,2002:merge":
            sources = v.value if isinstance(v, yaml.SequenceNode) else [v]
            for src in sources:
                if id(src) in within:
                    raise _Limit(k, "a merge key (<<) merges the mapping that contains it (recursive alias)")
                if isinstance(src, yaml.MappingNode):
                    merged.extend(_merged_pairs(src, within))
        else:
            own.append((k, v))
    own_keys = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
    yield from ((k, v) for k, v in merged if not (isinstance(k, yaml.ScalarNode) and k.value in own_keys))
    yield from own


_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"-?0|-?[1-9][0-9]*")  # 007 stays text, as ryaml reads it
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"-?(\.[0-9]+|[0-9]+\.[0-9]*|[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+)")
_INF = re.compile(r"([-+]?)\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")


def scalar(node: yaml.Node) -> Any:
    """A scalar's value under YAML 1.2's core schema (what ryaml and most tools now read).

    Plain `yes`, `no`, `on`, `off` and `NO` (Norway!) stay text; `10:00` stays text (YAML 1.1
    made it the number 600); unquoted dates stay text. One routing-friendly exception: a
    plain number with a leading + stays text, because it is a phone number, not an int.
    """
    text = node.value
    if not isinstance(text, str):
        return text
    if getattr(node, "style", None):  # quoted or block text (the C loader marks plain scalars with "")
        return text
    # The 1.1 resolver already tagged plain scalars; we resolve them again by 1.2 rules.
    if _NULL.fullmatch(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.fullmatch(text):
        return int(text)
    if _INT8.fullmatch(text):
        return int(text[2:], 8)
    if _INT16.fullmatch(text):
        return int(text[2:], 16)
    if not text.startswith("+") and _FLOAT.fullmatch(text):
        return float(text)
    if m := _INF.fullmatch(text):
        return float(f"{m.group(1)}inf")
    if _NAN.fullmatch(text):
        return float("nan")
    return text


def parse_document(text: str, *, file: str) -> Document:
    """YAML text -> Document. Raises PolicyError for text that is not YAML at all."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        # Our own nesting limit comes first, whatever limit (if any) the YAML library has:
        # libyaml >= 0.2.5 (PyYAML 6.0.4's wheels) stops at 1,000 levels with its own words.
        if (deep := _nesting_problem(text, file)) is not None:
            raise deep from None
        line, col, message = _syntax_problem(exc, text)
        raise PolicyError(file, line, col, f"YAML syntax: {message}", "yaml-syntax") from None
    except (yaml.reader.ReaderError, UnicodeEncodeError):  # a control character or lone surrogate
        line, col, message = _unprintable(text)
        raise PolicyError(file, line, col, message, "yaml-syntax") from None
    except yaml.YAMLError as exc:  # one line: a problem prints as one FILE:LINE:COL line
        raise PolicyError(file, 1, 1, " ".join(f"YAML: {exc}".split()), "yaml-syntax") from None
    except RecursionError:
        raise _nesting_problem(text, file) or _too_deep_somewhere(file) from None
    if root is None:
        return Document(file, None, {"": (1, 1)})
    builder = _Builder(file)
    try:
        _check_expansion(root)
        data = builder.build(root, "", 0)
    except _Limit as limit:
        mark = limit.node.start_mark
        raise PolicyError(file, mark.line + 1, mark.column + 1, limit.message, limit.code) from None
    except RecursionError:
        raise _nesting_problem(text, file) or _too_deep_somewhere(file) from None
    return Document(file, data, builder.positions, builder.key_positions, tuple(builder.problems))


def _too_deep_somewhere(file: str) -> PolicyError:
    """The problem for text that nests too deep for the parser at a place we cannot find."""
    return PolicyError(file, 1, 1, "YAML nesting is too deep", "too-deep")


def _nesting_problem(text: str, file: str) -> PolicyError | None:
    """The problem at the first list or mapping nested past MAX_DEPTH, or None when the text
    nests no deeper (up to the point where it stops parsing): the event stream is flat, so
    finding it recurses nowhere."""
    depth = 0
    try:
        # The pure-Python parser: libyaml's scanner reads ahead through a flow collection
        # (to see whether it is a key) and stops at its own limit before we see level 201.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                    return PolicyError(file, line, col, f"nesting deeper than {MAX_DEPTH} levels", "too-deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return None


def _check_expansion(root: yaml.Node) -> None:
    """Raise _Limit before building when aliases would expand the document past MAX_NODES
    (counted over distinct nodes, so a billion-laughs file is refused in milliseconds), or
    when an alias refers to a collection that contains it."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            return [v for _, v in _merged_pairs(node)]
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        return []

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Limit(node, "an alias refers to the list or mapping that contains it (recursive alias)")
        active.add(key)
        total = 1 + sum(size(child) for child in children(node))
        active.discard(key)
        sizes[key] = total
        return total

    if size(root) <= MAX_NODES:
        return
    node = root  # descend to the smallest value that is too big on its own
    while big := next((c for c in children(node) if sizes[id(c)] > MAX_NODES), None):
        node = big
    raise _Limit(
        node,
        f"this value expands to {sizes[id(node)]:,} values through aliases, more than the "
        f"{MAX_NODES:,} allowed (alias bomb?)",
    )


# What YAML's reader refuses (PyYAML's Reader.NON_PRINTABLE); libyaml reports a byte offset,
# so the position is found again in the text.
_UNPRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _unprintable(text: str) -> tuple[int, int, str]:
    """(line, col, message) of the first character YAML does not allow in a document."""
    m = _UNPRINTABLE.search(text)
    if m is None:  # pragma: no cover - the reader refused something; be total anyway
        return 1, 1, "YAML: a character that YAML does not allow"
    line = text.count("\n", 0, m.start()) + 1
    col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    return line, col, f"the character U+{ord(m.group()):04X} is not allowed in YAML; delete it"


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> tuple[int, int, str]:
    """(line, col, message) for a YAML syntax error, with the hint a policy author needs.

    libyaml and PyYAML word some problems differently and libyaml leaves out the character
    at fault, so the common cases are read back from the text at the problem mark."""
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    lines = text.splitlines()
    at = lines[line - 1][col - 1 :] if 0 < line <= len(lines) else ""
    context = exc.context_mark if exc.context and exc.problem else None
    if "cannot start any token" in problem and at[:1] == "\t":
        return line, col, "a tab character; YAML indents with spaces, not tabs"
    if "cannot start any token" in problem and at:
        return line, col, f'a value cannot start with "{at[0]}"; put the value in quotes'
    if problem.startswith("found undefined alias") and at.startswith("*"):
        name = re.match(r"\*[^\s,\[\]{}]*", at)
        alias = name.group(0) if name else "*"
        return (
            line,
            col,
            (
                f"{alias} reads as a YAML alias, and there is no anchor &{alias[1:]}; "
                "a value that starts with * must be in quotes"
            ),
        )
    if problem.startswith("mapping values are not allowed"):
        return (
            line,
            col,
            ('a ": " inside a value: put the value in quotes, or start a nested mapping on its own line'),
        )
    if context is not None and "quoted scalar" in str(exc.context):  # the fix is at the opening quote
        return context.line + 1, context.column + 1, "this quoted value has no closing quote"
    if context is not None and "end of stream" in problem:  # an unclosed bracket
        return context.line + 1, context.column + 1, f"{problem} ({exc.context} that starts here)"
    if context is not None:
        # Our words for the structure that is broken, so the message (and the tests) do not
        # change with the YAML library's wording; its words remain the last resort.
        where = f"line {context.line + 1}, column {context.column + 1}"
        structure = str(exc.context)
        for kind, opening, closing in (("flow mapping", "{", "}"), ("flow sequence", "[", "]")):
            if kind in structure:
                missing = f"a ',' or '{closing}' is missing"
                return line, col, f"the {opening} opened at {where} is not closed: {missing}"
        if "block" in structure:
            return line, col, f"this line is not indented like the block that starts at {where}"
        if context.line + 1 != line:
            return line, col, f"{problem} ({structure} that starts at {where})"
    return line, col, problem


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
