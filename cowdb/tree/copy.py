"""Copy trees into another page store, keeping their sharing.

Used by compaction: every page reached from several roots is copied once
(``memo`` maps old page -> new reference), so the copy of many versions is
as small as their unique pages, laid out densely in a fresh file.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import Corruption
from ..pages.checksum import HEADER_SIZE, OVERFLOW
from ..pages.meta import EMPTY, RootRef
from .node import Branch, Leaf, Node, Overflow, encode_branch, encode_leaf

if TYPE_CHECKING:
    from ..pages.store import PageStore
    from .btree import NodeCache


def _visit(nodes: NodeCache, ref: RootRef, memo: dict[int, RootRef]
           ) -> tuple[RootRef | None, Node | None]:
    """(what ``memo`` holds for ``ref``'s page, None) if it was visited, else (None, its
    node)."""
    done = memo.get(ref.page)
    return (done, None) if done is not None else (None, nodes.load(ref.page, ref.checksum,
                                                                   ref.txn))


def copy_tree(nodes: NodeCache, dst_store: PageStore, ref: RootRef, memo: dict[int, RootRef],
              txn: int) -> RootRef:
    if not ref.page:
        return EMPTY
    done, node = _visit(nodes, ref, memo)
    if done is not None:
        return done
    assert node is not None  # (not visited: loaded)
    if type(node) is Branch:
        kids = [copy_tree(nodes, dst_store, RootRef(k, s, t),  # type: ignore[arg-type]
                          memo, txn)  # (a clean branch: its kids are pages)
                for k, s, t in zip(node.kids, node.sums, node.txns)]
        new = Branch(node.keys, [r.page for r in kids], node.counts,
                     [r.checksum for r in kids], [txn] * len(kids), node.size)
        image = encode_branch(new, txn)
    else:
        vals: list[bytes | Overflow] = []
        for v in node.vals:
            if type(v) is Overflow:
                r = memo.get(v.page)
                if r is None:
                    body = nodes.store.read(v.page)[HEADER_SIZE:]
                    r = memo[v.page] = dst_store.write_image(OVERFLOW, body)
                v = Overflow(r.page, v.length, r.checksum, r.txn)
            vals.append(v)
        image = encode_leaf(Leaf(node.keys, vals, node.size, node.big), txn)
    page = dst_store.allocate(dst_store.pages_for(len(image)))
    dst_store.write(page, image)
    out = memo[ref.page] = RootRef(page, int.from_bytes(image[:8], "little"), txn)
    return out


def relocate_tree(nodes: NodeCache, store: PageStore, ref: RootRef, memo: dict[int, RootRef],
                  txn: int, limit: int) -> RootRef:
    """``ref``'s tree with every image at a page >= ``limit`` copied into the store's
    lowest free pages, and the path above each rewritten; the replaced pages are freed.

    For giving the end of the file back after gc: ``memo`` (old page -> new reference)
    is shared by every tree relocated in one txn, so a subtree that several versions
    share is copied once and every version points to the copy; the caller relocates
    every tree that reaches a page, so a replaced page is reached by none (readers that
    still hold one are protected by the reuse bound, like every freed page). A page
    the store could only place at or above ``limit`` is left where it is."""
    if not ref.page:
        return ref
    done, node = _visit(nodes, ref, memo)
    if done is not None:
        return done
    assert node is not None  # (not visited: loaded)
    moved = False
    if type(node) is Branch:
        kids = [relocate_tree(nodes, store, RootRef(k, s, t),  # type: ignore[arg-type]
                              memo, txn, limit)  # (a clean branch: its kids are pages)
                for k, s, t in zip(node.kids, node.sums, node.txns)]
        if any(r.page != k for r, k in zip(kids, node.kids)):
            moved = True
            node = Branch(node.keys, [r.page for r in kids], node.counts,
                          [r.checksum for r in kids], [r.txn for r in kids], node.size)
    elif node.big:
        vals: list[bytes | Overflow] = []
        for v in node.vals:
            if type(v) is Overflow and v.page >= limit:
                r = memo.get(v.page)       # a value several leaves share moves once
                if r is None:
                    npages = store.pages_for(HEADER_SIZE + v.length)
                    page = store.take_below(npages, v.page)   # only into free space below
                    if page is None:
                        r = RootRef(v.page, v.checksum, v.txn)
                    else:
                        data = store.read(v.page)
                        if int.from_bytes(data[:8], "little") != v.checksum:
                            raise Corruption(f"page {v.page} does not hold the value its "
                                             f"leaf expects", v.page)
                        r = store.write_image(OVERFLOW, data[HEADER_SIZE:], page=page)
                        store.free(v.page, npages)
                    memo[v.page] = r
                if r.page != v.page:
                    v = Overflow(r.page, v.length, r.checksum, r.txn)
                    moved = True
            vals.append(v)
        if moved:
            node = Leaf(node.keys, vals, node.size, node.big)
    if not moved and ref.page < limit:
        memo[ref.page] = ref
        return ref
    image = (encode_branch(node, txn) if type(node) is Branch else encode_leaf(node, txn))
    units = store.pages_for(len(image))
    page = store.take_below(units, ref.page)
    if page is None:
        if not moved:                        # no lower place for it: leave it
            memo[ref.page] = ref
            return ref
        page = store.allocate(units)         # a child moved: this node must be rewritten
    store.write(page, image)
    store.free(ref.page, store.pages_for(node.size))
    out = memo[ref.page] = RootRef(page, int.from_bytes(image[:8], "little"), txn)
    return out
