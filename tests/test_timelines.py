"""Branches, diff and merge: properties against dict models, and the cost bounds
(pages visited, pages written) asserted on counts, never on times."""
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import cowdb
from cowdb.errors import (InvalidKey, InvalidMerge, MergeConflict, ProtectedBranch, RefExists,
                          RefNotFound, VersionReclaimed)
from test_model_versions import fn_resolve, model_merge, write_changes

KEYS = [b"k%03d" % i for i in range(120)]
changes = st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), st.sampled_from(
    [b"x", b"y", b"z" * 500])), max_size=60)


def apply(tx, model, edits):
    write_changes(tx, model, edits.items())


@settings(max_examples=60, deadline=None)
@given(base_edits=changes, ours_edits=changes, theirs_edits=changes,
       resolve=st.sampled_from([None, "ours", "theirs", "fn"]))
def test_merge_matches_model(base_edits, ours_edits, theirs_edits, resolve):
    db = cowdb.open(page_size=1024)
    base, ours, theirs = {}, None, None
    with db.write(allow_empty=True) as tx:   # a version even with no edits
        apply(tx, base, base_edits)
    db.branch("side")
    ours, theirs = dict(base), dict(base)
    with db.write(allow_empty=True) as tx:
        apply(tx, ours, ours_edits)
    with db.write(branch="side", allow_empty=True) as tx:
        apply(tx, theirs, theirs_edits)
    want, conflicts = model_merge(base, ours, theirs, resolve)
    r = fn_resolve if resolve == "fn" else resolve
    head = db.read().version
    if conflicts:
        with pytest.raises(MergeConflict) as e:
            db.merge("side", resolve=r)
        assert sorted(c.key for c in e.value.conflicts) == sorted(conflicts)
        assert db.read().version == head  # nothing committed
        return
    v = db.merge("side", resolve=r)
    assert dict(db.read().items()) == want
    assert set(db.commit_info(v).parents) == {db.branches()["side"], head}
    db.close()


def test_branch_is_o1_and_isolated():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"k%05d" % i: b"v" for i in range(5000)})
    pages = db._store.page_count
    db.branch("what-if")
    st = db._store
    assert (st.page_count - pages) * st.unit <= 4 * st.page_size  # only catalog pages, any n
    with db.write(branch="what-if") as tx:
        tx[b"k00001"] = b"changed"
    assert db.read()[b"k00001"] == b"v"
    assert db.read(branch="what-if")[b"k00001"] == b"changed"
    assert db.at("what-if")[b"k00001"] == b"changed"
    assert [c.version for c in db.log(branch="what-if")] == [2, 1, 0]


def test_diff_visits_pages_in_proportion_to_changes():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"key%08d" % i: b"v" * 100 for i in range(50_000)})
    with db.write() as tx:
        for i in range(0, 50_000, 5000):
            tx[b"key%08d" % i] = b"changed"
    d = db.diff(1, 2)
    assert len(list(d)) == 10
    depth = 3
    assert d.pages_visited <= 2 * 10 * depth + 2, d.pages_visited
    full = db.diff(0, 1)
    assert len(list(full)) == 50_000
    assert full.pages_visited > 50_000 // 40  # a full diff does read every leaf


def test_merge_writes_pages_in_proportion_to_changes():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"key%08d" % i: b"v" * 100 for i in range(50_000)})
    db.branch("b")
    with db.write(branch="b") as tx:
        for i in range(0, 50_000, 1000):
            tx[b"key%08d" % i] = b"theirs"
    with db.write() as tx:
        for i in range(500, 50_000, 1000):
            tx[b"key%08d" % i] = b"ours"
    v = db.merge("b")
    stats = db.commit_info(v).stats
    assert stats.pages_written <= 50 * 4, stats
    snap = db.read()
    assert snap[b"key00000000"] == b"theirs" and snap[b"key00000500"] == b"ours"


def test_merge_restore_and_revert_record_their_author():
    db = cowdb.open()
    with db.write() as tx:
        tx[b"a"] = b"1"
    db.branch("b")
    with db.write(branch="b") as tx:
        tx[b"b"] = b"1"
    with db.write() as tx:
        tx[b"c"] = b"1"
    assert db.commit_info(db.merge("b", author="alice")).author == "alice"
    assert db.commit_info(db.restore(1, author="bob")).author == "bob"
    assert db.commit_info(db.revert(3, author="carol", allow_empty=True)).author == "carol"


