"""The web UI: server-rendered pages (Jinja2, autoescaped), each with a JSON twin
in the API. Forms post back here with a CSRF token; actions that change history
(merge, revert, restore, delete) show a confirmation first."""
from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cowdb import errors as E

from . import diffview, ops, timeline
from .auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    check_csrf,
    client_ip,
    require,
    require_branch_write,
    server_of,
)
from .http import ApiError, Handler, run
from .web import render, url

if TYPE_CHECKING:
    from cowdb.db import Database
    from cowdb.history.commits import Commit

    from .diffview import ChangeView

PAGE = 40


page: Callable[[Handler], Handler] = ops.http_errors


def _kind_ok(kind: str) -> None:
    if kind not in ("branch", "tag"):
        raise ApiError(404, "nothing here")


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


async def form_of(request: Request) -> FormData:
    form = await request.form()
    await check_csrf(request, form)
    return form


def fstr(form: FormData, name: str, default: str = "") -> str:
    v = form.get(name, default)
    return v if isinstance(v, str) else default


def local_path(p: str) -> str:
    """Only same-site paths as a redirect target."""
    return p if p.startswith("/") and not p.startswith("//") and "\\" not in p else "/"


# ---- login -------------------------------------------------------------------
async def login(request: Request) -> Response:
    server = server_of(request)
    nxt = local_path(request.query_params.get("next", "/"))
    if request.method == "GET":
        return await render(request, "login.html", {"next": nxt, "name": "", "message": "",
                                                    "title": "Log in"})
    form = await form_of(request)
    name, token = fstr(form, "name")[:64], fstr(form, "token")
    nxt = local_path(fstr(form, "next", "/"))
    keys = ("ip:" + client_ip(request), "name:" + name)
    try:
        server.limiter.check(*keys)
    except ApiError as e:
        return await render(request, "login.html", {"next": nxt, "name": name,
                                                    "message": e.message, "title": "Log in"},
                            status=429, headers=e.headers)
    account = await run(server.accounts.verify, token)
    if account is None or not hmac.compare_digest(account.name.encode(), name.encode()):
        server.limiter.fail(*keys)
        return await render(request, "login.html", {"next": nxt, "name": name,
                                                    "message": "wrong account name or token",
                                                    "title": "Log in"}, status=401)
    resp = see_other(nxt)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        server.sessions.drop(old)
    resp.set_cookie(SESSION_COOKIE, server.sessions.new(account.name), httponly=True,
                    samesite="strict", path="/", max_age=SESSION_SECONDS)
    return resp


async def logout(request: Request) -> Response:
    await form_of(request)
    server_of(request).sessions.drop(request.cookies.get(SESSION_COOKIE))
    resp = see_other("/login")
    resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return resp


# ---- timeline ----------------------------------------------------------------
def timeline_data(db: Database, before: int | None) -> dict[str, object]:
    newest = db.version
    hi = newest if before is None else min(before - 1, newest)
    commits: list[Commit] = []
    v = hi
    while v >= 0 and len(commits) < PAGE:
        try:
            commits.append(db.commit_info(v))
        except E.VersionNotFound:
            pass
        v -= 1
    branches = db.branches()
    tags = db.tags()
    cache = {c.version: c for c in commits}

    def parent_branch(p: int) -> str | None:
        c = cache.get(p)
        if c is None:
            try:
                c = cache[p] = db.commit_info(p)
            except E.VersionNotFound:
                return None
        return c.branch
    lay = timeline.layout(commits, branches, parent_branch)
    heads: dict[int, list[str]] = {}
    tag_of: dict[int, list[str]] = {}
    for name, hv in branches.items():
        heads.setdefault(hv, []).append(name)
    for name, tv in tags.items():
        tag_of.setdefault(tv, []).append(name)
    lane_of = {b: i % timeline.COLOURS for i, b in enumerate(lay.lanes)}
    drop = ops.dropping(db)
    rows = [{"c": c, "heads": sorted(heads.get(c.version, ())),
             "tags": sorted(tag_of.get(c.version, ())), "dropping": c.version in drop,
             "time": c.time.strftime("%Y-%m-%d %H:%M:%S"), "lane": lane_of.get(c.branch, 7)}
            for c in commits]
    older = commits[-1].version if commits and v >= 0 else None
    return {"rows": rows, "layout": lay, "lane_of": lane_of, "older": older,
            "newer": None if before is None else (hi + PAGE + 1 if hi + PAGE < newest
                                                  else None),
            "first_page": before is None, "row_h": timeline.ROW, "newest": newest,
            "before": before}


