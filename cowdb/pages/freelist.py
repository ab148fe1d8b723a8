"""Free pages, as runs (first page, length), grouped by the transaction that freed them.

A page freed by txn F was still reachable from F-1's trees. It may be
reused only once F <= the reuse bound: the oldest live reader's txn and the
last durable txn (so a crash of the current commit can fall back to a
version whose pages are intact). Reusable runs sit in ``pool``; the rest
wait in ``pending``.

Runs, not page lists: pages are allocated in runs (a commit's new pages
are mostly consecutive) and gc frees whole versions, so runs keep the list
short.

Stored as a chain, not rewritten whole: a *base* image holds the full list,
and each commit that changes it appends a small *delta* image holding just
the operations of that commit (take, free, release, trim), pointing back to
the previous image. Loading replays the deltas over the base. Every
``MAX_CHAIN`` deltas the next commit writes a fresh base and frees the old
chain. A commit therefore writes a few hundred bytes of free list, not the
whole list (bbolt's flat free list, rewritten at every commit, is its known
write amplification). Nothing here touches storage: the page store writes
the images ``encode()`` and ``encode_delta()`` return.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from struct import Struct
from struct import error as struct_error
from typing import TYPE_CHECKING

from .._accelerators import load, wanted

if TYPE_CHECKING:
    from .io import BytesLike

_GROUP = Struct("<QQ")  # txn, run count; then count x (u64 first page, u64 length)
_OP = Struct("<QQQQ")   # kind, a, b, c
_PREV = Struct("<QQQQ")  # previous image of the chain: page, checksum, txn, length
POINTER_SIZE = _PREV.size
TAKE, FREE, RELEASE, TRIM, GIVE = 1, 2, 3, 4, 5
MAX_CHAIN = 32          # deltas after a base before the next base
# What decode(), previous() and replay() raise for an image that does not decode (cut
# short, an unknown operation, a take of pages that are not free): the page store
# reports them as Corruption.
DECODE_ERRORS = (ValueError, KeyError, struct_error)


def _checked(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``runs`` read from an image, or ValueError if one reaches the largest u64 page
    number: the list could not be encoded again (a run ending exactly at 2**64, merged with
    the runs below it down to page 0, would be 2**64 pages long, a length no u64 holds;
    no real file comes near)."""
    if runs and max(s + n for s, n in runs) >= 1 << 64:
        raise ValueError("a free-list run reaches the largest page number")
    return runs


def _neg_start(run: tuple[int, int]) -> int:
    return -run[0]


