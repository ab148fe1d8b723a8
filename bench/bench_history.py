"""cowdb's history beside doltlite: the history benchmark of issue 3.

    python bench/bench_history.py                  # n = 100,000 and 1,000,000
    python bench/bench_history.py --quick          # n = 20,000, fewer commits: a smoke run
    python bench/bench_history.py --write-docs     # also rewrite its section of docs/benchmarks.md
    python bench/bench_history.py --at HEAD        # cowdb as committed, not as edited
    python bench/bench_history.py --sizes 1000000 --profile /tmp/prof   # cProfile cowdb's parts

Both engines get the same data (n keys b"key%012d" in a seeded shuffled order,
100-byte seeded random values), loaded in one transaction and committed, then
the same operations, in one process:

  W6        200 durable versions, each overwriting 10 distinct random keys, every
            version kept: bytes of file growth per version (run once: sizes do
            not depend on load).
  commits   --rounds blocks of 500 durable commits of 10 overwrites each, every
            one kept: commits/s (best block) and file growth per commit (all blocks).
            doltlite: one SQL transaction of upserts, then dolt_commit('-A','-m',msg).
  time      5,000 random gets on the latest version and on the version 100 commits
  travel    back, the same keys: µs/get, and old over latest. cowdb: db.read() and
            db.at(v), one snapshot per pass; doltlite: SELECT v FROM kv WHERE k = ?
            and SELECT v FROM dolt_at_kv(commit) WHERE k = ?, in one read transaction.
  open old  opening an old version (issue 19): for each of the AT_VERSIONS versions
            before the one TRAVEL_BACK back, open it, get one key, close: µs each.
            cowdb: with db.at(v) as s: s.get(k); doltlite: SELECT v FROM
            dolt_at_kv(commit) WHERE k = ? (it has no handle on a version: the query is
            its open). Also cowdb's db.at(v) + close alone, on versions this handle has
            opened, and the first at(v) of each version after reopening the file.
  restore   to the version 200 commits back, 20 times a round: ms (median of a round,
            best round). cowdb: db.restore(v), a new durable commit; doltlite:
            dolt_reset('--hard', commit), moving main back (it is moved forward again,
            untimed, after each). Also without fsync, as a diagnostic.
  gc        at the largest n (1,000,000): on a copy of the database with all its
            history, set_retention(keep_last=10) (untimed), then gc(): seconds per GB
            of live data marked and pages reclaimed per second; best of 3 copies. cowdb only.

Each timed figure is the best of --rounds rounds (default 5); within a round
every engine runs the same step in turn (the order alternates between rounds),
so a burst of load from other processes hits both alike. The garbage collector
is off in timed sections.
"""
from __future__ import annotations

import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from _common import (fmt_num, gc_paused, judge, md_table, median, timed,  # noqa: E402
                     turns)

sqlite3 = _common.import_doltlite()  # before anything else imports sqlite3
cowdb = None  # imported in main(), once --at has said which cowdb to measure

SEED = 20240603
VALUE_SIZE = 100
PER_COMMIT = 10
W6_VERSIONS = 200
COMMITS = 500
GETS = 5_000
TRAVEL_BACK = 100
AT_VERSIONS = 100
RESTORE_BACK = 200
RESTORES = 20
GC_KEEP_LAST = 10
GC_BUDGET_S = 180.0
GC_RUNS = 3
HEADING = "## History (issue 3)"
KIB = 1024


# ---- engines ---------------------------------------------------------------------------

