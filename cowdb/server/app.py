"""The application factory of ``cowdb serve``.

    from cowdb.server.app import create_app
    app = create_app("data.cow")                 # an ASGI app: uvicorn, httpx, ...

Extensions add pages: ``create_app(db, extensions=["pkg.module"])`` (or a module
object, or a callable) calls ``setup(server)`` of each, which may call
``server.add_routes([...])``, ``server.add_templates(folder)`` and
``server.add_nav(label, path)``. See docs/server.md.
"""
from __future__ import annotations

import importlib
import ipaddress
import logging
import os
import secrets
import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from types import ModuleType
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import cowdb

from .accounts import Accounts, accounts_path
from .auth import LoginLimiter, Sessions
from .events import Broker
from .http import ApiError, BodyTooLarge, error_body, json_error
from .web import HERE, make_env, render

if TYPE_CHECKING:
    from jinja2 import Environment

    from cowdb.db import Database

log: logging.Logger = logging.getLogger("cowdb.server")

MAX_BODY = 16 * 1024 * 1024
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}

# extensions loaded by every server when importable (module path -> setup(server))
EXTENSIONS: tuple[str, ...] = ("cowdb.documents.web",)

#: An extension: a module path, a module with ``setup(server)``, or ``setup`` itself.
Setup = Callable[["Server"], object]
Extension = str | ModuleType | Setup


