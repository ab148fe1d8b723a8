"""Where the bytes of one version go: every image a commit writes, by kind.

    python bench/bench_version_cost.py                 # n = 100,000, 200 versions
    python bench/bench_version_cost.py --n 1000000
    python bench/bench_version_cost.py --after 30000 --versions 5000   # steady state

The W6 workload of bench_history.py (n keys b"key%012d" in one load, then
versions of 10 random overwrites with 100-byte values, every version kept,
durable commits). For every image a commit queues the script records its kind
(data leaf, data branch, their delta images, catalog leaf, catalog branch, free
list, overflow), its bytes, the allocation units it takes, and whether those units
were reused free space or file growth; and prints the mean per version.

``--after N`` commits N versions of the same kind first, not counted: W6 (and the
default here) measures the first versions after the load, when most leaves are
written for the first time since it and so as one small delta on their full image;
after tens of thousands the chains have reached their bound everywhere and a
version also pays its share of the full images that consolidate them.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cowdb  # noqa: E402
from cowdb.pages.page import (  # noqa: E402
    BRANCH,
    BRANCH_DELTA,
    FREELIST,
    HEADER,
    LEAF,
    LEAF_DELTA,
    OVERFLOW,
)
from cowdb.pages.store import PageStore  # noqa: E402

KINDS = {LEAF: "leaf", BRANCH: "branch", OVERFLOW: "overflow", FREELIST: "free list",
         LEAF_DELTA: "leaf delta", BRANCH_DELTA: "branch delta"}


class ImageLog:
    """Counts every image the store of ``db`` writes from now on, by kind: images, bytes,
    units taken, and of those units how many grew the file and how many were reused.

    Images are counted from the store's write queue as each commit flushes it, whoever
    queued them (the C write pass queues data images without ``PageStore.write``); the
    ones queued before the catalog settles are the data tree's."""

    def __init__(self, db) -> None:
        from cowdb.history import catalog as catmod
        store: PageStore = db._store
        self.store, self.unit = store, store.unit
        # images, bytes, units, fresh units, reused units
        self.rows: dict = defaultdict(lambda: [0, 0, 0, 0, 0])
        state = {"data": set(), "fresh_from": store.page_count}
        real_flush, real_begin = store._flush, store.begin
        self._real_settle = real_settle = catmod.Catalog.settle
        self._catmod = catmod

        def flush() -> None:
            for page, image in store._queue.items():
                kind = KINDS.get(HEADER.unpack_from(image, 0)[1], "?")
                if kind in ("leaf", "branch", "leaf delta", "branch delta") and \
                        page not in state["data"]:
                    kind = "catalog " + kind
                units = store.pages_for(len(image))
                row = self.rows[kind]
                row[0] += 1
                row[1] += len(image)
                row[2] += units
                row[3 if page >= state["fresh_from"] else 4] += units
            real_flush()

        def settle(cat, room):
            # the catalog tree is written by publish()'s caller after the data tree
            state["data"] = set(store._queue)
            return real_settle(cat, room)

        def begin(txn, bound):
            state["data"] = set()
            state["fresh_from"] = store.page_count
            return real_begin(txn, bound)

        store._flush, store.begin = flush, begin
        catmod.Catalog.settle = settle

    def close(self) -> None:
        """Stop counting: the catalog's class gets its own settle back."""
        self._catmod.Catalog.settle = self._real_settle

    def report(self, versions: int, per: str = "version", scale: int = 1024) -> None:
        """The mean per version of each kind, and the total (in KiB, or B if scale=1)."""
        unit = self.unit
        print(f"{'image':16} {'per ' + per:>12} {'bytes used':>10} {'taken':>9} {'fill':>5} "
              f"{'growth':>9} {'reused':>9}")
        tot = [0, 0, 0, 0, 0]
        for kind in sorted(self.rows):
            row = self.rows[kind]
            tot = [a + b for a, b in zip(tot, row)]
            _line(kind, row, versions, unit, scale)
        _line("total", tot, versions, unit, scale)


def measure(n: int, versions: int, seed: int = 20240603, after: int = 0) -> None:
    rng = random.Random(seed)
    keys = [b"key%012d" % i for i in range(n)]
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "db.cow")
    db = cowdb.open(path)
    order = keys[:]
    rng.shuffle(order)
    with db.write(message="load") as tx:
        tx.update({k: rng.randbytes(100) for k in order})
    for _ in range(after):
        with db.write(message="v") as tx:
            for k in rng.sample(keys, 10):
                tx[k] = rng.randbytes(100)
    log = ImageLog(db)
    store = log.store
    size0 = os.path.getsize(path)
    count0 = store.page_count
    for _ in range(versions):
        with db.write(message="v") as tx:
            for k in rng.sample(keys, 10):
                tx[k] = rng.randbytes(100)
    growth = (os.path.getsize(path) - size0) / versions
    units = (store.page_count - count0) / versions
    unit = store.unit
    print(f"n = {n:,}, {versions} versions of 10 overwrites"
          f"{f' after {after:,} others' if after else ''}, unit {unit} B")
    print(f"file growth {growth / 1024:.1f} KiB/version; high-water mark "
          f"{units * unit / 1024:.1f} KiB/version")
    log.report(versions)
    log.close()
    db.close()


def _line(kind: str, row, versions: int, unit: int, scale: int) -> None:
    images, used, units, fresh, reused = (x / versions for x in row)
    u = "K" if scale == 1024 else "B"
    print(f"{kind:16} {images:12.2f} {used / scale:8.2f} {u} {units * unit / scale:7.2f} {u} "
          f"{used / max(units * unit, 1):5.0%} {fresh * unit / scale:7.2f} {u} "
          f"{reused * unit / scale:7.2f} {u}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--versions", type=int, default=200)
    ap.add_argument("--after", type=int, default=0,
                    help="versions committed first and not counted (default 0)")
    a = ap.parse_args()
    measure(a.n, a.versions, after=a.after)
