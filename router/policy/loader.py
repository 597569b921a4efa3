"""Read a policy path and run the pipeline: parse -> schema -> checks -> compile. [read]

A policy set is one YAML file or a directory's top-level *.yaml files (not *.test.yaml;
symlinks followed; dot-entries such as a ConfigMap's ..data skipped), in file-name order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.errors import PolicyError, PolicyInvalid
from router.policy.checks import check
from router.policy.compiler import compile_policy, version_of
from router.policy.crmfile import CrmFileError, read_crm_file
from router.policy.crmrows import RowProblem
from router.policy.document import Document, parse_document
from router.policy.envrefs import env_unset
from router.policy.fastdoc import fast_document
from router.policy.schema import is_valid, validate
from router.runtime import phone
from router.runtime.model import Policy

MAX_FILE_BYTES = 16 * 1024 * 1024


def policy_files(path: Path) -> list[Path]:
    """The files of a policy set, in merge order."""
    if path.is_dir():
        return sorted(
            (p for p in path.iterdir() if _is_policy_file(p)),
            key=lambda p: p.name,
        )
    return [path]


def _is_policy_file(p: Path) -> bool:
    return (
        not p.name.startswith(".")
        and p.name.endswith(".yaml")
        and not p.name.endswith(".test.yaml")
        and p.is_file()  # follows symlinks
    )


def read_texts(path: Path) -> list[tuple[str, str]]:
    """(display name, text) per file; raises PolicyError for unreadable files (any OS error:
    a directory without permission, too many open files...)."""
    try:
        return _read_texts(path)
    except OSError as exc:  # listing or probing the directory; a file's own read is worded below
        # `from exc`: the reload can tell a lack of descriptors (retried) from the files' fault
        raise PolicyError(str(path), 1, 1, f"cannot read: {exc.strerror or exc}", "no-file") from exc


def _read_texts(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        raise PolicyError(str(path), 1, 1, "no such file or directory", "no-file")
    files = policy_files(path)
    if not files:
        raise PolicyError(str(path), 1, 1, "no *.yaml policy files in this directory", "no-file")
    out = []
    for f in files:
        try:
            if f.stat().st_size > MAX_FILE_BYTES:
                raise PolicyError(
                    str(f), 1, 1, f"file is larger than {MAX_FILE_BYTES // 2**20} MiB", "too-large"
                )
            raw = f.read_bytes()
            out.append((str(f), raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            message = f"file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8"
            raise PolicyError(str(f), line, col, message, "not-text") from None
        except OSError as exc:
            raise PolicyError(str(f), 1, 1, f"cannot read: {exc.strerror}", "no-file") from exc
    return out


@dataclass(frozen=True, slots=True)
class Loaded:
    """The outcome of linting a policy set: its documents, problems and (if clean) policy."""

    docs: tuple[Document, ...]
    problems: tuple[PolicyError, ...]
    policy: Policy | None
    version: str
    crm_file: str | None = None

    @property
    def errors(self) -> list[PolicyError]:
        return [p for p in self.problems if p.severity == "error"]


def crm_file_of(docs: Sequence[Document]) -> tuple[Document, str, Path] | None:
    """The embedded CRM file a set names (crm.file, relative to its policy file)."""
    for doc in docs:
        if isinstance(doc.data, dict) and isinstance(doc.data.get("crm"), dict):
            name = doc.data["crm"].get("file")
            if isinstance(name, str):
                return doc, name, (Path(doc.file).parent / name)
    return None


def crm_database_of(docs: Sequence[Document]) -> tuple[Document, str, Any] | None:
    """(document, "sqlite" or "postgres", its setting) when the set's CRM is a database."""
    for doc in docs:
        if isinstance(doc.data, dict) and isinstance(doc.data.get("crm"), dict):
            crm = doc.data["crm"]
            for kind in ("sqlite", "postgres"):
                if kind in crm:
                    return doc, kind, crm[kind]
    return None


def _crm_database_fields(
    found: tuple[Document, str, Any], problems: list[PolicyError]
) -> tuple[frozenset[str] | None, str | None]:
    """The field names a database CRM offers (what ${crm.X} and `crm:` are checked against)
    and, for SQLite, the database's resolved path. SQLite: read from the table's schema;
    PostgreSQL: the columns the query declares (None when it cannot tell, e.g. `*`)."""
    doc, kind, setting = found
    if kind == "postgres":
        from router.policy.crmcolumns import query_columns

        query = setting.get("query") if isinstance(setting, dict) else None
        if not isinstance(query, str):
            return None, None
        columns = query_columns(query)
        return (None if columns is None else columns - {"tags", "number"}), None
    if not isinstance(setting, str):
        return None, None
    from router.policy.crmcolumns import field_columns

    base = Path(doc.file).parent.resolve()
    path = Path(doc.file).parent / setting
    resolved = path.resolve()
    if not resolved.is_relative_to(base):
        problems.append(
            doc.error("/crm/sqlite", f'crm.sqlite "{setting}" is outside the policy directory', "crm-file")
        )
    elif not resolved.is_file():
        problems.append(
            doc.error(
                "/crm/sqlite",
                f'crm.sqlite "{setting}" does not exist (looked for {path}); '
                f"build it with `vapi-router crm import FILE --into {path}`",
                "crm-file",
            )
        )
    else:
        try:
            return field_columns(resolved), str(resolved)
        except CrmFileError as exc:
            problems.append(doc.error("/crm/sqlite", exc.message, "crm-file"))
    return None, None


