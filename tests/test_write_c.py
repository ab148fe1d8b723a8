"""The write path's C (tree/_write_*.c) against the Python beside it (tree/node.py,
tree/btree.py): node images encoded (byte for byte) and sliced back, the put (overwrites,
inserts, a leaf's split), the commit's write pass, a bulk load's sorted pairs and leaves.
The C declines (NotImplemented or None) what Python does: other keys than the base's,
leaves with overflow values, splits that reach a parent."""
from __future__ import annotations

import bisect
import random
import struct
from array import array
from contextlib import contextmanager

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from xxhash import xxh3_64_intdigest

import cowdb
from cowdb.pages.checksum import BRANCH_DELTA, HEADER_SIZE, LEAF_DELTA, OVERFLOW, seal, verify
from cowdb.pages.io import MemoryIO, OsFileIO
from cowdb.pages.meta import RootRef
from cowdb.pages.store import PageStore
from cowdb.tree import btree, compare, cursor
from cowdb.tree import node as nodemod
from cowdb.tree.btree import NodeCache, Tree
from cowdb.tree.node import (
    LEAF_ENTRY,
    Branch,
    Leaf,
    branch_size,
    decode,
    encode_branch,
    encode_delta,
    encode_leaf,
    py_dirty_kids,
    rebase_delta,
)

write_c = nodemod._write_c
pytestmark = pytest.mark.skipif(write_c is None, reason="_write_c is not built")

small_keys = st.integers(0, 400).map(lambda i: b"k%05d" % i)


def u64s(ints):
    return array(nodemod.U64, ints)


def refs(n):
    """A branch's counts, sums and txns for n entries, all zero."""
    return u64s([0] * n), u64s([0] * n), u64s([0] * n)
u64 = st.integers(0, 2 ** 64 - 1)


def python_delta(node, base, ref, txn):
    c, nodemod._c_delta_image = nodemod._c_delta_image, None
    try:
        return encode_delta(node, base, ref.page, ref.checksum, ref.txn, txn)
    finally:
        nodemod._c_delta_image = c


def c_delta(node, base, ref, txn, d=1):
    leaf = type(node) is Leaf
    return write_c.delta_image(leaf, LEAF_DELTA if leaf else BRANCH_DELTA, node, base,
                               ref.page, ref.checksum, ref.txn, d, txn)


def same_image(node, base, ref, txn):
    """The C's delta image, sealed, is the Python's (or both say a full image is due)."""
    want = python_delta(node, base, ref, txn)
    got = c_delta(node, base, ref, txn)
    if want is None:
        assert got is None
    else:
        nodemod.seal(got)
        assert got == want


def a_leaf(keys, vals):
    size = HEADER_SIZE + sum(LEAF_ENTRY + len(k) + len(v) for k, v in zip(keys, vals))
    return decode(bytes(encode_leaf(Leaf(keys, vals, size), 7)), 5)  # clean, as read


def overwritten(base, edits):
    """A copy of leaf ``base`` with the (index, value) edits put over its values."""
    node = base.copy()
    for i, v in edits:
        i %= len(node.keys)
        node.size += len(v) - len(node.vals[i])
        node.vals[i] = v
    return node


def a_branch(seps):
    """A clean branch (as read) over the separators, children 100, 101, ..."""
    keys = [b""] + sorted(seps)[1:]
    n = len(keys)
    return decode(bytes(encode_branch(Branch(keys, list(range(100, 100 + n)), u64s([3] * n),
                                             u64s(range(n)), u64s([6] * n),
                                             branch_size(keys)), 7)), 5)


def with_new_children(base, edits):
    """A copy of branch ``base`` with the (index, field, value) edits made to its kids,
    counts, sums and txns."""
    node = base.copy()
    fields = (node.kids, node.counts, node.sums, node.txns)
    for i, f, v in edits:
        fields[f][i % len(node.keys)] = v
    return node


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(small_keys, st.binary(max_size=60), min_size=1, max_size=60),
       st.lists(st.tuples(st.integers(0, 59), st.binary(max_size=60)), max_size=12),
       u64, u64)
def test_a_leaf_overwrite_encodes_as_python_does(items, edits, bsum, txn):
    keys = sorted(items)
    base = a_leaf(keys, [items[k] for k in keys])
    same_image(overwritten(base, edits), base, RootRef(5, bsum, 7), txn)


@settings(max_examples=200, deadline=None)
@given(st.lists(small_keys, min_size=1, max_size=80, unique=True),
       st.lists(st.tuples(st.integers(0, 79), st.integers(0, 3), u64), max_size=12), u64)
def test_a_branch_with_new_children_encodes_as_python_does(seps, edits, txn):
    base = a_branch(seps)
    same_image(with_new_children(base, edits), base, RootRef(5, 11, 7), txn)


def test_what_the_c_declines_python_encodes():
    keys = [b"a%03d" % i for i in range(40)]
    base = a_leaf(keys, [b"v" * 20] * 40)
    other = base.copy()  # a key put: other keys than the base's
    other.keys.insert(3, b"a002x")
    other.vals.insert(3, b"w")
    other.size += LEAF_ENTRY + 6
    assert c_delta(other, base, RootRef(5, 1, 7), 9) is NotImplemented
    big = base.copy()  # a value bound for an overflow run
    big.vals[4], big.big = b"x" * 900, True
    assert c_delta(big, base, RootRef(5, 1, 7), 9) is NotImplemented
    # and encode_delta, with the C in place, still encodes both (in Python)
    if nodemod._c_delta_image is not None:
        assert encode_delta(other, base, 5, 1, 7, 9) == python_delta(
            other, base, RootRef(5, 1, 7), 9)


def test_a_delta_not_under_half_the_node_is_declined():
    keys = [b"a%03d" % i for i in range(4)]
    base = a_leaf(keys, [b"v" * 20] * 4)
    node = base.copy()
    node.vals = [b"w" * 20] * 4  # every entry changed
    assert c_delta(node, base, RootRef(5, 1, 7), 9) is None


def python_rebase(node, full, fpage, txn):
    c, nodemod._c_rebase_image = nodemod._c_rebase_image, None
    try:
        return rebase_delta(node, full, fpage, txn)
    finally:
        nodemod._c_rebase_image = c


