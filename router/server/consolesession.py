"""Console sessions: a signed cookie (HMAC of a key derived from the admin token), so every
worker and replica accepts it, and the CSRF token bound to it. [pure]"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_S = 8 * 3600  # a working day; then log in again


def _key(token: bytes) -> bytes:
    return hashlib.sha256(b"vapi-router console session\0" + token).digest()


def _mac(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()


def new_session(token: bytes, now: float) -> str:
    expiry, nonce = str(int(now + SESSION_S)), secrets.token_urlsafe(24)
    return f"{expiry}.{nonce}.{_mac(_key(token), 'session', expiry, nonce)}"


def session_nonce(token: bytes | None, cookie: str | None, now: float) -> str | None:
    """The session's nonce if `cookie` is a session this token signed and it has not expired."""
    if token is None or not cookie or cookie.count(".") != 2:
        return None
    expiry, nonce, mac = cookie.split(".")
    if not hmac.compare_digest(mac, _mac(_key(token), "session", expiry, nonce)):
        return None
    if not expiry.isdigit() or int(expiry) <= now:
        return None
    return nonce


def csrf_token(token: bytes, nonce: str) -> str:
    return _mac(_key(token), "csrf", nonce)
