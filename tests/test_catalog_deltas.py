"""The catalog's nodes as delta images (format 5), and what a tree that frees does with them.

The catalog is a tree that frees what it replaces (it keeps no versions): a node written
as a delta keeps the chain it was written on, a node written whole or dropped frees its
whole chain. ``check()`` proves the accounting: every unit is reachable or free, never
both, never neither (a chain freed twice, or kept by nothing, fails it).
"""
import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

import cowdb
from cowdb.pages.checksum import BRANCH, BRANCH_DELTA, LEAF, LEAF_DELTA
from cowdb.pages.io import MemoryIO
from cowdb.tree import cursor
from cowdb.tree.walk import walk


def _catalog_kinds(db) -> list[int]:
    store = db._store
    return [store.read_head(p)[1] for p, _ in walk(db._nodes, store.meta.catalog)]


def _change(db, change) -> None:
    """Run change(catalog, txn) as one txn of db (its writer)."""
    with db._writer():
        db._update(change)


def _kids(db) -> list[tuple[int, int, int]]:
    """(page, checksum, txn) of each child of the catalog's root."""
    ref = db._store.meta.catalog
    root = db._nodes.load(ref.page, ref.checksum, ref.txn)
    return list(zip(root.kids, root.sums, root.txns))


def test_folds_write_catalog_leaves_as_deltas_and_branches_whole(tmp_path):
    db = cowdb.open(str(tmp_path / "db"), page_size=4096)
    kinds = set()
    for i in range(400):
        with db.write(message=f"commit {i} of a document, base={i}: edit") as tx:
            tx[b"k%d" % (i % 9)] = b"v%d" % i
        kinds.update(_catalog_kinds(db))
    assert LEAF_DELTA in kinds and LEAF in kinds and BRANCH in kinds
    assert BRANCH_DELTA not in kinds  # a catalog branch is written whole
    assert db.check().ok
    db.close()
    with cowdb.open(str(tmp_path / "db")) as db:
        assert [c.version for c in db.log()] == list(range(400, -1, -1))
        assert db.check().ok


def test_a_copy_that_changed_nothing_keeps_its_image():
    """In a tree that frees, a node copied on the way to a change but left as it was is
    not written again: its parent keeps the old reference, nothing is freed for it."""
    db = cowdb.open(io=MemoryIO(), page_size=1024)
    _change(db, lambda cat, txn: cat.tree.put_sorted(
        [(b"ox%03d" % i, b"x" * 40) for i in range(100)]))  # several leaves
    ref, kids = db._store.meta.catalog, _kids(db)
    _change(db, lambda cat, txn: cat.tree.put(b"ox050", b"x" * 40))  # the same value
    assert db._store.meta.catalog == ref and _kids(db) == kids
    assert db.check().ok


def test_a_run_appended_to_a_full_leaf_leaves_the_leaf_as_it_was():
    """Keys put in order past the end of a leaf that cannot hold them all: the leaf
    splits before them, so its image stays (commit records appended by a fold)."""
    db = cowdb.open(io=MemoryIO(), page_size=1024)
    # 71-byte entries: a bulk load fills leaves with 13 (a page holds 14)
    put = [(b"oc%03d" % i, b"r" * 60) for i in range(60)]
    _change(db, lambda cat, txn: cat.tree.put_sorted(put[:46]))
    before = _kids(db)
    _change(db, lambda cat, txn: cat.tree.put_sorted(put[46:]))
    after = _kids(db)
    assert before[-1] in after  # the last leaf: 13 entries, 2 new ones would not fit
    assert all(k in after for k in before)
    with db.read():
        cat = db._catalog(db._state)
        assert [k for k, _ in cursor.items(cat.tree, b"oc", b"od")] == [k for k, _ in put]
    assert db.check().ok


_ops = st.lists(st.tuples(st.sampled_from(["commit", "commit", "commit", "tag", "untag",
                                           "setting", "gc"]),
                          st.integers(0, 120)), min_size=5, max_size=70)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops)
def test_random_catalog_changes_keep_the_page_accounting(ops):
    """Commits of random message lengths, tags set and deleted, settings, gc: after each
    the catalog reads as the model says and check() accounts for every unit."""
    io = MemoryIO()
    db = cowdb.open(io=io, page_size=1024)
    tags: dict[str, int] = {}
    for i, (op, n) in enumerate(ops):
        if op == "commit":
            with db.write(message="m" * n) as tx:
                tx[b"k%d" % (n % 13)] = b"v%d" % i
        elif op == "tag" and f"t{n % 7}" not in tags:
            tags[f"t{n % 7}"] = db.version
            db.tag(f"t{n % 7}")
        elif op == "untag" and f"t{n % 7}" in tags:
            del tags[f"t{n % 7}"]
            db.delete_tag(f"t{n % 7}")
        elif op == "setting":
            db.set_retention(keep_last=5 + n)
        elif op == "gc":
            db.set_retention(keep_last=1 + n % 4)
            db.gc()
        assert db.tags() == tags
        assert db.check().ok, db.check().errors
    kept = [c.version for c in db.log()]
    db.close()
    with cowdb.open(io=MemoryIO(bytes(io.buf)), page_size=1024) as again:
        assert [c.version for c in again.log()] == kept and again.tags() == tags
        assert again.check().ok


def test_a_commit_record_in_an_overflow_value_is_found_after_a_fold(tmp_path):
    """A long message makes a commit record longer than a quarter page: once folded it is
    an overflow value, which the reader's bound root leaves to Python (not found is not
    what it says)."""
    path = str(tmp_path / "db")
    with cowdb.open(path) as db:
        for i in range(40):
            with db.write(message=("long " * 400 if i == 3 else f"c{i}")) as tx:
                tx[b"k"] = b"%d" % i
        db.set_retention(keep_last=100)  # folds whatever is pending
    with cowdb.open(path) as db:
        assert db.commit_info(4).message == "long " * 400
        with db.at(4) as s:
            assert s[b"k"] == b"3"
        assert [c.version for c in db.log()][-6:] == [5, 4, 3, 2, 1, 0]
