"""Helpers shared by the benchmarks in bench/: timing, seeded data, the machine, the docs.

Nothing here is timed itself. ``timed`` runs a callable with the garbage
collector off (the same for every engine) and returns seconds from
``time.perf_counter``.
"""
from __future__ import annotations

import atexit
import datetime
import gc
import os
import platform
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "benchmarks.md")
DOCS_INTRO = """# Benchmarks

cowdb measured beside other stores, each section written by a script in
`bench/` (run with `--write-docs`) from one run on one machine. Figures from
different sections or machines are not comparable with each other; ratios
within a section are, because every engine ran in the same process on the
same data.
"""


def use_cowdb(at: str | None = None) -> str:
    """Make ``import cowdb`` find the engine to measure; return where it comes from.

    ``at``: a commit of this repository; its cowdb/ is exported (git archive)
    to a temporary folder, so edits in progress in the work tree do not leak
    into the figures, and its C accelerators are built there (an export holds
    no compiled module: without the build it would measure the pure-Python
    path). Otherwise PYTHONPATH decides if set, else this checkout.
    """
    if at:
        sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", at + "^{commit}"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dest = tempfile.mkdtemp(prefix=f"cowdb-{sha}-")
        atexit.register(shutil.rmtree, dest, True)
        tar = subprocess.run(["git", "-C", ROOT, "archive", sha, "cowdb", "setup.py",
                              "pyproject.toml", "README.md"], capture_output=True,
                             check=True).stdout
        subprocess.run(["tar", "-x", "-C", dest], input=tar, check=True)
        built = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                               cwd=dest, capture_output=True).returncode == 0
        sys.path.insert(0, dest)
        return (f"commit {sha} (exported from this repository; "
                f"{'C accelerators built' if built else 'pure Python: the C build failed'})")
    if os.environ.get("PYTHONPATH"):
        return "PYTHONPATH"
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    return "checkout " + git_rev(ROOT, "cowdb")


def timed(fn, *args, clock=time.perf_counter, collector: bool = False
          ) -> tuple[float, object]:
    """(seconds, result) of fn(*args), with the garbage collector off while it runs
    (``collector=True``: on, as in a user's program); by ``clock`` (time.process_time:
    the CPU this process spent)."""
    gc.collect()
    if not collector:
        gc.disable()
    try:
        t = clock()
        out = fn(*args)
        dt = clock() - t
    finally:
        gc.enable()
    return dt, out


def keys_values(n: int, seed: int, value_size: int = 100) -> dict[bytes, bytes]:
    """n keys b"key%012d" in a seeded shuffled order, each with seeded random bytes."""
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    blob = rng.randbytes(n * value_size)
    return {b"key%012d" % i: blob[j * value_size:(j + 1) * value_size]
            for j, i in enumerate(order)}


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                     else os.cpu_count()),
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
    }


