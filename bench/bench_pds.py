"""Benchmark cowdb.pds against pyrsistent, immutables and sortedcontainers.

    python bench/bench_pds.py [--n 100000] [--repeat 5]

Every figure is the best of ``--repeat`` runs (time.perf_counter), per
operation, in microseconds.  Maps hold ``--n`` random integer keys; each
per-key operation runs over 1,000 keys drawn from them (or new ones).
"speedup" is pyrsistent's time over cowdb's (>= 2 is the target);
"x immutables" is cowdb's time over immutables' (<= 2 is the target).
"""

import argparse
import random
import time

import immutables
import pyrsistent
from sortedcontainers import SortedDict

from cowdb.pds import PMap, PSortedMap, PVector

K = 1000  # keys per timed loop


def best(fn, repeat, per=K):
    """Best time of ``repeat`` runs of ``fn``, in microseconds per operation."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) / per * 1e6


def map_ops(make, n, repeat, keys, probe, fresh):
    """Timings of the map operations for one implementation."""
    d = dict.fromkeys(keys, 0)
    m = make(d)
    other = m.set(probe[0], 1).set(probe[0], 0)  # equal, one path apart

    def get():
        g = m.get
        for k in probe:
            g(k)

    def set_existing():
        s = m.set
        for k in probe:
            s(k, 1)

    def set_new():
        s = m.set
        for k in fresh:
            s(k, 1)

    def delete():
        dl = m.delete if hasattr(m, "delete") else m.remove
        for k in probe:
            dl(k)

    def batch():
        if hasattr(m, "mutate"):
            with m.mutate() as mm:
                for k in probe:
                    mm[k] = 1
            mm.finish()
        else:
            e = m.evolver()
            for k in probe:
                e[k] = 1
            e.persistent()

    def iterate():
        for _ in m.items():
            pass

    return {
        "get": best(get, repeat),
        "set existing key": best(set_existing, repeat),
        "set new key": best(set_new, repeat),
        "delete": best(delete, repeat),
        "batch of 1,000 sets (per batch)": best(batch, repeat, 1),
        f"build from dict of {n:,} (per build)": best(lambda: make(d), repeat, 1),
        f"iterate {n:,} items (per pass)": best(iterate, repeat, 1),
        "equality, one path apart (per ==)": best(lambda: m == other, repeat, 1),
    }


def vector_ops(make, n, repeat, idx):
    v = make(range(n))

    def append():
        w = v
        for i in range(K):
            w = w.append(i)

    def set_():
        s = v.set
        for i in idx:
            s(i, 0)

    def index():
        for i in idx:
            v[i]

    return {"append": best(append, repeat), "set": best(set_, repeat), "index": best(index, repeat)}


def sorted_ops(make, setter, copy, repeat, keys, probe):
    m = make(dict.fromkeys(keys, 0))

    def get():
        for k in probe:
            m[k]

    def set_():
        for k in probe:
            setter(m, k)

    return {"get": best(get, repeat), "set existing key": best(set_, repeat),
            "copy (per copy)": best(lambda: copy(m), repeat, 1)}


def table(title, columns, rows, ratios):
    names = list(columns)
    print(f"\n{title}")
    head = f"| operation | " + " | ".join(f"{c} (µs)" for c in names) + " | " + " | ".join(r for r, _ in ratios) + " |"
    print(head)
    print("|" + "---|" * (1 + len(names) + len(ratios)))
    for op in rows:
        cells = [f"{columns[c][op]:.3f}" if columns[c][op] < 10 else f"{columns[c][op]:,.0f}" for c in names]
        rs = [f"{fn(columns, op):.2f}" for _, fn in ratios]
        print(f"| {op} | " + " | ".join(cells) + " | " + " | ".join(rs) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    rnd = random.Random(6)
    keys = rnd.sample(range(10**12), a.n + K)
    keys, fresh = keys[:a.n], keys[a.n:]
    probe = rnd.sample(keys, K)

    cols = {
        "cowdb PMap": map_ops(PMap, a.n, a.repeat, keys, probe, fresh),
        "pyrsistent": map_ops(pyrsistent.pmap, a.n, a.repeat, keys, probe, fresh),
        "immutables": map_ops(immutables.Map, a.n, a.repeat, keys, probe, fresh),
    }
    table(f"Maps, {a.n:,} int keys", cols, list(cols["cowdb PMap"]), [
        ("speedup vs pyrsistent", lambda c, op: c["pyrsistent"][op] / c["cowdb PMap"][op]),
        ("x immutables", lambda c, op: c["cowdb PMap"][op] / c["immutables"][op]),
    ])

    idx = [rnd.randrange(a.n) for _ in range(K)]
    cols = {"cowdb PVector": vector_ops(PVector, a.n, a.repeat, idx),
            "pyrsistent": vector_ops(pyrsistent.pvector, a.n, a.repeat, idx)}
    table(f"Vectors, {a.n:,} elements", cols, list(cols["cowdb PVector"]), [
        ("speedup vs pyrsistent", lambda c, op: c["pyrsistent"][op] / c["cowdb PVector"][op])])

    cols = {
        "cowdb PSortedMap": sorted_ops(PSortedMap, lambda m, k: m.set(k, 1), PSortedMap, a.repeat, keys, probe),
        "SortedDict": sorted_ops(SortedDict, lambda m, k: m.__setitem__(k, 1), SortedDict.copy, a.repeat, keys, probe),
    }
    table(f"Sorted maps, {a.n:,} int keys (SortedDict sets in place, PSortedMap makes a new version)",
          cols, list(cols["cowdb PSortedMap"]), [
              ("x SortedDict", lambda c, op: c["cowdb PSortedMap"][op] / c["SortedDict"][op])])


if __name__ == "__main__":
    main()
