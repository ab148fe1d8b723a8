"""Copy trees into another page store, keeping their sharing.

Used by compaction: every page reached from several roots is copied once
(``memo`` maps old page -> new reference), so the copy of many versions is
as small as their unique pages, laid out densely in a fresh file.
"""
from ..pages.checksum import HEADER_SIZE, OVERFLOW
from ..pages.meta import EMPTY, RootRef
from .node import Branch, Leaf, Overflow, encode_branch, encode_leaf


def copy_tree(nodes, dst_store, ref: RootRef, memo: dict, txn: int) -> RootRef:
    if not ref.page:
        return EMPTY
    done = memo.get(ref.page)
    if done is not None:
        return done
    node = nodes.load(ref.page, ref.checksum, ref.txn)
    if type(node) is Branch:
        kids = [copy_tree(nodes, dst_store, RootRef(k, s, t), memo, txn)
                for k, s, t in zip(node.kids, node.sums, node.txns)]
        new = Branch(node.keys, [r.page for r in kids], node.counts,
                     [r.checksum for r in kids], [txn] * len(kids), node.size)
        image = encode_branch(new, txn)
    else:
        vals = []
        for v in node.vals:
            if type(v) is Overflow:
                r = memo.get(v.page)
                if r is None:
                    body = nodes.store.read(v.page)[HEADER_SIZE:]
                    r = memo[v.page] = dst_store.write_image(OVERFLOW, body)
                v = Overflow(r.page, v.length, r.checksum, r.txn)
            vals.append(v)
        image = encode_leaf(Leaf(node.keys, vals, node.size, node.big), txn)
    page = dst_store.allocate(1)
    dst_store.write(page, image)
    out = memo[ref.page] = RootRef(page, int.from_bytes(image[:8], "little"), txn)
    return out
