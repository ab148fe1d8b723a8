"""The JSON API under /api/v1 (described by /api/v1/openapi.json, see openapi.py)."""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import ops
from .accounts import ROLES, Account, AccountError, check_name
from .auth import require, require_branch_write, server_of
from .http import (
    Answer,
    ApiError,
    Body,
    Handler,
    commit_json,
    decode_bytes,
    key_json,
    parse_time,
    read_json,
    run,
    value_json,
)

if TYPE_CHECKING:
    from cowdb.history.commits import Commit

    from .app import Server

endpoint: Callable[[Handler], Handler] = ops.http_errors
D = TypeVar("D")   # a default given back as it is


# ---- request parts ---------------------------------------------------------
def q(request: Request, name: str, default: str | None = None) -> str | None:
    v = request.query_params.get(name)
    return default if v is None or v == "" else v


def q_int(request: Request, name: str, default: D, lo: int = 0,
          hi: int | None = None) -> int | D:
    v = q(request, name)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    if n < lo or (hi is not None and n > hi):
        raise ApiError(400, f"{name} must be from {lo} to {hi}" if hi is not None
                       else f"{name} must be at least {lo}")
    return n


def q_bool(request: Request, name: str, default: bool = False) -> bool:
    v = q(request, name)
    if v is None:
        return default
    if v.lower() in ("1", "true", "yes"):
        return True
    if v.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, f"{name} must be true or false")


def q_bytes(request: Request, name: str) -> bytes | None:
    """A key-like query parameter, text or base64 (``<name>_encoding=base64``)."""
    v = q(request, name)
    if v is None:
        return None
    return decode_bytes(v, request.query_params.get(f"{name}_encoding") or "utf8", name)


def cursor_decode(v: str | None) -> bytes | None:
    if v is None:
        return None
    try:
        return base64.urlsafe_b64decode(v.encode("ascii") + b"=" * (-len(v) % 4))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ApiError(400, "cursor is not one this server gave") from None


def cursor_encode(k: bytes | None) -> str | None:
    return None if k is None else base64.urlsafe_b64encode(k).decode().rstrip("=")


def path_key(request: Request) -> bytes:
    raw = request.path_params["key"]
    enc = request.query_params.get("key_encoding") or "utf8"
    if enc == "base64":
        raw = raw.replace("-", "+").replace("_", "/")
        raw += "=" * (-len(raw) % 4)
    key = decode_bytes(raw, enc, "key")
    if not key:
        raise ApiError(400, "the key is empty")
    return key


def limit_of(request: Request, default: int = 100) -> int:
    return q_int(request, "limit", default, lo=1, hi=ops.MAX_PAGE)


def ref_of(request: Request) -> tuple[int | str, datetime | None]:
    """(ref, at) of a read: ?ref=branch|tag|version (default main) or ?at=ISO time."""
    at = q(request, "at")
    return ops.parse_ref(q(request, "ref", "main")), (None if at is None
                                                       else parse_time(at, "at"))


def etag(version: int) -> str:
    return f'"{version}"'


def if_match(request: Request, required: bool = True) -> int | None:
    """The version If-Match names (None for '*'); 428 when missing."""
    v = request.headers.get("if-match")
    if v is None:
        if required:
            raise ApiError(428, "send If-Match with the ETag (branch head version) you read; "
                                "a write on a stale head is refused with 412")
        return None
    v = v.strip()
    if v == "*":
        return None
    v = v.removeprefix("W/").strip('"')
    if not v.isdigit() or len(v) > 18:
        raise ApiError(400, "If-Match must be an ETag this server gave, like \"12\"")
    return int(v)


def not_modified(request: Request, version: int) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
    return "*" in tags or etag(version) in tags


def ok(data: Answer, status: int = 200, version: int | None = None) -> JSONResponse:
    headers = None if version is None else {"ETag": etag(version)}
    return JSONResponse(data, status_code=status, headers=headers)