def test_fast_forward_and_nothing_to_merge():
    db = cowdb.open()
    db.branch("b")
    assert db.merge("b") == 0                    # nothing new on b
    with db.write(branch="b") as tx:
        tx[b"a"] = b"1"
    assert db.merge("b") == 1                    # fast-forward: main moves to b's head
    assert db.branches() == {"b": 1, "main": 1}


def test_revert_undoes_exactly_one_commit():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"a": b"1", b"b": b"1", b"c": b"1"})
    with db.write(message="bad") as tx:
        tx[b"a"] = b"evil"
        del tx[b"b"]
        tx[b"new"] = b"evil"
    with db.write() as tx:
        tx[b"c"] = b"2"
    v = db.revert(2)
    assert dict(db.read().items()) == {b"a": b"1", b"b": b"1", b"c": b"2"}
    assert db.commit_info(v).message == "revert version 2"
    with db.write() as tx:
        tx[b"c"] = b"3"
    with pytest.raises(MergeConflict) as e:
        db.revert(3)  # version 3 set c from 1 to 2; the head has c=3 since
    assert [c.key for c in e.value.conflicts] == [b"c"]


def test_bad_inputs_raise_specific_errors():
    db = cowdb.open()
    db.branch("b")
    with pytest.raises(RefExists):
        db.branch("b")
    with pytest.raises(RefNotFound):
        db.read(branch="nope")
    with pytest.raises(RefNotFound):
        db.merge("nope")
    with pytest.raises(ProtectedBranch):
        db.delete_branch("main")
    with pytest.raises(InvalidMerge):
        db.merge("b", into="b")
    with pytest.raises(RefNotFound):
        db.delete_branch("nope")
    db.set_retention(keep_last=1)
    for i in range(3):
        with db.write() as tx:
            tx[b"k"] = b"%d" % i
    db.delete_branch("b")
    db.gc()
    with pytest.raises(VersionReclaimed):
        list(db.diff(1, 3))
    with pytest.raises(ValueError):
        db.merge("main", into="main", resolve="mine")


def test_tags_and_branches_share_one_namespace():
    db = cowdb.open()
    db.branch("x")
    with pytest.raises(RefExists):
        db.tag("x")
    db.tag("t")
    with pytest.raises(RefExists):
        db.branch("t")


def test_merge_commit_counts_the_keys_it_changed():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"a": b"1", b"b": b"1"})
    db.branch("side")
    with db.write(branch="side") as tx:
        tx[b"a"] = b"2"
        del tx[b"b"]
        tx[b"c"] = b"3"
    with db.write() as tx:
        tx[b"z"] = b"z"
    stats = db.commit_info(db.merge("side")).stats
    assert (stats.keys_put, stats.keys_deleted) == (2, 1)


def test_log_and_history_check_their_arguments_at_once():
    db = cowdb.open()
    with pytest.raises(RefNotFound):
        db.log(branch="nope")
    with pytest.raises(InvalidKey):
        db.history(b"")


def test_merge_grafts_subtrees_only_one_side_changed():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"key%08d" % i: b"v" * 100 for i in range(50_000)})
    db.branch("side")
    with db.write(branch="side") as tx:      # ten leaves, far apart
        for i in range(100, 50_000, 5000):
            tx[b"key%08d" % i] = b"theirs"
    with db.write() as tx:
        tx[b"key00049999"] = b"ours"
    v = db.merge("side")
    stats = db.commit_info(v).stats
    assert stats.pages_written <= 3            # the root and a branch or two: no leaf copied
    assert (stats.keys_put, stats.keys_deleted) == (0, 0)   # nothing merged key by key
    snap = db.read()
    assert snap[b"key00000100"] == b"theirs" and snap[b"key00049999"] == b"ours"
    assert len(snap) == 50_000
    assert [c.key for c in db.diff("side", v)] == [b"key00049999"]
    assert db.check().ok


def test_head_of_a_branch_versus_the_newest_version():
    db = cowdb.open()
    with db.write() as tx:
        tx[b"a"] = b"1"
    db.branch("side")
    with db.write(branch="side") as tx:
        tx[b"b"] = b"1"
    assert db.version == 2                         # newest on any branch
    assert db.head() == 1 == db.read().version     # main's head
    assert db.head("side") == 2 == db.read(branch="side").version
    with pytest.raises(RefNotFound):
        db.head("nope")
