"""Delta images (format 4, issue 14 step b): a data tree's changed node is written as its
base's reference and the entries that changed; reads materialise the chain.

Encode, apply and materialise are checked against the node they stand for (hypothesis);
many versions of random changes read back exactly, warm and cold, through the node
cache and both mapped searches (py_map_get and, when built, _tree_c.map_get); chains
stay within their bounds (LEAF_CHAIN, BRANCH_CHAIN <= MAX_CHAIN); a damaged delta or a damaged base reads as Corruption.
"""
import os
import random

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import cowdb
from cowdb.errors import Corruption
from cowdb.pages.checksum import BRANCH_DELTA, HEADER, HEADER_SIZE, LEAF_DELTA
from cowdb.pages.meta import RootRef
from cowdb.tree import btree
from cowdb.tree.btree import NodeCache, Tree, images
from cowdb.tree.mapped import py_map_get
from cowdb.tree.node import (
    BRANCH_CHAIN,
    LEAF_CHAIN,
    LEAF_ENTRY,
    MAX_CHAIN,
    Branch,
    Leaf,
    apply_delta,
    decode,
    depth,
    encode_delta,
    encode_leaf,
)

SEARCHES = [py_map_get] + ([btree._tree_c.map_get] if btree._tree_c is not None else [])
PAGE = 1024

small_keys = st.integers(0, 400).map(lambda i: b"k%05d" % i)
values = st.one_of(st.binary(max_size=40), st.binary(min_size=300, max_size=900))


def a_leaf(items):
    keys = sorted(items)
    vals = [items[k] for k in keys]
    node = Leaf(keys, vals, HEADER_SIZE + sum(LEAF_ENTRY + len(k) + len(v)
                                             for k, v in zip(keys, vals)))
    node = decode(bytes(encode_leaf(node, 7)), 5)  # a clean node, as a reader has it
    return node


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(small_keys, st.binary(max_size=40), min_size=1, max_size=40),
       st.lists(st.tuples(small_keys, st.one_of(st.none(), st.binary(max_size=40))),
                max_size=12))
def test_a_delta_applied_to_its_base_is_the_node(base_items, edits):
    base = a_leaf(base_items)
    node = base.copy()
    model = dict(base_items)
    for k, v in edits:
        if v is None:
            model.pop(k, None)
        else:
            model[k] = v
    keys = sorted(model)
    node.keys = [next((b for b in base.keys if b == k), k) for k in keys]  # shared objects
    node.vals = [next((bv for bk, bv in zip(base.keys, base.vals) if bk == k and
                       bv == model[k]), model[k]) for k in keys]
    node.size = HEADER_SIZE + sum(LEAF_ENTRY + len(k) + len(model[k]) for k in keys)
    image = encode_delta(node, base, 5, 0, 7, 9)
    if image is None:  # not under half the full image: written full instead
        assert 2 * (HEADER_SIZE + 28) > node.size or edits
        return
    got = apply_delta(base, bytes(image), 40)
    assert got.keys == keys and got.vals == [model[k] for k in keys]
    assert got.size == node.size and got.txn == 9
    assert HEADER.unpack_from(image, 0)[1] == LEAF_DELTA


def versions_of(rng, db, count, keyspace, big_every=0, log=False):
    """``count`` versions of random puts and deletes: the model of each version (of
    what they wrote), or with ``log`` each version's changes [(key, value or None)]."""
    model = {}
    out = {}
    for v in range(count):
        changes = []
        with db.write() as tx:
            for _ in range(rng.randrange(1, 12)):
                k = b"key%05d" % rng.randrange(keyspace)
                if rng.random() < 0.2:
                    tx.pop(k, None)
                    model.pop(k, None)
                    changes.append((k, None))
                else:
                    val = os.urandom(600) if big_every and rng.randrange(big_every) == 0 \
                        else b"%d-%d" % (v, rng.randrange(1000))
                    tx[k] = val
                    model[k] = val
                    changes.append((k, val))
        if log:  # a version of nothing but deletes of absent keys is skipped: no version
            out.setdefault(db.version, []).extend(changes)
        else:
            out[db.version] = dict(model)
    return out