def same_rebase(node, full, fpage, txn):
    """At a chain's bound: the C's delta on the chain's full image is the Python's, sealed
    (or both say a full image is due)."""
    want = python_rebase(node, full, fpage, txn)
    leaf = type(node) is Leaf
    got = write_c.rebase_image(leaf, LEAF_DELTA if leaf else BRANCH_DELTA, node, full, fpage,
                               txn)
    if want is None:
        assert got is None
    else:
        nodemod.seal(got)
        assert got == want
        assert nodemod.delta_base(bytes(got), 1)[:2] == (fpage, int.from_bytes(full[:8],
                                                                                "little"))
    return want


def sealed(image):
    nodemod.seal(image)
    return bytes(image)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(small_keys, st.binary(max_size=60), min_size=1, max_size=60),
       st.lists(st.tuples(st.integers(0, 59), st.binary(max_size=60)), max_size=40),
       st.sampled_from(["values", "equal copies", "a key put", "an overflow value"]), u64)
def test_a_rebase_on_a_leaf_s_full_image_is_python_s(items, edits, how, txn):
    """The node that reached its chain's bound against the full image its chain started
    from: entries compared by value (a value put again as an equal copy is no change)."""
    keys = sorted(items)
    base = a_leaf(keys, [items[k] for k in keys])
    full = sealed(encode_leaf(base, 7))
    node = overwritten(base, edits)
    if how == "equal copies":
        node.vals = [bytes(bytearray(v)) for v in node.vals]
    elif how == "a key put":
        node.keys.insert(0, b"a")
        node.vals.insert(0, b"")
        node.size += LEAF_ENTRY + 1
    elif how == "an overflow value":
        node.big = True
    got = same_rebase(node, full, 5, txn)
    if how in ("a key put", "an overflow value"):
        assert got is None


@settings(max_examples=200, deadline=None)
@given(st.lists(small_keys, min_size=1, max_size=80, unique=True),
       st.lists(st.tuples(st.integers(0, 79), st.integers(0, 3), u64), max_size=30), u64)
def test_a_rebase_on_a_branch_s_full_image_is_python_s(seps, edits, txn):
    base = a_branch(seps)
    same_rebase(with_new_children(base, edits), sealed(encode_branch(base, 7)), 5, txn)


def test_a_rebase_declines_what_is_not_the_node_s_full_image():
    keys = [b"a%03d" % i for i in range(40)]
    leaf = a_leaf(keys, [b"v" * 20] * 40)
    full = sealed(encode_leaf(leaf, 7))
    node = leaf.copy()
    node.vals[3] = b"w"
    node.size -= 19
    assert same_rebase(node, full, 5, 9) is not None           # one entry: a small delta
    branch = decode(sealed(encode_branch(Branch(
        [b""], [100], u64s([1]), u64s([2]), u64s([3]), branch_size([b""])), 7)), 5)
    assert same_rebase(node, sealed(encode_branch(branch, 7)), 5, 9) is None  # other kind
    ovf = Leaf(list(keys), [b"v" * 20] * 40, leaf.size)
    ovf.vals[0], ovf.big = nodemod.Overflow(9, 900, 1, 2), True
    assert same_rebase(node, sealed(encode_leaf(ovf, 7)), 5, 9) is None  # an overflow in it
    everything = leaf.copy()
    everything.vals = [b"w" * 20] * 40
    assert same_rebase(everything, full, 5, 9) is None          # not under half the node
    with pytest.raises(TypeError):
        write_c.rebase_image(True, LEAF_DELTA, node, 12, 5, 9)     # not bytes


def test_bad_input_raises_not_crashes():
    base = a_leaf([b"a", b"b"], [b"1", b"2"])
    node = base.copy()
    node.vals[0] = b"3"
    with pytest.raises(TypeError):
        write_c.delta_image(True, LEAF_DELTA, node, base, 1, 2, 3, 1)
    with pytest.raises(ValueError):
        write_c.delta_image(True, LEAF_DELTA, node, base, 1, 2, 3, 70000, 9)
    with pytest.raises(OverflowError):
        write_c.delta_image(True, LEAF_DELTA, node, base, -1, 2, 3, 1, 9)
    node.keys = (b"a", b"b")
    with pytest.raises(TypeError):
        write_c.delta_image(True, LEAF_DELTA, node, base, 1, 2, 3, 1, 9)
    with pytest.raises(TypeError):
        write_c.dirty_kids((1, 2))


def slices_or_error(fn, *args):
    """What a slicer returns, or "error" for what decode turns into Corruption."""
    try:
        return fn(*args)
    except (struct.error, ValueError):
        return "error"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 70), st.integers(0, 320),
       st.sampled_from([2, 4]), st.integers(0, 330))
def test_slices_reads_any_bytes_as_python_does(data, n, at, width, first):
    """Arbitrary bytes, as a damaged image holds: the same strings, or both refuse them."""
    assert slices_or_error(write_c.slices, data, n, at, width, first) == \
        slices_or_error(nodemod.py_slices, data, n, at, width, first)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.binary(max_size=40), st.binary(max_size=300), max_size=60),
       st.lists(st.integers(0, 59), max_size=3), u64)
def test_a_decoded_leaf_is_python_s(items, overflow_at, txn):
    """Decoded through the C slices and through Python alone: the same leaf, overflow
    references included (the C declines those: None)."""
    keys = sorted(items)
    vals = [nodemod.Overflow(9, 5000, 77, 3) if i in overflow_at else items[k]
            for i, k in enumerate(keys)]
    big = any(type(v) is nodemod.Overflow for v in vals)
    image = bytes(encode_leaf(Leaf(keys, vals, 0, big=big), txn))
    got = decode(image, 5)
    with writers(False):
        want = decode(image, 5)

    def fields(leaf):
        return (leaf.keys, [v if type(v) is bytes else (v.page, v.length, v.checksum, v.txn)
                            for v in leaf.vals], leaf.big, leaf.size)
    assert fields(got) == fields(want) == fields(Leaf(keys, vals, len(image), big=big))
    assert got.txn == want.txn == txn


def leaf_fields(leaf):
    """Every slot of a leaf (its lists as lists, overflow references as tuples)."""
    return (type(leaf), list(leaf.keys), [v if type(v) is bytes else
                                          (v.page, v.length, v.checksum, v.txn)
                                          for v in leaf.vals], leaf.size, leaf.big, leaf.sig,
            leaf.txn, leaf.base, leaf.chain, leaf.undo)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.binary(max_size=40), st.binary(max_size=300), max_size=60),
       st.lists(st.integers(0, 59), max_size=2), u64, st.integers(0, 2 ** 16),
       st.integers(1, 255), st.booleans())
