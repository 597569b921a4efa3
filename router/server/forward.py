"""settings.forward: every message the router does not route goes on to another server (DESIGN §9). [I/O]

Message types that expect an answer are proxied within `timeout_ms`: the upstream's 2xx JSON
object comes back to Vapi as a 200. Notifications get `200 {}` at once and go out from a
bounded queue with retries; a full queue drops (and counts) rather than grow. Nothing here
ever delays an assistant-request: those never reach this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger("router.server.forward")

# Types whose answer Vapi waits for (any type the router does not know is proxied too).
ANSWERED: Final = frozenset(
    {"tool-calls", "knowledge-base-request", "voice-request", "call.endpointing.request", "function-call"}
)
# Types Vapi sends only to inform: queued, answered `{}` at once.
NOTIFICATIONS: Final = frozenset(
    {
        "status-update",
        "end-of-call-report",
        "transcript",
        'transcript[transcriptType="final"]',
        "conversation-update",
        "hang",
        "speech-update",
        "model-output",
        "phone-call-control",
        "transfer-update",
        "user-interrupted",
        "voice-input",
        "language-changed",
        "language-change-detected",
        "assistant.started",
        "assistant.speechStarted",
        "workflow.node.started",
        "chat.created",
        "chat.deleted",
        "session.created",
        "session.updated",
        "session.deleted",
        "call.deleted",
        "call.delete.failed",
        "call.artifact.upload",
    }
)
DEFAULT_TIMEOUT_MS: Final = 3000
DEFAULT_QUEUE: Final = 1000
RETRIES: Final = 3  # attempts per notification
BACKOFF_S: Final = (0.1, 0.5)  # waits between attempts
MAX_REPLY: Final = 1 << 20  # an upstream answer larger than this is refused, not relayed
_ENV: Final = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
EMPTY: Final = b"{}"


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    queue: int = DEFAULT_QUEUE

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], environ: Mapping[str, str]) -> ForwardSettings:
        """From the checked `settings.forward` mapping; `${env.NAME}` filled in (empty if unset)."""
        headers = tuple(
            (str(k), _ENV.sub(lambda m: environ.get(m.group(1), ""), str(v)))
            for k, v in (raw.get("headers") or {}).items()
        )
        return cls(
            url=str(raw["url"]),
            headers=headers,
            timeout_ms=int(raw.get("timeout_ms", DEFAULT_TIMEOUT_MS)),
            queue=int(raw.get("queue", DEFAULT_QUEUE)),
        )


def is_notification(kind: str) -> bool:
    return kind in NOTIFICATIONS


def type_label(kind: str) -> str:
    """The `type` label: a type Vapi documents, else "other" (a sender must not be able to
    mint unbounded label values)."""
    return kind if kind in NOTIFICATIONS or kind in ANSWERED else "other"


def relayable(status: int, reply: bytes | None) -> bytes:
    """What Vapi gets of an upstream's answer to an answered type, always under 200: a JSON
    object under a 2xx status (no body: `{}`). Anything else raises ValueError, a failure: Vapi
    ignores the body of a non-2xx answer (so a tool's error would never reach the model), a
    204 cannot carry the JSON Vapi reads, and no answered type's reply is anything but an object."""
    if not 200 <= status < 300:
        raise ValueError(f"upstream status {status}")
    if reply is None:
        raise ValueError("upstream reply too large")
    if not reply.strip():
        return EMPTY
    if not isinstance(orjson.loads(reply), dict):  # not JSON: orjson's ValueError
        raise ValueError("upstream reply is not a JSON object")
    return reply


def failed_reply(kind: str, message: Mapping[str, Any], why: str) -> bytes:
    """The answer when the upstream fails: tool-calls get one result per tool call carrying
    the error (so the model hears the tool failed); anything else `{}`."""
    if kind != "tool-calls":
        return EMPTY
    calls = message.get("toolCallList") or message.get("toolCalls") or []
    results = []
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, dict):
            function = call.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            call_id = call.get("id")
            results.append(
                {
                    "error": why,
                    "toolCallId": call_id if isinstance(call_id, str) else "",
                    "name": name if isinstance(name, str) else "",
                }
            )
    return orjson.dumps({"results": results})


