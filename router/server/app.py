"""create_app(...) -> Starlette: the webhook, health, readiness, metrics and admin endpoints. [I/O]

Contract with Vapi: an authenticated assistant-request always gets 200 with a valid reply
within the policy's deadline. Only a body that is not JSON or has no message.type gets 400,
a body over 1 MiB gets 413, failed auth gets 401. Nothing here returns 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.datastructures import URL, Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from router.runtime import phone
from router.server.activity import Activity
from router.server.auth import AuthConfig, refused_scheme, verify_admin, verify_webhook
from router.server.capture import Capture
from router.server.connguard import ConnectionLimits
from router.server.console import console_routes
from router.server.decisionlog import DecisionLog, timestamp
from router.server.explainapi import explain_request, resolve_request
from router.server.flags import flag_routes, keep_state
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
    json_response,
    receive_body,
    send_json,
)
from router.server.live import Live
from router.server.metrics import FLUSH_S, Metrics
from router.server.outcomes import CallOutcomes
from router.server.service import Outcome, Pending, decide, decide_now
from router.server.statecall import decide_with_state, release_if_ended
from router.server.store import PolicyStore, ReloadResult

if TYPE_CHECKING:
    from router.server.jwks import PendingKey

log = logging.getLogger("router.server.app")
TOOL_KINDS = ("transfer-destination-request", "handoff-destination-request")


class WebhookEndpoint:
    """The webhook as a bare ASGI endpoint: Starlette routes to it (methods, 405, middleware)
    but builds no Request or Response per call, the most frequent and latency-bound one."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.server.webhook(scope, receive, send)


