"""Fuzz targets for the decoders of what cowdb reads back from disk (issue 18).

Each target takes arbitrary bytes and asserts the decoder's contract: the bytes either
decode, or the decoder raises the error its caller turns into ``cowdb.errors.Corruption``
(or Corruption itself): never another exception, never a crash. ``run.py`` drives them
under atheris (coverage-guided); tests/test_fuzz_regressions.py replays every input saved
in tests/fuzz/regressions/ through the same targets.
"""
from bisect import bisect_left
from struct import error as struct_error

from cowdb.errors import Corruption
from cowdb.history.catalog import Catalog, decode_pending
from cowdb.pages import meta
from cowdb.pages.checksum import HEADER, HEADER_SIZE, seal, verify
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




TARGETS = {"node": fuzz_node, "meta": fuzz_meta, "catalog": fuzz_catalog,
           "freelist": fuzz_freelist, "tree_c": fuzz_tree_c}
