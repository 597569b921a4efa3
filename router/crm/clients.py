"""CRM lookups (I/O edge): a caller's E.164 number -> CrmRecord of tags, fields and status.

FileCrm serves an embedded CSV/JSON/YAML file; HttpCrm asks a real CRM under a hard timeout,
with a TTL cache and single-flight. A lookup never raises: every failure is a status.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from router.crm.body import ACCEPT_ENCODING, MAX_BODY_BYTES, NOT_JSON, BodyRefused, parse_json, read_capped
from router.crm.httpparts import (
    ENV_REF,
    OAuth2Token,
    dig,
    dotted_path,
    env_value,
    failure_reason,
    format_number,
)
from router.policy.crmfile import CrmFileError as CrmFileError
from router.policy.crmfile import cell_text, read_crm_file
from router.runtime.records import NOT_FOUND as NOT_FOUND
from router.runtime.records import CrmRecord as CrmRecord

CACHE_SIZE = 10_000  # numbers; the oldest entry goes first (all share one TTL, so oldest = soonest stale)
GUARD_S = 0.02  # a waiter's grace past timeout_ms, used only if a fetch overruns its own deadline
POOL_SIZE = 100  # connections; sized for ~100 concurrent lookups without queueing on the pool


class CrmClient(Protocol):
    """Anything that answers lookups; `lookup` never raises (except on cancellation)."""

    def cached(self, number: str) -> CrmRecord | None:
        """The record if it is at hand without waiting, else None (then `lookup`)."""
        ...

    async def lookup(self, number: str) -> CrmRecord: ...
    async def aclose(self) -> None: ...


class FileCrm:
    """The embedded CRM: a file read once into memory, looked up by E.164 number."""

    def __init__(self, records: Mapping[str, CrmRecord], columns: frozenset[str] = frozenset()) -> None:
        self._records = dict(records)
        # The field names the file offers: what lint checks each ${crm.FIELD} against.
        self.columns = columns or frozenset(f for r in self._records.values() for f in r.fields)

    @classmethod
    def from_path(cls, path: Path, *, region: str | None = None) -> FileCrm:
        """Read CSV, JSON or YAML (by suffix); `region` reads numbers written without +country."""
        return cls(*read_crm_file(path, region=region))

    def get(self, number: str) -> CrmRecord:
        """The record for an E.164 number: ok, or not_found."""
        return self._records.get(number, NOT_FOUND)

    cached = get  # in memory: always at hand

    async def lookup(self, number: str) -> CrmRecord:
        return self.get(number)

    async def aclose(self) -> None:
        pass


_OVERLOADED = CrmRecord("error", reason="CRM overloaded: too many lookups in flight")


class HttpCrm:
    """A CRM over HTTP: one pooled client, a hard overall timeout, a TTL cache, single-flight.

    `url` holds `${caller}`; header values may hold `${env.NAME}` (read once, here); `tags`
    and `fields` values are dotted paths into the JSON answer (`results.0.tags`).
    For real CRMs (DESIGN §12): `method` and `body` (a template with `${caller}`, sent as
    is), `found` (a dotted path that must be non-empty for `ok`: search APIs answer 200 with
    an empty list), `tags_split` (tags given as one delimited string), `number_format` (how
    `${caller}` is written: e164, national, digits) and `oauth2` (client credentials; the
    token is cached and fetched again before it expires).
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
        method: str = "GET",
        body: str | None = None,
        found: str | None = None,
        tags_split: str | None = None,
        number_format: str = "e164",
        oauth2: Mapping[str, str] | None = None,
        region: str | None = None,
    ) -> None:
        probe = httpx.URL(url.replace("${caller}", "0"))
        if probe.scheme not in ("http", "https") or not probe.host:
            raise ValueError("the CRM url must be an absolute http:// or https:// URL")
        environ = os.environ if env is None else env
        sent = httpx.Headers(
            # only the encodings crm/body.py decodes under its size cap
            {"user-agent": "vapi-router", "accept": "application/json", "accept-encoding": ACCEPT_ENCODING}
        )
        sent.update(
            {name: ENV_REF.sub(lambda m: env_value(environ, m[1]), v) for name, v in (headers or {}).items()}
        )
        if method not in ("GET", "POST"):
            raise ValueError(f"the CRM method must be GET or POST, not {method}")
        if number_format not in ("e164", "national", "digits"):
            raise ValueError(f"number_format must be e164, national or digits, not {number_format}")
        if body is not None and "content-type" not in sent:
            sent["content-type"] = "application/json" if body.lstrip()[:1] in ("{", "[") else "text/plain"
        self._method = method
        self._body = body
        self._found = dotted_path(found) if found else None
        self._tags_split = tags_split
        self._number_format = number_format
        self._region = region
        self._oauth = (
            OAuth2Token(
                {k: ENV_REF.sub(lambda m: env_value(environ, m[1]), v) for k, v in oauth2.items()},
                clock=clock,
                max_body_bytes=max_body_bytes,
                timeout_s=timeout_ms / 1000,
            )
            if oauth2
            else None
        )
        self._url = url
        self._tags = dotted_path(tags) if tags else None
        self._fields = {name: dotted_path(p) for name, p in (fields or {}).items()}
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
        written = format_number(number, self._number_format)
        url = self._url.replace("${caller}", quote(written, safe=""))
        body = self._body.replace("${caller}", written) if self._body is not None else None
        headers: dict[str, str] | None = None
        if self._oauth is not None:
            token = await self._oauth.get(self._client, deadline)
            if isinstance(token, CrmRecord):
                return token  # the token endpoint failed or hung: an error, within the deadline
            headers = {"authorization": f"Bearer {token}"}
        try:
            async with (
                asyncio.timeout_at(deadline),  # httpx's timeouts are per phase, not overall
                self._client.stream(self._method, url, content=body, headers=headers) as response,
            ):
                data = None
                if 200 <= response.status_code < 300:  # only a 2xx body is read: under a cap (crm/body.py)
                    data = await parse_json(await read_capped(response, self._max_body))
        except (TimeoutError, httpx.TimeoutException):
            return CrmRecord("timeout", reason=self._timed_out)
        except httpx.HTTPError as exc:
            return CrmRecord("error", reason=failure_reason(exc))
        except BodyRefused as exc:
            return CrmRecord("error", reason=str(exc))
        except Exception as exc:  # whatever goes wrong, the call must still be routed
            return CrmRecord("error", reason=type(exc).__name__)
        if response.status_code == 401 and self._oauth is not None:
            self._oauth.forget()  # revoked or rotated early: the next lookup fetches a new one
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
        if self._found is not None and dig(data, self._found) in (None, "", [], {}):
            return NOT_FOUND
        tags = dig(data, self._tags) if self._tags else None
        if isinstance(tags, str) and self._tags_split:
            tags = [t.strip() for t in tags.split(self._tags_split)]
        if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            tags = []
        fields = {name: text for name, path in self._fields.items() if (text := cell_text(dig(data, path)))}
        return CrmRecord("ok", frozenset(t for t in tags if t), fields)
