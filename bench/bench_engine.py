"""cowdb beside lmdb and sqlite3: the engine benchmark of issue 2.

    python bench/bench_engine.py                          # n = 100,000 and 1,000,000
    python bench/bench_engine.py --quick                  # n = 20,000: a smoke run
    python bench/bench_engine.py --write-docs             # also rewrite docs/benchmarks.md
    python bench/bench_engine.py --at HEAD                # cowdb as committed, not as edited
    python bench/bench_engine.py --engines cowdb --workloads W2 --sizes 1000000 \\
        --profile /tmp/prof                               # cProfile each timed cowdb section

Every engine gets a fresh database in a temporary folder on the real disk,
the same data (keys b"key%012d" in a seeded shuffled order, 100-byte seeded
random values) and the same loops, in one process. Timed sections run with
the garbage collector off, for every engine alike (time.perf_counter).
Each figure is the best of --repeat rounds (default 3); a round runs every
workload once on every engine in turn.

Workloads (n keys):
  W1  bulk load in one durable transaction, items/s: the batch API
      (cowdb tx.update(dict), lmdb cursor.putmulti, sqlite executemany) and a
      plain put loop (tx[k] = v, txn.put, execute). File size after each.
  W2  200,000 random gets (all hits) on one snapshot, us/get: the first pass
      after reopening the database (engine caches empty, OS cache warm) and
      a second pass with other keys (warm).
  W3  2,000 durable commits of 10 random overwrites, commits/s; then 2,000 more with no
      sync (cowdb durability "none", lmdb reopened with sync and metasync off, sqlite
      synchronous=OFF), CPU µs per commit (time.process_time): what a commit costs
      the engine's code, without the disk; and 2,000 more no-sync commits with the
      garbage collector on, as in a user's program (it is off in every other section).
  W4  one full ordered scan, items/s (with W4 alone, the first read after reopening:
      cold), then the same scan again; 1,000 ranges [key i, key i+100), us/range.
  W5  taking a snapshot (open + close, nothing read), us.

Engines: cowdb (durability "sync"); lmdb (map_size 4 GiB, sync=True,
metasync=True, writemap off); sqlite3 (journal_mode=WAL, synchronous=FULL,
CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID, default cache).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import shutil
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from _common import keys_values, timed  # noqa: E402

cowdb = None  # imported in main(), once --at has said which cowdb to measure
try:
    import lmdb
except ImportError:  # reported in the table
    lmdb = None

SEED = 20240601
VALUE_SIZE = 100
GETS = 200_000
COMMITS = 2_000
PER_COMMIT = 10
RANGES = 1_000
RANGE_LEN = 100
SNAPSHOTS = 100_000
HEADING = "## Engine (issue 2)"


# ---- engines ---------------------------------------------------------------
# Each engine exposes the same operations; the loops inside them are as alike
# as the APIs allow (bound methods hoisted, results consumed the same way).

class CowdbEngine:
    name = "cowdb"

    def __init__(self, folder):
        self.path = os.path.join(folder, "db.cow")
        self.db = None

    def create(self):
        self.db = cowdb.open(self.path)

    open = create

    def close(self):
        self.db.close()

    def size(self):
        return os.path.getsize(self.path)

    def load_batch(self, data):
        with self.db.write(message="load") as tx:
            tx.update(data)

    def load_loop(self, data):
        with self.db.write(message="load") as tx:
            for k, v in data.items():
                tx[k] = v

    def gets(self, keys):
        with self.db.read() as snap:
            get = snap.get
            for k in keys:
                get(k)

    def check_gets(self, keys):
        with self.db.read() as snap:
            return [snap.get(k) for k in keys]

    def commits(self, batches, durability=None):
        write = self.db.write
        for batch in batches:
            with write(durability=durability) as tx:
                for k, v in batch:
                    tx[k] = v

    def commits_nosync(self, batches):
        self.commits(batches, "none")

    def scan(self):
        c = 0
        with self.db.read() as snap:
            for _k, _v in snap.items():
                c += 1
        return c

    def ranges(self, bounds):
        total = 0
        with self.db.read() as snap:
            items = snap.items
            for a, b in bounds:
                total += len(list(items(a, b)))
        return total

    def snapshots(self, m):
        read = self.db.read
        for _ in range(m):
            with read():
                pass


class LmdbEngine:
    name = "lmdb"

    def __init__(self, folder):
        self.path = os.path.join(folder, "lmdb")
        self.env = None

    def create(self):
        self.env = lmdb.open(self.path, map_size=4 << 30, subdir=True, sync=True,
                             metasync=True, writemap=False, max_readers=126)

    open = create

    def close(self):
        self.env.close()

    def size(self):
        return os.path.getsize(os.path.join(self.path, "data.mdb"))

    def load_batch(self, data):
        with self.env.begin(write=True) as txn:
            txn.cursor().putmulti(data.items())

    def load_loop(self, data):
        with self.env.begin(write=True) as txn:
            put = txn.put
            for k, v in data.items():
                put(k, v)

    def gets(self, keys):
        with self.env.begin() as txn:
            get = txn.get
            for k in keys:
                get(k)

    def check_gets(self, keys):
        with self.env.begin() as txn:
            return [txn.get(k) for k in keys]

    def commits(self, batches):
        begin = self.env.begin
        for batch in batches:
            with begin(write=True) as txn:
                for k, v in batch:
                    txn.put(k, v)

    def commits_nosync(self, batches):
        self.env.close()  # py-lmdb sets sync at open only
        self.env = lmdb.open(self.path, map_size=4 << 30, subdir=True, sync=False,
                             metasync=False, writemap=False, max_readers=126)
        self.commits(batches)

    def scan(self):
        c = 0
        with self.env.begin() as txn:
            for _k, _v in txn.cursor():
                c += 1
        return c

    def ranges(self, bounds):
        total = 0
        with self.env.begin() as txn:
            cur = txn.cursor()
            for a, b in bounds:
                out = []
                if cur.set_range(a):
                    for k, v in cur:
                        if k >= b:
                            break
                        out.append((k, v))
                total += len(out)
        return total

    def snapshots(self, m):
        begin = self.env.begin
        for _ in range(m):
            with begin():
                pass


class SqliteEngine:
    name = "sqlite"
    GET = "SELECT v FROM kv WHERE k = ?"
    PUT = "INSERT INTO kv VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v"

    def __init__(self, folder):
        self.path = os.path.join(folder, "db.sqlite")
        self.conn = None

    def open(self):
        self.conn = c = sqlite3.connect(self.path, isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")

    def create(self):
        self.open()
        self.conn.execute("CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

    def close(self):
        self.conn.close()  # the last connection checkpoints and removes the WAL

    def size(self):
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal")
                   if os.path.exists(p))

    def load_batch(self, data):
        c = self.conn
        c.execute("BEGIN")
        c.executemany("INSERT INTO kv VALUES (?, ?)", data.items())
        c.execute("COMMIT")

    def load_loop(self, data):
        c = self.conn
        c.execute("BEGIN")
        ex = c.execute
        for k, v in data.items():
            ex("INSERT INTO kv VALUES (?, ?)", (k, v))
        c.execute("COMMIT")

    def gets(self, keys):
        c = self.conn
        c.execute("BEGIN")
        ex, q = c.cursor().execute, self.GET
        for k in keys:
            ex(q, (k,)).fetchone()
        c.execute("COMMIT")

    def check_gets(self, keys):
        ex = self.conn.execute
        return [(ex(self.GET, (k,)).fetchone() or (None,))[0] for k in keys]

    def commits(self, batches):
        ex, q = self.conn.execute, self.PUT
        for batch in batches:
            ex("BEGIN")
            for kv in batch:
                ex(q, kv)
            ex("COMMIT")

    def commits_nosync(self, batches):
        self.conn.execute("PRAGMA synchronous=OFF")
        self.commits(batches)

    def scan(self):
        c = 0
        for _k, _v in self.conn.execute("SELECT k, v FROM kv ORDER BY k"):
            c += 1
        return c

    def ranges(self, bounds):
        c = self.conn
        c.execute("BEGIN")
        ex = c.cursor().execute
        q = "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k"
        total = 0
        for ab in bounds:
            total += len(ex(q, ab).fetchall())
        c.execute("COMMIT")
        return total

    def snapshots(self, m):
        # A sqlite read transaction starts at its first read: BEGIN alone takes nothing.
        ex = self.conn.execute
        for _ in range(m):
            ex("BEGIN")
            ex("SELECT 1 FROM kv LIMIT 1").fetchone()
            ex("COMMIT")


ENGINES = {"cowdb": CowdbEngine, "lmdb": LmdbEngine, "sqlite": SqliteEngine}


# ---- workloads -------------------------------------------------------------
# key, label, unit, higher is better, target: (peer, factor) or ("abs", bound)
ROWS = [
    ("w1_batch", "W1 load, batch API", "items/s", True, ("lmdb", 1.0)),
    ("w1_loop", "W1 load, put loop", "items/s", True, ("lmdb", 1.0)),
    ("w2_cold", "W2 get, 1st pass after reopen", "µs/get", False, ("lmdb", 1.0)),
    ("w2_warm", "W2 get, 2nd pass (warm)", "µs/get", False, ("lmdb", 1.0)),
    ("w3", "W3 durable commit of 10 puts", "commits/s", True, ("lmdb", 2.0)),
    ("w3_cpu", "W3 no-sync commit of 10 puts, CPU", "µs", False, ("abs", 150.0)),
    ("w3_cpu_gc", "W3 no-sync commit, CPU, collector on", "µs", False, ("abs", 150.0)),
    ("w4_scan", "W4 full ordered scan", "items/s", True, ("lmdb", 1.0)),
    ("w4_rescan", "W4 the same scan again", "items/s", True, ("lmdb", 1.0)),
    ("w4_range", "W4 range of 100 keys", "µs/range", False, ("lmdb", 1.0)),
    ("w5", "W5 snapshot open+close", "µs", False, ("abs", 1.0)),
    ("size", "file size after W1 batch", "MB", False, ("lmdb", 1.2)),
    ("size_loop", "file size after W1 loop", "MB", False, ("lmdb", 1.2)),
]
WORKLOADS = ("W1", "W2", "W3", "W4", "W5")


class Profiles:
    """Wrap timed cowdb sections in cProfile or pyinstrument; save the reports."""

    def __init__(self, folder, kind):
        self.folder, self.kind = folder, kind
        if folder:
            os.makedirs(folder, exist_ok=True)

    def run(self, engine, tag, fn, *args, clock=time.perf_counter, collector=False):
        if not self.folder or engine.name != "cowdb":
            return timed(fn, *args, clock=clock, collector=collector)
        if self.kind == "pyinstrument":
            from pyinstrument import Profiler
            prof = Profiler(interval=0.0002)
            prof.start()
            try:
                out = timed(fn, *args, clock=clock, collector=collector)
            finally:
                prof.stop()
            with open(os.path.join(self.folder, tag + ".txt"), "w") as f:
                f.write(prof.output_text(unicode=True, color=False, show_all=False))
            return out
        prof = cProfile.Profile()
        prof.enable()
        try:
            out = timed(fn, *args, clock=clock, collector=collector)
        finally:
            prof.disable()
        prof.dump_stats(os.path.join(self.folder, tag + ".prof"))
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(40)
        with open(os.path.join(self.folder, tag + ".txt"), "w") as f:
            f.write(s.getvalue())
        return out


def plan(n, seed):
    """The operations of every workload for size n, drawn once, shared by the engines."""
    data = keys_values(n, seed, VALUE_SIZE)
    keys = list(data)
    rng = random.Random(seed + 1)
    gets_cold = rng.choices(keys, k=GETS)
    gets_warm = rng.choices(keys, k=GETS)
    batches = [[(k, rng.randbytes(VALUE_SIZE)) for k in rng.choices(keys, k=PER_COMMIT)]
               for _ in range(COMMITS)]
    span = min(RANGE_LEN, n)
    starts = [rng.randrange(n - span + 1) for _ in range(RANGES)]
    bounds = [(b"key%012d" % i, b"key%012d" % (i + span)) for i in starts]
    nosync = [[(k, rng.randbytes(VALUE_SIZE)) for k in rng.choices(keys, k=PER_COMMIT)]
              for _ in range(COMMITS)]  # (drawn last: the draws above stay as they were)
    nosync_gc = [[(k, rng.randbytes(VALUE_SIZE)) for k in rng.choices(keys, k=PER_COMMIT)]
                 for _ in range(COMMITS)]
    return data, gets_cold, gets_warm, batches, bounds, span, nosync, nosync_gc


def run_engine(cls, n, ops, workloads, prof, log):
    """Every selected workload once on one engine, in fresh databases."""
    data, gets_cold, gets_warm, batches, bounds, span, nosync, nosync_gc = ops
    tag = f"{n}_{cls.name}"
    res = {}
    root = tempfile.mkdtemp(prefix=f"bench-{cls.name}-", dir=os.environ.get("BENCH_DIR"))

    def load(kind):
        folder = os.path.join(root, kind)
        os.makedirs(folder)
        e = cls(folder)
        e.create()
        dt, _ = prof.run(e, f"{tag}_W1_{kind}", getattr(e, "load_" + kind), data)
        e.close()
        return dt, e.size() / 1e6, e

    try:
        if "W1" in workloads:
            dt, res["size_loop"], _ = load("loop")
            shutil.rmtree(os.path.join(root, "loop"))
            res["w1_loop"] = n / dt
            log(f"  {cls.name:7} W1 loop   {n / dt:12,.0f} items/s  {res['size_loop']:.1f} MB")
        dt, size, e = load("batch")  # this database serves every later workload
        if "W1" in workloads:
            res["w1_batch"], res["size"] = n / dt, size
            log(f"  {cls.name:7} W1 batch  {n / dt:12,.0f} items/s  {size:.1f} MB")
        e.open()  # a fresh handle: engine caches empty, the OS page cache warm
        if "W2" in workloads:
            dt, _ = prof.run(e, f"{tag}_W2_cold", e.gets, gets_cold)
            res["w2_cold"] = dt / len(gets_cold) * 1e6
            dt, _ = prof.run(e, f"{tag}_W2_warm", e.gets, gets_warm)
            res["w2_warm"] = dt / len(gets_warm) * 1e6
            log(f"  {cls.name:7} W2        {res['w2_cold']:8.2f} / {res['w2_warm']:.2f} µs/get")
        if "W4" in workloads:
            dt, c = prof.run(e, f"{tag}_W4_scan", e.scan)
            if c != n:
                raise AssertionError(f"{cls.name}: the scan saw {c} keys, not {n}")
            res["w4_scan"] = n / dt
            dt, c = prof.run(e, f"{tag}_W4_rescan", e.scan)
            res["w4_rescan"] = n / dt
            dt, c = prof.run(e, f"{tag}_W4_range", e.ranges, bounds)
            if c != span * len(bounds):
                raise AssertionError(f"{cls.name}: ranges returned {c} items, not "
                                     f"{span * len(bounds)}")
            res["w4_range"] = dt / len(bounds) * 1e6
            log(f"  {cls.name:7} W4        {res['w4_scan']:12,.0f} items/s  "
                f"(again {res['w4_rescan']:,.0f})  "
                f"{res['w4_range']:.1f} µs/range")
        sample = gets_warm[:1000]
        if e.check_gets(sample) != [data[k] for k in sample]:
            raise AssertionError(f"{cls.name}: gets return wrong values")
        if "W5" in workloads:
            dt, _ = prof.run(e, f"{tag}_W5", e.snapshots, SNAPSHOTS)
            res["w5"] = dt / SNAPSHOTS * 1e6
            log(f"  {cls.name:7} W5        {res['w5']:8.2f} µs")
        if "W3" in workloads:
            dt, _ = prof.run(e, f"{tag}_W3", e.commits, batches)
            res["w3"] = len(batches) / dt
            k, v = batches[-1][-1]
            if e.check_gets([k]) != [v]:
                raise AssertionError(f"{cls.name}: the last overwrite is not visible")
            log(f"  {cls.name:7} W3        {res['w3']:12,.0f} commits/s")
            dt, _ = prof.run(e, f"{tag}_W3_nosync", e.commits_nosync, nosync,
                             clock=time.process_time)
            res["w3_cpu"] = dt / len(nosync) * 1e6
            k, v = nosync[-1][-1]
            if e.check_gets([k]) != [v]:
                raise AssertionError(f"{cls.name}: the last no-sync overwrite is not visible")
            log(f"  {cls.name:7} W3 no-sync {res['w3_cpu']:10.1f} µs CPU/commit")
            dt, _ = prof.run(e, f"{tag}_W3_nosync_gc", e.commits_nosync, nosync_gc,
                             clock=time.process_time, collector=True)
            res["w3_cpu_gc"] = dt / len(nosync_gc) * 1e6
            log(f"  {cls.name:7} W3 no-sync, collector on {res['w3_cpu_gc']:10.1f} µs CPU/commit")
        e.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res


def merge(best, res):
    """Keep the best figure of each row over rounds (sizes are the same every round)."""
    higher = {key: hi for key, _l, _u, hi, _t in ROWS}
    for key, v in res.items():
        if key not in best or (v > best[key] if higher[key] else v < best[key]):
            best[key] = v


# ---- the table -------------------------------------------------------------
def fmt(x, unit):
    if x is None:
        return "–"
    if unit in ("items/s", "commits/s"):
        return f"{x:,.0f}"
    if unit == "MB":
        return f"{x:.1f}"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def verdict(row, r):
    key, _label, unit, higher, (peer, factor) = row
    me = r.get("cowdb", {}).get(key)
    if me is None:
        return "", ""
    if peer == "abs":
        target = f"≤ {factor:g} {unit}"
        ok = me <= factor
        gap = me / factor
    else:
        other = r.get(peer, {}).get(key)
        target = f"{'≥' if higher else '≤'} {factor:g}× {peer}"
        if other is None:
            return target, "n/a"
        ok = me >= factor * other if higher else me <= factor * other
        gap = factor * other / me if higher else me / (factor * other)
    if ok:
        return target, "yes"
    word = "smaller" if unit == "MB" else "faster"
    return target, f"**no**: {gap:.2f}× {word} needed" if gap < 2 else f"**no**: {gap:.1f}× {word} needed"


def table(n, r, engines):
    peers = [e for e in engines if e != "cowdb"]
    head = ["workload (n = {:,})".format(n), "unit", *engines,
            *[f"cowdb/{p}" for p in peers], "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS:
        key, label, unit, _higher, _t = row
        vals = [r.get(e, {}).get(key) for e in engines]
        if all(v is None for v in vals):
            continue
        me = r.get("cowdb", {}).get(key)
        ratios = []
        for p in peers:
            other = r.get(p, {}).get(key)
            ratios.append("–" if me is None or not other else f"{me / other:.2f}×")
        target, met = verdict(row, r)
        lines.append("| " + " | ".join([label, unit, *[fmt(v, unit) for v in vals], *ratios,
                                         target, met]) + " |")
    return "\n".join(lines)


def w5_line(results):
    sizes = [n for n in results if "w5" in results[n].get("cowdb", {})]
    if len(sizes) < 2:
        return ""
    lo, hi = min(sizes), max(sizes)
    a, b = results[lo]["cowdb"]["w5"], results[hi]["cowdb"]["w5"]
    indep = "yes" if b <= 1.25 * a else "**no**"
    return (f"W5 independent of n: cowdb takes a snapshot in {a:.2f} µs at n = {lo:,} and "
            f"{b:.2f} µs at n = {hi:,} ({b / a:.2f}×): {indep} (counted as independent "
            f"within 1.25×).")


def notes(args):
    out = [
        "Ratios are cowdb's figure over the peer's in the row's unit: above 1 is better for "
        "items/s and commits/s, below 1 is better for µs and MB.",
        "W1 batch compares the batch APIs (cowdb `tx.update(dict)`, which sorts the batch; "
        "lmdb `cursor.putmulti`; sqlite `executemany`), W1 loop the plain put loops "
        "(`tx[k] = v`, `txn.put`, `execute`); each load is one durable transaction into a "
        "fresh database, commit and fsync included, opening excluded.",
        "W2 'after reopen' is the first 200,000 gets on a freshly opened handle (engine caches "
        "empty, file in the OS page cache); 'warm' is a second 200,000 on the same handle.",
        "W3 runs last, on the database loaded by W1 batch; W4 and W5 run before it on the same "
        "handle as W2. Each range is [key i, key i+100), materialised as a list of pairs.",
        "W3 no-sync runs after W3 (other draws of keys and values): CPU time per commit "
        "(time.process_time, the process's own; the writes go to the OS page cache), cowdb "
        "with durability \"none\", lmdb reopened with sync=False and metasync=False, "
        "sqlite with synchronous=OFF. Its target is issue 14's bound, 150 µs. 'Collector "
        "on' runs 2,000 more such commits with the garbage collector on, as in a user's "
        "program (every other timed section has it off).",
        "W5 for sqlite is BEGIN + `SELECT 1 FROM kv LIMIT 1` + COMMIT, since a sqlite read "
        "transaction starts at its first read.",
        "File sizes are taken after the database is closed (sqlite then has no WAL); cowdb's "
        "4 KiB `-lock` file and lmdb's `lock.mdb` are not counted.",
        f"Each figure is the best of {1 if args.profile else max(1, args.repeat)} rounds; a "
        "round runs every workload once on every engine in turn, from fresh databases, so "
        "a burst of load from other processes hits the engines alike rather than one of them.",
        "The garbage collector is off in every timed section but 'collector on', for every "
        "engine alike. No workload was bounded: every one ran in full at every size.",
    ]
    if args.profile:
        out.append("**This run profiled cowdb's sections: its timings are inflated by the "
                   "profiler and are not comparable with the peers'.**")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000",
                    help="comma-separated key counts (default 100000,1000000)")
    ap.add_argument("--quick", action="store_true", help="n = 20,000 only: a smoke run")
    ap.add_argument("--engines", default="cowdb,lmdb,sqlite")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="subset of W1..W5 (the W1 batch load always runs, to fill the database)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds; each figure is the best round's (default 3; 1 when profiling)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--write-docs", action="store_true",
                    help=f"rewrite the section '{HEADING}' of docs/benchmarks.md")
    ap.add_argument("--profile", metavar="DIR",
                    help="profile each timed cowdb section into DIR (timings become inflated)")
    ap.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile")
    ap.add_argument("--at", metavar="COMMIT",
                    help="measure cowdb as of this commit (exported with git archive), not "
                         "the work tree")
    args = ap.parse_args(argv)
    global cowdb
    wall0, cpu0 = time.perf_counter(), time.process_time()
    origin = _common.use_cowdb(args.at)
    import cowdb

    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    engines = [e.strip() for e in args.engines.split(",")]
    for e in engines:
        if e not in ENGINES:
            ap.error(f"unknown engine {e!r}; choose from {', '.join(ENGINES)}")
    if "lmdb" in engines and lmdb is None:
        print("lmdb is not installed (pip install lmdb): skipping it", file=sys.stderr)
        engines.remove("lmdb")
    workloads = {w.strip().upper() for w in args.workloads.split(",")}
    prof = Profiles(args.profile, args.profiler)
    repeat = 1 if args.profile else max(1, args.repeat)
    mach = _common.machine()
    src = os.path.dirname(os.path.dirname(os.path.abspath(cowdb.__file__)))
    print(f"cowdb from {src} ({origin}); lmdb "
          f"{'.'.join(map(str, lmdb.version())) if lmdb else '-'} (py-lmdb "
          f"{getattr(lmdb, '__version__', '-')}); sqlite {sqlite3.sqlite_version}")
    load0 = os.getloadavg()[0]
    print(f"{mach['date']}; {mach['nproc']} CPUs ({mach['cpu']}); {mach['python']}; "
          f"{mach['os']}; load average {load0:.2f}", flush=True)

    results = {}
    for n in sizes:
        print(f"\nn = {n:,}: preparing data", flush=True)
        ops = plan(n, args.seed)
        results[n] = {name: {} for name in engines}
        for r in range(repeat):  # rounds: every engine once per round, so noise is shared
            if repeat > 1:
                print(f" round {r + 1} of {repeat}", flush=True)
            for name in engines:
                merge(results[n][name], run_engine(ENGINES[name], n, ops, workloads, prof,
                                                   lambda s: print(s, flush=True)))
        del ops

    load1 = os.getloadavg()[0]
    took = (f"{(time.perf_counter() - wall0) / 60:.1f} min wall, "
            f"{(time.process_time() - cpu0) / 60:.1f} min CPU")
    out = []
    for n in sizes:
        out.append(table(n, results[n], engines))
    w5 = w5_line(results)
    print()
    print("\n\n".join(out))
    if w5:
        print("\n" + w5)
    for line in notes(args):
        print("- " + line)
    if args.profile:
        print(f"\nprofiles of cowdb's timed sections are in {args.profile}/")

    if args.write_docs:
        lm = ".".join(map(str, lmdb.version())) if lmdb else "not installed"
        body = [
            "cowdb beside lmdb and sqlite3 on the same data in one process: n keys "
            "`b\"key%012d\"` in a seeded shuffled order with 100-byte seeded random values. "
            "Produced by `bench/bench_engine.py`; see its docstring for the exact loops.",
            "",
            f"- Command: `{_common.command_line()}` ({took})",
            f"- Date: {mach['date']}",
            f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['os']}, {mach['python']}; "
            f"1-minute load average {load0:.2f} at the start and {load1:.2f} at the end, "
            f"niceness {os.nice(0)} (a load above the CPU count means other processes "
            f"competed for the CPUs: trust the ratios more than the absolute figures)",
            f"- Engines: cowdb {cowdb.__version__}, {origin} (durability \"sync\"); "
            f"LMDB {lm} via py-lmdb {getattr(lmdb, '__version__', '-')} (map_size 4 GiB, "
            f"sync, metasync, no writemap); SQLite {sqlite3.sqlite_version} (WAL, "
            f"synchronous=FULL, `WITHOUT ROWID`)",
            "",
        ]
        for t in out:
            body += [t, ""]
        if w5:
            body += [w5, ""]
        body += ["- " + line for line in notes(args)]
        _common.write_section(HEADING, "\n".join(body))
        print(f"\nwrote the section '{HEADING}' of {os.path.relpath(_common.DOCS)}")


if __name__ == "__main__":
    main()
