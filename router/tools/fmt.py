"""`vapi-router fmt`: policy and case files in one canonical layout, comments kept. [pure + read]

Canonical, modestly (ruamel.yaml's round trip does the layout; it keeps comments, key order,
flow `{...}`/`[...]` collections and the quotes as written):
- 2-space indentation; a block sequence's `- ` indented 2 under its key;
- a plain number with a leading `+` (a phone number, which the policy reader takes as text)
  is written in double quotes: `+15550001111` -> `"+15550001111"`;
- no trailing spaces, line endings LF, exactly one newline at the end;
- long lines are never re-wrapped; blank lines are kept as written; `~` is written as nothing.
The output is checked before it is used: it must read back (by the policy reader) to the very
same data, and formatting it again must change nothing; otherwise the file is left alone.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from router.errors import PolicyError
from router.policy.document import parse_document

SUFFIXES = (".yaml", ".yml")


class FmtError(Exception):
    """A file fmt cannot format; `line`/`col` are 1-based."""

    def __init__(self, message: str, line: int = 1, col: int = 1) -> None:
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


class _Constructor(RoundTripConstructor):
    """Round trip, except that a plain `+digits` number is text, as the policy reader takes it."""

    def construct_yaml_int(self, node: ScalarNode) -> Any:
        if node.style is None and str(node.value).startswith("+"):
            return DoubleQuotedScalarString(node.value)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: ScalarNode) -> Any:
        if node.style is None and str(node.value).startswith("+"):
            return DoubleQuotedScalarString(node.value)
        return super().construct_yaml_float(node)


_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)
_Constructor.add_constructor("tag:yaml.org,2002:float", _Constructor.construct_yaml_float)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 1 << 16  # never re-wrap a long line
    yaml.brace_single_entry_mapping_in_flow_sequence = True  # [{a: 1}] stays [{a: 1}]
    return yaml


def _layout(text: str) -> str:
    try:
        data = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise FmtError(f"YAML: {exc.problem or exc.context}", line, col) from None
    except YAMLError as exc:
        raise FmtError(f"YAML: {exc}") from None
    if data is None:  # empty, or comments only
        return text
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def _tidy(text: str) -> str:
    """Trailing spaces off (but not inside a `|`/`>` block, where they are text), one newline at the end."""
    lines = text.replace("\r\n", "\n").split("\n")
    keep = _block_lines(text)
    lines = [line if i in keep else line.rstrip() for i, line in enumerate(lines)]
    return "\n".join(lines).strip("\n") + "\n" if any(lines) else ""


def _block_lines(text: str) -> set[int]:
    """0-based numbers of the lines inside block scalars."""
    inside: set[int] = set()
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.ScalarToken) and token.style in ("|", ">"):
                inside.update(range(token.start_mark.line + 1, token.end_mark.line + 1))
    except yaml.YAMLError:  # the round trip read it; keep every line's spaces if PyYAML cannot
        return set(range(text.count("\n") + 1))
    return inside


def _data(text: str, file: str) -> Any:
    try:
        return parse_document(text, file=file).data
    except PolicyError as exc:
        raise FmtError(exc.message, exc.line, exc.column) from None


def _once(text: str, file: str, before: Any) -> str:
    laid = _layout(text)
    out = _tidy(laid)
    if _data(out, file) == before:
        return out
    if _data(laid, file) == before:  # trailing spaces inside a block scalar are text: keep them
        return laid
    raise FmtError("cannot be formatted without changing what it says; left as written")


def format_text(text: str, file: str = "<text>") -> str:
    """The canonical layout of one YAML file; raises FmtError when the text cannot be formatted
    without a change of meaning (a syntax error, or a layout the round trip cannot keep)."""
    before = _data(text, file)
    out = _once(text, file, before)
    if _once(out, file, before) != out:
        raise FmtError("formatting it twice gives a different layout; left as written")
    return out


def yaml_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Each file named, and under each directory every `*.yaml` (policies and `*.test.yaml`
    cases; `*.yml` only when named), hidden files and directories skipped."""
    for path in paths:
        if not path.is_dir():
            yield path
            continue
        for child in sorted(path.rglob("*.yaml")):
            parts = child.relative_to(path).parts
            if child.is_file() and not any(p.startswith(".") for p in parts):
                yield child


@dataclass(frozen=True, slots=True)
class FmtResult:
    changed: tuple[Path, ...]  # files rewritten (or, with check, that would be)
    problems: tuple[str, ...]  # FILE:LINE:COL: error: MESSAGE [fmt]


def fmt_paths(paths: Iterable[Path], *, check: bool) -> FmtResult:
    """Format the YAML files under `paths`; with `check`, only say which would change."""
    changed: list[Path] = []
    problems: list[str] = []
    for path in yaml_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
            out = format_text(text, str(path))
        except FmtError as exc:
            problems.append(f"{path}:{exc.line}:{exc.col}: error: {exc.message} [fmt]")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}:1:1: error: cannot read: {getattr(exc, 'strerror', None) or exc} [fmt]")
            continue
        if out == text:
            continue
        changed.append(path)
        if not check:
            path.write_text(out, encoding="utf-8")
    return FmtResult(tuple(changed), tuple(problems))