def body_str(body: Body, name: str, default: D | str = "", limit: int = 10000) -> str | D:
    v = body.get(name, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise ApiError(400, f"{name} must be a string")
    if len(v) > limit:
        raise ApiError(400, f"{name} is longer than {limit} characters")
    return v


def label(key: bytes) -> str:
    from .diffview import key_label
    s = key_label(key)
    return s if len(s) <= 60 else s[:60] + "…"


def body_key(item: object, what: str = "key") -> bytes:
    if not isinstance(item, dict):
        raise ApiError(400, f"each {what} entry is an object with key (and value)")
    k = decode_bytes(item.get("key"), item.get("key_encoding"), "key")
    if not k:
        raise ApiError(400, "a key cannot be empty")
    return k


def body_value(item: object) -> bytes:
    if not isinstance(item, dict):
        raise ApiError(400, "each put is an object with key and value")
    if item.get("value") is None:
        raise ApiError(400, "value is missing (to delete, use deletes or DELETE)")
    return decode_bytes(item.get("value"), item.get("value_encoding"), "value")


def body_resolve(body: Body) -> ops.BodyResolve:
    r = body.get("resolve")
    if r is None or r in ("ours", "theirs"):
        return r
    if not isinstance(r, list):
        raise ApiError(400, "resolve is 'ours', 'theirs' or a list of {key, value} (value "
                            "null deletes)")
    out: dict[bytes, bytes | None] = {}
    for item in r:
        k = body_key(item)
        out[k] = None if item.get("value") is None else body_value(item)
    return out


def branch_param(request: Request) -> str:
    return ops.check_branch_name(q(request, "branch", "main"))


# ---- keys ------------------------------------------------------------------
@endpoint
async def get_key(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    key = path_key(request)
    ref, at = ref_of(request)

    # inline, not in the thread pool: a snapshot never waits for a lock, and one key is
    # a few page visits (of the mapped file); the thread hop would cost more than the read
    with ops.open_snapshot(db, ref, at) as s:
        version, value = s.version, s.get(key)
    if not_modified(request, version):
        return Response(status_code=304, headers={"ETag": etag(version)})
    if value is None:
        raise ApiError(404, "no such key at this version", headers={"ETag": etag(version)},
                       version=version)
    if q_bool(request, "raw"):
        return Response(value, media_type="application/octet-stream",
                        headers={"ETag": etag(version)})
    return ok({**key_json(key), **value_json(value), "version": version}, version=version)


@endpoint
async def list_keys(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    ref, at = ref_of(request)
    prefix, start, stop = q_bytes(request, "prefix"), q_bytes(request, "start"), \
        q_bytes(request, "stop")
    after = cursor_decode(q(request, "cursor"))
    limit, values = limit_of(request), q_bool(request, "values", True)

    def read() -> tuple[int, list[tuple[bytes, bytes]], bytes | None]:
        with ops.open_snapshot(db, ref, at) as s:
            lo = start
            if after is not None:
                lo = after + b"\x00" if lo is None or after >= lo else lo
            items: list[tuple[bytes, bytes]] = []
            nxt = None
            for k, v in s.items(start=lo, stop=stop, prefix=prefix):
                if len(items) == limit:
                    nxt = items[-1][0]
                    break
                items.append((k, v))
            return s.version, items, nxt
    version, items, nxt = await run(read)
    if not_modified(request, version):
        return Response(status_code=304, headers={"ETag": etag(version)})
    keys = [{**key_json(k), **(value_json(v) if values else {"size": len(v)})}
            for k, v in items]
    return ok({"version": version, "keys": keys, "next": cursor_encode(nxt)}, version=version)


async def _write(request: Request, puts: dict[bytes, bytes], deletes: set[bytes],
                 message: str, must_exist: bytes | None = None) -> JSONResponse:
    server = server_of(request)
    branch = branch_param(request)
    account = await require(request, "writer")
    require_branch_write(request, account, branch)
    base = if_match(request)
    auto = q(request, "merge") == "auto"
    if q(request, "merge") not in (None, "auto"):
        raise ApiError(400, "merge must be 'auto' or absent")
    v = await run(ops.write_keys, server, branch, base, puts, deletes, message, account.name,
                  auto, must_exist)
    return ok({"version": v, "branch": branch, "author": account.name}, version=v)


@endpoint
async def put_key(request: Request) -> Response:
    key = path_key(request)
    await require(request, "writer")
    body = await read_json(request)
    value = body_value(body)
    return await _write(request, {key: value}, set(), body_str(body, "message",
                                                               f"put {label(key)}"))


@endpoint
async def delete_key(request: Request) -> Response:
    key = path_key(request)
    await require(request, "writer")
    body = await read_json(request, required=False)
    msg = body_str(body, "message", q(request, "message") or f"delete {label(key)}")
    return await _write(request, {}, {key}, msg, must_exist=key)


@endpoint
async def commit(request: Request) -> Response:
    await require(request, "writer")
    body = await read_json(request)
    puts: dict[bytes, bytes] = {}
    deletes: set[bytes] = set()
    p, d = body.get("puts", []), body.get("deletes", [])
    if not isinstance(p, list) or not isinstance(d, list):
        raise ApiError(400, "puts and deletes are lists")
    if len(p) + len(d) > 100000:
        raise ApiError(413, "at most 100,000 keys per commit")
    for item in p:
        k = body_key(item)
        puts[k] = body_value(item)
    for item in d:
        k = body_key(item)
        if k in puts:
            raise ApiError(400, f"key {k[:60]!r} is both put and deleted")
        deletes.add(k)
    if not puts and not deletes:
        raise ApiError(400, "a commit needs at least one put or delete")
    resp = await _write(request, puts, deletes, body_str(body, "message"))
    resp.status_code = 201
    return resp


# ---- history ---------------------------------------------------------------
@endpoint
async def get_log(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    branch = branch_param(request)
    since, until = q(request, "since"), q(request, "until")
    before, limit = q_int(request, "cursor", None, lo=1), limit_of(request, 50)
    author, prefix = q(request, "author"), q_bytes(request, "prefix")
    t0 = None if since is None else parse_time(since, "since")
    t1 = None if until is None else parse_time(until, "until")

    def read() -> tuple[int, list[Commit], int | None]:
        head = ops.branch_head(db, branch)
        commits, nxt = ops.log(db, branch, before=before, limit=limit, author=author,
                               since=t0, until=t1, prefix=prefix)
        return head, commits, nxt
    head, commits, nxt = await run(read)
    if not_modified(request, head):
        return Response(status_code=304, headers={"ETag": etag(head)})
    return ok({"branch": branch, "head": head, "commits": [commit_json(c) for c in commits],
               "next": None if nxt is None else str(nxt)}, version=head)


@endpoint
async def get_commit(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    version: int = request.path_params["version"]
    after, limit = cursor_decode(q(request, "cursor")), limit_of(request)

    def read() -> tuple[Commit, tuple[list[ops.Change], bytes | None]]:
        c = db.commit_info(version)
        return c, ops.commit_changes(db, c, after, limit)
    c, (chs, nxt) = await run(read)
    return ok({"commit": commit_json(c), "changes": [ops.change_json(*x) for x in chs],
               "next": cursor_encode(nxt)}, version=c.version)


@endpoint
async def get_diff(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    qa, qb = q(request, "a"), q(request, "b")
    if qa is None or qb is None:
        raise ApiError(400, "give both a and b (versions, tags or branches)")
    a, b = ops.parse_ref(qa), ops.parse_ref(qb)
    after, limit = cursor_decode(q(request, "cursor")), limit_of(request)
    prefix = q_bytes(request, "prefix")

    def read() -> tuple[int, int, tuple[list[ops.Change], bytes | None]]:
        va, vb = db.commit_info(a).version, db.commit_info(b).version
        return va, vb, ops.changes(db, va, vb, after, limit, prefix)
    va, vb, (chs, nxt) = await run(read)
    return ok({"a": va, "b": vb, "changes": [ops.change_json(*x) for x in chs],
               "next": cursor_encode(nxt)})


@endpoint
async def key_history(request: Request) -> Response:
    await require(request, "reader")
    db = server_of(request).db
    key, branch = path_key(request), branch_param(request)
    limit = limit_of(request, 100)

    def read() -> list[dict[str, object]]:
        ops.branch_head(db, branch)
        return ops.history(db, key, branch, limit)
    return ok({**key_json(key), "branch": branch, "versions": await run(read)})


# ---- refs ------------------------------------------------------------------
@endpoint
async def list_branches(request: Request) -> Response:
    await require(request, "reader")
    server = server_of(request)
    br = await run(server.db.branches)
    prot = set(server.accounts.protected())
    return ok({"branches": [{"name": n, "head": v, "protected": n in prot}
                            for n, v in sorted(br.items())]})


def _new_ref(body: Body) -> tuple[str, int | str | None]:
    """A new branch's or tag's name and where it starts (None: the head of main)."""
    at = body.get("at")
    return ops.check_branch_name(body.get("name")), None if at is None else ops.parse_ref(at)


@endpoint
async def create_branch(request: Request) -> Response:
    account = await require(request, "writer")
    server = server_of(request)
    name, at = _new_ref(await read_json(request))
    require_branch_write(request, account, name)
    v = await run(ops.create_ref, server, "branch", name, at)
    return ok({"name": name, "head": v}, status=201)


@endpoint
async def delete_branch(request: Request) -> Response:
    account = await require(request, "writer")
    server = server_of(request)
    name = ops.check_branch_name(request.path_params["name"])
    require_branch_write(request, account, name)
    await run(ops.delete_ref, server, "branch", name)
    return ok({"deleted": name})


@endpoint
async def list_tags(request: Request) -> Response:
    await require(request, "reader")
    tags = await run(server_of(request).db.tags)
    return ok({"tags": [{"name": n, "version": v} for n, v in sorted(tags.items())]})


@endpoint
async def create_tag(request: Request) -> Response:
    await require(request, "writer")
    server = server_of(request)
    name, at = _new_ref(await read_json(request))
    v = await run(ops.create_ref, server, "tag", name, at)
    return ok({"name": name, "version": v}, status=201)


@endpoint
async def delete_tag(request: Request) -> Response:
    await require(request, "admin")
    server = server_of(request)
    name = ops.check_branch_name(request.path_params["name"])
    await run(ops.delete_ref, server, "tag", name)
    return ok({"deleted": name})


# ---- merge, revert, restore ---------------------------------------------------
@endpoint
async def merge(request: Request) -> Response:
    account = await require(request, "writer")
    server = server_of(request)
    body = await read_json(request)
    source = ops.check_branch_name(body.get("source"))
    into = ops.check_branch_name(body.get("into", "main") or "main")
    require_branch_write(request, account, into)
    base = if_match(request)
    msg = body_str(body, "message", None) or None
    v = await run(ops.merge, server, source, into, base, body_resolve(body), msg, account.name)
    return ok({"version": v, "branch": into, "author": account.name}, version=v)


def body_version(body: Body) -> int | str:
    v = body.get("version")
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ApiError(400, "version is a version number, tag or branch name")
    return ops.parse_ref(v)


async def _branch_write(request: Request) -> tuple[Account, Server, Body, str, int | None]:
    """(account, server, body, branch, If-Match base) of a write to the body's branch
    (default main) by an account allowed to write it."""
    account = await require(request, "writer")
    server = server_of(request)
    body = await read_json(request)
    branch = ops.check_branch_name(body.get("branch", "main") or "main")
    require_branch_write(request, account, branch)
    return account, server, body, branch, if_match(request)


@endpoint
async def revert(request: Request) -> Response:
    account, server, body, branch, base = await _branch_write(request)
    v = await run(ops.revert, server, body_version(body), branch, base, body_resolve(body),
                  body_str(body, "message", None) or None, account.name)
    return ok({"version": v, "branch": branch, "author": account.name}, version=v)


@endpoint
async def restore(request: Request) -> Response:
    account, server, body, branch, base = await _branch_write(request)
    v = await run(ops.restore, server, body_version(body), branch, base,
                  body_str(body, "message", None) or None, account.name)
    return ok({"version": v, "branch": branch, "author": account.name}, version=v)


# ---- upkeep ----------------------------------------------------------------
@endpoint
async def retention(request: Request) -> Response:
    server = server_of(request)
    if request.method == "GET":
        await require(request, "reader")
        return ok(await run(ops.retention_json, server.db))
    await require(request, "admin")
    body = await read_json(request)
    kl, kw = _keep_last(body.get("keep_last")), _keep_within(body.get("keep_within_seconds"))
    await run(ops.set_retention, server, kl, kw)
    return ok(await run(ops.retention_json, server.db))


def _keep_last(kl: object) -> int | None:
    if kl is not None and (isinstance(kl, bool) or not isinstance(kl, int) or kl < 1
                           or kl > 2 ** 62):
        raise ApiError(400, "keep_last is a positive integer or null")
    return kl


def _keep_within(kw: object) -> float | None:
    if kw is not None and (isinstance(kw, bool) or not isinstance(kw, (int, float))
                           or not 1e-6 <= kw < 1e11):  # below a microsecond: zero
        raise ApiError(400, "keep_within_seconds is a positive number (at least 1e-6) or null")
    return kw


@endpoint
async def gc(request: Request) -> Response:
    await require(request, "admin")
    server = server_of(request)
    return ok(await run(ops.gc, server))


@endpoint
async def stats(request: Request) -> Response:
    await require(request, "reader")
    return ok(await run(ops.stats, server_of(request).db))


@endpoint
async def check(request: Request) -> Response:
    await require(request, "admin")
    return ok(await run(ops.check, server_of(request).db))


# ---- accounts ----------------------------------------------------------------
@endpoint
async def me(request: Request) -> Response:
    account = await require(request, "reader")
    server = server_of(request)
    return ok({"name": account.name, "role": account.role, "open_mode": server.open_mode})


@endpoint
async def users(request: Request) -> Response:
    await require(request, "admin")
    server = server_of(request)
    if request.method == "GET":
        return ok({"users": [{"name": a.name, "role": a.role}
                             for a in server.accounts.list()]})
    body = await read_json(request)
    name, role = body.get("name"), body.get("role", "reader")
    if not isinstance(role, str) or role not in ROLES:
        raise ApiError(400, f"role is one of {', '.join(ROLES)}")
    try:
        token = await run(server.accounts.add, check_name(name), role)
    except AccountError as e:
        raise ApiError(409 if "exists" in str(e) else 400, str(e)) from None
    return ok({"name": name, "role": role, "token": token}, status=201)


@endpoint
async def delete_user(request: Request) -> Response:
    await require(request, "admin")
    try:
        await run(server_of(request).accounts.remove, request.path_params["name"])
    except AccountError as e:
        raise ApiError(404, str(e)) from None
    return ok({"deleted": request.path_params["name"]})


@endpoint
async def protected(request: Request) -> Response:
    server = server_of(request)
    if request.method == "GET":
        await require(request, "reader")
        return ok({"protected": server.accounts.protected()})
    await require(request, "admin")
    name = ops.check_branch_name(request.path_params.get("name"))
    if request.method == "PUT":
        await run(server.accounts.protect, name)
    else:
        try:
            await run(server.accounts.unprotect, name)
        except AccountError as e:
            raise ApiError(404, str(e)) from None
    return ok({"protected": server.accounts.protected()})


# ---- events ------------------------------------------------------------------
@endpoint
async def events(request: Request) -> Response:
    await require(request, "reader")
    broker = server_of(request).broker
    given = request.headers.get("last-event-id") or q(request, "since")
    since = None
    if given is not None:
        if not given.isdigit() or len(given) > 18:
            raise ApiError(400, "since (or Last-Event-ID) is a version number")
        since = int(given)
    return StreamingResponse(broker.follow(since, request.is_disconnected),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def openapi(request: Request) -> Response:
    from .openapi import spec
    return JSONResponse(spec())


def methods(path: str, **handlers: Handler) -> Route:
    """One route per path, dispatching by method, so a 405 names every allowed method.
    A query parameter the OpenAPI document does not name is a 400: a typo such as
    ``?prefx=`` must not silently list every key."""
    table = {m.upper(): h for m, h in handlers.items()}
    documented = re.sub(r"{(\w+):\w+}", r"{\1}", path)   # "/keys/{key:path}" -> "/keys/{key}"
    known: dict[str, frozenset[str]] = {}

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        if method not in known:
            from .openapi import spec
            op = spec()["paths"].get(documented, {}).get(method.lower())
            known[method] = frozenset(() if op is None else (
                p["name"] for p in op["parameters"] if p["in"] == "query"))
        unknown = sorted(set(request.query_params) - known[method])
        if unknown:
            takes = ", ".join(sorted(known[method])) or "none"
            raise ApiError(400, f"unknown query parameter {unknown[0]!r}; {method} "
                                f"/api/v1{documented} takes: {takes}")
        return await table[method](request)
    return Route(path, dispatch, methods=list(table))


routes: list[Route] = [
    methods("/openapi.json", get=openapi),
    methods("/keys", get=list_keys),
    methods("/keys/{key:path}", get=get_key, put=put_key, delete=delete_key),
    methods("/commits", post=commit),
    methods("/commits/{version:int}", get=get_commit),
    methods("/log", get=get_log),
    methods("/diff", get=get_diff),
    methods("/history/{key:path}", get=key_history),
    methods("/branches", get=list_branches, post=create_branch),
    methods("/branches/{name:path}", delete=delete_branch),
    methods("/tags", get=list_tags, post=create_tag),
    methods("/tags/{name:path}", delete=delete_tag),
    methods("/merge", post=merge),
    methods("/revert", post=revert),
    methods("/restore", post=restore),
    methods("/retention", get=retention, put=retention),
    methods("/gc", post=gc),
    methods("/stats", get=stats),
    methods("/check", get=check),
    methods("/me", get=me),
    methods("/users", get=users, post=users),
    methods("/users/{name:path}", delete=delete_user),
    methods("/protected", get=protected),
    methods("/protected/{name:path}", put=protected, delete=protected),
    methods("/events", get=events),
]
