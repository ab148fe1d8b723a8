"""The version graph of a Database: log, time travel, tags, branches, restore, diff,
merge and revert (retention, gc, compact and stats are in upkeep.py).

Every method here is a thin composition of the history layer (catalog, commits)
under the db layer's writer lock and ``_update`` mechanism:
each change is one atomic txn, and a failure leaves the database as it was.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any, Self

from .checks import check_key, check_ref_name, check_text, key_range
from .engine import Engine, Resolve, VersionRef
from .errors import (
    InvalidKey,
    InvalidMerge,
    InvalidType,
    MergeConflict,
    ProtectedBranch,
    RefExists,
    RefNotFound,
    VersionReclaimed,
)
from .history.catalog import BRANCH, TAG
from .history.commits import Commit
from .pages.meta import EMPTY
from .tree import diff as diffmod
from .tree.btree import Tree
from .tree.merge import Conflict, merge3

if TYPE_CHECKING:
    from .db import _State
    from .snapshot import Snapshot
    from .tree.btree import NodeCache


class Diff:
    """The changes between two versions, iterated once in key order.

    ``pages_visited`` counts the pages the diff opened so far: O(d x depth)
    for d changes. Both versions stay pinned until the iteration ends or
    ``close()`` is called.
    """
    stats: diffmod.DiffStats
    a_version: int
    b_version: int

    def __init__(self, nodes: NodeCache, a: Snapshot, b: Snapshot, start: bytes | None,
                 stop: bytes | None, decode: Callable[[bytes], Any] | None = None) -> None:
        self.stats = diffmod.DiffStats()
        self._decode = decode
        self._snaps = (a, b)
        self._changes = diffmod.changes(nodes, a._live().ref, b._live().ref, start, stop,
                                        self.stats)
        self.a_version, self.b_version = a.version, b.version

    @property
    def pages_visited(self) -> int:
        return self.stats.pages_visited

    def __iter__(self) -> Iterator[diffmod.Change]:
        try:
            if self._decode is None:
                yield from self._changes
            else:
                dec = self._decode
                for c in self._changes:
                    yield diffmod.Change(c.key, None if c.old is None else dec(c.old),
                                         None if c.new is None else dec(c.new))
        finally:
            self.close()

    def close(self) -> None:
        for s in self._snaps:
            s.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_resolve(resolve: Resolve) -> None:
    if resolve is not None and resolve not in ("ours", "theirs") and not callable(resolve):
        raise ValueError("resolve must be None, 'ours', 'theirs' or a callable "
                         "(key, base, ours, theirs) -> bytes | None")


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise InvalidType(f"a {what} name is a str, not {type(name).__name__}")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise InvalidKey(f"{what} name {name!r} is not valid text (a lone surrogate)") from None
    if not name or "\x00" in name or len(name.encode()) > 200 or name != name.strip():
        raise InvalidKey(f"{what} name {name!r} is not valid: use 1 to 200 bytes, no NUL, "
                         f"no leading or trailing spaces")
    return name


class Versions:
    """The version graph of one Database (``db``, through the ``Engine`` interface): the work
    behind Database's methods of the same names, documented there."""

    def __init__(self, db: Engine) -> None:
        self._db = db

    # ---- reading history -----------------------------------------------
    def commit_info(self, version: VersionRef) -> Commit:
        with self._db._pinned() as st:
            return self._db._resolve(st, version)

    def log(self, limit: int | None = None, branch: str = "main") -> Iterator[Commit]:
        check_name(branch, "branch")
        with self._db._pinned() as st:
            head = self._db._branch_version(st, branch)
        return self._log(head, limit)

    def _log(self, v: int | None, limit: int | None) -> Iterator[Commit]:
        """Follow first parents from v, under a pin held for the whole iteration (the
        commits and, for history(), their trees are read as it goes)."""
        with self._db._pinned() as st:
            n = 0
            cat = self._db._catalog(st)
            while v is not None and (limit is None or n < limit):
                c = st.commits.get(v) or cat.commit(v)
                if c is None:  # older history was reclaimed
                    return
                yield c
                n += 1
                v = c.parents[0] if c.parents else None

    def history(self, key: bytes | str, limit: int | None = None,
                branch: str = "main") -> Iterator[tuple[int, datetime, Any]]:
        return self._history(check_key(key, self._db.max_key), limit, self.log(branch=branch))

    def _history(self, key: bytes, limit: int | None,
                 commits: Iterable[Commit]) -> Iterator[tuple[int, datetime, Any]]:
        prev = None
        n = 0
        for c in commits:
            value = Tree(self._db._nodes, c.root, c.count).get(key) if c.root.page else None
            if value is not None and self._db.codec is not None:
                value = self._db.codec.decode(value)
            if prev is not None and value != prev[2]:
                yield prev
                n += 1
                if limit is not None and n >= limit:
                    return
            prev = (c.version, c.time, value)
        if prev is not None and prev[2] is not None and (limit is None or n < limit):
            yield prev

    # ---- refs ------------------------------------------------------------
    def tags(self) -> dict[str, int]:
        with self._db._pinned() as st:
            return self._db._catalog(st).refs(TAG)

    def branches(self) -> dict[str, int]:
        with self._db._pinned() as st:
            return self._db._catalog(st).refs(BRANCH)

    def tag(self, name: str, version: VersionRef | None = None) -> int:
        return self._new_ref(TAG, name, version)

    def delete_tag(self, name: str) -> None:
        self._delete_ref(TAG, name)

    def branch(self, name: str, at: VersionRef | None = None) -> int:
        return self._new_ref(BRANCH, name, at)

    def delete_branch(self, name: str) -> None:
        if name == "main":
            raise ProtectedBranch("branch 'main' cannot be deleted; it is where db.write() "
                                  "and db.read() go by default")
        self._delete_ref(BRANCH, name)

    _REF_WORDS = {TAG: ("tag", "a tag", "tags"), BRANCH: ("branch", "a branch", "branches")}

    def _new_ref(self, kind: bytes, name: str, at: VersionRef | None) -> int:
        """Name a version as a tag or a branch: one namespace, so at() takes either."""
        word = self._REF_WORDS[kind][0]
        if isinstance(name, str):
            check_ref_name(name, word)
        check_name(name, word)
        with self._db._writer() as st:
            v = st.head.version if at is None else self._db._resolve(st, at).version
            cat = self._db._catalog(st)
            for other in (kind, TAG if kind == BRANCH else BRANCH):
                if cat.ref(other, name) is not None:
                    why = (" (tags never move)" if other == kind == TAG else
                           " (tags and branches share one namespace)" if other != kind else "")
                    owner = self._REF_WORDS[other][0]
                    way = ("choose another name (main cannot be deleted)"
                           if other == BRANCH and name == "main" else
                           f"delete it first with db.delete_{owner}() or choose another name")
                    raise RefExists(f"{self._REF_WORDS[other][1]} named {name!r} exists{why}; "
                                    f"{way}")
            self._db._update(lambda cat, txn: cat.set_ref(kind, name, v))
        return v

    def _delete_ref(self, kind: bytes, name: str) -> None:
        word, _, plural = self._REF_WORDS[kind]
        check_name(name, word)
        with self._db._writer() as st:
            if self._db._catalog(st).ref(kind, name) is None:  # before _update: it would publish
                raise RefNotFound(f"no {word} named {name!r}; see db.{plural}()")
            self._db._update(lambda cat, txn: cat.delete_ref(kind, name))

    # ---- restore ---------------------------------------------------------
    def restore(self, version: VersionRef, message: str | None = None, branch: str = "main",
                author: str = "") -> int:
        if message is not None:
            check_text(message, "message")
        check_text(author, "author")
        with self._db._writer() as st:
            target = self._db._resolve(st, version)
            head = self._db._branch_version(st, check_name(branch, "branch"))
            msg = f"restore version {target.version}" if message is None else message
            return self._db._update(lambda cat, txn: self._db._new_commit(
                cat, txn, branch, target.root, target.count, (head,), msg, author).version)

    # ---- diff, merge, revert ---------------------------------------------
    def diff(self, a: VersionRef, b: VersionRef, prefix: bytes | str | None = None,
             start: bytes | str | None = None, stop: bytes | str | None = None) -> Diff:
        start, stop = key_range(start, stop, prefix)
        sa = self._db.at(a)
        try:
            sb = self._db.at(b)
        except BaseException:
            sa.close()
            raise
        return Diff(self._db._nodes, sa, sb, start, stop,
                    None if self._db.codec is None else self._db.codec.decode)

    def _merge_base(self, st: _State, a: int, b: int) -> int:
        """The newest common ancestor of versions a and b in the commit graph."""
        flags = {a: 1}
        flags[b] = flags.get(b, 0) | 2
        heap, done = sorted({-a, -b}), set()  # a sorted list is a heap: newest first
        cat = self._db._catalog(st)
        while heap:
            v = -heappop(heap)
            if v in done:
                continue
            done.add(v)
            if flags[v] == 3:
                return v
            c = st.commits.get(v) or cat.commit(v)
            for p in (c.parents if c is not None else ()):
                if p not in flags:
                    heappush(heap, -p)
                flags[p] = flags.get(p, 0) | flags[v]
        raise VersionReclaimed(f"versions {a} and {b} have no common ancestor left (it was "
                               f"reclaimed by gc()); merge is not possible")

    def merge(self, source: str, into: str = "main", resolve: Resolve = None,
              message: str | None = None, author: str = "") -> int:
        check_name(source, "branch"), check_name(into, "branch")
        if message is not None:
            check_text(message, "message")
        check_text(author, "author")
        if source == into:
            raise InvalidMerge(f"cannot merge branch {source!r} into itself")
        _check_resolve(resolve)
        with self._db._writer() as st:
            src = self._db._commit_record(st, self._db._branch_version(st, source))
            dst = self._db._commit_record(st, self._db._branch_version(st, into))
            base = self._db._commit_record(st, self._merge_base(st, dst.version, src.version))
            if base.version == src.version:
                return dst.version                    # nothing new on source
            if base.version == dst.version:           # fast-forward
                self._db._update(lambda cat, txn: cat.set_ref(BRANCH, into, src.version))
                return src.version
            msg = f"merge {source} into {into}" if message is None else message
            return self._merge_commit(base, dst, src, into, resolve, msg, author,
                                      (dst.version, src.version))

    def revert(self, version: VersionRef, branch: str = "main", resolve: Resolve = None,
               message: str | None = None, author: str = "", allow_empty: bool = False) -> int:
        check_name(branch, "branch")
        _check_resolve(resolve)
        if message is not None:
            check_text(message, "message")
        check_text(author, "author")
        with self._db._writer() as st:
            c = self._db._resolve(st, version)
            if c.rewired:
                raise VersionReclaimed(f"the parent of version {c.version} is gone (reclaimed "
                                       f"by gc() or compact(), or lost to damage and skipped "
                                       f"by recovery), so its changes are no longer known; "
                                       f"restore() an older version instead")
            parent = (self._db._commit_record(st, c.parents[0]) if c.parents else
                      replace(c, root=EMPTY, count=0))  # the first version's parent: empty
            head = self._db._commit_record(st, self._db._branch_version(st, branch))
            msg = f"revert version {c.version}" if message is None else message
            return self._merge_commit(c, head, parent, branch, resolve, msg, author,
                                      (head.version,), allow_empty)

    def _merge_commit(self, base: Commit, ours: Commit, theirs: Commit, branch: str,
                      resolve: Resolve, message: str, author: str,
                      parents: tuple[int, ...], allow_empty: bool = True) -> int:
        """Apply base->theirs onto ours and commit it on branch (writer lock held)."""
        tree = Tree(self._db._nodes, ours.root, ours.count)
        codec = self._db.codec
        def dec(b: bytes | None) -> Any:
            return None if b is None else codec.decode(b)

        if codec is not None and callable(resolve):  # the callable sees and returns values
            user = resolve

            def resolve(key: bytes, base: bytes | None, ours: bytes | None,
                        theirs: bytes | None) -> bytes | None:
                v = user(key, dec(base), dec(ours), dec(theirs))
                return None if v is None else bytes(codec.encode(v))
        conflicts, puts, deletes = merge3(self._db._nodes, base.root, tree, theirs.root, resolve)
        if conflicts and codec is not None:
            conflicts = [Conflict(c.key, dec(c.base), dec(c.ours), dec(c.theirs))
                         for c in conflicts]
        if conflicts:
            raise MergeConflict(f"{len(conflicts)} keys changed differently on both sides, "
                                f"e.g. {conflicts[0].key!r}; nothing was committed: pass "
                                f"resolve='ours', 'theirs' or a function", conflicts)

        if not allow_empty and not tree.dirty:
            return ours.version
        v = self._db._commit_tree(tree, ours, branch, parents, message, author, puts, deletes,
                              allow_empty)
        return ours.version if v is None else v
