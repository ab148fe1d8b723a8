"""Space comes back (issue 14): after gc() the end of the file is given back, what
lives near the end is moved into free space lower down, and free space inside the
file is reused before the file grows. Nothing a live reader (in this handle or
another) or a fallback meta record can reach is ever moved away or cut off."""
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cowdb


def contents(db, version):
    with db.at(version) as s:
        return dict(s.items())


def big_value_come_and_gone(db, n, value, big, fill=b"x"):
    """Three versions: n keys; a big value beside them; the keys rewritten to ``fill``
    and the big value deleted."""
    with db.write() as tx:
        for i in range(n):
            tx[b"k%04d" % i] = value
    with db.write() as tx:
        tx[b"big"] = os.urandom(big)
    with db.write() as tx:
        for i in range(n):
            tx[b"k%04d" % i] = fill
        del tx[b"big"]


def test_a_deleted_big_value_gives_its_space_back(path):
    db = cowdb.open(path)
    big_value_come_and_gone(db, 100, b"x" * 100, 20 << 20, b"x" * 100)
    assert os.path.getsize(path) > 20 << 20
    db.set_retention(keep_last=1)
    db.gc()
    assert os.path.getsize(path) <= 1 << 20
    with db.read() as s:
        assert len(s) == 100 and s[b"k0042"] == b"x" * 100
    assert db.check().ok
    db.close()
    assert os.path.getsize(path) <= 1 << 20
    db = cowdb.open(path)
    assert db.check().ok and len(db.read()) == 100
    db.close()


def _versions_then_gc(path):
    """Many versions share subtrees and overflow values; gc drops the oldest and moves
    what lives at the end of the file down. Returns (db, file size before gc, what every
    kept version holds)."""
    rng = random.Random(7)
    db = cowdb.open(path, page_size=1024, durability="none")
    with db.write() as tx:
        for i in range(3000):
            tx[b"key%05d" % i] = b"v" * 40
        tx[b"shared-big"] = os.urandom(3000)      # an overflow value every version shares
    for v in range(40):
        with db.write() as tx:
            for _ in range(30):
                tx[b"key%05d" % rng.randrange(3000)] = b"%d" % v
            if v % 7 == 0:
                tx[b"big%d" % v] = os.urandom(5000)
            if v % 5 == 0:
                for i in range(rng.randrange(3000), 3000, 97):
                    tx.pop(b"key%05d" % i, None)
    db.tag("t", 12)
    db.set_retention(keep_last=5)
    report_size = os.path.getsize(path)
    before = {c.version: contents(db, c.version) for c in db.log()}
    db.gc()
    return db, report_size, {c.version: before[c.version] for c in db.log()}


def test_kept_versions_read_the_same_after_the_tail_moves(path):
    """Every kept version reads as before gc, and after reopening."""
    db, _size, want = _versions_then_gc(path)
    assert 12 in want and len(want) == 6
    for v, c in want.items():
        assert contents(db, v) == c, v
    assert db.check().ok
    db.close()
    db = cowdb.open(path)
    for v, c in want.items():
        assert contents(db, v) == c, v
    assert db.check().ok
    db.close()


def test_gc_gives_the_end_back_after_many_versions(path):
    db, size, _want = _versions_then_gc(path)
    assert os.path.getsize(path) < size
    db.close()


def test_a_live_reader_keeps_its_pages_through_gc(path):
    """Snapshots in this handle and in another one hold versions gc drops: the pages
    they read are neither moved away nor cut off while they are open."""
    db = cowdb.open(path)
    big_value_come_and_gone(db, 500, b"a" * 50, 2 << 20, b"b" * 50)
    other = cowdb.open(path)
    here = db.at(2)
    there = other.at(2)
    want = dict(here.items())
    db.set_retention(keep_last=1)
    db.gc()
    with db.write() as tx:                 # a commit that reuses whatever it may
        for i in range(500):
            tx[b"k%04d" % i] = b"c" * 50
    db.gc()
    assert dict(here.items()) == want
    assert dict(there.items()) == want
    assert os.path.getsize(path) > 2 << 20  # the readers pin the big value
    here.close()
    there.close()
    other.close()
    db.gc()
    assert os.path.getsize(path) <= 1 << 20
    assert db.check().ok
    with db.read() as s:
        assert s[b"k0001"] == b"c" * 50 and b"big" not in s
    db.close()


