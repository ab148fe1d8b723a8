"""Whether two trees hold the same content, walked in step: what lets a commit that
changed nothing make no version (``Database._commit_tree``)."""
from __future__ import annotations

from itertools import repeat
from typing import TYPE_CHECKING

from .btree import read_overflow
from .node import Branch, Overflow

if TYPE_CHECKING:
    from ..pages.meta import RootRef
    from ..pages.store import PageStore
    from .btree import NodeCache


def same_content(nodes: NodeCache, a: RootRef, b: RootRef) -> bool:
    """Whether two trees hold the same keys and values: walked in step, skipping children
    that are one image (page, txn), comparing leaves' key and value lists (in C). Where the
    shapes part (keys deleted and put back merge and split leaves elsewhere), the two
    subtrees' leaves are compared as streams of entries (``_same_entries``), still skipping
    the leaves they share. Node signatures are left alone (see tree/node.py: commits must
    not pay for them)."""
    if a.page == b.page:  # identity is (page, txn), never the checksum (tree/btree.py)
        return a.page == 0 or a.txn == b.txn
    if not (a.page and b.page):
        return False
    todo = [(a.page, a.checksum, a.txn, b.page, b.checksum, b.txn)]
    while todo:
        pa, sa, ta, pb, sb, tb = todo.pop()
        if pa == pb and ta == tb:
            continue
        x, y = nodes.load(pa, sa, ta), nodes.load(pb, sb, tb)
        if type(x) is not type(y) or x.keys != y.keys:
            if _same_entries(nodes, _leaves(nodes, (pa, sa, ta)), _leaves(nodes, (pb, sb, tb))):
                continue
            return False
        # (x and y are alike, and clean: their kids are pages)
        if type(x) is Branch:
            todo.extend(zip(x.kids, x.sums, x.txns, y.kids, y.sums, y.txns))  # type: ignore[union-attr]
        elif x.vals != y.vals and not all(map(_same_value, x.vals, y.vals, repeat(nodes.store))):  # type: ignore[union-attr]
            return False
    return True


def _same_value(v: bytes | Overflow, w: bytes | Overflow, store: PageStore) -> bool:
    """Leaf values, inline bytes or overflow refs. Two overflow refs are the same value
    when they name one image (page, txn); otherwise the bytes are read (equal checksums
    prove nothing: see tree/btree.py on identity)."""
    if v is w or v == w:
        return True
    if type(v) is not Overflow or type(w) is not Overflow or v.length != w.length:
        return False
    if v.page == w.page and v.txn == w.txn:
        return True
    return read_overflow(store, v) == read_overflow(store, w)


_Ref = tuple[int, int, int]  # (page, checksum, txn)


def _leaves(nodes: NodeCache, ref: _Ref) -> list[_Ref]:
    """The references of a subtree's leaves, in key order (only its branches are loaded)."""
    node = nodes.load(*ref)
    if type(node) is not Branch:
        return [ref]
    out: list[_Ref] = []
    for kid in zip(node.kids, node.sums, node.txns):
        out.extend(_leaves(nodes, kid))  # type: ignore[arg-type]  # clean: kids are pages
    return out


def _same_entries(nodes: NodeCache, xs: list[_Ref], ys: list[_Ref]) -> bool:
    """Whether two runs of leaves hold the same entries, whatever their boundaries: the
    leaves are read in step, and a leaf both runs share (one image) is skipped whenever
    neither side has entries left over, so the cost is the leaves that differ."""
    i = j = 0
    xk: list[bytes] = []
    xv: list[bytes | Overflow] = []
    yk: list[bytes] = []
    yv: list[bytes | Overflow] = []
    while True:
        if not xk and not yk:
            while i < len(xs) and j < len(ys) and xs[i][0] == ys[j][0] and xs[i][2] == ys[j][2]:
                i += 1
                j += 1
        if not xk:
            if i == len(xs):
                break
            xk, xv = _entries(nodes, xs[i])
            i += 1
        if not yk:
            if j == len(ys):
                break
            yk, yv = _entries(nodes, ys[j])
            j += 1
        n = min(len(xk), len(yk))
        if xk[:n] != yk[:n] or not all(map(_same_value, xv[:n], yv[:n], repeat(nodes.store))):
            return False
        del xk[:n], xv[:n], yk[:n], yv[:n]
    return not xk and not yk and i == len(xs) and j == len(ys)


def _entries(nodes: NodeCache, ref: _Ref) -> tuple[list[bytes], list[bytes | Overflow]]:
    leaf = nodes.load(*ref)
    return list(leaf.keys), list(leaf.vals)  # type: ignore[union-attr]  # a leaf
