"""The Database API: mapping behaviour, transactions, threads, closing."""
import threading
import time
from collections.abc import Mapping, MutableMapping

import pytest

import cowdb
from cowdb.errors import (DatabaseClosed, InvalidKey, InvalidType, KeyTooLarge,
                          NestedTransaction, ReadOnly, TransactionClosed, VersionNotFound)


def test_mapping_protocols():
    db = cowdb.open()
    with db.write() as tx:
        assert isinstance(tx, MutableMapping)
        tx[b"b"] = b"2"
        tx["a"] = b"1"                    # str keys are UTF-8
        tx.update({b"c": b"3"}, d=b"4")
        assert tx.setdefault(b"e", b"5") == b"5"
        assert tx.pop(b"e") == b"5"
        assert sorted(tx) == [b"a", b"b", b"c", b"d"]
    snap = db.read()
    assert isinstance(snap, Mapping)
    assert snap == {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"}
    assert list(snap.keys()) == [b"a", b"b", b"c", b"d"]
    assert list(snap.values(reverse=True)) == [b"4", b"3", b"2", b"1"]
    assert snap["a"] == b"1" and "a" in snap and snap.get("zz", b"-") == b"-"
    with pytest.raises(KeyError):
        snap[b"zz"]
    assert snap.count() == 4 and snap.count(b"b", b"d") == 2 and snap.count(b"x", b"a") == 0


def test_transaction_lifecycle():
    db = cowdb.open()
    tx = db.write(message="explicit")
    tx[b"k"] = b"v"
    assert tx.commit() == 1 and tx.version == 1
    with pytest.raises(TransactionClosed):
        tx[b"k2"] = b"v"
    with pytest.raises(TransactionClosed):
        tx.get(b"k")
    tx = db.write()
    tx[b"k"] = b"changed"
    tx.abort()
    assert db.read()[b"k"] == b"v" and db.version == 1
    with pytest.raises(RuntimeError):
        with db.write() as tx:
            tx[b"k"] = b"lost"
            raise RuntimeError("boom")
    assert db.read()[b"k"] == b"v" and db.version == 1
    assert db.write().delete(b"nope") is False


def test_bad_keys_and_values():
    db = cowdb.open()
    with db.write() as tx:
        with pytest.raises(InvalidType):
            tx[42] = b"v"
        with pytest.raises(InvalidType):
            tx[b"k"] = 42
        with pytest.raises(InvalidKey):
            tx[b""] = b"v"
        with pytest.raises(KeyTooLarge):
            tx[b"x" * (db.max_key + 1)] = b"v"
        tx[b"x" * db.max_key] = b"fits"
        with pytest.raises(TypeError):  # InvalidType is a TypeError too
            tx.get(3.5)
    with pytest.raises(VersionNotFound):
        db.at(7)
    snap = db.read()
    with pytest.raises(ReadOnly):
        snap[b"k"] = b"v"


def test_snapshot_never_sees_later_writes():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"k%03d" % i: b"old" for i in range(500)})
    snap = db.read()
    with db.write() as tx:
        for i in range(0, 500, 2):
            tx[b"k%03d" % i] = b"new"
        tx[b"added"] = b"x"
    assert set(snap.values()) == {b"old"} and len(snap) == 500
    assert db.read()[b"k000"] == b"new"


@pytest.mark.parametrize("on_file", [True, False])
def test_a_scan_keeps_its_values_while_a_writer_overwrites_them(tmp_path, on_file):
    """A snapshot's scan, begun before a commit that overwrites keys in the leaves it
    reads, and a transaction aborted after such puts: the scan sees the values of its
    version, and after the abort the head is what it was. (A put takes the lists of a
    clean node only the node cache holds, tree/node.py's restore_base: a node a reader
    holds must be copied, and one taken is read again from its page.)"""
    db = cowdb.open(str(tmp_path / "db") if on_file else None, page_size=1024)
    n = 20000  # (small pages: three levels, so a scan's path holds a branch below the root)
    old = {b"k%05d" % i: b"old%d" % i for i in range(n)}
    with db.write() as tx:
        tx.update(old)
    snap = db.read()
    scan = iter(snap.items())
    seen = [next(scan) for _ in range(700)]
    with db.write(durability="none") as tx:
        for i in range(0, n, 7):
            tx[b"k%05d" % i] = b"new"
    new = old | {b"k%05d" % i: b"new" for i in range(0, n, 7)}
    assert dict(seen + list(scan)) == old
    tx = db.write()
    for i in range(1, n, 3):
        tx[b"k%05d" % i] = b"gone"
    assert tx[b"k00001"] == b"gone"
    tx.abort()
    assert dict(db.read().items()) == new and dict(snap.items()) == old
    assert dict(db.at(db.version - 1).items()) == old
    snap.close()
    db.close()


