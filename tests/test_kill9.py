"""kill -9 loop: a child commits numbered transactions and is killed at random moments.

The child (this file run as a script) opens the database, goes on from its
newest version, and for each version v commits the changes ``ops(v)`` (a
pure function of v), then prints v once ``commit()`` has returned. Every
fourth commit skips the fsync (durability="none"): a killed process does
not lose the OS page cache, so those must survive too. Every 40 versions it
runs gc() under a keep-the-last-60 retention rule, so freed pages are
reused while the kills go on. Every third version it also tags v (``t<v>``)
and deletes every other tag (``u<x>``), printing each once it has returned:
ref changes ride in the meta record, and must survive a kill as commits do.

The parent reads the child's output, kills it with SIGKILL after a random
number of commits plus a random delay (so the kill lands anywhere: inside
a commit, a gc, between them), reopens the file and checks that every
printed version is there, that every version not checked before reads
exactly as the model says, and that ``check()`` is clean.

CI runs 50 kills; COWDB_LONG=1 runs 1,000 (COWDB_KILLS=N for any number).
"""
import os
import random
import signal
import subprocess
import sys

import cowdb
from cowdb.errors import VersionNotFound

KEYS = 500
KEEP = 60


def ops(v: int):
    """(puts, deletes) of version v: a pure function of v."""
    rng = random.Random(v)
    puts = {b"n%04d" % (v % KEYS): b"%d:" % v + rng.randbytes(rng.choice([8, 100, 700, 2000])),
            b"last": b"%d" % v}
    dels = []
    if v % 5 == 0:
        dels.append(b"n%04d" % ((v * 7) % KEYS))
    if v % 13 == 0:
        puts[b"big%d" % (v % 3)] = rng.randbytes(rng.randrange(12_000, 20_000))
    if v % 17 == 0:
        dels.append(b"big%d" % (v % 3))
    return puts, dels


def apply(model: dict, v: int) -> None:
    puts, dels = ops(v)
    for k in dels:
        model.pop(k, None)
    model.update(puts)


def child(path: str) -> None:
    db = cowdb.open(path)
    if db.retention.keep_last != KEEP:
        db.set_retention(keep_last=KEEP)
    while True:
        v = db.version + 1
        puts, dels = ops(v)
        with db.write(message=f"v{v}", durability="none" if v % 4 == 0 else "sync") as tx:
            for k in dels:
                tx.delete(k)
            tx.update(puts)
        assert tx.version == v, (tx.version, v)
        print(v, flush=True)
        if v % 3 == 0:
            db.tag(f"t{v}")
            print(f"t{v}", flush=True)
            for name in db.tags():
                if name != f"t{v}":
                    db.delete_tag(name)
                    print(f"u{name[1:]}", flush=True)
        if v % 40 == 0:
            db.gc()


class Checker:
    """The model, built forward one version at a time as versions are checked."""

    def __init__(self):
        self.model: dict = {}
        self.upto = 0          # versions <= upto were checked (or reclaimed)
        self.tags: set[str] = set()  # as the printed ref changes left them

    def check_tags(self, db, events: list[str]) -> None:
        """Every printed ref change is there; at most one more (done, killed before its
        line was printed) may be too."""
        for e in events:
            (self.tags.add if e[0] == "t" else self.tags.discard)("t" + e[1:])
        tags = db.tags()
        assert all(v == int(name[1:]) for name, v in tags.items()), tags
        extra = set(tags) ^ self.tags
        assert len(extra) <= 1, f"tags {sorted(tags)}, printed ref changes leave {self.tags}"
        self.tags = set(tags)

    def check(self, path: str, printed: list[int], events: list[str], full_check: bool) -> int:
        db = cowdb.open(path, readonly=True)
        try:
            self.check_tags(db, events)
            newest = db.version
            assert newest >= max(printed, default=0), \
                f"printed version {max(printed)} is lost: the file's newest is {newest}"
            for v in range(self.upto + 1, newest + 1):
                apply(self.model, v)
                try:
                    snap = db.at(v)
                except VersionNotFound:
                    assert v <= newest - KEEP, f"version {v} is missing (newest {newest})"
                    continue
                with snap:
                    got = dict(snap.items())
                assert got == self.model, f"version {v} does not read as committed"
            self.upto = newest
            with db.read() as snap:
                assert dict(snap.items()) == self.model
            if full_check:
                report = db.check()
                assert report.ok, report.errors[:3]
            return newest
        finally:
            db.close()


def run_kills(path: str, kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    cowdb.open(path).close()
    checker = Checker()
    stats = {"kills": 0, "versions": 0, "printed": 0, "killed_before_first_print": 0}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(cowdb.__file__)))] +
        [p for p in [os.environ.get("PYTHONPATH")] if p])}
    for i in range(kills):
        # unbuffered: communicate() below reads the pipe's descriptor itself, so lines that
        # a buffered readline() had already pulled in would be lost to the checks
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                bufsize=0)
        printed, events = [], []
        target = rng.randrange(0, 12)
        while len(printed) + len(events) < target:  # the kill may follow a ref change
            line = proc.stdout.readline().decode()
            if not line:
                break
            (printed.append(int(line)) if line[0].isdigit() else events.append(line.strip()))
        if rng.random() < 0.7:  # a random moment after the last line read
            for _ in range(rng.randrange(0, 20000)):
                pass
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, f"the child died by itself: {err.decode()}"
        for x in out.decode().split():
            (printed.append(int(x)) if x[0].isdigit() else events.append(x))
        stats["kills"] += 1
        stats["printed"] += len(printed)
        stats["killed_before_first_print"] += not printed
        stats["ref_changes"] = stats.get("ref_changes", 0) + len(events)
        stats["versions"] = checker.check(path, printed, events,
                                          full_check=i % 10 == 0 or i == kills - 1)
    return stats


def test_kill9_loop(tmp_path):
    kills = int(os.environ.get("COWDB_KILLS") or (1000 if os.environ.get("COWDB_LONG") else 50))
    stats = run_kills(str(tmp_path / "kill9.cow"), kills, seed=kills)
    assert stats["kills"] == kills
    assert stats["versions"] >= kills  # the children made progress
    print(stats)


if __name__ == "__main__":
    child(sys.argv[1])
