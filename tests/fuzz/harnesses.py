"""Fuzz targets for the decoders of what cowdb reads back from disk (issue 18).

Each target takes arbitrary bytes and asserts the decoder's contract: the bytes either
decode, or the decoder raises the error its caller turns into ``cowdb.errors.Corruption``
(or Corruption itself): never another exception, never a crash. ``run.py`` drives them
under atheris (coverage-guided); tests/test_fuzz_regressions.py replays every input saved
in tests/fuzz/regressions/ through the same targets.
"""
from array import array
from bisect import bisect_left
from struct import error as struct_error

from cowdb.errors import Corruption
from cowdb.history.catalog import Catalog, decode_pending
from cowdb.pages import meta
from cowdb.pages.checksum import BRANCH_DELTA, HEADER, HEADER_SIZE, LEAF_DELTA, seal, verify
from cowdb.pages.freelist import DECODE_ERRORS, FreeList
from cowdb.tree import node


def _sealed_node(data: bytes):
    """What the page store hands the tree: an image that passed verify() (its length field
    and checksum right, everything else the fuzzer's), decoded; None for Corruption."""
    image = bytearray(data)
    if len(image) >= HEADER_SIZE:
        fields = list(HEADER.unpack_from(image, 0))
        fields[4] = len(image)
        HEADER.pack_into(image, 0, *fields)
        seal(image)
    try:
        verify(image, 7)
        return node.decode(bytes(image), 7), bytes(image)
    except Corruption:
        return None, image


def fuzz_node(data: bytes) -> None:
    """A verified node image: a Leaf, a Branch, or Corruption. A decoded branch encodes
    back to the same body."""
    n, data = _sealed_node(data)
    if n is None:
        return
    if isinstance(n, node.Branch):
        assert node.encode_branch(n, n.txn)[HEADER_SIZE:] == bytes(data[HEADER_SIZE:n.size])
        kids, sums, txns = node.branch_refs(data, 7)
        assert list(kids) == n.kids and list(sums) == list(n.sums) and \
            list(txns) == list(n.txns)
    else:
        assert isinstance(n, node.Leaf) and len(n.keys) == len(n.vals)


def fuzz_meta(data: bytes) -> None:
    """A meta slot: a record, or BadMeta (the store then falls back to the other slot). A
    record read as an older version encodes as the current one, as the store writes it."""
    try:
        m = meta.decode(data)
    except meta.BadMeta:
        return
    assert meta.decode(m.encode()) == m._replace(version=meta.FORMAT_VERSION)
    meta.pending_length(data[:meta.META_SIZE])


class _Tree:
    """The one call Catalog.commit and Catalog.root make of their tree, answering the fuzzed
    record."""

    def __init__(self, data: bytes):
        self.data = data

    def get(self, key: bytes) -> bytes:
        return self.data


def fuzz_catalog(data: bytes) -> None:
    """A commit record stored in the catalog, and the ref changes a meta record carries:
    decoded, or Corruption."""
    try:
        Catalog(_Tree(data)).commit(1)  # type: ignore[arg-type]
    except Corruption:
        pass
    try:
        Catalog(_Tree(data)).root(1)  # type: ignore[arg-type]  # what at(v) decodes
    except Corruption:
        pass
    try:
        decode_pending(data)
    except Corruption:
        pass


def fuzz_freelist(data: bytes) -> None:
    """A free-list base image, then the same bytes replayed as a delta over it, the way the
    page store loads a chain: decoded, or one of DECODE_ERRORS (which the store raises as
    Corruption)."""
    try:
        fl = FreeList.decode(data)
        FreeList.previous(data)
        fl.replay(data)
    except DECODE_ERRORS:
        return
    fl.encode()


def _sliced(fn, *args):
    try:
        return fn(*args)
    except (struct_error, ValueError):
        return "refused"