def git_rev(path: str, pathspec: str = ".") -> str:
    """Short commit of the git checkout whose top is ``path``, '+dirty' if pathspec has
    uncommitted changes; 'not a git checkout' for anything else (an exported tree)."""
    def git(*a):
        return subprocess.run(["git", "-C", path, *a], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        if os.path.realpath(git("rev-parse", "--show-toplevel")) != os.path.realpath(path):
            return "not a git checkout"
        dirty = git("status", "--porcelain", "--", pathspec)
        return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"


def command_line() -> str:
    """The command that is running, as one would type it from the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    env = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " if os.environ.get(
        "PYTHONPATH") else ""
    return env + "python " + " ".join(shlex.quote(a) for a in [script, *sys.argv[1:]])


KEEP_OPEN = "<!-- kept by --write-docs -->"
KEEP_CLOSE = "<!-- /kept -->"


def write_section(heading: str, body: str, path: str = DOCS) -> None:
    """Replace the section that starts with ``heading`` (up to the next '## ') in path.

    The file is created with a short intro if missing; other sections are kept
    as they are; a missing section is appended. A hand-written block between
    KEEP_OPEN and KEEP_CLOSE lines inside the old section is carried over to
    the end of the new one (an analysis that the figures alone cannot give).
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = DOCS_INTRO
    pat = re.compile(r"^" + re.escape(heading.rstrip()) + r"[ \t]*\n.*?(?=^## |\Z)",
                     re.S | re.M)
    old = pat.search(text)
    keep = ""
    if old:
        m = re.search(re.escape(KEEP_OPEN) + r".*?" + re.escape(KEEP_CLOSE), old.group(0), re.S)
        keep = "\n\n" + m.group(0) if m else ""
    section = heading.rstrip() + "\n\n" + body.strip() + keep + "\n"
    if old:
        text = pat.sub(lambda m: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ---- shared by bench_history.py and bench_timelines.py (issues 3 and 4) -----------------

class gc_paused:
    """``with gc_paused():`` one collection, then the garbage collector off until the end."""

    def __enter__(self):
        self.was = gc.isenabled()
        gc.collect()
        gc.disable()
        return self

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


def freeze_heap() -> None:
    """Move every object alive now out of the collector's reach (gc.freeze), so later
    collections only scan what was made since: the data sets stay alive for the whole run
    and would otherwise make each collection take up to a second."""
    gc.collect()
    gc.freeze()


def thaw_heap() -> None:
    """Undo ``freeze_heap`` (at the end of a size, so its data can be freed)."""
    gc.unfreeze()
    gc.collect()


def fresh_dir(prefix: str) -> str:
    """A new temporary folder on the real disk (BENCH_DIR if set), removed at exit."""
    d = tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("BENCH_DIR"))
    atexit.register(shutil.rmtree, d, True)
    return d


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def file_bytes(path: str) -> int:
    """Bytes of a database file and its sidecars (-wal, -shm, -journal) if any."""
    return sum(os.path.getsize(p) for p in (path, path + "-wal", path + "-shm",
                                            path + "-journal") if os.path.exists(p))


def import_doltlite():
    """Import doltlite (before sqlite3, as it requires) and return the sqlite3 module it
    patched, or None if doltlite is not installed. Call it before anything imports sqlite3:
    doltlite then loads in-process instead of re-executing the interpreter."""
    try:
        import doltlite  # noqa: F401
    except ImportError:
        return None
    import sqlite3
    return sqlite3


class Doltlite:
    """A doltlite database with one table kv(k BLOB PRIMARY KEY, v BLOB), on main.

    Every write is a SQL transaction followed by ``dolt_commit('-A', '-m', msg)``;
    the connection uses doltlite's defaults (synchronous=FULL: one fdatasync per SQL
    commit and one per dolt_commit)."""
    name = "doltlite"
    PUT = "INSERT INTO kv VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v"

    def __init__(self, sqlite3, folder: str):
        self.path = os.path.join(folder, "db.doltlite")
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.ex = self.conn.execute
        self.ex("CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        self.ex("SELECT dolt_commit('-A', '-m', 'create')")

    def load(self, data: dict) -> None:
        """Bulk load in one SQL transaction (in key order: the fastest way in), one commit."""
        self.ex("BEGIN")
        self.conn.executemany("INSERT INTO kv VALUES (?, ?)", sorted(data.items()))
        self.ex("COMMIT")
        self.ex("SELECT dolt_commit('-A', '-m', 'load')")

    def size(self) -> int:
        return file_bytes(self.path)

    def head(self) -> str:
        return self.ex("SELECT dolt_hashof('HEAD')").fetchone()[0]

    def commit(self, pairs, message: str = "commit") -> str:
        """One SQL transaction of upserts, then a Dolt commit; returns the commit hash."""
        ex = self.ex
        ex("BEGIN")
        self.conn.executemany(self.PUT, pairs)
        ex("COMMIT")
        return ex("SELECT dolt_commit('-A', '-m', ?)", (message,)).fetchone()[0]

    def get(self, key: bytes):
        r = self.ex("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return r[0] if r else None

    def get_at(self, commit: str, key: bytes):
        r = self.ex("SELECT v FROM dolt_at_kv(?) WHERE k = ?", (commit, key)).fetchone()
        return r[0] if r else None

    def no_fsync(self, on: bool) -> None:
        """Diagnostic: PRAGMA synchronous=OFF (on) or back to FULL, doltlite's default."""
        self.ex(f"PRAGMA synchronous={'OFF' if on else 'FULL'}")

    def close(self) -> None:
        self.conn.close()


def turns(engines: list, r: int) -> list:
    """The engines in the order of round r: alternating, so neither always goes first."""
    return engines if r % 2 == 0 else engines[::-1]


def judge(value, bound, lower_is_better: bool = True) -> str:
    """'yes (margin)' or '**no**: how far off' for a figure against a bound."""
    if value is None or bound is None:
        return "n/a"
    if lower_is_better:
        ok, gap = value <= bound, (value / bound if bound else float("inf"))
    else:
        ok, gap = value >= bound, (bound / value if value else float("inf"))
    if ok:
        return f"yes ({fmt_num(1 / gap)}× margin)" if gap else "yes"
    return f"**no**: {fmt_num(gap)}× {'over' if lower_is_better else 'short'}"


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_num(x, digits: int = 3) -> str:
    """A figure with about ``digits`` significant digits, thousands separated; '–' if None."""
    if x is None:
        return "–"
    if isinstance(x, int) or x == 0:
        return f"{x:,}"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    from math import floor, log10
    d = digits - 1 - floor(log10(abs(x)))
    return f"{x:.{max(d, 0)}f}"



class ProfileSet:
    """Time calls, and with a folder also run them under a cProfile kept per tag: every call
    with the same tag adds to one profile. ``save()`` writes folder/tag.prof and
    folder/tag.txt (top functions by cumulative and by own time). Profiled times are
    inflated."""

    def __init__(self, folder: str | None):
        self.folder, self.profs = folder, {}

    def timed(self, tag: str | None, fn, *args) -> tuple[float, object]:
        """(seconds, result) of fn(*args) with the garbage collector off while it runs;
        unlike ``timed`` it does not collect first (wrap a batch of calls in ``gc_paused``):
        a full collection of a large heap can take far longer than the call. A tag of None:
        never profiled."""
        was = gc.isenabled()
        gc.disable()
        try:
            if not (self.folder and tag):
                t = time.perf_counter()
                out = fn(*args)
                return time.perf_counter() - t, out
            import cProfile
            prof = self.profs.setdefault(tag, cProfile.Profile())
            prof.enable()
            try:
                t = time.perf_counter()
                out = fn(*args)
                dt = time.perf_counter() - t
            finally:
                prof.disable()
            return dt, out
        finally:
            if was:
                gc.enable()

    def save(self) -> None:
        if not self.folder:
            return
        import io
        import pstats
        os.makedirs(self.folder, exist_ok=True)
        for tag, prof in self.profs.items():
            prof.dump_stats(os.path.join(self.folder, tag + ".prof"))
            s = io.StringIO()
            st = pstats.Stats(prof, stream=s)
            st.sort_stats("cumulative").print_stats(40)
            st.sort_stats("tottime").print_stats(30)
            with open(os.path.join(self.folder, tag + ".txt"), "w") as f:
                f.write(s.getvalue())


class CowdbKV:
    """A cowdb database in ``folder`` (durability "sync"): what the versioned benchmarks
    share; ``cowdb`` is the module that ``use_cowdb`` chose."""
    name = "cowdb"

    def __init__(self, cowdb, folder: str):
        self.path = os.path.join(folder, "db.cow")
        self.db = cowdb.open(self.path)

    def load(self, data: dict) -> None:
        with self.db.write(message="load") as tx:
            tx.update(data)

    def size(self) -> int:
        return os.path.getsize(self.path)

    def no_fsync(self, on: bool) -> None:
        """The handle's durability "none" (commits atomic and visible, synced later) or back
        to "sync", its default: what an operation costs besides the disk flush."""
        self.db.durability = "none" if on else "sync"

    def close(self) -> None:
        self.db.close()


def peer_args(doc: str, heading: str, rounds: int, quick: str):
    """The command line that bench_history.py and bench_timelines.py share."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--quick", action="store_true", help=quick)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--write-docs", action="store_true",
                    help=f"rewrite the section '{heading}' of docs/benchmarks.md")
    ap.add_argument("--profile", metavar="DIR", help="cProfile cowdb's timed sections into DIR")
    ap.add_argument("--at", metavar="COMMIT", help="measure cowdb as of this commit")
    ap.add_argument("--engines", default="cowdb,doltlite",
                    help="cowdb alone, or with doltlite (default)")
    return ap


def peer_start(args, sqlite3):
    """Import the cowdb to measure, settle doltlite (None if not wanted or not installed),
    print the header; returns (cowdb, sqlite3, info) with info for ``peer_docs``."""
    if "doltlite" not in args.engines.split(","):
        sqlite3 = None
    elif sqlite3 is None:
        print("doltlite is not installed (pip install doltlite): cowdb alone", file=sys.stderr)
    origin = use_cowdb(args.at)
    import cowdb
    mach = machine()
    dver = (sqlite3.connect(":memory:").execute("SELECT dolt_version()").fetchone()[0]
            if sqlite3 else "-")
    info = {"origin": origin, "mach": mach, "dver": dver, "cowdb": cowdb.__version__,
            "sqlite": sqlite3.sqlite_version if sqlite3 else "-",
            "load0": os.getloadavg()[0], "t0": time.perf_counter()}
    print(f"cowdb {cowdb.__version__} from {os.path.dirname(cowdb.__file__)} ({origin}); "
          f"doltlite {dver}")
    print(f"{mach['date']}; {mach['nproc']} CPUs ({mach['cpu']}); {mach['python']}; "
          f"{mach['os']}; load average {info['load0']:.2f}", flush=True)
    return cowdb, sqlite3, info


def peer_finish(args, heading: str, intro: str, info: dict, blocks: list[str],
                notes: list[str]) -> None:
    """Print the tables and notes; with --write-docs write them as the section ``heading``."""
    load1 = os.getloadavg()[0]
    wall = time.perf_counter() - info["t0"]
    print()
    print("\n\n".join(blocks))
    for line in notes:
        print("- " + line)
    print(f"\nwall time {wall:.0f} s; load average {info['load0']:.2f} → {load1:.2f}")
    if not args.write_docs:
        return
    mach = info["mach"]
    body = [
        intro,
        "",
        f"- Command: `{command_line()}` ({wall / 60:.1f} min)",
        f"- Date: {mach['date']}",
        f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['os']}, {mach['python']}; "
        f"1-minute load average {info['load0']:.2f} at the start and {load1:.2f} at the end "
        "(other engineers' tests shared the machine: trust the ratios more than the absolute "
        "figures)",
        f"- Engines: cowdb {info['cowdb']}, {info['origin']} (durability \"sync\", 4 KiB "
        f"pages); doltlite {info['dver']} (PyPI `doltlite`, SQLite {info['sqlite']}, defaults)",
        "",
    ]
    for b in blocks:
        body += [b, ""]
    body += ["- " + line for line in notes]
    write_section(heading, "\n".join(body))
    print(f"wrote the section '{heading}' of {os.path.relpath(DOCS)}")
