"""Nodes in memory and their page images.

A node read from a page is *clean*: immutable, cached by page number and
shared by every reader and version that reaches it. A writer copies a clean
node before touching it; the copy is *dirty*, owned by that transaction and
edited in place until the commit writes it. (A copy may take the lists of a clean
node that nothing but the node cache holds, which then leaves the cache: see
``restore_base``.) In a dirty branch, ``kids[i]``
is either an ``int`` (a clean child's page) or the dirty child node itself,
so "is this child mine to edit" is just ``type(kid) is not int``.

Leaf image (after the 24-byte header; n = entry count; little-endian like the rest):
    n x u16 key lengths | n x u32 value lengths | keys | values
A value length with bit 31 set marks an overflow value: its 32 bytes are
(page, length, checksum, txn) of the run that holds it.

Branch image:
    n x u16 key lengths | n x (u64 page, u64 count, u64 checksum, u64 txn) | keys
Key 0 of a branch is always empty: it stands for "everything below key 1".
Each entry keeps the child's key count (for O(1) len and O(log n) ranks),
checksum (a Merkle tree: a torn commit and equal subtrees are both visible
from the parent) and writing txn (recovery walks only the newest pages).

Delta image (format 4, a data tree's changed node): the reference of the image it
changes (its *base*, itself a full image or a delta), then the runs of entries that
differ from the base, each as (at, cut, put) and the put entries in the node's own
layout:
    u64 base page, u64 base checksum, u64 base txn | u16 depth | u16 s |
    s x (u16 at, u16 cut, u16 put) | the put entries (leaf or branch layout, m = sum put)
Reading one *materialises* it: the base node with each run's ``cut`` entries from
``at`` replaced by its ``put`` entries. ``depth`` counts the deltas down to a full
image (1 .. MAX_CHAIN), so a cold read applies at most MAX_CHAIN of them.
"""
from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Sequence
from itertools import accumulate, chain, compress, count
from operator import is_not, ne
from struct import Struct, pack, unpack_from
from struct import error as struct_error
from typing import Any, TypeAlias, TypeVar, final

from .._accelerators import load, wanted
from ..errors import Corruption
from ..pages.checksum import BRANCH, BRANCH_DELTA, HEADER, HEADER_SIZE, LEAF, LEAF_DELTA, seal

T = TypeVar("T")

if sys.byteorder != "little":  # arrays (here and in the free list) pack in native order
    raise ImportError("cowdb's page format is little-endian; this machine is big-endian")

U64 = "Q"   # the array type code of a branch's counts, sums and txns (see Branch)
OVERFLOW_FLAG = 1 << 31
HAS_OVERFLOW = 1                # leaf header flag: some value is in an overflow run
_OVF = Struct("<QQQQ")
OVERFLOW_REF_SIZE = _OVF.size   # bytes an overflow value takes in its leaf
LEAF_ENTRY = 6                  # u16 + u32 per entry
BRANCH_ENTRY = 34               # u16 + 4 x u64 per entry
DELTA_HEAD = Struct("<QQQHH")   # base page, checksum, txn; depth; splice count
LEAF_CHAIN = 8                  # deltas in a leaf's chain: the next write of it is a full image
BRANCH_CHAIN = 16               # deltas in a branch's chain (a root takes one every commit)
MAX_CHAIN = BRANCH_CHAIN        # the deepest delta the format allows


@final
class Overflow:
    """A value stored out of line in its own page run."""
    __slots__ = ("page", "length", "checksum", "txn")
    page: int
    length: int
    checksum: int
    txn: int

    def __init__(self, page: int, length: int, checksum: int, txn: int) -> None:
        self.page, self.length, self.checksum, self.txn = page, length, checksum, txn


