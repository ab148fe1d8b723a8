"""History: log, time travel, tags, restore, history(key), retention, gc, stats, compact."""
import random
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import hypothesis.strategies as hst
import msgpack
import pytest
from hypothesis import given, settings

import cowdb
from cowdb.history.catalog import Catalog, commit_key
from cowdb.history.commits import Commit, CommitStats
from cowdb.pages.meta import RootRef
from cowdb.errors import (Corruption, DatabaseClosed, InvalidType, RefExists, RefNotFound, VersionNotFound,
                          VersionReclaimed)


def fill(db, n_commits, keys=200, seed=1):
    rnd = random.Random(seed)
    for i in range(n_commits):
        with db.write(message=f"commit {i}", author="test") as tx:
            for _ in range(10):
                tx[b"key%05d" % rnd.randrange(keys)] = b"%d" % i


def test_log_and_commit_info(path):
    db = cowdb.open(path)
    fill(db, 5)
    log = list(db.log())
    assert [c.version for c in log] == [5, 4, 3, 2, 1, 0]
    assert [c.message for c in db.log(limit=2)] == ["commit 4", "commit 3"]
    c = db.commit_info(3)
    assert c.author == "test" and c.parents == (2,)
    assert c.time.tzinfo is timezone.utc
    assert c.stats.keys_put == 10 and c.stats.pages_written >= 1 and c.stats.bytes_written > 0
    db.close()
    db = cowdb.open(path)
    assert db.commit_info(3).message == "commit 2"
    with pytest.raises(VersionNotFound):
        db.commit_info(99)


def test_at_a_version_pins_only_while_open_and_rejects_bad_versions(path):
    """at(int) takes read()'s flat path (issue 19): the snapshot holds one pin, a failed
    lookup leaves none, and each kind of bad version raises its own error."""
    db = cowdb.open(path)
    fill(db, 3)
    other = cowdb.open(path)  # a handle that has cached no commit record
    for h in (db, other):
        with h.at(2) as snap, h.at(2) as again:
            assert snap.version == again.version == 2 and len(snap) == len(again)
            assert sum(h._shared.pins.values()) == 2
        assert not h._shared.pins
        for bad, err in ((99, VersionNotFound), (-1, VersionNotFound), (2.0, InvalidType),
                         (True, InvalidType)):
            with pytest.raises(err):
                h.at(bad)
            assert not h._shared.pins
    with db.write() as tx:  # another handle's commit: the other handle adopts it first
        tx[b"new"] = b"1"
    with other.at(db.version) as snap:
        assert snap[b"new"] == b"1"
    other.close()
    db.close()
    with pytest.raises(DatabaseClosed):
        db.at(1)


def test_the_first_at_of_a_version_decodes_its_root_and_the_rest_on_demand(path):
    """After reopening, at(v) reads only the root of v's commit record (issue 19); the
    snapshot reads v, and commit_info and log still give the whole Commit, equal to what
    the writer recorded. A record that does not decode is Corruption at the first at()."""
    db = cowdb.open(path)
    fill(db, 6)
    want = {c.version: c for c in db.log()}
    contents = {v: dict(db.at(v).items()) for v in want}
    db.close()
    db = cowdb.open(path)
    assert db.commit_info(5) == want[5]  # looked up whole first: at(5) takes that Commit
    for v in want:
        with db.at(v) as snap, db.at(v) as again:  # the second from the cache
            assert snap.version == again.version == v
            assert dict(snap.items()) == dict(again.items()) == contents[v]
            assert len(snap) == len(contents[v])
    assert db.commit_info(3) == want[3] and type(db.commit_info(3)) is Commit
    assert list(db.log()) == sorted(want.values(), key=lambda c: -c.version)
    st = db._state
    st.commits.pop(2, None)
    st.roots.pop(2, None)
    st.pending[commit_key(2)] = msgpack.packb([1, [2, 3]])  # a root of two fields
    with pytest.raises(Corruption, match="version 2 does not decode"):
        db.at(2)
    assert not db._shared.pins
    db.close()