def test_a_checked_leaf_is_what_python_verifies_and_decodes(items, overflow_at, txn, at, xor,
                                                            call_digest):
    """NodeCache.load's C past the read (checked_leaf) against its Python (verify, the
    parent's checksum and txn, decode): an intact leaf image of inline values gives the
    leaf decode gives, every slot alike; an overflow value, a damaged byte, a byte short
    or over, another checksum or txn than the parent's, give None (the Python then says
    what is wrong). A digest other than xxhash's is called (the tests' colliding one)."""
    keys = sorted(items)
    vals = [nodemod.Overflow(9, 5000, 77, 3) if i in overflow_at else items[k]
            for i, k in enumerate(keys)]
    big = any(type(v) is nodemod.Overflow for v in vals)
    image = encode_leaf(Leaf(keys, vals, 0, big=big), txn)
    checksum = seal(image)
    image = bytes(image)
    digest = (lambda data: xxh3_64_intdigest(data)) if call_digest else xxh3_64_intdigest
    got = write_c.checked_leaf(image, checksum, txn, digest)
    if big:
        assert got is None
    else:
        assert leaf_fields(got) == leaf_fields(decode(image, 5))
    damaged = bytearray(image)
    damaged[at % len(image)] ^= xor
    for bad, s, t in ((bytes(damaged), checksum, txn), (image[:-1], checksum, txn),
                      (image + b"\0", checksum, txn), (image, checksum ^ xor, txn),
                      (image, checksum, txn ^ xor)):
        assert write_c.checked_leaf(bad, s, t, digest) is None


def test_a_checked_leaf_is_only_a_full_leaf_and_refuses_bad_input():
    """A branch's image and a delta's give None; a digest's error is raised; arguments of
    the wrong types raise TypeError."""
    counts, sums, txns = refs(2)
    branch = encode_branch(Branch([b"a", b"b"], [3, 4], counts, sums, txns, 0), 7)
    leaf = Leaf([b"a", b"b"], [b"1", b"2"], 0)
    base = encode_leaf(Leaf([b"k%02d" % i for i in range(20)], [b"v" * 50] * 20, 0), 5)
    bsum = seal(base)
    clean = decode(bytes(base), 2)
    dirty = clean.copy((clean, 2, bsum, 5))
    dirty.vals[1] = b"w" * 50   # (a delta is written only where it is under half the image)
    delta = encode_delta(dirty, clean, 2, bsum, 5, 7)
    assert delta is not None and delta[8] == LEAF_DELTA
    for image in (branch, delta):
        checksum = seal(image)
        assert write_c.checked_leaf(bytes(image), checksum, 7, xxh3_64_intdigest) is None
    image = encode_leaf(leaf, 7)
    checksum = seal(image)

    def fails(data):
        raise OSError("no digest")
    with pytest.raises(OSError, match="no digest"):
        write_c.checked_leaf(bytes(image), checksum, 7, fails)
    with pytest.raises(TypeError, match="not an int"):
        write_c.checked_leaf(bytes(image), checksum, 7, lambda data: "sum")
    for args in ((bytearray(image), checksum, 7, xxh3_64_intdigest),
                 (bytes(image), "sum", 7, xxh3_64_intdigest), (bytes(image), checksum, 7)):
        with pytest.raises(TypeError):
            write_c.checked_leaf(*args)
    with pytest.raises(OverflowError):
        write_c.checked_leaf(bytes(image), -1, 7, xxh3_64_intdigest)


@settings(max_examples=60, deadline=None)
@given(st.lists(small_keys, min_size=1, max_size=30), st.lists(small_keys, max_size=10),
       st.booleans())
def test_values_at_is_python_s(puts, probes, empty):
    """A commit's proof that it changed something (compare.py's differs_at) reads a key's
    value and its base's from the undo record of the key's leaf: values_at in C and
    py_values_at tell the same for every key put and others, against the head the tree was
    copied from and against another reference (None), on trees the C put changed."""
    db = cowdb.open(durability="none")
    if not empty:   # (~14 KiB of entries: a root branch over leaves)
        with db.write() as tx:
            tx.update({b"k%05d" % i: b"v" * 60 for i in range(0, 400, 2)})
    tx = db.write()
    for i, key in enumerate(puts):
        tx[key] = b"new %d" % i
    tree, head = tx._tree, tx._head.root
    for key in puts + probes:
        for page, checksum, txn in ((head.page, head.checksum, head.txn),
                                    (head.page, head.checksum ^ 1, head.txn),
                                    (head.page + 1, head.checksum, head.txn)):
            assert write_c.values_at(tree.root(), page, checksum, txn, key) == \
                compare.py_values_at(tree.root(), page, checksum, txn, key)
    tx.abort()
    if not empty:   # the common case, one overwrite of a key the head holds: told
        with db.write() as tx:
            tx[b"k00010"] = b"newer"
            assert tx._tree.stolen
            assert write_c.values_at(tx._tree.root(), head.page, head.checksum, head.txn,
                                     b"k00010") == (b"newer", b"v" * 60)
    db.close()


def test_values_at_refuses_bad_input():
    with pytest.raises(TypeError, match="values_at"):
        write_c.values_at(None, 1, 2, 3, "key")
    with pytest.raises(TypeError, match="values_at"):
        write_c.values_at(None, 1, 2, 3)
    assert write_c.values_at(None, 1, 2, 3, b"key") is None
    assert write_c.values_at("not a node", 1, 2, 3, b"key") is None


def test_slices_refuses_bad_input():
    with pytest.raises(TypeError, match="bytes"):
        write_c.slices(bytearray(8), 1, 0, 2, 2)
    with pytest.raises(TypeError):
        write_c.slices(b"\0" * 8, 1, 0, 2)
    with pytest.raises(ValueError, match="2 or 4"):
        write_c.slices(b"\0" * 8, 1, 0, 8, 2)
    with pytest.raises(ValueError, match="past the image's end"):
        write_c.slices(b"\5\0abcd", 1, 0, 2, 2)   # a 5-byte string in 4
    assert write_c.slices(b"\4\0abcd", 1, 0, 2, 2) == ([b"abcd"], 6)
    assert write_c.slices(b"\0\0\0\x80", 1, 0, 4, 4) is None  # (an overflow reference)


def leaves_as_fields(level):
    return [(low, leaf.keys, leaf.vals, leaf.size, leaf.big, leaf.txn) for low, leaf in level]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=40), st.binary(max_size=1200),
                       max_size=120),
       st.integers(24, 5000), st.integers(0, 1100))
