"""The embedded CRM file (CSV, JSON or YAML) -> records by E.164 number, with positioned errors. [read]

Lint reads its columns (each ${crm.FIELD} is checked against them); router.crm.FileCrm serves it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from router.errors import PolicyError
from router.policy.document import parse_document, pointer_of
from router.runtime.facts import scalar_text
from router.runtime.phone import normalise
from router.runtime.records import CrmRecord


class CrmFileError(Exception):
    """An embedded CRM file that cannot be served; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.message = message
        self.line = line


_Row = tuple[int | None, str, list[str], dict[str, str]]  # line, number as written, tags, fields


def read_crm_file(path: Path, *, region: str | None = None) -> tuple[dict[str, CrmRecord], frozenset[str]]:
    """CSV, JSON or YAML (by suffix) -> (E.164 number -> record, the field names the file offers:
    a CSV's header even where every cell is blank). `region` reads numbers without +country."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets prepend a BOM
    except UnicodeDecodeError:
        raise CrmFileError(f"{path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise CrmFileError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    header: set[str] = set()
    if suffix == ".csv":
        rows = _csv_rows(text, header)
    elif suffix == ".json":
        rows = _json_rows(text)
    elif suffix in (".yaml", ".yml"):
        rows = _yaml_rows(text, str(path))
    else:
        raise CrmFileError(f'unknown CRM file type "{path.suffix}": use .csv, .json, .yaml or .yml')
    records: dict[str, CrmRecord] = {}
    first: dict[str, int | None] = {}
    for line, written, tags, fields in rows:
        number = normalise(written, region)
        if number is None:
            national = not region and not written.startswith("+") and any(c.isdigit() for c in written)
            hint = " (no +country and no region)" if national else ""
            raise CrmFileError(f"not a phone number{hint}", line)
        if number in first:
            raise CrmFileError(f"the same number again (first on line {first[number]})", line)
        first[number] = line
        records[number] = CrmRecord("ok", frozenset(tags), fields)
    return records, frozenset(header) or frozenset(f for r in records.values() for f in r.fields)


def cell_text(value: Any) -> str | None:
    """A field value as text by the rule conditions use (facts.scalar_text); None for no value."""
    return scalar_text(value) or None


def _csv_rows(text: str, columns: set[str]) -> Iterator[_Row]:
    """The rows of a CSV CRM; `columns` receives the header's field names."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            return
        lowered = [name.lower() for name in header]
        if "number" not in lowered:
            raise CrmFileError('the header has no "number" column', 1)
        dupes = sorted({n for n in header if n and header.count(n) > 1})
        if dupes:
            raise CrmFileError(f'column "{dupes[0]}" appears twice in the header', 1)
        number_at = lowered.index("number")
        tags_at = lowered.index("tags") if "tags" in lowered else -1
        columns.update(n for i, n in enumerate(header) if n and i not in (number_at, tags_at))
        line = reader.line_num + 1  # a quoted cell may span lines: a row starts after the last one
        for cells in reader:
            row_line, line = line, reader.line_num + 1
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if any(cells[len(header) :]):
                raise CrmFileError(f"{len(cells)} cells but the header has {len(header)} columns", row_line)
            tags = cells[tags_at].split(";") if 0 <= tags_at < len(cells) else []
            fields = {
                name: cell
                for i, (name, cell) in enumerate(zip(header, cells, strict=False))
                if name and cell and i not in (number_at, tags_at)
            }
            written = cells[number_at] if number_at < len(cells) else ""
            yield row_line, written, [t.strip() for t in tags if t.strip()], fields
    except csv.Error as exc:
        raise CrmFileError(f"CSV: {exc}", reader.line_num) from None


def _json_rows(text: str) -> Iterator[_Row]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CrmFileError(f"not JSON: {exc.msg}", exc.lineno) from None
    for key, value in _top_level(data):
        # json keeps no positions; the key's first occurrence in the text is where it is written
        at = text.find(json.dumps(key))
        yield _entry(text.count("\n", 0, at) + 1 if at >= 0 else None, key, value)


def _yaml_rows(text: str, file: str) -> Iterator[_Row]:
    try:
        doc = parse_document(text, file=file)  # the policy reader: positions, duplicate keys, `+1…` kept
    except PolicyError as exc:
        raise CrmFileError(exc.message, exc.line) from None
    if doc.problems:
        raise CrmFileError(doc.problems[0].message, doc.problems[0].line)
    for key, value in _top_level(doc.data):
        yield _entry(doc.position(pointer_of(key), key=True)[0], key, value)


def _top_level(data: Any) -> Iterator[tuple[str, Any]]:
    if data is None:
        return
    if not isinstance(data, dict):
        raise CrmFileError("the top level must map numbers to contacts", 1)
    yield from ((str(k), v) for k, v in data.items())


def _entry(line: int | None, key: str, value: Any) -> _Row:
    contact = {} if value is None else value
    if not isinstance(contact, dict):
        raise CrmFileError("a contact must be a mapping of tags and fields", line)
    tags = contact.get("tags") or []
    if not isinstance(tags, list) or any(isinstance(t, dict | list) for t in tags):
        raise CrmFileError('"tags" must be a list of words', line)
    fields: dict[str, str] = {}
    for name, raw in contact.items():
        if name == "tags":
            continue
        if isinstance(raw, dict | list):
            raise CrmFileError(f'field "{name}" must be a plain value, not a list or mapping', line)
        if (text := cell_text(raw)) is not None:
            fields[str(name)] = text
    return line, key, [t for t in map(cell_text, tags) if t], fields
