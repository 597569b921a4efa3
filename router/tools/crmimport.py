"""`vapi-router crm import FILE --into DB`: a CSV/JSON/YAML CRM file -> the SQLite `customers` table. [edge]

Every bad row is reported as FILE:LINE:COL with the offending value, in one run; then nothing
is written. A clean file is built beside the target and renamed over it (atomic: a server
reading the old file switches to the new one, never sees half of it).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from router.policy.crmrows import RowProblem, numbered, read_contacts
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


def import_file(source: Path, into: Path, *, region: str | None = None) -> ImportResult:
    """Build `into` from `source`; on any problem, `into` is left as it was."""
    name = str(source)
    problems: list[ImportProblem] = []
    found: list[RowProblem] = []
    fields: list[str] = []
    records: list[_Record] = []
    try:
        contacts = read_contacts(source, fields, found)
        if contacts is None:
            raise ValueError(f'unknown CRM file type "{source.suffix}": use .csv, .json, .yaml or .yml')
        for number, _, tags, row_fields in numbered(contacts, region, found, ": use --region"):
            records.append((number, ";".join(tags) if tags else None, row_fields))
    except UnicodeDecodeError:
        problems.append(ImportProblem(name, 1, 1, f"{source.name} is not UTF-8 text"))
    except csv.Error as exc:
        problems.append(ImportProblem(name, 1, 1, f"CSV: {exc}"))
    except OSError as exc:
        problems.append(ImportProblem(name, 1, 1, f"cannot read: {exc.strerror or exc}"))
    problems.extend(ImportProblem(name, p.line, p.col, p.message) for p in found)
    if problems:
        return ImportResult(0, (), tuple(sorted(problems)))
    if not fields:  # JSON/YAML: the union of every contact's field names, in first-seen order
        seen: dict[str, None] = {}
        for _, _, row_fields in records:
            seen.update(dict.fromkeys(row_fields))
        fields = [f for f in seen if f.lower() not in ("number", "tags")]
    write_database(into, fields, records)
    return ImportResult(len(records), tuple(fields), ())