def test_second_writer_thread_waits_and_nested_raises():
    db = cowdb.open()
    order = []
    tx = db.write()
    tx[b"first"] = b"1"

    def second():
        with db.write() as tx2:
            order.append("second has the lock")
            tx2[b"second"] = tx2[b"first"]   # sees the first commit: it waited for it

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.05)
    order.append("first commits")
    with pytest.raises(NestedTransaction):
        db.write()
    tx.commit()
    t.join(5)
    assert order == ["first commits", "second has the lock"]
    assert db.read()[b"second"] == b"1"


def test_readers_in_threads_while_a_writer_commits():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"a%04d" % i: b"0" for i in range(200)})
    errors = []

    def reader():
        for _ in range(50):
            with db.read() as snap:
                values = set(snap.values())
                if len(values) != 1 or len(snap) != 200:
                    errors.append(values)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for n in range(1, 30):
        with db.write() as tx:
            tx.update({b"a%04d" % i: b"%d" % n for i in range(200)})
    for t in threads:
        t.join()
    assert errors == []


def test_closed_database_and_readonly(path):
    db = cowdb.open(path)
    with db.write() as tx:
        tx[b"k"] = b"v"
    snap = db.read()
    db.close()
    db.close()  # twice is fine
    for op in (lambda: db.read(), lambda: db.write(), lambda: db.version, lambda: db.at(1)):
        with pytest.raises(DatabaseClosed):
            op()
    with cowdb.open(path, readonly=True) as ro:
        assert ro.read()[b"k"] == b"v"
        with pytest.raises(ReadOnly):
            ro.write()
        with pytest.raises(ReadOnly):
            ro.tag("t")
    with cowdb.open(path) as db2:
        assert db2.version == 1 and db2.read()[b"k"] == b"v"
    del snap


def test_large_values_use_overflow_pages(path):
    big = bytes(range(256)) * 40_000   # ~10 MB
    with cowdb.open(path) as db:
        with db.write() as tx:
            tx[b"big"] = big
            tx[b"medium"] = b"m" * 5000
            assert tx[b"big"] == big       # readable before commit
    with cowdb.open(path) as db:
        assert db.read()[b"big"] == big and db.read()[b"medium"] == b"m" * 5000
        with db.write() as tx:
            tx[b"big"] = b"small now"
        assert db.at(1)[b"big"] == big
        assert db.check().ok


def test_unstorable_keys_are_simply_absent_and_any_bound_is_fine():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"a": b"1", b"b": b"2"})
    snap = db.read()
    assert b"" not in snap and b"x" * 5000 not in snap
    assert snap.get(b"", b"-") == b"-"
    with pytest.raises(KeyError):
        snap[b""]
    assert list(snap.keys(start=b"")) == [b"a", b"b"]
    assert list(snap.keys(start="", stop=b"\xff" * 2000)) == [b"a", b"b"]
    assert list(snap.keys(prefix=b"")) == [b"a", b"b"]
    assert snap.count(b"", None) == 2


def test_bytes_path_and_new_file_permissions(tmp_path):
    import os
    import stat
    path = os.fsencode(str(tmp_path / "b.cow"))
    with cowdb.open(path) as db:
        assert db.path == os.fsdecode(path)
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o644 & ~umask


def test_reader_pins_stay_exact_under_threads(path):
    """Pins taken and dropped by many threads at once: while a snapshot is open its txn
    is never above the process's published slot, and at the end nothing is pinned."""
    db = cowdb.open(path)
    shared = db._shared
    failures = []

    def churn(seed):
        import random
        rnd = random.Random(seed)
        held = []
        try:
            for _ in range(20000):
                if held and rnd.random() < 0.5:
                    shared.unpin(held.pop(rnd.randrange(len(held))))
                else:
                    t = rnd.randrange(1, 3)
                    shared.pin(t)
                    held.append(t)
                    if not 0 < shared.slot_txn <= t:
                        failures.append((t, shared.slot_txn))
            for t in held:
                shared.unpin(t)
        except Exception as e:  # a lost pin shows up as an unpin that finds no tokens
            failures.append(e)

    import sys
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
    try:
        threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    assert shared.oldest_pin() is None and shared.slot_txn == 0
    assert not shared.pins
    db.close()


def test_a_failing_read_raises_read_failed_naming_the_page():
    import errno
    from cowdb.errors import ReadFailed
    from cowdb.pages.io import MemoryIO

    class FlakyIO(MemoryIO):
        fail = False

        def pread(self, size, offset):
            if self.fail and offset >= 2 * 4096:
                raise OSError(errno.EIO, "Input/output error")
            return super().pread(size, offset)

    io = FlakyIO()
    db = cowdb.open(io=io, cache_nodes=16)
    with db.write() as tx:
        tx.update({b"k%05d" % i: b"v" * 100 for i in range(3000)})
    db._nodes.clear()
    io.fail = True
    with pytest.raises(ReadFailed) as e:
        db.read()[b"k00001"]
    assert e.value.page is not None and "page" in str(e.value)
    io.fail = False
    assert db.read()[b"k00001"] == b"v" * 100   # the database is fine once reads work