# Leaf and Branch are final, so ``type(node) is Branch`` tells a checker the other case too.
@final
class Leaf:
    """``big`` is True when some value is not inline bytes (an Overflow, or bytes that will
    go to one): readers and the writer check values one by one only then. ``sig`` (clean
    leaves only, else None): see ``leaf_sig``."""
    __slots__ = ("keys", "vals", "size", "big", "sig", "txn", "base", "chain", "undo")
    keys: list[bytes]
    vals: list[bytes | Overflow]
    size: int
    big: bool
    txn: int
    base: tuple[Node, int, int, int] | None
    chain: tuple[tuple[int, int, int], ...] | None
    undo: dict[int, bytes | Overflow] | None

    def __init__(self, keys: list[bytes], vals: list[bytes | Overflow], size: int,
                 big: bool = False) -> None:
        self.keys, self.vals, self.size, self.big = keys, vals, size, big
        self.sig: int | None = None
        self.txn = 0    # clean nodes: the txn that wrote the image (see NodeCache)
        self.base = None   # dirty copies: (the clean node copied, its page, checksum,
        #                  txn), see Tree
        self.chain = None  # clean nodes read from a delta: see ``images``
        self.undo = None   # a copy that took its base's lists: see ``restore_base``

    def copy(self, base: tuple[Node, int, int, int] | None = None) -> Leaf:
        """A dirty copy; with its ``base`` (this leaf's reference, for a delta on it) it
        borrows this leaf's keys list (see own_keys)."""
        copy = Leaf(self.keys if base else self.keys[:], self.vals[:], self.size, self.big)
        copy.base = base
        return copy

    def count(self) -> int:
        return len(self.keys)


@final
class Branch:
    """``sig`` (clean branches only, else None): see ``branch_sig``. ``kids[i]`` is a
    clean child's page (int), or in a dirty branch the dirty child node itself. The
    children's counts, checksums and txns are arrays of u64 (``U64``), not lists: a
    branch's copy (every put copies the branches on its path) is then three memcpys, not
    three lists of Python ints each touched to count a reference, and its image is
    written without converting an int per field."""
    __slots__ = ("keys", "kids", "counts", "sums", "txns", "size", "sig", "txn", "base",
                 "chain", "undo")
    keys: list[bytes]
    kids: list[int | Node]
    counts: array[int]
    sums: array[int]
    txns: array[int]
    size: int
    txn: int
    base: tuple[Node, int, int, int] | None
    chain: tuple[tuple[int, int, int], ...] | None
    undo: dict[int, tuple[int, int, int, int]] | None

    def __init__(self, keys: list[bytes], kids: list[int | Node], counts: array[int],
                 sums: array[int], txns: array[int], size: int) -> None:
        self.keys, self.kids, self.counts = keys, kids, counts
        self.sums, self.txns, self.size = sums, txns, size
        self.sig: int | None = None
        self.txn = 0    # clean nodes: the txn that wrote the image (see NodeCache)
        self.base = None   # dirty copies: (the clean node copied, its page, checksum,
        #                  txn), see Tree
        self.chain = None  # clean nodes read from a delta: see ``images``
        self.undo = None   # a copy that took its base's lists: see ``restore_base``

    def copy(self, base: tuple[Node, int, int, int] | None = None) -> Branch:
        """A dirty copy; with its ``base`` (this branch's reference, for a delta on it) it
        borrows this branch's keys list (see own_keys)."""
        copy = Branch(self.keys if base else self.keys[:], self.kids[:], self.counts[:],
                      self.sums[:], self.txns[:], self.size)
        copy.base = base
        return copy

    def count(self) -> int:
        return sum(self.counts)


Node: TypeAlias = Leaf | Branch


def own_keys(node: Node) -> list[bytes]:
    """The dirty ``node``'s keys list, made its own before a change to it.

    A copy made to be written as a delta on the node it copies (its ``base``) borrows that
    node's keys list instead of copying it: most changes replace values (a leaf) or
    children (a branch) and leave the keys as they were, and a copy of the list touched
    every key object to count a reference (and the drop of the node it replaced touched
    them again): ~5% of a no-sync commit of 10 puts at 100k and 1M keys. Every change to
    a dirty node's keys goes through here (or _write_c's own_keys), which copies the list
    while it is still the base's: a clean node never changes. Written, the node keeps the
    list it has."""
    restore_base(node)  # (a change of keys moves entries: the undo record's indexes)
    keys = node.keys
    base = node.base
    if base is not None and base[0].keys is keys:
        keys = node.keys = keys[:]
    return keys