def fuzz_tree_c(data: bytes) -> None:
    """The C accelerators against the pure-Python code: _write_c.slices on the raw bytes
    (lengths at data[0], strings from data[1], data[2] of them); on a decoded node, its body
    as _write_c.full_image encodes it (a branch, or a leaf not marked big), and a point
    read in a leaf by _tree_c.get."""
    from cowdb.tree.btree import _tree_c  # (btree binds both C modules on import)
    from cowdb.tree.node import _write_c
    if _tree_c is None or _write_c is None:
        raise SystemExit("cowdb.tree's C accelerators are not built: python3 setup.py "
                         "build_ext --inplace")
    if len(data) >= 3:
        for width in (2, 4):
            args = (data, data[2], data[0], width, data[1])
            assert _sliced(_write_c.slices, *args) == _sliced(node.py_slices, *args)
    n, data = _sealed_node(data)
    if n is None:
        return
    if isinstance(n, node.Branch) or not n.big:
        body = bytearray()
        if isinstance(n, node.Branch):
            node._branch_body(body, n.keys, n.kids, n.counts, n.sums, n.txns)
        else:
            node._leaf_body(body, n.keys, n.vals, False)
        assert _write_c.full_image(n, n.txn)[HEADER_SIZE:] == body
        assert body == bytes(data[HEADER_SIZE:n.size])
    if isinstance(n, node.Branch):
        return
    keys = n.keys
    if keys != sorted(keys):
        return
    for key in [*keys[:4], data[HEADER_SIZE:HEADER_SIZE + 3], b""]:
        i = bisect_left(keys, key)
        expected = n.vals[i] if i < len(keys) and keys[i] == key else None
        assert _tree_c.get(n, key, {}) is expected



def chain_reference(chain: list[bytes]) -> bytes | None:
    """node.py's reading of a delta chain (decode the full image, then apply_delta each
    delta) as the full image's bytes after the checksum; None where that raises
    Corruption. Depths are the walk's to check (NodeCache.chain_images), not the
    application's: each delta is applied as one of depth 1."""
    depth_at = HEADER_SIZE + 24   # (node.DELTA_HEAD: base page, checksum, txn; depth)
    try:
        n = node.decode(chain[0], 1)
        for img in chain[1:]:
            n.chain = None
            n = node.apply_delta(n, img[:depth_at] + b"\x01\x00" + img[depth_at + 2:], 1)
    except Corruption:
        return None
    txn = HEADER.unpack_from(chain[-1], 0)[5]
    image = node.encode_leaf(n, txn) if type(n) is node.Leaf else node.encode_branch(n, txn)
    return bytes(image[8:])


def _chain_bases() -> tuple[bytes, bytes]:
    leaf = node.Leaf([b"k%02d" % i for i in range(12)], [b"v" * 20] * 12, 0)
    branch = node.Branch([b""] + [b"m%02d" % i for i in range(1, 8)], list(range(40, 48)),
                         *(array(node.U64, range(8)) for _ in range(3)), 0)
    return bytes(node.encode_leaf(leaf, 1)), bytes(node.encode_branch(branch, 2))


CHAIN_BASES = _chain_bases()


def chain_seeds() -> list[bytes]:
    """Real deltas on CHAIN_BASES, as fuzz_chain reads its input."""
    leaf, branch = (node.decode(b, 1) for b in CHAIN_BASES)
    new_leaf = leaf.copy()
    new_leaf.vals[3] = b"changed"
    new_leaf.size -= 13
    new_branch = branch.copy()
    new_branch.kids[2] = 99
    out = []
    for which, (n, base) in enumerate(((new_leaf, leaf), (new_branch, branch))):
        image = node.encode_delta(n, base, 5, 6, base.txn, 9, by_value=True)
        assert image is not None
        out.append(bytes([which]) + bytes(image))
    return out


def fuzz_chain(data: bytes) -> None:
    """_write_c.apply_chain (the mapped read of a delta) against the node path
    (chain_reference): data[0] picks the base, a leaf's full image or a branch's
    (CHAIN_BASES), and the rest is a delta on it, its kind and length field set, every
    other byte the fuzzer's: the same full image, or None where the node path raises
    Corruption."""
    from cowdb.tree.node import _write_c
    if _write_c is None:
        raise SystemExit("cowdb.tree's C accelerators are not built: python3 setup.py "
                         "build_ext --inplace")
    if len(data) < 2:
        return
    delta = bytearray(data[1:])
    if len(delta) >= HEADER_SIZE:
        delta[8] = BRANCH_DELTA if data[0] & 1 else LEAF_DELTA
        delta[12:16] = len(delta).to_bytes(4, "little")
    chain = [CHAIN_BASES[data[0] & 1], bytes(delta)]
    made = _write_c.apply_chain(chain)
    assert (None if made is None else bytes(made[8:])) == chain_reference(chain)


TARGETS = {"node": fuzz_node, "meta": fuzz_meta, "catalog": fuzz_catalog,
           "freelist": fuzz_freelist, "tree_c": fuzz_tree_c, "chain": fuzz_chain}
