"""Threads sharing one Database handle (issue 13).

The deterministic tests stop the writer at named points of a commit (the page
store's ``hook``: "flushed" = the txn's pages written, its meta record not;
"meta" = the meta record written, the new state not yet published) and run a
reader operation from another thread exactly there (also tests/windows.py).
The random stress tests run 8 readers and 2 writers on one handle, and reader
and writer threads beside writer processes; ``COWDB_LONG=1`` runs them for
minutes instead of seconds. Then: abandoned write transactions, and the
commit-record cache inside the window.
"""
import os
import random
import sys
import threading
import time
import traceback

import pytest

import cowdb
from cowdb.errors import CowdbError

from conftest import LONG
from windows import WAIT, in_window

READS = {
    "read": lambda db: len(db.read()),
    "read_all": lambda db: sorted(db.read().items())[:3],
    "version": lambda db: db.version,
    "head": lambda db: db.head(),
    "at": lambda db: len(db.at(1)),
    "log": lambda db: [c.version for c in db.log(limit=3)],
    "check": lambda db: db.check().errors,
    "stats": lambda db: db.stats().versions,
}


def _fill(db, n=300):
    with db.write() as tx:
        tx.update({b"k%04d" % i: b"v0" * 10 for i in range(n)})


def _verify(path, expected: dict) -> None:
    """Every version committed is readable with exactly what it was committed with, and
    check() is clean, in a fresh read-only handle."""
    with cowdb.open(path, readonly=True) as db:
        lost = []
        for v, want in sorted(expected.items()):
            try:
                got = dict(db.at(v))
            except CowdbError as e:
                lost.append((v, repr(e)))
                continue
            if got != want:
                lost.append((v, "differs"))
        assert lost == []
        report = db.check()
        assert report.errors == []


class Writer(threading.Thread):
    """Commits ``n`` random updates, recording what each version holds."""

    def __init__(self, db, n, seed, model):
        super().__init__()
        self.db, self.n, self.rnd, self.model = db, n, random.Random(seed), model
        self.error = None

    def run(self):
        try:
            for _ in range(self.n):
                with self.db.write() as tx:
                    for _ in range(self.rnd.randrange(1, 20)):
                        k = b"k%04d" % self.rnd.randrange(300)
                        if self.rnd.random() < 0.2:
                            tx.pop(k, None)
                        else:
                            tx[k] = b"%d" % self.rnd.randrange(10 ** 6) * 3
                    view = dict(tx)
                self.model[tx.version] = view
        except BaseException as e:  # reported by the test
            self.error = e


def _reader(db, op, start: threading.Event, done: threading.Event, got: list):
    """A thread that waits for ``start``, runs READS[op] once into ``got``, sets ``done``."""
    def run():
        assert start.wait(WAIT)
        try:
            got.append(READS[op](db))
        except BaseException as e:
            got.append(e)
        finally:
            done.set()
    return threading.Thread(target=run)


def _model(db) -> dict:
    return {v: dict(db.at(v)) for v in range(1, db.version + 1)}


@pytest.mark.parametrize("durability", ["sync", "none"])
@pytest.mark.parametrize("point", ["flushed", "meta"])
@pytest.mark.parametrize("op", sorted(READS))
def test_a_reader_inside_the_publish_window(path, op, point, durability):
    """One thread commits; another runs a read exactly while the commit is at ``point``
    (for "meta": the meta record is in the file, the handle's state not yet moved, so
    the reader sees a newer txn than the state and must not take it for another
    process's commit). Then more commits reuse freed pages; nothing may be lost."""
    db = cowdb.open(path, page_size=1024, durability=durability)
    _fill(db)
    model = _model(db)
    target = db._store.meta.txn + 3     # the third txn of the writer below
    window, reader_done = threading.Event(), threading.Event()
    got = []

    def hook(where, txn):
        if where == point and txn == target:
            window.set()
            assert reader_done.wait(WAIT), "the reader did not finish inside the window"

    db._store.hook = hook
    w, r = Writer(db, 40, 1, model), _reader(db, op, window, reader_done, got)
    r.start(), w.start()
    w.join(), r.join()
    db._store.hook = None
    assert w.error is None
    assert window.is_set()
    assert got and not isinstance(got[0], BaseException), got
    if op == "check":
        assert got[0] == []
    assert db.check().errors == []
    db.close()
    _verify(path, model)


