"""A CRM file's contacts (CSV, JSON or YAML), every bad row positioned as LINE:COL. [read]

`crm.file` (lint, FileCrm) and `vapi-router crm import` read through here, so they agree on
what a bad row is: each is reported with the offending value quoted, all of them in one pass
(a short row, a cell past the header, an unterminated quote, a bad or repeated number...).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.errors import PolicyError
from router.policy.document import parse_document, pointer_of
from router.runtime.facts import scalar_text
from router.runtime.phone import normalise


@dataclass(frozen=True, slots=True, order=True)
class RowProblem:
    """One bad row (or file), 1-based line and column."""

    line: int
    col: int
    message: str


# (line, where the number is written as (line, col), the number as written, tags, fields)
Contact = tuple[int, Callable[[], tuple[int, int]], str, list[str], dict[str, str]]
Problems = list[RowProblem]


def shown(value: Any, limit: int = 40) -> str:
    """A value as a message quotes it: "text" (cut at `limit`), else its JSON."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 2] + '…"'


def cell_text(value: Any) -> str | None:
    """A field value as text by the rule conditions use (facts.scalar_text); None for no value."""
    return scalar_text(value) or None


def read_contacts(path: Path, fields_out: list[str], problems: Problems) -> Iterator[Contact] | None:
    """The contacts of a CRM file by suffix (None for an unknown suffix); bad rows go to
    `problems`, a CSV's field columns to `fields_out`. Raises OSError / UnicodeDecodeError."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_contacts(path, fields_out, problems)
    if suffix not in (".json", ".yaml", ".yml"):
        return None
    text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets prepend a BOM
    return _json_contacts(text, problems) if suffix == ".json" else _yaml_contacts(path, text, problems)


def numbered(
    contacts: Iterable[Contact], region: str | None, problems: Problems, hint: str
) -> Iterator[tuple[str, int, list[str], dict[str, str]]]:
    """(E.164 number, line, tags, fields) of each contact whose number is good and new; `hint`
    follows "no +country and no region" for a national number."""
    first: dict[str, int] = {}
    for line, where, written, tags, fields in contacts:
        number = normalise(written, region) if written else None
        if number is None:
            national = not region and not written.startswith("+") and any(c.isdigit() for c in written)
            what = f"not a phone number: {shown(written)}" if written else "no number"
            problems.append(
                RowProblem(*where(), what + (f" (no +country and no region{hint})" if national else ""))
            )
        elif number in first:
            same = "appears" if written == number else f"is {number}"
            again = f"{shown(written)} {same} again (first on line {first[number]})"
            problems.append(RowProblem(*where(), again))
        else:
            first[number] = line
            yield number, line, tags, fields


def _scan(raw: str) -> tuple[list[int], int | None]:
    """Offsets in a raw CSV row where each cell starts, and where an unclosed quote opens."""
    starts, opened, i = [0], None, 0
    while i < len(raw):
        ch = raw[i]
        if opened is not None:
            if ch == '"':
                if raw[i + 1 : i + 2] == '"':
                    i += 1  # "" inside quotes
                else:
                    opened = None
        elif ch == '"' and i == starts[-1]:
            opened = i
        elif ch == ",":
            starts.append(i + 1)
        i += 1
    return starts, opened


def _position(raw: str, first_line: int, offset: int) -> tuple[int, int]:
    line = first_line + raw.count("\n", 0, offset)
    return line, offset - (raw.rfind("\n", 0, offset) + 1) + 1


class _Lines:
    """Iterates a file's lines for csv.reader and keeps the raw text of the current row."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.raw: list[str] = []

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            self.raw.append(line)
            yield line


def _unterminated(raw: str, line: int, problems: Problems) -> bool:
    opened = _scan(raw)[1]
    if opened is None:
        return False
    cell = raw[opened + 1 :].split("\n", 1)[0].rstrip("\r")
    at = _position(raw, line, opened)
    problems.append(RowProblem(*at, f"unterminated quote: {shown(cell)} runs to the end of the file"))
    return True


def _csv_contacts(path: Path, fields_out: list[str], problems: Problems) -> Iterator[Contact]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        lines = _Lines(handle)
        reader = csv.reader(lines)
        try:
            header = [h.strip() for h in next(reader, [])]
            raw = "".join(lines.raw)
            if _unterminated(raw, 1, problems):
                return
            lowered = [h.lower() for h in header]
            if not header:
                return
            if "number" not in lowered:
                problems.append(RowProblem(1, 1, f'the header has no "number" column: {shown(raw.strip())}'))
                return
            starts = _scan(raw)[0]
            for i, h in enumerate(header):
                if h and header.index(h) != i:
                    col = starts[i] + 1 if i < len(starts) else 1
                    problems.append(RowProblem(1, col, f'column "{h}" appears twice in the header'))
            if problems:
                return
            number_at = lowered.index("number")
            tags_at = lowered.index("tags") if "tags" in lowered else -1
            keep = [(i, h) for i, h in enumerate(header) if h and i not in (number_at, tags_at)]
            fields_out.extend(h for _, h in keep)
            line = reader.line_num + 1
            lines.raw.clear()
            for cells in reader:
                raw = "".join(lines.raw)
                lines.raw.clear()
                row_line, line = line, reader.line_num + 1
                if _unterminated(raw, row_line, problems):
                    return
                cells = [c.strip() for c in cells]
                if not any(cells):
                    continue
                if len(cells) != len(header):
                    problems.append(_wrong_width(raw, row_line, cells, header))
                    continue
                written = cells[number_at]
                tags = cells[tags_at].split(";") if tags_at >= 0 else []
                fields = {h: cells[i] for i, h in keep if cells[i]}
                where = _NumberAt(raw, row_line, number_at)
                yield row_line, where, written, [t.strip() for t in tags if t.strip()], fields
        except csv.Error as exc:
            problems.append(RowProblem(reader.line_num or 1, 1, f"CSV: {exc}"))


