"""Ref changes carried by the meta record (history/catalog.py, "pending"): a branch or a
tag writes one record and no page, every reader sees it, a crash keeps it as it keeps
any published record, and it folds into the catalog tree when a txn writes the tree or
the record runs out of room."""
import shutil

import hypothesis.strategies as st
import msgpack
import pytest
from hypothesis import given, settings
from xxhash import xxh3_64_intdigest

import cowdb
from cowdb.history.catalog import decode_pending, encode_pending
from cowdb.pages import meta as metamod
from cowdb.pages.io import MemoryIO


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "refs.cow")


def _fill(db, n=300):
    with db.write() as tx:
        tx.update({b"k%04d" % i: b"v" * 50 for i in range(n)})


def test_a_ref_change_writes_only_the_meta_record(path):
    db = cowdb.open(path, durability="none")
    _fill(db)
    store = db._store
    pages, written, count = store.page_count, store.pages_written, store.freelist.count()
    v = db.version
    db.branch("exp")
    db.tag("t1")
    db.delete_tag("t1")
    assert (store.page_count, store.pages_written, store.freelist.count()) == (
        pages, written, count)
    assert {b"hexp", b"gt1"} <= decode_pending(store.meta.pending).keys()
    assert db.branches() == {"exp": v, "main": v} and db.tags() == {}
    db.close()


def test_pending_refs_survive_a_crash_and_a_reopen(path):
    db = cowdb.open(path, durability="none")
    _fill(db)
    db.branch("exp")
    db.tag("t1")
    crashed = path + ".crash"
    shutil.copyfile(path, crashed)  # the file as a kill -9 now would leave it
    db.close()
    for p in (crashed, path):
        with cowdb.open(p) as again:
            assert set(again.branches()) == {"main", "exp"} and set(again.tags()) == {"t1"}
            assert again.check().ok


def test_another_handle_sees_pending_refs(path):
    writer, reader = cowdb.open(path), cowdb.open(path, readonly=True)
    _fill(writer)
    assert reader.branches() == {"main": writer.version}
    writer.branch("exp")
    assert reader.branches() == {"exp": writer.version, "main": writer.version}
    with reader.read("exp") as snap:
        assert snap.get(b"k0001") == b"v" * 50
    writer.delete_branch("exp")
    assert reader.branches() == {"main": writer.version}
    reader.close()
    writer.close()


def test_a_txn_that_writes_the_catalog_folds_pending_changes_into_its_tree(path):
    db = cowdb.open(path)
    _fill(db)
    db.branch("exp")
    db.tag("t1")
    db.delete_branch("exp")
    with db.write(message="pending") as tx:
        tx[b"new"] = b"1"
    assert db._store.meta.pending  # the commit record rides in the meta record too
    assert db._catalog(db._state).tree.get(b"c" + db.version.to_bytes(8, "big")) is None
    db.set_retention(keep_last=100)  # a setting writes the catalog tree: everything folds
    assert db._store.meta.pending == b""
    cat = db._catalog(db._state)
    assert cat.pending == {} and cat.tree.get(b"gt1") is not None
    assert cat.tree.get(b"hexp") is None
    assert cat.tree.get(b"c" + db.version.to_bytes(8, "big")) is not None
    assert db.tags() == {"t1": db.version - 1} and set(db.branches()) == {"main"}
    assert [c.version for c in db.log()] == list(range(db.version, -1, -1))
    db.close()


def test_refs_fold_when_they_outgrow_the_meta_record(path):
    db = cowdb.open(path, durability="none", page_size=1024)
    _fill(db, 40)
    room = db._store.pending_room
    folds = 0
    names = [f"tag-{i:03d}-" + "x" * (i % 150) for i in range(120)]
    for name in names:
        before = len(db._store.meta.pending)
        db.tag(name)
        after = len(db._store.meta.pending)
        assert after <= room
        folds += after < before
    assert folds >= 5
    assert list(db.tags()) == sorted(names)
    for name in names[::3]:
        db.delete_tag(name)
    kept = sorted(set(names) - set(names[::3]))
    assert list(db.tags()) == kept
    db.close()
    with cowdb.open(path) as again:
        assert list(again.tags()) == kept and again.check().ok


