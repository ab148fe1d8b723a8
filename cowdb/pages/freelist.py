"""Free pages, grouped by the transaction that freed them.

A page freed by txn F was still reachable from F-1's trees. It may be
reused only once F <= the reuse bound: the oldest live reader's txn and the
last durable txn (so a crash of the current commit can fall back to a
version whose pages are intact). Reusable pages sit in ``pool``; the rest
wait in ``pending``. Nothing here touches storage: the page store writes
``encode()`` as a page run at each commit that changed it.
"""
from array import array
from struct import Struct

_GROUP = Struct("<QQ")  # txn, page count; then count u64 page numbers


class FreeList:
    __slots__ = ("pool", "pending", "changed")

    def __init__(self):
        self.pool: list[int] = []            # reusable pages, sorted descending (pop() = lowest)
        self.pending: dict[int, list[int]] = {}
        self.changed = False

    def release(self, bound: int) -> None:
        """Move every group freed at txn <= bound into the pool."""
        ready = [t for t in self.pending if t <= bound]
        if ready:
            for t in ready:
                self.pool.extend(self.pending.pop(t))
            self.pool.sort(reverse=True)
            self.changed = True

    def free(self, txn: int, pages) -> None:
        if pages:
            self.pending.setdefault(txn, []).extend(pages)
            self.changed = True

    def take(self, n: int) -> int | None:
        """Take a run of n contiguous reusable pages; None if the pool has none."""
        pool = self.pool
        if not pool:
            return None
        if n == 1:
            self.changed = True
            return pool.pop()
        # pool is descending: a run p, p+1, ..., p+n-1 appears as pool[i-n+1 .. i] reversed
        for i in range(len(pool) - 1, n - 2, -1):
            p = pool[i]
            if pool[i - n + 1] == p + n - 1:
                del pool[i - n + 1:i + 1]
                self.changed = True
                return p
        return None

    def count(self) -> int:
        return len(self.pool) + sum(len(v) for v in self.pending.values())

    def trim_tail(self, page_count: int) -> int:
        """Drop reusable pages at the end of the file; return the new page count."""
        pool = set(self.pool)
        end = page_count
        while end - 1 in pool:
            end -= 1
        if end != page_count:
            self.pool = [p for p in self.pool if p < end]
            self.changed = True
        return end

    def encoded_size(self) -> int:
        return _GROUP.size * (1 + len(self.pending)) + 8 * self.count()

    def encode(self) -> bytes:
        parts = []
        for txn, pages in [(0, self.pool), *sorted(self.pending.items())]:
            parts.append(_GROUP.pack(txn, len(pages)))
            parts.append(array("Q", pages).tobytes())
        return b"".join(parts)

    @classmethod
    def decode(cls, data) -> "FreeList":
        fl = cls()
        pos, end = 0, len(data)
        while pos < end:
            txn, n = _GROUP.unpack_from(data, pos)
            pos += _GROUP.size
            pages = array("Q")
            pages.frombytes(data[pos:pos + 8 * n])
            pos += 8 * n
            if txn == 0:
                fl.pool = sorted(pages, reverse=True)
            else:
                fl.pending[txn] = list(pages)
        return fl