class Refused(Exception):
    """The server must not start as asked (e.g. a public bind with no accounts)."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Server:
    """What every handler reaches through ``request.app.state.server``."""
    db: Database
    accounts: Accounts
    host: str
    open_allowed: bool
    max_body: int
    name: str
    write_lock: threading.Lock
    sessions: Sessions
    limiter: LoginLimiter
    secret: bytes
    broker: Broker
    templates: Environment

    def __init__(self, db: Database, accounts: Accounts, *, host: str, open_mode: bool,
                 max_body: int, poll: float, name: str) -> None:
        self.db, self.accounts, self.host = db, accounts, host
        self.open_allowed, self.max_body, self.name = open_mode, max_body, name
        self.write_lock = threading.Lock()   # a head check and its commit are one step
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        self.secret = secrets.token_bytes(32)
        self.broker = Broker(db, poll)
        self.routes: list[BaseRoute] = []
        self.template_dirs: list[str] = []
        self.nav: list[tuple[str, str]] = [("Timeline", "/"), ("Branches", "/branches"),
                                           ("Browse", "/browse"), ("Compare", "/compare")]
        self.templates = make_env()

    @property
    def open_mode(self) -> bool:
        """Open (every request is the local admin) while no account exists, on loopback."""
        return self.open_allowed and not self.accounts

    # ---- the extension point --------------------------------------------
    def add_routes(self, routes: Iterable[BaseRoute]) -> None:
        """Starlette routes served beside the built-in ones (before the UI's)."""
        self.routes.extend(routes)

    def add_templates(self, folder: str) -> None:
        """A folder of Jinja2 templates, searched before the built-in ones; its pages
        ``{% extends "base.html" %}`` to get the layout, nav and login state."""
        self.template_dirs.append(folder)
        self.templates = make_env(self.template_dirs)

    def add_nav(self, label: str, path: str) -> None:
        self.nav.append((label, path))

    def notify_commit(self) -> None:
        """Tell the event stream a commit was made (extensions call it after writing)."""
        self.broker.notify()


class Guard:
    """Outermost ASGI middleware: bounds request bodies (413), refuses foreign Host
    headers in open mode (DNS rebinding), adds security headers, starts the commit
    watcher, and turns any unhandled exception into a 500 with an id that is logged
    (never a traceback in a response)."""
    app: ASGIApp
    server: Server

    def __init__(self, app: ASGIApp, server: Server) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        server = self.server
        server.broker.start()
        started = False

        async def send_wrapped(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                headers = list(msg.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in SECURITY_HEADERS:
                    if k not in names:
                        headers.append((k, v))
                msg = dict(msg, headers=headers)
            await send(msg)

        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > server.max_body):
                raise BodyTooLarge()
            if server.open_mode:
                host = headers.get(b"host", b"").decode("latin-1").rsplit(":", 1)[0]
                if host.startswith("[") or host.count(":") > 1:
                    host = headers.get(b"host", b"").decode("latin-1").rsplit("]", 1)[0] + "]"
                if not is_loopback(host):
                    resp = json_error(421, "this server runs open for the local user only: "
                                           "use http://127.0.0.1")
                    return await resp(scope, receive, send_wrapped)
            seen = 0

            async def receive_bounded() -> Message:
                nonlocal seen
                msg = await receive()
                if msg["type"] == "http.request":
                    seen += len(msg.get("body", b""))
                    if seen > server.max_body:
                        raise BodyTooLarge()
                return msg
            await self.app(scope, receive_bounded, send_wrapped)
        except BodyTooLarge:
            if not started:
                resp = json_error(413, f"the request body is larger than "
                                       f"{server.max_body} bytes")
                await resp(scope, receive, send_wrapped)
        except Exception as e:
            eid = secrets.token_hex(6)
            log.error("internal error %s on %s %s:\n%s", eid, scope.get("method"),
                      scope.get("path"), "".join(traceback.format_exception(e)))
            if not started:
                resp = json_error(500, f"internal error (id {eid}, in the server log)",
                                  id=eid)
                await resp(scope, receive, send_wrapped)


SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def _load_extension(ext: Extension) -> Setup:
    if isinstance(ext, str):
        ext = importlib.import_module(ext)
    if isinstance(ext, ModuleType):
        setup: Setup = ext.setup
        return setup
    return ext if callable(ext) and not hasattr(ext, "setup") else ext.setup


def create_app(db_or_path: Database | str | os.PathLike[str] | None, *,
               accounts: Accounts | None = None, host: str = "127.0.0.1",
               max_body: int = MAX_BODY, poll: float = 0.5,
               extensions: Sequence[Extension] = (), timeout: float = 30.0) -> Starlette:
    """The ASGI app serving ``db_or_path`` (a path, or an open cowdb Database).

    ``accounts``: default the file beside the database (in memory for an in-memory
    database or one at a URL: pass ``Accounts(file)`` to keep them). With no account,
    only a loopback ``host`` may serve (open mode: every
    request is the local admin); any other bind raises :class:`Refused`.
    """
    if isinstance(db_or_path, cowdb.Database):
        db, owned = db_or_path, False
    else:
        db, owned = cowdb.open(db_or_path, timeout=timeout), True
    try:
        if db.codec is not None:
            raise ValueError("the server serves databases of raw bytes values (codec='bytes')")
        if accounts is None:
            accounts = Accounts(accounts_path(db.path) if db.path else None)
        open_mode = not accounts
        if open_mode and not is_loopback(host):
            raise Refused(f"no accounts are configured, so the server would be open to anyone "
                          f"who can reach {host}; add one with `cowdb user add NAME --role "
                          f"admin`, or bind 127.0.0.1")
        url = getattr(db, "url", None)   # a database on an object store
        name = url if url else os.path.basename(db.path) if db.path else "(in memory)"
        server = Server(db, accounts, host=host, open_mode=open_mode, max_body=max_body,
                        poll=poll, name=name)
        for ext in tuple(EXTENSIONS) + tuple(extensions):
            try:
                setup = _load_extension(ext)
            except ImportError:
                if ext in EXTENSIONS:
                    continue
                raise
            setup(server)
    except BaseException:
        if owned:
            db.close()
        raise

    from . import api, ui
    routes = [Mount("/api/v1", routes=api.routes),
              Mount("/static", app=StaticFiles(directory=os.path.join(HERE, "static")),
                    name="static"),
              *server.routes, *ui.routes]

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ApiError):
            status, message, hdrs, extra = exc.status, exc.message, exc.headers, exc.extra
        else:  # starlette's own: 404 route, 405 method
            assert isinstance(exc, HTTPException)   # (the only other one handled)
            status, hdrs, extra = exc.status_code, getattr(exc, "headers", None), {}
            message = {404: f"nothing at {request.url.path}",
                       405: f"{request.method} is not allowed on {request.url.path}"}.get(
                status, str(exc.detail))
        if request.url.path.startswith("/api/") or "text/html" not in \
                request.headers.get("accept", ""):
            return JSONResponse(error_body(status, message, **extra), status_code=status,
                                headers=hdrs)
        if status == 401 and request.method == "GET":
            from urllib.parse import quote
            return RedirectResponse("/login?next=" + quote(request.url.path + (
                "?" + request.url.query if request.url.query else ""), safe=""), 303)
        return await render(request, "error.html", {"status": status, "message": message,
                                                    "extra": extra, "title": str(status)},
                            status=status, headers=hdrs)

    async def shutdown() -> None:
        await server.broker.stop()
        if owned:
            db.close()

    app = Starlette(routes=routes, lifespan=_lifespan(shutdown),
                    exception_handlers={ApiError: on_error, HTTPException: on_error})
    app.state.server = server
    app.add_middleware(Guard, server=server)
    return app


def _lifespan(shutdown: Callable[[], Awaitable[None]]
              ) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await shutdown()
    return lifespan