def test_a_fast_forward_merge_is_a_ref_change(path):
    db = cowdb.open(path)
    _fill(db)
    db.branch("ff")
    with db.write(branch="ff") as tx:
        tx[b"k0000"] = b"new"
    catalog = db._store.meta.catalog
    v = db.merge("ff")
    assert v == db.head("ff") == db.head() and db._store.meta.catalog == catalog
    with db.read() as snap:
        assert snap.get(b"k0000") == b"new"
    db.close()
    with cowdb.open(path) as again:
        assert again.head() == v


def _rewrite_slot(data: bytearray, off: int, edit) -> None:
    """Apply ``edit(body, pending) -> (body, pending)`` to the meta slot at ``off`` and
    seal it again (a record that verifies, whatever it says)."""
    body = bytearray(data[off:off + metamod.META_SIZE - 8])
    n = int.from_bytes(body[-8:], "little")
    body, pending = edit(body, bytes(data[off + metamod.META_SIZE:off + metamod.META_SIZE + n]))
    body[-8:] = len(pending).to_bytes(8, "little")
    rec = bytes(body) + xxh3_64_intdigest(bytes(body) + pending).to_bytes(8, "little")
    data[off:off + metamod.META_SIZE + len(pending)] = rec + pending


def test_a_format_version_1_file_opens_and_is_written_as_version_4():
    io = MemoryIO()
    io.unit = 1024  # whole-page units, as versions 1 and 2 allocate
    db = cowdb.open(io=io, page_size=1024)
    _fill(db)
    db.set_retention()  # folds the pending commit: a version 1 record carries none
    db.close()
    data = bytearray(db._io.buf)

    def as_v1(body, pending):
        assert not pending
        body[8:12] = (1).to_bytes(4, "little")
        return body, pending

    for off in (0, 1024):
        _rewrite_slot(data, off, as_v1)
    db = cowdb.open(io=MemoryIO(bytes(data)), page_size=1024)
    assert dict(db.read().items()) == {b"k%04d" % i: b"v" * 50 for i in range(300)}
    db.branch("exp")
    assert db._store.meta.pending and db._store.meta.encode()[8:12] == \
        metamod.FORMAT_VERSION.to_bytes(4, "little")
    db.close()


def test_a_version_1_record_with_pending_bytes_is_refused():
    m = metamod.Meta(5, 4, 1024, metamod.EMPTY, metamod.EMPTY, 0, 3, 0, b"\x80")
    data = bytearray(m.encode())
    data[8:12] = (1).to_bytes(4, "little")
    body = bytes(data[:metamod.META_SIZE - 8])
    data[metamod.META_SIZE - 8:metamod.META_SIZE] = xxh3_64_intdigest(
        body + b"\x80").to_bytes(8, "little")
    with pytest.raises(metamod.BadMeta):
        metamod.decode(bytes(data))


@pytest.mark.parametrize("version", [1, 2, 3, 4])
@pytest.mark.parametrize("page_size", [0, 256, 768, 3 * 4096, 1 << 17])
def test_a_record_with_a_page_size_cowdb_never_writes_is_refused(version, page_size):
    """The fuzzer found a version 1 record (checksum right) with any page size: decode took
    it, so the store would have paged the file by it. Every version names a power of two
    from 512 to 65536 (the sizes read_slots tries); anything else is not a record."""
    m = metamod.Meta(5, 4, 1024, metamod.EMPTY, metamod.EMPTY, 0, 3, 256)
    data = bytearray(m.encode())
    data[8:12] = version.to_bytes(4, "little")
    data[12:16] = page_size.to_bytes(4, "little")
    body = bytes(data[:metamod.META_SIZE - 8])
    data[metamod.META_SIZE - 8:metamod.META_SIZE] = xxh3_64_intdigest(body).to_bytes(8, "little")
    with pytest.raises(metamod.BadMeta, match="page size"):
        metamod.decode(bytes(data))