def restore_base(node: Node) -> None:
    """Give back the lists a dirty ``node`` took from its base, rebuilt from its own.

    A put copies every node on its path, and the copy of a list touched every entry
    object twice (a reference counted by the copy, and again dropped with the node it
    replaced): ~15% of a no-sync commit of 10 puts. Where the clean node copied is held
    by nothing but the node cache (its references counted), the C put (_write_put.c's
    own_kid) instead *takes* its values (a leaf) or children and their arrays (a
    branch), leaves None in their place, drops the node from the cache (a reader
    that wants its page loads it again from the page, which no writer changes) and
    records in ``undo``, before each change of an entry, the entry as the base had it:
    (page, count, checksum, txn) for a branch's child, the value for a leaf. The base's
    entries are then the node's own with those put back, which is all the commit reads
    of a base while the keys are the same (the delta's runs: _write_image.c's
    delta_core; ``compare.differs_at``). Anything else first calls this: a change of the
    keys (``own_keys``), every Python change of the tree (``Tree.restore``), a comparison
    with the base. Afterwards the node is a plain copy of its base."""
    if node.undo is None:
        return
    base = node.base
    assert base is not None  # (a node takes lists only from its base)
    if type(node) is Leaf:
        vals = node.vals[:]
        for i, old in node.undo.items():
            vals[i] = old
        base[0].vals = vals  # type: ignore[union-attr]  # (a copy is of its base's kind)
    else:
        b = base[0]
        assert type(b) is Branch  # (a copy is of its base's kind)
        kids, counts, sums, txns = node.kids[:], node.counts[:], node.sums[:], node.txns[:]
        for i, (kid, c, s, t) in node.undo.items():
            kids[i], counts[i], sums[i], txns[i] = kid, c, s, t
        b.kids, b.counts, b.sums, b.txns = kids, counts, sums, txns
    node.undo = None


def leaf_sig(leaf: Leaf) -> int:
    """A clean leaf's values as one int, 64 bits per entry (entry i at bits 64i..64i+63):
    the value's hash (an overflow value's: the hash of its page reference, never of its
    XXH3 checksum, which a crafted value could collide). Two leaves with the same keys
    differ at most at the entries whose bits differ, so a diff finds them with one XOR
    instead of comparing every value (which touches every value object, wherever in
    memory it lives). Python's bytes and str hash is SipHash keyed at random per process,
    so a user cannot craft two values whose hashes collide; where the key is fixed
    (PYTHONHASHSEED set), diff compares values instead (see diff.KEYED_HASH). Made by
    the first diff that needs it, not by the writer (hashing every value of every leaf
    written cost a no-sync commit of 10 puts ~50 µs of its ~610), and kept: a clean node
    never changes."""
    vals: list[bytes | Overflow] | list[bytes | tuple[str, int]] = leaf.vals
    if leaf.big:
        vals = [v if type(v) is not Overflow else ("overflow", v.page) for v in leaf.vals]
    sig = leaf.sig = int.from_bytes(pack(f"<{len(vals)}q", *map(hash, vals)), "little")
    return sig


def branch_sig(branch: Branch) -> int:
    """A clean branch's child page references as one int, 64 bits per child (see
    ``leaf_sig``): equal pages, read under one pin, are the same image (a page is
    rewritten only once no kept version or reader reaches it); checksums could be forged.
    Made by the first diff that needs it (not by the writer: a commit writes about as many
    branches as a diff of it compares, so that would cost commits what it saves diffs),
    and kept: the diffs after it find the differing children with one XOR."""
    kids = branch.kids
    sig = branch.sig = int.from_bytes(pack(f"<{len(kids)}Q", *kids), "little")
    return sig


def branch_size(keys: Sequence[bytes]) -> int:
    return HEADER_SIZE + sum(BRANCH_ENTRY + len(k) for k in keys)


