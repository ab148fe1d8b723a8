"""The catalog: a B+tree (the same tree as the data) holding the database's own records.

    b"c" + u64be(version)            -> Commit record (msgpack)
    b"h" + branch name (utf-8)       -> u64be(head version)
    b"g" + tag name (utf-8)          -> u64be(version)
    b"i" + u64be(time_ns) + u64be(v) -> b""   (time index, for at(datetime))
    b"o" + option name               -> msgpack value (settings such as retention)

Unlike a data tree, the catalog is not versioned: a commit replaces its
pages, and the replaced ones are freed (``Tree(frees=True)``).
"""
from struct import Struct

from ..errors import Corruption
from ..tree import cursor
from ..tree.btree import Tree
from .commits import Commit

_U64 = Struct(">Q")


def commit_key(version: int) -> bytes:
    return b"c" + _U64.pack(version)


class Catalog:
    __slots__ = ("tree",)

    def __init__(self, tree: Tree):
        self.tree = tree

    # commits
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
        self.tree.put(b"i" + _U64.pack(c.time_ns) + _U64.pack(c.version), b"")

    def commits(self, reverse: bool = True, start: int | None = None, stop: int | None = None):
        lo = commit_key(start) if start is not None else b"c"
        hi = commit_key(stop) if stop is not None else b"d"
        for k, v in cursor.items(self.tree, lo, hi, reverse):
            yield Commit.decode(_U64.unpack_from(k, 1)[0], v)

    def last_version(self) -> int:
        for k, _ in cursor.items(self.tree, b"c", b"d", reverse=True):
            return _U64.unpack_from(k, 1)[0]
        return -1

    # refs
    def _refs(self, kind: bytes) -> dict[str, int]:
        return {k[1:].decode(): _U64.unpack(v)[0]
                for k, v in cursor.items(self.tree, kind, bytes([kind[0] + 1]))}

    def heads(self) -> dict[str, int]:
        return self._refs(b"h")

    def head(self, branch: str) -> int | None:
        v = self.tree.get(b"h" + branch.encode())
        return None if v is None else _U64.unpack(v)[0]

    def set_head(self, branch: str, version: int) -> None:
        self.tree.put(b"h" + branch.encode(), _U64.pack(version))
