"""What the command line asks of the engine, in one place.

Each helper uses the public ``Database`` API. Where a newer API has not
landed yet in the engine this CLI runs against, the helper says so with a
clear error (``Unsupported``) rather than failing with an AttributeError.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
import click

import cowdb
from . import fmt


class Unsupported(click.ClickException):
    """The engine in use has no API for this yet."""

    def __init__(self, what: str):
        super().__init__(f"{what} is not supported by this version of cowdb's engine")


def has(db, name: str) -> bool:
    return callable(getattr(db, name, None))


def need(db, name: str, what: str):
    f = getattr(db, name, None)
    if not callable(f):
        raise Unsupported(what)
    return f


def open_db(path: str, *, write: bool = False, create: bool = False,
            timeout: float | None = None):
    """Open the database at path, refusing to create one unless ``create``."""
    if not os.path.exists(path):
        if not create:
            raise click.ClickException(
                f"no database at {path}; create one with `cowdb --db {path} init`, or choose "
                f"another with --db or COWDB_PATH")
        if not write:
            cowdb.open(path).close()
    kw = {} if timeout is None else {"timeout": timeout}
    return cowdb.open(path, readonly=not write, **kw)


def at(db, spec: str | None):
    """A snapshot: the head of main (None) or what ``spec`` names (version, tag, branch, time)."""
    if spec is None:
        return db.read()
    return db.at(fmt.ref(spec))


def version_of(db, spec: str) -> int:
    """The version number that a VERSION|TAG|BRANCH|TIME spec names."""
    return db.commit_info(fmt.ref(spec)).version


def commit(db, version):
    """The commit record of a version (or of what a tag, branch or datetime names)."""
    return db.commit_info(version)


def log(db, limit: int | None = None, branch: str = "main"):
    """Commits from the head of ``branch`` back along first parents, newest first."""
    return db.log(limit=limit, branch=branch)


def tags(db) -> dict[str, int]:
    return dict(db.tags())


def branches(db) -> dict[str, int]:
    return dict(db.branches())


@contextmanager
def diff(db, a, b, prefix: bytes | None = None):
    """Yields an iterator of (key, old, new) for every key whose value differs from a to b.

    old/new is None where the key is absent. Uses the engine's diff, which
    skips the subtrees both versions share, when it has one; otherwise walks
    both versions in key order.
    """
    f = getattr(db, "diff", None)
    if callable(f):
        d = f(a, b, prefix=prefix)
        try:
            yield (tuple(ch) for ch in d)
        finally:
            close = getattr(d, "close", None)
            if close is not None:
                close()
        return
    with db.at(a) as sa, db.at(b) as sb:
        yield _merge_walk(sa.items(prefix=prefix), sb.items(prefix=prefix))


_END = object()


def _merge_walk(left, right):
    left, right = iter(left), iter(right)
    lk, lv = next(left, (_END, None))
    rk, rv = next(right, (_END, None))
    while lk is not _END or rk is not _END:
        if rk is _END or (lk is not _END and lk < rk):
            yield lk, lv, None
            lk, lv = next(left, (_END, None))
        elif lk is _END or rk < lk:
            yield rk, None, rv
            rk, rv = next(right, (_END, None))
        else:
            if lv != rv:
                yield lk, lv, rv
            lk, lv = next(left, (_END, None))
            rk, rv = next(right, (_END, None))
