"""The commit record: one per version, kept in the catalog under b"c" + version."""
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import msgpack

from ..pages.meta import RootRef

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(t: datetime) -> int:
    """An aware datetime as integer nanoseconds since the epoch (exact: no float)."""
    return (t - EPOCH) // timedelta(microseconds=1) * 1000


def to_datetime(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)


def now_ns() -> int:
    """Commit times are kept in whole microseconds, the resolution of a datetime."""
    return time.time_ns() // 1000 * 1000


@dataclass(frozen=True, slots=True)
class CommitStats:
    """What a commit did. For a merge or revert, keys_put and keys_deleted count the keys
    merged one by one; subtrees taken whole from the other side are not counted."""
    keys_put: int = 0
    keys_deleted: int = 0
    pages_written: int = 0
    bytes_written: int = 0


@dataclass(frozen=True, slots=True)
class Commit:
    """A version: its tree root, its parents and what the writer said about it."""
    version: int
    time_ns: int
    root: RootRef
    count: int                       # keys in the tree
    parents: tuple[int, ...] = ()
    message: str = ""
    author: str = ""
    branch: str = "main"
    txn: int = 0                     # the meta txn that published it
    stats: CommitStats = field(default_factory=CommitStats)
    rewired: bool = False            # a parent gone (gc, compact, recovery) was replaced
    #                                  by its kept ancestors

    @property
    def time(self) -> datetime:
        return EPOCH + timedelta(microseconds=self.time_ns // 1000)

    def encode(self) -> bytes:
        s = self.stats
        return msgpack.packb([self.time_ns, [self.root.page, self.root.checksum, self.root.txn],
                              self.count, list(self.parents), self.message, self.author,
                              self.branch, self.txn,
                              [s.keys_put, s.keys_deleted, s.pages_written, s.bytes_written],
                              self.rewired])

    @classmethod
    def decode(cls, version: int, data: bytes) -> "Commit":
        t, root, count, parents, message, author, branch, txn, stats, rewired = \
            msgpack.unpackb(data)
        return cls(version, t, RootRef(*root), count, tuple(parents), message, author, branch,
                   txn, CommitStats(*stats), rewired)


def branch_and_time(version: int, data: bytes) -> tuple[str, int]:
    """(branch, time_ns) of a commit record: what a catalog fold's time-index entry needs
    (it decoded the whole ``Commit`` for them, ~1.2 records a commit), checked as far as
    ``CommitRoot.decode`` checks the record's shape, and those two fields' types."""
    rec = msgpack.unpackb(data)
    if type(rec) is not list or len(rec) != 10:
        raise ValueError("a commit record is an array of 10 fields")
    branch, time_ns = rec[6], rec[0]
    if type(branch) is not str or type(time_ns) is not int:
        raise ValueError("a commit record's branch is not a str or its time not an int")
    return branch, time_ns


class CommitRoot(NamedTuple):
    """What a snapshot needs of a commit: its version, tree root and key count. ``db.at(v)``
    decodes only this on a version's first lookup (a NamedTuple: the whole ``Commit``, its
    ``RootRef``, ``CommitStats`` and parents, take ~3 us to build, this ~1); ``commit_info``
    and ``log`` decode the whole record."""
    version: int
    root: RootRef
    count: int  # type: ignore[assignment]  # (shadows tuple.count, as Commit.count reads)

    @classmethod
    def decode(cls, version: int, data: bytes) -> "CommitRoot":
        """The root of a commit record, checked as far as ``Commit.decode`` checks the
        record's shape (ten fields, a root of three): the rest is read when asked for."""
        rec = msgpack.unpackb(data)
        if type(rec) is not list or len(rec) != 10:
            raise ValueError("a commit record is an array of 10 fields")
        page, checksum, txn = rec[1]
        return cls(version, RootRef(page, checksum, txn), rec[2])
