"""cowdb on an S3 server on loopback, beside a local file, in one run (issue 17).

    python bench/bench_objstore.py [--keys 20000] [--commits 200] [--catchup 1000]

Starts moto's S3 server on 127.0.0.1 (LocalStack instead if
COWDB_LOCALSTACK_PYTHON names a Python with localstack-core[runtime]) and
measures, for the same data on s3:// and on a local file:

- requests per commit (PUT, GET, LIST), bytes uploaded per commit, commit latency
  (median, p90) of a 10-key commit;
- cold get (a fresh handle, empty caches: ranged GETs down the tree) and warm-cache
  get (the same keys again; 15 rounds alternating between the two: the best round,
  and the median, per get);
- a reader in a second process (spawn) catching up with ``--catchup`` new commits:
  time and requests of its refresh();
- then ``gc()`` with no grace period: the keys in the bucket before and after
  (compaction and object gc), its time and requests.

Targets: 2 PUTs per commit; warm get <= 1.5x the local file.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import cowdb  # noqa: E402
from s3server import Unavailable, localstack_server, moto_server  # noqa: E402


def _catchup_reader(url, options, start_version, ready, go, out):
    db = cowdb.open(url, options=options, readonly=True, refresh_interval=3600)
    assert db.version == start_version
    ready.set()
    go.wait()
    before = dict(db.requests.counts)
    t = time.perf_counter()
    v = db.refresh()
    with db.read() as snap:
        snap.get(b"k00000000")
    elapsed = time.perf_counter() - t
    after = db.requests.counts
    out.put((v, elapsed, {k: after[k] - before[k] for k in after}))
    db.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=20000)
    ap.add_argument("--commits", type=int, default=200)
    ap.add_argument("--gets", type=int, default=2000)
    ap.add_argument("--catchup", type=int, default=1000)
    args = ap.parse_args()
    try:
        srv = localstack_server()
    except Unavailable:
        srv = moto_server()
    rng = random.Random(7)
    data = {b"k%08d" % i: rng.randbytes(100) for i in range(args.keys)}
    keys = list(data)
    probe = rng.sample(keys, min(args.gets, len(keys)))
    tmp = tempfile.mkdtemp()
    print(f"server: {srv.name} at {srv.endpoint}; {args.keys} keys of 100 bytes")
    try:
        url = srv.url(srv.new_bucket())
        s3 = cowdb.open(url, options=srv.options(), cache_dir=os.path.join(tmp, "cache"))
        local = cowdb.open(os.path.join(tmp, "local.cow"))
        rows = {}
        for name, db in (("s3", s3), ("file", local)):
            with db.write() as tx:
                tx.update(data)
            c0 = dict(db.requests.counts) if name == "s3" else None
            up0 = db.requests.bytes_up if name == "s3" else 0
            lat = []
            for i in range(args.commits):
                batch = {k: rng.randbytes(100) for k in rng.sample(keys, 10)}
                t = time.perf_counter()
                with db.write() as tx:
                    tx.update(batch)
                lat.append(time.perf_counter() - t)
            row = {"commit_ms_median": statistics.median(lat) * 1e3,
                   "commit_ms_p90": pct(lat, 0.9) * 1e3}
            if name == "s3":
                c1 = db.requests.counts
                row["per_commit"] = {k: (c1[k] - c0[k]) / args.commits for k in c1}
                row["bytes_up_per_commit"] = (db.requests.bytes_up - up0) / args.commits
            rows[name] = row
        head = s3.version
        s3.close()
        local.close()
        # cold gets (fresh handles, empty caches), then warm gets in alternating rounds
        # (the machine is shared: alternating keeps both engines under the same load)
        handles = {"s3": cowdb.open(url, options=srv.options(), readonly=True),
                   "file": cowdb.open(os.path.join(tmp, "local.cow"), readonly=True)}
        snaps = {}
        for name, db in handles.items():
            snap = snaps[name] = db.read()
            t = time.perf_counter()
            for k in probe:
                snap[k]
            rows[name]["cold_get_us"] = (time.perf_counter() - t) / len(probe) * 1e6
            if name == "s3":
                rows[name]["cold_ranged_gets"] = db.requests.counts["get_range"]
        warm = {name: [] for name in snaps}
        for _ in range(15):
            for name, snap in snaps.items():
                t = time.perf_counter()
                for k in probe:
                    snap[k]
                warm[name].append((time.perf_counter() - t) / len(probe))
        for name in snaps:
            rows[name]["warm_get_us"] = min(warm[name]) * 1e6  # the least disturbed round
            rows[name]["warm_get_us_median"] = statistics.median(warm[name]) * 1e6
            snaps[name].close()
            handles[name].close()
        # a second process catching up with --catchup commits
        ctx = multiprocessing.get_context("spawn")
        ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
        p = ctx.Process(target=_catchup_reader, args=(url, srv.options(), head, ready, go, out))
        p.start()
        ready.wait(120)
        w = cowdb.open(url, options=srv.options())
        t = time.perf_counter()
        for i in range(args.catchup):
            with w.write() as tx:
                tx[b"c%06d" % i] = b"x"
        write_s = time.perf_counter() - t
        w.close()
        go.set()
        v, elapsed, reqs = out.get(timeout=600)
        p.join()
        assert v == head + args.catchup, (v, head)
        # object gc: compaction and deletion (no grace period: lease=0) after all that
        g = cowdb.open(url, options=srv.options(), lease=0)
        inner = g.requests.inner
        keys_before = len(inner.list_info(""))
        c0 = dict(g.requests.counts)
        t = time.perf_counter()
        rep = g.gc()
        gc_s = time.perf_counter() - t
        gc_reqs = {k: n - c0[k] for k, n in g.requests.counts.items() if n - c0[k]}
        keys_after = len(inner.list_info(""))
        assert g.check().ok
        g.close()
    finally:
        srv.stop()
    s, f = rows["s3"], rows["file"]
    print(f"\nrequests per commit (s3): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                    s["per_commit"].items() if v))
    print(f"bytes uploaded per commit (s3): {s['bytes_up_per_commit']:.0f}")
    print(f"commit latency ms, median / p90: s3 {s['commit_ms_median']:.2f} / "
          f"{s['commit_ms_p90']:.2f}; file {f['commit_ms_median']:.2f} / "
          f"{f['commit_ms_p90']:.2f}")
    print(f"cold get us: s3 {s['cold_get_us']:.1f} ({s['cold_ranged_gets']} ranged GETs "
          f"for {len(probe)} gets); file {f['cold_get_us']:.1f}")
    ratio = s["warm_get_us"] / f["warm_get_us"]
    print(f"warm get us, best of 15 alternating rounds: s3 {s['warm_get_us']:.2f}; file "
          f"{f['warm_get_us']:.2f}; ratio {ratio:.2f} (target <= 1.5: "
          f"{'met' if ratio <= 1.5 else 'NOT met'}); medians s3 "
          f"{s['warm_get_us_median']:.2f}, file {f['warm_get_us_median']:.2f}")
    puts = s["per_commit"]["put"] + s["per_commit"]["put_new"]
    print(f"PUTs per commit: {puts:.2f} (target 2: {'met' if puts <= 2.05 else 'NOT met'})")
    print(f"second-process reader catching up with {args.catchup} commits (written in "
          f"{write_s:.1f} s): {elapsed:.2f} s, requests {reqs}")
    print(f"gc() with lease=0 after all that: keys in the bucket {keys_before} -> "
          f"{keys_after} ({rep.objects_compacted} objects compacted, {rep.objects_deleted} "
          f"keys deleted) in {gc_s:.2f} s, requests {gc_reqs}")


if __name__ == "__main__":
    main()
