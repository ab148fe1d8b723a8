"""The structural diff's paths, each against a dict comparison: node pairs that line up
(overwrites), leaves whose keys differ (inserts and deletes, also at leaf boundaries),
trees of different heights, overflow values, key ranges; with the node signatures made
by the writer (in-process) and made on first use (nodes decoded after a reopen)."""
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import cowdb
from cowdb.tree.btree import NodeCache
from cowdb.tree.node import Branch, Leaf, branch_sig, leaf_sig

KEYS = [b"k%04d" % i for i in range(400)]
VALUES = [b"", b"a", b"b", b"x" * 100, b"y" * 100, b"z" * 300, b"w" * 300]  # 300: overflow


def model_diff(a: dict, b: dict, start=None, stop=None):
    out = []
    for k in sorted(a.keys() | b.keys()):
        if (start is not None and k < start) or (stop is not None and k >= stop):
            continue
        if a.get(k) != b.get(k):
            out.append((k, a.get(k), b.get(k)))
    return out


def bound():
    return st.one_of(st.none(), st.sampled_from(KEYS), st.sampled_from([b"k", b"k02", b"k1"]))


def two_versions(db, base: dict, edit: dict) -> dict:
    """Version 1 holds base, version 2 base with edit applied (None deletes), even if they
    change nothing; what version 2 holds."""
    with db.write(allow_empty=True) as tx:
        tx.update(base)
    with db.write(allow_empty=True) as tx:
        return apply(tx, edit, base)


def apply(tx, edit: dict, before: dict) -> dict:
    """Apply edit (None deletes) in tx; what the transaction then holds."""
    after = dict(before)
    for k, v in edit.items():
        if v is None:
            tx.pop(k, None)
            after.pop(k, None)
        else:
            tx[k] = v
            after[k] = v
    return after


edits = st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), st.sampled_from(VALUES)),
                        max_size=120)


@settings(max_examples=60, deadline=None)
@given(base=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=400),
       edit=edits, start=bound(), stop=bound(), reopen=st.booleans())
def test_diff_matches_model(tmp_path_factory, base, edit, start, stop, reopen):
    path = str(tmp_path_factory.mktemp("diff") / "db.cow")
    db = cowdb.open(path, page_size=1024)
    after = two_versions(db, base, edit)
    if reopen:  # decoded nodes: their signatures are made by the diff
        db.close()
        db = cowdb.open(path)
    for a, b, ma, mb in ((1, 2, base, after), (2, 1, after, base), (0, 2, {}, after)):
        got = [tuple(c) for c in db.diff(a, b, start=start, stop=stop)]
        assert got == model_diff(ma, mb, start, stop)
    db.close()


def loaded(n=5000, **kw):
    db = cowdb.open(page_size=1024, **kw)
    with db.write() as tx:
        tx.update({b"key%06d" % i: b"v%05d" % i * 10 for i in range(n)})
    return db


def leaf_bounds(db, version):
    """The first key of every leaf of a version's tree."""
    nodes, snap = db._nodes, db.at(version)
    ref = snap._live().ref
    firsts, todo = [], [nodes.load(ref.page, ref.checksum, ref.txn)]
    while todo:
        node = todo.pop()
        if type(node) is Branch:
            todo += [nodes.load(k, s, t) for k, s, t in zip(reversed(node.kids), reversed(node.sums),
                                                             reversed(node.txns))]
        else:
            firsts.append(node.keys[0])
    snap.close()
    return firsts


