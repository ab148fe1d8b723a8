"""Ref changes carried by the meta record (history/catalog.py, "pending"): a branch or a
tag writes one record and no page, every reader sees it, a crash keeps it as it keeps
any published record, and it folds into the catalog tree when a txn writes the tree or
the record runs out of room."""
import shutil

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from xxhash import xxh3_64_intdigest

import cowdb
from cowdb.history.catalog import decode_pending
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
    assert decode_pending(store.meta.pending).keys() == {b"hexp", b"gt1"}
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


def test_a_commit_folds_pending_refs_into_the_catalog_tree(path):
    db = cowdb.open(path)
    _fill(db)
    db.branch("exp")
    db.tag("t1")
    db.delete_branch("exp")
    assert db._store.meta.pending
    with db.write(message="fold") as tx:
        tx[b"new"] = b"1"
    assert db._store.meta.pending == b""
    cat = db._catalog(db._state)
    assert cat.pending == {} and cat.tree.get(b"gt1") is not None
    assert cat.tree.get(b"hexp") is None
    assert db.tags() == {"t1": db.version - 1} and set(db.branches()) == {"main"}
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
    assert db._store.meta.pending and db._store.meta.encode()[8:12] == (4).to_bytes(4, "little")
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
@given(st.binary(max_size=metamod.PENDING_MAX), st.integers(1, 2**40), st.integers(0, 2**40))
def test_meta_records_round_trip_with_pending_bytes(pending, txn, count):
    m = metamod.Meta(txn, txn - 1, 4096, metamod.RootRef(7, 8, 9), metamod.EMPTY, 0, count,
                     64, pending)
    data = m.encode()
    assert metamod.pending_length(data[:metamod.META_SIZE]) == len(pending)
    assert metamod.decode(data + b"junk") == m
    with pytest.raises(metamod.BadMeta):
        metamod.decode(data[:-1] if pending else data[:-9])


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.one_of(
    st.none(), st.binary(min_size=8, max_size=8))), max_size=20), st.integers(0, 3))
def test_decode_pending_replays_only_ref_changes(changes, cut):
    """A log of changes replays to the last word on each key; anything else in it (a key
    that is not a ref's, a cut-off last change) is Corruption, never a partial read."""
    import msgpack
    log = b"".join(msgpack.packb([k, v]) for k, v in changes)
    ok = all(k[:1] in (b"h", b"g") and len(k) > 1 for k, _ in changes)
    if ok:
        assert decode_pending(log) == dict(changes)
    else:
        with pytest.raises(cowdb.errors.Corruption):
            decode_pending(log)
    if log and cut:
        with pytest.raises(cowdb.errors.Corruption):
            decode_pending(log[:-cut])


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