class Cowdb(_common.CowdbKV):
    passes = 5  # time-travel passes a round (a pass of doltlite's old gets takes seconds)
    travel_keys = GETS

    def commits(self, batches):
        write = self.db.write
        for i, batch in enumerate(batches):
            with write(message=f"commit {i}") as tx:
                for k, v in batch:
                    tx[k] = v

    def written(self, m):
        """Mean data-tree pages and bytes written by the last m commits (their stats)."""
        cs = list(self.db.log(limit=m))
        return (sum(c.stats.pages_written for c in cs) / m,
                sum(c.stats.bytes_written for c in cs) / m)

    def back(self, d):
        """The version d commits before the head of main."""
        return list(self.db.log(limit=d + 1))[d].version

    def gets(self, keys):
        with self.db.read() as snap:
            get = snap.get
            for k in keys:
                get(k)

    def gets_at(self, version, keys):
        with self.db.at(version) as snap:
            get = snap.get
            for k in keys:
                get(k)

    def values_at(self, version, keys):
        with self.db.at(version) as snap:
            return [snap.get(k) for k in keys]

    def open_get(self, versions, key):
        at = self.db.at
        for v in versions:
            with at(v) as snap:
                snap.get(key)

    def opens(self, versions):
        at = self.db.at
        for v in versions:
            at(v).close()

    def reopen(self):
        self.db.close()
        self.db = cowdb.open(self.path)

    def restore(self, version):
        self.db.restore(version)

    def after_restore(self):
        pass


class Doltlite(_common.Doltlite):
    passes = 1
    travel_keys = GETS // 5  # ~1 ms a get on an old version: 1,000 keys are plenty

    def commits(self, batches):
        commit = self.commit
        for i, batch in enumerate(batches):
            commit(batch, f"commit {i}")

    def back(self, d):
        return self.ex("SELECT commit_hash FROM dolt_log LIMIT 1 OFFSET ?", (d,)).fetchone()[0]

    def gets(self, keys):
        ex = self.ex
        ex("BEGIN")
        q = "SELECT v FROM kv WHERE k = ?"
        for k in keys:
            ex(q, (k,)).fetchone()
        ex("COMMIT")

    def _gets_at(self, pairs):
        """A get on an old version for each (commit, key), in one read transaction."""
        ex = self.ex
        ex("BEGIN")
        q = "SELECT v FROM dolt_at_kv(?) WHERE k = ?"
        for pair in pairs:
            ex(q, pair).fetchone()
        ex("COMMIT")

    def gets_at(self, commit, keys):
        self._gets_at([(commit, k) for k in keys])

    def values_at(self, commit, keys):
        return [self.get_at(commit, k) for k in keys]

    def open_get(self, commits, key):
        self._gets_at([(c, key) for c in commits])

    def restore(self, commit):
        if not hasattr(self, "_tip"):
            self._tip = self.head()
        self.ex("SELECT dolt_reset('--hard', ?)", (commit,)).fetchall()

    def after_restore(self):
        self.ex("SELECT dolt_reset('--hard', ?)", (self._tip,)).fetchall()



# ---- the run ---------------------------------------------------------------------------

def batches_of(rng, keys, count):
    return [[(k, rng.randbytes(VALUE_SIZE)) for k in rng.sample(keys, PER_COMMIT)]
            for _ in range(count)]


