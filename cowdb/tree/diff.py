"""Structural diff of two trees: time proportional to the difference.

Two subtrees at the same page hold the same content (both trees are read
under one pin, and a page is rewritten only once nothing pinned or kept
reaches it), so the diff skips them unread. Equality is never decided by the
64-bit XXH3 checksums, which a user could craft values to collide (see
"Threat model" in docs/format.md); they only detect damage.
For two versions d keys apart it visits O(d x depth) pages;
``DiffStats.pages_visited`` counts them so tests can check the bound.

The common case is two trees whose nodes line up (the same separator keys,
as after overwrites): ``_aligned`` walks them as pairs of nodes, opening only
the children whose checksums differ. Which values of two leaves differ is
found by one XOR of the leaves' signatures (``Leaf.sig``: a 64-bit keyed hash
per value, see ``leaf_sig``; compared value by value where the hash key is not
secret, see ``KEYED_HASH``), not by comparing the value lists: that reads every
value object, wherever in memory it lives, and was most of the cost (a
1,000-change diff at 1M keys opens ~1,000 leaf pairs of ~30 entries). Which
children of two branches differ is found the same way (``Branch.sig``, the
child page references, see ``branch_sig``). Pairs that do not line up (keys were
added or removed) fall back to ``_streams``: each tree read as a stream, in
key order, of subtrees and entries, opening a subtree only when the other
stream cannot match it; it hands pairs that line up again back to
``_aligned``.

Stream elements: (SUB, low, high, page, checksum, height, txn) or (ENT, key, value).
``low``/``high`` bound the keys a subtree can hold (None: unbounded above).
"""
from __future__ import annotations

import os
import sys
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from .btree import read_overflow
from .node import Branch, Leaf, Node, Overflow, branch_sig, leaf_sig

if TYPE_CHECKING:
    from ..pages.meta import RootRef
    from .btree import NodeCache

SUB, ENT = 0, 1
# A stream element (see above), told apart by its first item: read by position.
Elem: TypeAlias = tuple[Any, ...]
# Reads a leaf value: inline bytes as they are, an overflow value from its run.
Reader: TypeAlias = Callable[[bytes | Overflow], bytes]

# Whether Python's hash of bytes (SipHash) is keyed by a secret random per process: then
# no user can craft two values whose 64-bit hashes collide, and leaf signatures may say
# which values are equal. With PYTHONHASHSEED set (or randomization off) the key is known,
# so the values of two leaves that line up are compared one by one instead.
KEYED_HASH = bool(sys.flags.hash_randomization) and os.environ.get(
    "PYTHONHASHSEED", "random") == "random"


@dataclass(slots=True)
class Change:
    key: bytes
    old: bytes | None   # None: the key was added
    new: bytes | None   # None: the key was deleted

    def __iter__(self) -> Iterator[bytes | None]:
        return iter((self.key, self.old, self.new))


@dataclass(slots=True)
class DiffStats:
    pages_visited: int = 0


def _height(nodes: NodeCache, ref: RootRef) -> int:
    node, h = nodes.load(ref.page, ref.checksum, ref.txn), 0
    while type(node) is Branch:  # (clean: its kids are pages)
        node, h = nodes.load(node.kids[0], node.sums[0], node.txns[0]), h + 1  # type: ignore[arg-type]
    return h


def _root_stream(nodes: NodeCache, ref: RootRef) -> list[Elem]:
    return ([(SUB, b"", None, ref.page, ref.checksum, _height(nodes, ref), ref.txn)]
            if ref.page else [])


def changes(nodes: NodeCache, a_ref: RootRef, b_ref: RootRef, start: bytes | None = None,
            stop: bytes | None = None, stats: DiffStats | None = None) -> Iterator[Change]:
    """Yield Change for every key whose value differs between tree a and tree b."""
    stats = stats if stats is not None else DiffStats()
    if a_ref.page == b_ref.page:  # the same image (or both empty): nothing differs
        return
    if not (a_ref.page and b_ref.page):
        yield from _streams(nodes, _root_stream(nodes, a_ref), _root_stream(nodes, b_ref),
                            start, stop, stats)
        return
    h = _height(nodes, a_ref)
    if h != _height(nodes, b_ref):  # the streams open the taller root, then pairs line up
        yield from _streams(nodes, _root_stream(nodes, a_ref), _root_stream(nodes, b_ref),
                            start, stop, stats)
        return
    stats.pages_visited += 2
    yield from _aligned(nodes, nodes.load(a_ref.page, a_ref.checksum, a_ref.txn),
                        nodes.load(b_ref.page, b_ref.checksum, b_ref.txn), b"", None, h,
                        start, stop,
                        stats)


