"""`cowdb serve` beside datasette's JSON API: the server benchmark of issue 15.

    python bench/bench_server.py                  # 4,000 GETs, 600 commits a round, 3 rounds
    python bench/bench_server.py --quick          # a smoke run
    python bench/bench_server.py --write-docs     # also rewrite its docs/benchmarks.md section

Same process model, same client, same machine, one run: each server is one
uvicorn process on a free loopback port (`python -m cowdb serve` and `datasette
serve`), started before the first round and warmed up with 200 requests. The
client is one asyncio process with httpx, --concurrency workers (default 8) each
sending its next request when the previous one answered; requests/s is the count
over the wall time of the round, p50/p99 the per-request latencies.

  GET     one key: cowdb GET /api/v1/keys/{key} (JSON, with ETag) of 10,000 keys;
          datasette GET /bench/kv/{pk}.json (one row by primary key) of the same
          10,000 rows in SQLite. Random keys, the same sequence for both.
  commit  cowdb only (datasette 0.65 has no write API): POST /api/v1/commits with
          10 puts of 100-byte values and If-Match: * (each commit is durable: one
          fsync).

Rounds alternate which server goes first; the table shows the best round. Both
servers run in open mode (no authentication), so neither pays for a token.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

N_KEYS = 10_000


def wait_port(port: int, proc, what: str) -> None:
    import socket
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen within 60 s")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, paths, n: int, concurrency: int, method="GET", body=None,
               headers=None) -> dict:
    import httpx
    lat: list[float] = []
    it = iter(range(n))

    async def worker(client):
        for i in it:
            p = paths(i)
            t = time.perf_counter()
            r = await client.request(method, p, json=body(i) if body else None,
                                     headers=headers)
            lat.append(time.perf_counter() - t)
            if r.status_code >= 400:
                raise RuntimeError(f"{method} {p}: {r.status_code} {r.text[:200]}")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat.sort()
    return {"rps": n / wall, "p50": statistics.median(lat) * 1e3,
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, "n": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gets", type=int, default=4000)
    ap.add_argument("--commits", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--at", default=None, help="measure cowdb as of this commit")
    args = ap.parse_args()
    if args.quick:
        args.gets, args.commits, args.rounds = 500, 60, 1
    source = C.use_cowdb(args.at)
    import cowdb
    cowdb_path = os.path.dirname(os.path.dirname(os.path.abspath(cowdb.__file__)))
    folder = C.fresh_dir("bench-server-")
    rng = random.Random(15)
    keys = [b"key%08d" % i for i in range(N_KEYS)]
    vals = [bytes(rng.getrandbits(8) for _ in range(100)).hex()[:100].encode() for _ in keys]
    db_path = os.path.join(folder, "bench.cow")
    with cowdb.open(db_path) as db, db.write("load") as tx:
        tx.update(zip(keys, vals))
    sq_path = os.path.join(folder, "bench.db")
    con = sqlite3.connect(sq_path)
    con.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO kv VALUES (?, ?)", [(k.decode(), v.decode())
                                                     for k, v in zip(keys, vals)])
    con.commit()
    con.close()
    env = dict(os.environ, PYTHONPATH=cowdb_path + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                ""))
    procs = {}
    cport = free_port()
    procs["cowdb"] = subprocess.Popen(
        [sys.executable, "-m", "cowdb", "serve", db_path, "--port", str(cport),
         "--log-level", "warning"], env=env, stderr=subprocess.DEVNULL)
    wait_port(cport, procs["cowdb"], "cowdb serve")
    urls = {"cowdb": f"http://127.0.0.1:{cport}"}
    datasette = shutil.which("datasette")
    skip_note = None
    if datasette is None:
        skip_note = ("datasette is not installed (python3 -m pip install datasette): its side "
                     "is skipped")
        print(skip_note, file=sys.stderr)
    else:
        dport = free_port()
        procs["datasette"] = subprocess.Popen(
            [datasette, "serve", sq_path, "--port", str(dport), "--setting",
             "default_cache_ttl", "0"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            wait_port(dport, procs["datasette"], "datasette")
            urls["datasette"] = f"http://127.0.0.1:{dport}"
        except RuntimeError as e:
            skip_note = f"datasette did not start ({e}): its side is skipped"
            print(skip_note, file=sys.stderr)
    order = [rng.randrange(N_KEYS) for _ in range(args.gets)]
    get_path = {"cowdb": lambda i: f"/api/v1/keys/{keys[order[i]].decode()}",
                "datasette": lambda i: f"/bench/kv/{keys[order[i]].decode()}.json"}
    best: dict = {}
    try:
        engines = list(urls)
        for name in engines:   # warm up
            asyncio.run(load(urls[name], lambda i: get_path[name](i % args.gets), 200,
                             args.concurrency))
        for r in range(args.rounds):
            for name in C.turns(engines, r):
                res = asyncio.run(load(urls[name], get_path[name], args.gets,
                                       args.concurrency))
                if res["rps"] > best.get(("GET", name), {"rps": 0})["rps"]:
                    best[("GET", name)] = res
                print(f"round {r + 1}: {name:9} GET     {res['rps']:8.0f} req/s  "
                      f"p50 {res['p50']:.2f} ms  p99 {res['p99']:.2f} ms", flush=True)
            res = asyncio.run(load(
                urls["cowdb"], lambda i: "/api/v1/commits", args.commits, args.concurrency,
                "POST", lambda i: {"message": f"bench {i}", "puts": [
                    {"key": keys[(i * 10 + j) % N_KEYS].decode(),
                     "value": vals[(i * 7 + j) % N_KEYS].decode()} for j in range(10)]},
                {"If-Match": "*"}))
            if res["rps"] > best.get(("commit", "cowdb"), {"rps": 0})["rps"]:
                best[("commit", "cowdb")] = res
            print(f"round {r + 1}: cowdb     commit  {res['rps']:8.0f} req/s  "
                  f"p50 {res['p50']:.2f} ms  p99 {res['p99']:.2f} ms", flush=True)
    finally:
        for p in procs.values():
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for (what, name), res in best.items():
        rows.append([what, name, C.fmt_num(res["rps"]), f"{res['p50']:.2f}",
                     f"{res['p99']:.2f}", C.fmt_num(res["n"])])
    table = C.md_table(["request", "server", "requests/s", "p50 ms", "p99 ms", "requests"],
                       rows)
    verdict = ""
    if ("GET", "datasette") in best:
        verdict = (f"Target (one-key GET at least datasette's rate): "
                   f"{C.judge(best[('GET', 'cowdb')]['rps'], best[('GET', 'datasette')]['rps'], lower_is_better=False)}.")
    print("\n" + table + "\n" + verdict + ("\n" + skip_note if skip_note else ""))
    if args.write_docs:
        m = C.machine()
        body = (f"`cowdb serve` beside datasette's JSON API, one uvicorn process each on "
                f"loopback, one httpx client with {args.concurrency} concurrent workers; "
                f"best of {args.rounds} rounds. Produced by `bench/bench_server.py`; its "
                f"docstring gives the exact steps.\n\n"
                f"- Command: `{C.command_line()}`\n- cowdb: {source}\n"
                f"- Machine: {m['cpu']}, {m['nproc']} CPUs, {m['os']}, {m['python']}, "
                f"{m['date']} (shared with other work: absolute figures are noisy)\n\n"
                f"{table}\n\n{verdict}\n" + (f"\n{skip_note}\n" if skip_note else ""))
        C.write_section("## Server: cowdb serve beside datasette", body)


if __name__ == "__main__":
    main()
