"""The commit's encoding in C (tree/_write_c.c) against the Python beside it (tree/node.py):
a delta image of a node with its base's keys, byte for byte, and the search for a dirty
branch's children. The C declines (NotImplemented) what Python encodes: other keys than
the base's, and leaves with overflow values."""
from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from cowdb.pages.checksum import BRANCH_DELTA, HEADER_SIZE, LEAF_DELTA
from cowdb.pages.meta import RootRef
from cowdb.tree import node as nodemod
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
)

write_c = nodemod._write_c
pytestmark = pytest.mark.skipif(write_c is None, reason="_write_c is not built")

small_keys = st.integers(0, 400).map(lambda i: b"k%05d" % i)
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


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(small_keys, st.binary(max_size=60), min_size=1, max_size=60),
       st.lists(st.tuples(st.integers(0, 59), st.binary(max_size=60)), max_size=12),
       u64, u64)
def test_a_leaf_overwrite_encodes_as_python_does(items, edits, bsum, txn):
    keys = sorted(items)
    base = a_leaf(keys, [items[k] for k in keys])
    node = base.copy()
    for i, v in edits:
        i %= len(keys)
        node.size += len(v) - len(node.vals[i])
        node.vals[i] = v
    same_image(node, base, RootRef(5, bsum, 7), txn)


@settings(max_examples=200, deadline=None)
@given(st.lists(small_keys, min_size=1, max_size=80, unique=True),
       st.lists(st.tuples(st.integers(0, 79), st.integers(0, 3), u64), max_size=12), u64)
def test_a_branch_with_new_children_encodes_as_python_does(seps, edits, txn):
    keys = [b""] + sorted(seps)[1:]
    n = len(keys)
    base = Branch(keys, list(range(100, 100 + n)), [3] * n, list(range(n)), [6] * n,
                  branch_size(keys))
    base = decode(bytes(encode_branch(base, 7)), 5)
    node = base.copy()
    fields = (node.kids, node.counts, node.sums, node.txns)
    for i, f, v in edits:
        fields[f][i % n] = v
    same_image(node, base, RootRef(5, 11, 7), txn)


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


@given(st.lists(st.one_of(st.integers(0, 2 ** 64 - 1), st.just(None)), max_size=200))
def test_dirty_kids_finds_the_nodes_among_pages(kids):
    kids = [k if k is not None else Leaf([], [], HEADER_SIZE) for k in kids]
    assert write_c.dirty_kids(kids) == py_dirty_kids(kids)