def run_size(n, args, log):
    """Every step at one size; returns {engine: {figure: value}} and notes."""
    t0 = time.perf_counter()
    rounds = 1 if args.profile else args.rounds
    prof = args.prof
    w6, commits = (100, 150) if args.quick else (W6_VERSIONS, COMMITS)
    data = _common.keys_values(n, args.seed, VALUE_SIZE)
    keys = list(data)
    rng = random.Random(args.seed + 1)
    folder = _common.fresh_dir("bench-history-")
    os.makedirs(os.path.join(folder, "c"))
    engines = [Cowdb(cowdb, os.path.join(folder, "c"))]
    if sqlite3 is not None:
        os.makedirs(os.path.join(folder, "d"))
        engines.append(Doltlite(sqlite3, os.path.join(folder, "d")))
    res = {e.name: {} for e in engines}

    def run(e, tag, fn, *a):  # cowdb's timed calls are profiled under --profile
        return prof.timed(f"{n}_{tag}" if e.name == "cowdb" else None, fn, *a)

    for e in engines:
        dt, _ = timed(e.load, data)
        res[e.name]["load_s"] = dt
        log(f"  {e.name:8} load {dt:6.1f} s, {e.size() / 1e6:.1f} MB")
    del data
    _common.freeze_heap()

    log(f"  [{time.perf_counter() - t0:.0f} s]")
    # W6: growth per version (sizes, so one run)
    batches = batches_of(rng, keys, w6)
    for e in engines:
        s0 = e.size()
        dt, _ = timed(e.commits, batches)
        res[e.name]["w6"] = (e.size() - s0) / w6
        if e.name == "cowdb":
            res[e.name]["w6_pages"], res[e.name]["w6_bytes"] = e.written(w6)
        log(f"  {e.name:8} W6 {w6} versions: {res[e.name]['w6'] / KIB:.1f} KiB/version "
            f"({w6 / dt:.0f} commits/s)")

    log(f"  [{time.perf_counter() - t0:.0f} s]")
    # versioned commits: rounds of `commits` durable commits
    grown = {e.name: 0 for e in engines}
    for r in range(rounds):
        batches = batches_of(rng, keys, commits)
        for e in turns(engines, r):
            s0 = e.size()
            with gc_paused():
                dt, _ = run(e, "commits", e.commits, batches)
            grown[e.name] += e.size() - s0
            cps = commits / dt
            res[e.name]["cps"] = max(res[e.name].get("cps", 0), cps)
            log(f"  {e.name:8} round {r + 1}: {commits} commits {cps:6.0f}/s, "
                f"{(e.size() - s0) / commits / KIB:.1f} KiB/commit")
    for e in engines:
        res[e.name]["growth"] = grown[e.name] / (commits * rounds)
    last = batches[-1][-1]

    log(f"  [{time.perf_counter() - t0:.0f} s]")
    # time travel: gets on the latest version and on the one TRAVEL_BACK commits older
    gets = rng.choices(keys, k=GETS)
    old = {e.name: e.back(TRAVEL_BACK) for e in engines}
    for e in engines:  # the two engines hold the same content at both points
        if e.values_at(e.back(0), [last[0]]) != [last[1]]:
            raise AssertionError(f"{e.name}: the last overwrite is not visible")
        if e.name != "cowdb":
            want = engines[0].values_at(old["cowdb"], gets[:200])
            if e.values_at(old[e.name], gets[:200]) != want:
                raise AssertionError(f"{e.name}: the version {TRAVEL_BACK} back differs "
                                     "from cowdb's")
    for r in range(rounds):
        for e in turns(engines, r):
            lat, bk = [], []
            ks = gets[:e.travel_keys]
            with gc_paused():
                for i in range(e.passes):  # latest and old alternate, so drift hits both
                    dt, _ = run(e, "get_latest", e.gets, ks)
                    lat.append(dt / len(ks) * 1e6)
                    dt, _ = run(e, "get_old", e.gets_at, old[e.name], ks)
                    bk.append(dt / len(ks) * 1e6)
            latest, back = min(lat), min(bk)
            d = res[e.name]
            d.setdefault("pairs", []).extend(b / a for a, b in zip(lat, bk))
            d["get_latest"] = min(d.get("get_latest", latest), latest)
            d["get_old"] = min(d.get("get_old", back), back)
            log(f"  {e.name:8} round {r + 1}: get {latest:7.2f} µs latest, {back:7.2f} µs "
                f"{TRAVEL_BACK} back (best of {e.passes} passes each)")
    for e in engines:  # old / latest of passes run back to back: robust to load drift
        d = res[e.name]
        d["travel_ratio"] = median(d.pop("pairs"))

    log(f"  [{time.perf_counter() - t0:.0f} s]")
    # opening old versions: at(v), one get, close
    olds = {e.name: [e.back(TRAVEL_BACK + i) for i in range(AT_VERSIONS)] for e in engines}
    for r in range(rounds):
        for e in turns(engines, r):
            with gc_paused():
                dt, _ = run(e, "open_get", e.open_get, olds[e.name], gets[0])
            us = dt / AT_VERSIONS * 1e6
            res[e.name]["open_get"] = min(res[e.name].get("open_get", us), us)
            log(f"  {e.name:8} round {r + 1}: open an old version, get, close {us:8.2f} µs")
    cow = engines[0]
    for r in range(rounds):
        cow.reopen()  # a fresh handle: no version opened yet
        with gc_paused():
            dt, _ = run(cow, "at_first", cow.opens, olds["cowdb"])
            first = dt / AT_VERSIONS * 1e6
            dt, _ = run(cow, "at_again", cow.opens, olds["cowdb"])
            again = dt / AT_VERSIONS * 1e6
        d = res["cowdb"]
        d["at_first"] = min(d.get("at_first", first), first)
        d["at_again"] = min(d.get("at_again", again), again)
        log(f"  cowdb    round {r + 1}: at(v) + close {first:.2f} µs first after reopening, "
            f"{again:.2f} µs again")

    log(f"  [{time.perf_counter() - t0:.0f} s]")
    # restore to the version RESTORE_BACK commits back
    target = {e.name: e.back(RESTORE_BACK) for e in engines}
    for fsync, key in ((True, "restore"), (False, "restore_nosync")):
        for r in range(rounds):
            for e in turns(engines, r):
                e.no_fsync(not fsync)
                try:
                    ts = []
                    with gc_paused():
                        for i in range(RESTORES):
                            dt, _ = run(e, key, e.restore, target[e.name])
                            ts.append(dt * 1e3)
                            e.after_restore()
                finally:
                    e.no_fsync(False)
                m = median(ts)
                res[e.name][key] = min(res[e.name].get(key, m), m)
                log(f"  {e.name:8} round {r + 1}: restore {RESTORE_BACK} back "
                    f"{'' if fsync else '(no fsync) '}median {m:.3f} ms, min {min(ts):.3f} ms")
    for e in engines:  # the restored content is the target's
        e.restore(target[e.name])
        if e.values_at(e.back(0), gets[:200]) != e.values_at(target[e.name], gets[:200]):
            raise AssertionError(f"{e.name}: restore did not bring back the old content")
        e.after_restore()

    log(f"  [{time.perf_counter() - t0:.0f} s]")
    cow = engines[0]
    versions = len(list(cow.db.log()))
    for e in engines:
        e.close()
    notes = {"versions": versions}
    if n == args.gc_n:
        gc_run(cow.path, folder, min(rounds, GC_RUNS), res["cowdb"], notes, prof, log)
    shutil.rmtree(folder, ignore_errors=True)
    _common.thaw_heap()
    log(f"  n = {n:,} took {time.perf_counter() - t0:.0f} s")
    return res, notes


