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
from router.policy.yamlproblems import (
    MAX_DEPTH,
    nesting_problem,
    syntax_problem,
    too_deep_somewhere,
    unprintable,
)

try:  # libyaml's C parser is ~10x faster; positions are identical
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

# Alias expansion is bounded so that a "billion laughs" document is a problem, not an OOM.
MAX_NODES = 2_000_000

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
        if (deep := nesting_problem(text, file)) is not None:
            raise deep from None
        line, col, message = syntax_problem(exc, text)
        raise PolicyError(file, line, col, f"YAML syntax: {message}", "yaml-syntax") from None
    except (yaml.reader.ReaderError, UnicodeEncodeError):  # a control character or lone surrogate
        line, col, message = unprintable(text)
        raise PolicyError(file, line, col, message, "yaml-syntax") from None
    except yaml.YAMLError as exc:  # one line: a problem prints as one FILE:LINE:COL line
        raise PolicyError(file, 1, 1, " ".join(f"YAML: {exc}".split()), "yaml-syntax") from None
    except RecursionError:
        raise nesting_problem(text, file) or too_deep_somewhere(file) from None
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
        raise nesting_problem(text, file) or too_deep_somewhere(file) from None
    return Document(file, data, builder.positions, builder.key_positions, tuple(builder.problems))


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