@pytest.mark.parametrize("durability", ["sync", "none"])
@pytest.mark.parametrize("op", sorted(READS))
def test_a_reload_that_resumes_after_the_writer_moved_on(path, op, durability):
    """The interleaving that lost versions: a reader sees txn T's meta record in the
    window, stops just after pinning it; the writer publishes T, starts T+1 and writes
    its pages; then the reader resumes. Adopting T then would hand the writer's page
    count and free list back to T's, and T+1 would reuse pages it had just written."""
    db = cowdb.open(path, page_size=1024, durability=durability)
    _fill(db)
    model = _model(db)
    target = db._store.meta.txn + 3
    window, paused, resume, reader_done = (threading.Event() for _ in range(4))
    got, real_pin = [], db._shared.pin
    reader_id = []

    def pin(txn):
        real_pin(txn)
        if reader_id and threading.get_ident() == reader_id[0] and txn == target:
            paused.set()
            resume.wait(WAIT)

    def hook(where, txn):
        if where == "meta" and txn == target:
            window.set()
            # the reader either finishes (it keeps the old state) or pauses in its pin
            deadline = time.monotonic() + WAIT
            while not (paused.is_set() or reader_done.is_set()):
                assert time.monotonic() < deadline, "the reader neither paused nor finished"
                time.sleep(0.001)
        elif where == "flushed" and txn == target + 1 and paused.is_set():
            resume.set()
            assert reader_done.wait(WAIT)

    db._shared.pin = pin
    db._store.hook = hook
    w, r = Writer(db, 40, 2, model), _reader(db, op, window, reader_done, got)
    r.start()
    reader_id.append(r.ident)
    w.start()
    w.join(), r.join()
    db._store.hook = None
    db._shared.pin = real_pin
    assert w.error is None
    assert got and not isinstance(got[0], BaseException), got
    assert db.check().errors == []
    db.close()
    _verify(path, model)


# ---- random stress: 8 readers, 2 writers, one handle ------------------------------------

STRESS_SECONDS = float(os.environ.get("COWDB_STRESS_SECONDS") or (300 if LONG else 3))
TOTAL = 1000  # each writer's keys always sum to this


def _sum(snap, prefix: bytes) -> int:
    return sum(int(v) for v in snap.values(prefix=prefix))


CHILD_WRITER = """
import random, sys, time, cowdb
path, prefix, seconds, seed = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3]), int(sys.argv[4])
rnd, n = random.Random(seed), 0
with cowdb.open(path, timeout=120) as db:
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        with db.write(durability=rnd.choice(["sync", "none"])) as tx:
            a, b = (prefix + b"%02d" % rnd.randrange(40) for _ in range(2))
            have = int(tx[a])
            amount = rnd.randrange(have + 1)
            tx[a] = b"%d" % (have - amount)
            tx[b] = b"%d" % (int(tx[b]) + amount)
        n += 1
print(n)
"""


