"""Benchmark cowdb.pds against pyrsistent, immutables and sortedcontainers.

    PYTHONPATH=. python bench/bench_pds.py [--n 100000] [--repeat 5] [--only maps|vectors|sorted]

Every figure is the best of ``--repeat`` runs (time.perf_counter), per
operation, in microseconds (the best of 4 x ``--repeat`` for the loops of
1,000 operations); the implementations take turns in each run.  Maps hold ``--n`` random integer keys; each
per-key operation runs over 1,000 keys drawn from them (or new ones), after the
other implementations ran (so it starts with cold CPU caches), except "get, warm",
which reads the same 1,000 keys twice and times the second pass.
"speedup" is pyrsistent's time over cowdb's (>= 2 is the target);
"x immutables" is cowdb's time over immutables' (<= 2 is the target).

PMap is timed twice: on the C accelerator (cowdb/pds/_champ_c.c, when
built: ``python setup.py build_ext --inplace``; PMap's base type and trie
operations in C) and on the pure-Python reference (pmap._PyMap's methods
and _champ's Python trie operations), switched with ``_champ.select``
between turns, outside the timed calls; each on a map its own trie built
(C nodes for the accelerator, lists for Python).

The cyclic garbage collector is off while an operation is measured, as
``timeit`` does: what a collection costs depends on everything else alive in
the process (here the other implementations' maps of 100,000 keys), and with
it on, the collections that pyrsistent's allocations set off made its build
and its batches 3-5x slower than in a process of its own, a cost of this
benchmark rather than of pyrsistent.
"""

import argparse
import os
import random
import sys
import time

import immutables
import pyrsistent
from sortedcontainers import SortedDict

from cowdb.pds import PMap, PSortedMap, PVector, _champ

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import gc_paused  # noqa: E402

K = 1000  # keys per timed loop


def measure(columns, repeat, before=None):
    """{column: {op: µs per operation}}, best of ``repeat`` runs.

    Loops of 1,000 operations are short, so they get four times as many
    runs: on a busy machine the best of 5 alone still catches preemptions.

    ``columns`` maps each implementation to {op: (fn, operations per call)}.
    The implementations take turns inside every round, so a load spike on a
    shared machine hits them alike instead of skewing one column, and the
    one going first (after the others evicted its data from the caches)
    changes from round to round.
    ``before`` maps a column to what to call, untimed, before each of its turns.
    An op given as (fn, per, True) is run once untimed right before its timed
    call: "warm", its data in the CPU caches, where the others start cold.
    """
    before = before or {}
    best = {c: {op: float("inf") for op in ops} for c, ops in columns.items()}
    names = list(columns)
    for op in columns[names[0]]:
        per = columns[names[0]][op][1]
        with gc_paused():  # one collection between operations, untimed; off while measured
            for r in range(repeat * 4 if per > 1 else repeat):
                for c in names[r % len(names):] + names[:r % len(names)]:
                    fn, _, *warm = columns[c][op]
                    if c in before:
                        before[c]()
                    if warm:
                        fn()
                    t = time.perf_counter()
                    fn()
                    best[c][op] = min(best[c][op], (time.perf_counter() - t) / per * 1e6)
    return best


def map_ops(make, n, keys, probe, fresh):
    """The map operations to time for one implementation."""
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
        "get": (get, K),
        "get, warm (the same keys read just before)": (get, K, True),
        "set existing key": (set_existing, K),
        "set new key": (set_new, K),
        "delete": (delete, K),
        "batch of 1,000 sets (per batch)": (batch, 1),
        f"build from dict of {n:,} (per build)": (lambda: make(d), 1),
        f"iterate {n:,} items (per pass)": (iterate, 1),
        "equality, one path apart (per ==)": (lambda: m == other, 1),
    }


def vector_ops(make, n, idx):
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

    return {"append": (append, K), "set": (set_, K), "index": (index, K)}


