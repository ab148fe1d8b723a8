"""The documents' pages in the server of issue 15 (``cowdb serve``), mounted through its
extension point: ``create_app(..., extensions=["cowdb.documents.web"])`` or the
server's EXTENSIONS list.

    /documents                         the documents, and a form to start one (writers)
    /documents/{name}                  the text at the head, or ?at=REV
    /documents/{name}/edit             the editor: save merges a concurrent save
    /documents/{name}/history          revisions with per-author colours, a slider to scrub
    /documents/{name}/diff?a=&b=       a block and word diff of two revisions
    /documents/{name}/blame            each paragraph tinted by the author who last changed it
    /documents/{name}/revert           admins: "revert edits by ACCOUNT since TIME", preview
                                       then confirm
    POST /documents/{name}/undo        writers: undo one revision
    POST /documents/{name}/restore     writers: a new revision equal to an old one
    POST /documents/{name}/hide        admins: hide (or show again) a revision's content
    GET  /documents.json               the documents' names (JSON); each read page below
                                       has such a twin, linked from its footer:
    GET  /documents/{name}/blocks.json the blocks and the revision they are at (JSON)
    GET  /documents/{name}/history.json, diff.json?a=&b=, blame.json?at=
    POST /documents/{name}/ops.json    block operations on a base revision (JSON): how a
                                       client saves one paragraph of a large document

Roles are the server's: readers read, writers save/undo/restore (on a branch they
may write), admins also revert an author and hide revisions. Nothing here deletes
a revision, changes retention or runs gc. Every user text goes through Jinja2's
autoescape; no page has an inline script (the server's CSP forbids it).
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from cowdb import errors as E
from cowdb.server.auth import csrf_token, require, require_branch_write, server_of
from cowdb.server.http import ApiError, iso, read_json, run
from cowdb.server.ui import form_of, fstr, see_other
from cowdb.server.web import render, url

from . import Document, documents
from .blame import BlameLine
from .errors import DocumentError, InvalidName, RevisionHidden
from .history import BlockChange, Revision
from .model import Block, BlockOp, HiddenRecord, SaveResult
from .revert import RevertPlan, span_back

if TYPE_CHECKING:
    from cowdb.server.accounts import Account
    from cowdb.server.app import Server

T = TypeVar("T")

HERE = os.path.dirname(os.path.abspath(__file__))
COLOURS = 8


def colour(author: str) -> int:
    """A stable colour class (0..7) per account name."""
    return zlib.crc32(author.encode()) % COLOURS


def _trust(request: Request) -> Callable[[str], bool]:
    """Who may hide revisions: the accounts that are admins now. (In open mode the
    local account is the admin.)"""
    server = server_of(request)

    def trusted(author: str) -> bool:
        if server.open_mode:
            return True
        a = server.accounts.get(author)
        return a is not None and a.can("admin")
    return trusted


def _doc(request: Request) -> Document:
    try:
        return Document(server_of(request).db, request.path_params["name"],
                        trust=_trust(request))
    except InvalidName as e:
        raise ApiError(404, str(e)) from None


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _at(request: Request, name: str = "at") -> str | None:
    return request.query_params.get(name) or None


async def _call(fn: Callable[..., T], *a: Any, **kw: Any) -> T:
    """Run a blocking documents call; its errors become the right HTTP status."""
    try:
        out: T = await run(fn, *a, **kw)
        return out
    except RevisionHidden as e:
        raise ApiError(403, str(e)) from None
    except (E.VersionNotFound, KeyError) as e:
        raise ApiError(404, str(e).strip("'\"")) from None
    except (DocumentError, ValueError, TypeError) as e:
        raise ApiError(400, str(e)) from None


# ---- pages ----------------------------------------------------------------------
async def index(request: Request) -> Response:
    account = await require(request, "reader")
    names = await run(documents, server_of(request).db)
    return await render(request, "doc_index.html", {"names": names, "title": "Documents",
                                                    "can_write": account.can("writer")})


async def index_json(request: Request) -> Response:
    await require(request, "reader")
    return JSONResponse({"documents": await run(documents, server_of(request).db)})


async def create(request: Request) -> Response:
    account = await require(request, "writer")
    form = await form_of(request)
    name = fstr(form, "name").strip()
    try:
        doc = Document(server_of(request).db, name)
    except InvalidName as e:
        raise ApiError(400, str(e)) from None
    require_branch_write(request, account, doc.branch)
    if await run(lambda: bool(doc.blocks())):
        raise ApiError(409, f"a document named {name!r} exists; open it to edit it")
    text = fstr(form, "text")
    if text:
        await _call(doc.save, text, author=account.name, summary="created")
        server_of(request).notify_commit()
    return see_other(f"/documents/{name}/edit" if not text else f"/documents/{name}")


async def view(request: Request) -> Response:
    account = await require(request, "reader")
    doc = _doc(request)
    at = _at(request)
    admin = account.can("admin")
    blocks = await _call(doc.blocks, at, admin=admin)
    v = await _call(doc.resolve, at)
    return await render(request, "doc_view.html", {
        "title": doc.name, "doc": doc, "blocks": blocks, "version": v, "at": at,
        "can_write": account.can("writer")})


async def edit(request: Request) -> Response:
    account = await require(request, "writer")
    doc = _doc(request)
    require_branch_write(request, account, doc.branch)
    ctx = {"title": f"Edit {doc.name}", "doc": doc, "conflicts": (), "message": ""}
    if request.method == "POST":
        form = await form_of(request)
        text, base = fstr(form, "text"), fstr(form, "base")
        if not base.isdigit():
            raise ApiError(400, "the form lost its base revision; reload the editor")
        summary = fstr(form, "summary").strip() or None
        r = await _call(doc.save, text, int(base), author=account.name, summary=summary)
        if r.revision is not None:
            server_of(request).notify_commit()
        if r.ok:
            msg = "no change" if r.revision is None else f"saved revision {r.revision}"
            if r.merged:
                msg += (f" (merged with revisions saved since {r.base}: nobody's edit "
                        f"was lost)")
            return see_other(url(f"/documents/{doc.name}", saved=msg))
        ctx["conflicts"] = r.conflicts
        ctx["message"] = (f"{len(r.conflicts)} paragraph(s) were changed by someone else "
                          f"since you started; their version is below and yours is shown "
                          f"beside it. Everything else you changed was saved"
                          + (f" (revision {r.revision})." if r.revision else "."))
    head = await run(doc.head)
    ctx["text"] = await _call(doc.text, head)
    ctx["base"] = head
    return await render(request, "doc_edit.html", ctx, status=409 if ctx["conflicts"] else 200)


def _revisions_ctx(doc: Document, account: Account
                   ) -> tuple[list[Revision], dict[int, HiddenRecord], list[str]]:
    revs = doc.revisions()
    hidden = doc.hidden()
    authors: list[str] = []
    for r in reversed(revs):
        if r.author not in authors:
            authors.append(r.author)
    return revs, hidden, authors


async def history_json(request: Request) -> Response:
    await require(request, "reader")
    doc = _doc(request)
    revs = await _call(doc.revisions)
    if not revs:
        raise ApiError(404, f"there is no document named {doc.name!r}: GET /documents.json "
                            f"lists them")
    return JSONResponse({"document": doc.name, "revisions": [r.as_json(iso) for r in revs]})


async def history(request: Request) -> Response:
    account = await require(request, "reader")
    doc = _doc(request)
    revs, hidden, authors = await _call(_revisions_ctx, doc, account)
    mark = request.query_params.get("mark", "")
    return await render(request, "doc_history.html", {
        "title": f"History of {doc.name}", "doc": doc, "revs": revs, "authors": authors,
        "colour": colour, "when": _when, "mark": mark, "hidden": hidden,
        "is_admin": account.can("admin"), "can_write": account.can("writer"),
        "oldest_first": list(reversed(revs))})


async def scrub(request: Request) -> Response:
    """The text at one revision, tinted by author: what the history slider shows."""
    account = await require(request, "reader")
    doc = _doc(request)
    at = _at(request)
    try:
        lines = await run(doc.blame, at, admin=account.can("admin"))
        hidden = False
    except RevisionHidden:
        lines, hidden = [], True
    except (E.VersionNotFound, DocumentError) as e:
        raise ApiError(404, str(e)) from None
    return await render(request, "doc_scrub.html", {"lines": lines, "colour": colour,
                                                    "hidden": hidden, "at": at})


async def _changes(request: Request) -> tuple[Document, str, str | None, list[BlockChange]]:
    """What the diff page and its twin show: (the document, a, b, the block changes)."""
    account = await require(request, "reader")
    doc = _doc(request)
    a, b = _at(request, "a"), _at(request, "b")
    if a is None:
        raise ApiError(400, "give a revision: ?a=REV (what it changed) or ?a=REV&b=REV2")
    return doc, a, b, await _call(doc.diff, a, b, admin=account.can("admin"))


async def diff_json(request: Request) -> Response:
    doc, a, b, changes = await _changes(request)
    return JSONResponse({"document": doc.name, "a": a, "b": b,
                         "changes": [c.as_json() for c in changes]})


async def diff(request: Request) -> Response:
    doc, a, b, changes = await _changes(request)
    info = None
    if b is None:
        info = await _call(doc.revision, int(await _call(doc.resolve, a)))
    return await render(request, "doc_diff.html", {
        "title": f"Diff of {doc.name}", "doc": doc, "changes": changes, "a": a, "b": b,
        "info": info, "colour": colour, "when": _when})


async def _blame(request: Request) -> tuple[Document, str | None, list[BlameLine]]:
    """What the blame page and its twin show: (the document, at, the lines)."""
    account = await require(request, "reader")
    doc = _doc(request)
    at = _at(request)
    return doc, at, await _call(doc.blame, at, admin=account.can("admin"))


async def blame_json(request: Request) -> Response:
    doc, at, lines = await _blame(request)
    return JSONResponse({"document": doc.name, "at": at,
                         "lines": [b.as_json(iso) for b in lines]})


async def blame(request: Request) -> Response:
    doc, at, lines = await _blame(request)
    authors = []
    for b in sorted(lines, key=lambda b: b.revision):
        if b.author not in authors:
            authors.append(b.author)
    return await render(request, "doc_blame.html", {
        "title": f"Blame of {doc.name}", "doc": doc, "lines": lines, "colour": colour,
        "authors": authors, "when": _when, "at": at})


def _parse_since(s: str) -> datetime:
    s = s.strip()
    if not s:
        raise ApiError(400, "give the time to revert from (since)")
    back = span_back(s)
    if back is not None:
        return back
    try:
        t = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith("Z") else s)
    except ValueError:
        raise ApiError(400, f"{s!r} is not a time: use 2026-12-05T09:00:00Z, or a span "
                            f"back from now like 2h or 7d") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


async def revert(request: Request) -> Response:
    """GET: the form, and with ?account=&since= the preview. POST: apply it."""
    account = await require(request, "admin")
    doc = _doc(request)
    require_branch_write(request, account, doc.branch)
    if request.method == "POST":
        form = await form_of(request)
        who, since = fstr(form, "account"), _parse_since(fstr(form, "since"))
        todo = await _call(doc.revert_author, who, since)
        r = await _call(todo.apply, author=account.name)
        if r.revision is not None:
            server_of(request).notify_commit()
        msg = (f"reverted {who}'s edits since {since.isoformat()} in revision {r.revision}"
               if r.revision is not None else "nothing to revert")
        if r.conflicts:
            msg += f"; {len(r.conflicts)} paragraph(s) changed meanwhile were left as they are"
        return see_other(url(f"/documents/{doc.name}/history", saved=msg))
    who = request.query_params.get("account", "")
    since_s = request.query_params.get("since", "")
    plan: RevertPlan | None = None
    if who and since_s:
        plan = await _call(doc.revert_author, who, _parse_since(since_s))
    revs = await _call(doc.revisions)
    accounts = sorted({r.author for r in revs})
    return await render(request, "doc_revert.html", {
        "title": f"Revert an author in {doc.name}", "doc": doc, "plan": plan, "who": who,
        "since": since_s, "accounts": accounts, "colour": colour, "when": _when})


async def _revision_action(request: Request, action: str
                           ) -> tuple[Document, str, SaveResult]:
    """Run ``doc.undo`` or ``doc.restore`` (``action``) on the revision the form names, as
    the signed-in writer: (the document, the revision named, its result)."""
    account = await require(request, "writer")
    doc = _doc(request)
    require_branch_write(request, account, doc.branch)
    form = await form_of(request)
    rev = fstr(form, "revision")
    if not rev.isdigit():
        raise ApiError(400, "which revision?")
    fn: Callable[..., SaveResult] = doc.undo if action == "undo" else doc.restore
    r = await _call(fn, int(rev), author=account.name)
    if r.revision is not None:
        server_of(request).notify_commit()
    return doc, rev, r


async def undo(request: Request) -> Response:
    doc, rev, r = await _revision_action(request, "undo")
    msg = f"undid revision {rev} in revision {r.revision}" if r.revision else "nothing to undo"
    if r.conflicts:
        msg += f"; {len(r.conflicts)} paragraph(s) changed later were left as they are"
    return see_other(url(f"/documents/{doc.name}/history", saved=msg))


async def restore(request: Request) -> Response:
    doc, rev, r = await _revision_action(request, "restore")
    msg = (f"restored revision {rev} as revision {r.revision}" if r.revision
           else f"the text already equals revision {rev}")
    return see_other(url(f"/documents/{doc.name}/history", saved=msg))


async def hide(request: Request) -> Response:
    account = await require(request, "admin")
    doc = _doc(request)
    form = await form_of(request)
    rev = fstr(form, "revision")
    if not rev.isdigit():
        raise ApiError(400, "which revision?")
    if fstr(form, "show"):
        await _call(doc.unhide, int(rev), by=account.name)
        msg = f"revision {rev} is visible again"
    else:
        await _call(doc.hide, int(rev), by=account.name, reason=fstr(form, "reason")[:200])
        msg = f"revision {rev}'s content is now hidden from non-admins"
    server_of(request).notify_commit()
    return see_other(url(f"/documents/{doc.name}/history", saved=msg))


# ---- JSON --------------------------------------------------------------------------
async def blocks_json(request: Request) -> Response:
    account = await require(request, "reader")
    doc = _doc(request)
    at = _at(request)

    def read() -> tuple[int, list[Block]]:
        v = doc.resolve(at)
        return v, doc.blocks(v, admin=account.can("admin"))
    v, blocks = await _call(read)
    return JSONResponse({"document": doc.name, "revision": v,
                         "blocks": [{"id": b.id, "text": b.text} for b in blocks]},
                        headers={"ETag": f'"{v}"'})


def _ops(data: dict[str, Any]) -> list[BlockOp]:
    ops = data.get("ops")
    if not isinstance(ops, list) or not ops:
        raise ApiError(400, 'give "ops": a list of ["set", id, text], ["insert", after, '
                            'text] (after: an id, null for the top, or ["op", i]) and '
                            '["delete", id]')
    out: list[BlockOp] = []
    for o in ops:
        if not isinstance(o, list) or not o or o[0] not in ("set", "insert", "delete") or \
                len(o) != (2 if o[0] == "delete" else 3):
            raise ApiError(400, f"not a block operation: {o!r}")
        if o[0] == "insert" and isinstance(o[1], list):
            o = ["insert", tuple(o[1]), o[2]]
        out.append(tuple(o))
    return out


async def ops_json(request: Request) -> Response:
    """Apply block operations: {"base": N, "ops": [...], "summary": "..."}. 200 with the
    new revision (merged onto the head when others saved since base), 409 when some
    blocks conflict (the rest is saved; each conflict has base, ours and theirs)."""
    account = await require(request, "writer")
    doc = _doc(request)
    require_branch_write(request, account, doc.branch)
    if request.state.via_cookie and request.headers.get("x-csrf-token") != csrf_token(request):
        raise ApiError(403, "send the page's CSRF token in X-CSRF-Token")
    data = await read_json(request)
    base = data.get("base")
    if not isinstance(base, int) or isinstance(base, bool):
        raise ApiError(400, 'give "base": the revision the operations were made on')
    summary = data.get("summary")
    if summary is not None and not isinstance(summary, str):
        raise ApiError(400, '"summary" is a string')
    r = await _call(doc.save_ops, _ops(data), base, author=account.name, summary=summary)
    if r.revision is not None:
        server_of(request).notify_commit()
    body = {"revision": r.revision, "base": r.base, "head": r.head, "merged": r.merged,
            "written": r.written, "inserted": list(r.inserted),
            "conflicts": [{"block": c.block, "base": c.base, "ours": c.ours,
                           "theirs": c.theirs} for c in r.conflicts]}
    return JSONResponse(body, status_code=409 if r.conflicts else 200)


async def static(request: Request) -> Response:
    name = request.path_params["file"]
    if name not in ("documents.js", "documents.css"):
        raise ApiError(404, "nothing here")
    return FileResponse(os.path.join(HERE, "static", name))


routes: list[Route] = [
    Route("/documents", index),
    Route("/documents", create, methods=["POST"]),
    Route("/documents.json", index_json),
    Route("/documents/_static/{file}", static),
    Route("/documents/{name}/blocks.json", blocks_json),
    Route("/documents/{name}/history.json", history_json),
    Route("/documents/{name}/diff.json", diff_json),
    Route("/documents/{name}/blame.json", blame_json),
    Route("/documents/{name}/ops.json", ops_json, methods=["POST"]),
    Route("/documents/{name}", view),
    Route("/documents/{name}/edit", edit, methods=["GET", "POST"]),
    Route("/documents/{name}/history", history),
    Route("/documents/{name}/scrub", scrub),
    Route("/documents/{name}/diff", diff),
    Route("/documents/{name}/blame", blame),
    Route("/documents/{name}/revert", revert, methods=["GET", "POST"]),
    Route("/documents/{name}/undo", undo, methods=["POST"]),
    Route("/documents/{name}/restore", restore, methods=["POST"]),
    Route("/documents/{name}/hide", hide, methods=["POST"]),
]


def setup(server: Server) -> None:
    if ("Documents", "/documents") in server.nav:
        return          # listed in EXTENSIONS and passed to create_app too: once is enough
    server.add_routes(routes)
    server.add_templates(os.path.join(HERE, "templates"))
    server.add_nav("Documents", "/documents")