def _coalesce(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged runs, highest first (so pop() takes the lowest)."""
    out: list[tuple[int, int]] = []
    for start, n in sorted(runs):
        if out and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((start, n))
    out.reverse()
    return out


def py_first_fit(pool: list[tuple[int, int]], n: int, below: int | None
                 ) -> tuple[int, int]:
    """The lowest run of ``pool`` (highest first) at least n pages long: (its index, 0);
    (-1, the longest run) if none is; (-1, -1) if the search reached a run that would end
    past ``below`` first. _pages_c.first_fit is this in C."""
    longest = 0
    for i in range(len(pool) - 1, -1, -1):
        start, length = pool[i]
        if below is not None and start + n > below:
            return -1, -1
        if length > longest:
            longest = length
        if length >= n:
            return i, 0
    return -1, longest


# The optional C accelerator (_pages_c.c) does first_fit (and store.py's queue runs) when
# it is built and current (see cowdb/_accelerators.py); tests/test_pages_c.py checks it
# against the Python.
PAGES_API = 2  # the _pages_c this package is written against
_pages_c = load("cowdb.pages", "_pages_c", PAGES_API)
first_fit: Callable[[list[tuple[int, int]], int, int | None], tuple[int, int]] = (
    _pages_c.first_fit if _pages_c is not None and wanted() else py_first_fit)


class FreeList:
    __slots__ = ("_pool", "pending", "changed", "_loose", "log", "chain", "_fit", "pieces")
    changed: bool

    def __init__(self) -> None:
        self._pool: list[tuple[int, int]] = []             # reusable runs, highest first
        self._fit: int | None = None    # no pool run is longer than this (None: unknown)
        self.pending: dict[int, list[tuple[int, int]]] = {}  # txn -> runs it freed
        self.changed = False
        self._loose: set[int] = set()   # pending groups not merged into runs yet
        # operations (kind, a, b, c) since the newest stored image
        self.log: list[tuple[int, int, int, int]] = []
        self.chain: list[tuple[int, int]] = []  # stored images (page, npages), base first
        self.pieces: int = 1   # chain[:pieces] are the base's pieces, the rest deltas

    @property
    def pool(self) -> list[tuple[int, int]]:
        """Reusable runs, highest first (so pop() takes the lowest)."""
        return self._pool

    @pool.setter
    def pool(self, runs: list[tuple[int, int]]) -> None:
        self._pool, self._fit = runs, None

    def release(self, bound: int) -> None:
        """Move every group freed at txn <= bound into the pool."""
        pending = self.pending
        # the common case: nothing is old enough. Groups are added in txn order (a txn
        # frees into its own; a decoded list keeps the order it was encoded in), so the
        # first is the oldest; were it not, a group would only wait for a later release
        if not pending or next(iter(pending)) > bound:
            return
        ready = [t for t in pending if t <= bound]
        if ready:
            self.log.append((RELEASE, bound, 0, 0))
            runs = self.pool
            for t in ready:
                runs.extend(self.pending.pop(t))
            self.pool = _coalesce(runs)
            self.changed = True

    def reusable_count(self, bound: int) -> int:
        """Pages that are reusable, or would be after release(bound)."""
        return self.pages_in(self.pool) + sum(self.pages_in(runs) for t, runs
                                              in self.pending.items() if t <= bound)

    def free(self, txn: int, start: int, n: int = 1) -> None:
        self.log.append((FREE, txn, start, n))
        self.pending.setdefault(txn, []).append((start, n))
        self._loose.add(txn)
        self.changed = True

    def take(self, n: int, below: int | None = None, most: int = 0) -> int | None:
        """Take n contiguous reusable pages, lowest first; None if no run is long enough
        (that ends at or before page ``below``, if given). ``most``: take up to that many
        if the run has them (see ``taken``)."""
        fit = self._fit
        if fit is not None and n > fit:   # takes only shorten runs: still none fits
            return None
        pool = self._pool
        i, longest = first_fit(pool, n, below)
        if i < 0:
            if longest >= 0:   # (not stopped by below: no run is longer than this)
                self._fit = longest
            return None
        start, length = pool[i]
        n = max(n, min(length, most))
        if length == n:
            del pool[i]
        else:
            pool[i] = (start + n, length - n)
        self.changed = True
        self.log.append((TAKE, start, n, 0))
        return start

    @property
    def taken(self) -> int:
        """How many pages the last ``take`` took."""
        return self.log[-1][2]

    def give_back(self, start: int, n: int) -> None:
        """Return pages just taken (and not logged as taken) to the pool, merged with the
        runs either side (O(log runs) to find its place: a txn gives one back each)."""
        pool = self._pool
        i = bisect_left(pool, -start, key=_neg_start)   # pool[:i] start above it
        if i < len(pool) and pool[i][0] + pool[i][1] == start:  # the run below ends here
            start, n = pool[i][0], n + pool[i][1]
            del pool[i]
        if i and pool[i - 1][0] == start + n:                  # the run above starts here
            n += pool[i - 1][1]
            del pool[i - 1]
            i -= 1
        pool.insert(i, (start, n))
        if self._fit is not None and n > self._fit:  # the one run that grew: still a bound
            self._fit = n

    def put_back(self, start: int, n: int) -> None:
        """Return pages taken (and logged) by this txn and not used, to the pool, logged."""
        self.log.append((GIVE, start, n, 0))
        self.give_back(start, n)
        self.changed = True

    def _remove(self, start: int, n: int) -> None:
        """Replay a take: cut [start, start + n) out of the pool run that holds it."""
        for i, (s, length) in enumerate(self.pool):
            if s <= start and start + n <= s + length:
                self.pool[i:i + 1] = [r for r in ((start + n, s + length - start - n),
                                                  (s, start - s)) if r[1]]
                return
        raise ValueError(f"free list replay: pages {start}+{n} are not free")

    @staticmethod
    def pages_in(runs: Iterable[tuple[int, int]]) -> int:
        return sum(n for _, n in runs)

    def count(self) -> int:
        return self.pages_in(self.pool) + sum(self.pages_in(r) for r in self.pending.values())

    def pages(self) -> Iterator[int]:
        """Every free page, reusable or pending."""
        for runs in (self.pool, *self.pending.values()):
            for start, n in runs:
                yield from range(start, start + n)

    def is_free(self, page: int) -> bool:
        return any(s <= page < s + n for runs in (self.pool, *self.pending.values())
                   for s, n in runs)

    def trim_tail(self, page_count: int) -> int:
        """Drop reusable pages at the end of the file; return the new page count."""
        self.log.append((TRIM, page_count, 0, 0))
        pool = self.pool
        while pool and pool[0][0] + pool[0][1] == page_count:
            page_count = pool.pop(0)[0]
            self.changed = True
        return page_count

    def encoded_size(self) -> int:
        """An upper bound: encode() may merge pending runs, never split them."""
        runs = len(self.pool) + sum(len(r) for r in self.pending.values())
        return _GROUP.size * (1 + len(self.pending)) + 16 * runs

    def _groups(self) -> list[tuple[int, list[tuple[int, int]]]]:
        """(txn, runs) groups, the pool (txn 0) first."""
        for txn in self._loose:  # pages freed one by one (a gc sweep) merge into runs here
            if txn in self.pending:
                self.pending[txn] = _coalesce(self.pending[txn])
        self._loose.clear()
        return [(0, self.pool), *sorted(self.pending.items())]

    def encode(self) -> bytes:
        parts = []
        for txn, runs in self._groups():
            parts.append(_GROUP.pack(txn, len(runs)))
            parts.append(array("Q", [x for run in runs for x in run]).tobytes())
        return b"".join(parts)

    def encode_pieces(self, room: list[int]) -> list[bytes] | None:
        """The list as groups cut into pieces of exactly ``room[i]`` bytes each (a
        multiple of 16; a group cut between pieces goes on with its txn in the next one,
        the rest padded with empty pool groups, which decode to nothing), or None if they
        do not fit: a base longer than a page, written in the holes gc leaves."""
        pieces: list[bytes] = []
        parts: list[bytes] = []
        left = room[0]
        for txn, runs in self._groups():
            i = 0
            while i < len(runs):
                if left < 32:   # no room for a group head and a run
                    pieces.append(b"".join(parts) + bytes(left))
                    if len(pieces) == len(room):
                        return None
                    parts, left = [], room[len(pieces)]
                    continue
                n = min(len(runs) - i, (left - 16) // 16)
                parts.append(_GROUP.pack(txn, n))
                parts.append(array("Q", [x for run in runs[i:i + n] for x in run]).tobytes())
                i += n
                left -= 16 + 16 * n
        pieces.append(b"".join(parts) + bytes(left))
        return pieces + [bytes(r) for r in room[len(pieces):]]

    @staticmethod
    def pointer(prev: tuple[int, int, int, int]) -> bytes:
        """What a delta or a base's later piece starts with: the previous image of the
        chain (page, checksum, txn, length)."""
        return _PREV.pack(*prev)

    def encode_delta(self, prev: tuple[int, int, int, int]) -> bytes:
        """This commit's operations, after a pointer to the previous image of the chain
        (``prev``: page, checksum, txn, length)."""
        return self.pointer(prev) + b"".join(_OP.pack(*op) for op in self.log)

    def delta_size(self) -> int:
        """Bytes of encode_delta(), counting one more take (the delta's own pages)."""
        return _PREV.size + _OP.size * (len(self.log) + 1)

    def replay(self, data: BytesLike) -> None:
        """Apply a delta's operations (after its pointer) to this list."""
        handlers: dict[int, Callable[[int, int, int], object]] = {
            TAKE: lambda a, b, c: self._remove(a, b),
            FREE: lambda a, b, c: self.pending.setdefault(a, []).extend(_checked([(b, c)])),
            RELEASE: lambda a, b, c: self.release(a),
            TRIM: lambda a, b, c: self.trim_tail(a),
            GIVE: lambda a, b, c: self.give_back(*_checked([(a, b)])[0])}
        for kind, a, b, c in _OP.iter_unpack(memoryview(data)[_PREV.size:]):
            handlers[kind](a, b, c)
        self.log.clear()

    @staticmethod
    def previous(data: BytesLike) -> tuple[int, int, int, int]:
        """The (page, checksum, txn, length) a delta points back to."""
        return _PREV.unpack_from(data, 0)

    @classmethod
    def decode(cls, *pieces: BytesLike) -> FreeList:
        """The list a base holds, from its pieces in order (after their pointers)."""
        fl = cls()
        pool: list[tuple[int, int]] = []
        for data in pieces:
            pos, end = 0, len(data)
            while pos < end:
                txn, n = _GROUP.unpack_from(data, pos)
                pos += _GROUP.size
                flat = array("Q")
                flat.frombytes(data[pos:pos + 16 * n])
                pos += 16 * n
                runs = _checked(list(zip(flat[0::2], flat[1::2])))
                if txn == 0:
                    pool.extend(runs)
                elif runs:
                    fl.pending.setdefault(txn, []).extend(runs)
        fl.pool = _coalesce(pool)
        return fl
