"""Nodes in memory and their page images.

A node read from a page is *clean*: immutable, cached by page number and
shared by every reader and version that reaches it. A writer copies a clean
node before touching it; the copy is *dirty*, owned by that transaction and
edited in place until the commit writes it. In a dirty branch, ``kids[i]``
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
"""
from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from itertools import accumulate
from struct import Struct, pack, unpack_from
from struct import error as struct_error
from typing import TypeAlias, final

from .._accelerators import load, wanted
from ..errors import Corruption
from ..pages.checksum import BRANCH, HEADER, HEADER_SIZE, LEAF, seal

if sys.byteorder != "little":  # arrays (here and in the free list) pack in native order
    raise ImportError("cowdb's page format is little-endian; this machine is big-endian")

OVERFLOW_FLAG = 1 << 31
HAS_OVERFLOW = 1                # leaf header flag: some value is in an overflow run
_OVF = Struct("<QQQQ")
OVERFLOW_REF_SIZE = _OVF.size   # bytes an overflow value takes in its leaf
LEAF_ENTRY = 6                  # u16 + u32 per entry
BRANCH_ENTRY = 34               # u16 + 4 x u64 per entry


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
    __slots__ = ("keys", "vals", "size", "big", "sig", "txn")
    keys: list[bytes]
    vals: list[bytes | Overflow]
    size: int
    big: bool
    txn: int

    def __init__(self, keys: list[bytes], vals: list[bytes | Overflow], size: int,
                 big: bool = False) -> None:
        self.keys, self.vals, self.size, self.big = keys, vals, size, big
        self.sig: int | None = None
        self.txn = 0    # clean nodes: the txn that wrote the image (see NodeCache)

    def copy(self) -> Leaf:
        return Leaf(self.keys[:], self.vals[:], self.size, self.big)

    def count(self) -> int:
        return len(self.keys)


@final
class Branch:
    """``sig`` (clean branches only, else None): see ``branch_sig``. ``kids[i]`` is a
    clean child's page (int), or in a dirty branch the dirty child node itself."""
    __slots__ = ("keys", "kids", "counts", "sums", "txns", "size", "sig", "txn")
    keys: list[bytes]
    kids: list[int | Node]
    counts: list[int]
    sums: list[int]
    txns: list[int]
    size: int
    txn: int

    def __init__(self, keys: list[bytes], kids: list[int | Node], counts: list[int],
                 sums: list[int], txns: list[int], size: int) -> None:
        self.keys, self.kids, self.counts = keys, kids, counts
        self.sums, self.txns, self.size = sums, txns, size
        self.sig: int | None = None
        self.txn = 0    # clean nodes: the txn that wrote the image (see NodeCache)

    def copy(self) -> Branch:
        return Branch(self.keys[:], self.kids[:], self.counts[:], self.sums[:], self.txns[:],
                      self.size)

    def count(self) -> int:
        return sum(self.counts)


Node: TypeAlias = Leaf | Branch


def leaf_sig(leaf: Leaf) -> int:
    """A clean leaf's values as one int, 64 bits per entry (entry i at bits 64i..64i+63):
    the value's hash (an overflow value's: the hash of its page reference, never of its
    XXH3 checksum, which a crafted value could collide). Two leaves with the same keys
    differ at most at the entries whose bits differ, so a diff finds them with one XOR
    instead of comparing every value (which touches every value object, wherever in
    memory it lives). Python's bytes and str hash is SipHash keyed at random per process,
    so a user cannot craft two values whose hashes collide; where the key is fixed
    (PYTHONHASHSEED set), diff compares values instead (see diff.KEYED_HASH). Made when
    the writer writes the leaf (its values are at hand then), else on the first diff
    that needs it, and kept: a clean node never changes."""
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


