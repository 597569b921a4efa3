"""CRM lookups (I/O edge): a caller's E.164 number -> CrmRecord of tags, fields and status.

FileCrm serves an embedded CSV/JSON/YAML file; HttpCrm asks a real CRM under a hard timeout,
with a TTL cache and single-flight. A lookup never raises: every failure is a status.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from router.crmbody import ACCEPT_ENCODING, MAX_BODY_BYTES, NOT_JSON, BodyRefused, parse_json, read_capped
from router.document import parse_document, pointer_of
from router.errors import PolicyError
from router.facts import scalar_text
from router.phone import normalise

CrmStatus = Literal["ok", "not_found", "timeout", "error", "disabled"]

CACHE_SIZE = 10_000  # numbers; the oldest entry goes first (all share one TTL, so oldest = soonest stale)
GUARD_S = 0.02  # a waiter's grace past timeout_ms, used only if a fetch overruns its own deadline
POOL_SIZE = 100  # connections; sized for ~100 concurrent lookups without queueing on the pool


@dataclass(frozen=True, slots=True)
class CrmRecord:
    """What the CRM knows about one caller, and how the lookup went.

    `reason` explains a timeout or error for the decision log; it never holds the number
    or a secret.
    """

    status: CrmStatus
    tags: frozenset[str] = frozenset()
    fields: Mapping[str, str] = field(default_factory=dict)
    ms: float = 0.0
    cached: bool = False
    reason: str = ""


NOT_FOUND = CrmRecord("not_found")


class CrmClient(Protocol):
    """Anything that answers lookups; `lookup` never raises (except on cancellation)."""

    def cached(self, number: str) -> CrmRecord | None:
        """The record if it is at hand without waiting, else None (then `lookup`)."""
        ...

    async def lookup(self, number: str) -> CrmRecord: ...
    async def aclose(self) -> None: ...


class CrmFileError(Exception):
    """An embedded CRM file that cannot be served; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.message = message
        self.line = line


_Row = tuple[int | None, str, list[str], dict[str, str]]  # line, number as written, tags, fields


class FileCrm:
    """The embedded CRM: a file read once into memory, looked up by E.164 number."""

    def __init__(self, records: Mapping[str, CrmRecord], columns: frozenset[str] = frozenset()) -> None:
        self._records = dict(records)
        # The field names the file offers (a CSV's header even where every cell is blank):
        # what lint checks each ${crm.FIELD} against.
        self.columns = columns or frozenset(f for r in self._records.values() for f in r.fields)

    @classmethod
    def from_path(cls, path: Path, *, region: str | None = None) -> FileCrm:
        """Read CSV, JSON or YAML (by suffix); `region` reads numbers written without +country."""
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
        return cls(records, frozenset(header))

    def get(self, number: str) -> CrmRecord:
        """The record for an E.164 number: ok, or not_found."""
        return self._records.get(number, NOT_FOUND)

    cached = get  # in memory: always at hand

    async def lookup(self, number: str) -> CrmRecord:
        return self.get(number)

    async def aclose(self) -> None:
        pass


def _text(value: Any) -> str | None:
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
        if (text := _text(raw)) is not None:
            fields[str(name)] = text
    return line, key, [t for t in map(_text, tags) if t], fields


_ENV_REF = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")


_OVERLOADED = CrmRecord("error", reason="CRM overloaded: too many lookups in flight")


