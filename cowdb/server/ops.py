"""What the API and the UI both do to the database, blocking (run in the thread pool),
on cowdb's public API only. Every write goes through ``Server.write_lock`` so that
checking a branch head and committing on it are one step for this server."""
from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, TypedDict

from starlette.requests import Request
from starlette.responses import Response

import cowdb
from cowdb import errors as E

from .http import ApiError, Handler, commit_json, key_json, value_json

if TYPE_CHECKING:
    from cowdb.db import Database
    from cowdb.engine import Resolve, VersionRef
    from cowdb.history.commits import Commit
    from cowdb.snapshot import Snapshot
    from cowdb.tree.merge import Conflict

    from .app import Server

MAX_PAGE = 1000

Change = tuple[bytes, bytes | None, bytes | None]     # (key, old, new): None is absent
#: How a request settles merge conflicts: a side, or {key: value (None deletes)}.
BodyResolve = Literal["ours", "theirs"] | dict[bytes, bytes | None] | None


class RetentionJSON(TypedDict):
    keep_last: int | None
    keep_within_seconds: float | None


class GcJSON(TypedDict):
    versions_dropped: int
    pages_freed: int
    bytes_freed: int
    file_bytes_before: int
    file_bytes_after: int


class StatsJSON(TypedDict):
    file_bytes: int
    live_bytes: int
    reclaimable_bytes: int
    free_bytes: int
    header_bytes: int
    reserve_bytes: int
    versions: int
    kept_versions: int
    pinned: dict[str, int]
    head: int
    newest_version: int
    branches: int
    tags: int


class CheckJSON(TypedDict):
    ok: bool
    errors: list[str]
    versions: int
    pages: int
    free_pages: int
    page_count: int


# The engine's messages point Python users at its API; point HTTP clients at the API's.
_HINTS = (("see db.tags() and db.branches()", "see /api/v1/branches and /api/v1/tags"),
          ("see db.branches()", "see /api/v1/branches"),
          ("see db.tags()", "see /api/v1/tags"),
          ("pass resolve='ours', 'theirs' or a function",
           "send resolve: 'ours', 'theirs' or a list of {key, value}"),
          ("or pass a larger timeout=", "(Retry-After says when)"),
          ("with db.delete_tag()", "(DELETE /api/v1/tags/{name})"),
          ("with db.delete_branch()", "(DELETE /api/v1/branches/{name})"))


def cowdb_error(e: E.CowdbError) -> ApiError:
    """The HTTP answer to a cowdb exception."""
    msg = " ".join(str(e).split()) or type(e).__name__
    for api, http_hint in _HINTS:
        msg = msg.replace(api, http_hint)
    if isinstance(e, E.MergeConflict):
        return ApiError(409, msg, conflicts=[conflict_json(c) for c in e.conflicts])
    if isinstance(e, E.VersionNotFound):        # also RefNotFound, VersionReclaimed
        return ApiError(404, msg)
    if isinstance(e, E.RefExists):
        return ApiError(409, msg)
    if isinstance(e, E.ProtectedBranch):
        return ApiError(403, msg)
    if isinstance(e, E.Locked):
        return ApiError(503, msg, headers={"Retry-After": "1"})
    if isinstance(e, E.ReadOnly):
        return ApiError(403, msg)
    if isinstance(e, (E.InvalidKey, E.KeyTooLarge, E.InvalidType, E.InvalidValue,
                      E.InvalidMerge, E.CodecError)):
        return ApiError(400, msg)
    if isinstance(e, (E.DatabaseClosed,)):
        return ApiError(503, "the database is closed; the server is shutting down")
    raise e


