"""What the command line asks of the engine, in one place (all through the public API)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

import click

import cowdb

from . import fmt


def open_db(path: str, *, write: bool = False, create: bool = False,
            timeout: float | None = None):
    """Open the database at path, refusing to create one unless ``create``. A URL
    (s3://, gs://, az://, file://, memory://) opens it on an object store."""
    from ..objdb import is_url
    kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if is_url(path):
        if not write and not create:
            return cowdb.open(path, readonly=True)
        return cowdb.open(path, **kw)
    if not os.path.exists(path):
        if not create:
            raise click.ClickException(
                f"no database at {path}; create one with `cowdb --db {path} init`, or choose "
                f"another with --db or COWDB_PATH")
        if not write:
            cowdb.open(path).close()
    return cowdb.open(path, readonly=not write, **kw)


def at(db, spec: str | None):
    """A snapshot: the head of main (None) or what ``spec`` names (version, tag, branch, time)."""
    if spec is None:
        return db.read()
    return db.at(fmt.ref(spec))


def commit(db, version):
    """The commit record of a version (or of what a tag, branch or datetime names)."""
    return db.commit_info(version)


def log(db, limit: int | None = None, branch: str = "main"):
    """Commits from the head of ``branch`` back along first parents, newest first."""
    return db.log(limit=limit, branch=branch)


def log_all(db, limit: int | None = None):
    """The commits reachable from every branch head, newest first."""
    import heapq
    from itertools import islice
    streams = [db.log(branch=b) for b in sorted(db.branches())]
    seen: set[int] = set()

    def unique():
        for c in heapq.merge(*streams, key=lambda c: -c.version):
            if c.version not in seen:
                seen.add(c.version)
                yield c
    return islice(unique(), limit)


def tags(db) -> dict[str, int]:
    return dict(db.tags())


def branches(db) -> dict[str, int]:
    return dict(db.branches())


@contextmanager
def diff(db, a, b, prefix: bytes | None = None):
    """Yields an iterator of (key, old, new) for every key whose value differs from a to b
    (old/new None: absent), and closes the engine's Diff (which pins both versions)."""
    d = db.diff(a, b, prefix=prefix)
    try:
        yield (tuple(ch) for ch in d)
    finally:
        d.close()