def _wrong_width(raw: str, row_line: int, cells: list[str], header: list[str]) -> RowProblem:
    cells_n = f"{len(cells)} cell" if len(cells) == 1 else f"{len(cells)} cells"
    columns_n = f"{len(header)} column" if len(header) == 1 else f"{len(header)} columns"
    counted = f"{cells_n} but the header has {columns_n}"
    if len(cells) < len(header):
        end = len(raw.rstrip("\r\n"))
        missing = ", ".join(f'"{h}"' for h in header[len(cells) :])
        return RowProblem(*_position(raw, row_line, end), f"short row: {counted} (no {missing})")
    at = _scan(raw)[0]
    extra = next((i for i in range(len(header), len(cells)) if cells[i]), len(header))
    where = _position(raw, row_line, at[extra] if extra < len(at) else 0)
    return RowProblem(*where, f"{counted} (extra {shown(cells[extra])})")


class _NumberAt:
    """Where a CSV row's number cell starts, worked out only when the row is bad (rare)."""

    __slots__ = ("at", "line", "raw")

    def __init__(self, raw: str, line: int, at: int) -> None:
        self.raw, self.line, self.at = raw, line, at

    def __call__(self) -> tuple[int, int]:
        starts = _scan(self.raw)[0]
        return _position(self.raw, self.line, starts[self.at] if self.at < len(starts) else 0)


def _json_contacts(text: str, problems: Problems) -> Iterator[Contact]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(RowProblem(exc.lineno, exc.colno, f"not JSON: {exc.msg}"))
        return
    # json keeps no positions: each key is found in the text after the previous one (O(n))
    state = [0, 1]  # search offset, its line number

    def where(key: str) -> tuple[int, int]:
        at = text.find(json.dumps(key), state[0])
        if at < 0:
            return 1, 1
        state[1] += text.count("\n", state[0], at)
        state[0] = at
        return state[1], at - (text.rfind("\n", 0, at) + 1) + 1

    yield from _mapping_contacts(data, problems, where)


def _yaml_contacts(path: Path, text: str, problems: Problems) -> Iterator[Contact]:
    try:
        doc = parse_document(text, file=str(path))  # the policy reader: positions, duplicate keys
    except PolicyError as exc:
        problems.append(RowProblem(exc.line, exc.column, exc.message))
        return
    problems.extend(RowProblem(p.line, p.column, p.message) for p in doc.problems)
    yield from _mapping_contacts(
        data=doc.data, problems=problems, where=lambda key: doc.position(pointer_of(key), key=True)
    )


class _Fixed:
    __slots__ = ("at",)

    def __init__(self, at: tuple[int, int]) -> None:
        self.at = at

    def __call__(self) -> tuple[int, int]:
        return self.at


def _mapping_contacts(
    data: object, problems: Problems, where: Callable[[str], tuple[int, int]]
) -> Iterator[Contact]:
    if data is None:
        return
    if not isinstance(data, dict):
        problems.append(RowProblem(1, 1, "the top level must map numbers to contacts"))
        return
    for raw_key, value in data.items():
        key = str(raw_key)
        at = where(key)
        contact = {} if value is None else value
        if not isinstance(contact, dict):
            problems.append(
                RowProblem(*at, f"a contact must be a mapping of tags and fields, not {shown(value)}")
            )
            continue
        bad = len(problems)
        tags = contact.get("tags") or []
        if not isinstance(tags, list) or any(isinstance(t, dict | list) for t in tags):
            problems.append(RowProblem(*at, f'"tags" must be a list of words, not {shown(tags)}'))
        fields: dict[str, str] = {}
        for name, raw in contact.items():
            if name == "tags":
                continue
            if isinstance(raw, dict | list):
                what = f'field "{name}" must be a plain value, not a list or mapping: {shown(raw)}'
                problems.append(RowProblem(*at, what))
            elif (text := cell_text(raw)) is not None:
                fields[str(name)] = text
        if len(problems) == bad:
            yield at[0], _Fixed(at), key, [t for t in map(cell_text, tags) if t], fields
