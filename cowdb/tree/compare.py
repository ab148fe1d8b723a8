"""Whether two trees hold the same content, walked in step: what lets a commit that
changed nothing make no version (``Database._commit_tree``)."""
from __future__ import annotations

from itertools import repeat
from typing import TYPE_CHECKING

from ..pages.meta import RootRef
from .diff import changes, same_value, value_reader
from .node import Branch

if TYPE_CHECKING:
    from .btree import NodeCache


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
        if type(x) is Branch:
            todo.extend(zip(x.kids, x.sums, x.txns, y.kids, y.sums, y.txns))  # type: ignore[union-attr]
        elif x.vals != y.vals and not all(map(same_value, x.vals, y.vals, repeat(value))):  # type: ignore[union-attr]
            return False
    return True