class RouterApp(Starlette):
    """Starlette, except that a POST to the webhook path goes straight to its endpoint: the
    middleware and routing layers would cost a fifth of answering the call. The route stays in
    the routing table for everything else (405 for other methods, a root_path, url_for).
    An exception escaping the webhook (it answers every failure itself; a client that hangs
    up mid-body is the one case) reaches uvicorn, which answers 500 as Starlette would."""

    webhook_path = "/webhook/vapi"
    webhook_endpoint: WebhookEndpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.webhook_endpoint
        if (
            endpoint is not None
            and scope["type"] == "http"
            and scope["path"] == self.webhook_path
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


@dataclass
class Server:
    """Everything the endpoints share."""

    store: PolicyStore
    auth: AuthConfig
    metrics: Metrics = field(default_factory=Metrics)
    decision_log: DecisionLog = field(default_factory=lambda: DecisionLog(None))
    capture: Capture | None = None
    shadow: PolicyStore | None = None
    clock: Callable[[], float] = time.time

    def on_reload(self, store: PolicyStore, result: ReloadResult) -> None:
        self.metrics.reloads.labels("success" if result.ok else "failure").inc()
        self.metrics.last_reload_ok.set(1 if result.ok else 0)
        if result.ok:
            self.metrics.last_success.set(store.last_success_at)
            self.metrics.set_version(result.version)

    # ------------------------------------------------------------ webhook

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
            kind, _call_id(message), outcome, live.policy.version, time.perf_counter() - started, timestamp()
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
            self._unrecorded.append((kind, _call_id(message), outcome, live.policy.version, elapsed))
        else:
            self._record(kind, _call_id(message), outcome, live.policy.version, elapsed, timestamp())
        return 200, outcome.body

    def record_answered(self) -> None:
        """Metrics and decision-log lines of the calls answered with `record_later`."""
        unrecorded, self._unrecorded = self._unrecorded, []
        if not unrecorded:  # a turn that answered only errors (401, 400) or nothing
            return
        stamp = timestamp()  # answered in the same turn of the loop: the same millisecond or so
        for args in unrecorded:
            try:
                self._record(*args, stamp)
            except Exception:  # a bug; the caller has its answer, and the next lines must go out
                log.exception("recording an answered call failed")

    async def _shadow(
        self, message: dict[str, Any], live_outcome: Outcome, started: float, transfer: bool
    ) -> None:
        assert self.shadow is not None and self.shadow.live is not None
        try:
            other = await decide(self.shadow.live, message, started=started, transfer=transfer)
        except Exception:  # the shadow must never affect the live answer
            return
        differs = [
            name
            for name, a, b in (
                ("route", live_outcome.route, other.route),
                ("target", live_outcome.target, other.target),
                ("reply", live_outcome.body, other.body),
            )
            if a != b
        ]
        if differs:
            live_route, shadow_route = live_outcome.route or "default", other.route or "default"
            self.metrics.shadow_diffs.labels(live_route, shadow_route).inc()
            log.info("shadow differs (%s): live %s, shadow %s", ", ".join(differs), live_route, shadow_route)
            diff = {
                "time": timestamp(),
                "shadow_diff": True,
                "call_id": _call_id(message),
                "live_route": live_route,
                "shadow_route": shadow_route,
                "differs": differs,  # what the caller would notice: route, target and/or reply
                "live_target": live_outcome.target,
                "shadow_target": other.target,
                "shadow_version": self.shadow.live.policy.version,
            }
            self.decision_log.write(diff)
            self.activity.shadow.append(diff)

    def _record(
        self, kind: str, call_id: str | None, o: Outcome, version: str, elapsed: float, stamp: str
    ) -> None:
        outcome = "fallback" if o.fallback_reason else ("matched" if o.route else "default")
        if kind in TOOL_KINDS and o.reply_kind == "none" and not o.fallback_reason:
            outcome = "no_transfer"
        record = o.crm_record
        self.metrics.answered(
            o.route or "default",
            outcome,
            o.eval_us / 1e6,
            elapsed,
            record.status if record is not None else None,
            record.ms / 1000 if record is not None else 0.0,
        )
        facts = o.facts
        caller = phone.mask(facts.caller if facts else None)
        dialled = phone.mask(facts.dialled if facts else None)
        line = {
            "time": stamp,
            "call_id": call_id,
            "type": kind,
            "route": o.route or ("default" if kind in ("assistant-request", "resolve") else None),
            "target": o.target,
            "reply": o.reply_kind,
            "policy": version,
            "crm_status": o.crm_status,
            "crm_ms": round(o.crm_ms, 2) if o.crm_ms else 0.0,
            "eval_us": round(o.eval_us, 1),
            "total_ms": round(elapsed * 1000, 3),
            "fallback_reason": o.fallback_reason,
            "caller": caller,
            "dialled": dialled,
        }
        if o.state_status is not None:
            line["state_status"] = o.state_status
        self.decision_log.write(line)
        if call_id is not None and kind == "assistant-request" and self.outcomes is not None:
            self.outcomes.remember(call_id, o.route or "default", o.target, caller, dialled)
        self.activity.recent.append((outcome, line))  # the console's ring: one bounded append

    # ------------------------------------------------------------ health and admin

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        live = self.store.live
        data = {
            "version": live.policy.version if live else None,
            "loaded_at": datetime.fromtimestamp(live.loaded_at, UTC).isoformat() if live else None,
            "last_reload_ok": self.store.last_reload_ok,
            "errors": [str(p) for p in self.store.errors],
            "problems": [p.as_dict() for p in self.store.errors],
        }
        return json_response(data, 200 if live else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def _admin(self, request: Request) -> bool:
        return verify_admin(self.auth, request.headers)

    async def reload(self, request: Request) -> Response:
        if not self._admin(request):
            return json_response(UNAUTHORIZED, 401)
        result = await self.store.reload()
        if self.workers > 1:
            # This worker reloaded; SIGHUP to uvicorn's supervisor makes every worker reload
            # (this one again finds the hash unchanged: a no-op).
            with contextlib.suppress(OSError):
                os.kill(os.getppid(), signal.SIGHUP)
        if result.ok:
            return json_response({"version": result.version, "changed": result.changed})
        return json_response(
            {
                "version": result.version,
                "errors": [str(p) for p in result.problems],
                "problems": [p.as_dict() for p in result.problems],
            },
            422,
        )

    async def explain(self, request: Request) -> Response:
        if not self._admin(request):
            return json_response(UNAUTHORIZED, 401)
        return await explain_request(self.store, request)

    async def oauth_token(self, request: Request) -> Response:
        from router.server.oauth import token_endpoint

        return await token_endpoint(request, issuer=self.auth.oauth, metrics=self.metrics, clock=self.clock)

    async def resolve(self, request: Request) -> Response:
        def record(outcome: Outcome, version: str, elapsed: float) -> None:
            self._record("resolve", None, outcome, version, elapsed, timestamp())

        return await resolve_request(request, store=self.store, authenticate=self.authenticate, record=record)

    # ------------------------------------------------------------ lifecycle

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.decision_log.start()
        if self.store.live is None:
            self.store.load_now()
        if self.shadow is not None and self.shadow.live is None:
            self.shadow.load_now()
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(self._flush_metrics())]
        for hook in self.startup_hooks:
            tasks.append(asyncio.create_task(hook(self)))
        try:
            yield
        finally:
            self.record_answered()
            self.metrics.flush()
            for t in [*tasks, *self._background]:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            live = self.store.live
            if live is not None and live.crm is not None:
                await live.crm.aclose()
            if self.forwarding is not None:
                await self.forwarding.aclose()
            if self.capture is not None:
                self.capture.close()
            self.decision_log.close()

    async def _flush_metrics(self) -> None:
        """Counts of answered calls reach prometheus-client every FLUSH_S (and /metrics
        flushes first): with --workers, another worker's /metrics sees them this late."""
        while True:
            await asyncio.sleep(FLUSH_S)
            self.metrics.flush()

    startup_hooks: list[Callable[[Server], Any]] = field(default_factory=list)
    workers: int = 1
    activity: Activity = field(default_factory=Activity)
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)  # head/body timeouts, cap
    handoffs: HandoffView = field(default_factory=HandoffView)
    forwarding: Forwarding | None = None
    outcomes: CallOutcomes | None = None  # made by create_app, on the metrics' registry
    _background: set[asyncio.Task[None]] = field(default_factory=set)
    # (kind, call id, outcome, policy version, seconds): answered, not yet in metrics or the log
    _unrecorded: list[tuple[str, str | None, Outcome, str, float]] = field(default_factory=list)