def test_free_space_inside_is_reused_before_the_file_grows(path):
    """Every other overflow value deleted: gc frees holes all through the file, moves
    what lies at the end into some of them, and stats() reports the rest as free;
    new values then go into the holes, and the file does not grow."""
    db = cowdb.open(path)
    with db.write() as tx:
        for i in range(300):
            tx[b"v%03d" % i] = os.urandom(3000)   # one overflow page each
    with db.write() as tx:
        for i in range(0, 300, 2):
            del tx[b"v%03d" % i]
    db.set_retention(keep_last=1)
    db.gc()
    size = os.path.getsize(path)
    st = db.stats()
    assert 0 < st.free_bytes < st.file_bytes
    with db.write() as tx:
        for i in range(st.free_bytes // 4096 // 2):
            tx[b"new%03d" % i] = os.urandom(3000)
    assert os.path.getsize(path) <= size
    assert db.check().ok
    db.close()


def many_versions_on_a_device(keys, versions, changes, seed, message=""):
    """A database on a FaultyIO (1 KiB pages): ``keys`` keys, then ``versions`` versions
    of ``changes`` random overwrites each. Returns (io, db, rng)."""
    from faults import FaultyIO

    io = FaultyIO(b"")
    db = cowdb.open(io=io, page_size=1024)
    rng = random.Random(seed)
    with db.write() as tx:
        for i in range(keys):
            tx[b"key%05d" % i] = b"a" * 50
    for v in range(versions):
        with db.write(message=message) as tx:
            for _ in range(changes):
                tx[b"key%05d" % rng.randrange(keys)] = b"%d" % v * 10
    return io, db, rng


def test_gc_frees_a_full_disk():
    """The disk fills: commits fail with WriteFailed, but set_retention() and gc() still
    run (on the reserve the store keeps) and give the end of the file back."""
    from cowdb.errors import WriteFailed

    io, db, rng = many_versions_on_a_device(3000, 60, 30, seed=3)
    io.full = True                       # every write that grows the file fails now
    with pytest.raises(WriteFailed):
        for r in range(100):
            with db.write() as tx:
                for i in range(100):
                    tx[b"more%03d%03d" % (r, i)] = b"m" * 50
    with db.read() as s:
        want = dict(s.items())
    size = io.size()
    db.set_retention(keep_last=1)
    report = db.gc()
    assert report.versions_dropped >= 60 and report.pages_freed > 100
    with db.read() as s:
        assert dict(s.items()) == want
    assert io.size() < size * 0.7        # the end of the file went back to the disk
    io.free_space()
    for v in range(5):
        with db.write() as tx:
            for _ in range(30):
                tx[b"key%05d" % rng.randrange(3000)] = b"after %d" % v
    assert db.check().ok
    db.close()


def test_gc_on_a_full_disk_goes_in_rounds(monkeypatch):
    """When even the reserve cannot hold gc's one txn, it drops versions a few at a
    time, each round reusing what the one before freed."""
    from cowdb.pages import store as storemod

    # a reserve of 8 pages renewed 8 at a time: gc's one txn cannot fit in the 8 to 16
    # pages past the end when the disk fills, and each round does
    monkeypatch.setattr(storemod, "RESERVE_PAGES", 8)
    monkeypatch.setattr(storemod, "RESERVE_STEP_MAX", 8)
    io, db, rng = many_versions_on_a_device(2000, 150, 20, seed=5, message="m" * 200)
    io.full = True
    calls = []
    real = db._upkeep._drop   # gc's work is in db._upkeep (cowdb/upkeep.py)
    monkeypatch.setattr(db._upkeep, "_drop", lambda *a: calls.append(len(a[2])) or real(*a))
    with db.read() as s:
        want = dict(s.items())
    db.set_retention(keep_last=1)
    report = db.gc()
    assert calls[0] == 1 and len(calls) == 2 and calls[1] > 1   # one txn failed: rounds
    assert report.versions_dropped == 151   # all but the head (versions 0 to 150)
    with db.read() as s:
        assert dict(s.items()) == want
    assert db.check().ok
    db.close()


def unwritten_extents(fd):
    """(offset, length) of the file's unwritten extents (blocks allocated by fallocate and
    never written), by the FIEMAP ioctl; None where the file system cannot say."""
    import fcntl
    import struct
    n = 256
    req = bytearray(struct.pack("=QQIIII", 0, 2 ** 64 - 1, 1, 0, n, 0) + bytes(56 * n))
    try:
        fcntl.ioctl(fd, 0xC020660B, req)   # FS_IOC_FIEMAP, FIEMAP_FLAG_SYNC
    except OSError:
        return None
    mapped = struct.unpack_from("=I", req, 20)[0]
    out = []
    for i in range(mapped):
        logical, _phys, length = struct.unpack_from("=QQQ", req, 32 + 56 * i)
        flags = struct.unpack_from("=I", req, 32 + 56 * i + 40)[0]
        if flags & 0x800:   # FIEMAP_EXTENT_UNWRITTEN
            out.append((logical, length))
    return out


def test_the_reserve_is_written_blocks(path):
    """The reserve past the last unit is zeros written, not fallocated: a commit's images
    then overwrite blocks the file has, and its fdatasync flushes data alone (a fallocated
    extent is converted by the first write into it, a journal commit). It stays within
    its bounds as the file grows, renewed by more pages at a time as the file grows
    (``reserve_step``: a 64th of the file, 8 to 32 pages)."""
    from cowdb.pages.store import RESERVE_PAGES, RESERVE_STEP, RESERVE_STEP_MAX
    db = cowdb.open(path)
    store = db._store
    ps = store.page_size
    steps = set()
    for r in range(60):
        with db.write() as tx:
            for i in range(400):
                tx[b"k%03d%04d" % (r, i)] = os.urandom(100)
        end = store.page_count * store.unit
        size = os.path.getsize(path)
        steps.add(store.reserve_step())
        assert RESERVE_STEP <= store.reserve_step() <= RESERVE_STEP_MAX
        assert end + RESERVE_PAGES * ps <= size <= end + (RESERVE_PAGES + store.reserve_step()) * ps
    assert min(steps) == RESERVE_STEP and max(steps) > RESERVE_STEP   # it grew with the file
    found = unwritten_extents(db._io.fd)
    if found is None:
        db.close()
        pytest.skip("this file system does not answer FIEMAP")
    assert found == []
    db.close()


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(0, 300), st.integers(0, 3000)),
    st.tuples(st.just("delete"), st.integers(0, 300), st.just(0)),
    st.tuples(st.just("tag"), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("retain"), st.integers(1, 4), st.just(0)),
    st.tuples(st.just("gc"), st.just(0), st.just(0)),
    st.tuples(st.just("reader"), st.just(0), st.just(0))), max_size=25),
    on_file=st.booleans())
