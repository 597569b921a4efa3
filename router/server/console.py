"""The operator console, GET /-/console (DESIGN §14): server-rendered pages behind the admin token. [I/O]

Login with ROUTER_ADMIN_TOKEN sets a signed session cookie (HttpOnly, SameSite=Strict, path
/-/console; Secure when the request came over https). The session is stateless, so every
worker of `serve --workers N` accepts it: `expiry.nonce.mac`, the MAC keyed by a hash of the
admin token (rotating the token ends every session). Each session's CSRF token is a MAC of its
nonce, checked in constant time on every POST; the login form's is a double-submit nonce.
Every page carries a strict Content-Security-Policy (no inline script or style), Jinja2
autoescapes, and phone numbers are masked in everything shown.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from router.server.consolesession import SESSION_S, csrf_token, new_session, session_nonce
from router.server.consolestate import capacity_view, flags_view, switch_from_form
from router.server.consoleviews import (
    ConsoleServer,
    calendar_view,
    decisions_view,
    mask_numbers,
    overview,
    route_hits,
    simulate_view,
)

PREFIX = "/-/console"
COOKIE = "vr_console"
LOGIN_COOKIE = "vr_console_login"
LOGIN_FORM_S = 900
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_HERE = Path(__file__).parent
_STATIC = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
MAX_FORM = 64 * 1024

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


_env.filters["masked"] = lambda value: mask_numbers(str(value))
_env.filters["clock"] = lambda t: (
    "never" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
)


# -- the console ----------------------------------------------------------------------------


class Console:
    def __init__(self, server: ConsoleServer) -> None:
        self.server = server
        self.revoked: dict[str, float] = {}  # nonce -> expiry: logged out (this worker)

    # ---- plumbing

    @property
    def token(self) -> bytes | None:
        return self.server.auth.admin_token

    def now(self) -> float:
        return self.server.clock()

    def page(self, template: str, status: int = 200, **context: Any) -> Response:
        html = _env.get_template(template).render(prefix=PREFIX, **context)
        return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=HEADERS)

    def session(self, request: Request) -> str | None:
        nonce = session_nonce(self.token, request.cookies.get(COOKIE), self.now())
        return None if nonce is None or nonce in self.revoked else nonce

    def to_login(self, request: Request, expired: bool = False) -> Response:
        suffix = "?expired=1" if expired else ""
        return RedirectResponse(f"{PREFIX}/login{suffix}", status_code=303, headers=HEADERS)

    def secure(self, request: Request) -> bool:
        return request.url.scheme == "https"

    async def form(self, request: Request) -> dict[str, str] | None:
        """The urlencoded body as a dict, or None when it is too large or not a form."""
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind != "application/x-www-form-urlencoded":
            return None
        from router.server.http import BodyTooLarge, read_body

        try:
            raw = await read_body(request)
        except BodyTooLarge:
            return None
        if len(raw) > MAX_FORM:
            return None
        from urllib.parse import parse_qsl

        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))

    def guarded(
        self, handler: Callable[[Request, str], Coroutine[Any, Any, Response]]
    ) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """A page that needs a session; for POST, the session's CSRF token in the form too."""

        async def endpoint(request: Request) -> Response:
            nonce = self.session(request)
            if nonce is None:
                if request.method == "POST":
                    return self.page("error.html", 401, message="Your session has ended: log in again.")
                return self.to_login(request, expired=COOKIE in request.cookies)
            if request.method == "POST":
                form = await self.form(request)
                assert self.token is not None
                sent = (form or {}).get("csrf", "")
                if not hmac.compare_digest(sent.encode(), csrf_token(self.token, nonce).encode()):
                    message = "Missing or wrong CSRF token; reload the page."
                    return self.page("error.html", 403, message=message)
                request.state.form = form
            return await handler(request, nonce)

        return endpoint

    def common(self, nonce: str, **extra: Any) -> dict[str, Any]:
        assert self.token is not None
        live = self.server.store.live
        return {
            "csrf": csrf_token(self.token, nonce),
            "version": live.policy.version if live else None,
            **extra,
        }

    # ---- login and logout

    async def login_form(self, request: Request) -> Response:
        return self._login_page(request, None, expired="expired" in request.query_params)

    def _login_page(
        self, request: Request, error: str | None, status: int = 200, expired: bool = False
    ) -> Response:
        nonce = secrets.token_urlsafe(24)
        response = self.page(
            "login.html",
            status,
            login_csrf=nonce,
            error=error,
            expired=expired,
            configured=self.token is not None,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=LOGIN_FORM_S,
            path=f"{PREFIX}/login",
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await self.form(request) or {}
        sent, expected = form.get("csrf", ""), request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            return self.page("error.html", 403, message="Missing or wrong CSRF token; reload the login page.")
        token = self.token
        given = form.get("token", "").strip().encode()
        if token is None or not hmac.compare_digest(given, token):
            return self._login_page(request, "That is not the admin token.", 401)
        response = RedirectResponse(PREFIX, status_code=303, headers=HEADERS)
        response.set_cookie(
            COOKIE,
            new_session(token, self.now()),
            max_age=SESSION_S,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )
        response.delete_cookie(LOGIN_COOKIE, path=f"{PREFIX}/login")
        return response

    async def logout(self, request: Request, nonce: str) -> Response:
        now = self.now()
        self.revoked = {n: t for n, t in self.revoked.items() if t > now}
        self.revoked[nonce] = now + SESSION_S
        response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    # ---- pages

    async def overview(self, request: Request, nonce: str) -> Response:
        return self.page("overview.html", **self.common(nonce, tab="overview", **overview(self.server)))

    async def routes(self, request: Request, nonce: str) -> Response:
        return self.page("routes.html", **self.common(nonce, tab="routes", **route_hits(self.server)))

    async def calendar(self, request: Request, nonce: str) -> Response:
        view = calendar_view(self.server, request.query_params)
        status = 400 if view.get("error") else 200
        return self.page("calendar.html", status, **self.common(nonce, tab="calendar", **view))

    async def simulate(self, request: Request, nonce: str) -> Response:
        form = getattr(request.state, "form", None) if request.method == "POST" else None
        view = simulate_view(self.server, form)
        status = 400 if view.get("error") else 200
        return self.page("simulate.html", status, **self.common(nonce, tab="simulate", **view))

    async def decisions(self, request: Request, nonce: str) -> Response:
        view = decisions_view(self.server, request.query_params)
        return self.page("decisions.html", **self.common(nonce, tab="decisions", **view))

    async def shadow(self, request: Request, nonce: str) -> Response:
        server = self.server
        shadow_live = server.shadow.live if server.shadow is not None else None
        diffs = list(reversed(server.activity.shadow))
        view = {
            "configured": server.shadow is not None,
            "shadow_version": shadow_live.policy.version if shadow_live else None,
            "diffs": diffs,
        }
        return self.page("shadow.html", **self.common(nonce, tab="shadow", **view))

    async def flags(self, request: Request, nonce: str) -> Response:
        form, failed, status = getattr(request.state, "form", None), None, 200
        if request.method == "POST":  # switched: back to the page (a reload does not switch again)
            name, problem, status = await switch_from_form(self.server, form or {})
            if problem is None:
                return RedirectResponse(f"{PREFIX}/flags?{urlencode({'switched': name})}", 303, HEADERS)
            failed = {"flag": name, "message": problem, "reason": (form or {}).get("reason", "")}
        view, got = await flags_view(self.server, request.query_params.get("switched", ""))
        view = {**view, "failed": failed}
        return self.page("flags.html", max(status, got), **self.common(nonce, tab="flags", **view))

    async def capacity(self, request: Request, nonce: str) -> Response:
        view, status = await capacity_view(self.server)
        return self.page("capacity.html", status, **self.common(nonce, tab="capacity", **view))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        media = _STATIC.get(name)
        if media is None:
            return Response("not found", 404, media_type="text/plain", headers=HEADERS)
        body = (_HERE / "static" / name).read_bytes()
        return Response(body, media_type=media, headers={**HEADERS, "Cache-Control": "max-age=300"})


def console_routes(server: ConsoleServer) -> list[BaseRoute]:
    """The console's routes, for create_app."""
    c = Console(server)
    g = c.guarded
    return [
        Route(PREFIX, g(c.overview), methods=["GET"]),
        Route(f"{PREFIX}/login", c.login_form, methods=["GET"]),
        Route(f"{PREFIX}/login", c.login, methods=["POST"]),
        Route(f"{PREFIX}/logout", g(c.logout), methods=["POST"]),
        Route(f"{PREFIX}/routes", g(c.routes), methods=["GET"]),
        Route(f"{PREFIX}/calendar", g(c.calendar), methods=["GET"]),
        Route(f"{PREFIX}/simulate", g(c.simulate), methods=["GET", "POST"]),
        Route(f"{PREFIX}/decisions", g(c.decisions), methods=["GET"]),
        Route(f"{PREFIX}/shadow", g(c.shadow), methods=["GET"]),
        Route(f"{PREFIX}/flags", g(c.flags), methods=["GET", "POST"]),
        Route(f"{PREFIX}/capacity", g(c.capacity), methods=["GET"]),
        Route(f"{PREFIX}/static/{{name}}", c.static, methods=["GET"]),
    ]


def local_start(zone: str, value: str | None, now: float) -> date:
    """--from of the calendar: the given date, else today in the policy's zone."""
    if value:
        return date.fromisoformat(value)
    return datetime.fromtimestamp(now, ZoneInfo(zone)).date()