def test_pending_bytes_that_do_not_decode_fall_back_to_the_other_slot():
    """A record whose checksum holds but whose pending bytes are not ref changes (a
    writer bug, not damage) is not adopted: the open takes the other slot."""
    garbage = b"\x92\xc4\x02zz\x01"  # [b"zz", 1]: not a ref's key, not a version
    with pytest.raises(cowdb.errors.Corruption):
        decode_pending(garbage)
    db = cowdb.open(page_size=1024)
    _fill(db)
    db.tag("t1")
    older = db._store.meta
    db.branch("exp")
    db.close()
    data = bytearray(db._io.buf)
    slots = {off: metamod.decode(bytes(data[off:off + 1024])) for off in (0, 1024)}
    newest = max(slots, key=lambda off: slots[off].txn)
    _rewrite_slot(data, newest, lambda body, pending: (body, garbage))
    db = cowdb.open(io=MemoryIO(bytes(data)), page_size=1024)
    assert db._store.meta.txn == slots[1024 - newest].txn
    assert set(db.tags()) == {"t1"} and (older.txn <= db._store.meta.txn)
    db.close()


@settings(max_examples=200)
@given(st.binary(max_size=4096 - metamod.META_SIZE), st.integers(1, 2**40),
       st.integers(0, 2**40))
def test_meta_records_round_trip_with_pending_bytes(pending, txn, count):
    m = metamod.Meta(txn, txn - 1, 4096, metamod.RootRef(7, 8, 9), metamod.EMPTY, 0, count,
                     64, pending)
    data = m.encode()
    assert metamod.pending_length(data[:metamod.META_SIZE]) == len(pending)
    assert metamod.decode(data + b"junk") == m
    with pytest.raises(metamod.BadMeta):
        metamod.decode(data[:-1] if pending else data[:-9])


@pytest.mark.parametrize("version, page_size, most", [
    (1, 4096, 0), (2, 4096, 1024), (4, 4096, 1024), (4, 65536, 1024),
    (5, 1024, 1024 - metamod.META_SIZE), (5, 4096, 4096 - metamod.META_SIZE),
    (5, 65536, 4096 - metamod.META_SIZE)])
def test_how_many_pending_bytes_a_record_may_carry(version, page_size, most):
    """Version 5 records carry pending changes up to the end of a page of at most 4 KiB;
    a record of an older version claiming more than it could is not a record."""
    assert metamod.pending_max(version, page_size) == most
    for n in {most, most + 1, 2000}:
        m = metamod.Meta(9, 8, page_size, metamod.RootRef(7, 8, 9), metamod.EMPTY, 0, 50, 64,
                         b"p" * n)
        body = bytearray(m.encode())
        body[8:12] = version.to_bytes(4, "little")
        body[metamod.META_SIZE - 8:metamod.META_SIZE] = xxh3_64_intdigest(
            bytes(body[:metamod.META_SIZE - 8]) + m.pending).to_bytes(8, "little")
        data = bytes(body) + b"junk"
        if n <= most:
            assert metamod.decode(data).pending == m.pending
            assert metamod.pending_length(data) == n
        else:
            with pytest.raises(metamod.BadMeta):
                metamod.decode(data)
            assert metamod.pending_length(data) == 0


def test_commits_stay_pending_up_to_the_end_of_a_4k_meta_page(path):
    """At 4 KiB pages a version-5 record carries ~37 commits of ~100-byte records before
    they fold into the catalog tree (1024 bytes, ~10 commits, before version 5)."""
    db = cowdb.open(path, durability="none")
    catalog = db._store.meta.catalog
    for i in range(30):
        with db.write(message=f"commit {i} with a message about as long as a document's") as tx:
            tx[b"k"] = b"%d" % i
    assert db._store.meta.catalog == catalog  # no fold: no catalog page written
    assert 2048 < len(db._store.meta.pending) <= db._store.pending_room == 4096 - 120
    db.close()
    with cowdb.open(path) as db:
        assert [c.version for c in db.log()][:3] == [30, 29, 28]


