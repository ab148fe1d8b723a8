"""The catalog: a B+tree (the same tree as the data) holding the database's own records.

    b"c" + u64be(version)                        -> Commit record (msgpack)
    b"h" + branch name (utf-8)                   -> u64be(head version)
    b"g" + tag name (utf-8)                      -> u64be(version)
    b"i" + branch + 0x00 + u64be(time_ns) + u64be(version) -> b""  (time index)
    b"o" + option name                           -> msgpack value (settings, e.g. retention)

Unlike a data tree, the catalog is not versioned: a commit replaces its
pages, and the replaced ones are freed (``Tree(frees=True)``).

Ref changes (branch, tag, their deletion, a fast-forward) and new commit records
are *pending* first: ``set_ref``, ``delete_ref`` and ``add_commit`` record them in a
dict that every lookup here reads over the tree. A txn that writes the tree anyway
(gc, a setting) folds them in; any other txn publishes them in its meta record
instead (``settle``), so naming a version writes one small record and no page, and
a commit writes no catalog page: the copy-on-write of the catalog's commit leaf,
its time-index leaf and their path is deferred until the record runs out of room
(``PageStore.pending_room``), and then done once for every commit pending.

    pending = a log of msgpack arrays, applied in order (a change appends one: O(1),
              whatever is pending already; a log that outgrows the room is written
              again with each key once before it folds):
              [b"h"/b"g" + name (bin), u64be(version) (bin) or nil (deleted)]   a ref
              [b"c" + u64be(version) (bin), commit record (bin)]              a new commit

A pending commit's time-index entry is derived from its record when it folds; the
readers that iterate (``commits``, ``last_version``, ``version_at``) merge the
pending records with the tree's. Every pending commit is newer than every commit
in the tree: versions only grow, and everything folds at once. A txn that drops or
rewrites commit records (gc, relocation) folds first (``fold``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from heapq import merge
from operator import itemgetter
from struct import Struct
from typing import Any, TypeVar

import msgpack

from ..errors import Corruption
from ..pages.meta import RootRef
from ..tree import cursor
from ..tree.btree import MapRoot, NodeCache, Tree
from ..tree.copy import copy_tree
from ..tree.node import Node
from .commits import Commit, CommitRoot, branch_and_time

_U64 = Struct(">Q")
BRANCH, TAG, COMMIT = b"h", b"g", b"c"
MAIN_HEAD = BRANCH + b"main"  # the catalog key of main's head
_Decoded = TypeVar("_Decoded", Commit, CommitRoot, tuple[str, int])


def commit_key(version: int) -> bytes:
    return COMMIT + _U64.pack(version)


def _time_key(branch: str, time_ns: int, version: int) -> bytes:
    return b"i" + branch.encode() + b"\x00" + _U64.pack(time_ns) + _U64.pack(version)


def _pending_change(k: object, v: object) -> bool:
    """Whether (k, v) has the shape of a pending change: a ref and its version (or None),
    or a commit key and a record."""
    if type(k) is not bytes or len(k) < 2:
        return False
    if k[:1] in (BRANCH, TAG):
        return v is None or type(v) is bytes and len(v) == 8
    return k[:1] == COMMIT and len(k) == 9 and type(v) is bytes and len(v) > 0


def decode_pending(log: bytes) -> dict[bytes, bytes | None]:
    """The pending changes a meta record carries, replayed from its log (checked: it is
    input from disk)."""
    pending: dict[bytes, bytes | None] = {}
    if not log:
        return pending
    try:
        unpacker = msgpack.Unpacker()
        unpacker.feed(log)
        while True:
            k, v = unpacker.unpack()
            if not _pending_change(k, v):
                break
            pending[k] = v
            if unpacker.tell() == len(log):  # read whole (a cut-off change raises OutOfData)
                return pending
    except Exception:
        pass
    raise Corruption("the pending catalog changes in the meta record do not decode")


def encode_pending(pending: dict[bytes, bytes | None]) -> bytes:
    """The log of a pending dict, each key once (what ``decode_pending`` reads back)."""
    return b"".join(msgpack.packb([k, v]) for k, v in pending.items())


class Catalog:
    """The catalog tree with the pending ref changes over it: ``pending`` (key -> value,
    None = deleted) and ``log``, the same changes as the meta record carries them. A
    writer passes a copy of the dict, which it changes; a reader, the state's."""
    __slots__ = ("_tree", "_root", "pending", "log", "_mapped")
    _tree: Tree | None
    _root: tuple[NodeCache, RootRef] | None  # a tree to make at first use (see writing())
    pending: dict[bytes, bytes | None]
    log: bytes
    _mapped: Any  # btree.MapRoot of the tree's root, for a reader's lookups (see reader())

    def __init__(self, tree: Tree | None, pending: dict[bytes, bytes | None] | None = None,
                 log: bytes = b"") -> None:
        self._tree = tree
        self._root = None
        self.pending = {} if pending is None else pending
        self.log = log
        self._mapped = None

    @classmethod
    def reader(cls, tree: Tree, pending: dict[bytes, bytes | None], log: bytes) -> Catalog:
        """A catalog that is only read (a published state's): on a mapped file its commit
        records are looked up by one C call on the root bound once (btree.MapRoot), not
        through ``Tree.get``."""
        cat = cls(tree, pending, log)
        pm, ref = tree.store.pagemap, tree.ref
        if pm is not None and MapRoot is not None and ref.page:
            cat._mapped = MapRoot(pm, ref.page, ref.checksum, ref.txn, tree.page_size, None)
        return cat

    @classmethod
    def writing(cls, nodes: NodeCache, root: RootRef, pending: dict[bytes, bytes | None],
                log: bytes) -> Catalog:
        """The catalog a txn changes, on the tree at ``root`` (a tree that frees what it
        replaces), made at its first use: most commits only add to the pending record
        and never read or write the tree (making it was 1.3% of a commit's instructions)."""
        cat = cls(None, pending, log)
        cat._root = (nodes, root)
        return cat

    @property
    def tree(self) -> Tree:
        tree = self._tree
        if tree is None:
            assert self._root is not None  # (a catalog is given its tree, or made by writing())
            nodes, root = self._root
            tree = self._tree = Tree(nodes, root, frees=True)
        return tree

    @property
    def dirty(self) -> bool:
        """Whether the tree has changes to write."""
        return self._tree is not None and self._tree.dirty

    def write(self, txn: int) -> RootRef:
        """The tree's root as of ``txn``: its changes written, if it has any."""
        if self._tree is None:
            assert self._root is not None
            return self._root[1]
        return self._tree.write(txn)

    @property
    def superseded(self) -> list[tuple[Node, int, int, int]]:
        """The clean nodes the last write() replaced (Tree.superseded)."""
        return [] if self._tree is None else self._tree.superseded

    def _change(self, key: bytes, value: bytes | None) -> None:
        self.pending[key] = value
        self.log += msgpack.packb([key, value])

    def settle(self, room: int) -> bytes:
        """What the meta record of this txn carries: the pending log, if the tree is not
        being written anyway and the log fits in ``room`` (written again with each key
        once, if that makes it fit); else fold the changes into the tree and carry
        nothing."""
        if self.pending and not self.dirty:
            if len(self.log) > room:
                self.log = encode_pending(self.pending)
            if len(self.log) <= room:
                return self.log
        self.fold()
        return b""

    def fold(self) -> None:
        """Write every pending change into the tree (a commit with its time-index entry)."""
        tree = self.tree
        puts: list[tuple[bytes, bytes]] = []
        for k, v in self.pending.items():
            if v is None:
                tree.delete(k)
                continue
            puts.append((k, v))
            if k[:1] == COMMIT:
                version = _U64.unpack_from(k, 1)[0]
                branch, time_ns = self._decode(version, v, branch_and_time)
                puts.append((_time_key(branch, time_ns, version), b""))
        # in key order: the new commits and their index entries append to the last leaf
        # of each range, which a sorted put fills before it splits (a put splits in half)
        puts.sort()
        tree.put_sorted(puts)
        self.pending.clear()
        self.log = b""

    # ---- commits -------------------------------------------------------
    @staticmethod
    def _decode(version: int, data: bytes,
                decode: Callable[[int, bytes], _Decoded]) -> _Decoded:
        try:
            return decode(version, data)
        except Exception as e:
            raise Corruption(f"the commit record of version {version} does not decode: {e}") from e

    def _record(self, version: int) -> bytes | None:
        key = commit_key(version)
        pending = self.pending
        if key in pending:
            return pending[key]
        if self._mapped is not None:
            v: bytes | None = self._mapped(key)
            if v is not NotImplemented:  # (else: an overflow value, which Python reads)
                return v
        return self.tree.get(key)

    def commit(self, version: int) -> Commit | None:
        data = self._record(version)
        return None if data is None else self._decode(version, data, Commit.decode)

    def root(self, version: int) -> CommitRoot | None:
        """What a snapshot of a version needs (see CommitRoot), or None: the record is read
        only as far as that."""
        data = self._record(version)
        return None if data is None else self._decode(version, data, CommitRoot.decode)

    def add_commit(self, c: Commit) -> None:
        """Record a new version (newer than every other): pending until the next fold."""
        self._change(commit_key(c.version), c.encode())

    def put_commit(self, c: Commit) -> None:
        """Write a commit record into the tree (a copy, or one gc rewired)."""
        self.fold()
        self.tree.put(commit_key(c.version), c.encode())
        self.tree.put(_time_key(c.branch, c.time_ns, c.version), b"")

    def drop_commit(self, c: Commit) -> None:
        self.fold()
        self.tree.delete(commit_key(c.version))
        self.tree.delete(_time_key(c.branch, c.time_ns, c.version))

    def _pending_commits(self) -> list[tuple[int, bytes]]:
        """(version, record) of every pending commit, oldest first."""
        return sorted((_U64.unpack_from(k, 1)[0], v) for k, v in self.pending.items()
                      if k[:1] == COMMIT and v is not None)

    def commits(self, reverse: bool = True) -> Iterator[Commit]:
        """Every kept commit, newest first (or oldest first)."""
        records = ((_U64.unpack_from(k, 1)[0], v)
                   for k, v in cursor.items(self.tree, b"c", b"d", reverse))
        pending = self._pending_commits()
        if pending:
            records = merge(records, reversed(pending) if reverse else pending,
                            key=itemgetter(0), reverse=reverse)
        for v, data in records:
            yield self._decode(v, data, Commit.decode)

    def last_version(self) -> int:
        """The newest version kept. (A pending commit is newer than every one in the tree,
        but this does not trust a file to say so: a new version must never reuse a
        number.)"""
        last = max((_U64.unpack_from(k, 1)[0] for k in self.pending if k[:1] == COMMIT),
                   default=-1)
        for k, _ in cursor.items(self.tree, b"c", b"d", reverse=True):
            newest: int = _U64.unpack_from(k, 1)[0]
            return max(last, newest)
        return last

    def version_at(self, branch: str, time_ns: int, head: int | None = None) -> int | None:
        """The version of ``branch``'s first-parent history with the latest commit time at
        or before time_ns (of equal times, the newest), or None; versions gc dropped are
        skipped. O(log n) from the branch's time index (and the pending commits), plus a
        walk over the versions a fast-forward brought to the branch (they are indexed
        under the branch they were committed on): between the branch's own commits
        around time_ns, or above its newest own commit up to ``head``."""
        if time_ns < 0:
            return None
        lo = b"i" + branch.encode() + b"\x00"
        hi = lo + _U64.pack(min(time_ns + 1, (1 << 64) - 1))
        # the branch's own pending commits around hi: (index key, version, first parent)
        found = after = None
        for k, data in self.pending.items():
            if k[:1] != COMMIT or data is None:  # None: a deleted ref (never a commit)
                continue
            try:  # only the fields needed (Commit.decode builds the whole record: 6x slower)
                rec = msgpack.unpackb(data)
                if rec[6] != branch:
                    continue
                own = (lo + _U64.pack(rec[0]) + k[1:], _U64.unpack_from(k, 1)[0],
                       rec[3][0] if rec[3] else None)
            except Exception as e:
                raise Corruption(f"the commit record of version {k[1:].hex()} does not "
                                 f"decode: {e}") from e
            if own[0] < hi:
                if found is None or own > found:
                    found = own
            elif after is None or own < after:
                after = own
        for k, _ in cursor.items(self.tree, lo, hi, reverse=True):
            if found is not None and k < found[0]:
                break
            v = _U64.unpack_from(k, len(k) - 8)[0]
            if self.tree.get(commit_key(v)) is not None:  # else gc dropped it
                found = (k, v, None)
                break
        for k, _ in cursor.items(self.tree, hi, lo[:-1] + b"\x01"):
            if after is not None and k > after[0]:
                break
            v = _U64.unpack_from(k, len(k) - 8)[0]
            c = self.commit(v)
            if c is not None:
                after = (k, v, c.parents[0] if c.parents else None)
                break
        nxt = head if after is None else after[2]
        found = None if found is None else found[1]
        while nxt is not None and nxt != found and (found is None or nxt > found):
            c = self.commit(nxt)
            if c is None:
                break
            if c.time_ns <= time_ns and c.branch != branch:  # its own are in the index
                return nxt
            nxt = c.parents[0] if c.parents else None
        return found

    # ---- refs: branches and tags --------------------------------------
    def refs(self, kind: bytes) -> dict[str, int]:
        """Name -> version of every ref of a kind, in name order."""
        found: dict[bytes, bytes | None] = dict(cursor.items(self.tree, kind,
                                                             bytes([kind[0] + 1])))
        if self.pending:
            found.update((k, v) for k, v in self.pending.items() if k[:1] == kind)
            found = {k: found[k] for k in sorted(found) if found[k] is not None}
        return {k[1:].decode(): _U64.unpack(v)[0]  # type: ignore[arg-type]  # (None: dropped)
                for k, v in found.items()}

    def ref(self, kind: bytes, name: str) -> int | None:
        key = kind + name.encode()
        pending = self.pending
        v = pending[key] if key in pending else self.tree.get(key)
        return None if v is None else _U64.unpack(v)[0]

    def set_ref(self, kind: bytes, name: str, version: int) -> None:
        self._change(kind + name.encode(), _U64.pack(version))

    def delete_ref(self, kind: bytes, name: str) -> bool:
        existed = self.ref(kind, name) is not None
        self._change(kind + name.encode(), None)
        return existed

    def head(self, branch: str) -> int | None:
        return self.ref(BRANCH, branch)

    # ---- settings ------------------------------------------------------
    def option(self, name: str, default: Any = None) -> Any:
        v = self.tree.get(b"o" + name.encode())
        return default if v is None else msgpack.unpackb(v)

    def set_option(self, name: str, value: Any) -> None:
        self.tree.put(b"o" + name.encode(), msgpack.packb(value))

    def options(self) -> dict[bytes, bytes]:
        """Every setting as stored: name -> its msgpack bytes."""
        return {bytes(k[1:]): bytes(v) for k, v in cursor.items(self.tree, b"o", b"p")}

    # ---- copies ----------------------------------------------------------
    def fill(self, commits: list[Commit], nodes: NodeCache, dst_nodes: NodeCache, txn: int,
             refs: dict[bytes, dict[str, int]], options: dict[bytes, bytes]) -> None:
        """Make this catalog, a new file's, hold copies of ``commits`` (oldest first; none:
        its empty version 0 stays), the ``refs`` (kind -> name -> version) and the
        ``options`` (as ``options()`` gives them): what compact(), backup() and salvage
        write. Each tree is read through ``nodes`` and written into ``dst_nodes``' store
        by ``txn``, with one memo, so a page versions share is copied once (tree/copy.py)."""
        if commits:
            for c in list(self.commits()):
                self.drop_commit(c)
        memo: dict[int, RootRef] = {}  # old page -> its new reference
        for c in commits:
            self.put_commit(replace(c, root=copy_tree(nodes, dst_nodes, c.root, memo, txn),
                                    txn=txn))
        self.set_refs_and_options(refs, options)

    def set_refs_and_options(self, refs: dict[bytes, dict[str, int]],
                             options: dict[bytes, bytes]) -> None:
        """Set every ref (kind -> name -> version) and setting (as ``options()`` gives
        them): the end of a copy's catalog (``fill``) or a recovered one."""
        for kind, names in refs.items():
            for name, v in names.items():
                self.set_ref(kind, name, v)
        for setting, value in options.items():
            self.tree.put(b"o" + setting, value)
