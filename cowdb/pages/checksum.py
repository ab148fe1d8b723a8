"""Page checksums: XXH3-64 over the image, stored in its first 8 bytes.

XXH3 hashes a 4 KiB page in well under a microsecond, so every read is
verified. A parent also keeps each child's checksum (a Merkle tree), which
lets recovery find a torn commit. Checksums detect damage only: XXH3 is not
collision resistant, so equality of subtrees is decided by page reference
(see "Threat model" in docs/format.md). The header they cover is in page.py.
"""
from struct import Struct

from xxhash import xxh3_64_intdigest as xxh3_64_intdigest  # (tree/btree.py binds it)

from ..errors import Corruption

# The header layout and page types live in page.py; imported from here too (they did).
from .page import BRANCH as BRANCH
from .page import BRANCH_DELTA as BRANCH_DELTA
from .page import FREELIST as FREELIST
from .page import HEADER as HEADER
from .page import HEADER_SIZE as HEADER_SIZE
from .page import LAST_TYPE
from .page import LEAF as LEAF
from .page import LEAF_DELTA as LEAF_DELTA
from .page import OVERFLOW as OVERFLOW

_SUM = Struct("<Q")


def seal(image: bytearray) -> int:
    """Fill in the checksum of an image whose header is otherwise complete."""
    s = xxh3_64_intdigest(memoryview(image)[8:])
    _SUM.pack_into(image, 0, s)
    return s


def verify(data: bytes | memoryview, ref: int) -> int:
    """Check an image read from page ``ref``; return its checksum.

    Raises :class:`Corruption` naming the page on any mismatch.
    """
    if len(data) < HEADER_SIZE:
        raise Corruption(f"page {ref} is truncated ({len(data)} bytes)", ref)
    s: int  # (a declaration: no cost at run time)
    s, kind, _flags, _n, length, _txn = HEADER.unpack_from(data, 0)
    if length != len(data) or not LEAF <= kind <= LAST_TYPE:
        raise Corruption(f"page {ref} has a bad header (type {kind}, length {length})", ref)
    if xxh3_64_intdigest(memoryview(data)[8:]) != s:
        raise Corruption(f"page {ref} failed its checksum", ref,
                         advice="the file is damaged (run `cowdb check` and restore from a "
                                "backup)")
    return s