def _legal(k: bytes, v) -> bool:
    """The oracle of the pending log's shape (docs/format.md, "The catalog")."""
    if k[:1] in (b"h", b"g"):
        return len(k) > 1 and (v is None or type(v) is bytes and len(v) == 8)
    return k[:1] == b"c" and len(k) == 9 and type(v) is bytes and len(v) > 0


_keys = st.one_of(st.binary(min_size=1, max_size=40),
                  st.builds(lambda v: b"c" + v.to_bytes(8, "big"), st.integers(0, 2**64 - 1)),
                  st.builds(lambda k, n: k + n, st.sampled_from([b"h", b"g"]),
                            st.binary(min_size=0, max_size=20)))
_values = st.one_of(st.none(), st.binary(min_size=8, max_size=8), st.binary(max_size=120))


@given(st.lists(st.tuples(_keys, _values), max_size=20), st.integers(0, 3))
def test_decode_pending_replays_ref_changes_and_commit_records(changes, cut):
    """A log of changes replays to the last word on each key; anything else in it (a key
    that is neither a ref's nor a commit's, a ref's value that is not a version, an
    empty commit record, a cut-off last change) is Corruption, never a partial read."""
    import msgpack
    log = b"".join(msgpack.packb([k, v]) for k, v in changes)
    if all(_legal(k, v) for k, v in changes):
        assert decode_pending(log) == dict(changes)
    else:
        with pytest.raises(cowdb.errors.Corruption):
            decode_pending(log)
    if log and cut:
        with pytest.raises(cowdb.errors.Corruption):
            decode_pending(log[:-cut])


@given(st.lists(st.tuples(_keys, _values).filter(lambda kv: _legal(*kv)), max_size=30))
def test_a_log_written_again_says_the_same_in_fewer_bytes(changes):
    """encode_pending (a log that outgrew the room, written with each key once) reads
    back as the same changes as the appended log, and is never longer."""
    import msgpack
    log = b"".join(msgpack.packb([k, v]) for k, v in changes)
    again = encode_pending(decode_pending(log))
    assert decode_pending(again) == decode_pending(log) == dict(changes)
    assert len(again) <= len(log)
    assert encode_pending({}) == b""


# ---- commit records in the meta record ------------------------------------------------
_steps = st.lists(st.one_of(
    st.tuples(st.just("commit"), st.sampled_from(["main", "b1", "b2"]),
              st.integers(-3_000_000, 2_000_000)),  # µs the clock moves (back: > 1 s slack)
    st.tuples(st.just("branch"), st.sampled_from(["b1", "b2"]), st.integers(0, 10**6)),
    st.tuples(st.just("merge"), st.sampled_from(["b1", "b2"]), st.just(0)),
    st.tuples(st.just("tag"), st.sampled_from(["t1", "t2"]), st.integers(0, 10**6)),
    st.tuples(st.just("fold"), st.just(""), st.just(0)),
    st.tuples(st.just("gc"), st.just(""), st.integers(1, 8))), min_size=1, max_size=40)


def _folded(db):
    """The newest state's catalog with its pending changes written into (a copy of) its
    tree: what every read of the pending-aware catalog must agree with."""
    from cowdb.history.catalog import Catalog
    from cowdb.tree.btree import Tree
    st_ = db._state
    cat = Catalog(Tree(db._nodes, st_.catalog), dict(st_.pending), st_.pending_log)
    cat.fold()
    return db._catalog(st_), cat


