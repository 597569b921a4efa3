"""The HTTP CRM's parts (I/O edge): number formats, dotted paths into the JSON answer,
`${env.NAME}` values, failure reasons that never quote a URL, and the OAuth2 token."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import phonenumbers

from router.crm.body import MAX_BODY_BYTES, NOT_JSON, BodyRefused, parse_json, read_capped
from router.runtime.records import CrmRecord

ENV_REF = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")


def format_number(number: str, how: str) -> str:
    """An E.164 number as a CRM stores it: e164 (+14155552671), digits (14155552671) or
    national ((415) 555-2671)."""
    if how == "digits":
        return number.lstrip("+")
    if how == "national":
        try:
            parsed = phonenumbers.parse(number, None)
        except phonenumbers.NumberParseException:
            return number
        return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL))
    return number


TOKEN_MARGIN_S = 60.0  # fetch a new token this long before the old one expires (at most 10% of its life)


class OAuth2Token:
    """An OAuth2 client-credentials token: fetched once for all lookups (single-flight),
    cached, and fetched again before it expires. A failure is a CRM error record.

    The token endpoint's answer is read as the CRM's is (crm/body.py): at most
    `max_body_bytes`, as sent and as inflated. A fetch is abandoned after `timeout_s` in all
    (httpx's timeouts are per read: a trickling answer would hold the one fetch every lookup
    waits on), so the next lookup starts a new one."""

    def __init__(
        self,
        settings: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_body_bytes: int = MAX_BODY_BYTES,
        timeout_s: float = 1.0,
    ) -> None:
        self._form = {
            "grant_type": "client_credentials",
            "client_id": settings["client_id"],
            "client_secret": settings["client_secret"],
        }
        if settings.get("scope"):
            self._form["scope"] = settings["scope"]
        self._url = settings["token_url"]
        self._clock = clock
        self._max_body = max_body_bytes
        self._timeout_s = timeout_s
        self._token: str | None = None
        self._renew_at = 0.0
        self._task: asyncio.Task[str] | None = None
        self.fetches = 0

    def forget(self) -> None:
        self._token = None

    async def get(self, client: httpx.AsyncClient, deadline: float) -> str | CrmRecord:
        """The token, or an error record if the endpoint fails or does not answer by `deadline`."""
        if self._token is not None and self._clock() < self._renew_at:
            return self._token
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._fetch(client))
            # its waiters may all have gone (their deadlines): its failure is then nobody's to
            # see, and asyncio would log it as a traceback ("exception was never retrieved")
            self._task.add_done_callback(_seen)
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(self._task)
        except TimeoutError:
            return CrmRecord("error", reason="OAuth2 token endpoint did not answer in time")
        except httpx.HTTPError as exc:
            return CrmRecord("error", reason=f"OAuth2 token endpoint: {failure_reason(exc)}")
        except _TokenError as exc:
            return CrmRecord("error", reason=f"OAuth2 token endpoint: {exc}")

    async def _fetch(self, client: httpx.AsyncClient) -> str:
        self.fetches += 1
        async with (
            asyncio.timeout(self._timeout_s),
            client.stream("POST", self._url, data=self._form) as response,
        ):
            if not 200 <= response.status_code < 300:
                raise _TokenError(f"HTTP {response.status_code}")
            try:
                body = await read_capped(response, self._max_body)
            except BodyRefused as exc:
                raise _TokenError(str(exc)) from None
        data = await parse_json(body)
        if data is NOT_JSON:
            raise _TokenError("body is not JSON")
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise _TokenError("no access_token in the answer")
        lifetime = _seconds(data.get("expires_in"), default=3600.0)
        self._token = token
        self._renew_at = self._clock() + lifetime - min(TOKEN_MARGIN_S, lifetime / 10)
        return token


class _TokenError(Exception):
    pass


def _seen(task: asyncio.Task[str]) -> None:
    if not task.cancelled():
        task.exception()


def _seconds(value: object, *, default: float) -> float:
    """expires_in as seconds (some servers send it as a string); the default when unusable."""
    try:
        seconds = float(value) if isinstance(value, int | float | str) else default
    except ValueError:
        return default
    return seconds if 0 < seconds < 1e9 else default


def env_value(environ: Mapping[str, str], name: str) -> str:
    if name not in environ:
        raise ValueError(f"environment variable {name} is not set (used in a CRM header)")
    return environ[name]


def dotted_path(dotted: str) -> tuple[str, ...]:
    segments = tuple(dotted.split("."))
    if not all(segments):
        raise ValueError(f'"{dotted}" is not a dotted path such as contact.tags')
    return segments


def dig(data: Any, path: tuple[str, ...]) -> Any:
    """The value at a dotted path; integer segments index lists; None when absent."""
    for segment in path:
        if isinstance(data, dict) and segment in data:
            data = data[segment]
        elif isinstance(data, list) and segment.isdigit() and int(segment) < len(data):
            data = data[int(segment)]
        else:
            return None
    return data


def failure_reason(exc: httpx.HTTPError) -> str:
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
