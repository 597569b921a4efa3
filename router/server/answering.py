"""The webhook's answer path: auth, the body, the message type, decide now or after the CRM,
handoffs and forwarded messages (WebhookAnswers, the webhook half of Server). [I/O]
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.datastructures import URL, Headers
from starlette.types import Receive, Scope, Send

from router.server.auth import AuthConfig, refused_scheme, verify_webhook
from router.server.capture import Capture
from router.server.decisionlog import timestamp
from router.server.forward import Forwarding, is_notification
from router.server.handoff import HandoffView, as_handoff
from router.server.http import (
    ARRIVED,
    NO_POLICY,
    NOT_JSON,
    NOT_MESSAGE,
    TOO_LARGE,
    UNAUTHORIZED,
    BodyTooLarge,
    receive_body,
    send_json,
)
from router.server.live import Live
from router.server.service import Outcome, Pending, decide_now
from router.server.statecall import decide_with_state, release_if_ended
from router.server.store import PolicyStore

if TYPE_CHECKING:
    from router.server.jwks import PendingKey


from router.server.recording import Recording, call_id_of

_NOT_PARSED = object()


def _lenient_json(body: bytes) -> Any:
    """The body (strict UTF-8, as orjson reads it) as Python's json reads it, or _NOT_PARSED."""
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError too), or nested too deep
        return _NOT_PARSED


