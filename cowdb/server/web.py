"""Server-rendered pages: the Jinja2 environment (autoescape always on) and
``render()``, which every page of the UI and of extensions goes through."""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .auth import CSRF_COOKIE, csrf_token, current_account, server_of

HERE = os.path.dirname(os.path.abspath(__file__))


def make_env(extra_dirs: Iterable[str] = ()) -> jinja2.Environment:
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(list(extra_dirs)),
                                  jinja2.FileSystemLoader(os.path.join(HERE, "templates"))])
    # autoescape is on for every template, whatever its name: nothing a user typed is
    # ever markup. |safe is not used on user data anywhere.
    env = jinja2.Environment(loader=loader, autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals["url"] = url
    return env


def url(path: str, **params: object) -> str:
    """``path?params`` with the empty ones left out (templates: ``url('/key', k=key)``)."""
    from urllib.parse import urlencode
    given = {k: v for k, v in params.items() if v is not None and v != ""}
    return path + ("?" + urlencode(given) if given else "")


async def render(request: Request, template: str, context: Mapping[str, object] | None = None,
                 status: int = 200, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """Render ``template`` (which extends ``base.html``) with the layout's context:
    ``account``, ``nav``, ``csrf`` and ``csrf_field()``."""
    server = server_of(request)
    account = await current_account(request)
    token = csrf_token(request)
    from markupsafe import Markup, escape
    ctx: dict[str, object] = {
        "request": request, "account": account, "nav": server.nav, "csrf": token,
        "csrf_field": lambda: Markup(f'<input type="hidden" name="csrf" '
                                     f'value="{escape(token)}">'),
        "open_mode": server.open_mode, "title": "", "db_name": server.name}
    ctx.update(context or {})
    html = server.templates.get_template(template).render(ctx)
    resp = HTMLResponse(html, status_code=status, headers=headers)
    new = getattr(request.state, "new_csrf", None)
    if new:
        resp.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict", path="/")
    return resp
