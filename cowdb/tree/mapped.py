"""Point reads inside page images: the descent of ``btree.py_get`` over a PageMap's
mapped bytes, with no node objects built (see cowdb/pages/mapfile.py for why).

``map_get(pagemap, page, txn, key)`` starts at the root image (page, txn) and returns
the value under ``key`` (bytes, or the (page, length, checksum, txn) tuple of an
overflow value), or None. The images come from ``pagemap.image`` the first time a
(page, txn) is met in this process, and from the map directly once it is in
``pagemap.verified``. ``_tree_c.map_get`` is this function in C (and ``_tree_c.Walk``,
the scans of cursor.py, walks the same images leaf by leaf); the leaf and branch layouts
are in node.py and docs/format.md.

A damaged image that still passed its checksum (a crafted one) raises Corruption, never
reads outside the image.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate
from struct import unpack_from
from typing import TYPE_CHECKING

from ..errors import Corruption
from ..pages.checksum import BRANCH, HEADER, HEADER_SIZE, LEAF
from .node import OVERFLOW_FLAG, OVERFLOW_REF_SIZE

if TYPE_CHECKING:
    from ..pages.mapfile import PageMap


def _keys(data: bytes | memoryview, n: int, at: int, base: int, length: int, page: int
          ) -> tuple[list[bytes], int]:
    """The n keys of an image, whose u16 lengths start at ``at`` and bytes at ``base``."""
    ko = list(accumulate(unpack_from(f"<{n}H", data, at), initial=base))
    if ko[-1] > length:
        raise Corruption(f"page {page} does not decode as a tree node: keys past its end", page)
    return [bytes(data[a:b]) for a, b in zip(ko, ko[1:])], ko[-1]


def image_of(pagemap: PageMap, page: int, sumv: int, txn: int) -> bytes | memoryview:
    """The image of (page, txn): straight from the map once verified in this process and
    while the file still covers it (checked before the map is touched: a file truncated
    under the map then reads through ``pagemap.image``, which raises, not SIGBUS)."""
    if pagemap.verified.get(page) == txn:
        start = page * pagemap.unit
        if pagemap.covers(start + HEADER_SIZE):
            buf = pagemap.buf
            end = start + HEADER.unpack_from(buf, start)[4]
            if pagemap.covers(end):
                return memoryview(buf)[start:end]
    return pagemap.image(page, sumv, txn)


def py_map_get(pagemap: PageMap, page: int, sumv: int, txn: int, key: bytes
               ) -> bytes | tuple[int, int, int, int] | None:
    while True:
        data = image_of(pagemap, page, sumv, txn)
        _s, kind, _f, n, length, _t = HEADER.unpack_from(data, 0)
        if kind == BRANCH and n:
            if HEADER_SIZE + 34 * n > length:
                raise Corruption(f"page {page} does not decode as a tree node", page)
            keys, _end = _keys(data, n, HEADER_SIZE, HEADER_SIZE + 34 * n, length, page)
            i = max(bisect_right(keys, key) - 1, 0)
            page, _count, sumv, txn = unpack_from("<QQQQ", data, HEADER_SIZE + 2 * n + 32 * i)
            continue
        if kind != LEAF:
            raise Corruption(f"page {page} is not a tree node (type {kind}, {n} entries)", page)
        if HEADER_SIZE + 6 * n > length:
            raise Corruption(f"page {page} does not decode as a tree node", page)
        keys, pos = _keys(data, n, HEADER_SIZE, HEADER_SIZE + 6 * n, length, page)
        i = bisect_left(keys, key)
        if i == n or keys[i] != key:
            return None
        vlens = unpack_from(f"<{i + 1}I", data, HEADER_SIZE + 2 * n)
        pos += sum(OVERFLOW_REF_SIZE if v & OVERFLOW_FLAG else v for v in vlens[:i])
        vl = vlens[i]
        size = OVERFLOW_REF_SIZE if vl & OVERFLOW_FLAG else vl
        if pos + size > length:
            raise Corruption(f"page {page} does not decode as a tree node: values past its "
                             f"end", page)
        if vl & OVERFLOW_FLAG:
            return unpack_from("<QQQQ", data, pos)
        return bytes(data[pos:pos + vl])