_NOT_PARSED = object()


def _lenient_json(body: bytes) -> Any:
    """The body (strict UTF-8, as orjson reads it) as Python's json reads it, or _NOT_PARSED."""
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError too), or nested too deep
        return _NOT_PARSED


def _call_id(message: Mapping[str, Any]) -> str | None:
    call = message.get("call")
    value = call.get("id") if isinstance(call, dict) else None
    return value if isinstance(value, str) else None


def create_app(server: Server, *, path: str = "/webhook/vapi") -> Starlette:
    """The Starlette app for one Server."""
    server.store.on_change = server.on_reload
    if server.outcomes is None:
        server.outcomes = CallOutcomes(server.metrics.registry, server.decision_log)
    if server.store.live is not None:
        server.on_reload(server.store, ReloadResult(True, server.store.live.policy.version))
    webhook = WebhookEndpoint(server)
    routes = [
        Route(path, webhook, methods=["POST"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/readyz", server.readyz, methods=["GET"]),
        Route("/metrics", server.metrics_endpoint, methods=["GET"]),
        Route("/-/reload", server.reload, methods=["POST"]),
        Route("/v1/explain", server.explain, methods=["POST"]),
        Route("/v1/resolve", server.resolve, methods=["POST"]),
        *console_routes(server),
        *flag_routes(server),
    ]
    server.startup_hooks.append(keep_state)
    if server.auth.oauth is not None:
        routes.append(Route("/oauth/token", server.oauth_token, methods=["POST"]))
    app = RouterApp(routes=routes, lifespan=server.lifespan)
    app.webhook_path, app.webhook_endpoint = path, webhook
    return app