def test_deletes_and_inserts_at_leaf_boundaries():
    db = loaded()
    firsts = leaf_bounds(db, 1)
    assert len(firsts) > 50
    model = {b"key%06d" % i: b"v%05d" % i * 10 for i in range(5000)}
    before = dict(model)
    with db.write() as tx:
        for k in firsts[1::3]:          # the first key of a leaf: its separator stays
            del tx[k]
            del model[k]
        for k in firsts[2::3]:          # just before a leaf's first key
            tx[k[:-1] + b"/"] = b"new"  # b"/" < b"0"
            model[k[:-1] + b"/"] = b"new"
        for k in firsts[3::3]:          # the last key of the leaf before
            i = int(k[3:]) - 1
            tx[b"key%06d" % i] = b"changed"
            model[b"key%06d" % i] = b"changed"
    d = db.diff(1, 2)
    assert [tuple(c) for c in d] == model_diff(before, model)
    changed = len(model_diff(before, model))
    assert d.pages_visited <= 2 * changed * 4 + 2, d.pages_visited


def test_overwrites_visit_only_their_paths_and_ranges_cut_them():
    db = loaded()
    with db.write() as tx:
        for i in range(0, 5000, 250):
            tx[b"key%06d" % i] = b"changed"
    d = db.diff(1, 2)
    assert [c.key for c in d] == [b"key%06d" % i for i in range(0, 5000, 250)]
    assert d.pages_visited <= 2 * 20 * 3 + 2, d.pages_visited
    d = db.diff(1, 2, start=b"key001000", stop=b"key002000")
    assert [c.key for c in d] == [b"key%06d" % i for i in range(1000, 2000, 250)]
    assert d.pages_visited <= 2 * 4 * 3 + 2 * 3, d.pages_visited
    assert [c.key for c in db.diff(1, 2, prefix=b"key0012")] == [b"key001250"]
    assert list(db.diff(1, 2, prefix=b"key0013")) == []


def test_rewriting_an_overflow_value_unchanged_is_no_change():
    db = cowdb.open(page_size=1024)
    big = b"B" * 1000
    with db.write() as tx:
        tx.update({b"a": b"1", b"b": big, b"c": b"3", b"d": b"x" * 300})
    with db.write() as tx:
        tx[b"b"] = big                  # a new overflow run, another checksum, same bytes
        tx[b"d"] = b"y" * 300           # overflow -> overflow, other bytes
        tx[b"a"] = b"A" * 400           # inline -> overflow
        tx[b"c"] = b"C"
    assert [tuple(c) for c in db.diff(1, 2)] == [
        (b"a", b"1", b"A" * 400), (b"c", b"3", b"C"), (b"d", b"x" * 300, b"y" * 300)]
    with db.write() as tx:
        tx[b"a"] = b"1"                 # overflow -> inline
    assert [tuple(c) for c in db.diff(2, 3)] == [(b"a", b"A" * 400, b"1")]


@pytest.mark.parametrize("n", [1, 30, 3000])
def test_trees_of_different_heights(n):
    db = cowdb.open(page_size=1024)
    with db.write() as tx:
        tx.update({b"key%06d" % i: b"v" for i in range(n)})
    with db.write() as tx:       # grows the tree by one or two levels
        tx.update({b"key%06d" % i: b"w" * 50 for i in range(0, 20 * n, 7)})
    a = {b"key%06d" % i: b"v" for i in range(n)}
    b = a | {b"key%06d" % i: b"w" * 50 for i in range(0, 20 * n, 7)}
    assert [tuple(c) for c in db.diff(1, 2)] == model_diff(a, b)
    assert [tuple(c) for c in db.diff(2, 1)] == model_diff(b, a)
    lo, hi = b"key%06d" % (n // 2), b"key%06d" % (3 * n)
    assert [tuple(c) for c in db.diff(1, 2, start=lo, stop=hi)] == model_diff(a, b, lo, hi)


def test_node_signatures_match_decoded_nodes():
    """A written leaf's signature and a branch's (both made by the first diff that needs
    them, never by the writer) equal the ones a decoded copy of the image gets, so a diff
    may compare either kind of node with the other."""
    db = cowdb.open(page_size=1024)
    with db.write() as tx:
        tx.update({b"key%05d" % i: (b"x" * 400 if i % 7 == 0 else b"v%d" % i)
                   for i in range(3000)})
    with db.write() as tx:
        tx[b"key01234"] = b"changed"
    store, nodes = db._store, db._nodes
    with db.read() as snap:
        ref = snap._live().ref
    assert type(nodes[ref.page]) is Branch and nodes[ref.page].sig is None
    assert [c.key for c in db.diff(1, 2)] == [b"key01234"]
    assert nodes[ref.page].sig is not None          # made by the diff, kept
    todo, seen = [ref.page], set()
    fresh = NodeCache(store)            # reads (and materialises delta images) anew
    while todo:
        page = todo.pop()
        node = nodes[page]              # the writer's node, still cached
        copy = fresh.load(page, int.from_bytes(store.read(page)[:8], "little"), node.txn)
        assert copy.sig is None
        if type(node) is Branch:
            assert branch_sig(copy) == branch_sig(node)
            todo += node.kids
        else:
            assert type(node) is Leaf
            if b"key01234" in node.keys:       # the diff compared this leaf: made, kept
                assert node.sig is not None
            assert leaf_sig(copy) == leaf_sig(node) and copy.sig == node.sig
        seen.add(type(node))
    assert seen == {Branch, Leaf}
    # a writer's copy of a clean node starts without one (it is edited in place)
    assert nodes[ref.page].copy().sig is None and node.copy().sig is None


@settings(max_examples=60, deadline=None)
@given(base=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=400),
       edit=edits)