def test_a_bulk_load_cuts_the_leaves_python_cuts(items, limit, inline_max):
    """The same leaves, entry for entry, size and big flag, whatever the page and the
    inline bound (a leaf holds at least one pair, even one over the limit)."""
    pairs = sorted(items.items())
    got = write_c.leaves(iter(pairs), limit, inline_max)
    want = btree.py_leaves(iter(pairs), limit, inline_max)
    assert leaves_as_fields(got) == leaves_as_fields(want)
    assert [kv for _low, leaf in got for kv in zip(leaf.keys, leaf.vals)] == pairs
    assert all(leaf.size <= limit or len(leaf.keys) == 1 for _low, leaf in got)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.one_of(st.builds(bytes.__add__, st.sampled_from(
                           [b"", b"k", b"0123456789abcde", b"0123456789abcdef",
                            b"0123456789abcdefg"]), st.binary(max_size=4)),
                                 st.text(max_size=3)),
                       st.one_of(st.binary(max_size=8), st.just(bytearray(b"x"))),
                       max_size=60),
       st.integers(0, 22))
def test_sorted_items_are_python_s(mapping, max_key):
    """A dict's pairs in key order (bytes compare as Python compares them: shorter first
    on a shared prefix, keys alike in their first 16 bytes too), or None when a key or
    value needs Python's conversion or checks: a str or empty or too long key, a bytearray
    value."""
    got = write_c.sorted_items(mapping, max_key)
    assert got == btree.py_sorted_items(mapping, max_key)
    plain = all(type(k) is bytes and 0 < len(k) <= max_key and type(v) is bytes
                for k, v in mapping.items())
    assert got == (sorted(mapping.items()) if plain else None)


def test_sorted_items_compare_past_the_first_16_bytes():
    head = b"0123456789abcdef"
    mapping = {head + b"b": b"1", head + b"a": b"2", head: b"3", head + b"ab": b"4",
               head[:8]: b"5", head + b"a\0": b"6"}
    assert write_c.sorted_items(mapping, 20) == sorted(mapping.items())


@pytest.mark.parametrize("cut", ["c", "python"])
def test_leaves_refuse_what_is_not_a_bytes_pair(cut):
    fn = write_c.leaves if cut == "c" else btree.py_leaves
    for bad in ([(b"k", bytearray(b"v"))], [(b"k", b"v", b"x")], [("k", b"v")], [b"kv"]):
        with pytest.raises((TypeError, ValueError)):
            fn(bad, 4000, 1000)
    assert fn([], 4000, 1000) == []


def python_full(node, txn):
    with writers(False):
        return encode_leaf(node, txn) if type(node) is Leaf else encode_branch(node, txn)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.binary(max_size=40), st.binary(max_size=300), max_size=60), u64)
def test_a_leaf_s_full_image_is_python_s(items, txn):
    keys = sorted(items)
    leaf = Leaf(keys, [items[k] for k in keys], 0)
    image = write_c.full_image(leaf, txn)
    nodemod.seal(image)
    assert image == python_full(leaf, txn)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), u64, u64, u64, u64), min_size=1,
                max_size=90), u64)
def test_a_branch_s_full_image_is_python_s(entries, txn):
    keys, kids, counts, sums, txns = (list(f) for f in zip(*entries))
    branch = Branch(keys, kids, u64s(counts), u64s(sums), u64s(txns), 0)
    image = write_c.full_image(branch, txn)
    nodemod.seal(image)
    assert image == python_full(branch, txn)


def test_full_image_declines_a_big_leaf_and_refuses_bad_nodes():
    big = Leaf([b"k"], [nodemod.Overflow(9, 5000, 77, 3)], 0, big=True)
    assert write_c.full_image(big, 2) is NotImplemented  # (Python encodes it)
    assert encode_leaf(big, 2) == python_full(big, 2)
    with pytest.raises(TypeError, match="not inline bytes"):  # not marked big
        write_c.full_image(Leaf([b"k"], [nodemod.Overflow(9, 5000, 77, 3)], 0), 2)
    with pytest.raises(TypeError, match="not a page"):  # a dirty kid not written yet
        write_c.full_image(Branch([b""], [Leaf([], [], 0)], *refs(1), 0), 2)
    with pytest.raises(ValueError, match="differ in length"):
        write_c.full_image(Branch([b"", b"m"], [1], *refs(1), 0), 2)
    with pytest.raises(ValueError, match="differ in length"):
        write_c.full_image(Branch([b"", b"m"], [1, 2], *refs(1), 0), 2)
    with pytest.raises(TypeError, match="not an array of u64"):  # (lists, as before 10)
        write_c.full_image(Branch([b""], [1], [0], [0], [0], 0), 2)
    with pytest.raises(TypeError, match="not an array of u64"):
        write_c.full_image(Branch([b""], [1], array("q", [0]), *refs(1)[1:], 0), 2)
    with pytest.raises(ValueError, match="bytes of < 64 KiB"):
        write_c.full_image(Leaf([b"k" * 70000], [b""], 0), 2)
    with pytest.raises(OverflowError):
        write_c.full_image(Branch([b""], [-1], *refs(1), 0), 2)
    with pytest.raises(TypeError, match="not a tree node"):
        write_c.full_image(object(), 2)
    with pytest.raises(OverflowError):
        write_c.full_image(Leaf([], [], 0), -1)


@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["same", "other", "none"])),
                max_size=40))
def test_drop_drops_what_python_drops(bases):
    """Each base's page leaves the cache only where the cache still holds that very node
    (not where another node replaced it, nor twice); the list is emptied."""
    caches, lists = [], []
    for c in (True, False):
        store = PageStore(MemoryIO(), page_size=1024)
        cache, mine = NodeCache(store), []
        for page, held in bases:
            node = Leaf([], [], HEADER_SIZE)
            if held != "none":
                cache[page] = node if held == "same" else Leaf([], [], HEADER_SIZE)
            mine.append((node, page, 0, 0))
        with writers(c):
            cache.drop(mine)
        caches.append({p: type(n) for p, n in cache.items()})
        lists.append(mine)
    assert caches[0] == caches[1] and lists == [[], []]


def test_drop_refuses_bad_input():
    with pytest.raises(TypeError):
        write_c.drop({}, [(1, 2)])
    with pytest.raises(TypeError):
        write_c.drop([], [])
    with pytest.raises(TypeError):
        write_c.drop({}, ((Leaf([], [], 0), 1, 0, 0),))


