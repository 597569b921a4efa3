"""create_app(...) -> Starlette: the webhook, health, readiness, metrics and admin endpoints. [I/O]

Contract with Vapi: an authenticated assistant-request always gets 200 with a valid reply
within the policy's deadline. Only a body that is not JSON or has no message.type gets 400,
a body over 1 MiB gets 413, failed auth gets 401. Nothing here returns 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from router.server.activity import Activity
from router.server.answering import WebhookAnswers
from router.server.auth import AuthConfig, verify_admin
from router.server.capture import Capture
from router.server.connguard import ConnectionLimits
from router.server.console import console_routes
from router.server.decisionlog import DecisionLog, timestamp
from router.server.explainapi import explain_request, resolve_request
from router.server.flags import flag_routes, keep_state
from router.server.forward import Forwarding
from router.server.handoff import HandoffView
from router.server.http import UNAUTHORIZED, json_response
from router.server.metrics import FLUSH_S, Metrics
from router.server.outcomes import CallOutcomes
from router.server.service import Outcome
from router.server.store import PolicyStore, ReloadResult


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
class Server(WebhookAnswers):
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