def decode(data: bytes, page: int) -> Node:
    """Page image -> Leaf or Branch. The image's checksum was already verified."""
    try:
        _s, kind, _f, n, length, txn = HEADER.unpack_from(data, 0)
        if kind == LEAF:
            klens = unpack_from(f"<{n}H", data, HEADER_SIZE)
            vlens = unpack_from(f"<{n}I", data, HEADER_SIZE + 2 * n)
            ko = list(accumulate(klens, initial=HEADER_SIZE + 6 * n))
            keys = [data[a:b] for a, b in zip(ko, ko[1:])]
            pos = ko[-1]
            vals: list[bytes | Overflow]
            if n and max(vlens) & OVERFLOW_FLAG:
                vals = []
                for vl in vlens:
                    if vl & OVERFLOW_FLAG:
                        vals.append(Overflow(*_OVF.unpack_from(data, pos)))
                        pos += OVERFLOW_REF_SIZE
                    else:
                        vals.append(data[pos:pos + vl])
                        pos += vl
            else:
                vo = list(accumulate(vlens, initial=pos))
                vals = [data[a:b] for a, b in zip(vo, vo[1:])]
                pos = vo[-1]
            if pos != length:
                raise ValueError("entries do not fill the image")
            leaf = Leaf(keys, vals, length, bool(n) and max(vlens) >= OVERFLOW_FLAG)
            leaf.txn = txn
            return leaf
        if kind == BRANCH and n:
            klens = unpack_from(f"<{n}H", data, HEADER_SIZE)
            ents = unpack_from(f"<{4 * n}Q", data, HEADER_SIZE + 2 * n)
            ko = list(accumulate(klens, initial=HEADER_SIZE + 34 * n))
            if ko[-1] != length:
                raise ValueError("entries do not fill the image")
            keys = [data[a:b] for a, b in zip(ko, ko[1:])]
            node = Branch(keys, list(ents[0::4]), list(ents[1::4]), list(ents[2::4]),
                          list(ents[3::4]), length)
            node.txn = txn
            return node
    except (struct_error, ValueError, IndexError, OverflowError) as e:
        raise Corruption(f"page {page} does not decode as a tree node: {e}", page) from e
    raise Corruption(f"page {page} is not a tree node (type {kind}, {n} entries)", page)


def encode_leaf(leaf: Leaf, txn: int) -> bytearray:
    """The leaf's image; every value must already be inline bytes or an Overflow."""
    keys, vals = leaf.keys, leaf.vals
    n = len(keys)
    image = bytearray(HEADER_SIZE)
    image += pack(f"<{n}H", *map(len, keys))   # measured faster than array(...).tobytes()
    if leaf.big:
        image += pack(f"<{n}I", *[len(v) if type(v) is bytes else OVERFLOW_FLAG | OVERFLOW_REF_SIZE
                                  for v in vals])
        image += b"".join(keys)
        image += b"".join([v if type(v) is not Overflow else
                           _OVF.pack(v.page, v.length, v.checksum, v.txn) for v in vals])
    else:  # (not big: every value is inline bytes)
        image += pack(f"<{n}I", *map(len, vals))  # type: ignore[arg-type]
        image += b"".join(keys)
        image += b"".join(vals)  # type: ignore[arg-type]
    flags = HAS_OVERFLOW if leaf.big and any(type(v) is Overflow for v in vals) else 0
    HEADER.pack_into(image, 0, 0, LEAF, flags, n, len(image), txn)
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
    keys = b.keys
    n = len(keys)
    image = bytearray(HEADER_SIZE)
    if _branch_body is not None:
        image += _branch_body(keys, b.kids, b.counts, b.sums, b.txns)
    else:
        image += pack(f"<{n}H", *map(len, keys))
        entries = array("Q", bytes(32 * n))  # interleaved by slice assignment: 40% faster
        # than pack(*chain(zip(...))) for ~90 entries; every kid is a page now (written first)
        entries[0::4] = array("Q", b.kids)  # type: ignore[arg-type, type-var]
        entries[1::4] = array("Q", b.counts)
        entries[2::4] = array("Q", b.sums)
        entries[3::4] = array("Q", b.txns)
        image += entries
        image += b"".join(keys)
    HEADER.pack_into(image, 0, 0, BRANCH, 0, n, len(image), txn)
    seal(image)
    return image


# The optional C accelerator (_tree_c.c) writes a branch's body (``branch_body``) when it
# is built and current, as btree.py's point reads do (see cowdb/_accelerators.py).
API = 7  # the _tree_c this package is written against (its API constant; btree.py's too)
_tree_c = load("cowdb.tree", "_tree_c", API)
_branch_body = _tree_c.branch_body if _tree_c is not None and wanted() else None