@given(st.lists(st.one_of(st.integers(0, 2 ** 64 - 1), st.just(None)), max_size=200))
def test_dirty_kids_finds_the_nodes_among_pages(kids):
    kids = [k if k is not None else Leaf([], [], HEADER_SIZE) for k in kids]
    assert write_c.dirty_kids(kids) == py_dirty_kids(kids)


def new_tree(cap=65536, path=None):
    """A tree on a store in memory, or on a file at ``path`` (the C write pass then reads a
    chain's full image straight from it when it rebases; from memory, by store.read)."""
    store = PageStore(MemoryIO() if path is None else OsFileIO(path), page_size=1024)
    store.initialize()
    return Tree(NodeCache(store, cap))


@contextmanager
def writers(c):
    """btree.py's put and write pass, and node.py's images and decoding, in C (c) or in
    Python, for the block."""
    names = ((btree, "write_tree"), (btree, "own_path"), (btree, "put_over"),
             (btree, "drop_superseded"), (nodemod, "_c_delta_image"),
             (nodemod, "_c_full_image"), (nodemod, "_c_rebase_image"), (nodemod, "_c_slices"),
             (btree, "checked_leaf"), (compare, "values_at"), (btree, "cut_leaves"))
    was = [getattr(m, a) for m, a in names]
    for (m, a), fn, py in zip(names, (write_c.write_tree, write_c.own_path, write_c.put_over,
                                      write_c.drop, write_c.delta_image, write_c.full_image,
                                      write_c.rebase_image, write_c.slices, write_c.checked_leaf,
                                      write_c.values_at, write_c.leaves),
                              (None,) * 9 + (compare.py_values_at, btree.py_leaves)):
        setattr(m, a, fn if c else py)
    try:
        yield
    finally:
        for (m, a), fn in zip(names, was):
            setattr(m, a, fn)


def entries(node):
    """A node's entries, as its image has them (copies of its lists)."""
    if type(node) is Leaf:
        return list(node.keys), [v if type(v) is bytes else (v.page, v.length, v.checksum,
                                                              v.txn) for v in node.vals]
    return (list(node.keys), list(node.kids), list(node.counts), list(node.sums),
            list(node.txns))


def assert_cache_holds_its_pages(nodes):
    """Every node the cache holds is the one its page's image makes, loaded afresh: none
    is a node whose lists a copy took."""
    fresh = NodeCache(nodes.store)
    for page, node in nodes.items():
        head = nodes.store.read(page)
        again = fresh.load(page, int.from_bytes(head[:8], "little"), node.txn)
        assert entries(node) == entries(again), page


def write_queued(tree, txn):
    """tree.write(txn); (root, the images it queued)."""
    queue = tree.store._queue
    before = set(queue)
    ref = tree.write(txn)
    return ref, {page: bytes(image) for page, image in queue.items() if page not in before}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=1024), min_size=1, max_size=12), st.integers(0, 3))
def test_the_c_checksum_is_xxhash_s(values, edits):
    """The write pass computes XXH3-64 in C (xxHash's code, vendored: _xxh3.h) where its
    digest is the xxhash package's: each image it seals, full or a delta, of any length
    (XXH3 has paths for up to 128, 240 and more bytes), carries the package's sum."""
    tree = Tree(NodeCache(PageStore(MemoryIO(), page_size=4096)))
    tree.store.initialize()
    queued: dict[int, bytes] = {}
    with writers(True):
        for txn in range(2, 3 + edits):
            tree.store.begin(txn, txn - 1)
            for i, v in enumerate(values if txn == 2 else values[txn % len(values):][:1]):
                tree.put(b"k%03d" % i, v[:txn * 7] if txn > 2 else v)
            ref, images = write_queued(tree, txn)
            tree.store.publish(ref, b"", durable=False)
            tree.nodes.drop(tree.superseded)
            queued.update(images)
    assert queued
    for page, image in queued.items():
        assert int.from_bytes(image[:8], "little") == xxh3_64_intdigest(image[8:])
        verify(image, page)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 32), st.integers(1, 20), st.sampled_from([65536, 40]),
       st.booleans())
def test_the_c_write_pass_writes_what_python_writes(tmp_path_factory, seed, rounds, cap,
                                                    on_file):
    """The same changes on two equal trees, put by put_over and own_path and written by
    write_tree, and put and written in Python: the same images at the same pages, the
    same roots, the same nodes cached (a cache of 40 nodes: with evictions), the same
    bases superseded, the same counts and sizes. Each round also writes junk images and
    frees the last round's, so the write pass takes units from the free list's runs, from
    a run it has begun and from the end of the file."""
    folder = tmp_path_factory.mktemp("w") if on_file else None
    trees = [new_tree(cap, None if folder is None else str(folder / name))
             for name in ("c.cow", "py.cow")]
    images = 0
    junk: list[list[tuple[int, int]]] = [[], []]
    for txn in range(2, 2 + rounds):
        rng = random.Random(seed + txn)
        ops = [(b"k%05d" % rng.randrange(3000),
                rng.choice([None, b"", b"v" * rng.randrange(80), b"w" * 900][txn == 2:]))
               for _ in range(rng.choice([1, 10, 300]))]  # (the first round only puts)
        junk_sizes = [rng.randrange(1, 3000) for _ in range(rng.randrange(5))]
        got = []
        for tree, c, mine in zip(trees, (True, False), junk):
            store = tree.store
            store.begin(txn, txn - 1)
            for page, units in mine:  # (freed at the last txn: reusable from the next)
                store.free(page, units)
            mine[:] = [(store.write_image(OVERFLOW, bytes(n)).page,
                        store.pages_for(HEADER_SIZE + n)) for n in junk_sizes]
            with writers(c):
                for k, v in ops:
                    tree.delete(k) if v is None else tree.put(k, v)
                ref, queued = write_queued(tree, txn)
                store.publish(ref, b"", durable=False)
                bases = [b[1:] for b in tree.superseded]  # (node, page, checksum, txn)
                assert all(tree.nodes.get(b[1]) in (b[0], None) for b in tree.superseded)
                tree.nodes.drop(tree.superseded)
            assert not tree.superseded and not {b[0] for b in bases} & set(tree.nodes)
            assert_cache_holds_its_pages(tree.nodes)
            chains = {p: (n.txn, n.chain, n.size) for p, n in tree.nodes.items()}
            got.append((ref, queued, chains, tree.count, tree.mod, bases, store.page_count,
                        store.pages_written, store.bytes_written))
        # the caches may hold other pages: a clean node whose lists the C put took (see
        # node.py's restore_base) left its cache at once, not at the drop, and a copy of it
        # that a delete then merged away is never superseded; what both hold is alike
        shared = got[0][2].keys() & got[1][2].keys()
        assert {p: got[0][2][p] for p in shared} == {p: got[1][2][p] for p in shared}
        assert got[0][:2] + got[0][3:] == got[1][:2] + got[1][3:]
        images += len(got[0][1])
    assert images  # (the test wrote something)
    for tree in trees:
        tree.store.io.close()


