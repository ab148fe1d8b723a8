"""The catalog: a B+tree (the same tree as the data) holding the database's own records.

    b"c" + u64be(version)                        -> Commit record (msgpack)
    b"h" + branch name (utf-8)                   -> u64be(head version)
    b"g" + tag name (utf-8)                      -> u64be(version)
    b"i" + branch + 0x00 + u64be(time_ns) + u64be(version) -> b""  (time index)
    b"o" + option name                           -> msgpack value (settings, e.g. retention)

Unlike a data tree, the catalog is not versioned: a commit replaces its
pages, and the replaced ones are freed (``Tree(frees=True)``).

Ref changes (branch, tag, their deletion, a fast-forward) are *pending*
first: ``set_ref`` and ``delete_ref`` record them in a dict that every
lookup here reads over the tree. A txn that writes the tree anyway (a
commit, gc, a setting) folds them in; a txn that only moves refs publishes
them in its meta record instead (``settle``), so naming a version writes one
small record and no page: the copy-on-write of a catalog leaf and its path
is deferred to the next txn that copies them anyway. They are bounded by
the room in the meta slot (``PageStore.pending_room``); past it they fold.

    pending = a log of msgpack arrays [catalog key (bin), u64be(version) (bin) or nil
              (deleted)], applied in order: a change appends one (O(1), whatever
              is pending already)
"""
from __future__ import annotations

from collections.abc import Iterator
from struct import Struct
from typing import Any

import msgpack

from ..errors import Corruption
from ..tree import cursor
from ..tree.btree import Tree
from .commits import Commit

_U64 = Struct(">Q")
BRANCH, TAG = b"h", b"g"
MAIN_HEAD = BRANCH + b"main"  # the catalog key of main's head


def commit_key(version: int) -> bytes:
    return b"c" + _U64.pack(version)


def _time_key(branch: str, time_ns: int, version: int) -> bytes:
    return b"i" + branch.encode() + b"\x00" + _U64.pack(time_ns) + _U64.pack(version)


def decode_pending(log: bytes) -> dict[bytes, bytes | None]:
    """The pending ref changes a meta record carries, replayed from its log (checked: it
    is input from disk)."""
    pending: dict[bytes, bytes | None] = {}
    if not log:
        return pending
    try:
        unpacker = msgpack.Unpacker()
        unpacker.feed(log)
        while True:
            k, v = unpacker.unpack()
            if not (type(k) is bytes and k[:1] in (BRANCH, TAG) and len(k) > 1 and
                    (v is None or type(v) is bytes and len(v) == 8)):
                break
            pending[k] = v
            if unpacker.tell() == len(log):  # read whole (a cut-off change raises OutOfData)
                return pending
    except Exception:
        pass
    raise Corruption("the ref changes in the meta record do not decode")


class Catalog:
    """The catalog tree with the pending ref changes over it: ``pending`` (key -> value,
    None = deleted) and ``log``, the same changes as the meta record carries them. A
    writer passes a copy of the dict, which it changes; a reader, the state's."""
    __slots__ = ("tree", "pending", "log")
    tree: Tree
    pending: dict[bytes, bytes | None]
    log: bytes

    def __init__(self, tree: Tree, pending: dict[bytes, bytes | None] | None = None,
                 log: bytes = b"") -> None:
        self.tree = tree
        self.pending = {} if pending is None else pending
        self.log = log

    def _change_ref(self, key: bytes, value: bytes | None) -> None:
        self.pending[key] = value
        self.log += msgpack.packb([key, value])

    def settle(self, room: int) -> bytes:
        """What the meta record of this txn carries: the pending log, if the tree is not
        being written anyway and the log fits in ``room``; else fold the changes into
        the tree and carry nothing."""
        pending = self.pending
        if pending and not self.tree.dirty and len(self.log) <= room:
            return self.log
        for k, v in pending.items():
            if v is None:
                self.tree.delete(k)
            else:
                self.tree.put(k, v)
        pending.clear()
        self.log = b""
        return b""

    # ---- commits -------------------------------------------------------
    def commit(self, version: int) -> Commit | None:
        data = self.tree.get(commit_key(version))
        if data is None:
            return None
        try:
            return Commit.decode(version, data)
        except Exception as e:
            raise Corruption(f"the commit record of version {version} does not decode: {e}") from e

    def put_commit(self, c: Commit) -> None:
        self.tree.put(commit_key(c.version), c.encode())
        self.tree.put(_time_key(c.branch, c.time_ns, c.version), b"")

    def drop_commit(self, c: Commit) -> None:
        self.tree.delete(commit_key(c.version))
        self.tree.delete(_time_key(c.branch, c.time_ns, c.version))

    def commits(self, reverse: bool = True) -> Iterator[Commit]:
        """Every kept commit, newest first (or oldest first)."""
        for k, v in cursor.items(self.tree, b"c", b"d", reverse):
            yield Commit.decode(_U64.unpack_from(k, 1)[0], v)

    def last_version(self) -> int:
        for k, _ in cursor.items(self.tree, b"c", b"d", reverse=True):
            v: int = _U64.unpack_from(k, 1)[0]
            return v
        return -1

    def version_at(self, branch: str, time_ns: int, head: int | None = None) -> int | None:
        """The version of ``branch``'s first-parent history with the latest commit time at
        or before time_ns (of equal times, the newest), or None; versions gc dropped are
        skipped. O(log n) from the branch's time index, plus a walk over the versions a
        fast-forward brought to the branch (they are indexed under the branch they were
        committed on): between the branch's own commits around time_ns, or above its
        newest own commit up to ``head``."""
        if time_ns < 0:
            return None
        lo = b"i" + branch.encode() + b"\x00"
        hi = lo + _U64.pack(min(time_ns + 1, (1 << 64) - 1))
        found = nxt = None
        for k, _ in cursor.items(self.tree, lo, hi, reverse=True):
            v = _U64.unpack_from(k, len(k) - 8)[0]
            if self.tree.get(commit_key(v)) is not None:  # else gc dropped it
                found = v
                break
        for k, _ in cursor.items(self.tree, hi, lo[:-1] + b"\x01"):
            v = _U64.unpack_from(k, len(k) - 8)[0]
            c = self.commit(v)
            if c is not None:
                nxt = c.parents[0] if c.parents else None
                break
        else:
            nxt = head
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
        self._change_ref(kind + name.encode(), _U64.pack(version))

    def delete_ref(self, kind: bytes, name: str) -> bool:
        existed = self.ref(kind, name) is not None
        self._change_ref(kind + name.encode(), None)
        return existed

    def head(self, branch: str) -> int | None:
        return self.ref(BRANCH, branch)

    # ---- settings ------------------------------------------------------
    def option(self, name: str, default: Any = None) -> Any:
        v = self.tree.get(b"o" + name.encode())
        return default if v is None else msgpack.unpackb(v)

    def set_option(self, name: str, value: Any) -> None:
        self.tree.put(b"o" + name.encode(), msgpack.packb(value))