async def index(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    before = _int(request.query_params.get("before"))
    data = await run(timeline_data, db, before)
    return await render(request, "timeline.html", {**data, "title": "Timeline"})


async def timeline_fragment(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    data = await run(timeline_data, db, _int(request.query_params.get("before")))
    return await render(request, "timeline_rows.html", data)


def _int(s: str | None) -> int | None:
    if s is None or s == "":
        return None
    if not s.isdigit() or len(s) > 18:
        raise ApiError(400, "a version is a whole number")
    return int(s)


# ---- commit, compare -------------------------------------------------------------
@page
async def commit_page(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    v: int = request.path_params["version"]
    after = diffview.key_from_query({"kb": request.query_params.get("after", "")})

    def read() -> tuple[Commit, list[ChangeView], bytes | None]:
        c = db.commit_info(v)
        chs, nxt = ops.commit_changes(db, c, after or None, 100)
        return c, [diffview.view(*x) for x in chs], nxt
    c, changes, nxt = await run(read)
    return await render(request, "commit.html", {
        "c": c, "changes": changes, "title": f"Version {c.version}",
        "next": None if nxt is None else url(f"/commit/{v}", after=_b64(nxt))})


def _b64(k: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(k).decode().rstrip("=")


@page
async def compare(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
    ctx: dict[str, object] = {"a": a, "b": b, "changes": None, "title": "Compare",
                              "next": None}
    if a and b:
        after = diffview.key_from_query({"kb": request.query_params.get("after", "")})

        def read() -> tuple[Commit, Commit, list[ChangeView], bytes | None]:
            va, vb = db.commit_info(ops.parse_ref(a)), db.commit_info(ops.parse_ref(b))
            chs, nxt = ops.changes(db, va.version, vb.version, after or None, 100)
            return va, vb, [diffview.view(*x) for x in chs], nxt
        va, vb, chs, nxt = await run(read)
        ctx.update(va=va, vb=vb, changes=chs,
                   next=None if nxt is None else url("/compare", a=a, b=b, after=_b64(nxt)))
    return await render(request, "compare.html", ctx)


# ---- browse, key, history ------------------------------------------------------------
@page
async def browse(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    ref = request.query_params.get("ref", "") or "main"
    prefix = request.query_params.get("prefix", "")
    after = diffview.key_from_query({"kb": request.query_params.get("after", "")})

    def read() -> tuple[int, int, list[tuple[bytes, bytes]], bytes | None]:
        with ops.open_snapshot(db, ops.parse_ref(ref)) as s:
            start = None if not after else after + b"\x00"
            out: list[tuple[bytes, bytes]] = []
            nxt = None
            for k, val in s.items(start=start, prefix=prefix.encode() if prefix else None):
                if len(out) == 100:
                    nxt = out[-1][0]
                    break
                out.append((k, val))
            return s.version, len(s), out, nxt
    version, total, items, nxt = await run(read)
    rows = [{"key": diffview.key_label(k), "q": diffview.key_query(k), "size": len(val),
             "preview": _preview(val)} for k, val in items]
    return await render(request, "browse.html", {
        "ref": ref, "prefix": prefix, "version": version, "total": total, "rows": rows,
        "title": "Browse", "url": url,
        "next": None if nxt is None else url("/browse", ref=ref, prefix=prefix,
                                             after=_b64(nxt))})


def _preview(v: bytes) -> str:
    t = diffview.as_text(v)
    if t is None:
        return f"({len(v)} bytes) " + v[:24].hex(" ")
    return t if len(t) <= 120 else t[:120] + "…"


async def _key_of(request: Request, ref: str) -> tuple[Database, bytes, str]:
    """(database, key, ref) of a key's page, for a reader: the key its query names (k=
    text, kb= base64url; 400 if none) and its query parameter ``ref`` (default main)."""
    await require(request, "reader")
    db = server_of(request).db
    key = diffview.key_from_query(request.query_params)
    if not key:
        raise ApiError(400, "name a key with k= (text) or kb= (base64url)")
    return db, key, request.query_params.get(ref, "") or "main"


@page
async def key_page(request: Request) -> Response:
    db, key, ref = await _key_of(request, "ref")

    def read() -> tuple[int, bytes | None]:
        with ops.open_snapshot(db, ops.parse_ref(ref)) as s:
            return s.version, s.get(key)
    version, value = await run(read)
    if value is None:
        raise ApiError(404, f"no key {diffview.key_label(key)!r} at {ref}")
    text = diffview.as_text(value)
    api, api_q = diffview.api_key_path("/api/v1/keys/", key)
    return await render(request, "key.html", {
        "key": diffview.key_label(key), "q": diffview.key_query(key), "ref": ref,
        "api": url(api, **api_q, ref=ref),
        "version": version, "size": len(value), "text": text, "url": url,
        "hex": diffview.hexdump(value) if text is None else None,
        "title": diffview.key_label(key)})


@page
async def history_page(request: Request) -> Response:
    db, key, branch = await _key_of(request, "branch")

    def read() -> list[dict[str, object]]:
        ops.branch_head(db, branch)
        out: list[dict[str, object]] = []
        for v, _t, value in db.history(key, limit=200, branch=branch):
            c = db.commit_info(v)
            out.append({"c": c, "time": c.time.strftime("%Y-%m-%d %H:%M:%S"),
                        "deleted": value is None,
                        "preview": None if value is None else _preview(value)})
        return out
    rows = await run(read)
    api, api_q = diffview.api_key_path("/api/v1/history/", key)
    return await render(request, "history.html", {
        "key": diffview.key_label(key), "q": diffview.key_query(key), "branch": branch,
        "api": url(api, **api_q, branch=branch),
        "rows": rows, "title": "History of " + diffview.key_label(key), "url": url})


# ---- branches and tags -------------------------------------------------------------
@page
async def branches_page(request: Request) -> Response:
    await require(request, "reader")
    server = server_of(request)
    db = server.db

    def read() -> tuple[dict[str, int], dict[str, int]]:
        return db.branches(), db.tags()
    br, tags = await run(read)
    prot = set(server.accounts.protected())
    lanes = timeline.lanes_for(br)
    return await render(request, "branches.html", {
        "branches": [{"name": n, "head": v, "protected": n in prot,
                      "lane": lanes.index(n) % timeline.COLOURS} for n, v in
                     sorted(br.items(), key=lambda x: lanes.index(x[0]))],
        "tags": sorted(tags.items()), "title": "Branches and tags",
        "message": request.query_params.get("done", "")})


@page
async def create_ref(request: Request) -> Response:
    account = await require(request, "writer")
    server = server_of(request)
    kind = request.path_params["kind"]
    _kind_ok(kind)
    if request.method == "GET":   # the confirmation: what will be named, at which version
        name = ops.check_branch_name(request.query_params.get("name", "").strip())
        at = request.query_params.get("at", "").strip()
        c = await run(server.db.commit_info, ops.parse_ref(at) if at else "main")
        return await render(request, "confirm.html", {
            "heading": f"Create {kind} {name}", "title": f"Create {kind}",
            "question": f"Create the {kind} {name!r} at version {c.version} "
                        f"(\"{c.message}\" by {c.author or 'nobody'})?"
                        + (" Tags never move." if kind == "tag" else ""),
            "details": [], "action": f"/create/{kind}",
            "fields": {"name": name, "at": str(c.version)}, "button": f"Create {kind}",
            "back": "/branches"})
    form = await form_of(request)
    name = ops.check_branch_name(fstr(form, "name").strip())
    at_text = fstr(form, "at").strip()
    start = ops.parse_ref(at_text) if at_text else None
    if kind == "branch":
        require_branch_write(request, account, name)
    v = await run(ops.create_ref, server, kind, name, start)
    return see_other(url("/branches", done=f"{kind} {name} at version {v}"))


@page
async def delete_ref(request: Request) -> Response:
    kind = request.path_params["kind"]
    _kind_ok(kind)
    account = await require(request, "writer" if kind == "branch" else "admin")
    server = server_of(request)
    name = request.query_params.get("name", "")
    if request.method == "GET":
        return await render(request, "confirm.html", {
            "heading": f"Delete {kind} {name}", "title": f"Delete {kind}",
            "question": f"Delete the {kind} {name!r}? Its versions stay until gc drops them.",
            "details": [], "action": url(f"/delete/{kind}", name=name), "fields": {},
            "button": f"Delete {kind}", "back": "/branches"})
    await form_of(request)
    name = ops.check_branch_name(name)
    if kind == "branch":
        require_branch_write(request, account, name)
    await run(ops.delete_ref, server, kind, name)
    return see_other(url("/branches", done=f"deleted {kind} {name}"))


# ---- merge -------------------------------------------------------------------------
@page
async def merge_page(request: Request) -> Response:
    account = await require(request, "writer")
    server = server_of(request)
    db = server.db
    source = request.query_params.get("source", "")
    into = request.query_params.get("into", "") or "main"
    if request.method == "GET":
        ops.check_branch_name(source)
        ops.check_branch_name(into)

        def read() -> tuple[int, int, list[ChangeView], bytes | None]:
            hs, hi = ops.branch_head(db, source), ops.branch_head(db, into)
            chs, more = ops.changes(db, hi, hs, None, 50)
            return hs, hi, [diffview.view(*x) for x in chs], more
        hs, hi, chs, more = await run(read)
        return await render(request, "merge.html", {
            "source": source, "into": into, "head": hi, "source_head": hs, "changes": chs,
            "more": more is not None, "conflicts": None, "title": "Merge"})
    form = await form_of(request)
    source = ops.check_branch_name(fstr(form, "source"))
    into = ops.check_branch_name(fstr(form, "into") or "main")
    require_branch_write(request, account, into)
    base = _int(fstr(form, "head")) if fstr(form, "head") else None
    resolve: dict[bytes, bytes | None] | None = None
    if fstr(form, "resolving"):
        resolve = {}
        for i in range(int(fstr(form, "n") or 0)):
            k = diffview.key_from_query({"kb": fstr(form, f"key{i}")})
            choice = fstr(form, f"pick{i}")
            if k is None:
                continue   # not a key this page sent: no conflict asks for it
            if choice == "ours":
                resolve[k] = _unb64(fstr(form, f"ours{i}"))
            elif choice == "theirs":
                resolve[k] = _unb64(fstr(form, f"theirs{i}"))
            elif choice == "custom":
                resolve[k] = fstr(form, f"custom{i}").replace("\r\n", "\n").encode()
            elif choice == "delete":
                resolve[k] = None
    message = fstr(form, "message").strip() or None
    try:
        v = await run(ops.merge, server, source, into, base, resolve, message, account.name)
    except E.MergeConflict as e:
        conflicts = [{"key": diffview.key_label(c.key), "kb": _b64(c.key),
                      "base": _show(c.base), "ours": _show(c.ours), "theirs": _show(c.theirs),
                      "ours_b64": "" if c.ours is None else _b64(c.ours),
                      "theirs_b64": "" if c.theirs is None else _b64(c.theirs),
                      "ours_none": c.ours is None, "theirs_none": c.theirs is None,
                      "custom": diffview.as_text(c.theirs or c.ours or b"") or ""}
                     for c in e.conflicts]
        head = await run(db.head, into)
        return await render(request, "merge.html", {
            "source": source, "into": into, "head": head, "source_head": None,
            "changes": [], "more": False, "conflicts": conflicts, "title": "Merge conflicts",
            "message": message or ""}, status=409)
    return see_other(f"/commit/{v}")


def _unb64(s: str) -> bytes | None:
    if s == "":
        return None
    return diffview.key_from_query({"kb": s})


def _show(v: bytes | None) -> str | None:
    if v is None:
        return None
    t = diffview.as_text(v)
    return t if t is not None else f"({len(v)} bytes) {v[:32].hex(' ')}"


# ---- revert and restore --------------------------------------------------------------
@page
async def revert_page(request: Request) -> Response:
    return await _history_action(request, "revert")


@page
async def restore_page(request: Request) -> Response:
    return await _history_action(request, "restore")


async def _history_action(request: Request, what: str) -> Response:
    account = await require(request, "writer")
    server = server_of(request)
    db = server.db
    v: int = request.path_params["version"]
    if request.method == "GET":
        branch = request.query_params.get("branch", "") or "main"

        def read() -> tuple[Commit, int]:
            return db.commit_info(v), ops.branch_head(db, branch)
        c, head = await run(read)
        q = (f"Commit, on branch {branch!r}, the inverse of version {v}'s changes "
             f"(\"{c.message}\" by {c.author or 'nobody'})?" if what == "revert" else
             f"Commit, on branch {branch!r}, a new version whose content equals version {v}? "
             f"History is kept: versions after {v} stay readable.")
        return await render(request, "confirm.html", {
            "heading": f"{what.capitalize()} version {v}", "title": what.capitalize(),
            "question": q, "details": [], "action": f"/{what}/{v}",
            "fields": {"branch": branch, "head": head}, "button": what.capitalize(),
            "back": f"/commit/{v}"})
    form = await form_of(request)
    branch = ops.check_branch_name(fstr(form, "branch") or "main")
    require_branch_write(request, account, branch)
    base = _int(fstr(form, "head")) if fstr(form, "head") else None
    if what == "revert":
        nv = await run(ops.revert, server, v, branch, base, None, None, account.name)
    else:
        nv = await run(ops.restore, server, v, branch, base, None, account.name)
    return see_other(f"/commit/{nv}")


async def favicon(request: Request) -> Response:
    return Response(status_code=204)


routes: list[Route] = [
    Route("/", index, methods=["GET"]),
    Route("/timeline.frag", timeline_fragment, methods=["GET"]),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/commit/{version:int}", commit_page, methods=["GET"]),
    Route("/compare", compare, methods=["GET"]),
    Route("/browse", browse, methods=["GET"]),
    Route("/key", key_page, methods=["GET"]),
    Route("/history", history_page, methods=["GET"]),
    Route("/branches", branches_page, methods=["GET"]),
    Route("/create/{kind:str}", create_ref, methods=["GET", "POST"]),
    Route("/delete/{kind:str}", delete_ref, methods=["GET", "POST"]),
    Route("/merge", merge_page, methods=["GET", "POST"]),
    Route("/revert/{version:int}", revert_page, methods=["GET", "POST"]),
    Route("/restore/{version:int}", restore_page, methods=["GET", "POST"]),
    Route("/favicon.ico", favicon, methods=["GET"]),
]

