"""What the command line asks of the engine, in one place (all through the public API)."""
from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

import cowdb

from . import fmt

if TYPE_CHECKING:
    from cowdb.db import Database
    from cowdb.engine import VersionRef
    from cowdb.history.commits import Commit
    from cowdb.snapshot import Snapshot

Change = tuple[bytes, bytes | None, bytes | None]   # (key, old, new): None is absent


@contextmanager
def about(path: str) -> Iterator[None]:
    """Names ``path`` in a NotACowdbFile raised inside, which the engine words as "this
    file is not a cowdb database": the command line says which file."""
    from ..errors import NotACowdbFile
    try:
        yield
    except NotACowdbFile as e:
        msg = str(e)
        if msg.startswith(path):
            raise
        if msg.startswith("this file "):
            msg = f"{path} {msg.removeprefix('this file ')}"
        else:
            msg = f"{path}: {msg}"
        raise type(e)(msg) from e


def no_database(path: str) -> click.ClickException:
    """There is no database at ``path``: the error, with the command that makes one (the
    path shell-quoted, so the command runs as shown)."""
    return click.ClickException(f"no database at {path}; create one with `cowdb --db "
                                f"{shlex.quote(path)} init`, or choose another with --db or "
                                f"COWDB_PATH")


def _open(path: str, **kw: Any) -> Database:
    with about(path):
        return cowdb.open(path, **kw)


def open_db(path: str, *, write: bool = False, create: bool = False,
            timeout: float | None = None) -> Database:
    """Open the database at path, refusing to create one unless ``create``. A URL
    (s3://, gs://, az://, file://, memory://) opens it on an object store (a write
    there creates it)."""
    from ..errors import DatabaseNotFound
    kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if is_url(path):
        # memory:// lives only as long as this process: it can only be created here
        if not write and not create and not path.lower().startswith("memory://"):
            try:
                return _open(path, readonly=True)
            except DatabaseNotFound as e:
                if type(e) is not DatabaseNotFound:
                    raise          # StoreNotFound: no bucket, said by the engine
                raise no_database(path) from None
        return _open(path, **kw)
    if not os.path.exists(path):
        if not create:
            raise no_database(path)
        if not write:
            cowdb.open(path).close()
    return _open(path, readonly=not write, **kw)


def at(db: Database, spec: str | None) -> Snapshot:
    """A snapshot: the head of main (None) or what ``spec`` names (version, tag, branch, time)."""
    if spec is None:
        return db.read()
    return db.at(fmt.ref(spec))


def commit(db: Database, version: VersionRef) -> Commit:
    """The commit record of a version (or of what a tag, branch or datetime names)."""
    return db.commit_info(version)


def log(db: Database, limit: int | None = None, branch: str = "main") -> Iterator[Commit]:
    """Commits from the head of ``branch`` back along first parents, newest first."""
    return db.log(limit=limit, branch=branch)


def log_all(db: Database, limit: int | None = None) -> Iterator[Commit]:
    """The commits reachable from every branch head, newest first."""
    import heapq
    from itertools import islice
    streams = [db.log(branch=b) for b in sorted(db.branches())]
    seen: set[int] = set()

    def unique() -> Iterator[Commit]:
        for c in heapq.merge(*streams, key=lambda c: -c.version):
            if c.version not in seen:
                seen.add(c.version)
                yield c
    return islice(unique(), limit)


def tags(db: Database) -> dict[str, int]:
    return dict(db.tags())


def branches(db: Database) -> dict[str, int]:
    return dict(db.branches())


def is_url(path: str) -> bool:
    """An object-store URL (s3://, gs://, az://, file://, memory://), not a file path."""
    from ..objdb import is_url as url
    return url(path)


def exists(path: str) -> bool:
    """A database is at path (a file, or a URL whose store holds one)."""
    if not is_url(path):
        return os.path.exists(path)
    from ..errors import DatabaseNotFound
    try:
        cowdb.open(path, readonly=True).close()
    except DatabaseNotFound as e:
        if type(e) is not DatabaseNotFound:
            raise
        return False
    return True


def store_bytes(db: Database, path: str) -> int:
    """The size of the file, or of the pages of a database at a URL."""
    return db.stats().file_bytes if is_url(path) else os.path.getsize(path)


@contextmanager
def diff(db: Database, a: VersionRef, b: VersionRef,
         prefix: bytes | None = None) -> Iterator[Iterator[Change]]:
    """Yields an iterator of (key, old, new) for every key whose value differs from a to b
    (old/new None: absent), and closes the engine's Diff (which pins both versions)."""
    d = db.diff(a, b, prefix=prefix)
    try:
        yield ((ch.key, ch.old, ch.new) for ch in d)
    finally:
        d.close()
