"""Where the bytes of one version go: every image a commit writes, by kind.

    python bench/bench_version_cost.py                 # n = 100,000, 200 versions
    python bench/bench_version_cost.py --n 1000000

The W6 workload of bench_history.py (n keys b"key%012d" in one load, then
versions of 10 random overwrites with 100-byte values, every version kept,
durable commits). For every image a commit queues the script records its kind
(data leaf, data branch, their delta images, catalog leaf, catalog branch, free
list, overflow), its bytes, the allocation units it takes, and whether those units
were reused free space or file growth; and prints the mean per version.
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


def measure(n: int, versions: int, seed: int = 20240603) -> None:
    rng = random.Random(seed)
    keys = [b"key%012d" % i for i in range(n)]
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "db.cow")
    db = cowdb.open(path)
    order = keys[:]
    rng.shuffle(order)
    with db.write(message="load") as tx:
        tx.update({k: rng.randbytes(100) for k in order})
    store: PageStore = db._store
    rows: dict = defaultdict(lambda: [0, 0, 0, 0, 0])  # images, bytes, units, fresh, reused
    state = {"catalog": False, "fresh_from": 0}
    real_write, real_allocate = store.write, store.allocate

    def allocate(npages: int) -> int:
        return real_allocate(npages)

    def write(page: int, image) -> None:
        kind = KINDS.get(HEADER.unpack_from(image, 0)[1], "?")
        if kind in ("leaf", "branch", "leaf delta", "branch delta"):
            kind = ("catalog " if state["catalog"] else "") + kind
        units = store.pages_for(len(image))
        row = rows[kind]
        row[0] += 1
        row[1] += len(image)
        row[2] += units
        if page >= state["fresh_from"]:
            row[3] += units
        else:
            row[4] += units
        real_write(page, image)

    store.write, store.allocate = write, allocate
    # the catalog tree is written by publish()'s caller after the data tree: mark it
    from cowdb.history import catalog as catmod
    real_settle = catmod.Catalog.settle

    def settle(self, room):
        state["catalog"] = True
        return real_settle(self, room)

    catmod.Catalog.settle = settle
    real_begin = store.begin

    def begin(txn, bound):
        state["catalog"] = False
        state["fresh_from"] = store.page_count
        return real_begin(txn, bound)

    store.begin = begin
    size0 = os.path.getsize(path)
    count0 = store.page_count
    for _ in range(versions):
        with db.write(message="v") as tx:
            for k in rng.sample(keys, 10):
                tx[k] = rng.randbytes(100)
    growth = (os.path.getsize(path) - size0) / versions
    units = (store.page_count - count0) / versions
    unit = store.unit
    print(f"n = {n:,}, {versions} versions of 10 overwrites, unit {unit} B")
    print(f"file growth {growth / 1024:.1f} KiB/version; high-water mark "
          f"{units * unit / 1024:.1f} KiB/version")
    print(f"{'image':16} {'per version':>11} {'bytes used':>10} {'taken':>9} {'fill':>5} "
          f"{'growth':>9} {'reused':>9}")
    tot = [0, 0, 0, 0, 0]
    for kind in sorted(rows):
        row = rows[kind]
        tot = [a + b for a, b in zip(tot, row)]
        _line(kind, row, versions, unit)
    _line("total", tot, versions, unit)
    db.close()


def _line(kind: str, row, versions: int, unit: int) -> None:
    images, used, units, fresh, reused = (x / versions for x in row)
    print(f"{kind:16} {images:11.2f} {used / 1024:8.2f} K {units * unit / 1024:7.2f} K "
          f"{used / max(units * unit, 1):5.0%} {fresh * unit / 1024:7.2f} K "
          f"{reused * unit / 1024:7.2f} K")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--versions", type=int, default=200)
    a = ap.parse_args()
    measure(a.n, a.versions)
