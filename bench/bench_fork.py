"""Forked readers: how much memory of its own each child ends with (issue 19).

    python bench/bench_fork.py                   # n = 300,000 and 1,000,000
    python bench/bench_fork.py --sizes 20000     # a smoke run
    python bench/bench_fork.py --at HEAD         # cowdb as committed, not as edited

The essay's first example of copy-on-write is fork: a child shares its
parent's memory until one of them writes. A store whose reads build Python
objects defeats it, since merely reading an object in the child changes its
reference count and the kernel copies the page it sits on.

For each engine, in one run on the same data (n keys b"key%012d", 100-byte
seeded values): the parent loads the keys, warms its cache with one pass of
gets, opens a read snapshot (cowdb: db.read(); lmdb: a read txn), then forks
--children readers. Each child draws its keys from a seeded generator (so the
harness itself allocates little), makes --gets random gets on the snapshot
taken before the fork, checks each value's length, and reports its USS: the
Private_Clean + Private_Dirty lines of /proc/self/smaps_rollup, memory no other
process shares. A child's baseline (its USS before the first get) is
reported too, so what the reads themselves cost is the difference.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from _common import fmt_num, md_table  # noqa: E402

SEED = 20261205
VALUE_SIZE = 100


def uss_kib() -> int:
    """This process's unique set size in KiB (private clean + private dirty)."""
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def child_reads(get, n: int, gets: int, seed: int, out: int) -> None:
    """Run in the forked child: random gets through ``get``; write 'base end' KiB to out."""
    base = uss_kib()
    rng = random.Random(seed)
    bad = 0
    for _ in range(gets):
        v = get(b"key%012d" % rng.randrange(n))
        if v is None or len(v) != VALUE_SIZE:
            bad += 1
    os.write(out, f"{base} {uss_kib()} {bad}".encode())


def fork_readers(get, n: int, children: int, gets: int) -> list[tuple[int, int]]:
    """Fork the readers, wait for them; [(baseline KiB, end KiB)] per child."""
    pipes, pids = [], []
    for c in range(children):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read, report, and leave without running any cleanup
            try:
                os.close(r)
                child_reads(get, n, gets, SEED + c, w)
            finally:
                os._exit(0)
        os.close(w)
        pipes.append(r)
        pids.append(pid)
    results = []
    for r, pid in zip(pipes, pids, strict=True):
        data = b""
        while chunk := os.read(r, 64):
            data += chunk
        os.close(r)
        os.waitpid(pid, 0)
        base, end, bad = map(int, data.split())
        if bad:
            raise SystemExit(f"a child read {bad} wrong values")
        results.append((base, end))
    return results


def load_values(n: int):
    rng = random.Random(SEED)
    blob = rng.randbytes(n * VALUE_SIZE)
    for i in range(n):
        yield b"key%012d" % i, blob[i * VALUE_SIZE:(i + 1) * VALUE_SIZE]


def warm(get, n: int) -> None:
    for i in range(n):
        get(b"key%012d" % i)


def run_cowdb(cowdb, folder: str, n: int, children: int, gets: int):
    db = cowdb.open(os.path.join(folder, "fork.cow"), durability="none")
    with db.write() as tx:
        for k, v in load_values(n):
            tx[k] = v
    snap = db.read()
    warm(snap.get, n)
    out = fork_readers(snap.get, n, children, gets)
    snap.close()
    db.close()
    return out


def run_lmdb(lmdb, folder: str, n: int, children: int, gets: int):
    env = lmdb.open(os.path.join(folder, "fork.lmdb"), map_size=1 << 34, sync=False)
    with env.begin(write=True) as txn:
        for k, v in load_values(n):
            txn.put(k, v)
    txn = env.begin(buffers=False)
    warm(txn.get, n)
    out = fork_readers(txn.get, n, children, gets)
    txn.abort()
    env.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="300000,1000000")
    ap.add_argument("--children", type=int, default=4)
    ap.add_argument("--gets", type=int, default=200_000)
    ap.add_argument("--at", help="measure cowdb as of this commit")
    args = ap.parse_args()
    where = _common.use_cowdb(args.at)
    import cowdb
    try:
        import lmdb
    except ImportError:
        lmdb = None
        print("lmdb is not installed (pip install lmdb): cowdb alone")
    print(f"cowdb from {where}; {args.children} children x {args.gets:,} gets each")
    rows = []
    for n in map(int, args.sizes.split(",")):
        folder = _common.fresh_dir("bench-fork-")
        try:
            engines = [("cowdb", lambda: run_cowdb(cowdb, folder, n, args.children, args.gets))]
            if lmdb is not None:
                engines.append(("lmdb", lambda: run_lmdb(lmdb, folder, n, args.children,
                                                         args.gets)))
            for name, run in engines:
                per_child = run()
                ends = [end / 1024 for _, end in per_child]
                grown = [(end - base) / 1024 for base, end in per_child]
                rows.append([f"{n:,}", name, fmt_num(max(ends)), fmt_num(max(grown))])
                print(f"n={n:,} {name}: USS per child at the end {fmt_num(max(ends))} MiB "
                      f"(grew {fmt_num(max(grown))} MiB during the gets)")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print(md_table(["n", "engine", "USS per child, MiB (worst)", "grown during gets, MiB"],
                   rows))


if __name__ == "__main__":
    main()
