"""A delta chain applied on its images' bytes (``_write_c.apply_chain``, what the mapped
search reads for a reference to a delta) against the node path beside it (each image
decoded, each delta applied by node.py's ``apply_delta``, the node encoded): the same
full image for every delta that versions of random changes leave (overflow values,
inserts, deletes and splits included), and None wherever a damaged chain makes the node
path raise Corruption, so that path names the damage."""
from __future__ import annotations

import os
import random
import sys

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import cowdb
from cowdb.pages.checksum import HEADER_SIZE
from cowdb.tree import btree
from cowdb.tree import node as nodemod
from cowdb.tree.btree import NodeCache
from cowdb.tree.node import Branch, Leaf, encode_leaf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fuzz"))
from harnesses import chain_reference  # noqa: E402  (the fuzz target's reference)

write_c = nodemod._write_c
pytestmark = pytest.mark.skipif(write_c is None, reason="_write_c is not built")


def history(path, seed, versions=60):
    """A file of ``versions`` versions of random puts (some overflow values) and deletes
    over a bulk load, on 1 KiB pages (chains, splits and merges come soon)."""
    rng = random.Random(seed)
    db = cowdb.open(path, page_size=1024)
    with db.write() as tx:
        tx.update({b"key%05d" % i: b"base-%d" % i for i in range(0, 1500, 2)})
    for v in range(versions):
        with db.write(durability="none") as tx:
            for _ in range(rng.randrange(1, 12)):
                k = b"key%05d" % rng.randrange(1500)
                if rng.random() < 0.2:
                    tx.pop(k, None)
                elif rng.random() < 0.04:
                    tx[k] = os.urandom(700)   # past inline_max at 1 KiB: an overflow value
                else:
                    tx[k] = b"%d-%d" % (v, rng.randrange(10 ** rng.randrange(1, 30)))
    return db


def delta_refs(db):
    """(page, checksum, txn) of every delta image some version's tree reaches."""
    nodes, seen, out = NodeCache(db._store), set(), []
    stack = [(c.root.page, c.root.checksum, c.root.txn) for c in db.log()]
    while stack:
        ref = stack.pop()
        if ref in seen or ref[0] == 0:
            continue
        seen.add(ref)
        if nodes.load(*ref).chain is not None:
            out.append(ref)
        n = nodes.load(*ref)
        if type(n) is Branch:
            stack.extend(zip(n.kids, n.sums, n.txns, strict=True))
    return out


def node_path(db, ref, load=False):
    """The full image (or with ``load`` the node) through nodes: a fresh cache,
    apply_chain unbound."""
    bound, btree.apply_chain = btree.apply_chain, None
    try:
        nodes = NodeCache(db._store)
        return nodes.load(*ref) if load else nodes.full_image(*ref)
    finally:
        btree.apply_chain = bound


def fields(node):
    if type(node) is Leaf:
        return (node.keys, [v if type(v) is bytes else (v.page, v.length, v.checksum, v.txn)
                            for v in node.vals], node.size, node.big, node.txn, node.chain)
    return (node.keys, node.kids, list(node.counts), list(node.sums), list(node.txns),
            node.size, node.txn, node.chain)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2 ** 32))
def test_every_delta_materialises_as_the_node_path_does(tmp_path_factory, seed):
    db = history(str(tmp_path_factory.mktemp("c") / "c.cow"), seed)
    refs = sorted(delta_refs(db), key=lambda ref: ref[2])   # older chains first
    assert refs
    kinds, shortcuts = set(), 0
    made_so_far = db._store.pagemap.made
    made_so_far.clear()
    for ref in refs:
        chain = NodeCache(db._store).chain_images(*ref)
        assert chain is not None and 2 <= len(chain) <= nodemod.MAX_CHAIN + 1
        made = write_c.apply_chain([image for _page, image in chain])
        assert made is not None
        kinds.add(made[8])
        made[:8] = ref[1].to_bytes(8, "little")
        assert bytes(made) == node_path(db, ref)
        # the path reads use: its chain may end at a base materialised before it
        short = NodeCache(db._store).chain_images(*ref, made=made_so_far)
        shortcuts += len(short) < len(chain)
        assert NodeCache(db._store).full_image(*ref) == bytes(made)
        made_so_far[ref[0]] = bytes(made)   # as PageMap keeps it
        # the writer's node, decoded from that image, is the node path's
        assert fields(NodeCache(db._store).load(*ref)) == fields(node_path(db, ref, True))
    assert len(kinds) == 2   # leaves and branches both
    assert shortcuts   # some chains ended at a made base
    db.close()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 3), st.data())
def test_a_damaged_chain_is_refused_where_the_node_path_refuses_it(tmp_path_factory, seed,
                                                                    data):
    path = tmp_path_factory.mktemp("d") / "d.cow"
    db = history(str(path), seed, versions=30)
    chains = [[image for _page, image in NodeCache(db._store).chain_images(*ref)]
              for ref in delta_refs(db)]
    db.close()
    chain = list(data.draw(st.sampled_from(chains)))
    assert chain_reference(chain) is not None
    for _ in range(data.draw(st.integers(1, 3))):   # bytes changed past the checksum
        i = data.draw(st.integers(0, len(chain) - 1))
        img = bytearray(chain[i])
        at = data.draw(st.integers(8, len(img) - 1))
        img[at] = data.draw(st.integers(0, 255))
        chain[i] = bytes(img)
    made = write_c.apply_chain(chain)
    want = chain_reference(chain)
    assert (None if made is None else bytes(made[8:])) == want


def test_what_is_not_a_chain_is_refused():
    leaf = bytes(encode_leaf(Leaf([b"a"], [b"1"], HEADER_SIZE + 8), 3))
    assert write_c.apply_chain([leaf])[8:] == leaf[8:]   # a full image alone: itself
    for bad in ([leaf[:10]], [b"x" * 40], [bytearray(leaf)], [leaf, leaf]):
        assert write_c.apply_chain(bad) is None
    for bad in ([], (leaf,), leaf):
        with pytest.raises(TypeError):
            write_c.apply_chain(bad)


def test_made_images_stay_within_their_bound(tmp_path, monkeypatch):
    """PageMap.made keeps at most MADE_MAX materialised images; reads past the bound make
    them again and read the same values (both mapped searches)."""
    from cowdb.pages import mapfile
    from cowdb.tree.mapped import py_map_get
    monkeypatch.setattr(mapfile, "MADE_MAX", 16)
    path = str(tmp_path / "m.cow")
    db = history(path, 7, versions=40)
    with db.read() as snap:
        want = dict(snap.items())
        head = snap._commit.root
    db.close()
    db = cowdb.open(path)
    pm = db._store.pagemap
    searches = [py_map_get] + ([btree._tree_c.map_get] if btree._tree_c is not None else [])
    for search in searches:
        for _ in range(2):
            for k, v in want.items():
                got = search(pm, head.page, head.checksum, head.txn, k)
                # (an overflow value: its reference, (page, length, checksum, txn))
                assert got == v or (type(got) is tuple and got[1] == len(v))
                assert len(pm.made) <= 16
        assert pm.made   # chains were read through it
    db.close()