def read_all(db, models):
    for v, model in models.items():
        with db.at(v) as snap:
            assert dict(snap.items()) == model, v
            for k, val in list(model.items())[:50]:
                assert snap[k] == val


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2 ** 32), st.integers(50, 2000))
def test_every_version_reads_back_warm_and_cold(tmp_path_factory, seed, keyspace):
    rng = random.Random(seed)
    path = str(tmp_path_factory.mktemp("d") / "d.cow")
    db = cowdb.open(path, page_size=PAGE)
    with db.write() as tx:
        for i in range(0, keyspace, 2):
            tx[b"key%05d" % i] = b"base"
    models = {db.version: {b"key%05d" % i: b"base" for i in range(0, keyspace, 2)}}
    model = dict(models[db.version])
    for v, changes in versions_of(rng, db, 40, keyspace, big_every=25, log=True).items():
        for k, val in changes:
            if val is None:
                model.pop(k, None)
            else:
                model[k] = val
        models[v] = dict(model)
    read_all(db, models)            # warm: what the writer cached
    assert db.check().ok
    db.close()
    db = cowdb.open(path)           # cold: every chain materialised from the file
    read_all(db, models)
    db.close()


def test_versions_match_a_model_through_every_search(tmp_path):
    rng = random.Random(11)
    path = str(tmp_path / "m.cow")
    db = cowdb.open(path, page_size=PAGE)
    models = versions_of(rng, db, 120, 900, big_every=30)
    db.close()
    db = cowdb.open(path)
    pm = db._store.pagemap
    for v, model in models.items():
        with db.at(v) as snap:
            root = snap._commit.root
            if not root.page:
                continue
            for k in [b"key%05d" % i for i in range(0, 900, 37)]:
                want = model.get(k)
                for search in SEARCHES:
                    got = search(pm, root.page, root.checksum, root.txn, k)
                    if got is not None and type(got) is not bytes:
                        got = btree.read_overflow(db._store, btree.Overflow(*got))
                    assert got == want, (v, k, search)
    assert db.check().ok
    db.close()


def test_chains_stay_within_the_bound(tmp_path):
    db = cowdb.open(str(tmp_path / "c.cow"), page_size=PAGE)
    with db.write() as tx:
        for i in range(500):
            tx[b"key%05d" % i] = b"v" * 20
    kinds, parent_kinds = set(), set()
    for v in range(2 * BRANCH_CHAIN + 5):
        with db.write() as tx:
            tx[b"key00007"] = b"%d" % v      # the same leaf, every version
        nodes = NodeCache(db._store)    # read from the file
        with db.read() as snap:
            tree = Tree(nodes, snap._commit.root)
        node = parent = tree.root()
        while type(node) is Branch:
            assert depth(node) <= BRANCH_CHAIN <= MAX_CHAIN
            assert len(images(db._store, 0, node)) <= BRANCH_CHAIN + 1
            parent, node = node, tree.kid(node, 0)
        parent_kinds.add(depth(parent))
        assert depth(node) <= LEAF_CHAIN
        assert len(images(db._store, 0, node)) <= LEAF_CHAIN + 1
        kinds.add(depth(node))
    # deltas were written up to each kind's bound, and at the bound rebased on the chain's
    # full image (one entry changed since it: far under half the node), not rewritten whole
    assert parent_kinds == set(range(1, BRANCH_CHAIN + 1))
    assert kinds == set(range(1, LEAF_CHAIN + 1))
    db.close()


def chain_of(db, key):
    """The chain (page, units, txn), newest first, of the leaf holding key at the head, read
    from the file."""
    nodes = NodeCache(db._store)
    with db.read() as snap:
        tree = Tree(nodes, snap._commit.root)
    node = tree.root()
    while type(node) is Branch:
        node = tree.kid(node, max(0, sum(1 for k in node.keys[1:] if k <= key)))
    return node.chain or ()