def _region(docs: Sequence[Document]) -> str | None:
    """settings.region of the set when it is a known region (else the checks report it)."""
    for doc in docs:
        settings = doc.data.get("settings") if isinstance(doc.data, dict) else None
        if isinstance(settings, dict) and isinstance(settings.get("region"), str):
            return settings["region"] if phone.is_country(settings["region"]) else None
    return None


def read_document(name: str, text: str, *, fast: bool = True) -> tuple[Document | None, list[PolicyError]]:
    """One file -> (Document, schema problems). The fast path (Rust parser + compiled schema
    check, positions on demand) serves valid files; anything else takes the positioned path."""
    if fast:
        doc = fast_document(text, file=name)
        if doc is not None and is_valid(doc.data):
            return doc, []
    try:
        doc = parse_document(text, file=name)
    except PolicyError as exc:
        return None, [exc]
    return doc, [*doc.problems, *validate(doc)]


def lint_texts(
    texts: Sequence[tuple[str, str]],
    *,
    fast: bool = True,
    compile: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Loaded:
    """Every problem of a policy set given as texts; compiles it when there are no errors
    (unless `compile` is False: the reload child only checks). `environ` (default: this
    process's) is what `${env.NAME}` is checked against."""
    problems: list[PolicyError] = []
    docs: list[Document] = []
    for file, text in texts:
        parsed, issues = read_document(file, text, fast=fast)
        problems.extend(issues)
        if parsed is not None:
            docs.append(parsed)
    version = version_of(texts)
    if not docs:
        return Loaded((), tuple(sorted(problems)), None, version)
    if any(p.severity == "error" for p in problems):
        # Show the semantic problems too (unknown names, bad numbers...), minus duplicates of
        # what the schema already said about the same value.
        seen = {(p.file, p.line, p.column) for p in problems}
        extra = [
            p
            for p in check(docs, tolerant=True)
            if p.severity == "error" and (p.file, p.line, p.column) not in seen
        ]
        return Loaded(tuple(docs), tuple(sorted({*problems, *extra})), None, version)
    crm_fields: frozenset[str] | None = None
    crm_path: str | None = None
    found = crm_file_of(docs)
    if found is not None:
        doc, name, path = found
        base = Path(doc.file).parent.resolve()
        resolved = path.resolve()
        if not resolved.is_relative_to(base):
            problems.append(
                doc.error("/crm/file", f'crm.file "{name}" is outside the policy directory', "crm-file")
            )
        elif not resolved.is_file():
            problems.append(
                doc.error("/crm/file", f'crm.file "{name}" does not exist (looked for {path})', "crm-file")
            )
        else:  # read it as the server will, so that a bad row fails lint, not the reload
            try:
                crm_fields = read_crm_file(resolved, region=_region(docs))[1]
                crm_path = str(resolved)
            except CrmFileError as exc:  # every bad row, each at its own line:col
                rows = exc.problems or (RowProblem(1, 1, exc.message),)
                problems.extend(PolicyError(str(path), p.line, p.col, p.message, "crm-file") for p in rows)
    found_db = crm_database_of(docs)
    if found_db is not None:
        crm_fields, crm_path = _crm_database_fields(found_db, problems)
    problems.extend(check(docs, crm_fields=crm_fields))
    problems.extend(env_unset(docs, os.environ if environ is None else environ))
    if any(p.severity == "error" for p in problems) or not compile:
        return Loaded(tuple(docs), tuple(sorted(problems)), None, version, crm_path)
    policy = compile_policy(docs, version=version, crm_file=crm_path)
    return Loaded(tuple(docs), tuple(sorted(problems)), policy, version, crm_path)


def lint_path(path: Path) -> Loaded:
    """lint_texts over the files at `path` (a file or a directory)."""
    try:
        texts = read_texts(path)
    except PolicyError as exc:
        return Loaded((), (exc,), None, "")
    return lint_texts(texts)


def load_policy(path: Path) -> Policy:
    """The compiled policy at `path`; raises PolicyInvalid with every error."""
    loaded = lint_path(path)
    if loaded.policy is None:
        raise PolicyInvalid(loaded.errors or list(loaded.problems))
    return loaded.policy