def test_closing_the_database_aborts_its_open_transaction(path):
    db = cowdb.open(path)
    tx = db.write()
    tx[b"a"] = b"1"
    db.close()
    with pytest.raises(TransactionClosed):
        tx.commit()
    tx.abort()  # harmless
    with cowdb.open(path) as again:
        assert again.version == 0 and b"a" not in again.read()
        with again.write() as tx2:   # the writer lock was released
            tx2[b"b"] = b"2"
        assert again.version == 1


def test_lookups_in_threads_while_a_writer_reuses_catalog_pages():
    """A writer commits (and reuses the catalog pages each commit frees) while other
    threads look versions, tags and logs up: every lookup must read pinned pages."""
    import sys
    db = cowdb.open(page_size=1024)
    with db.write() as tx:
        tx.update({b"k%04d" % i: b"v" for i in range(300)})
    db.tag("t", 1)
    errors, done = [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                v = db.version
                with db.at(max(1, v - 1)) as snap:
                    len(snap)
                db.tags(), db.branches(), db.head()
                list(db.log(limit=3))
            except Exception as e:  # any Corruption here is a page read while unpinned
                errors.append(e)
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        for i in range(300):
            with db.write() as tx:
                tx[b"k%04d" % (i % 300)] = b"%d" % i
        done.set()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert db.check().ok


@pytest.mark.parametrize("lookup", ["tags", "branches", "head", "log", "at", "version_time"])
def test_a_commit_between_reading_the_state_and_pinning_it_is_noticed(lookup):
    """The race the thread test above can only hope to hit, made deterministic: a lookup
    reads the newest state, and before its pin lands a writer commits enough to reuse
    that state's catalog pages (and the node cache forgets them). The lookup must notice
    its pin came too late and use the newer state, never the reused pages."""
    db = cowdb.open(page_size=1024)
    with db.write() as tx:
        tx.update({b"k%04d" % i: b"v" for i in range(300)})
    for i in range(40):  # a catalog of several pages
        db.tag("t%02d" % i, 1)
    shared, real_pin, fired = db._shared, db._shared.pin, []

    def pin_after_a_writer_moved_on(txn):
        if not fired:
            fired.append(txn)
            for i in range(6):  # each commit frees the catalog pages the last one wrote
                db.branch("b%d" % i)
                db.delete_branch("b%d" % i)
            db._nodes.clear()    # as if evicted, or as another process would see it
            db._commits.clear()
            assert db._store.meta.txn > txn
        real_pin(txn)

    db.branch("dev")
    when = db.commit_info(1).time
    want = {"tags": db.tags, "branches": db.branches, "head": lambda: db.head("dev"),
            "log": lambda: [c.version for c in db.log(limit=3, branch="dev")],
            "at": lambda: db.at("t07").version,
            "version_time": lambda: db.at(when).version}[lookup]
    expected = want()
    shared.pin = pin_after_a_writer_moved_on
    try:
        got = want()
    finally:
        shared.pin = real_pin
    assert fired, "the hook never ran: the lookup took no pin"
    assert got == expected
    assert db.check().ok


def test_closing_a_writer_keeps_the_pages_of_open_snapshots(path):
    """close() records a checkpoint: a txn of its own. Its free list must keep the pages
    that open snapshots (of other handles, here in the same process) still read, or the
    next commit reuses them under the snapshot."""
    old = {b"k%05d" % i: b"old" * 20 for i in range(2000)}
    with cowdb.open(path) as db:
        with db.write() as tx:
            tx.update(old)
    reader = cowdb.open(path)            # opens a checkpointed file: reads no tree page yet
    snap = reader.read()
    writer = cowdb.open(path)
    with writer.write() as tx:
        tx.update({k: b"new" * 20 for k in old})
    writer.set_retention(keep_last=1)
    writer.gc()                          # frees every page the snapshot reads
    writer.close()                       # the checkpoint
    other = cowdb.open(path)
    with other.write() as tx:            # reuses what the free list says is free
        tx.update({b"x%05d" % i: b"other" * 20 for i in range(2000)})
    assert dict(snap.items()) == old
    snap.close()
    assert other.check().ok
    other.close()
    reader.close()


def test_the_commit_records_a_handle_caches_are_bounded(monkeypatch):
    """A long-running writer cached the record of every commit it made and every version
    it looked up, forever (~150 B each: 150 MB after a million commits). The caches keep
    at most RECORDS_CACHED entries; a record dropped from them is read again."""
    import cowdb.db as dbmod
    monkeypatch.setattr(dbmod, "RECORDS_CACHED", 64)
    db = cowdb.open()
    for i in range(300):
        with db.write(message=f"m{i}") as tx:
            tx[b"k"] = b"%d" % i
        if i % 7 == 0:
            db.at(max(1, i - 50))  # (a lookup of an old version: the roots cache)
    st = db._state
    assert len(st.commits) <= 64 and len(st.roots) <= 64
    assert db.commit_info(1).message == "m0" and db.at(1)[b"k"] == b"0"
    assert [c.version for c in db.log(limit=3)] == [300, 299, 298]
    db.close()