def test_a_chain_at_its_bound_is_rebased_on_its_full_image(tmp_path):
    """At the bound, a leaf is written as a delta of depth 1 on the full image its chain
    began with, while what changed since that image is under half the leaf; past that, a
    full image again. Every version reads back exactly, from the file."""
    db = cowdb.open(str(tmp_path / "r.cow"), page_size=PAGE)
    keys = [b"key%05d" % i for i in range(12)]     # one leaf
    model = {k: b"v" * 40 for k in keys}
    expect = {}

    def put(k, v):
        with db.write() as tx:
            tx[k] = v
        model[k] = v
        expect[tx.version] = dict(model)
        chain = chain_of(db, k)
        return chain, len(chain) - 1 if chain else 0
    with db.write() as tx:
        tx.update(model)
    full = None
    depths = []
    for v in range(3 * (LEAF_CHAIN + 1)):   # the same entry each time: changes stay small
        chain, d = put(keys[0], b"%d" % v)
        depths.append(d)
        full = full or chain[-1]
        assert chain[-1] == full    # every chain ends in the load's full image
    assert depths == [i % LEAF_CHAIN + 1 for i in range(3 * (LEAF_CHAIN + 1))]
    # each version a different entry: past the bound, 9 of 12 entries differ from the
    # full image, more than half the leaf: a full image is written
    depths = [put(k, b"w%d" % v)[1] for v, k in enumerate(keys[1:] * 2)]
    assert 0 in depths and max(depths) <= LEAF_CHAIN
    db.close()
    with cowdb.open(str(tmp_path / "r.cow")) as db:   # cold: every chain materialised anew
        for version, want in expect.items():
            with db.at(version) as snap:
                assert dict(snap.items()) == want
        assert db.check().ok


def delta_pages(db):
    """(page, kind) of the delta images the head version reaches."""
    out = []
    nodes = NodeCache(db._store)
    with db.read() as snap:
        root = snap._commit.root
    stack = [(root.page, root.checksum, root.txn)]
    while stack:
        p, s, t = stack.pop()
        n = nodes.load(p, s, t)
        chain = images(db._store, p, n)
        if len(chain) > 1:
            out.append((p, n, chain))
        if type(n) is Branch:
            stack.extend(zip(n.kids, n.sums, n.txns))
    return out


def damage(path, unit, page, at):
    with open(path, "r+b") as f:
        f.seek(page * unit + at)
        b = f.read(1)
        f.seek(page * unit + at)
        f.write(bytes([b[0] ^ 0x40]))


@pytest.mark.parametrize("which", ["delta", "base"])
def test_a_damaged_delta_or_base_reads_as_corruption(tmp_path, which):
    path = str(tmp_path / "x.cow")
    db = cowdb.open(path, page_size=PAGE)
    with db.write() as tx:
        for i in range(300):
            tx[b"key%05d" % i] = b"v" * 20
    for v in range(3):
        with db.write() as tx:
            tx[b"key00150"] = b"new %d" % v
    found = [(p, n, c) for p, n, c in delta_pages(db) if type(n) is Leaf]
    assert found
    page, _node, chain = found[0]
    unit = db._store.unit
    with db.read() as snap:
        head = snap._commit.root
    db.close()
    target = page if which == "delta" else chain[-1][0]
    damage(path, unit, target, HEADER_SIZE + 40)
    db = cowdb.open(path)
    pm = db._store.pagemap
    for search in SEARCHES:  # the mapped searches, C and pure Python
        pm.made.clear()
        pm.verified.clear()
        db._nodes.clear()
        with pytest.raises(Corruption):
            search(pm, head.page, head.checksum, head.txn, b"key00150")
    db._nodes.clear()
    pm.made.clear()
    with pytest.raises(Corruption):   # the node cache (what COWDB_PURE_PYTHON=1 reads)
        btree.py_get(Tree(db._nodes, head).root(), b"key00150", db._nodes)
    assert not db.check().ok
    db.close()


def kinds_written(db, changes):
    """The page types of the images one commit of ``changes`` writes (the store's queue,
    as publish() flushes it)."""
    written = []
    store = db._store
    real = store._flush
    store._flush = lambda: written.extend(image[8] for image in store._queue.values()) or real()
    try:
        with db.write() as tx:
            tx.update(changes)
    finally:
        del store._flush
    return written


def test_delta_images_are_written_for_small_changes(tmp_path):
    db = cowdb.open(str(tmp_path / "w.cow"), page_size=4096)
    with db.write() as tx:
        tx.update({b"key%06d" % i: b"x" * 100 for i in range(20000)})
    written = kinds_written(db, {b"key%06d" % 777: b"y" * 100})
    assert LEAF_DELTA in written and BRANCH_DELTA in written
    db.close()