def http_errors(handler: Handler) -> Handler:
    """Decorate an async handler: cowdb exceptions become HTTP errors (404, 409, 400...)."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except E.CowdbError as e:
            raise cowdb_error(e) from None
    return wrapper


def conflict_json(c: Conflict) -> dict[str, object]:
    return {**key_json(c.key), **value_json(c.base, "base"), **value_json(c.ours, "ours"),
            **value_json(c.theirs, "theirs")}


def parse_ref(s: object) -> int | str:
    """'12' -> 12 (a version); anything else is a tag or branch name."""
    if isinstance(s, bool):
        raise ApiError(400, "a ref is a version number, a tag or a branch name")
    if isinstance(s, int):
        if s < 0:
            raise ApiError(400, "a version number is 0 or more")
        return s
    if not isinstance(s, str) or not s:
        raise ApiError(400, "a ref is a version number, a tag or a branch name")
    if s.isdigit() and len(s) < 19:
        return int(s)
    return s


def open_snapshot(db: Database, ref: VersionRef, at: datetime | None = None) -> Snapshot:
    """A snapshot of a branch head (db.read), a version or tag (db.at), or the newest
    version of main at a time. Raises cowdb errors (404 via cowdb_error)."""
    if at is not None:
        return db.at(at)
    if isinstance(ref, str) and ref in db.branches():
        return db.read(ref)
    return db.at(ref)


def check_branch_name(name: object) -> str:
    if not isinstance(name, str) or not name or name != name.strip() or "\x00" in name \
            or len(name.encode()) > 200:
        raise ApiError(400, "a branch or tag name is 1 to 200 bytes, no NUL, no leading or "
                            "trailing spaces")
    return name


def branch_head(db: Database, branch: str) -> int:
    check_branch_name(branch)
    if branch not in db.branches():
        raise ApiError(404, f"no branch named {branch!r}; see /api/v1/branches")
    return db.head(branch)


# ---- writing keys ---------------------------------------------------------
def write_keys(server: Server, branch: str, base: int | None, puts: dict[bytes, bytes],
               deletes: set[bytes], message: str, author: str, auto: bool,
               must_exist: bytes | None = None) -> int:
    """Commit puts and deletes on ``branch`` if its head is still ``base`` (None: any).

    A moved head is 412 unless ``auto``: then the write is rebased onto the new head
    by the three-way rule (base, ours = the head, theirs = this write) key by key, and
    only a key that both changed differently is a conflict (409, nothing written).
    """
    db = server.db
    check_branch_name(branch)
    with server.write_lock:
        if branch not in db.branches():
            raise ApiError(404, f"no branch named {branch!r}")
        with db.write(message, author=author, branch=branch) as tx:
            head = db.head(branch)
            if base is not None and head != base:
                if not auto:
                    raise ApiError(412, f"branch {branch!r} moved to version {head} since "
                                        f"version {base}: read again and retry, or send "
                                        f"?merge=auto", head=head)
                conflicts = rebase_conflicts(db, base, head, puts, deletes)
                if conflicts:
                    raise ApiError(409, f"{len(conflicts)} keys were changed differently "
                                        f"since version {base}; nothing was written",
                                   head=head, conflicts=conflicts)
            if must_exist is not None and tx.get(must_exist) is None:
                raise ApiError(404, "no such key on this branch")
            if puts:
                tx.update(puts)
            for k in deletes:
                tx.delete(k)
        version = tx.version
    assert version is not None   # the with block committed
    server.notify_commit()
    return version


def rebase_conflicts(db: Database, base: int, head: int, puts: dict[bytes, bytes],
                     deletes: set[bytes]) -> list[dict[str, object]]:
    try:
        sb = db.at(base)
    except E.VersionNotFound:
        raise ApiError(412, f"version {base} is not kept any more, so the write cannot be "
                            f"rebased; read again and retry", head=head) from None
    with sb, db.at(head) as sh:
        out: list[dict[str, object]] = []
        for k in sorted(set(puts) | deletes):
            b, o, t = sb.get(k), sh.get(k), puts.get(k)
            if o != b and o != t:
                out.append({**key_json(k), **value_json(b, "base"), **value_json(o, "ours"),
                            **value_json(t, "theirs")})
        return out


# ---- reading history --------------------------------------------------------
def change_json(key: bytes, old: bytes | None, new: bytes | None,
                values: bool = True) -> dict[str, object]:
    kind = "added" if old is None else "deleted" if new is None else "changed"
    out: dict[str, object] = {**key_json(key), "kind": kind}
    if values:
        out.update(value_json(old, "old"))
        out.update(value_json(new, "new"))
    else:
        out.update(old_size=None if old is None else len(old),
                   new_size=None if new is None else len(new))
    return out


def changes(db: Database, a: VersionRef, b: VersionRef, after: bytes | None, limit: int,
            prefix: bytes | None = None) -> tuple[list[Change], bytes | None]:
    """Up to ``limit`` changes from a to b (refs) after key ``after``: (list, next key)."""
    out: list[Change] = []
    last = None
    start = None if after is None else after + b"\x00"
    d = db.diff(a, b, prefix=prefix, start=start)
    try:
        for c in d:
            if len(out) == limit:
                return out, last
            out.append((c.key, c.old, c.new))
            last = c.key
    finally:
        d.close()
    return out, None


def commit_changes(db: Database, c: Commit, after: bytes | None,
                   limit: int) -> tuple[list[Change], bytes | None]:
    """The changes a commit made (against its first parent; the first commit: all keys)."""
    if c.parents:
        try:
            return changes(db, c.parents[0], c.version, after, limit)
        except E.VersionNotFound:
            pass  # the parent was reclaimed: show the content
    out: list[Change] = []
    last = None
    start = None if after is None else after + b"\x00"
    with db.at(c.version) as s:
        for k, v in s.items(start=start):
            if len(out) == limit:
                return out, last
            out.append((k, None, v))
            last = k
    return out, None


def touches(db: Database, c: Commit, prefix: bytes) -> bool:
    if c.parents:
        try:
            d = db.diff(c.parents[0], c.version, prefix=prefix)
            try:
                return next(iter(d), None) is not None
            finally:
                d.close()
        except E.VersionNotFound:
            pass
    with db.at(c.version) as s:
        return next(iter(s.keys(prefix=prefix)), None) is not None


def log(db: Database, branch: str, *, before: int | None = None, limit: int = 50,
        author: str | None = None, since: datetime | None = None,
        until: datetime | None = None,
        prefix: bytes | None = None) -> tuple[list[Commit], int | None]:
    """Commits of a branch newest first with filters: (list of Commit, next cursor)."""
    out: list[Commit] = []
    for c in db.log(branch=branch):
        if before is not None and c.version >= before:
            continue
        if since is not None and c.time < since:
            break
        if until is not None and c.time > until:
            continue
        if author is not None and c.author != author:
            continue
        if prefix is not None and not touches(db, c, prefix):
            continue
        if len(out) == limit:
            return out, out[-1].version
        out.append(c)
    return out, None


def all_commits(db: Database, hi: int | None = None, lo: int = -1) -> list[Commit]:
    """Every kept commit with lo < version <= hi (default: all), newest first."""
    hi = db.version if hi is None else hi
    out: list[Commit] = []
    for v in range(hi, lo, -1):
        try:
            out.append(db.commit_info(v))
        except E.VersionNotFound:
            pass
    return out


def dropping(db: Database) -> set[int]:
    """Versions that the next gc() will drop under the retention rule."""
    r = db.retention
    if r.keep_last is None and r.keep_within is None:
        return set()
    import time
    commits = all_commits(db)
    named = set(db.tags().values()) | set(db.branches().values())
    keep = r.kept(commits, time.time_ns(), named)
    return {c.version for c in commits} - set(keep)


def history(db: Database, key: bytes, branch: str, limit: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for v, _t, value in db.history(key, limit=limit, branch=branch):
        c = db.commit_info(v)
        out.append({**commit_json(c), **value_json(value)})
    return out


# ---- merge, revert, restore ----------------------------------------------
class _Unresolved(Exception):
    pass


def _resolver(resolve: BodyResolve) -> Resolve:
    """'ours' / 'theirs' / None, or {key: bytes | None} -> what cowdb.merge takes."""
    if resolve is None or isinstance(resolve, str):
        return resolve

    def pick(key: bytes, base: object, ours: object, theirs: object) -> bytes | None:
        if key not in resolve:
            raise _Unresolved(key)
        return resolve[key]
    return pick


def _guard_head(db: Database, branch: str, base: int | None) -> None:
    head = branch_head(db, branch)
    if base is not None and head != base:
        raise ApiError(412, f"branch {branch!r} moved to version {head} since version {base}; "
                            f"look again and retry", head=head)


def create_ref(server: Server, kind: str, name: str, at: VersionRef | None) -> int:
    """Create branch or tag (``kind``) ``name`` at ``at`` (None: the head of main)."""
    with server.write_lock:
        return server.db.branch(name, at=at) if kind == "branch" else server.db.tag(name, at)


def delete_ref(server: Server, kind: str, name: str) -> None:
    with server.write_lock:
        (server.db.delete_branch if kind == "branch" else server.db.delete_tag)(name)


def merge(server: Server, source: str, into: str, base: int | None, resolve: BodyResolve,
          message: str | None, author: str) -> int:
    db = server.db
    with server.write_lock:
        _guard_head(db, into, base)
        branch_head(db, source)
        try:
            v = db.merge(source, into=into, resolve=_resolver(resolve), message=message,
                         author=author)
        except _Unresolved:
            v = db.merge(source, into=into, message=message, author=author)  # raises 409
    server.notify_commit()
    return v


def revert(server: Server, version: VersionRef, branch: str, base: int | None,
           resolve: BodyResolve, message: str | None, author: str) -> int:
    db = server.db
    with server.write_lock:
        _guard_head(db, branch, base)
        try:
            v = db.revert(version, branch=branch, resolve=_resolver(resolve), message=message,
                          author=author)
        except _Unresolved:
            v = db.revert(version, branch=branch, message=message, author=author)
    server.notify_commit()
    return v


def restore(server: Server, version: VersionRef, branch: str, base: int | None,
            message: str | None, author: str) -> int:
    db = server.db
    with server.write_lock:
        _guard_head(db, branch, base)
        v = db.restore(version, message=message, branch=branch, author=author)
    server.notify_commit()
    return v


def retention_json(db: Database) -> RetentionJSON:
    r = db.retention
    return {"keep_last": r.keep_last,
            "keep_within_seconds": None if r.keep_within is None
            else r.keep_within.total_seconds()}


def set_retention(server: Server, keep_last: int | None,
                  keep_within_seconds: float | None) -> None:
    with server.write_lock:
        server.db.set_retention(keep_last=keep_last, keep_within=None if keep_within_seconds
                                is None else timedelta(seconds=keep_within_seconds))


def gc(server: Server) -> GcJSON:
    with server.write_lock:
        r = server.db.gc()
    return {"versions_dropped": r.versions_dropped, "pages_freed": r.pages_freed,
            "bytes_freed": r.bytes_freed, "file_bytes_before": r.file_bytes_before,
            "file_bytes_after": r.file_bytes_after}


def stats(db: Database) -> StatsJSON:
    s = db.stats()
    return {"file_bytes": s.file_bytes, "live_bytes": s.live_bytes,
            "reclaimable_bytes": s.reclaimable_bytes, "free_bytes": s.free_bytes,
            "header_bytes": s.header_bytes, "reserve_bytes": s.reserve_bytes,
            "versions": s.versions, "kept_versions": s.kept_versions,
            "pinned": {str(k): int(v) for k, v in s.pinned.items()}, "head": db.head("main"),
            "newest_version": db.version, "branches": len(db.branches()),
            "tags": len(db.tags())}


def check(db: Database) -> CheckJSON:
    r = db.check()
    return {"ok": r.ok, "errors": list(r.errors), "versions": r.versions, "pages": r.pages,
            "free_pages": r.free_pages, "page_count": r.page_count}


__all__ = ["cowdb"]
