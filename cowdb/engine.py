"""Engine: what the history operations need from the database that owns the file.

``Database`` (db.py) owns the file, the published state and the commit protocol;
the operations on versions (versions.py: log, refs, restore, diff, merge, revert)
and on space (upkeep.py: retention, gc, compact, backup, stats) are components
that a ``Database`` holds and delegates to. This Protocol is the whole of what
those components use of it: nothing else of ``Database`` is reached from them,
so a reader (and a type checker) can follow every call. ``Database`` and its
subclass ``ObjectDatabase`` (objdb.py) are the implementations; the object store
overrides ``_update`` and ``_reuse_bound``, and the components see its versions.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypeVar

if TYPE_CHECKING:
    from .db import _State
    from .history.catalog import Catalog
    from .history.commits import Commit, CommitStats
    from .locks import Shared
    from .pages.freelist import FreeList
    from .pages.io import BlockIO
    from .pages.meta import RootRef
    from .pages.store import PageStore
    from .snapshot import Snapshot
    from .tree.btree import NodeCache, Tree

T = TypeVar("T")

# What names a version (``db.at()``, ``commit_info()``, ``restore()``...): its number, a tag
# or branch name, or an aware datetime (the newest version of main at or before it).
VersionRef: TypeAlias = int | str | datetime
# How merge() and revert() settle a conflict: not at all (None: MergeConflict), one side, or
# a function (key, base, ours, theirs) -> the value to keep, or None to delete the key.
Resolve: TypeAlias = Literal["ours", "theirs"] | Callable[[bytes, Any, Any, Any], Any] | None
# A path of a new file.
StrPath: TypeAlias = str | os.PathLike[str]


class Engine(Protocol):
    """The database as the history operations see it (all under ``_pinned`` or
    ``_writer``; every change goes through ``_update``, one atomic txn)."""

    codec: Any              # the value codec, or None for bytes
    max_key: int            # the longest key, in bytes
    _closed: bool
    _store: PageStore       # pages: allocation, free list, publishing meta records
    _nodes: NodeCache       # decoded nodes by page reference
    _io: BlockIO            # the file (its size, truncation)
    _shared: Shared         # the lock file: writer lock, reader pins

    @property
    def _state(self) -> _State: ...

    # ---- reading a pinned state
    def _check_open(self) -> None: ...

    def _pinned(self) -> AbstractContextManager[_State]: ...

    def _catalog(self, st: _State) -> Catalog: ...

    def _commit_record(self, st: _State, version: int) -> Commit: ...

    def _branch_version(self, st: _State, branch: str) -> int: ...

    def _resolve(self, st: _State, ref: Any) -> Commit: ...

    def _freelist_of(self, st: _State) -> FreeList: ...

    def at(self, ref: Any) -> Snapshot: ...

    # ---- writing under the writer lock
    def _writer(self, timeout: float | None = None) -> AbstractContextManager[_State]: ...

    def _update(self, change: Callable[[Catalog, int], T], durable: bool | None = None,
                forget: bool = False) -> T: ...

    def _reuse_bound(self) -> int: ...

    def _new_commit(self, cat: Catalog, txn: int, branch: str, root: RootRef, count: int,
                    parents: tuple[int, ...], message: str, author: str,
                    stats: CommitStats = ...) -> Commit: ...

    def _commit_tree(self, tree: Tree, head: Commit, branch: str, parents: tuple[int, ...],
                     message: str, author: str, puts: int, deletes: int, allow_empty: bool,
                     durable: bool | None = None) -> int | None: ...