def test_stats_account_for_every_byte_of_the_file(tmp_path_factory, ops, on_file):
    """The header, live, reclaimable, free and reserve bytes of stats() add up to the
    file's size, whatever was written, dropped, pinned and collected (the free list's
    images were once counted as its newest alone), and agree with check()'s own walk."""
    path = str(tmp_path_factory.mktemp("s") / "db") if on_file else None
    db = cowdb.open(path)
    readers = []
    try:
        for i, (op, a, b) in enumerate(ops):
            if op == "put":
                with db.write() as tx:
                    for j in range(a % 40 + 1):
                        tx[b"k%03d" % ((a + j * 7) % 300)] = os.urandom(b)
            elif op == "delete":
                with db.write() as tx:
                    tx.delete(b"k%03d" % a)
            elif op == "tag" and f"t{a}" not in db.tags():
                db.tag(f"t{a}")
            elif op == "retain":
                db.set_retention(keep_last=a)
            elif op == "gc":
                db.gc()
            elif op == "reader":
                readers.append(db.read())
            s = db.stats()
            parts = (s.header_bytes, s.live_bytes, s.reclaimable_bytes, s.free_bytes,
                     s.reserve_bytes)
            assert all(p >= 0 for p in parts), (i, op, s)
            if on_file:
                assert sum(parts) == s.file_bytes, (i, op, s)
            else:  # in memory: no reserve, and the last image's unused tail is not stored
                assert 0 <= sum(parts) - s.file_bytes < db._store.unit, (i, op, s)
            report = db.check()  # an independent walk: every unit owned, or free
            assert report.pages * db._store.unit == s.live_bytes + s.reclaimable_bytes
            assert report.free_pages * db._store.unit == s.free_bytes
    finally:
        for r in readers:
            r.close()
        db.close()