class Forwarder:
    """One upstream: proxy() for answered types, notify() for the rest, counted in
    router_forward_total{type,result} (ok, error, timeout, dropped)."""

    def __init__(
        self,
        settings: ForwardSettings,
        counter: Counter,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.counter = counter
        timeout = settings.timeout_ms / 1000
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), transport=transport, headers=dict(settings.headers)
        )
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=settings.queue)
        self.worker: asyncio.Task[None] | None = None

    async def proxy(self, kind: str, message: Mapping[str, Any], body: bytes) -> tuple[int, bytes]:
        """The upstream's JSON answer within timeout_ms (see relayable); on failure a 200 that says so."""
        try:
            async with asyncio.timeout(self.settings.timeout_ms / 1000):
                status, reply = await self._post(body)
            reply = relayable(status, reply)
        except TimeoutError:
            self.counter.labels(type_label(kind), "timeout").inc()
            return 200, failed_reply(kind, message, "the tool server did not answer in time")
        except (httpx.HTTPError, ValueError, OSError) as exc:
            self.counter.labels(type_label(kind), "error").inc()
            log.info("forward %s failed: %s", kind, type(exc).__name__)
            return 200, failed_reply(kind, message, "the tool server failed")
        self.counter.labels(type_label(kind), "ok").inc()
        return 200, reply

    def notify(self, kind: str, body: bytes) -> None:
        """Queue a notification; a full queue drops it (counted). Never waits."""
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._drain())
        try:
            self.queue.put_nowait((kind, body))
        except asyncio.QueueFull:
            self.counter.labels(type_label(kind), "dropped").inc()

    async def _post(self, body: bytes) -> tuple[int, bytes | None]:
        """POST `body` upstream: its status and body (None past MAX_REPLY bytes: reading stops)."""
        headers = {"content-type": "application/json"}
        async with self.client.stream("POST", self.settings.url, content=body, headers=headers) as response:
            try:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_REPLY:
                        return response.status_code, None
                    chunks.append(chunk)
                return response.status_code, b"".join(chunks)
            finally:
                # An httpx Response and its stream refer to each other, so only a full cyclic
                # collection (rare in a server) would free them, and with them whatever the
                # socket had buffered past MAX_REPLY: megabytes per flooded answer. Closed and
                # detached, the connection's buffers go at once, by reference counting.
                await response.aclose()
                response.stream = httpx.ByteStream(b"")

    async def _drain(self) -> None:
        while True:
            kind, body = await self.queue.get()
            result = "error"
            for attempt in range(RETRIES):
                try:
                    async with asyncio.timeout(self.settings.timeout_ms / 1000):
                        status, _ = await self._post(body)
                    # a 2xx is delivered, whatever its body (checking it would only send a duplicate)
                    result = "ok" if 200 <= status < 300 else "error"
                except TimeoutError:
                    result = "timeout"
                except (httpx.HTTPError, ValueError, OSError):
                    result = "error"
                if result == "ok" or attempt == RETRIES - 1:
                    break
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            self.counter.labels(type_label(kind), result).inc()

    async def aclose(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.worker
        await self.client.aclose()


class Forwarding:
    """The Forwarder of the live policy's settings.forward, rebuilt when they change."""

    def __init__(self, registry: CollectorRegistry, environ: Mapping[str, str] | None = None) -> None:
        self.counter = Counter(
            "router_forward_total",
            "Messages forwarded to settings.forward",
            ["type", "result"],
            registry=registry,
        )
        self.environ = environ if environ is not None else os.environ
        self.current: Forwarder | None = None
        self._raw: Mapping[str, Any] | None = None
        self._retired: set[asyncio.Task[None]] = set()

    def for_settings(self, raw: Mapping[str, Any] | None) -> Forwarder | None:
        if raw is None:
            return None
        if self.current is None or raw != self._raw:
            old = self.current
            self.current = Forwarder(ForwardSettings.from_raw(raw, self.environ), self.counter)
            self._raw = raw
            if old is not None:  # let the old one finish its queue's current send, then close
                task = asyncio.get_running_loop().create_task(old.aclose())
                self._retired.add(task)
                task.add_done_callback(self._retired.discard)
        return self.current

    async def aclose(self) -> None:
        if self.current is not None:
            await self.current.aclose()
