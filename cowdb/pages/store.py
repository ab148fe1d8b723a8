"""The page store: images packed in a block device, two meta slots, a free list.

Space is allocated in *units* (64 bytes in format 3; a whole page in files
made by format 2, which keep it): the first two pages hold the meta slots;
everything after them is images. An image (a node, an overflow value, the
free list) starts on a unit boundary, begins with a 24-byte header that
carries its checksum and length, and takes as many whole units as it needs;
the images of one txn are packed back to back. A reference's "page" is the
unit index of an image; the free list, ``allocate``, ``free`` and the page
count all count units. A node image is at most a page long. Above this layer
a reference is opaque. See docs/format.md for the bytes.

A write transaction calls ``begin``, ``allocate``/``write``/``free`` as it
writes, and ``publish`` to make the commit visible (and durable); on any
error it calls ``rollback`` and the store is as it was at ``begin``.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._accelerators import wanted
from ..errors import Corruption, CowdbError, NotACowdbFile, ReadFailed, WriteFailed
from . import meta as metamod
from .checksum import FREELIST, HEADER, HEADER_SIZE, seal, verify
from .freelist import DECODE_ERRORS, MAX_CHAIN, POINTER_SIZE, FreeList, _pages_c
from .io import BlockIO, BytesLike
from .meta import EMPTY, Meta, RootRef

if TYPE_CHECKING:
    from .mapfile import PageMap

# The optional C accelerator (_pages_c.c, loaded by freelist.py) joins the write queue into
# runs (``runs``: the loop of _flush) when it is built and current (see
# cowdb/_accelerators.py); tests/test_pages_c.py checks it against the Python.
join_runs: Callable[[dict[int, bytes | bytearray], int], list[tuple[int, int, bytes]]] | None \
    = _pages_c.runs if _pages_c is not None and wanted() else None

DEFAULT_PAGE_SIZE = 4096
DEFAULT_UNIT = 64    # bytes per allocation unit of a new file (format 3)
META_REREADS = 1000  # reads of two damaged slots that keep changing (see candidates)
RESERVE_PAGES = 32   # pages kept allocated past the last unit, for gc() on a full disk
RESERVE_STEP = 8     # ... renewed at least this many pages at a time,
RESERVE_STEP_MAX = 32  # ... and at most this many (see reserve_step)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # a renewal failing so may use the reserve
FREELIST_DELTA = 1   # free list image header flag: a delta of the chain, not a base
FREELIST_PIECE = 2   # ... a later piece of a base that spans several images
META_PAGES = 2
PIECE_MIN = 4        # units: the shortest piece of a base written in pieces (see below)


class PageStore:
    # The current meta record: None only until adopt() (or initialize()) sets it, before
    # anything but read() (see outside()) uses it.
    meta: Meta
    page_size: int
    page_count: int
    durable_slot: int
    durable_txn: int
    bytes_written: int
    pages_written: int
    unsynced_free_pages: int
    rebase_freelist: bool
    barrier: bool
    may_use_reserve: bool

    def __init__(self, io: BlockIO, *, page_size: int = DEFAULT_PAGE_SIZE, readonly: bool = False,
                 unit: int | None = None):
        self.io = io
        self.page_size = page_size
        # bytes per allocation unit: the meta record says (adopt); a new store packs
        # unless its device asks for whole pages (an object store indexes pages)
        self.unit = unit or getattr(io, "unit", None) or DEFAULT_UNIT
        self.readonly = readonly
        self.meta = None  # type: ignore[assignment]  # (see meta above)
        self._freelist: FreeList | None = FreeList()  # None: not loaded (read-only opens)
        self.page_count = self.first_unit
        self.durable_slot = 0          # slot that holds the last durable commit
        self.durable_txn = 0
        self.bytes_written = 0         # images written since open (for commit stats)
        self.pages_written = 0
        self._txn = 0
        # images written by the txn, not yet flushed
        self._queue: dict[int, bytes | bytearray] = {}
        self._run = (0, 0)             # reused units the txn took and has not filled yet
        self.unsynced_free_pages = 0   # pages freed after the last durable txn: not reusable
                                       # until the next sync (kept exact without a scan)
        # called with the txn a rollback forgets (node caches)
        self.rollback_hooks: list[Callable[[int], object]] = []
        self.rebase_freelist = False   # the txn writes its free list as a new base (low pages)
        self.barrier = False           # the txn syncs its images before its meta record
        self.may_use_reserve = False   # the txn may write into the reserve it cannot renew
        self.pagemap: PageMap | None = None  # a PageMap of the file (mapfile.py), if it has one
        self._file_size: int | None = None  # bytes allocated to the file as last seen (None: ask)
        # tests: hook(point, txn) at "flushed" (the txn's pages written, not its meta) and
        # "meta" (the meta record written, the commit not yet published)
        self.hook: Callable[[str, int], object] | None = None

    # ---- opening -------------------------------------------------------
    def read_slots(self) -> list[tuple[int, Meta | metamod.BadMeta]]:
        """Decode both meta slots: [(slot, Meta or BadMeta)]."""
        return self._read_slots()[0]

    def _read_slots(self) -> tuple[list[tuple[int, Meta | metamod.BadMeta]], list[bytes]]:
        """Both slots decoded, and the bytes read for them.

        Slot 1 sits one page in, so its offset depends on the page size: slot
        0 tells it, and if slot 0 is damaged every supported size is tried.
        """
        first = self._read_slot(0)
        raw = [first]
        out: list[tuple[int, Meta | metamod.BadMeta]]
        try:
            m0 = metamod.decode(first)
            out = [(0, m0)]
            sizes = [m0.page_size]
        except metamod.BadMeta as e:
            out = [(0, e)]
            sizes = [self.page_size] + [ps for ps in metamod.PAGE_SIZES if ps != self.page_size]
        second: Meta | metamod.BadMeta | None = None
        for ps in sizes:
            raw.append(self._read_slot(ps))
            try:
                second = metamod.decode(raw[-1])
                break
            except metamod.BadMeta as e:
                second = second or e
        assert second is not None  # (sizes is never empty)
        return out + [(1, second)], raw

    def _read_slot(self, offset: int) -> bytes:
        """A slot's record and the pending bytes it claims to carry (see meta.py)."""
        data = self._pread(metamod.META_SIZE, offset, None)
        n = metamod.pending_length(data)
        return data + self._pread(n, offset + metamod.META_SIZE, None) if n else data

    def candidates(self) -> list[tuple[int, Meta]]:
        """Valid meta records, newest first. Raises if the file is not a cowdb file at all.

        Both slots reading damaged are read again: a slot another process is writing
        reads torn, and a reader delayed between its two reads can meet both so, one
        commit after the other. A write in progress changes what the next read sees;
        damage reads the same (``META_REREADS`` bounds the reads)."""
        slots, raw = self._read_slots()
        for _ in range(META_REREADS):
            if any(isinstance(m, Meta) for _, m in slots):
                break
            slots, again = self._read_slots()
            if again == raw:
                break
            raw = again
        good = [(s, m) for s, m in slots if isinstance(m, Meta)]
        if not good:
            bad = [m for _, m in slots if isinstance(m, metamod.BadMeta)]  # (all of them)
            versions = [m.version for m in bad if m.version is not None]
            if versions:
                raise NotACowdbFile(f"this file uses cowdb format version {max(versions)}; this "
                                    f"cowdb reads versions up to {metamod.FORMAT_VERSION}: upgrade "
                                    f"cowdb")
            if all(m.foreign for m in bad):
                raise NotACowdbFile("this file is not a cowdb database (no cowdb header); "
                                    "check the path, or open a new file")
            raise Corruption("both meta slots are damaged; the file cannot be opened "
                             "(restore it from a backup)")
        good.sort(key=lambda sm: sm[1].txn, reverse=True)
        return good

    def adopt(self, slot: int, meta: Meta, durable: bool = True) -> None:
        """Make ``meta`` the current state (after the caller verified its new pages)."""
        self.page_size, self.unit = meta.page_size, meta.unit
        self.meta = meta
        self.page_count = meta.page_count
        self._file_size = None  # another process may have grown or cut the file
        # a read-only handle never allocates: its free list is read only if asked for
        # (check, stats), so a damaged free list does not stop it reading
        self._freelist = None if self.readonly else self._load_freelist(meta)
        if durable:
            self.mark_durable(slot, meta.txn)
        else:
            self._count_unsynced()

    def slot_of(self, txn: int) -> int | None:
        """The meta slot whose valid record is that of ``txn`` (None: neither)."""
        return next((s for s, m in self.candidates() if m.txn == txn), None)

    def mark_durable(self, slot: int, txn: int) -> None:
        """Record that the commit of ``txn`` (in ``slot``) is on disk."""
        self.durable_slot, self.durable_txn = slot, txn
        self._count_unsynced()

    @property
    def freelist(self) -> FreeList:
        fl = self._freelist
        if fl is None:
            fl = self._freelist = self._load_freelist(self.meta)
        return fl

    @freelist.setter
    def freelist(self, fl: FreeList) -> None:
        self._freelist = fl

    def _count_unsynced(self) -> None:
        if self._freelist is None:  # read-only: nothing is ever freed here
            self.unsynced_free_pages = 0
            return
        durable = self.durable_txn
        self.unsynced_free_pages = sum(FreeList.pages_in(runs) for t, runs
                                       in self.freelist.pending.items() if t > durable)

    def _load_freelist(self, meta: Meta) -> FreeList:
        """Read the chain back from the newest image to its base, then replay it."""
        images: list[tuple[int, bytes]] = []
        ref = (meta.freelist.page, meta.freelist.checksum)
        deltas, seen = 0, set()
        while ref[0]:
            page, checksum = ref
            data = self.read(page)
            flags = data[9]
            deltas += flags & FREELIST_DELTA
            if int.from_bytes(data[:8], "little") != checksum or deltas > MAX_CHAIN + 1 or \
                    page in seen or (flags & FREELIST_DELTA and len(images) > deltas - 1):
                raise Corruption(f"page {page} does not hold the free list image its "
                                 f"successor expects", page)
            seen.add(page)
            images.append((page, data))
            if not flags & (FREELIST_DELTA | FREELIST_PIECE):
                break
            try:
                ref = FreeList.previous(memoryview(data)[HEADER_SIZE:])[:2]
            except DECODE_ERRORS as e:
                raise Corruption(f"the free list image at page {page} is cut short", page) from e
        if not images:
            return FreeList()
        base = images[deltas:][::-1]        # the base's pieces, first to last
        try:
            fl = FreeList.decode(*(memoryview(data)[HEADER_SIZE + (POINTER_SIZE if i
                                                                   else 0):]
                                   for i, (_page, data) in enumerate(base)))
            fl.chain = [(page, self.pages_for(len(data))) for page, data in base]
            fl.pieces = len(base)
            for page, delta in reversed(images[:deltas]):
                fl.replay(memoryview(delta)[HEADER_SIZE:])
                fl.chain.append((page, self.pages_for(len(delta))))
        except DECODE_ERRORS as e:
            raise Corruption(f"the free list at page {meta.freelist.page} does not "
                             f"replay: {e}", meta.freelist.page) from e
        fl.changed = False
        return fl

    def initialize(self) -> Meta:
        """Write the first meta record of a new, empty store (both meta pages, full size)."""
        m = Meta(txn=1, durable_base=0, page_size=self.page_size, catalog=EMPTY,
                 freelist=EMPTY, freelist_len=0, page_count=self.first_unit, unit=self.unit)
        image = bytearray(META_PAGES * self.page_size)
        image[:metamod.META_SIZE] = m.encode()
        try:
            self.io.pwrite(image, 0)
            self.io.sync()
        except OSError as e:
            raise WriteFailed(f"could not create the database: {e}") from e
        self.adopt(0, m)
        return m

    # ---- reading -------------------------------------------------------
    def read(self, page: int) -> bytes:
        """The verified image stored at ``page`` (one page or a run)."""
        data = self.image(page)
        verify(data, page)
        return data

    def image(self, page: int) -> bytes:
        """The image stored at ``page`` (one page or a run), not verified: as many bytes as
        its header's length gives, or the page where the header does not give a length
        (``read`` verifies it; the node cache's C verifies the leaves it decodes)."""
        if self._queue and page in self._queue:  # written by this txn, not flushed yet
            return bytes(self._queue[page])
        ps = self.page_size
        if self.outside(page):
            raise Corruption(f"page {page} is outside the database (a reference is damaged)", page)
        offset = page * self.unit
        data = self._pread(ps, offset, page)
        if len(data) >= HEADER_SIZE:
            length = HEADER.unpack_from(data, 0)[4]
            if length > len(data):
                if length > (1 << 40):
                    raise Corruption(f"page {page} has a bad header (length {length})", page)
                data += self._pread(length - len(data), offset + len(data), page)
            elif length >= HEADER_SIZE:
                data = data[:length]
        return data

    def outside(self, page: int) -> bool:
        """Whether ``page`` lies outside the committed database (a damaged reference)."""
        return page < self.first_unit or (self.meta is not None and page >= self.page_count
                                          and page >= self._high_water())

    def read_head(self, page: int) -> tuple[int, int, int, int, int, int]:
        """The header fields (checksum, type, flags, n, length, txn) of an image, unverified:
        for walks that only need to know what a page is (one this txn wrote too)."""
        queued = self._queue.get(page) if self._queue else None
        data = queued if queued is not None else self._pread(HEADER_SIZE, page * self.unit, page)
        if len(data) < HEADER_SIZE:
            raise Corruption(f"page {page} is truncated", page)
        return HEADER.unpack_from(data, 0)

    def _pread(self, size: int, offset: int, page: int | None) -> bytes:
        try:
            return self.io.pread(size, offset)
        except CowdbError:
            raise
        except OSError as e:
            where = "a meta slot" if page is None else f"page {page}"
            raise ReadFailed(f"reading {where} failed: {e}", page) from e

    def _high_water(self) -> int:
        return max(self.page_count, self.meta.page_count if self.meta else 0)

    @property
    def first_unit(self) -> int:
        """The first unit after the two meta pages."""
        return META_PAGES * self.page_size // self.unit

    def pages_for(self, nbytes: int) -> int:
        """Units an image of ``nbytes`` takes."""
        return -(-nbytes // self.unit)

    # ---- writing -------------------------------------------------------
    def begin(self, txn: int, reuse_bound: int) -> None:
        """Start writing txn; pages freed at txns <= reuse_bound become reusable.

        The bound is never above the durable txn (see ``unsynced_free_pages``).
        """
        self._txn = txn
        self.freelist.release(reuse_bound)

    def allocate(self, npages: int) -> int:
        """``npages`` units for an image of this txn: the next ones of the run of reused
        units the txn is filling (a txn's images are packed back to back), else a new
        run of at least two pages' worth from the free list (lowest first), else the end
        of the file. One free-list search per run, not per image."""
        start, end = self._run
        if start + npages <= end:
            self._run = (start + npages, end)
            return start
        fl = self._freelist
        if fl is None:
            fl = self.freelist  # (loaded on first use)
        page = fl.take(npages, most=max(npages, 2 * self.page_size // self.unit))
        if page is not None:
            end = page + fl.taken
            self._put_back_run()
            self._run = (page + npages, end)
            return page
        page = self.page_count  # (_grow, inline: most images of a growing file come here)
        self.page_count += npages
        return page

    def _take(self, npages: int) -> int:
        """Exactly ``npages`` units from the free list (logged), else the end of the file:
        for the free list's own image, which records its take."""
        page = self.freelist.take(npages)
        return self._grow(npages) if page is None else page

    def _grow(self, npages: int) -> int:
        page = self.page_count
        self.page_count += npages
        return page

    def _put_back_run(self) -> None:
        """Give the unfilled rest of the txn's run back to the free list."""
        start, end = self._run
        if start < end:
            self.freelist.put_back(start, end - start)
        self._run = (0, 0)

    def take_below(self, npages: int, below: int) -> int | None:
        """A reusable run of ``npages`` ending at or before page ``below``, else None (the
        file never grows for it): for moving images down (see tree/copy.py)."""
        return self.freelist.take(npages, below)

    def place(self, image: bytearray) -> int:
        """Allocate units for an image of this txn and queue it there; its first unit."""
        page = self.allocate(-(-len(image) // self.unit))
        self.write(page, image)
        return page

    def write(self, page: int, image: bytes | bytearray) -> None:
        """Queue an image for this txn; publish() writes the queue before the meta record."""
        self._queue[page] = image
        self.bytes_written += len(image)
        self.pages_written += 1

    def _keep_reserve(self) -> None:
        """Before a txn's images are written: keep ``RESERVE_PAGES`` allocated past the
        last page, renewed ``reserve_step()`` pages at a time as the file grows. The io
        writes zeros there (BlockIO.reserve), so a commit's images overwrite blocks the
        file already has and its fdatasync flushes data alone, no size or extent change:
        about 160 against 240-300 us on ext4 here. A renewal changes the size, so its
        commit's sync pays that: see ``reserve_step``. When the disk is full a txn fails
        here (nothing written, WriteFailed) unless it may use the reserve (gc, the
        checkpoint: the txns that give space back) and fits in it."""
        ps = self.page_size
        end = self.page_count * self.unit
        size = self._file_size
        if size is None:
            size = self._file_size = self.io.size()
        if end + RESERVE_PAGES * ps <= size:
            return
        want = self.reserve_end()
        try:
            self.io.reserve(want)
            self._file_size = want
        except OSError as e:
            self._file_size = None
            if self.may_use_reserve and end <= size and e.errno in _DISK_FULL:
                return  # a full disk: what frees space writes into the reserve; an I/O
                        # error is not absorbed (the txn fails, nothing written)
            raise WriteFailed(f"no room to grow the file ({e}); the commit was not applied. "
                              f"gc() can still run on the reserve kept for it: drop versions "
                              f"(set_retention) and call gc() to free space") from e

    def reserve_end(self) -> int:
        """Where a renewal of the reserve ends the file (gc cuts its free tail there)."""
        return self.page_count * self.unit + (RESERVE_PAGES + self.reserve_step()) * \
            self.page_size

    def reserve_step(self) -> int:
        """Pages the reserve is renewed by: a 64th of the file, from ``RESERVE_STEP`` to
        ``RESERVE_STEP_MAX``. Renewed 8 pages at a time, one durable commit in ~6 of W3's
        at 100k keys (5 KiB of images each) paid a sync that changes the size: 3,527-4,029
        commits a second against 3,892-4,299 renewed 32 at a time (64: 3,879-4,471, no
        better; alternating runs, 2026-12-07). A small file keeps the small step, so its
        tail of zeros (counted in its size) stays small."""
        return min(RESERVE_STEP_MAX, max(RESERVE_STEP, self.page_count * self.unit //
                                          (64 * self.page_size)))

    def _flush(self) -> None:
        """Write the queued images, one pwrite per run of consecutive pages.

        A commit's new images are mostly consecutive (fresh units come from the
        end of the file, reused ones in runs), so a commit of a few dozen images
        is a few system calls. Images are padded to whole units inside a run.
        """
        if join_runs is not None:
            queue_c, self._queue = self._queue, {}
            for first, end, data in join_runs(queue_c, self.unit):
                self._pwrite_run(first, end, data)
            return
        queue, self._queue = sorted(self._queue.items()), {}
        unit = self.unit
        first = end = pos = -1
        parts: list[bytes | bytearray] = []
        for page, image in queue:
            at = page * unit
            if page != end:  # a new run: write the one before
                if parts:
                    self._pwrite_run(first, end, b"".join(parts))
                first, parts = page, [image]
            else:
                if at > pos:
                    parts.append(bytes(at - pos))  # pad the image before to its last unit
                parts.append(image)
            pos = at + len(image)
            end = page - (-len(image) // unit)
        if parts:
            self._pwrite_run(first, end, b"".join(parts))

    def _pwrite_run(self, first: int, end: int, data: bytes) -> None:
        try:
            self.io.pwrite(data, first * self.unit)
        except OSError as e:
            raise WriteFailed(f"writing pages {first} to {end - 1} failed: {e}; the "
                              f"commit was not applied") from e

    def free(self, page: int, npages: int = 1) -> None:
        """Free a run that the current txn made unreachable from its catalog."""
        self.freelist.free(self._txn, page, npages)
        self.unsynced_free_pages += npages  # the txn being written is never durable yet

    def write_image(self, kind: int, body: BytesLike, n: int = 0, page: int | None = None
                    ) -> RootRef:
        """Write a header + body image as a run of fresh pages (at ``page``: a run the
        caller allocated)."""
        image = bytearray(HEADER_SIZE)
        image += body
        HEADER.pack_into(image, 0, 0, kind, 0, n, len(image), self._txn)
        s = seal(image)
        if page is None:
            page = self.allocate(self.pages_for(len(image)))
        self.write(page, image)
        return RootRef(page, s, self._txn)

    @property
    def pending_room(self) -> int:
        """Bytes of pending catalog changes a meta record may carry (see meta.py): the
        rest of its page, in the format version this store writes."""
        return metamod.pending_max(metamod.FORMAT_VERSION, self.page_size)

    def publish(self, catalog: RootRef, pending: bytes, durable: bool,
                barrier: bool = False) -> Meta:
        """Write the free list and the meta record (with the catalog's pending changes);
        sync if durable. The commit point.

        ``barrier``: sync the images before the meta record is written (two syncs), for a
        txn whose new pages open-time verification would not walk (a relocation rewrites
        kept versions' trees under their old commit txns, see versions.gc)."""
        old = self.meta
        fl = self.freelist
        self._put_back_run()
        freelist, flen = old.freelist, old.freelist_len
        if fl.changed or catalog != old.catalog:
            freelist, flen = self._write_freelist(old)
        m = Meta(txn=self._txn, durable_base=self.durable_txn, page_size=self.page_size,
                 catalog=catalog, freelist=freelist, freelist_len=flen,
                 page_count=self.page_count, unit=self.unit, pending=pending)
        self._keep_reserve()
        self._flush()
        if barrier or self.barrier:
            self.sync()
            self.barrier = False
        if self.hook is not None:
            self.hook("flushed", self._txn)
        slot = 1 - self.durable_slot
        try:
            self.io.pwrite(m.encode(), slot * self.page_size)
        except OSError as e:
            raise WriteFailed(f"writing the meta record of txn {self._txn} failed: {e}; the "
                              f"commit was not applied") from e
        if self.hook is not None:
            self.hook("meta", self._txn)
        if durable:
            try:
                self.io.sync()
            except OSError as e:
                err = WriteFailed(f"fsync failed after writing txn {self._txn}: {e}; whether "
                                  f"that commit survives is unknown, so the database was closed: "
                                  f"reopen it to see the durable state")
                err.uncertain = True
                raise err from e
        fl.changed = False
        self.may_use_reserve = False
        self.meta = m
        if durable:
            self.mark_durable(slot, m.txn)
        return m

    def _write_freelist(self, old: Meta) -> tuple[RootRef, int]:
        """Append a delta image to the free list's chain, or start a new chain with a
        base image (freeing the old chain) when it is long. See freelist.py."""
        fl = self.freelist
        if fl.chain and len(fl.chain) - fl.pieces < MAX_CHAIN and not self.rebase_freelist and \
                fl.delta_size() <= max(fl.encoded_size(), self.page_size):
            # (a txn of many frees, gc's, whose delta is over a page and longer than a
            # base, which coalesces them, writes a base)
            need = self.pages_for(HEADER_SIZE + fl.delta_size())
            fresh = self.page_count
            page = self._take(need)         # logged, so the delta records its own pages
            prev = (old.freelist.page, old.freelist.checksum, old.freelist.txn,
                    old.freelist_len)
            body, flags = fl.encode_delta(prev), FREELIST_DELTA
            used = self.pages_for(HEADER_SIZE + len(body))
            if used < need:  # delta_size() counted a take that a fresh page did not log
                self._give_back(page, need, used, fresh)
                if page < fresh:             # the logged take: only the pages used
                    fl.log[-1] = (fl.log[-1][0], page, used, 0)
                    body = fl.encode_delta(prev)
            fl.chain.append((page, used))
        else:
            for first, n in fl.chain:
                self.free(first, n)
            need = self.pages_for(HEADER_SIZE + fl.encoded_size())
            per = max(1, self.page_size // self.unit)
            if need > per:
                return self._write_base_pieces(per)
            fresh = self.page_count
            page = self._take(need)         # shrinks the list, so the image still fits
            body, flags = fl.encode(), 0
            used = self.pages_for(HEADER_SIZE + len(body))
            if used < need:  # encoded_size() is a bound: give back the pages not used
                self._give_back(page, need, used, fresh)
                again = fl.encode()
                if self.pages_for(HEADER_SIZE + len(again)) <= used:
                    body = again
                else:
                    # the run given back no longer fits in the pages used. Keeping those
                    # pages would leave them past the image's length, and a reload (a
                    # rolled-back empty commit, an adopting process, a reopen) counts only
                    # the image's pages: a leak. Put the taken run back whole instead and
                    # write the base at the end of the file, which changes no list; the
                    # list is then as it was before the take, within encoded_size()'s bound.
                    fl.give_back(page, used)
                    body = fl.encode()
                    used = self.pages_for(HEADER_SIZE + len(body))
                    page = self.page_count
                    self.page_count += used
            fl.chain, fl.pieces = [(page, used)], 1
        fl.log.clear()
        self.rebase_freelist = False
        image = bytearray(HEADER_SIZE) + body
        HEADER.pack_into(image, 0, 0, FREELIST, flags, 0, len(image), self._txn)
        ref = RootRef(page, seal(image), self._txn)
        self.write(page, image)
        return ref, len(image)

    def _write_base_pieces(self, per: int) -> tuple[RootRef, int]:
        """A base longer than a page, written as pieces of up to ``per`` units (a page)
        each, from the lowest pool runs of at least ``PIECE_MIN`` units (else the end of
        the file): one long run, which gc's small holes lack, would have to come from the
        end and stop it being given back. Each piece after the first starts with a
        pointer to the one before; the meta record names the last. Takes never add a
        run, so pieces are taken until the list they leave fits (``encode_pieces``)."""
        fl = self.freelist
        least = min(per, PIECE_MIN)

        def room(units: int, first: bool) -> int:
            return (units * self.unit - HEADER_SIZE - (0 if first else POINTER_SIZE)) // 16 * 16

        pieces: list[tuple[int, int]] = []
        rooms: list[int] = []
        while True:
            if sum(rooms) >= fl.encoded_size() + 16 * len(rooms):
                bodies = fl.encode_pieces(rooms)
                if bodies is not None:
                    break
            page = fl.take(least, most=per)
            units = per if page is None else fl.taken
            pieces.append((self._grow(per) if page is None else page, units))
            rooms.append(room(units, not rooms))
        fl.chain, fl.pieces = pieces, len(pieces)
        fl.log.clear()
        self.rebase_freelist = False
        prev: tuple[int, int, int, int] | None = None
        for (page, _units), body in zip(pieces, bodies):
            image = bytearray(HEADER_SIZE)
            image += body if prev is None else FreeList.pointer(prev) + body
            HEADER.pack_into(image, 0, 0, FREELIST, 0 if prev is None else FREELIST_PIECE, 0,
                             len(image), self._txn)
            prev = (page, seal(image), self._txn, len(image))
            self.write(page, image)
        assert prev is not None
        return RootRef(prev[0], prev[1], self._txn), prev[3]

    def _give_back(self, page: int, need: int, used: int, fresh: int) -> None:
        """An image allocated ``need`` pages at ``page`` and uses ``used``: return the rest
        (to the end of the file when they were fresh, else to the reusable pool), so no
        page is left neither in use nor free."""
        if page >= fresh:
            self.page_count = page + used
        else:
            self.freelist.give_back(page + used, need - used)

    def rollback(self) -> None:
        """Forget everything since begin(): allocations, frees.

        The free list in memory always equals the image the current meta
        record names (publish writes exactly what it holds), so rolling back
        is reading that image again: no copy is kept on the commit path.
        """
        self._queue = {}
        self._run = (0, 0)
        self.rebase_freelist = self.barrier = self.may_use_reserve = False
        self._file_size = None
        for hook in self.rollback_hooks:
            hook(self._txn)
        self.page_count = self.meta.page_count
        self.freelist = self._load_freelist(self.meta)
        self._count_unsynced()

    def sync(self) -> None:
        try:
            self.io.sync()
        except OSError as e:
            err = WriteFailed(f"fsync failed: {e}; what was written since the last successful "
                              f"fsync may not be on disk")
            err.uncertain = True
            raise err from e

    def close(self) -> None:
        if self.pagemap is not None:
            self.pagemap.close()
        self.io.close()