def gc_run(path, folder, rounds, res, notes, prof, log):
    """gc() on copies of the database at ``path``, whose history is all kept so far."""
    t_start = time.perf_counter()
    runs = []
    for r in range(rounds):
        if time.perf_counter() - t_start > GC_BUDGET_S / 2 and runs:
            log(f"  gc: stopping after {len(runs)} runs to stay within {GC_BUDGET_S:.0f} s")
            break
        p = os.path.join(folder, f"gc{r}.cow")
        shutil.copyfile(path, p)
        db = cowdb.open(p)
        try:
            db.set_retention(keep_last=GC_KEEP_LAST)
            with gc_paused():
                dt, rep = prof.timed("gc", db.gc)
            if r == 0:
                st = db.stats()
                notes["gc_live"] = st.live_bytes
                notes["gc_file_before"] = rep.file_bytes_before
                notes["gc_file_after"] = rep.file_bytes_after
                notes["gc_dropped"] = rep.versions_dropped
                notes["gc_bytes"] = rep.bytes_freed
        finally:
            db.close()
            for q in (p, p + "-lock"):
                if os.path.exists(q):
                    os.remove(q)
        runs.append(dt)
        log(f"  gc round {r + 1}: {dt:.2f} s, {rep.versions_dropped} versions dropped, "
            f"{rep.bytes_freed / 1e6:.1f} MB freed")
    best = min(runs)
    res["gc_s"] = best
    res["gc_s_per_gb"] = best / (notes["gc_live"] / 1e9)
    res["gc_mb_per_s"] = notes["gc_bytes"] / 1e6 / best
    notes["gc_runs"] = len(runs)
    notes["gc_wall"] = time.perf_counter() - t_start


# ---- the table -------------------------------------------------------------------------
# key, label, unit, scale, lower is better, target(n, res) -> (text, bound) or None