@pytest.mark.parametrize("fail_at", [1, 3, 8])
def test_an_error_inside_the_write_pass_leaves_the_store_as_python_would(monkeypatch, fail_at):
    """An error raised midway through write_tree (here: the n-th image Python encodes,
    inside a write that takes units from a run, the end of the file and the free list)
    reaches the commit, which rolls back: the store's run and page count are the last
    published ones, nothing is queued, and the next commit writes and reads back."""
    import cowdb
    from cowdb.errors import CowdbError
    db = cowdb.open(page_size=1024)
    with db.write() as tx:
        tx.update({b"k%05d" % i: b"v" * 60 for i in range(3000)})
    for r in range(3):  # (durable: their frees become reusable)
        with db.write() as tx:
            tx.update({b"k%05d" % i: b"w%d" % r * 30 for i in range(0, 3000, 7)})
    store = db._store
    before = (store.meta.txn, store.page_count, dict(db.read().items()))
    real, calls = Tree._encode, [0]

    def encode(self, node, base, txn, dirty):
        calls[0] += 1
        if calls[0] == fail_at:
            raise CowdbError("injected")
        return real(self, node, base, txn, dirty)
    monkeypatch.setattr(Tree, "_encode", encode)
    with pytest.raises(CowdbError, match="injected"):
        with db.write() as tx:
            tx.update({b"k%05d" % i: b"x" * 200 for i in range(0, 3000, 3)})
    assert calls[0] >= fail_at
    assert (store.meta.txn, store.page_count, dict(db.read().items())) == before
    assert store._queue == {} and store._run == (0, 0)
    monkeypatch.setattr(Tree, "_encode", real)
    with db.write() as tx:
        tx[b"k00001"] = b"after"
    assert db.read()[b"k00001"] == b"after" and db.check().ok
    db.close()


def test_write_tree_refuses_what_is_not_a_node():
    tree = new_tree()
    store, nodes = tree.store, tree.nodes
    with pytest.raises(TypeError):
        write_c.write_tree(object(), 2, store, nodes, None, None, None, [])
    with pytest.raises(TypeError):  # superseded must be a list, nodes a dict
        write_c.write_tree(Leaf([], [], HEADER_SIZE), 2, store, nodes, None, None, None, ())
    with pytest.raises(TypeError):
        write_c.write_tree(Leaf([], [], HEADER_SIZE), 2, store, [], None, None, None, [])
    store.begin(2, 1)
    with pytest.raises(TypeError, match="digest is not an int"):
        write_c.write_tree(Leaf([b"k"], [b"v"], HEADER_SIZE + LEAF_ENTRY + 2), 2, store,
                           nodes, None, None, lambda data: "not an int", [])


def node_state(node):
    """A node's fields, its dirty kids as their types, its base as the image it names and
    the entries it holds (a tree whose C put took its bases' lists: restored first)."""
    fields = [getattr(node, f) for f in type(node).__slots__ if f not in ("base", "undo")]
    if type(node) is Branch:
        fields[1] = [k if type(k) is int else type(k) for k in node.kids]
    base = node.base
    return type(node), fields, None if base is None else (base[1:], entries(base[0]))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2 ** 32))
def test_own_path_owns_what_descend_owns(seed):
    """own_path and _descend, on two equal trees, copy the same nodes the same way (lists,
    size, big, sig, txn, chain, and the base each copy remembers; the clean root too, which
    becomes the tree's dirty root), and return the same path."""
    rng = random.Random(seed)
    trees = [new_tree(), new_tree()]
    items = {b"k%05d" % rng.randrange(5000): b"v" * rng.randrange(60) for _ in range(2000)}
    for tree in trees:
        tree.store.begin(2, 1)
        tree.put_sorted(sorted(items.items()))
        tree.write(2)
        tree.store.begin(3, 2)
    for _ in range(30):
        key = b"k%05d" % rng.randrange(5200)
        (leaf, path), (leaf2, path2) = write_c.own_path(trees[0], key), trees[1]._descend(key)
        assert node_state(leaf) == node_state(leaf2)
        assert [(node_state(b), i) for b, i in path] == [(node_state(b), i) for b, i in path2]
        assert leaf.base is None or leaf.base[0] is trees[0].nodes[leaf.base[1]]
        for tree, first in ((trees[0], path[0][0] if path else leaf),
                            (trees[1], path2[0][0] if path2 else leaf2)):
            assert tree.dirty and tree.root() is first  # (the root: copied once, kept)


def clean_path(tree, key):
    """The clean nodes from the root of a written tree to key's leaf."""
    node, path = tree.root(), []
    while True:
        path.append(node)
        if type(node) is Leaf:
            return path
        node = tree.kid(node, bisect.bisect_right(node.keys, key) - 1)


