"""`vapi-router crm import FILE --into DB`: a CSV/JSON/YAML CRM file -> the SQLite `customers` table. [edge]

Every bad row is reported as FILE:LINE:COL with the offending value, in one run; then nothing
is written. A clean file is built beside the target and renamed over it (atomic: a server
reading the old file switches to the new one, never sees half of it).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from router.errors import PolicyError
from router.policy.crmfile import CrmFileError, _entry, _top_level
from router.policy.document import parse_document, pointer_of
from router.runtime.phone import normalise
from router.tools.crmdb import write_database

_Record = tuple[str, str | None, dict[str, str]]  # E.164 number, tags joined by ";", fields


@dataclass(frozen=True, slots=True, order=True)
class ImportProblem:
    """One bad row (or file), positioned; prints as FILE:LINE:COL: error: MESSAGE."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: error: {self.message} [crm-import]"


@dataclass(frozen=True, slots=True)
class ImportResult:
    rows: int
    fields: tuple[str, ...]
    problems: tuple[ImportProblem, ...]


# (line, where the number is written as (line, col), the number as written, tags, fields)
_Contact = tuple[int, Callable[[], tuple[int, int]], str, list[str], dict[str, str]]


def _cell_starts(raw: str) -> list[int]:
    """Offsets in a raw CSV row where each cell starts (quotes respected)."""
    starts = [0]
    quoted = False
    for i, ch in enumerate(raw):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            starts.append(i + 1)
    return starts


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


def _csv_contacts(path: Path, fields_out: list[str], problems: list[ImportProblem]) -> Iterator[_Contact]:
    name = str(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        lines = _Lines(handle)
        reader = csv.reader(lines)
        header = [h.strip() for h in next(reader, [])]
        lowered = [h.lower() for h in header]
        if not header or "number" not in lowered:
            problems.append(ImportProblem(name, 1, 1, 'the header has no "number" column'))
            return
        starts = _cell_starts("".join(lines.raw))
        for i, h in enumerate(header):
            if h and header.index(h) != i:
                col = starts[i] + 1 if i < len(starts) else 1
                problems.append(ImportProblem(name, 1, col, f'column "{h}" appears twice in the header'))
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
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if any(cells[len(header) :]):
                at = _cell_starts(raw)
                extra = next(i for i in range(len(header), len(cells)) if cells[i])
                ln, col = _position(raw, row_line, at[extra] if extra < len(at) else 0)
                problems.append(
                    ImportProblem(
                        name,
                        ln,
                        col,
                        f"{len(cells)} cells but the header has {len(header)} columns"
                        f' (extra "{cells[extra]}")',
                    )
                )
                continue
            written = cells[number_at] if number_at < len(cells) else ""
            tags = cells[tags_at].split(";") if 0 <= tags_at < len(cells) else []
            fields = {h: cells[i] for i, h in keep if i < len(cells) and cells[i]}
            where = _NumberAt(raw, row_line, number_at)
            yield row_line, where, written, [t.strip() for t in tags if t.strip()], fields


class _NumberAt:
    """Where a CSV row's number cell starts, worked out only when the row is bad (rare)."""

    __slots__ = ("at", "line", "raw")

    def __init__(self, raw: str, line: int, at: int) -> None:
        self.raw, self.line, self.at = raw, line, at

    def __call__(self) -> tuple[int, int]:
        starts = _cell_starts(self.raw)
        return _position(self.raw, self.line, starts[self.at] if self.at < len(starts) else 0)


def _json_contacts(path: Path, text: str, problems: list[ImportProblem]) -> Iterator[_Contact]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(ImportProblem(str(path), exc.lineno, exc.colno, f"not JSON: {exc.msg}"))
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

    yield from _mapping_contacts(path, data, problems, where)


def _yaml_contacts(path: Path, text: str, problems: list[ImportProblem]) -> Iterator[_Contact]:
    try:
        doc = parse_document(text, file=str(path))
    except PolicyError as exc:
        problems.append(ImportProblem(str(path), exc.line, exc.column, exc.message))
        return
    if doc.problems:
        problems.extend(ImportProblem(str(path), p.line, p.column, p.message) for p in doc.problems)
        return
    yield from _mapping_contacts(
        path, doc.data, problems, lambda key: doc.position(pointer_of(key), key=True)
    )


class _Fixed:
    __slots__ = ("at",)

    def __init__(self, line: int, col: int) -> None:
        self.at = (line, col)

    def __call__(self) -> tuple[int, int]:
        return self.at


def _mapping_contacts(
    path: Path, data: object, problems: list[ImportProblem], where: Callable[[str], tuple[int, int]]
) -> Iterator[_Contact]:
    try:
        entries = list(_top_level(data))
    except CrmFileError as exc:
        problems.append(ImportProblem(str(path), exc.line or 1, 1, exc.message))
        return
    for key, value in entries:
        line, col = where(key)
        try:
            _, written, tags, fields = _entry(line, key, value)
        except CrmFileError as exc:
            problems.append(ImportProblem(str(path), line, col, exc.message))
            continue
        yield line, _Fixed(line, col), written, tags, fields


def read_contacts(
    path: Path, fields_out: list[str], problems: list[ImportProblem]
) -> Iterator[_Contact] | None:
    """The contacts of a CRM file by suffix; None for an unknown suffix."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_contacts(path, fields_out, problems)
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".json":
        return _json_contacts(path, text, problems)
    if suffix in (".yaml", ".yml"):
        return _yaml_contacts(path, text, problems)
    return None


def import_file(source: Path, into: Path, *, region: str | None = None) -> ImportResult:
    """Build `into` from `source`; on any problem, `into` is left as it was."""
    name = str(source)
    problems: list[ImportProblem] = []
    fields: list[str] = []
    try:
        contacts = read_contacts(source, fields, problems)
        if contacts is None:
            raise ValueError(f'unknown CRM file type "{source.suffix}": use .csv, .json, .yaml or .yml')
        records: list[_Record] = []
        first: dict[str, int] = {}
        for line, where, written, tags, row_fields in contacts:
            number = normalise(written, region) if written else None
            if number is None:
                national = not region and not written.startswith("+") and any(c.isdigit() for c in written)
                hint = " (no +country and no region: use --region)" if national else ""
                what = f'not a phone number: "{written}"{hint}' if written else "no number"
                problems.append(ImportProblem(name, *where(), what))
            elif number in first:
                again = f'"{written}" is {number} again (first on line {first[number]})'
                problems.append(ImportProblem(name, *where(), again))
            else:
                first[number] = line
                records.append((number, ";".join(tags) if tags else None, row_fields))
    except UnicodeDecodeError:
        problems.append(ImportProblem(name, 1, 1, f"{source.name} is not UTF-8 text"))
    except csv.Error as exc:
        problems.append(ImportProblem(name, 1, 1, f"CSV: {exc}"))
    except OSError as exc:
        problems.append(ImportProblem(name, 1, 1, f"cannot read: {exc.strerror or exc}"))
    if problems:
        return ImportResult(0, (), tuple(sorted(problems)))
    if not fields:  # JSON/YAML: the union of every contact's field names, in first-seen order
        seen: dict[str, None] = {}
        for _, _, row_fields in records:
            seen.update(dict.fromkeys(row_fields))
        fields = [f for f in seen if f.lower() not in ("number", "tags")]
    write_database(into, fields, records)
    return ImportResult(len(records), tuple(fields), ())