def test_same_content_and_differs_at_answer_as_the_dicts(base, edit):
    """same_content (two written trees) answers as the dicts do; differs_at (a dirty tree
    against its head, at one key) says exactly whether the key's value changed: with
    values put back equal, overflow values (inline in the dirty tree, an overflow run in
    its head), deletes of keys that were not there."""
    from cowdb.tree.compare import differs_at, same_content
    db = cowdb.open(page_size=1024)
    after = two_versions(db, base, edit)
    a, b = db.commit_info(1).root, db.commit_info(2).root
    assert same_content(db._nodes, a, b) == (after == base)
    assert same_content(db._nodes, b, a) == (after == base)
    tx = db.write()
    again = apply(tx, {k: base.get(k) for k in edit}, after)  # (edit undone: base again)
    assert again == base
    for k in list(edit)[:20]:
        assert differs_at(tx._tree, b, k) == (base.get(k) != after.get(k))
    tx.abort()
    db.close()


@settings(max_examples=60, deadline=None)
@given(base=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), min_size=1,
                            max_size=400),
       edit=edits, back=st.booleans())
def test_unchanged_is_true_only_for_a_tree_that_holds_its_head(base, edit, back):
    """unchanged() (a dirty tree against the clean nodes it copied, before any write)
    says True only where the transaction's content is its head's."""
    from cowdb.tree.compare import unchanged
    db = cowdb.open(page_size=1024)
    with db.write() as tx:
        tx.update(base)
    head = db.commit_info(db.version).root
    tx = db.write()
    after = apply(tx, edit, base)
    if back:  # every key put back to its head's value, as a new bytes object
        for k in edit:
            if k in base:
                tx[k] = bytes(bytearray(base[k]))
                after[k] = base[k]
    if unchanged(tx._tree, head):
        assert after == base
    tx.commit()
    assert tx.skipped == (after == base) and dict(db.read().items()) == after
    db.close()


def test_a_commit_of_values_put_back_equal_begins_no_txn(monkeypatch):
    """Overwrites with equal values (new bytes objects) are seen before the write: the
    commit is skipped without a txn begun, so nothing is rolled back."""
    db = cowdb.open(page_size=1024)
    with db.write() as tx:
        tx.update({k: b"v" * 50 for k in KEYS})
    calls = []
    monkeypatch.setattr(db._store, "begin", lambda *a: calls.append(a))
    with db.write() as tx:
        for k in KEYS[::37]:
            tx[k] = bytes(bytearray(b"v" * 50))
    assert tx.skipped and calls == [] and db.version == 1
    db.close()