_records = hst.builds(
    Commit, hst.integers(0, 2**40), hst.integers(0, 2**63), hst.builds(
        RootRef, hst.integers(0, 2**40), hst.integers(0, 2**64 - 1), hst.integers(0, 2**40)),
    hst.integers(0, 2**40), hst.lists(hst.integers(0, 2**40), max_size=3).map(tuple),
    hst.text(max_size=20), hst.text(max_size=10), hst.text(min_size=1, max_size=10),
    hst.integers(0, 2**40), hst.builds(CommitStats, *[hst.integers(0, 2**40)] * 4),
    hst.booleans())


_shapes = hst.lists(hst.one_of(hst.integers(-2**63, 2**64 - 1), hst.lists(
    hst.integers(0, 2**64 - 1), max_size=4), hst.binary(max_size=3)), min_size=9, max_size=11)


@given(hst.one_of(_records.map(Commit.encode), hst.binary(max_size=60),
                  _shapes.map(msgpack.packb)))
def test_a_commit_roots_decode_agrees_with_the_whole_records(data):
    """Catalog.root (what at(v) decodes) gives the version, root and count that
    Catalog.commit gives when both decode, and refuses (Corruption) only records that
    commit() refuses too; the rest of a record is checked when it is read whole."""
    cat = Catalog(SimpleNamespace(get=lambda key: data))  # type: ignore[arg-type]  # a tree
    try:
        whole = cat.commit(7)
    except Corruption:
        whole = None
    try:
        root = cat.root(7)
    except Corruption:
        assert whole is None
        return
    if whole is not None:
        assert (root.version, root.root, root.count) == (7, whole.root, whole.count)


def test_at_datetime_picks_newest_at_or_before():
    db = cowdb.open()
    times = []
    for i in range(5):
        with db.write() as tx:
            tx[b"k"] = b"%d" % i
        times.append(db.commit_info(db.version).time)
    for i, t in enumerate(times):
        assert db.at(t)[b"k"] == b"%d" % i
        assert db.at(t + timedelta(microseconds=0)).version == i + 1
    assert db.at(datetime.now(timezone.utc)).version == 5
    with pytest.raises(VersionNotFound):
        db.at(datetime(2000, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(ValueError):
        db.at(datetime(2030, 1, 1))  # naive: ambiguous
    with pytest.raises(InvalidType):
        db.at(1.5)


@pytest.mark.parametrize("existing, new", [("tag", "tag"), ("branch", "branch"),
                                           ("tag", "branch"), ("branch", "tag")])
def test_a_taken_ref_name_says_what_holds_it_and_why(existing, new):
    """The message names what holds the name; "tags never move" only where a tag is in
    the way of a tag, the shared namespace only where the other kind is."""
    db = cowdb.open()
    fill(db, 2)
    getattr(db, existing)("x")
    with pytest.raises(RefExists) as e:
        getattr(db, new)("x")
    msg = str(e.value)
    assert msg.startswith(f"a {existing} named 'x' exists"), msg
    assert ("tags never move" in msg) == (existing == new == "tag"), msg
    assert ("share one namespace" in msg) == (existing != new), msg
    assert f"delete it first with db.delete_{existing}()" in msg, msg


def test_tags_are_immutable():
    db = cowdb.open()
    fill(db, 3)
    assert db.tag("release-1") == 3
    assert db.tag("old", 1) == 1
    assert db.tags() == {"release-1": 3, "old": 1}
    with pytest.raises(RefExists):
        db.tag("release-1", 2)
    assert db.at("release-1").version == 3
    db.delete_tag("old")
    with pytest.raises(RefNotFound):
        db.delete_tag("old")
    with pytest.raises(RefNotFound):
        db.at("old")
    with pytest.raises(VersionNotFound):
        db.tag("future", 42)


def test_restore_keeps_history_and_shares_the_root():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"a": b"good", b"b": b"good"})
    with db.write(message="malicious edit") as tx:
        tx[b"a"] = b"evil"
    pages = db._store.page_count
    v = db.restore(1)
    st = db._store
    assert (st.page_count - pages) * st.unit <= 4 * st.page_size  # catalog pages only: O(1)
    assert dict(db.read().items()) == {b"a": b"good", b"b": b"good"}
    assert db.at(2)[b"a"] == b"evil"  # the bad version is still there
    assert db.commit_info(v).root == db.commit_info(1).root
    assert db.commit_info(v).parents == (2,)


