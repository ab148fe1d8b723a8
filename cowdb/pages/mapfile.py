"""One read-only mmap of the database file per process, for the mapped read path.

Every snapshot of a store reads through the same map, and a forked child inherits it:
reading a page's bytes in the map dirties no memory of the child's own (decoded node
objects would: their reference counts change). The map covers only what the file held
when it was last (re)mapped, checked with fstat first, and a page is read from it only
after its (page, txn) was verified once in this process: its checksum, its length within
the map and the txn its parent recorded. ``verified`` remembers that, page -> txn, never a
copy of the page.

``image(page, checksum, txn)`` is the one place a node's image comes from, the first
time a (page, txn) is met: it is read through the store (pread, never the map, so a
file truncated under the map raises Corruption or ReadFailed there, not SIGBUS), or
verified from a copy C made of the map under its SIGBUS guard, checked against what
the parent recorded, and remembered in ``verified`` when the map covers it. (C checks a
copy of a whole leaf or branch image itself, the same way, and calls ``image`` for
anything else: a damaged page, to raise; or an image that is not whole at its page.)
Later reads take it from the map: in C (_tree_c.map_get) under a SIGBUS guard; in
Python (tree/mapped.py image_of) after ``covers`` checked the file's size, which
leaves only the instant between that check and the read unguarded. An image that
is not whole in the file at its page (a delta, materialised per process) is never
marked verified, so every read of it goes through ``image``.
A reference to a delta image (format 4) gets the full image its chain materialises
to: bytes made once per process by ``expand`` (the tree layer's
``NodeCache.full_image``) and kept in ``made`` (page -> bytes, bounded), which the
mapped search (C and Python) looks in before it calls ``image``. The bound is the node
cache's (65,536): at 1M keys after 2,000 versions ~15,000 leaves are deltas, and with
4,096 made images each warm pass of random gets made most of them again (3.7 µs a get
against 1.4 with room for them all). At most ~256 MiB at 4 KiB pages, and private to the
process, as the nodes built to make them were before.
"""
from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING

from ..errors import Corruption, DatabaseClosed
from .checksum import BRANCH_DELTA, HEADER, LEAF_DELTA, verify

MADE_MAX = 65536  # materialised images kept per process (each at most a page): see above

if TYPE_CHECKING:
    from collections.abc import Callable

    from .store import PageStore


class PageMap:
    __slots__ = ("store", "fd", "buf", "verified", "unit", "made", "expand")
    store: PageStore
    fd: int
    expand: Callable[[int, int, int, bytes], bytes] | None

    def __init__(self, store: PageStore, fd: int) -> None:
        self.store, self.fd = store, fd
        self.unit = store.unit  # an image sits at page x unit (known once the meta is read)
        self.buf: mmap.mmap | bytes = b""  # the mmap (b"" until the first page is asked for)
        self.verified: dict[int, int] = {}
        self.made: dict[int, bytes] = {}  # page -> the full image of a delta (header: its
                                          # reference's checksum and txn)
        self.expand = None      # (page, checksum, txn, image) -> that full image; set by the db

    def covers(self, end: int) -> bool:
        """Whether the file reaches ``end`` bytes now (fstat: another process may have
        truncated it) and the map does; the file is mapped again if it grew."""
        if self.fd < 0:
            raise DatabaseClosed("the database is closed; open it again with cowdb.open()")
        while True:
            size = os.fstat(self.fd).st_size
            if size < end:
                return False
            if len(self.buf) >= end:
                return True
            try:  # the old map goes when no reader holds it
                self.buf = mmap.mmap(self.fd, size, prot=mmap.PROT_READ)
                return True
            except ValueError:
                continue  # cut shorter since fstat (another process's gc): look again

    def image(self, page: int, checksum: int, txn: int, copied: bytes | None = None
              ) -> bytes:
        """The verified image of ``page``, which its parent recorded as (checksum, txn),
        read through the store (see the module's docstring), or ``copied``: what C
        copied out of the map at that page under its SIGBUS guard, verified here instead
        of read again (unless the page is this txn's unflushed one, or outside the
        database). Later reads of it in this process may take it from the map."""
        if self.fd < 0:
            raise DatabaseClosed("the database is closed; open it again with cowdb.open()")
        made = self.made.get(page)
        if made is not None and made[16:24] == txn.to_bytes(8, "little") and \
                made[:8] == checksum.to_bytes(8, "little"):
            return made
        store = self.store
        self.unit = store.unit
        if copied is not None and page not in store._queue and not store.outside(page):
            verify(copied, page)
            data = copied
        else:
            data = store.read(page)  # verified, or Corruption / ReadFailed
        if int.from_bytes(data[:8], "little") != checksum:
            raise Corruption(f"page {page} does not hold the node its parent expects "
                             f"(stale or overwritten page)", page)
        got = HEADER.unpack_from(data, 0)[5]
        if got != txn:
            raise Corruption(f"page {page} was written by txn {got}, its parent "
                             f"expects txn {txn}", page)
        if LEAF_DELTA <= data[8] <= BRANCH_DELTA:
            return self._materialised(page, checksum, txn, data)
        end = page * self.unit + len(data)
        if page not in store._queue and (len(self.buf) >= end or self.covers(end)):
            self.verified[page] = txn  # (reads from the map check the file's size first)
        return data

    def _materialised(self, page: int, checksum: int, txn: int, data: bytes) -> bytes:
        if self.expand is None:
            raise Corruption(f"page {page} is a delta image and this map cannot "
                             f"materialise it", page)
        made = self.expand(page, checksum, txn, data)
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