def sorted_ops(make, setter, copy, keys, probe):
    m = make(dict.fromkeys(keys, 0))

    def get():
        for k in probe:
            m[k]

    def set_():
        for k in probe:
            setter(m, k)

    return {"get": (get, K), "set existing key": (set_, K), "copy (per copy)": (lambda: copy(m), 1)}


def table(title, columns, rows, ratios):
    names = list(columns)
    print(f"\n{title}")
    head = f"| operation | " + " | ".join(f"{c} (µs)" for c in names) + " | " + " | ".join(r for r, _ in ratios) + " |"
    print(head)
    print("|" + "---|" * (1 + len(names) + len(ratios)))
    for op in rows:
        cells = [f"{columns[c][op]:.3f}" if columns[c][op] < 10 else f"{columns[c][op]:,.0f}" for c in names]
        rs = [f"{fn(columns, op):.3g}" for _, fn in ratios]
        print(f"| {op} | " + " | ".join(cells) + " | " + " | ".join(rs) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", choices=["maps", "vectors", "sorted"], help="run one table only")
    a = ap.parse_args()
    rnd = random.Random(6)
    keys = rnd.sample(range(10**12), a.n + K)
    keys, fresh = keys[:a.n], keys[a.n:]
    probe = rnd.sample(keys, K)

    if a.only in (None, "maps"):
        map_table(a, keys, probe, fresh)
    if a.only in (None, "vectors"):
        idx = [rnd.randrange(a.n) for _ in range(K)]
        vector_table(a, idx)
    if a.only in (None, "sorted"):
        sorted_table(a, keys, probe)


def map_table(a, keys, probe, fresh):
    default = _champ.implementation()
    ours = {"cowdb PMap, C": "c", "cowdb PMap, Python": "python"}
    if "c" not in _champ.IMPLEMENTATIONS:
        print("(the C accelerator is not built: python setup.py build_ext --inplace)")
        del ours["cowdb PMap, C"]

    def ours_ops(impl):
        _champ.select(impl)   # each column's map made by its own trie: C nodes or lists
        return map_ops(PMap, a.n, keys, probe, fresh)

    cols = measure({
        **{name: ours_ops(impl) for name, impl in ours.items()},
        "pyrsistent": map_ops(pyrsistent.pmap, a.n, keys, probe, fresh),
        "immutables": map_ops(immutables.Map, a.n, keys, probe, fresh),
    }, a.repeat, before={name: (lambda impl=impl: _champ.select(impl)) for name, impl in ours.items()})
    _champ.select(default)
    ratios = []
    for name in ours:
        short = name.split(", ")[1]
        ratios += [
            (f"{short}: speedup vs pyrsistent", lambda c, op, name=name: c["pyrsistent"][op] / c[name][op]),
            (f"{short}: x immutables", lambda c, op, name=name: c[name][op] / c["immutables"][op]),
        ]
    table(f"Maps, {a.n:,} int keys", cols, list(cols["pyrsistent"]), ratios)


def vector_table(a, idx):
    cols = measure({"cowdb PVector": vector_ops(PVector, a.n, idx),
                    "pyrsistent": vector_ops(pyrsistent.pvector, a.n, idx)}, a.repeat)
    table(f"Vectors, {a.n:,} elements", cols, list(cols["cowdb PVector"]), [
        ("speedup vs pyrsistent", lambda c, op: c["pyrsistent"][op] / c["cowdb PVector"][op])])


def sorted_table(a, keys, probe):
    cols = measure({
        "cowdb PSortedMap": sorted_ops(PSortedMap, lambda m, k: m.set(k, 1), PSortedMap, keys, probe),
        "SortedDict": sorted_ops(SortedDict, lambda m, k: m.__setitem__(k, 1), SortedDict.copy, keys, probe),
    }, a.repeat)
    table(f"Sorted maps, {a.n:,} int keys (SortedDict sets in place, PSortedMap makes a new version)",
          cols, list(cols["cowdb PSortedMap"]), [
              ("x SortedDict", lambda c, op: c["cowdb PSortedMap"][op] / c["SortedDict"][op])])


if __name__ == "__main__":
    main()