def py_slices(data: bytes, n: int, at: int, width: int, first: int
              ) -> tuple[list[bytes], int] | None:
    """The n byte strings whose little-endian lengths (``width`` 2 or 4 bytes each) are at
    ``at``, laid out one after another from ``first``: (strings, end); None when a 4-byte
    length carries OVERFLOW_FLAG (a leaf's overflow reference, read by _leaf_entries).
    _write_c.slices is this in C."""
    lens = unpack_from(f"<{n}{'H' if width == 2 else 'I'}", data, at)
    if width == 4 and n and max(lens) >= OVERFLOW_FLAG:
        return None
    offs = list(accumulate(lens, initial=first))
    if offs[-1] > len(data):
        raise ValueError("entries past the image's end")
    return [data[a:b] for a, b in zip(offs, offs[1:])], offs[-1]


def _slices(data: bytes, n: int, at: int, width: int, first: int
            ) -> tuple[list[bytes], int] | None:
    if _c_slices is not None and type(data) is bytes:
        return _c_slices(data, n, at, width, first)
    return py_slices(data, n, at, width, first)


def _leaf_entries(data: bytes, n: int, at: int
                  ) -> tuple[list[bytes], list[bytes | Overflow], bool, int]:
    """The n leaf entries laid out from ``at`` (key lengths, value lengths, keys, values):
    (keys, vals, big, end)."""
    keys, pos = _slices(data, n, at, 2, at + 6 * n)  # type: ignore[misc]  # (2: never None)
    inline = _slices(data, n, at + 2 * n, 4, pos)
    if inline is not None:
        vals, pos = inline
        return keys, vals, False, pos  # type: ignore[return-value]  # (list invariance)
    big: list[bytes | Overflow] = []
    for vl in unpack_from(f"<{n}I", data, at + 2 * n):
        if vl & OVERFLOW_FLAG:
            big.append(Overflow(*_OVF.unpack_from(data, pos)))
            pos += OVERFLOW_REF_SIZE
        else:
            big.append(data[pos:pos + vl])
            pos += vl
    if pos > len(data):
        raise ValueError("entries past the image's end")
    return keys, big, True, pos


def _branch_entries(data: bytes, n: int, at: int
                    ) -> tuple[list[bytes], array[int], int]:
    """The n branch entries laid out from ``at``: (keys, flat (page, count, checksum, txn)
    array, end)."""
    if at + 34 * n > len(data):
        raise ValueError("entries past the image's end")
    ents = array(U64, data[at + 2 * n:at + 34 * n])  # (native order: little-endian, checked)
    keys, end = _slices(data, n, at, 2, at + 34 * n)  # type: ignore[misc]  # (2: never None)
    return keys, ents, end


def decode(data: bytes, page: int) -> Node:
    """A full page image -> Leaf or Branch. The image's checksum was already verified."""
    try:
        _s, kind, _f, n, length, txn = HEADER.unpack_from(data, 0)
        if kind == LEAF:
            keys, vals, big, pos = _leaf_entries(data, n, HEADER_SIZE)
            if pos != length:
                raise ValueError("entries do not fill the image")
            leaf = Leaf(keys, vals, length, big)
            leaf.txn = txn
            return leaf
        if kind == BRANCH and n:
            keys, ents, pos = _branch_entries(data, n, HEADER_SIZE)
            if pos != length:
                raise ValueError("entries do not fill the image")
            kids: list[int | Node] = ents[0::4].tolist()  # type: ignore[assignment]
            node = Branch(keys, kids, ents[1::4], ents[2::4], ents[3::4], length)
            node.txn = txn
            return node
    except (struct_error, ValueError, IndexError, OverflowError) as e:
        raise Corruption(f"page {page} does not decode as a tree node: {e}", page) from e
    raise Corruption(f"page {page} is not a tree node (type {kind}, {n} entries)", page)