class HttpCrm:
    """A CRM over HTTP: one pooled client, a hard overall timeout, a TTL cache, single-flight.

    `url` holds `${caller}`; header values may hold `${env.NAME}` (read once, here); `tags`
    and `fields` values are dotted paths into the JSON answer (`results.0.tags`).
    """

    def __init__(
        self,
        *,
        url: str,
        headers: Mapping[str, str] | None = None,
        tags: str | None = None,
        fields: Mapping[str, str] | None = None,
        timeout_ms: int = 1000,
        cache_ttl_s: float = 300,
        max_body_bytes: int = MAX_BODY_BYTES,
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        probe = httpx.URL(url.replace("${caller}", "0"))
        if probe.scheme not in ("http", "https") or not probe.host:
            raise ValueError("the CRM url must be an absolute http:// or https:// URL")
        environ = os.environ if env is None else env
        sent = httpx.Headers(
            # only the encodings crmbody decodes under its size cap
            {"user-agent": "vapi-router", "accept": "application/json", "accept-encoding": ACCEPT_ENCODING}
        )
        sent.update(
            {name: _ENV_REF.sub(lambda m: _env(environ, m[1]), v) for name, v in (headers or {}).items()}
        )
        self._url = url
        self._tags = _path(tags) if tags else None
        self._fields = {name: _path(p) for name, p in (fields or {}).items()}
        self._timeout_s = timeout_ms / 1000
        self._timed_out = f"timed out after {timeout_ms} ms"
        self._ttl = cache_ttl_s
        self._max_body = max_body_bytes
        self._clock = clock
        self._cache: dict[str, tuple[float, CrmRecord]] = {}  # insertion order = age
        self._inflight: dict[str, asyncio.Task[CrmRecord]] = {}
        self._waiters: dict[str, int] = {}  # callers waiting on each in-flight fetch
        self._client = httpx.AsyncClient(  # last: nothing after it can fail and leak it
            headers=sent,
            timeout=self._timeout_s,  # per phase; the overall bound is asyncio.timeout in _fetch
            limits=httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
            transport=transport,
        )

    async def __aenter__(self) -> HttpCrm:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def cached(self, number: str) -> CrmRecord | None:
        """The record at hand for an E.164 number without waiting: the cached, unexpired one,
        or the overload error when every connection is busy with other numbers. None: a
        lookup must ask the CRM (or join the request in flight for this number)."""
        start = time.perf_counter()
        hit = self._cache.get(number)
        if hit is not None:
            if hit[0] > self._clock():
                return replace(hit[1], cached=True, ms=(time.perf_counter() - start) * 1000)
            del self._cache[number]
        if len(self._inflight) >= POOL_SIZE and number not in self._inflight:
            # Every connection is busy (a CRM that stopped answering): queueing more requests
            # would only make the answers later than the callers' deadlines. Known at once,
            # so the server answers such a call without waiting (and without a task).
            return _OVERLOADED
        return None

    async def lookup(self, number: str) -> CrmRecord:
        """The record for an E.164 number, within timeout_ms of this call, whatever the CRM does."""
        start = time.perf_counter()
        hit = self.cached(number)
        if hit is not None:
            return hit
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        task = self._inflight.get(number)
        if task is None:  # single-flight: later callers for this number wait on the same request
            task = asyncio.create_task(self._fetch(number, deadline))
            self._inflight[number] = task
            self._waiters[number] = 0
            task.add_done_callback(
                lambda _: (self._inflight.pop(number, None), self._waiters.pop(number, None))
            )
        self._waiters[number] = self._waiters.get(number, 0) + 1
        try:
            # The fetch ends by its own deadline, never later than ours; this bound (a little
            # later, so that the fetch's own outcome wins) only guards against a stuck fetch.
            # shield: one caller giving up (its deadline, its request cancelled) must not
            # cancel the fetch the other callers are waiting on.
            async with asyncio.timeout_at(deadline + GUARD_S):
                record = await asyncio.shield(task)
        except TimeoutError:
            record = CrmRecord("timeout", reason=self._timed_out)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not task.cancelled() or (me is not None and me.cancelling()):
                raise  # the caller itself is being cancelled
            record = CrmRecord("error", reason="CRM client closed")
        finally:
            left = self._waiters.get(number, 0) - 1
            if number in self._waiters:
                self._waiters[number] = left
            if left <= 0 and not task.done():
                task.cancel()  # nobody waits for it any more: free its connection
        return replace(record, ms=(time.perf_counter() - start) * 1000)

    async def aclose(self) -> None:
        """Cancel lookups in flight and close the connection pool."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()

    async def _fetch(self, number: str, deadline: float) -> CrmRecord:
        url = self._url.replace("${caller}", quote(number, safe=""))
        try:
            async with (
                asyncio.timeout_at(deadline),  # httpx's timeouts are per phase, not overall
                self._client.stream("GET", url) as response,
            ):
                data = None
                if 200 <= response.status_code < 300:  # only a 2xx body is read: under a cap (crmbody)
                    data = await parse_json(await read_capped(response, self._max_body))
        except (TimeoutError, httpx.TimeoutException):
            return CrmRecord("timeout", reason=self._timed_out)
        except httpx.HTTPError as exc:
            return CrmRecord("error", reason=_failure(exc))
        except BodyRefused as exc:
            return CrmRecord("error", reason=str(exc))
        except Exception as exc:  # whatever goes wrong, the call must still be routed
            return CrmRecord("error", reason=type(exc).__name__)
        record = self._read(response, data)
        if record.status != "error" and self._ttl > 0:
            self._cache.pop(number, None)
            if len(self._cache) >= CACHE_SIZE:
                del self._cache[next(iter(self._cache))]
            self._cache[number] = (self._clock() + self._ttl, record)
        return record

    def _read(self, response: httpx.Response, data: Any) -> CrmRecord:
        if response.status_code == 404:
            return NOT_FOUND
        if not 200 <= response.status_code < 300:
            return CrmRecord("error", reason=f"HTTP {response.status_code}")
        if data is NOT_JSON:
            return CrmRecord("error", reason="body is not JSON")
        tags = _dig(data, self._tags) if self._tags else None
        if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            tags = []
        fields = {name: text for name, path in self._fields.items() if (text := _text(_dig(data, path)))}
        return CrmRecord("ok", frozenset(t for t in tags if t), fields)


def _env(environ: Mapping[str, str], name: str) -> str:
    if name not in environ:
        raise ValueError(f"environment variable {name} is not set (used in a CRM header)")
    return environ[name]


def _path(dotted: str) -> tuple[str, ...]:
    segments = tuple(dotted.split("."))
    if not all(segments):
        raise ValueError(f'"{dotted}" is not a dotted path such as contact.tags')
    return segments


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    """The value at a dotted path; integer segments index lists; None when absent."""
    for segment in path:
        if isinstance(data, dict) and segment in data:
            data = data[segment]
        elif isinstance(data, list) and segment.isdigit() and int(segment) < len(data):
            data = data[int(segment)]
        else:
            return None
    return data


def _failure(exc: httpx.HTTPError) -> str:
    """A short reason from the exception's type and cause, never its text (it may hold the URL)."""
    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        if any(isinstance(c, ConnectionRefusedError) for c in causes):
            return "connection refused"
        if any(isinstance(c, socket.gaierror) for c in causes):
            return "host not found"
        if any(isinstance(c, ssl.SSLError) for c in causes):
            return "TLS handshake failed"
        return "connect failed"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "connection dropped"
    return type(exc).__name__
