"""Delta images (issue 14 step b), A/B against another checkout, alternating in one run.

    python bench/bench_delta_ab.py --b /tmp/old          # this checkout (A) vs /tmp/old (B)
    python bench/bench_delta_ab.py --b /tmp/old --n 1000000 --rounds 3

Each measurement runs in a fresh process with PYTHONPATH set to one checkout (its C
accelerators built in place), A and B alternating round after round, so machine load
falls on both alike. n keys ``b"key%012d"`` with 100-byte random values, loaded in one
transaction into a file, then:

  w2       the file reopened; 200,000 random gets on one snapshot, twice: µs/get of the
           first pass (cold) and of the second (warm)
  history  200 versions of 10 random overwrites (durability "none"), each kept; then
           100,000 random gets at the head and at the version 100 commits older, each
           warmed by a first pass: µs/get of the second pass of each (old / head)
  commit   the CPU (process time) of those 200 no-sync commits of 10 puts, µs/commit
  growth   the file's growth per version over them (KiB; not durable commits, so a
           version's frees are not reused the way W6's durable ones are)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, random, sys, time
import cowdb
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(20240603)
keys = [b"key%012d" % i for i in range(n)]
order = keys[:]
rng.shuffle(order)
db = cowdb.open(path)
with db.write() as tx:
    tx.update({k: rng.randbytes(100) for k in order})
db.close()
out = {}
db = cowdb.open(path)
probe = [keys[rng.randrange(n)] for _ in range(200_000)]
with db.read() as s:
    for name in ("w2_cold", "w2_warm"):
        t = time.perf_counter()
        for k in probe:
            s[k]
        out[name] = (time.perf_counter() - t) / len(probe) * 1e6
size0 = os.path.getsize(path)
cpu = 0.0
for v in range(200):
    batch = {keys[rng.randrange(n)]: rng.randbytes(100) for _ in range(10)}
    t = time.process_time()
    with db.write(durability="none") as tx:
        for k, val in batch.items():
            tx[k] = val
    cpu += time.process_time() - t
out["commit_us"] = cpu / 200 * 1e6
out["growth_kib"] = (os.path.getsize(path) - size0) / 200 / 1024
head = db.version
probe = probe[:100_000]
for name, v in (("head", head), ("old", head - 100)):
    with db.at(v) as s:
        for k in probe:
            s[k]
        t = time.perf_counter()
        for k in probe:
            s[k]
        out["get_" + name] = (time.perf_counter() - t) / len(probe) * 1e6
db.close()
print(json.dumps(out))
"""


def run(tree: str, n: int) -> dict:
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "ab.cow")
    env = {**os.environ, "PYTHONPATH": tree}
    env.pop("COWDB_PURE_PYTHON", None)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), path], env=env,
                             capture_output=True, text=True, check=True, cwd=folder)
    finally:
        for f in os.listdir(folder):
            os.unlink(os.path.join(folder, f))
        os.rmdir(folder)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", default=here, help="checkout A (default: this one)")
    ap.add_argument("--b", required=True, help="checkout B (e.g. the commit before)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    res: dict[str, list[dict]] = {"A": [], "B": []}
    for r in range(args.rounds):
        for name, tree in (("A", args.a), ("B", args.b)) if r % 2 == 0 else \
                (("B", args.b), ("A", args.a)):
            res[name].append(run(tree, args.n))
            print(f"round {r + 1} {name}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in res[name][-1].items()), flush=True)
    print(f"\nn = {args.n:,}, medians of {args.rounds} rounds (A = {args.a}, B = {args.b})")
    print(f"{'':12} {'A':>9} {'B':>9} {'A/B':>6}")
    for k in res["A"][0]:
        a = statistics.median(x[k] for x in res["A"])
        b = statistics.median(x[k] for x in res["B"])
        print(f"{k:12} {a:9.2f} {b:9.2f} {a / b:6.2f}")
    for name in ("A", "B"):
        ratio = statistics.median(x["get_old"] / x["get_head"] for x in res[name])
        print(f"{name}: get 100 versions back / get at head = {ratio:.2f}")


if __name__ == "__main__":
    main()