def _leaf_body(image: bytearray, keys: list[bytes], vals: list[bytes | Overflow],
               big: bool) -> bool:
    """Append leaf entries to ``image``; whether one of them is an overflow value."""
    n = len(keys)
    image += pack(f"<{n}H", *map(len, keys))   # measured faster than array(...).tobytes()
    if big:
        image += pack(f"<{n}I", *[len(v) if type(v) is bytes else OVERFLOW_FLAG | OVERFLOW_REF_SIZE
                                  for v in vals])
        image += b"".join(keys)
        image += b"".join([v if type(v) is not Overflow else
                           _OVF.pack(v.page, v.length, v.checksum, v.txn) for v in vals])
        return any(type(v) is Overflow for v in vals)
    image += pack(f"<{n}I", *map(len, vals))  # type: ignore[arg-type]  # (not big: every
    image += b"".join(keys)                     # value is inline bytes)
    image += b"".join(vals)  # type: ignore[arg-type]
    return False


def _branch_body(image: bytearray, keys: list[bytes], kids: list[int | Node],
                 counts: Sequence[int], sums: Sequence[int], txns: Sequence[int]) -> None:
    image += pack(f"<{len(keys)}H", *map(len, keys))
    entries = array(U64, bytes(32 * len(keys)))  # interleaved by slice assignment: 40%
    entries[0::4] = array(U64, kids)  # type: ignore[arg-type, type-var]  # (pages: written)
                                                 # faster than pack(*chain(zip(...))) for
    entries[1::4] = array(U64, counts)           # ~90 entries
    entries[2::4] = array(U64, sums)
    entries[3::4] = array(U64, txns)
    image += entries
    image += b"".join(keys)


def encode_leaf(leaf: Leaf, txn: int) -> bytearray:
    """The leaf's image; every value must already be inline bytes or an Overflow."""
    if _c_full_image is not None and not leaf.big:
        image = _c_full_image(leaf, txn)
        seal(image)
        return image
    image = bytearray(HEADER_SIZE)
    flags = HAS_OVERFLOW if _leaf_body(image, leaf.keys, leaf.vals, leaf.big) else 0
    HEADER.pack_into(image, 0, 0, LEAF, flags, len(leaf.keys), len(image), txn)
    seal(image)
    return image


