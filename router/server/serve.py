"""`vapi-router serve`: check the policy and auth, then run uvicorn (uvloop + httptools). [edge]

Options travel to the app factory through one environment variable so that `--workers N`
(which starts fresh interpreter processes) builds the same app in every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from router.policy.loader import Loaded, lint_path
from router.server.app import Server, create_app
from router.server.auth import AuthConfig, AuthConfigError
from router.server.capture import Capture
from router.server.connguard import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, ConnectionLimits
from router.server.decisionlog import DecisionLog
from router.server.statecall import workers_refusal
from router.server.store import PolicyStore
from router.server.uvicorn_adapter import run_workers
from router.server.watcher import install_sighup, watch
from router.tools.report import problems_text

ENV = "VAPI_ROUTER_SERVE"
log = logging.getLogger("router.server.serve")
# What run() checked, for app_factory in the same process (one worker): load a large set once.
_checked: dict[str, Loaded] = {}


@dataclass(frozen=True)
class ServeOptions:
    policy: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    path: str = "/webhook/vapi"
    watch: bool = True
    decision_log: str | None = "-"
    capture: str | None = None
    shadow: str | None = None
    insecure: bool = False
    header_timeout: float = HEADER_TIMEOUT_S
    body_timeout: float = BODY_TIMEOUT_S
    max_connections: int = 0  # 0: the fd soft limit less connguard.RESERVE


def build_server(options: ServeOptions, env: dict[str, str] | None = None) -> Server:
    env = dict(os.environ) if env is None else env
    auth = AuthConfig.from_env(env)
    store = PolicyStore(Path(options.policy), env=env, workers=options.workers)
    shadow = PolicyStore(Path(options.shadow), env=env) if options.shadow else None
    server = Server(
        store=store,
        auth=auth,
        decision_log=DecisionLog(options.decision_log),
        capture=Capture(options.capture) if options.capture else None,
        shadow=shadow,
        workers=options.workers,
        limits=ConnectionLimits(options.header_timeout, options.body_timeout, options.max_connections),
    )
    if options.watch:
        server.startup_hooks.append(lambda s: watch(s.store))
        if shadow is not None:
            server.startup_hooks.append(lambda s: watch(shadow))
    server.startup_hooks.append(_sighup)
    if auth.jwks is not None:
        server.startup_hooks.append(_jwks_keys)
    return server


async def _jwks_keys(server: Server) -> None:
    """Fetch the JWKS at start (calls that come first join the fetch); close its client at the end."""
    if server.auth.jwks is not None:
        await server.auth.jwks.keep()


async def _sighup(server: Server) -> None:
    remove = install_sighup(server.store)
    try:
        await asyncio.Event().wait()
    finally:
        remove()


def configure_logging() -> None:
    """Reload outcomes and fallbacks at INFO on stderr; also in each --workers process, which
    starts a fresh interpreter (a no-op where logging is configured already)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # httpx logs every request URL at INFO, and a CRM URL carries the caller's full number.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def app_factory() -> Starlette:
    """uvicorn's factory: rebuilds the app from $VAPI_ROUTER_SERVE in each worker."""
    options = ServeOptions(**json.loads(os.environ[ENV]))
    if options.workers > 1:
        configure_logging()
    # Until the app installs its SIGHUP handler, a SIGHUP would end this worker.
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    server = build_server(options)
    server.store.load_now(_checked.pop(options.policy, None))
    if server.shadow is not None and options.shadow is not None:
        server.shadow.load_now(_checked.pop(options.shadow, None))
    return create_app(server, path=options.path)


def run(options: ServeOptions) -> int:
    """Validate, then serve until stopped. Exit 3: invalid policy; 2: auth not configured."""
    configure_logging()
    try:
        auth = AuthConfig.from_env(os.environ)
    except AuthConfigError as exc:
        print(f"vapi-router serve: {exc}", file=sys.stderr)
        return 2
    if not auth.webhook_configured and not options.insecure:
        print(
            "vapi-router serve: no webhook auth configured. Set VAPI_SERVER_SECRET (x-vapi-secret or "
            "Bearer), VAPI_HMAC_SECRET, ROUTER_OAUTH_CLIENT_ID/_CLIENT_SECRET/_SIGNING_KEY (the router "
            "as token URL) or VAPI_OAUTH_JWKS_URL/_ISSUER/_AUDIENCE, or pass --insecure for local testing.",
            file=sys.stderr,
        )
        return 2
    if auth.hmac is not None and not auth.hmac.include_timestamp:
        print(
            "vapi-router serve: warning: VAPI_HMAC_INCLUDE_TIMESTAMP is false, so replay protection is off: "
            "a captured request can be sent again"
            + (" (with another message id)" if auth.hmac.message_id_header else "")
            + " and is admitted.",
            file=sys.stderr,
        )
    for path in filter(None, (options.policy, options.shadow)):
        loaded = lint_path(Path(path))
        if loaded.policy is None:
            print(problems_text(loaded.problems), file=sys.stderr)
            print(f"vapi-router serve: the policy at {path} is invalid; not starting", file=sys.stderr)
            return 3
        unset = [p for p in loaded.problems if p.code == "env-unset"]
        if unset:  # a warning for lint; a server would answer 503 (or send an empty secret)
            print(problems_text(unset), file=sys.stderr)
            print(
                f"vapi-router serve: the policy at {path} uses unset environment variables; not starting",
                file=sys.stderr,
            )
            return 3
        _checked[path] = loaded
        refusal = workers_refusal(loaded.policy, options.workers)
        if refusal:
            print(f"vapi-router serve: {refusal}", file=sys.stderr)
            return 3
    taken = _port_taken(options.host, options.port)
    if taken:
        print(f"vapi-router serve: cannot listen on {options.host}:{options.port}: {taken}", file=sys.stderr)
        return 4
    os.environ[ENV] = json.dumps(options.__dict__)
    if options.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="vapi-router-metrics-")
    print(
        f"vapi-router: serving {options.policy} on http://{options.host}:{options.port}{options.path} "
        f"({auth.describe()}; {options.workers} worker{'s' * (options.workers > 1)})",
        file=sys.stderr,
    )
    kwargs: dict[str, Any] = dict(
        host=options.host,
        port=options.port,
        workers=options.workers,
        factory=True,
        loop="uvloop",
        http="router.server.fasthttp:WebhookProtocol",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    if options.workers > 1:
        config = uvicorn.Config("router.server.serve:app_factory", **kwargs)
        _supervise_workers(config)
    else:
        uvicorn.run("router.server.serve:app_factory", **kwargs)
    return 0


def _port_taken(host: str, port: int) -> str | None:
    """Why the address cannot be listened on (in use, not ours), None when it can: checked
    before "serving" is printed, so a taken port is exit 4, not a policy problem (exit 3)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return str(exc)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
    return None


def _supervise_workers(config: uvicorn.Config) -> None:
    """uvicorn's worker supervisor, except that SIGHUP makes every worker reload its policy in
    place, as one worker does: each keeps its last good policy if the new one is invalid.
    uvicorn's own SIGHUP replaces the workers, and a fresh worker has no good policy to keep:
    after an invalid edit it would answer every call with "no policy is loaded"."""

    def reload_every_worker(processes: list[Any]) -> None:
        log.info("SIGHUP: every worker reloads its policy")
        for process in processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)

    run_workers(config, reload_every_worker)
