"""One read-only mmap of the database file per process, for the mapped read path.

Every snapshot of a store reads through the same map, and a forked child inherits it:
reading a page's bytes in the map dirties no memory of the child's own (decoded node
objects would: their reference counts change). The map covers only what the file held
when it was last (re)mapped, checked with fstat first, and a page is read from it only
after its (page, txn) was verified once in this process: its checksum, its length within
the map and the txn its parent recorded. ``verified`` remembers that, page -> txn, never a
copy of the page.

``image(page, checksum, txn)`` is the one place a node's image comes from: the mapped
bytes, or (a page this txn wrote and has not flushed, or one past the file's end) an
image read through the store, which raises Corruption or ReadFailed as a read does.
A reference to a delta image (format 4) gets the full image its chain materialises
to: bytes made once per process by ``expand`` (the tree layer's
``NodeCache.full_image``) and kept in ``made`` (page -> bytes, bounded), which the
mapped search (C and Python) looks in before it calls ``image``.
"""
from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING

from ..errors import Corruption, DatabaseClosed
from .checksum import BRANCH_DELTA, HEADER, HEADER_SIZE, LEAF_DELTA, verify

MADE_MAX = 4096  # materialised images kept per process (each at most a page)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .store import PageStore


class PageMap:
    __slots__ = ("store", "fd", "buf", "verified", "unit", "made", "expand")
    store: PageStore
    fd: int
    expand: Callable[[int, int, int], bytes] | None

    def __init__(self, store: PageStore, fd: int) -> None:
        self.store, self.fd = store, fd
        self.unit = store.unit  # an image sits at page x unit (known once the meta is read)
        self.buf: mmap.mmap | bytes = b""  # the mmap (b"" until the first page is asked for)
        self.verified: dict[int, int] = {}
        self.made: dict[int, bytes] = {}  # page -> the full image of a delta (header: its
                                          # reference's checksum and txn)
        self.expand = None      # (page, checksum, txn) -> that full image; set by the db

    def _covers(self, end: int) -> bool:
        """Whether the file reaches ``end`` bytes now (fstat: another process may have
        truncated it) and the map does; the file is mapped again if it grew."""
        if self.fd < 0:
            raise DatabaseClosed("the database is closed; open it again with cowdb.open()")
        size = os.fstat(self.fd).st_size
        if size < end:
            return False
        if len(self.buf) < end:  # the old map goes when no reader holds it
            self.buf = mmap.mmap(self.fd, size, prot=mmap.PROT_READ)
        return True

    def image(self, page: int, checksum: int, txn: int) -> memoryview | bytes:
        """The verified image of ``page``, which its parent recorded as (checksum, txn):
        a memoryview of the map, or bytes read through the store. The file's size is
        checked before the map is touched, so a file truncated under it raises
        Corruption or ReadFailed here, not SIGBUS."""
        made = self.made.get(page)
        if made is not None and made[16:24] == txn.to_bytes(8, "little") and \
                made[:8] == checksum.to_bytes(8, "little"):
            return made
        store = self.store
        unit = self.unit = store.unit
        start = page * unit
        data: memoryview | bytes | None = None
        if page not in store._queue and not store.outside(page) and \
                self._covers(start + HEADER_SIZE):
            length = HEADER.unpack_from(self.buf, start)[4]
            if HEADER_SIZE <= length <= 1 << 40 and self._covers(start + length):
                data = memoryview(self.buf)[start:start + length]
                verify(data, page)
        if data is None:  # not flushed yet, past the file's end, or a damaged reference
            data = store.read(page)
        if int.from_bytes(data[:8], "little") != checksum:
            raise Corruption(f"page {page} does not hold the node its parent expects "
                             f"(stale or overwritten page)", page)
        got = HEADER.unpack_from(data, 0)[5]
        if got != txn:
            raise Corruption(f"page {page} was written by txn {got}, its parent "
                             f"expects txn {txn}", page)
        if LEAF_DELTA <= data[8] <= BRANCH_DELTA:
            return self._materialised(page, checksum, txn)
        if type(data) is memoryview:
            self.verified[page] = txn
        return data

    def _materialised(self, page: int, checksum: int, txn: int) -> bytes:
        if self.expand is None:
            raise Corruption(f"page {page} is a delta image and this map cannot "
                             f"materialise it", page)
        made = self.expand(page, checksum, txn)
        if len(self.made) >= MADE_MAX:
            for k in list(self.made)[:MADE_MAX // 8]:
                self.made.pop(k, None)
        self.made[page] = made
        return made

    def close(self) -> None:
        """Let go of the map (it is unmapped once no reader holds a view of it) and of the
        file descriptor, which the store closes and the system may give to another file."""
        self.fd = -1
        self.buf = b""
        self.verified.clear()
        self.made.clear()

    def forget_txn(self, txn: int) -> None:
        """A rolled-back txn's number will be reused: forget the pages it verified."""
        for page, t in list(self.verified.items()):
            if t >= txn:
                self.verified.pop(page, None)
        for page, image in list(self.made.items()):
            if int.from_bytes(image[16:24], "little") >= txn:
                self.made.pop(page, None)