class WebhookAnswers(Recording):
    """The webhook half of Server (router.server.app): answer_now and what it calls."""

    store: PolicyStore
    auth: AuthConfig
    clock: Callable[[], float]
    capture: Capture | None
    handoffs: HandoffView
    forwarding: Forwarding | None
    workers: int
    _background: set[asyncio.Task[None]]

    @property
    def signs_url(self) -> bool:
        """Whether the HMAC payload signs the request URL (which must then be rebuilt per call)."""
        return self.auth.hmac is not None and "{url}" in self.auth.hmac.payload

    async def webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        extensions = scope.get("extensions")
        if extensions and ARRIVED in extensions:  # pipelined: it waited for the replies before it
            started = min(started, extensions[ARRIVED])
        headers = Headers(scope=scope)
        try:
            body = await receive_body(scope, receive)
        except BodyTooLarge:
            return await send_json(send, TOO_LARGE, 413)
        url = str(URL(scope=scope)) if self.signs_url else ""
        answer = self.answer_now(scope["method"], url, headers, body, started)
        status, reply = answer if isinstance(answer, tuple) else await answer
        await send_json(send, reply, status)

    def answer_now(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        started: float,
        *,
        record_later: bool = False,
        arrived: Callable[[], float | None] | None = None,
        authenticated: bool = False,
    ) -> tuple[int, bytes] | Coroutine[Any, Any, tuple[int, bytes]]:
        """The webhook's status and JSON reply for a read body; a coroutine that gives them
        when the answer waits for the CRM over the network. `url` only when signs_url.
        `record_later`: a reply given at once leaves its metrics and decision-log line to
        `record_answered()`, which the caller runs once the reply is written.
        `arrived`: when the request reached the machine (perf_counter), if the transport can
        tell; asked only when the answer waits, whose deadline then counts from it.
        `authenticated`: the caller checked the credential already."""
        auth = self.auth
        if auth.webhook_configured and not authenticated:
            verdict = verify_webhook(auth, headers, body, now=self.clock(), method=method, url=url)
            if verdict is not True:
                if verdict is False:
                    return self._refuse(headers)
                return self._answer_once_keyed(verdict, method, url, headers, body, started, arrived)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            # orjson refuses what Python's json accepts, such as a lone surrogate escape ("\ud83d":
            # JavaScript's JSON.stringify of a string cut inside an emoji); Vapi can send those.
            # Nesting past orjson's 1,024 levels stays refused: no Vapi message is that deep.
            data = _NOT_PARSED if "depth" in str(exc) else _lenient_json(body)
            if data is _NOT_PARSED:
                return 400, NOT_JSON
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return 400, NOT_MESSAGE
        kind = message["type"]
        if kind not in ("assistant-request", "transfer-destination-request"):
            return self.other_message(kind, message, body, started)
        live = self.store.live
        if live is None:  # serve never starts without a policy; tests may
            return 503, NO_POLICY
        transfer = kind == "transfer-destination-request"
        if live.state is None:
            outcome = decide_now(live, message, started=started, transfer=transfer)
        else:  # the policy reads live call state (DESIGN §13)
            outcome = decide_with_state(
                live, message, started, transfer, self.metrics.state, self._background
            )
        if isinstance(outcome, Pending):
            early = arrived() if arrived is not None else None
            if early is not None and early < started:
                # In a burst the request waited in the kernel before it was read; Vapi's clock
                # ran all along, so that time comes out of the deadline too.
                outcome = dataclasses.replace(outcome, deadline=outcome.deadline - (started - early))
            return self._answer_later(kind, message, outcome, live, started)
        return self._answered(kind, message, outcome, live, started, record_later)

    def other_message(
        self, kind: str, message: dict[str, Any], body: bytes, started: float
    ) -> tuple[int, bytes] | Coroutine[Any, Any, tuple[int, bytes]]:
        """Every message type but the two routed above (DESIGN §9): handoffs are routed too;
        with settings.forward the rest is proxied (answered types) or queued (notifications)."""
        live = self.store.live
        if self.outcomes is not None:  # status-update / end-of-call-report: call outcomes
            self.outcomes.observe(kind, message, self.workers)
        if kind == "handoff-destination-request":
            if live is None:
                return 503, NO_POLICY
            outcome = decide_now(self.handoffs.of(live), message, started=started, transfer=True)
            if isinstance(outcome, Pending):
                return self._handoff_later(kind, message, outcome, live, started)
            return self._handoff_answered(kind, message, outcome, live, started)
        forward = live.policy.settings.forward if live is not None else None
        if forward is None:
            # a proof of the end releases the call's capacity slot (DESIGN §13); else {}
            return release_if_ended(live, message, self.metrics.state)
        if self.forwarding is None:
            self.forwarding = Forwarding(self.metrics.registry, self.store.env)
        forwarder = self.forwarding.for_settings(forward)
        assert forwarder is not None
        if is_notification(kind):
            forwarder.notify(kind, body)
            return release_if_ended(live, message, self.metrics.state)
        return forwarder.proxy(kind, message, body)

    async def _handoff_later(
        self, kind: str, message: dict[str, Any], pending: Pending, live: Live, started: float
    ) -> tuple[int, bytes]:
        return self._handoff_answered(kind, message, await pending.finish(), live, started)

    def _handoff_answered(
        self, kind: str, message: dict[str, Any], outcome: Outcome, live: Live, started: float
    ) -> tuple[int, bytes]:
        outcome = as_handoff(outcome)
        self._record(
            kind,
            call_id_of(message),
            outcome,
            live.policy.version,
            time.perf_counter() - started,
            timestamp(),
        )
        return 200, outcome.body

    def _refuse(self, headers: Mapping[str, str]) -> tuple[int, bytes]:
        self.metrics.auth_failures.labels(refused_scheme(self.auth, headers)).inc()
        return 401, UNAUTHORIZED

    async def _answer_once_keyed(
        self,
        pending: PendingKey,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        started: float,
        arrived: Callable[[], float | None] | None,
    ) -> tuple[int, bytes]:
        """answer_now for a token whose signing key must come from the JWKS first."""
        if not await self.key_arrived(pending, headers, started):
            return 401, UNAUTHORIZED
        answer = self.answer_now(method, url, headers, body, started, arrived=arrived, authenticated=True)
        return answer if isinstance(answer, tuple) else await answer

    async def key_arrived(self, pending: PendingKey, headers: Mapping[str, str], started: float) -> bool:
        """Wait for a token's key from the JWKS for at most half the call's deadline (the rest
        stays the CRM's); a refusal is counted."""
        live = self.store.live
        deadline_s = live.policy.settings.deadline_ms / 1000 if live is not None else 4.0
        if await pending.wait(deadline_s / 2 - (time.perf_counter() - started)):
            return True
        self._refuse(headers)
        return False

    async def authenticate(self, headers: Mapping[str, str], body: bytes, method: str, url: str) -> bool:
        """Webhook auth for the endpoints beside the webhook (/v1/resolve); refusals counted."""
        if not self.auth.webhook_configured:
            return True
        started = time.perf_counter()
        verdict = verify_webhook(self.auth, headers, body, now=self.clock(), method=method, url=url)
        if verdict is True:
            return True
        if verdict is False:
            self._refuse(headers)
            return False
        return await self.key_arrived(verdict, headers, started)

    async def _answer_later(
        self, kind: str, message: dict[str, Any], pending: Pending, live: Live, started: float
    ) -> tuple[int, bytes]:
        return self._answered(kind, message, await pending.finish(), live, started)

    def _answered(
        self,
        kind: str,
        message: dict[str, Any],
        outcome: Outcome,
        live: Live,
        started: float,
        record_later: bool = False,
    ) -> tuple[int, bytes]:
        """Capture, shadow, metrics and the decision log for a finished outcome; its reply."""
        transfer = kind == "transfer-destination-request"
        if self.capture is not None and not transfer:
            self.capture.write(message, outcome.crm_record)
        if self.shadow is not None and self.shadow.live is not None:
            # After the reply, never before it: a shadow CRM lookup must not delay the caller.
            task = asyncio.create_task(self._shadow(message, outcome, time.perf_counter(), transfer))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        elapsed = time.perf_counter() - started
        if record_later:
            # the call id, not the message: a parsed message kept until the end of the loop's
            # turn costs more in cache misses than the record itself
            self._unrecorded.append((kind, call_id_of(message), outcome, live.policy.version, elapsed))
        else:
            self._record(kind, call_id_of(message), outcome, live.policy.version, elapsed, timestamp())
        return 200, outcome.body