def _peer_or_none(res, key):
    return res.get("doltlite", {}).get(key)


ROWS = [
    ("w6", "W6 file growth per version (10 overwrites each)", "KiB", 1 / KIB, True,
     lambda n, r: ("≤ 10 KiB", 10 * KIB)),
    ("w6_pages", "… pages written per version (data tree, `commit_info().stats`)", "pages", 1,
     True, None),
    ("w6_bytes", "… bytes of those page images per version", "KiB", 1 / KIB, True, None),
    ("cps", "durable commits of 10 overwrites", "commits/s", 1, False, None),
    ("growth", "file growth per commit (same)", "KiB", 1 / KIB, True,
     lambda n, r: ("≤ 10 KiB (as W6)", 10 * KIB)),
    ("get_latest", "get on the latest version", "µs", 1, True, None),
    ("get_old", f"get on the version {TRAVEL_BACK} commits back", "µs", 1, True, None),
    ("travel_ratio", "time travel: old get / latest get (median of passes)", "×", 1, True,
     lambda n, r: ("≤ 1.2×", 1.2)),
    ("open_get", "open an old version, get one key, close", "µs", 1, True, None),
    ("at_again", "… `db.at(v)` + close alone, a version this handle opened before", "µs", 1,
     True, lambda n, r: ("≤ 5 µs", 5)),
    ("at_first", "… `db.at(v)` + close, first of each version after reopening", "µs", 1,
     True, lambda n, r: ("≤ 5 µs", 5)),
    ("restore", f"restore to {RESTORE_BACK} commits back", "ms", 1, True,
     lambda n, r: ("≤ 0.5 ms", 0.5)),
    ("restore_nosync", "restore, no fsync (durability \"none\")", "ms", 1, True,
     lambda n, r: ("(≤ 0.5 ms)", 0.5)),
    ("gc_s_per_gb", "gc: seconds per GB of live data marked", "s/GB", 1, True, None),
    ("gc_mb_per_s", "gc: MB reclaimed per second", "MB/s", 1, False, None),
]


def table(n, res):
    head = [f"figure (n = {n:,})", "unit", "cowdb", "doltlite", "cowdb/doltlite",
            "target (cowdb)", "met"]
    rows = []
    for key, label, unit, scale, lower, target in ROWS:
        me = res.get("cowdb", {}).get(key)
        if me is None:
            continue
        peer = _peer_or_none(res, key)
        ratio = f"{fmt_num(me / peer)}×" if peer else "–"
        if target:
            text, bound = target(n, res)
            met = judge(me, bound, lower)
        else:
            text, met = "– (side by side)" if peer is not None else "–", ""
        rows.append([label, unit, fmt_num(me * scale), fmt_num(peer * scale if peer else None),
                     ratio, text, met])
    return md_table(head, rows)


