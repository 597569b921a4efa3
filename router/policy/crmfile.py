"""The embedded CRM file (CSV, JSON or YAML) -> records by E.164 number, with positioned errors. [read]

Lint reads its columns (each ${crm.FIELD} is checked against them) and reports every bad row;
router.crm.FileCrm serves it. The rows are read by router.policy.crmrows (as `crm import` reads them).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from router.policy.crmrows import RowProblem, cell_text, numbered, read_contacts
from router.runtime.records import CrmRecord

__all__ = ["CrmFileError", "cell_text", "read_crm_file"]


class CrmFileError(Exception):
    """An embedded CRM file that cannot be served; `line` is 1-based when known, `problems`
    holds every bad row (the message and line are the first one's)."""

    def __init__(self, message: str, line: int | None = None, problems: Sequence[RowProblem] = ()) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.message = message
        self.line = line
        self.problems = tuple(problems) or ((RowProblem(line, 1, message),) if line is not None else ())


def read_crm_file(path: Path, *, region: str | None = None) -> tuple[dict[str, CrmRecord], frozenset[str]]:
    """CSV, JSON or YAML (by suffix) -> (E.164 number -> record, the field names the file offers:
    a CSV's header even where every cell is blank). `region` reads numbers without +country.
    Raises CrmFileError with every bad row."""
    problems: list[RowProblem] = []
    header: list[str] = []
    records: dict[str, CrmRecord] = {}
    try:
        contacts = read_contacts(path, header, problems)
        if contacts is None:
            raise CrmFileError(f'unknown CRM file type "{path.suffix}": use .csv, .json, .yaml or .yml')
        for number, _, tags, fields in numbered(contacts, region, problems, ""):
            records[number] = CrmRecord("ok", frozenset(tags), fields)
    except UnicodeDecodeError:
        raise CrmFileError(f"{path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise CrmFileError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    except csv.Error as exc:  # pragma: no cover - read_contacts positions these
        raise CrmFileError(f"CSV: {exc}") from None
    if problems:
        ordered = sorted(problems)
        raise CrmFileError(ordered[0].message, ordered[0].line, ordered)
    return records, frozenset(header) or frozenset(f for r in records.values() for f in r.fields)