def test_put_over_takes_the_lists_only_the_cache_holds_and_records_what_they_held():
    """put_over's copies take a clean node's lists when nothing but the cache holds the
    node (node.py's restore_base): the node leaves the cache, its lists None; the copy's
    undo record holds each changed entry as it was; restore() gives the base back, as its
    page has it. The root (the tree holds it) and a node a reader holds are copied, their
    lists left as they were."""
    tree = new_tree()
    items = {b"k%05d" % i: b"v%d" % i for i in range(6000)}
    tree.store.begin(2, 1)
    tree.put_sorted(sorted(items.items()))
    tree.store.publish(tree.write(2), b"", durable=False)
    tree.nodes.drop(tree.superseded)
    tree.store.begin(3, 2)
    taken, kept = clean_path(tree, b"k00010"), clean_path(tree, b"k05990")
    assert len(taken) == 3 and taken[1] is not kept[1]  # (a root, a branch, a leaf each)
    was = [entries(n) for n in taken + kept]
    reader = kept[2]  # (held here: the put must copy it)
    kids = [p.kids[bisect.bisect_right(p.keys, k) - 1]
            for p, k in ((taken[0], b"k00010"), (taken[1], b"k00010"))]
    del taken[1:]     # (the test no longer holds them: the put may take them)
    kept = kept[:1]
    assert write_c.put_over(tree, b"k00010", b"first") is False
    assert write_c.put_over(tree, b"k00010", b"new") is False  # (recorded once: the first)
    assert write_c.put_over(tree, b"k05990", b"new") is False
    assert tree.stolen
    root = tree.root()
    branch = root.kids[bisect.bisect_right(root.keys, b"k00010") - 1]
    leaf = branch.kids[bisect.bisect_right(branch.keys, b"k00010") - 1]
    assert root.undo is None and root.base[0].kids == was[0][1]  # (the root: copied)
    for node, page in ((branch, kids[0]), (leaf, kids[1])):
        assert node.undo and node.base[1] == page and page not in tree.nodes
        assert (node.base[0].vals if type(node) is Leaf else node.base[0].kids) is None
    i = bisect.bisect_left(leaf.keys, b"k00010")
    assert leaf.undo == {i: b"v10"} and leaf.vals[i] == b"new"
    j = bisect.bisect_right(branch.keys, b"k00010") - 1
    assert list(branch.undo) == [j] and branch.undo[j][0] == kids[1]
    other = root.kids[bisect.bisect_right(root.keys, b"k05990") - 1]
    held = other.kids[bisect.bisect_right(other.keys, b"k05990") - 1]
    assert held.undo is None and held.base[0] is reader and entries(reader) == was[5]
    tree.restore()
    assert not tree.stolen and leaf.undo is None and branch.undo is None
    assert [entries(leaf.base[0]), entries(branch.base[0])] == [was[2], was[1]]
    loaded = tree.nodes.load(*leaf.base[1:])  # (its page again: the image as written)
    assert loaded is not leaf.base[0] and entries(loaded) == was[2]


def test_own_path_and_put_over_refuse_bad_input():
    tree = Tree(NodeCache(new_tree().store), frees=True)
    with pytest.raises(ValueError):
        write_c.own_path(tree, b"k")
    with pytest.raises(TypeError):
        write_c.own_path(tree, "k")
    with pytest.raises(TypeError):
        write_c.put_over(tree, b"k", "v")
    tree = new_tree()
    tree.store.begin(2, 1)
    assert write_c.put_over(tree, b"k", b"v" * 1000) is None  # (an overflow value)
    assert tree.count == 0 and tree.mod == 0                  # (nothing changed)
    assert write_c.put_over(tree, b"k", b"v") is True         # (a new key)
    assert write_c.put_over(tree, b"k", b"w") is False        # (over it)
    assert tree.get(b"k") == b"w" and tree.root().size == HEADER_SIZE + LEAF_ENTRY + 2
    assert tree.count == 1 and tree.mod == 2
    for k in (b"m", b"n", b"o"):   # entries of 257 bytes: 803 of the page's 1,024
        assert write_c.put_over(tree, k, b"v" * 250) is True
    assert write_c.put_over(tree, b"p", b"v" * 250) is None  # 1,060: a split, Python's
    assert tree.count == 4 and tree.mod == 5
    assert tree.root().size == HEADER_SIZE + LEAF_ENTRY + 2 + 3 * (LEAF_ENTRY + 1 + 250)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 32), st.sampled_from([1, 20, 400]))
def test_put_over_puts_new_keys_as_python_does(seed, n):
    """Puts of new and old keys (some too big for the leaf, some overflow values) on two
    equal trees of three levels, through put_over and in Python: the same nodes (keys,
    values, sizes, the counts above every leaf), the same count and mod, and the same
    answer from each put."""
    rng = random.Random(seed)
    trees = [new_tree(), new_tree()]
    items = {b"k%05d" % rng.randrange(0, 20000, 2): b"v" * rng.randrange(60)
             for _ in range(3000)}
    for tree in trees:
        tree.store.begin(2, 1)
        tree.put_sorted(sorted(items.items()))
        tree.write(2)
        tree.store.begin(3, 2)
    ops = [(b"k%05d" % rng.randrange(20001),
            rng.choice([b"", b"w" * rng.randrange(40), b"x" * 200, b"y" * 300]))
           for _ in range(n)]
    answers = []
    for tree, c in zip(trees, (True, False)):
        with writers(c):
            answers.append([tree.put(k, v) for k, v in ops])

    def state(node):
        if type(node) is Leaf:
            return node_state(node)
        return node_state(node), [state(k) for k in node.kids if type(k) is not int]
    assert answers[0] == answers[1]
    trees[0].restore()  # (the bases' entries, as the C put's undo records rebuild them)
    assert (state(trees[0].root()), trees[0].count, trees[0].mod) == \
        (state(trees[1].root()), trees[1].count, trees[1].mod)
    assert trees[0].count == len(items | dict(ops))


def test_put_over_reads_a_tree_subclass_s_attributes_too():
    """The C reads a Tree's attributes by their slots, learnt per type: trees of two types
    in turn (a subclass with an attribute of its own shadowing nothing, then Tree) are
    each put to as Python puts."""
    class Mine(Tree):
        pass

    trees = []
    for cls in (Mine, Tree, Mine):
        store = PageStore(MemoryIO(), page_size=1024)
        store.initialize()
        tree = cls(NodeCache(store))
        tree.store.begin(2, 1)
        for i in range(200):
            tree.put(b"k%03d" % i, b"v")
        trees.append(tree)
    for r in range(3):
        for tree in trees:
            for i in range(0, 200, 7):
                assert write_c.put_over(tree, b"k%03d" % i, b"w%d" % r) is False
    for tree in trees:
        assert [tree.get(b"k%03d" % i) for i in range(200)] == [
            b"w2" if i % 7 == 0 else b"v" for i in range(200)]
        assert tree.mod == trees[1].mod and tree.dirty


