"""Who is asking, and may they: Bearer tokens, browser sessions, roles, protected
branches, CSRF and the rate limit on failed logins. Extensions use these helpers:

    from cowdb.server.auth import require, require_branch_write, check_csrf
    account = await require(request, "writer")       # 401 / 403 as JSON or a login redirect
    await check_csrf(request, form)                   # every POST form carries {{ csrf_field() }}
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from starlette.datastructures import FormData
from starlette.requests import Request

from .accounts import LOCAL, Account
from .http import ApiError, run

if TYPE_CHECKING:
    from .app import Server

SESSION_COOKIE = "cowdb_session"
CSRF_COOKIE = "cowdb_csrf"
SESSION_SECONDS = 12 * 3600


class Sessions:
    """Browser sessions, in memory: a server restart logs everyone out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, tuple[str, float]] = {}

    def new(self, name: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._by_id = {k: v for k, v in self._by_id.items() if v[1] > now}
            self._by_id[sid] = (name, now + SESSION_SECONDS)
        return sid

    def get(self, sid: str | None) -> str | None:
        if not sid:
            return None
        with self._lock:
            v = self._by_id.get(sid)
        return v[0] if v and v[1] > time.monotonic() else None

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


class LoginLimiter:
    """At most ``limit`` failed logins per ``window`` seconds per client address and per
    account name; beyond it, 429 until the oldest failure ages out."""
    limit: int
    window: float

    def __init__(self, limit: int = 10, window: float = 60.0):
        self.limit, self.window = limit, window
        self._lock = threading.Lock()
        self._fails: dict[str, deque[float]] = {}   # key -> times of its failures

    def _q(self, key: str) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        now = time.monotonic()
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def check(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                q = self._q(k)
                if len(q) >= self.limit:
                    wait = max(1, int(q[0] + self.window - time.monotonic()) + 1)
                    raise ApiError(429, f"too many failed logins; try again in {wait} s",
                                   headers={"Retry-After": str(wait)})

    def fail(self, *keys: str) -> None:
        with self._lock:
            now = time.monotonic()
            for k in keys:
                self._q(k).append(now)
            if len(self._fails) > 10000:  # forget quiet clients
                self._fails = {k: q for k, q in self._fails.items() if q}


def server_of(request: Request) -> Server:
    """The Server (database, accounts, templates...) behind this request."""
    server: Server = request.app.state.server
    return server


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "?"


async def current_account(request: Request) -> Account | None:
    """The account of this request: a Bearer token, else a session cookie, else the
    local account in open mode, else None. A wrong token is 401 (and counts as a
    failed login)."""
    if "account" in request.scope.get("state", {}):
        known: Account | None = request.state.account
        return known
    server = server_of(request)
    account: Account | None = None
    request.state.via_cookie = False
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        ip = "ip:" + client_ip(request)
        server.limiter.check(ip)
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "send Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": "Bearer"})
        account = await run(server.accounts.verify, token.strip())
        if account is None:
            server.limiter.fail(ip)
            raise ApiError(401, "the token is wrong or its account was removed",
                           headers={"WWW-Authenticate": "Bearer"})
    else:
        name = server.sessions.get(request.cookies.get(SESSION_COOKIE))
        if name is not None:
            account = server.accounts.get(name)
            request.state.via_cookie = account is not None
        if account is None and server.open_mode:
            account = LOCAL
    request.state.account = account
    return account


async def require(request: Request, role: str = "reader") -> Account:
    """The account, if it has at least ``role``: else 401 (nobody) or 403 (too weak).
    A mutating API call authenticated by the session cookie must carry the CSRF
    token in ``X-CSRF-Token``."""
    account = await current_account(request)
    if account is None:
        raise ApiError(401, "log in first: send Authorization: Bearer <token>",
                       headers={"WWW-Authenticate": "Bearer"})
    if not account.can(role):
        raise ApiError(403, f"account {account.name!r} is a {account.role}; this needs "
                            f"{role}")
    if (request.state.via_cookie and request.method not in ("GET", "HEAD")
            and request.url.path.startswith("/api/")):
        if not hmac.compare_digest(request.headers.get("x-csrf-token", ""),
                                   csrf_token(request)):
            raise ApiError(403, "send the page's CSRF token in X-CSRF-Token")
    return account


def require_branch_write(request: Request, account: Account, branch: str) -> None:
    """403 unless ``account`` may write to ``branch``: writers write unprotected
    branches, admins any."""
    if not account.can("writer"):
        raise ApiError(403, f"account {account.name!r} is a {account.role}; writing needs "
                            f"writer")
    if not account.can("admin") and server_of(request).accounts.is_protected(branch):
        raise ApiError(403, f"branch {branch!r} is protected: only an admin may write to it")


# ---- CSRF ----------------------------------------------------------------
def csrf_token(request: Request) -> str:
    """The token every form of this browser must carry: an HMAC of its CSRF cookie
    (HttpOnly, SameSite=Strict) and its session. A new cookie is set on the response
    by :func:`cowdb.server.web.render` when the browser has none."""
    cookie = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not cookie:
        cookie = request.state.new_csrf = secrets.token_urlsafe(24)
    sid = request.cookies.get(SESSION_COOKIE, "")
    secret = server_of(request).secret
    return hmac.new(secret, f"{cookie}|{sid}".encode(), hashlib.sha256).hexdigest()


async def check_csrf(request: Request, form: FormData | None) -> None:
    """403 unless the form's ``csrf`` field matches this browser's token."""
    sent = form.get("csrf", "") if form is not None else ""
    if not request.cookies.get(CSRF_COOKIE) or not isinstance(sent, str) or \
            not hmac.compare_digest(sent, csrf_token(request)):
        raise ApiError(403, "the form's CSRF token is missing or stale; reload the page and "
                            "try again")