def _aligned(nodes: NodeCache, a_node: Node, b_node: Node, low: bytes, high: bytes | None,
             height: int, start: bytes | None, stop: bytes | None, stats: DiffStats
             ) -> Iterator[Change]:
    """The changes between two nodes of the same height and key range (already counted
    as visited), walked pair by pair while their nodes line up (the same separator keys:
    always so after overwrites). For a pair of branches only the children whose pages
    differ are opened, for a pair of leaves only the values that differ are looked at
    (both found by one XOR of the two nodes' signatures). A pair of branches that
    does not line up (keys were added or removed) goes to the general merge of two
    streams, a pair of leaves to a merge of their entries. Pairs wait on a stack, in
    reverse key order."""
    load, get = nodes.load, nodes.get
    keyed = KEYED_HASH
    value = value_reader(nodes)
    # (na, nb, low, high, height): branches while height > 0, else leaves
    todo: list[tuple[Any, Any, bytes, bytes | None, int]] = [(a_node, b_node, low, high,
                                                               height)]
    pop, push = todo.pop, todo.append
    while todo:
        na, nb, low, high, height = pop()
        keys = na.keys
        if keys != nb.keys:
            if height:
                xs: list[Elem] = []
                ys: list[Elem] = []
                _push(xs, na, low, high, height, start, stop)
                _push(ys, nb, low, high, height, start, stop)
                yield from _streams(nodes, xs, ys, start, stop, stats)
            else:
                yield from _leaves(na, nb, start, stop, value)
            continue
        if height:
            sa, sb = na.sums, nb.sums
            ka, kb = na.kids, nb.kids
            ta, tb = na.txns, nb.txns
            n = len(keys)
            height -= 1
            x = ((na.sig if na.sig is not None else branch_sig(na))
                 ^ (nb.sig if nb.sig is not None else branch_sig(nb)))
            while x:  # a differing child per nonzero 64 bits, highest first (pushed first)
                i = (x.bit_length() - 1) >> 6
                x &= (1 << (i << 6)) - 1
                lo = keys[i] if i else low
                hi = keys[i + 1] if i + 1 < n else high
                if (stop is not None and lo >= stop) or (start is not None and hi is not None
                                                         and hi <= start):
                    continue
                stats.pages_visited += 2
                a, b = get(ka[i]), get(kb[i])
                if a is None or a.txn != ta[i]:
                    a = load(ka[i], sa[i], ta[i])
                if b is None or b.txn != tb[i]:
                    b = load(kb[i], sb[i], tb[i])
                push((a, b, lo, hi, height))
            continue
        va, vb = na.vals, nb.vals
        if not keyed:             # the hash key is known: compare the values themselves
            yield from _leaves(na, nb, start, stop, value)
            continue
        x = (na.sig if na.sig is not None else leaf_sig(na)) ^ (
            nb.sig if nb.sig is not None else leaf_sig(nb))
        differ: list[int] = []
        while x:                  # the entries whose values differ, highest first
            i = (x.bit_length() - 1) >> 6
            x &= (1 << (i << 6)) - 1
            differ.append(i)
        if not (na.big or nb.big) and ((start is None or low >= start) and (
                stop is None or (high is not None and high <= stop))):
            for i in reversed(differ):
                yield Change(keys[i], va[i], vb[i])
        else:
            for i in reversed(differ):
                k = keys[i]
                if ((start is None or k >= start) and (stop is None or k < stop)
                        and not same_value(va[i], vb[i], value)):
                    yield Change(k, value(va[i]), value(vb[i]))


def _leaves(na: Leaf, nb: Leaf, start: bytes | None, stop: bytes | None, value: Reader
            ) -> list[Change]:
    """The changes between two leaves whose keys differ: a merge of two sorted lists."""
    ka, va, kb, vb = na.keys, na.vals, nb.keys, nb.vals
    i, j = 0, 0
    m, n = len(ka), len(kb)
    if start is not None:
        i, j = bisect_left(ka, start), bisect_left(kb, start)
    if stop is not None:
        m, n = bisect_left(ka, stop, i), bisect_left(kb, stop, j)
    out: list[Change] = []
    while i < m and j < n:
        x, y = ka[i], kb[j]
        if x == y:
            if va[i] != vb[j] and not same_value(va[i], vb[j], value):
                out.append(Change(x, value(va[i]), value(vb[j])))
            i += 1
            j += 1
        elif x < y:
            out.append(Change(x, value(va[i]), None))
            i += 1
        else:
            out.append(Change(y, None, value(vb[j])))
            j += 1
    out += [Change(ka[x], value(va[x]), None) for x in range(i, m)]
    out += [Change(kb[y], None, value(vb[y])) for y in range(j, n)]
    return out