@settings(max_examples=40, deadline=None)
@given(_steps)
def test_catalog_reads_merge_pending_commits_as_if_folded(steps):
    """commits(), last_version(), commit(v), refs and version_at() over the pending commit
    records (and ref changes) answer what the same catalog folded into its tree does, for
    any mix of commits on branches (the clock going back and forth), fast-forwards,
    merges, tags, folds (a setting) and gc; and a reopened handle answers the same."""
    import logging
    from unittest import mock
    clock = [1_700_000_000_000_000_000]
    quiet = logging.getLogger("cowdb")  # the clock steps back on purpose: no warnings
    with mock.patch("cowdb.db.now_ns", lambda: clock[0]), \
            mock.patch.object(quiet, "disabled", True):
        db = cowdb.open(page_size=1024, durability="none")
        n = 0
        for kind, name, arg in steps:
            kept = [c.version for c in db._catalog(db._state).commits()]  # gc drops some
            if kind == "commit":
                clock[0] += arg * 1000
                if name == "main" or name in db.branches():
                    n += 1
                    with db.write(message="m" * (n % 50), branch=name) as tx:
                        tx[b"k%d" % (n % 7)] = b"%d" % n
            elif kind == "branch" and name not in db.branches():
                db.branch(name, kept[arg % len(kept)])
            elif kind == "merge" and name in db.branches():
                try:
                    db.merge(name, resolve="ours")
                except cowdb.errors.VersionReclaimed:
                    pass
            elif kind == "tag" and name not in db.tags():
                db.tag(name, kept[arg % len(kept)])
            elif kind == "fold":
                db.set_retention()
            elif kind == "gc":
                db.set_retention(keep_last=arg)
                db.gc()
                db.set_retention()
        pending, folded = _folded(db)
        commits = list(folded.commits())
        assert [c.version for c in pending.commits()] == [c.version for c in commits]
        assert list(pending.commits(reverse=False)) == commits[::-1]
        assert pending.last_version() == folded.last_version() == db.version
        assert pending.refs(b"h") == folded.refs(b"h")
        assert pending.refs(b"g") == folded.refs(b"g")
        times = sorted({c.time_ns + d for c in commits for d in (-1, 0, 1)})
        for branch in ("main", "b1", "b2"):
            head = pending.head(branch)
            for t in times:
                assert pending.version_at(branch, t, head) == folded.version_at(
                    branch, t, head), (branch, t)
        raw = db._io
        db.close()
        again = cowdb.open(io=raw, page_size=1024)
        assert [c.version for c in again.log()] == [c.version for c in
                                                    db_log(pending, again.head())]
        assert again.check().ok
        again.close()


def db_log(cat, head):
    """main's first-parent chain from the catalog alone."""
    v = head
    while v is not None:
        c = cat.commit(v)
        if c is None:
            return
        yield c
        v = c.parents[0] if c.parents else None


def test_commits_ride_in_the_meta_record_until_it_runs_out_of_room(path):
    """A commit writes no catalog page: its record and main's head ride in the meta
    record; once they outgrow it, one commit folds them all into the catalog tree (the
    log written again with each key once first), and every version stays readable,
    through a reopen too."""
    db = cowdb.open(path, page_size=1024)
    _fill(db, 40)
    room = db._store.pending_room
    cat_pages, folds = db._store.meta.catalog, 0
    for i in range(60):
        with db.write(message=f"commit {i}") as tx:
            tx[b"k%04d" % i] = b"w%d" % i
        meta = db._store.meta
        assert len(meta.pending) <= room
        if meta.catalog != cat_pages:
            folds += 1
            assert meta.pending == b""
            cat_pages = meta.catalog
        else:
            assert commit_key_in(meta.pending, db.version)
    assert 3 <= folds <= 15
    assert [c.message for c in db.log(limit=3)] == ["commit 59", "commit 58", "commit 57"]
    db.close()
    with cowdb.open(path) as again:
        assert again.version == 61 and again.check().ok
        for v in range(1, 62):
            with again.at(v) as snap:
                assert len(snap) == 40 + max(0, v - 41)
        t = again.commit_info(45).time
        assert again.at(t).version == 45


def commit_key_in(pending: bytes, version: int) -> bool:
    return b"c" + version.to_bytes(8, "big") in decode_pending(pending)


def test_compact_copies_pending_refs(path, tmp_path):
    db = cowdb.open(path)
    _fill(db)
    db.branch("exp")
    db.tag("t1")
    db.delete_branch("exp")
    db.branch("keep")
    assert db._store.meta.pending
    dest = str(tmp_path / "compact.cow")
    db.compact(dest)
    with cowdb.open(dest) as copy:
        assert copy.branches() == db.branches() and copy.tags() == db.tags()
        assert copy._store.meta.pending == b"" and copy.check().ok
    db.close()