def test_history_of_a_key():
    db = cowdb.open()
    for value in [b"1", b"1", b"2", None, b"3"]:
        with db.write(allow_empty=True) as tx:  # version 2 changes nothing
            tx[b"other"] = value or b"x"
            if value is None:
                tx.delete(b"k")
            else:
                tx[b"k"] = value
    h = [(v, value) for v, _, value in db.history(b"k")]
    assert h == [(5, b"3"), (4, None), (3, b"2"), (1, b"1")]
    assert [v for v, _, _ in db.history(b"k", limit=2)] == [5, 4]


def test_gc_reclaims_and_reports_reclaimed_versions():
    db = cowdb.open()
    fill(db, 30)
    db.tag("keep-me", 5)
    db.set_retention(keep_last=3)
    before = db.stats()
    assert before.reclaimable_bytes > 0
    report = db.gc()
    assert report.versions_dropped == 31 - 3 - 1   # all but the newest 3 and the tag
    assert report.pages_freed > 0
    for v in (28, 29, 30, 5):
        db.at(v).close()
    for v in (0, 1, 10, 27):
        with pytest.raises(VersionReclaimed):
            db.at(v)
    assert db.stats().reclaimable_bytes == 0
    assert db.check().ok


def test_open_snapshot_survives_gc_and_page_reuse():
    db = cowdb.open()
    fill(db, 10)
    old = db.at(3)
    want = dict(old.items())
    db.set_retention(keep_last=1)
    db.gc()
    fill(db, 30, seed=2)  # would reuse the freed pages if the snapshot did not pin them
    assert dict(old.items()) == want
    old.close()
    with pytest.raises(VersionReclaimed):
        db.at(3)


def test_steady_load_with_bounded_retention_stops_growing(path):
    db = cowdb.open(path, durability="none")
    db.set_retention(keep_last=10)
    rnd = random.Random(7)
    with db.write() as tx:
        tx.update({b"key%06d" % i: bytes(100) for i in range(5000)})
    sizes = []
    for rounds in range(12):
        for _ in range(100):
            with db.write() as tx:
                for _ in range(10):
                    tx[b"key%06d" % rnd.randrange(5000)] = rnd.randbytes(100)
        db.gc()
        sizes.append(db.stats().file_bytes)
    assert max(sizes[6:]) <= max(sizes[:6]) * 1.05, sizes
    assert db.check().ok


def test_stats_pins_tags_versions_and_readers():
    db = cowdb.open()
    fill(db, 5)
    db.tag("t", 2)
    reader = db.at(1)
    fill(db, 5, seed=3)
    db.set_retention(keep_last=2)
    db.gc()
    s = db.stats()
    assert s.pinned["tag t"] > 0
    assert any(k.startswith("reader ") and v > 0 for k, v in s.pinned.items())
    assert s.live_bytes > 0 and s.file_bytes >= s.live_bytes
    reader.close()


def test_compact_keeps_versions_and_sharing(tmp_path):
    src = cowdb.open(str(tmp_path / "a.cow"))
    fill(src, 40)
    src.tag("t", 7)
    src.branch("side", at=20)
    src.set_retention(keep_last=5)
    src.gc()
    src.compact(str(tmp_path / "b.cow"))
    with pytest.raises(RefExists):
        src.compact(str(tmp_path / "b.cow"))
    dst = cowdb.open(str(tmp_path / "b.cow"))
    assert dst.tags() == {"t": 7} and dst.branches() == src.branches()
    for c in src.log():
        assert dict(dst.at(c.version).items()) == dict(src.at(c.version).items())
    assert dict(dst.at("t").items()) == dict(src.at("t").items())
    assert dst.retention.keep_last == 5
    assert dst.check().ok
    assert dst.stats().file_bytes < src.stats().file_bytes


def delta_nodes(db):
    """How many of the nodes db's versions reach are delta images, of how many."""
    from cowdb.tree.btree import Branch, NodeCache
    nodes, seen, deltas = NodeCache(db._store), set(), 0
    stack = [(c.root.page, c.root.checksum, c.root.txn) for c in db.log()]
    while stack:
        ref = stack.pop()
        if ref in seen or not ref[0]:
            continue
        seen.add(ref)
        n = nodes.load(*ref)
        deltas += n.chain is not None
        if type(n) is Branch:
            stack.extend(zip(n.kids, n.sums, n.txns, strict=True))
    return deltas, len(seen)


