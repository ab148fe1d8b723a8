"""A Database and its snapshots keep working in a child after os.fork() (issue 19).

The child of a fork inherits the handle's memory but none of its fcntl locks:
it must take a reader slot of its own (or the parent's writer reuses pages its
inherited snapshots read), must not inherit a writer lock some thread held at
the fork, and gets fresh thread locks. Each test forks real children; a child
reports failure through its exit status and a pipe carrying the traceback.
"""
import multiprocessing
import os
import traceback

import pytest

import cowdb
from cowdb.errors import Locked, TransactionClosed

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def fork_child(fn, *args):
    """Fork; the child runs fn(*args) and exits 0, or 1 with its traceback on the pipe.
    Returns (pid, read end of the pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            fn(*args)
        except BaseException:
            os.write(w, traceback.format_exc().encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def join_child(pid, r):
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode() or f"status {status}"


def run_child(fn, *args):
    join_child(*fork_child(fn, *args))


def fill(db, n, tag):
    with db.write() as tx:
        for i in range(n):
            tx[b"k%05d" % i] = b"%s-%05d" % (tag, i) * 8


def test_snapshot_before_fork_reads_the_same_in_the_child(tmp_path):
    """The child's inherited snapshot is pinned by the child's own reader slot: the
    parent may drop its snapshot, rewrite every key and gc, and the child still
    reads exactly what the snapshot held. (A small node cache, so the child reads
    the pages themselves, not what the parent had decoded.)"""
    db = cowdb.open(tmp_path / "f.cow", cache_nodes=4)
    fill(db, 2000, b"old")
    snap = db.read()
    expected = {b"k%05d" % i: b"old-%05d" % i * 8 for i in range(2000)}
    go_r, go_w = os.pipe()

    def child():
        os.close(go_w)
        assert os.read(go_r, 1) == b"g"   # the parent has rewritten and reclaimed
        assert dict(snap.items()) == expected
        assert snap[b"k00007"] == expected[b"k00007"]

    pid, r = fork_child(child)
    os.close(go_r)
    snap.close()   # the parent's own pin is gone: only the child's slot protects the pages
    db.set_retention(keep_last=1)
    for round_ in range(5):
        fill(db, 2000, b"new%d" % round_)
        db.gc()
    os.write(go_w, b"g")
    os.close(go_w)
    join_child(pid, r)
    assert db.check().ok
    db.close()


def test_child_reads_writes_and_the_parent_sees_it(tmp_path):
    db = cowdb.open(tmp_path / "f.cow")
    fill(db, 100, b"a")

    def child():
        assert db.read()[b"k00001"] == b"a-00001" * 8
        with db.write(message="from the child") as tx:
            tx[b"child"] = b"%d" % os.getpid()
        assert db.read()[b"child"] == b"%d" % os.getpid()

    run_child(child)
    with db.read() as snap:
        assert snap[b"child"].isdigit()
    assert next(iter(db.log(limit=1))).message == "from the child"
    with db.write() as tx:   # the parent still writes after the child did
        tx[b"parent"] = b"1"
    assert db.check().ok
    db.close()


def test_a_writer_lock_held_at_fork_is_not_inherited(tmp_path):
    """The parent's open write transaction stays the parent's: in the child it is
    closed, and the child's own write waits for the parent's lock like any process."""
    db = cowdb.open(tmp_path / "f.cow")
    fill(db, 10, b"a")
    tx = db.write(message="parent")
    tx[b"p"] = b"1"
    go_r, go_w = os.pipe()
    checked_r, checked_w = os.pipe()

    def child():
        os.close(go_w)
        os.close(checked_r)
        with pytest.raises(TransactionClosed):
            tx[b"x"] = b"child"
        with pytest.raises(TransactionClosed):
            tx.commit()
        with pytest.raises(Locked):
            db.write(timeout=0.2)   # the parent still holds it, in the parent
        os.write(checked_w, b"c")
        assert os.read(go_r, 1) == b"g"
        with db.write(message="child", timeout=10) as mine:
            mine[b"c"] = b"1"

    pid, r = fork_child(child)
    os.close(go_r)
    os.close(checked_w)
    os.read(checked_r, 1)           # the child has seen the lock held (or died)
    os.close(checked_r)
    tx.commit()                     # the parent's transaction is intact in the parent
    os.write(go_w, b"g")
    os.close(go_w)
    join_child(pid, r)
    with db.read() as snap:
        assert snap[b"p"] == b"1" and snap[b"c"] == b"1" and b"x" not in snap
    db.close()


def test_fork_while_another_thread_holds_the_writer(tmp_path):
    """A thread lock held by another thread at the fork would never be released in
    the child (that thread does not exist there): the child gets fresh ones."""
    import threading
    db = cowdb.open(tmp_path / "f.cow")
    holding, release = threading.Event(), threading.Event()

    def hold():
        with db.write() as tx:
            tx[b"t"] = b"1"
            holding.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    holding.wait(10)

    def child():
        with pytest.raises(Locked):   # the parent process holds the file lock
            db.write(timeout=0.2)
        assert b"t" not in db.read()

    try:
        run_child(child)
    finally:
        release.set()
        t.join()
    run_child(lambda: db.write(timeout=10).commit())   # and once it is released, writes
    db.close()


def _increment(db, key, times):
    for _ in range(times):
        with db.write(timeout=30) as tx:
            tx[key] = b"%d" % (int(tx.get(key, b"0")) + 1)


def test_preforked_workers_share_one_handle(tmp_path):
    """The pre-forking server pattern (gunicorn --preload): open once, fork workers
    that read and write; no increment is lost and every version checks."""
    db = cowdb.open(tmp_path / "f.cow")
    fill(db, 50, b"a")
    workers = [fork_child(_increment, db, b"counter", 25) for _ in range(4)]
    for pid, r in workers:
        join_child(pid, r)
    assert db.read()[b"counter"] == b"100"
    assert db.check().ok
    db.close()


_inherited = None


def _pool_read(i):
    return _inherited.read()[b"k%05d" % i]


def _pool_write(i):
    with _inherited.write(timeout=30) as tx:
        tx[b"w%d" % i] = b"%d" % i
    return i


def test_multiprocessing_fork_pool(tmp_path):
    global _inherited
    db = _inherited = cowdb.open(tmp_path / "f.cow")
    fill(db, 100, b"a")
    try:
        with multiprocessing.get_context("fork").Pool(3) as pool:
            assert pool.map(_pool_read, range(20)) == [b"a-%05d" % i * 8 for i in range(20)]
            assert sorted(pool.map(_pool_write, range(12))) == list(range(12))
        with db.read() as snap:
            assert [snap[b"w%d" % i] for i in range(12)] == [b"%d" % i for i in range(12)]
    finally:
        _inherited = None
        db.close()


def _spawn_worker(path, i):
    with cowdb.open(path) as db:
        with db.write(timeout=30) as tx:
            tx[b"s%d" % i] = b"%d" % i
        return db.read()[b"k00003"]


def test_multiprocessing_spawn_opens_its_own(tmp_path):
    """spawn starts a fresh interpreter: a handle cannot travel, each opens the path."""
    path = str(tmp_path / "f.cow")
    with cowdb.open(path) as db:
        fill(db, 10, b"a")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        got = pool.starmap(_spawn_worker, [(path, i) for i in range(4)])
    assert got == [b"a-00003" * 8] * 4
    with cowdb.open(path) as db:
        assert sorted(db.read().keys(prefix=b"s")) == [b"s%d" % i for i in range(4)]
