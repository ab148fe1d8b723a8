"""Visit every page image a tree reaches, verifying each against its parent's checksum.

One walk serves recovery (only pages newer than the last durable txn),
``check`` (everything) and garbage-collection marking (everything not seen
yet): a subtree already in ``seen`` is skipped whole, so marking many
versions that share structure costs O(unique pages), not O(versions x n).

``light=True`` (garbage collection) reads only what finding pages needs:
branches' child references (from the node cache when there, else decoded
without their keys and not cached) and leaves' 24-byte headers, whose flag
says whether a leaf has overflow values at all (almost never); it does not
verify checksums, and it leaves the node cache to the readers (except for delta
images, which are materialised through it: a delta branch's children are those of the
node it makes).

A delta image (node.py) reaches its chain: every image down to the full one is
yielded with it (once), whatever walks first. ``seen`` holds the images yielded and,
as ``~page``, the nodes visited: an image met first as another delta's base is still
walked as a node when a version reaches it as one (its children may differ).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import Corruption
from ..pages.checksum import BRANCH, HEADER_SIZE, LEAF
from ..pages.meta import RootRef
from .btree import images
from .node import HAS_OVERFLOW, Branch, Overflow, branch_refs

if TYPE_CHECKING:
    from .btree import NodeCache


def walk(tree_nodes: NodeCache, ref: RootRef, newer_than: int = 0,
         seen: set[int] | None = None, light: bool = False) -> Iterator[tuple[int, int]]:
    """Yield (unit, units) for each image under ``ref`` written after txn ``newer_than``."""
    if not ref.page or ref.txn <= newer_than or (seen is not None and ~ref.page in seen):
        return
    store = tree_nodes.store
    stack = [(ref.page, ref.checksum, ref.txn)]
    if seen is not None:
        seen.add(~ref.page)
    while stack:
        page, checksum, txn = stack.pop()
        node = (tree_nodes.cached(page, txn) if light
                else tree_nodes.load(page, checksum, txn))
        if node is None:  # light walk, not cached
            head = store.read_head(page)
            if not HEADER_SIZE <= head[4] <= store.page_size:
                raise Corruption(f"page {page} has a bad header (length {head[4]})", page)
            assert seen is not None  # light walks always have seen
            if head[1] == BRANCH:
                if page not in seen:
                    seen.add(page)
                    yield page, store.pages_for(head[4])
                kids, sums, txns = branch_refs(store.read(page), page)
                for kid, s, t in zip(kids, sums, txns):
                    if t > newer_than and ~kid not in seen:
                        seen.add(~kid)
                        stack.append((kid, s, t))
                continue
            if head[1] == LEAF and not head[2] & HAS_OVERFLOW:
                if page not in seen:
                    seen.add(page)
                    yield page, store.pages_for(head[4])
                continue
            node = tree_nodes.load(page, checksum, txn)  # overflow values, or a delta
        for p, units, t in images(store, page, node):
            if t <= newer_than:  # a chain's images are older and older
                break
            if seen is not None:
                if p in seen:
                    if p != page:  # the rest of the chain was yielded with p
                        break
                    continue
                seen.add(p)
            yield p, units
        if type(node) is Branch:  # (clean: its kids are pages)
            for kid, s, t in zip(node.kids, node.sums, node.txns):  # type: ignore[assignment]
                if t > newer_than and (seen is None or ~kid not in seen):
                    if seen is not None:
                        seen.add(~kid)
                    stack.append((kid, s, t))
        else:
            for v in node.vals:
                if type(v) is Overflow and v.txn > newer_than and (seen is None or
                                                                   v.page not in seen):
                    data = store.read(v.page)
                    if int.from_bytes(data[:8], "little") != v.checksum:
                        raise Corruption(f"page {v.page} does not hold the value its leaf "
                                         f"expects", v.page)
                    if seen is not None:
                        seen.add(v.page)
                    yield v.page, store.pages_for(HEADER_SIZE + v.length)
