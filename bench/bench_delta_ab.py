"""Delta images (issue 14 step b), A/B against another checkout, alternating in one run.

    python bench/bench_delta_ab.py --b /tmp/old          # this checkout (A) vs /tmp/old (B)
    python bench/bench_delta_ab.py --b /tmp/old --n 1000000 --rounds 3

Each measurement runs in a fresh process with PYTHONPATH set to one checkout (its C
accelerators built in place), A and B alternating round after round, so machine load
falls on both alike; every figure is the best (least) of its passes and rounds. n
keys ``b"key%012d"`` with 100-byte random values, loaded in one transaction into a
file, then:

  w2       the file reopened; 200,000 random gets on one snapshot: µs/get of the first
           pass (cold), then the best of 5 more passes (warm)
  history  200 versions of 10 random overwrites (durability "none"), each kept; then
           100,000 random gets at the head and at the version 100 commits older, each
           warmed by a first pass: µs/get, the best of 5 passes of each, alternating
  commit   the CPU (process time) of those 200 no-sync commits of 10 puts, µs/commit
           (their mean in a run)
  growth   the file's growth per version over them (KiB; not durable commits, so a
           version's frees are not reused the way W6's durable ones are)
  reopened the file reopened after them: 100,000 random gets at the head, µs/get of the
           first pass (cold: each delta chain the gets reach is materialised from the
           file) and the best of 3 more (warm)

--versions sets how many versions (200 by default; more make longer chains).
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
n, path, versions = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
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
def timed(s, keys):
    t = time.perf_counter()
    for k in keys:
        s[k]
    return (time.perf_counter() - t) / len(keys) * 1e6
with db.read() as s:
    out["w2_cold"] = timed(s, probe)
    out["w2_warm"] = min(timed(s, probe) for _ in range(5))
size0 = os.path.getsize(path)
cpu = 0.0
for v in range(versions):
    batch = {keys[rng.randrange(n)]: rng.randbytes(100) for _ in range(10)}
    t = time.process_time()
    with db.write(durability="none") as tx:
        for k, val in batch.items():
            tx[k] = val
    cpu += time.process_time() - t
out["commit_us"] = cpu / versions * 1e6
out["growth_kib"] = (os.path.getsize(path) - size0) / versions / 1024
head = db.version
probe = probe[:100_000]
with db.at(head) as sh, db.at(head - 100) as so:
    timed(sh, probe)
    timed(so, probe)
    passes = [(timed(sh, probe), timed(so, probe)) for _ in range(5)]
out["get_head"] = min(h for h, _o in passes)
out["get_old"] = min(o for _h, o in passes)
db.close()
db = cowdb.open(path)
with db.read() as s:
    out["reopened_cold"] = timed(s, probe)
    out["reopened_warm"] = min(timed(s, probe) for _ in range(3))
db.close()
print(json.dumps(out))
"""


def run(tree: str, n: int, versions: int) -> dict:
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "ab.cow")
    env = {**os.environ, "PYTHONPATH": tree}
    env.pop("COWDB_PURE_PYTHON", None)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), path, str(versions)], env=env,
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
    ap.add_argument("--versions", type=int, default=200)
    args = ap.parse_args()
    res: dict[str, list[dict]] = {"A": [], "B": []}
    for r in range(args.rounds):
        for name, tree in (("A", args.a), ("B", args.b)) if r % 2 == 0 else \
                (("B", args.b), ("A", args.a)):
            res[name].append(run(tree, args.n, args.versions))
            print(f"round {r + 1} {name}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in res[name][-1].items()), flush=True)
    print(f"\nn = {args.n:,}, {args.versions} versions, best of {args.rounds} rounds "
          f"(A = {args.a}, B = {args.b})")
    print(f"{'':12} {'A':>9} {'B':>9} {'A/B':>6}")
    for k in res["A"][0]:
        a = min(x[k] for x in res["A"])
        b = min(x[k] for x in res["B"])
        print(f"{k:12} {a:9.2f} {b:9.2f} {a / b:6.2f}")
    for name in ("A", "B"):
        ratio = statistics.median(x["get_old"] / x["get_head"] for x in res[name])  # per run
        print(f"{name}: get 100 versions back / get at head = {ratio:.2f}")


if __name__ == "__main__":
    main()
