"""What a database CRM offers a policy, read at lint time: the SQLite table's columns and the
columns a PostgreSQL query declares. [pure + read]"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from urllib.parse import quote

from router.policy.crmfile import CrmFileError

TABLE = "customers"


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection (not immutable: a rename over the file must stay visible)."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    con = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    con.execute("PRAGMA query_only = 1")
    return con


def table_columns(path: Path) -> list[str]:
    """The columns of `customers` in the database at `path`; raises CrmFileError when it has
    no such table or no `number` column, or is not an SQLite database."""
    if not path.is_file():
        raise CrmFileError(f"{path.name} does not exist")
    try:
        con = open_readonly(path)
        try:
            columns = [str(row[1]) for row in con.execute(f"PRAGMA table_info({TABLE})")]
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise CrmFileError(f"{path.name} is not a readable SQLite database: {exc}") from None
    if not columns:
        raise CrmFileError(
            f'{path.name} has no table "{TABLE}": '
            f"build it with `vapi-router crm import FILE --into {path.name}`"
        )
    if "number" not in columns:
        raise CrmFileError(f'table "{TABLE}" in {path.name} has no "number" column')
    return columns


def field_columns(path: Path) -> frozenset[str]:
    """The field names a policy may read (every column but number and tags)."""
    return frozenset(c for c in table_columns(path) if c not in ("number", "tags"))


_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_AS = re.compile(rf"\S\s+as\s+({_IDENT})\s*$", re.IGNORECASE)  # upper(name) AS name
_BARE_ALIAS = re.compile(rf"[\w)'\]\"]\s+({_IDENT})\s*$")  # upper(name) name
_COLUMN = re.compile(rf"(?:{_IDENT}\s*\.\s*)*({_IDENT})\s*$")
_KEYWORDS = frozenset({"distinct", "all", "from", "select", "and", "or", "not", "null", "end"})


def _name(ident: str) -> str:
    """An identifier as PostgreSQL names the column: quoted keeps case, unquoted folds to lower."""
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident.lower()


def _select_list(query: str) -> str | None:
    """The text of the top-level SELECT list, or None when there is none to read."""
    text = _COMMENTS.sub(" ", query)
    depth, start, i = 0, -1, 0
    lowered = text.lower()
    quote = ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            if start < 0 and lowered.startswith("select", i) and not _word_at(lowered, i + 6):
                start = i + 6
            elif start >= 0 and lowered.startswith("from", i) and not _word_at(lowered, i + 4):
                return text[start:i]
        i += 1
    return text[start:] if start >= 0 else None


def _word_at(text: str, i: int) -> bool:
    return i < len(text) and (text[i].isalnum() or text[i] == "_")


def _split_top(text: str) -> list[str]:
    parts, depth, quote, last = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    parts.append(text[last:])
    return [p.strip() for p in parts]


def query_columns(query: str) -> frozenset[str] | None:
    """The column names a SELECT declares (aliases, or plain column references); None when
    it cannot tell (`*`, an expression without an alias), and then lint checks nothing."""
    select = _select_list(query)
    if select is None:
        return None
    select = re.sub(r"^\s*(?:distinct(?:\s+on\s*\([^)]*\))?|all)\s+", "", select, flags=re.IGNORECASE)
    names: set[str] = set()
    for item in _split_top(select):
        if not item or item == "*" or item.endswith(".*"):
            return None
        found = _AS.search(item) or _COLUMN.fullmatch(item) or _BARE_ALIAS.search(item)
        if found is None or found.group(1).lower() in _KEYWORDS:
            return None
        names.add(_name(found.group(1)))
    return frozenset(names)