def test_cached_nodes_leave_the_cyclic_collector(tmp_path):
    """Every node the cache holds (decoded, materialised from a delta, or written by a
    commit) is out of the cyclic collector's walks, with its lists (_write_c.settle): a
    full collection walked ~250,000 of them at 100,000 keys. Reads still see them."""
    import gc

    import cowdb
    if btree.settle is None:
        pytest.skip("the pure-Python path keeps its nodes tracked (no gc.untrack in Python)")
    db = cowdb.open(str(tmp_path / "g.cow"), page_size=1024)
    with db.write() as tx:
        for i in range(3000):
            tx[b"k%05d" % i] = b"v%d" % i
    for n in range(20):  # overwrites: delta images, materialised when read back
        with db.write() as tx:
            tx[b"k%05d" % (n * 97)] = b"w%d" % n
    db.close()
    db = cowdb.open(str(tmp_path / "g.cow"), page_size=1024)
    with db.write() as tx:  # decoded (and materialised) by the put, cached, written
        tx[b"k00097"] = b"x"
    nodes = list(db._nodes.values())
    assert len(nodes) > 3 and any(type(n) is Leaf for n in nodes)
    for n in nodes:
        lists = [getattr(n, f) for f in ("keys", "vals", "kids", "counts", "sums", "txns")
                 if hasattr(n, f)]
        assert not gc.is_tracked(n) and not any(gc.is_tracked(x) for x in lists)
    gc.collect()
    assert db.read()[b"k00097"] == b"x" and db.read()[b"k00194"] == b"w2"
    db.close()


def test_settle_leaves_what_is_not_a_node_tracked():
    import gc
    other = [[b"k"]]
    assert write_c.settle(other) is None and gc.is_tracked(other)



def clean_state(tree):
    """Every clean node the tree's root reaches: (node, its lists' contents as they are)."""
    seen = []

    def visit(node):
        seen.append((node, list(node.keys), list(node.kids if type(node) is Branch
                                                 else node.vals)))
        if type(node) is Branch:
            for i in range(len(node.kids)):
                visit(tree.kid(node, i))
    visit(tree.root())
    return seen


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 32), st.booleans())
def test_changes_never_reach_the_clean_nodes_a_copy_borrows_keys_from(seed, c):
    """A dirty copy borrows its base's keys list (node.own_keys): puts of old and new keys
    (splits, new roots), deletes (merges) and sorted puts, in C or in Python, leave every
    clean node of the tree they copied as it was, and what is written reads back as the
    model."""
    rng = random.Random(seed)
    tree = new_tree()
    tree.store.begin(2, 1)
    model = {b"k%05d" % rng.randrange(0, 20000, 2): b"v" * rng.randrange(60)
             for _ in range(2000)}
    tree.put_sorted(sorted(model.items()))
    tree.write(2)
    tree.store.begin(3, 2)
    before = clean_state(tree)
    with writers(c):
        for _ in range(rng.choice([5, 60, 400])):
            key, r = b"k%05d" % rng.randrange(20001), rng.random()
            if r < 0.3:  # a run of deletes, so that leaves merge
                for k in range(int(key[1:]), int(key[1:]) + rng.choice([1, 600])):
                    key = b"k%05d" % k
                    assert tree.delete(key) == (key in model)
                    model.pop(key, None)
            elif r < 0.4:
                start, step = rng.randrange(20000), rng.randrange(1, 9)
                run = [(b"k%05d" % k, b"s" * rng.randrange(80))
                       for k in range(start, min(20001, start + 60 * step), step)]
                tree.put_sorted(run)
                model.update(run)
            else:
                val = rng.choice([b"", b"w" * rng.randrange(40), b"x" * 200])
                assert tree.put(key, val) == (key not in model)
                model[key] = val
        for node, keys, rest in before:
            assert (node.keys, node.kids if type(node) is Branch else node.vals) == (keys, rest)
        ref = tree.write(3)
    assert list(cursor.items(Tree(tree.nodes, ref))) == sorted(model.items())


@pytest.mark.parametrize("c", [True, False])
def test_an_overwrite_s_copies_borrow_their_keys(c):
    """Overwrites change values only: every copy on their paths still borrows the keys
    list of the node it copied (no list of keys copied), and a new key then makes its
    leaf's list its own, leaving the clean leaf's as it was."""
    tree = new_tree()
    tree.store.begin(2, 1)
    tree.put_sorted([(b"k%05d" % i, b"v" * 20) for i in range(0, 6000, 2)])
    tree.write(2)
    tree.store.begin(3, 2)
    with writers(c):
        for i in (10, 3000, 5998):
            assert tree.put(b"k%05d" % i, b"w") is False
        leaf, path = tree._descend(b"k03000")
        copies = [leaf] + [b for b, _ in path]
        assert len(copies) >= 3 and all(n.keys is n.base[0].keys for n in copies)
        clean = leaf.base[0]
        keys = list(clean.keys)
        assert tree.put(b"k03001", b"new") is True
        assert leaf.keys is not clean.keys and clean.keys == keys
        assert b"k03001" in leaf.keys


put_keys = st.one_of(st.binary(min_size=0, max_size=5), st.just(b"k" * 5000),
                     st.text(max_size=3), st.integers(0, 9), st.none())
put_vals = st.one_of(st.binary(max_size=8), st.just(b"v" * 2000), st.text(max_size=3),
                     st.integers(0, 9), st.none(), st.lists(st.integers(0, 3), max_size=2))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.binary(min_size=1, max_size=4), st.binary(max_size=8)),
                          st.tuples(put_keys, put_vals)), max_size=40),
       st.sampled_from([None, "json"]), st.booleans())
def test_the_c_put_method_is_the_python_one(ops, codec, close_first):
    """Transaction.__setitem__ in C (_write_c.put_method) against the Python method it
    falls back to (transaction.py_setitem), on two databases: the same answer or the
    same exception for every put (keys and values of every type, too long, overflow
    values, a codec, a closed transaction), the same count of puts, the same last key
    touched, and the same contents committed."""
    if btree.put_method is None:
        pytest.skip("the C put method is not built")
    from cowdb import transaction

    dbs = [cowdb.open(codec=codec, page_size=1024) for _ in range(2)]
    outcomes = []
    for db, put in zip(dbs, (transaction.Transaction.__setitem__, transaction.py_setitem)):
        assert (put is transaction.py_setitem) == (db is dbs[1])
        tx = db.write()
        if close_first:
            tx.abort()
        seen = []
        for k, v in ops:
            try:
                seen.append(("ok", put(tx, k, v)))
            except Exception as e:  # (compared: the same type and message)
                seen.append((type(e), str(e)))
        seen.append(("state", tx.puts, getattr(tx, "_touched", None)))
        if not close_first:
            tx.commit()
        seen.append(("contents", sorted(db.read().items())))
        outcomes.append(seen)
        db.close()
    assert outcomes[0] == outcomes[1]