@settings(max_examples=8, deadline=None)
@given(hst.integers(0, 2 ** 32))
def test_copies_of_many_versions_keep_their_deltas(tmp_path_factory, seed):
    """compact() and backup() write a node that is a delta as a delta on its base's copy:
    every version reads back the same from the copy, cold, the copy checks, and its live
    bytes are within a tenth of its source's (with every node written full, 3.3 times)."""
    rng = random.Random(seed)
    folder = tmp_path_factory.mktemp("c")
    src = cowdb.open(str(folder / "a.cow"), page_size=1024)
    with src.write() as tx:
        tx.update({b"k%05d" % i: b"v%d" % i for i in range(0, 3000, 2)})
    for v in range(60):
        with src.write(durability="none") as tx:
            for _ in range(rng.randrange(1, 10)):
                k = b"k%05d" % rng.randrange(3000)
                r = rng.random()
                if r < 0.15:
                    tx.pop(k, None)
                else:
                    tx[k] = b"x" * 700 if r < 0.18 else b"%d-%d" % (v, rng.randrange(999))
    want = {c.version: dict(src.at(c.version).items()) for c in src.log()}
    src_deltas, _ = delta_nodes(src)
    src.compact(str(folder / "b.cow"))
    src.backup(str(folder / "c.cow"))
    for name in ("b.cow", "c.cow"):
        dst = cowdb.open(str(folder / name))
        assert {c.version: dict(dst.at(c.version).items()) for c in dst.log()} == want
        assert dst.check().ok
        assert dst.stats().live_bytes <= 1.1 * src.stats().live_bytes
        deltas, _ = delta_nodes(dst)
        assert deltas >= src_deltas // 2 > 0
        dst.close()
    src.close()


@pytest.mark.parametrize("copy", ["compact", "backup"])
def test_copies_keep_the_deltas_of_leaves_with_overflow_values(tmp_path, copy):
    """A leaf whose values are mostly overflow references stays a delta in a copy: the
    copy compares a reference with its base's by reference (the base is decoded anew, so
    its reference objects are never the node's), not by identity, which made every such
    leaf a full image (the copy's deltas then counted every reference as changed)."""
    src = cowdb.open(str(tmp_path / "a.cow"), page_size=4096)
    with src.write() as tx:  # values of 1.5 KiB: each an overflow run, 32 B in its leaf
        tx.update({b"k%04d" % i: b"%04d" % i * 384 for i in range(400)})
    rng = random.Random(7)
    for v in range(80):
        with src.write(durability="none") as tx:
            tx[b"k%04d" % rng.randrange(400)] = b"small %d" % v
    want = {c.version: dict(src.at(c.version).items()) for c in src.log()}
    src_deltas, nodes = delta_nodes(src)
    getattr(src, copy)(str(tmp_path / "b.cow"))
    dst = cowdb.open(str(tmp_path / "b.cow"))
    assert {c.version: dict(dst.at(c.version).items()) for c in dst.log()} == want
    assert dst.check().ok
    deltas, dst_nodes = delta_nodes(dst)
    assert dst_nodes == nodes and deltas == src_deltas > 40
    assert dst.stats().live_bytes <= 1.02 * src.stats().live_bytes
    dst.close()
    src.close()