def run_stress(path, seconds: float, readers: int = 8, writers: int = 2, seed: int = 0,
               switch: float = 1e-5, processes: int = 0) -> dict:
    """``writers`` threads each move amounts between their own 40 keys (the sum stays
    TOTAL) while ``readers`` threads check every sum on every snapshot, of the head or
    of an older version; all share one handle. ``processes`` writer processes do the
    same on keys of their own, so the handle also adopts other processes' commits while
    its own writer threads commit. Returns the counts; raises on the first broken
    invariant, reader error or lost version."""
    import subprocess
    # the writer lock polls another process's fcntl lock: under load a writer can wait
    # seconds behind writer processes that commit back to back, so wait long
    db = cowdb.open(path, page_size=1024, durability="sync", timeout=120)
    prefixes = [b"w%d/" % w for w in range(writers)] + [b"p%d/" % c for c in range(processes)]
    with db.write() as tx:
        for p in prefixes:
            tx.update({p + b"%02d" % i: b"%d" % (TOTAL if i == 0 else 0) for i in range(40)})
    model = {db.version: dict(db.read())}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    children = [subprocess.Popen([sys.executable, "-c", CHILD_WRITER, path, "p%d/" % c,
                                  str(seconds), str(seed * 100 + 90 + c)], cwd=root,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for c in range(processes)]
    stop = time.monotonic() + seconds
    errors, counts, lock = [], {"commits": 0, "reads": 0}, threading.Lock()

    def writer(w):
        rnd, p = random.Random(seed * 100 + w), prefixes[w]
        try:
            while time.monotonic() < stop and not errors:
                durability = "none" if rnd.random() < 0.5 else "sync"
                with db.write(durability=durability) as tx:
                    for _ in range(rnd.randrange(1, 6)):
                        a, b = (p + b"%02d" % rnd.randrange(40) for _ in range(2))
                        have = int(tx[a])
                        amount = rnd.randrange(have + 1)
                        tx[a] = b"%d" % (have - amount)
                        tx[b] = b"%d" % (int(tx[b]) + amount)
                    view = dict(tx)
                with lock:
                    model[tx.version] = view
                    counts["commits"] += 1
        except BaseException:  # the whole traceback: a writer's failure can close the handle
            errors.append(("writer", w, traceback.format_exc()))

    def reader(r):
        rnd, n = random.Random(seed * 100 + 50 + r), 0
        try:
            while time.monotonic() < stop and not errors:
                kind = rnd.random()
                if kind < 0.7:
                    snap = db.read()
                else:
                    snap = db.at(rnd.randrange(1, db.version + 1))
                with snap:
                    for p in prefixes:
                        s = _sum(snap, p)
                        if s != TOTAL:
                            errors.append(("sum", snap.version, p, s))
                n += 1
                if kind > 0.995:
                    db.log(limit=2), db.head(), db.stats()
        except BaseException as e:
            errors.append(("reader", r, repr(e)))
        with lock:
            counts["reads"] += n

    threads = ([threading.Thread(target=writer, args=(w,)) for w in range(writers)] +
               [threading.Thread(target=reader, args=(r,)) for r in range(readers)])
    interval = sys.getswitchinterval()
    sys.setswitchinterval(switch)  # switch threads often: more interleavings per second
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    for child in children:
        out, err = child.communicate(timeout=seconds + 120)
        assert child.returncode == 0, err
        counts["commits"] += int(out)
    # a writer's error first: readers fail after it (a poisoned handle is closed)
    assert errors == [], "\n".join(str(e) for e in sorted(errors, key=lambda e: e[0] != "writer"))
    assert db.check().errors == []
    last = db.version
    db.close()
    _verify(path, model)
    if processes:  # the children's versions: readable, every sum intact
        with cowdb.open(path, readonly=True) as db:
            for v in range(1, last + 1):
                with db.at(v) as snap:
                    assert all(_sum(snap, p) == TOTAL for p in prefixes), v
    counts["versions"] = len(model)
    return counts


def test_stress_threads_of_one_handle_beside_writer_processes(path):
    """6 reader threads and a writer thread on one handle, 2 writer processes on the same
    file: readers see the handle's own commits and adopt the processes' ones."""
    counts = run_stress(path, STRESS_SECONDS, readers=6, writers=1, processes=2, seed=1)
    print(f"\nthreads + processes: 6 readers + 1 writer thread, 2 writer processes, "
          f"{STRESS_SECONDS:g} s: {counts['commits']} commits, {counts['reads']} snapshots "
          f"checked, 0 lost")
    assert counts["commits"] > 0 and counts["reads"] > 0


def test_stress_readers_and_writers_share_one_handle(path):
    counts = run_stress(path, STRESS_SECONDS)
    print(f"\nthread stress: 8 readers + 2 writers, {STRESS_SECONDS:g} s: "
          f"{counts['commits']} commits, {counts['reads']} snapshots checked, 0 lost")
    assert counts["commits"] > 0 and counts["reads"] > 0


# ---- abandoned write transactions ---------------------------------------------------------

def test_a_dropped_transaction_aborts_warns_and_frees_the_lock(path):
    db = cowdb.open(path)
    tx = db.write()
    tx[b"lost"] = b"1"
    with pytest.warns(ResourceWarning, match="dropped without commit"):
        del tx
    with db.write(timeout=0) as tx:       # the same thread: no NestedTransaction
        tx[b"kept"] = b"1"
    assert dict(db.read()) == {b"kept": b"1"}
    assert _child_can_write(path)          # and the process lock went too
    db.close()


def test_a_transaction_dropped_in_a_reference_cycle_aborts_when_needed(path):
    import gc
    db = cowdb.open(path)
    gc.disable()
    try:
        tx = db.write()
        tx[b"lost"] = b"1"
        cycle = [tx]
        cycle.append(cycle)
        del tx, cycle                       # unreachable, but not freed until gc runs
        with pytest.warns(ResourceWarning):
            with db.write(timeout=0) as tx:  # collects it instead of NestedTransaction
                tx[b"kept"] = b"1"
    finally:
        gc.enable()
    assert dict(db.read()) == {b"kept": b"1"}
    db.close()


def test_a_thread_that_ends_inside_a_transaction_does_not_keep_the_lock(path):
    db = cowdb.open(path)
    kept = []

    def forgets():                       # its transaction dies with the thread's frame
        tx = db.write()
        tx[b"a"] = b"1"

    def leaks():                         # its transaction outlives the thread
        tx = db.write()
        tx[b"b"] = b"1"
        kept.append(tx)

    for target in (forgets, leaks):
        with pytest.warns(ResourceWarning):
            t = threading.Thread(target=target, name=target.__name__)
            t.start()
            t.join()
            with db.write(timeout=5) as tx:   # another thread: not Locked for good
                tx[target.__name__] = b"ok"
    assert dict(db.read()) == {b"forgets": b"ok", b"leaks": b"ok"}
    with pytest.raises(cowdb.errors.TransactionClosed):
        kept[0][b"c"] = b"1"
    db.close()


def test_a_thread_that_lost_its_transaction_has_a_way_out(path):
    db = cowdb.open(path)
    holder = {"tx": db.write()}            # somewhere this code no longer looks
    holder["tx"][b"x"] = b"1"
    with pytest.raises(cowdb.errors.NestedTransaction, match="abort_write"):
        db.write()
    assert db.abort_write() is True
    assert db.abort_write() is False
    with db.write(timeout=0) as tx:
        tx[b"y"] = b"1"
    assert dict(db.read()) == {b"y": b"1"}
    db.close()


def _child_can_write(path) -> bool:
    import subprocess
    code = ("import sys, cowdb\n"
            "db = cowdb.open(sys.argv[1], timeout=0)\n"
            "with db.write() as tx: tx[b'child'] = b'1'\n"
            "db.close()\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code, path], cwd=root, capture_output=True,
                          text=True, timeout=60)
    return done.returncode == 0


# ---- the commit-record cache ----------------------------------------------------------------

@pytest.mark.parametrize("point", ["flushed", "meta"])
def test_a_version_looked_up_inside_gc_window_is_not_served_after_gc(path, point):
    """A reader in gc's window looks up a version gc drops (correctly: the published
    state still has it). Its cached record must not outlive gc's publication."""
    db = cowdb.open(path)
    for i in range(3):
        with db.write() as tx:
            tx[b"k"] = b"%d" % i
    db.set_retention(keep_last=1)
    _, got, fired = in_window(db, db.gc, lambda: dict(db.at(1)), point)
    assert fired and got == {b"k": b"0"}
    with pytest.raises(cowdb.errors.VersionReclaimed):
        db.at(1)
    assert db.check().ok
    db.close()


@pytest.mark.parametrize("point", ["flushed", "meta"])
def test_the_version_being_committed_is_not_readable_inside_its_window(path, point):
    db = cowdb.open(path)
    tx = db.write()
    tx[b"k"] = b"new"

    def read():
        try:
            db.at(1)
        except cowdb.errors.VersionNotFound:
            return "not found"
        return "found"

    v, got, fired = in_window(db, tx.commit, read, point)
    assert fired and v == 1 and got == "not found"
    assert dict(db.at(1)) == {b"k": b"new"}
    db.close()


class _Node:
    def __init__(self, txn):
        self.txn = txn


@pytest.mark.parametrize("op", ["forget_txn", "evict"])
def test_the_node_cache_survives_another_thread_inserting_mid_walk(op):
    """The node cache walks itself to forget a rolled-back txn and to evict. Another
    thread may insert meanwhile: not only between bytecodes but inside the walk, since
    a garbage collection there runs finalizers (Python code, so a thread switch). A
    gc callback stands in for that thread: the walk must not raise "dictionary changed
    size during iteration" (it did, and a rollback that raised it closed the database)."""
    import gc

    from cowdb.tree.btree import NodeCache

    cache = NodeCache(store=None, cap=512)
    for page in range(500):
        cache[page] = _Node(page % 7)
    fresh = iter(range(10_000, 20_000))

    def other_thread(phase, info):
        if phase == "start":
            cache[next(fresh)] = _Node(1)

    threshold = gc.get_threshold()
    gc.callbacks.append(other_thread)
    gc.set_threshold(1)
    try:
        if op == "forget_txn":
            cache.forget_txn(3)
        else:
            for _ in range(40):
                cache.put(next(fresh), _Node(1))
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(other_thread)
    if op == "forget_txn":
        assert not [p for p, n in cache.items() if n.txn >= 3 and p < 10_000]
    assert len(cache) <= cache.cap + 64