def branch_refs(data: bytes, page: int
                ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(kids, sums, txns) of a branch image, without decoding its keys (for walks)."""
    _s, kind, _f, n, length, _txn = HEADER.unpack_from(data, 0)
    if kind != BRANCH or not n or HEADER_SIZE + 34 * n > length:
        raise Corruption(f"page {page} is not a branch node (type {kind}, {n} entries)", page)
    ents = unpack_from(f"<{4 * n}Q", data, HEADER_SIZE + 2 * n)
    return ents[0::4], ents[2::4], ents[3::4]


def encode_branch(b: Branch, txn: int) -> bytearray:
    if _c_full_image is not None:
        image = _c_full_image(b, txn)
        seal(image)
        return image
    image = bytearray(HEADER_SIZE)
    _branch_body(image, b.keys, b.kids, b.counts, b.sums, b.txns)
    HEADER.pack_into(image, 0, 0, BRANCH, 0, len(b.keys), len(image), txn)
    seal(image)
    return image


# ---- delta images (format 4) ---------------------------------------------------------
def depth(node: Node) -> int:
    """How many deltas a clean node's image is made of (0: a full image)."""
    chain = node.chain
    return 0 if chain is None else len(chain) - 1


def _runs(idx: list[int]) -> list[tuple[int, int, int, int]]:
    """Consecutive indexes grouped into runs (at, cut, lo, hi) replacing entries in place."""
    out: list[tuple[int, int, int, int]] = []
    for i in idx:
        if out and out[-1][3] == i:
            at, cut, lo, hi = out[-1]
            out[-1] = (at, cut + 1, lo, hi + 1)
        else:
            out.append((i, 1, i, i + 1))
    return out


def _span(n: int, m: int, same: Callable[[int, int], bool]) -> list[tuple[int, int, int, int]]:
    """One run covering everything between the common prefix and suffix of a base of n
    entries and a node of m: ``same(i, j)`` tells base entry i from node entry j."""
    lim = min(n, m)
    p = 0
    while p < lim and same(p, p):
        p += 1
    s = 0
    while s < lim - p and same(n - 1 - s, m - 1 - s):
        s += 1
    return [(p, n - s - p, p, m - s)] if (n - s - p or m - s - p) else []


def _changes(node: Node, base: Node, dirty: list[int] | None = None,
             by_value: bool = False) -> list[tuple[int, int, int, int]]:
    """The runs (at, cut, lo, hi) that turn ``base``'s entries into ``node``'s: the
    base's entries at..at+cut-1 are replaced by the node's lo..hi-1. Values and keys are
    compared by identity (a copy shares its base's objects), references by value. For a
    branch with the same keys as its base, ``dirty`` (the writer's: the entries whose
    child it wrote) are usually the entries that differ; that is checked (a merge puts
    other trees' children in place) with three list comparisons, then trusted: a
    child's (page, txn) names one image, so its checksum cannot differ.
    ``by_value``: a base read anew (a copy's, a relocation's), whose objects the node does
    not share: keys and values compare by value, overflow values by their reference."""
    bk, nk = base.keys, node.keys
    same = len(bk) == len(nk) and bk == nk
    if type(node) is Leaf:
        assert type(base) is Leaf  # (encode_delta checked)
        bv: Sequence[object] = base.vals
        nv: Sequence[object] = node.vals
        if by_value and (base.big or node.big):
            bv, nv = _as_refs(base.vals), _as_refs(node.vals)
        if same:
            return _runs(list(compress(count(), map(ne if by_value else is_not, bv, nv))))
        if by_value:
            return _span(len(bk), len(nk), lambda i, j: bk[i] == nk[j] and bv[i] == nv[j])
        return _span(len(bk), len(nk), lambda i, j: bk[i] is nk[j] and bv[i] is nv[j])
    assert type(node) is Branch and type(base) is Branch
    bkid, bs, bt, bc = base.kids, base.sums, base.txns, base.counts
    kid, ns, nt, nc = node.kids, node.sums, node.txns, node.counts
    if same and dirty is not None and _only(dirty, bkid, kid) and _only(dirty, bt, nt) \
            and _only(dirty, bc, nc):
        return _runs(dirty)
    if same:
        return _runs([i for i, (a, b, c, d, e, f, g, h)
                      in enumerate(zip(bkid, kid, bs, ns, bt, nt, bc, nc))
                      if a != b or c != d or e != f or g != h])
    return _span(len(bk), len(nk), lambda i, j: bk[i] == nk[j] and bkid[i] == kid[j] and
                 bs[i] == ns[j] and bt[i] == nt[j] and bc[i] == nc[j])


def _only(dirty: list[int], old: Sequence[Any], new: list[Any] | array[int]) -> bool:
    """Whether ``new`` equals ``old`` outside the indexes ``dirty``."""
    patched = new[:]
    for i in dirty:
        patched[i] = old[i]
    return patched == old


def _picked(seq: Sequence[T], runs: list[tuple[int, int, int, int]]) -> list[T]:
    """The entries of ``seq`` (a list, or a branch's array) that the runs put, in order."""
    if len(runs) == 1:
        return list(seq[runs[0][2]:runs[0][3]])
    return list(chain.from_iterable(seq[lo:hi] for _a, _c, lo, hi in runs))


def _as_refs(vals: list[bytes | Overflow]) -> list[bytes | tuple[int, int, int, int]]:
    """A leaf's values with each overflow value as its reference (page, length, checksum,
    txn), for comparing by value: a page and its txn name one image."""
    return [v if type(v) is not Overflow else (v.page, v.length, v.checksum, v.txn)
            for v in vals]


def encode_delta(node: Node, base: Node, bpage: int, bsum: int, btxn: int, txn: int,
                 dirty: list[int] | None = None, by_value: bool = False
                 ) -> bytearray | None:
    """``node``'s image as a delta on ``base`` (the clean node it was copied from, whose
    image is (bpage, bsum, btxn)), or None when a full image is due: the chain is
    LEAF_CHAIN (a leaf's) or BRANCH_CHAIN (a branch's) deltas long, or the delta would not
    be under half the full image. ``dirty``, ``by_value``: see
    ``_changes``."""
    d = depth(base) + 1
    leaf = type(node) is Leaf
    if d > (LEAF_CHAIN if leaf else BRANCH_CHAIN) or type(node) is not type(base):
        return None
    if _c_delta_image is not None and not by_value:
        image = _c_delta_image(leaf, LEAF_DELTA if leaf else BRANCH_DELTA, node, base,
                               bpage, bsum, btxn, d, txn)
        if image is not NotImplemented:  # (other keys than the base's, or overflow values)
            if image is not None:
                seal(image)
            return image  # type: ignore[no-any-return]  # (a bytearray, or None)
    runs = _changes(node, base, dirty, by_value)
    if len(runs) > 0xFFFF:
        return None
    image = bytearray(HEADER_SIZE + DELTA_HEAD.size)
    image += pack(f"<{3 * len(runs)}H", *[x for at, cut, lo, hi in runs
                                         for x in (at, cut, hi - lo)])
    keys = _picked(node.keys, runs)
    flags = 0
    if type(node) is Leaf:
        _leaf_body(image, keys, _picked(node.vals, runs), node.big)
        kind = LEAF_DELTA
        if node.big and any(type(v) is Overflow for v in node.vals):
            flags = HAS_OVERFLOW
    else:
        _branch_body(image, keys, _picked(node.kids, runs), _picked(node.counts, runs),
                     _picked(node.sums, runs), _picked(node.txns, runs))
        kind = BRANCH_DELTA
    if 2 * len(image) > node.size:
        return None
    DELTA_HEAD.pack_into(image, HEADER_SIZE, bpage, bsum, btxn, d, len(runs))
    HEADER.pack_into(image, 0, 0, kind, flags, len(node.keys), len(image), txn)
    seal(image)
    return image


def rebase_delta(node: Node, full: bytes, fpage: int, txn: int) -> bytearray | None:
    """At a chain's bound (LEAF_CHAIN or BRANCH_CHAIN deltas): ``node``'s image as a delta
    of depth 1 on ``full``, the full image (read and verified, at ``fpage``) that its base's
    chain starts from: every entry that differs from it, by value. None when a full image
    is due: ``full`` is not a full image of the node's kind, the keys differ, a value is
    not inline bytes, or the delta would not be under half the node. A consolidation so
    writes what changed since the full image, not the whole node again (a full image only
    once that passes half of it: see docs/history-cost.md, "Rebased at the bound")."""
    leaf = type(node) is Leaf
    if _c_rebase_image is not None:
        image: bytearray | None = _c_rebase_image(leaf, LEAF_DELTA if leaf else BRANCH_DELTA,
                                                  node, full, fpage, txn)
        if image is not None:
            seal(image)
        return image
    if len(full) < HEADER_SIZE or full[8] != (LEAF if leaf else BRANCH):
        return None
    base = decode(full, fpage)
    if base.keys != node.keys or (leaf and (node.big or base.big)):  # type: ignore[union-attr]
        return None
    return encode_delta(node, base, fpage, int.from_bytes(full[:8], "little"), base.txn, txn,
                        by_value=True)


def delta_base(data: bytes, page: int) -> tuple[int, int, int, int]:
    """(base page, base checksum, base txn, depth) of a delta image."""
    if len(data) < HEADER_SIZE + DELTA_HEAD.size:
        raise Corruption(f"page {page} does not decode as a tree node: a delta cut short",
                         page)
    bpage, bsum, btxn, d, _s = DELTA_HEAD.unpack_from(data, HEADER_SIZE)
    if not 1 <= d <= MAX_CHAIN:
        raise Corruption(f"page {page} does not decode as a tree node: a delta of depth {d}",
                         page)
    return bpage, bsum, btxn, d


def apply_delta(base: Node, data: bytes, page: int) -> Node:
    """The node a delta image makes of its (already materialised) base: a new clean node,
    the base untouched. Raises Corruption if the delta does not fit its base."""
    try:
        _s, kind, _f, n, length, txn = HEADER.unpack_from(data, 0)
        _p, _c, _t, d, ns = DELTA_HEAD.unpack_from(data, HEADER_SIZE)
        want = Leaf if kind == LEAF_DELTA else Branch if kind == BRANCH_DELTA else None
        if type(base) is not want or depth(base) != d - 1:
            raise ValueError(f"its base is not a {kind} node of depth {d - 1}")
        at0 = HEADER_SIZE + DELTA_HEAD.size
        sp = unpack_from(f"<{3 * ns}H", data, at0)
        m = sum(sp[2::3])
        at0 += 6 * ns
        bk = base.keys
        prev, cuts = 0, []
        for i in range(0, 3 * ns, 3):
            at, cut = sp[i], sp[i + 1]
            if at < prev or at + cut > len(bk):
                raise ValueError("its runs do not fit the base's entries")
            cuts.append((prev, at, at + cut, sp[i + 2]))
            prev = at + cut

        def spliced(old: Sequence[Any], new: Sequence[Any]) -> list[Any]:
            out: list[Any] = []
            j = 0
            for lo, at, _nxt, put in cuts:
                out += old[lo:at]
                out += new[j:j + put]
                j += put
            out += old[prev:]
            return out

        node: Node
        if type(base) is Leaf:
            keys, vals, _big, pos = _leaf_entries(data, m, at0)
            size = base.size + pos - at0
            bv = base.vals
            for _lo, at, nxt, _put in cuts:
                for i in range(at, nxt):
                    v = bv[i]
                    size -= LEAF_ENTRY + len(bk[i]) + (len(v) if type(v) is bytes
                                                       else OVERFLOW_REF_SIZE)
            nvals = spliced(base.vals, vals)
            node = Leaf(spliced(bk, keys), nvals,
                        size, any(type(v) is not bytes for v in nvals))
        else:
            assert type(base) is Branch
            bkeys, ents, pos = _branch_entries(data, m, at0)
            size = base.size + pos - at0
            for _lo, at, nxt, _put in cuts:
                size -= sum(BRANCH_ENTRY + len(bk[i]) for i in range(at, nxt))
            node = Branch(spliced(bk, bkeys), spliced(base.kids, ents[0::4]),
                          array(U64, spliced(base.counts, ents[1::4])),
                          array(U64, spliced(base.sums, ents[2::4])),
                          array(U64, spliced(base.txns, ents[3::4])), size)
            if not node.keys or node.keys[0] != b"":
                raise ValueError("its first separator is not empty")
        if pos != length or len(node.keys) != n:
            raise ValueError("entries do not fill the image")
    except (struct_error, ValueError, IndexError, OverflowError) as e:
        raise Corruption(f"page {page} does not decode as a tree node: {e}", page) from e
    node.txn = txn
    return node


# _write_c (tree/_write_*.c) slices a node's keys and values out of its image
# (``slices``), encodes a node's full image (``full_image``), the delta of a node with its
# base's keys (``delta_image``: the commit's common case, an overwrite) and a chain's
# rebase on its full image (``rebase_image``: see rebase_delta), finds a dirty branch's
# written children (``dirty_kids``), runs btree.py's whole write pass (``write_tree``) and
# its put (``own_path``, ``put_over``, both bound there) when it is built and current (see
# cowdb/_accelerators.py); tests/test_write_c.py checks them against the Python.
WRITE_API = 27  # the _write_c this package is written against
_write_c = load("cowdb.tree", "_write_c", WRITE_API)
_c_delta_image: Callable[..., Any] | None = None
_c_full_image: Callable[[Node, int], bytearray] | None = None
_c_rebase_image: Callable[..., Any] | None = None
_c_slices: Callable[[bytes, int, int, int, int], tuple[list[bytes], int] | None] | None = None
if _write_c is not None and wanted():
    _c_delta_image, _c_full_image = _write_c.delta_image, _write_c.full_image
    _c_rebase_image, _c_slices = _write_c.rebase_image, _write_c.slices


def py_dirty_kids(kids: list[int | Node]) -> list[int]:
    """The indexes of a branch's kids that are dirty nodes (not pages)."""
    return [i for i, kid in enumerate(kids) if type(kid) is not int]


dirty_kids: Callable[[list[int | Node]], list[int]] = (
    _write_c.dirty_kids if _write_c is not None and wanted() else py_dirty_kids)