@pytest.mark.parametrize("gc_first", [False, True])
def test_compact_rewires_parents_as_gc_does(tmp_path, gc_first):
    """compact() drops what gc() would, and rewires as gc() does: a kept version whose
    parent it drops names that parent's nearest kept ancestors, so merge bases stay
    findable and revert refuses the rewired version (found by the versions model: the
    copy kept the dropped parent's number, and merge then failed)."""
    db = cowdb.open(str(tmp_path / "a.cow"), page_size=1024)
    with db.write() as tx:
        tx[b"a"] = b"1"                      # version 1
    db.branch("b1")                          # at 1
    with db.write() as tx:
        tx[b"b"] = b"2"                      # 2, dropped by the rule
    with db.write() as tx:
        tx[b"c"] = b"3"                      # 3
    with db.write(branch="b1") as tx:
        tx[b"d"] = b"4"                      # 4 on b1
    db.tag("t", 1)
    db.set_retention(keep_last=2)            # keeps 3, 4, the heads and tags: 0 and 2 go
    if gc_first:
        db.gc()
    db.compact(str(tmp_path / "b.cow"))
    copy = cowdb.open(str(tmp_path / "b.cow"))
    assert [c.version for c in copy.log()] == [3, 1]
    assert copy.commit_info(3).parents == (1,) and copy.commit_info(3).rewired
    with pytest.raises(VersionReclaimed):
        copy.revert(3)
    merged = copy.merge("b1", into="main")
    assert dict(copy.at(merged).items()) == {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"}
    assert copy.check().ok
    copy.close()
    db.close()


def test_another_handle_sees_versions_reclaimed_by_the_writer(path):
    writer = cowdb.open(path)
    fill(writer, 5)
    reader = cowdb.open(path, readonly=True)
    assert reader.at(2).version == 2          # now cached by the reader
    writer.set_retention(keep_last=1)
    writer.gc()
    with pytest.raises(VersionReclaimed):
        reader.at(2)
    reader.close()
    writer.close()


def test_a_failed_compact_leaves_no_file(tmp_path, monkeypatch):
    """A compact that fails part way (at each of the copy's writes and syncs in turn)
    must not leave a database at the destination (an empty or partial copy would pass
    for the result and block the retry), nor any temporary file; the retry succeeds."""
    from cowdb.errors import WriteFailed
    from cowdb.pages import io as iomod
    src = cowdb.open(str(tmp_path / "a.cow"))
    fill(src, 20)
    before = sorted(p.name for p in tmp_path.iterdir())
    real = {op: getattr(iomod.OsFileIO, op) for op in ("pwrite", "sync")}
    calls, fail_at = [], [None]

    def faulty(op):
        def call(self, *args):
            if self.path != src.path:
                calls.append(op)
                if len(calls) == fail_at[0]:
                    raise OSError(28, "No space left on device")
            return real[op](self, *args)
        return call

    for op in real:
        monkeypatch.setattr(iomod.OsFileIO, op, faulty(op))
    fail_at[0] = 0
    while True:  # fail the copy's first call, then its second... until one is not reached
        fail_at[0] += 1
        calls.clear()
        try:
            src.compact(str(tmp_path / "b.cow"))
        except WriteFailed:
            left = sorted(p.name for p in tmp_path.iterdir())
            assert left == before, f"after a failure at the copy's call {fail_at[0]}"
            continue
        # done, whole: the fault was not reached, or close() absorbed it (its checkpoint
        # record is an optimisation: the copy's commit was already durable)
        reached, at = len(calls) >= fail_at[0], fail_at[0]
        fail_at[0] = None
        dst = cowdb.open(str(tmp_path / "b.cow"))
        assert dict(dst.read().items()) == dict(src.read().items())
        assert dst.check().ok
        dst.close()
        if not reached:
            break
        fail_at[0] = at
        for p in tmp_path.iterdir():
            if p.name.startswith("b.cow"):
                p.unlink()
    assert at > 4
    src.close()


def test_creating_a_database_never_replaces_a_file_made_meanwhile(tmp_path):
    """Two processes that both find no file at a path both build a new one: the second
    must not replace the first's, which may already hold commits."""
    from cowdb.db import _create_file
    path = str(tmp_path / "a.cow")
    db = cowdb.open(path)
    with db.write() as tx:
        tx[b"k"] = b"v"
    db.close()
    with pytest.raises(FileExistsError):  # the slower process, past its "no file" check
        _create_file(path, 4096)               # (cowdb.open then opens the file it found)
    db = cowdb.open(path)
    assert db.read()[b"k"] == b"v"
    db.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.cow", "a.cow-lock"]


def test_new_files_without_hard_links(tmp_path, monkeypatch):
    """On a file system without hard links a new file is renamed in, still never over a
    file that exists."""
    import os

    from cowdb.db import _create_file

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    src = cowdb.open(str(tmp_path / "a.cow"))
    fill(src, 3)
    src.compact(str(tmp_path / "b.cow"))
    with pytest.raises(FileExistsError):
        _create_file(str(tmp_path / "b.cow"), 4096)
    dst = cowdb.open(str(tmp_path / "b.cow"))
    assert dict(dst.read().items()) == dict(src.read().items())
    dst.close()
    src.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cowdb-new")]