def test_a_format_3_file_opens_and_its_next_write_uses_deltas(tmp_path):
    """A version-3 file is a version-4 file without delta images: it reads as it is,
    and its first write makes its record the current version (and may write deltas)."""
    from xxhash import xxh3_64_intdigest

    from cowdb.pages import meta as metamod

    path = str(tmp_path / "v3.cowdb")
    db = cowdb.open(path, page_size=PAGE)
    with db.write() as tx:
        tx.update({b"key%05d" % i: b"v" * 30 for i in range(400)})
    db.close()
    with open(path, "r+b") as f:   # both meta records say version 3
        for off in (0, PAGE):
            f.seek(off)
            rec = bytearray(f.read(metamod.META_SIZE))
            n = int.from_bytes(rec[metamod.META_SIZE - 16:metamod.META_SIZE - 8], "little")
            pending = f.read(n)
            rec[8:12] = (3).to_bytes(4, "little")
            body = bytes(rec[:metamod.META_SIZE - 8])
            rec[metamod.META_SIZE - 8:] = xxh3_64_intdigest(body + pending).to_bytes(8, "little")
            f.seek(off)
            f.write(rec)
    db = cowdb.open(path)
    current = metamod.FORMAT_VERSION.to_bytes(4, "little")
    assert db._store.meta.encode()[8:12] == current  # as it would write
    with open(path, "rb") as f:
        assert f.read(12)[8:12] == (3).to_bytes(4, "little")
    assert dict(db.read().items()) == {b"key%05d" % i: b"v" * 30 for i in range(400)}
    assert LEAF_DELTA in kinds_written(db, {b"key00100": b"changed"})
    with open(path, "rb") as f:
        f.seek(PAGE)
        assert f.read(12)[8:12] == current  # the slot it wrote
    assert db.check().ok
    db.close()


@pytest.mark.parametrize("seed", range(4))
def test_merges_and_reverts_read_the_same_cold(tmp_path, seed):
    """A merge or a revert puts other trees' children into a branch in place (not only
    the children it wrote): its delta must record them. Every version read by the
    writer (its own nodes) equals the same version read cold from the file."""
    rng = random.Random(seed)
    path = str(tmp_path / "m.cow")
    db = cowdb.open(path, page_size=PAGE)
    with db.write() as tx:
        tx.update({b"key%05d" % i: b"v" * 20 for i in range(600)})
    db.branch("exp")
    for r in range(6):
        for branch in ("main", "exp"):
            with db.write(branch=branch) as tx:
                for _ in range(rng.randrange(1, 30)):
                    k = b"key%05d" % rng.randrange(700)
                    if rng.random() < 0.3:
                        tx.pop(k, None)
                    else:
                        tx[k] = b"%s %d %d" % (branch.encode(), r, rng.randrange(99))
        db.merge("exp", resolve="theirs")
        if r % 2:
            db.revert(db.version - 2, resolve="theirs", allow_empty=True)
    warm = {}
    for c in db.log():
        with db.at(c.version) as snap:
            warm[c.version] = dict(snap.items())
    db.close()
    db = cowdb.open(path)
    for v, model in warm.items():
        with db.at(v) as snap:
            assert dict(snap.items()) == model, v
    assert db.check().ok
    db.close()


def test_a_damaged_full_image_is_not_rebased_on(tmp_path):
    """A chain at its bound whose full image was damaged on disk: the commit writes the
    node as a full image, as before rebasing was built (no delta on bad bytes, and no
    commit fails that would not have), and the new head reads back from the file."""
    path = str(tmp_path / "d.cow")
    db = cowdb.open(path, page_size=PAGE)
    keys = [b"key%05d" % i for i in range(12)]
    with db.write() as tx:
        tx.update({k: b"v" * 40 for k in keys})
    for v in range(LEAF_CHAIN):                 # the chain reaches its bound
        with db.write() as tx:
            tx[keys[0]] = b"%d" % v
    full_page = chain_of(db, keys[0])[-1][0]
    with open(path, "r+b") as f:
        f.seek(full_page * db._store.unit + 30)
        b = f.read(1)
        f.seek(full_page * db._store.unit + 30)
        f.write(bytes([b[0] ^ 0xFF]))
    with db.write() as tx:
        tx[keys[0]] = b"after the damage"
    assert chain_of(db, keys[0]) == ()          # a full image
    assert not db.check().ok                    # (the older versions do reach the damage)
    db.close()
    with cowdb.open(path, readonly=True) as db:
        with db.read() as snap:
            assert snap[keys[0]] == b"after the damage" and len(snap) == 12
