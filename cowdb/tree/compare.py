"""Whether two trees hold the same content: what lets a commit that changed nothing make
no version (``Database._commit_tree``). ``unchanged`` answers for a dirty tree before it
is written, node by node against the clean nodes it copied; ``same_content`` for two
written trees, walked in step."""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from itertools import compress, count, repeat
from operator import ne
from typing import TYPE_CHECKING

from .._accelerators import wanted
from ..pages.meta import RootRef
from . import btree
from .diff import changes, same_value, value_reader
from .node import Branch, Leaf, Node, Overflow, _write_c

if TYPE_CHECKING:
    from .btree import NodeCache, Tree


def differs_at(tree: Tree, ref: RootRef, key: bytes) -> bool:
    """Whether a dirty tree and the tree at ``ref`` hold different values for ``key`` (the
    last key the change wrote): two point reads that prove a commit changed something, so
    neither ``unchanged`` nor ``same_content`` has to walk (the common case: their walks
    were ~6% of a 10-put commit's CPU). Values are compared as bytes: a dirty tree holds a
    big value inline until it is written, its head as an overflow run."""
    nodes = tree.nodes
    root = tree.root()
    if tree.stolen:  # the nodes on the put's path left the cache: their undo records
        both = values_at(root, ref.page, ref.checksum, ref.txn, key)
        if both is not None:
            new, was = both
            if type(new) is bytes and type(was) is bytes:
                return new != was
            value = value_reader(nodes)
            return value(new) != value(was)
        tree.restore()
    value = value_reader(nodes)
    u = None if root is None else btree.descend(root, key, nodes)
    v = btree.descend(nodes.load(ref.page, ref.checksum, ref.txn), key, nodes) if ref.page \
        else None
    if u is None or v is None:
        return u is not v
    return value(u) != value(v)


def py_values_at(root: Node | None, page: int, checksum: int, txn: int, key: bytes
                 ) -> tuple[bytes | Overflow, bytes | Overflow] | None:
    """``key``'s values in the dirty tree under ``root`` and in the tree at (page,
    checksum, txn) it was copied from, told without reading that tree's nodes (the C put
    took their lists and dropped them from the cache): in the leaf where the dirty tree
    holds the key, the base's value is the leaf's undo record's, or the leaf's own where
    the record has none. None when that does not tell (another root, a clean child on the
    way, a leaf with no record, the key not there). _write_c.values_at is this in C."""
    if root is None or root.base is None or root.base[1:] != (page, checksum, txn):
        return None
    node = root
    while type(node) is Branch:
        kid = node.kids[bisect_right(node.keys, key) - 1]
        if type(kid) is int:
            return None  # (a clean child: no put went there)
        node = kid  # type: ignore[assignment]  # (a node)
    assert type(node) is Leaf
    undo, keys = node.undo, node.keys
    i = bisect_left(keys, key)
    if undo is None or i == len(keys) or keys[i] != key:
        return None
    return node.vals[i], undo.get(i, node.vals[i])


# _write_c.values_at (tree/_write_put.c) is py_values_at in C, when it is built and
# current (cowdb/_accelerators.py); tests/test_write_c.py checks it against the Python.
values_at: Callable[[Node | None, int, int, int, bytes],
                    tuple[bytes | Overflow, bytes | Overflow] | None] = py_values_at
if _write_c is not None and wanted():
    values_at = _write_c.values_at


def unchanged(tree: Tree, ref: RootRef) -> bool:
    """Whether a dirty tree still holds what the tree at ``ref`` holds, told without
    writing it: its root was copied from ``ref``'s, and every dirty node holds the entries
    of the clean node it was copied from (its ``base``), its dirty children copied from
    the pages it names. False is not a proof of change (a node without a base, values put
    back as new objects that differ by identity only, keys deleted and put back in
    another shape): the caller then writes the tree and asks ``same_content``. A commit
    that changes nothing so makes no txn, and no rollback (which re-reads the free list:
    most of such a commit's ~700 µs)."""
    tree.restore()  # (compared with the bases' own lists)
    root = tree.root()
    if root is None or root.base is None:
        return False
    _node, page, checksum, txn = root.base
    return (page, checksum, txn) == (ref.page, ref.checksum, ref.txn) and _same(root)


def _same(node: Node) -> bool:
    """Whether a dirty node holds what its base holds, recursively (see ``unchanged``)."""
    base = node.base
    if base is None:
        return False
    b = base[0]
    if type(node) is Leaf:
        return type(b) is Leaf and node.keys == b.keys and node.vals == b.vals
    if type(b) is not Branch or node.keys != b.keys or node.counts != b.counts:
        return False
    bk, bs, bt = b.kids, b.sums, b.txns
    for i, kid in enumerate(node.kids):
        if type(kid) is int:
            if kid != bk[i] or node.sums[i] != bs[i] or node.txns[i] != bt[i]:
                return False
        else:
            kb = kid.base  # type: ignore[union-attr]  # (a dirty node: its base or None)
            if kb is None or kb[1] != bk[i] or kb[3] != bt[i] or \
                    not _same(kid):  # type: ignore[arg-type]
                return False
    return True


def same_content(nodes: NodeCache, a: RootRef, b: RootRef) -> bool:
    """Whether two trees hold the same keys and values: walked in step, skipping children
    that are one image (page, txn), comparing leaves' key and value lists (in C). Where the
    shapes part (keys deleted and put back merge and split leaves elsewhere), the two
    subtrees are compared by the structural diff (``diff.changes``), which lines their
    leaves up and skips the ones they share. Node signatures are left alone (see
    tree/node.py: commits must not pay for them)."""
    if a.page == b.page:  # identity is (page, txn), never the checksum (tree/btree.py)
        return a.page == 0 or a.txn == b.txn
    if not (a.page and b.page):
        return False
    value = value_reader(nodes)
    todo = [(a.page, a.checksum, a.txn, b.page, b.checksum, b.txn)]
    while todo:
        pa, sa, ta, pb, sb, tb = todo.pop()
        if pa == pb and ta == tb:
            continue
        x, y = nodes.load(pa, sa, ta), nodes.load(pb, sb, tb)
        if type(x) is not type(y) or x.keys != y.keys:
            if next(changes(nodes, RootRef(pa, sa, ta), RootRef(pb, sb, tb)), None) is None:
                continue  # another shape, the same entries (the diff skips shared leaves)
            return False
        # (x and y are alike, and clean: their kids are pages)
        if type(x) is Branch:  # the children that are not one image (page, txn) in both
            xk, xs, xt = x.kids, x.sums, x.txns
            yk, ys, yt = y.kids, y.sums, y.txns  # type: ignore[union-attr]
            todo += [(xk[i], xs[i], xt[i], yk[i], ys[i], yt[i])  # type: ignore[misc]
                     for i in compress(count(), map(ne, zip(xk, xt), zip(yk, yt)))]  # (pages)
        else:  # only the values that differ as objects (bytes by value, in C) are asked
            xv, yv = x.vals, y.vals  # type: ignore[union-attr]
            if xv != yv:
                odd = list(map(ne, xv, yv))
                if not all(map(same_value, compress(xv, odd), compress(yv, odd), repeat(value))):
                    return False
    return True