def notes_lines(args, results, notes, sizes):
    rounds = 1 if args.profile else args.rounds
    out = [
        "Ratios are cowdb's figure over doltlite's in the row's unit: below 1 is better for "
        "KiB, µs and ms, above 1 for commits/s.",
        "Every commit is durable: cowdb `durability=\"sync\"` (one fsync per commit); "
        "doltlite at its defaults (synchronous=FULL: one fdatasync for the SQL COMMIT and one "
        "for `dolt_commit`). An fsync on this VM takes ~0.3–2 ms, an fdatasync ~0.1–0.7 ms.",
        "File growth is the database file's size after minus before, over the commits "
        "(cowdb's 4 KiB -lock file is not counted; doltlite has no sidecar files). W6 is over "
        "the first versions after the load; 'per commit' over every versioned-commit block.",
        f"Time travel: {GETS:,} random keys (all hits) for cowdb, the first {GETS // 5:,} of "
        "them for doltlite (its old-version gets take ~1 ms each), the same keys for the latest "
        "and the old version; passes alternate latest, old (cowdb 5 of each a round, "
        "doltlite 1); the ratio is the median over all rounds of old / latest within one pass, "
        "so a load burst between passes does not skew it; cowdb opens one snapshot per pass "
        "(`db.read()` / "
        "`db.at(v)`); doltlite has "
        "no handle on an old version, so each get is `SELECT v FROM dolt_at_kv(commit) WHERE "
        "k = ?` inside one read transaction. Caches are warm after the first round.",
        "Restore: cowdb `db.restore(v)` makes a new durable commit whose content is v's "
        "(history kept); doltlite has no such call, so it is `dolt_reset('--hard', commit)`, "
        "which moves main back (it is reset forward again, untimed, before the next one). "
        "The 'no fsync' row opens cowdb with `durability=\"none\"` (commits atomic and "
        "visible at once, synced by a later durable commit) and sets doltlite `PRAGMA "
        "synchronous=OFF`: what the operation costs besides the disk flush.",
        f"Each timed figure is the best of {rounds} rounds (restore: the best round's median "
        f"of {RESTORES}); both engines run each step in turn within a round, the order "
        "alternating; the garbage collector is off in timed sections.",
    ]
    dl = [(n, results[n]["doltlite"]) for n in sizes if "cps" in results[n].get("doltlite", {})]
    if dl:
        out.append("The issue quotes doltlite at ~660 commits/s at 100k and ~260/s at 1M, 84–110 "
                   "KiB per commit and ~2 ms per restore, measured elsewhere; here it did "
                   + "; ".join(f"{d['cps']:.0f} commits/s, {d['growth'] / KIB:.0f} KiB/commit "
                               f"and {d['restore']:.2f} ms per restore at n = {n:,}"
                               for n, d in dl)
                   + ". Compare cowdb with the doltlite column of the same run.")
    gc_sizes = [n for n in sizes if "gc_live" in notes.get(n, {})]
    for n in gc_sizes:
        g = notes[n]
        out.append(
            f"GC at n = {n:,}: a copy of the database after all the steps above "
            f"({g['versions']:,} versions on main, {g['gc_file_before'] / 1e6:.0f} MB), "
            f"`set_retention(keep_last={GC_KEEP_LAST})`, then `gc()` (timed): it dropped "
            f"{g['gc_dropped']:,} versions and freed {g['gc_bytes'] / 1e6:.0f} MB; live data marked {g['gc_live'] / 1e6:.0f} "
            f"MB (`stats().live_bytes` after); file {g['gc_file_before'] / 1e6:.0f} → "
            f"{g['gc_file_after'] / 1e6:.0f} MB. Best of {g['gc_runs']} runs on fresh copies "
            f"(bounded to {GC_BUDGET_S:.0f} s in all; the runs took {g['gc_wall']:.0f} s "
            "with the copies and stats). GB = 10⁹ bytes. No doltlite figure: its `dolt_gc()` "
            "has no retention rule to drop old commits by, so there is nothing alike to time.")
    if args.profile:
        out.append("**This run profiled cowdb's timed sections: its timings are inflated.**")
    return out


def main(argv=None):
    ap = _common.peer_args(__doc__, HEADING, 5,
                           "n = 20,000, 100 + 150 commits, 1 round: a smoke run")
    ap.add_argument("--gc-n", type=int, default=None,
                    help="the size at which gc runs (default: the largest)")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    global cowdb, sqlite3
    cowdb, sqlite3, info = _common.peer_start(args, sqlite3)
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    if args.quick:
        args.rounds = 1
    if args.gc_n is None:
        args.gc_n = max(sizes)
    results, notes = {}, {}
    args.prof = _common.ProfileSet(args.profile)
    for n in sizes:
        print(f"\nn = {n:,}", flush=True)
        results[n], notes[n] = run_size(n, args, lambda s: print(s, flush=True))
    args.prof.save()
    _common.peer_finish(
        args, HEADING,
        "cowdb's history (issue 3) beside doltlite (Dolt's prolly-tree versioning inside "
        "SQLite) on the same data in one process: n keys `b\"key%012d\"` in a seeded shuffled "
        "order with 100-byte seeded random values, loaded in one transaction. Produced by "
        "`bench/bench_history.py`; its docstring gives the exact steps.",
        info, [table(n, results[n]) for n in sizes], notes_lines(args, results, notes, sizes))


if __name__ == "__main__":
    main()
