"""The catalog: a B+tree (the same tree as the data) holding the database's own records.

    b"c" + u64be(version)                        -> Commit record (msgpack)
    b"h" + branch name (utf-8)                   -> u64be(head version)
    b"g" + tag name (utf-8)                      -> u64be(version)
    b"i" + branch + 0x00 + u64be(time_ns) + u64be(version) -> b""  (time index)
    b"o" + option name                           -> msgpack value (settings, e.g. retention)

Unlike a data tree, the catalog is not versioned: a commit replaces its
pages, and the replaced ones are freed (``Tree(frees=True)``).
"""
from struct import Struct

import msgpack

from ..errors import Corruption
from ..tree import cursor
from ..tree.btree import Tree
from .commits import Commit

_U64 = Struct(">Q")
BRANCH, TAG = b"h", b"g"


def commit_key(version: int) -> bytes:
    return b"c" + _U64.pack(version)


def _time_key(branch: str, time_ns: int, version: int) -> bytes:
    return b"i" + branch.encode() + b"\x00" + _U64.pack(time_ns) + _U64.pack(version)


class Catalog:
    __slots__ = ("tree",)

    def __init__(self, tree: Tree):
        self.tree = tree

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

    def commits(self, reverse: bool = True):
        """Every kept commit, newest first (or oldest first)."""
        for k, v in cursor.items(self.tree, b"c", b"d", reverse):
            yield Commit.decode(_U64.unpack_from(k, 1)[0], v)

    def last_version(self) -> int:
        for k, _ in cursor.items(self.tree, b"c", b"d", reverse=True):
            return _U64.unpack_from(k, 1)[0]
        return -1

    def version_at(self, branch: str, time_ns: int) -> int | None:
        """The newest version committed on ``branch`` at or before time_ns: O(log n)."""
        lo = b"i" + branch.encode() + b"\x00"
        for k, _ in cursor.items(self.tree, lo, lo + _U64.pack(time_ns + 1), reverse=True):
            return _U64.unpack_from(k, len(k) - 8)[0]
        return None

    # ---- refs: branches and tags --------------------------------------
    def refs(self, kind: bytes) -> dict[str, int]:
        return {k[1:].decode(): _U64.unpack(v)[0]
                for k, v in cursor.items(self.tree, kind, bytes([kind[0] + 1]))}

    def ref(self, kind: bytes, name: str) -> int | None:
        v = self.tree.get(kind + name.encode())
        return None if v is None else _U64.unpack(v)[0]

    def set_ref(self, kind: bytes, name: str, version: int) -> None:
        self.tree.put(kind + name.encode(), _U64.pack(version))

    def delete_ref(self, kind: bytes, name: str) -> bool:
        return self.tree.delete(kind + name.encode())

    def head(self, branch: str) -> int | None:
        return self.ref(BRANCH, branch)

    # ---- settings ------------------------------------------------------
    def option(self, name: str, default=None):
        v = self.tree.get(b"o" + name.encode())
        return default if v is None else msgpack.unpackb(v)

    def set_option(self, name: str, value) -> None:
        self.tree.put(b"o" + name.encode(), msgpack.packb(value))