def test_check_reports_a_ref_to_a_version_that_is_not_kept():
    """check() holds every ref, pending or in the tree, to a kept version."""
    import msgpack
    db = cowdb.open(page_size=1024)
    _fill(db)
    db.tag("t1")
    db.close()
    data = bytearray(db._io.buf)
    slots = {off: metamod.decode(bytes(data[off:off + 1024])) for off in (0, 1024)}
    newest = max(slots, key=lambda off: slots[off].txn)
    bad = msgpack.packb([b"gghost", (99).to_bytes(8, "big")])
    _rewrite_slot(data, newest, lambda body, pending: (body, pending + bad))
    db = cowdb.open(io=MemoryIO(bytes(data)), page_size=1024)
    assert db.tags() == {"t1": 1, "ghost": 99}
    report = db.check()
    assert not report.ok and any("ghost" in e and "99" in e for e in report.errors)
    db.close()


def test_a_commit_record_larger_than_the_room_folds_at_once():
    db = cowdb.open(page_size=1024)
    for i in range(5):
        with db.write(message="x" * 3000 if i == 2 else f"c{i}") as tx:
            tx[b"a%d" % i] = b"%d" % i
        assert len(db._store.meta.pending) <= db._store.pending_room
        if i == 2:  # too long to ride: everything pending went into the tree with it
            assert db._store.meta.pending == b""
    assert [len(c.message) for c in db.log()] == [2, 2, 3000, 2, 2, 6]
    assert db.at(db.commit_info(3).time).version == 3 and db.check().ok
    db.close()


def test_a_pending_commit_older_than_the_tree_never_makes_a_version_number_reused():
    """The file says every pending commit is newer than the tree's; a crafted record
    that breaks this must not make the next commit take a number already in use."""
    import msgpack
    db = cowdb.open(page_size=1024)
    _fill(db)
    for i in range(3):
        with db.write(message=f"c{i}") as tx:
            tx[b"x"] = b"%d" % i
    db.set_retention()  # everything folds: versions 0-4 in the tree
    record = db._catalog(db._state).tree.get(b"c" + (2).to_bytes(8, "big"))
    db.close()
    data = bytearray(db._io.buf)
    slots = {off: metamod.decode(bytes(data[off:off + 1024])) for off in (0, 1024)}
    newest = max(slots, key=lambda off: slots[off].txn)
    old = msgpack.packb([b"c" + (2).to_bytes(8, "big"), record])
    _rewrite_slot(data, newest, lambda body, pending: (body, pending + old))
    db = cowdb.open(io=MemoryIO(bytes(data)), page_size=1024)
    assert db.version == 4
    with db.write() as tx:
        tx[b"y"] = b"1"
    assert tx.version == 5 and [c.version for c in db.log(limit=2)] == [5, 4]
    db.close()


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2 ** 40), st.integers(0, 2 ** 63), st.text(max_size=20),
       st.text(max_size=20), st.text(min_size=1, max_size=20))
def test_a_fold_reads_branch_and_time_as_the_whole_record_says(version, time_ns, message,
                                                               author, branch):
    """A fold's time-index entry takes only (branch, time) of a pending commit record:
    what Commit.decode reads there; a record of another shape is Corruption."""
    from cowdb.errors import Corruption
    from cowdb.history.catalog import Catalog
    from cowdb.history.commits import Commit, CommitStats, branch_and_time
    from cowdb.pages.meta import RootRef
    c = Commit(version, time_ns, RootRef(5, 6, 7), 3, (version - 1,), message, author,
               branch, 9, CommitStats(1, 2, 3, 4))
    whole = Commit.decode(version, c.encode())
    assert branch_and_time(version, c.encode()) == (whole.branch, whole.time_ns)
    wrong_branch = msgpack.unpackb(c.encode())
    wrong_branch[6] = 7
    for bad in ([1, 2, 3], [], wrong_branch, {"a": 1}):
        with pytest.raises(Corruption, match=f"version {version}"):
            Catalog._decode(version, msgpack.packb(bad), branch_and_time)