def _push(stack: list[Elem], node: Node, low: bytes, high: bytes | None, height: int,
          start: bytes | None, stop: bytes | None) -> None:
    """Push node's children (or entries) in reverse key order."""
    if type(node) is Branch:
        keys, n = node.keys, len(node.keys)
        for i in range(n - 1, -1, -1):
            lo = keys[i] if i else low
            hi = keys[i + 1] if i + 1 < n else high
            if not ((stop is not None and lo >= stop) or (start is not None and hi is not None
                                                          and hi <= start)):
                stack.append((SUB, lo, hi, node.kids[i], node.sums[i], height - 1,
                              node.txns[i]))
    else:
        for k, v in zip(reversed(node.keys), reversed(node.vals)):
            if (start is None or k >= start) and (stop is None or k < stop):
                stack.append((ENT, k, v))


def _streams(nodes: NodeCache, a: list[Elem], b: list[Elem], start: bytes | None,
             stop: bytes | None, stats: DiffStats) -> Iterator[Change]:
    """The general case: merge two streams (stacks, head at the end) of subtrees and
    entries in key order, opening a subtree only when the other side cannot match it."""
    value = value_reader(nodes)

    def open_(stack: list[Elem]) -> None:
        _, low, high, page, checksum, height, txn = stack.pop()
        stats.pages_visited += 1
        _push(stack, nodes.load(page, checksum, txn), low, high, height, start, stop)

    def open_both() -> Iterable[Change]:
        """Open the two head subtrees (same bounds and height, different content)."""
        _, low, high, page, checksum, height, txn = a.pop()
        na = nodes.load(page, checksum, txn)
        _, _, _, page, checksum, _, txn = b.pop()
        nb = nodes.load(page, checksum, txn)
        stats.pages_visited += 2
        if na.keys == nb.keys:  # they line up: the pair walk looks only at what differs
            return _aligned(nodes, na, nb, low, high, height, start, stop, stats)
        _push(a, na, low, high, height, start, stop)
        _push(b, nb, low, high, height, start, stop)
        return ()

    while a or b:
        if not b:
            if a[-1][0] == SUB:
                open_(a)
            else:
                e = a.pop()
                yield Change(e[1], value(e[2]), None)
            continue
        if not a:
            if b[-1][0] == SUB:
                open_(b)
            else:
                e = b.pop()
                yield Change(e[1], None, value(e[2]))
            continue
        x, y = a[-1], b[-1]
        if x[0] == ENT and y[0] == ENT:
            if x[1] < y[1]:
                a.pop()
                yield Change(x[1], value(x[2]), None)
            elif y[1] < x[1]:
                b.pop()
                yield Change(y[1], None, value(y[2]))
            else:
                a.pop(), b.pop()
                if not same_value(x[2], y[2], value):
                    yield Change(x[1], value(x[2]), value(y[2]))
        elif x[0] == SUB and y[0] == SUB:
            if x[3] == y[3] and x[6] == y[6] and x[1] == y[1]:
                a.pop(), b.pop()             # the same page: the same subtree, skipped unread
            elif x[1] < y[1]:
                open_(a)
            elif y[1] < x[1]:
                open_(b)
            elif x[5] > y[5]:
                open_(a)
            elif y[5] > x[5]:
                open_(b)
            else:
                yield from open_both()
        elif x[0] == ENT:                    # entry vs subtree
            if x[1] < y[1]:
                a.pop()
                yield Change(x[1], value(x[2]), None)
            else:
                open_(b)
        else:
            if y[1] < x[1]:
                b.pop()
                yield Change(y[1], None, value(y[2]))
            else:
                open_(a)


def same_value(u: bytes | Overflow, v: bytes | Overflow, value: Reader) -> bool:
    """Whether two leaf values, inline bytes or overflow refs, are the same value. Two
    overflow refs are when they name one image (page, txn); otherwise their bytes are read
    (equal checksums prove nothing: see tree/btree.py on identity)."""
    inline_u, inline_v = type(u) is bytes, type(v) is bytes
    if inline_u and inline_v:
        return u == v
    if inline_u != inline_v:
        return False  # inline values are at most a quarter page, overflow values longer
    return (u.page == v.page and u.txn == v.txn) or (  # type: ignore[union-attr]
        u.length == v.length and value(u) == value(v))  # type: ignore[union-attr]


def value_reader(nodes: NodeCache) -> Reader:
    """A value's bytes, read from its overflow run if it is not inline."""
    store = nodes.store

    def value(v: bytes | Overflow) -> bytes:
        return v if type(v) is not Overflow else read_overflow(store, v)
    return value
