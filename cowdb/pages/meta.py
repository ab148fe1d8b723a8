"""The meta record: the one small write that publishes a commit.

Two slots, at the start of page 0 and page 1. A commit writes the slot that
does not hold the last durable commit, so a torn meta write can only damage
a record that is not needed. On open the newest slot whose checksum verifies
and whose new pages verify is used (see docs/format.md).

A record may carry ``pending`` bytes after it: catalog changes (ref moves)
not yet written into the catalog tree. Naming a version then costs this one
write and no page (see history/catalog.py); the checksum covers them.
"""
from struct import Struct
from typing import NamedTuple

from xxhash import xxh3_64_intdigest

MAGIC = b"COWDB\x00\r\n"
FORMAT_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)  # version 1: the same record, never with pending bytes;
                                     # versions 1 and 2: flags (0) where 3 has the unit;
                                     # version 4: the record of 3, delta images may follow;
                                     # version 5: the record of 4, the catalog's leaves too
                                     # may be delta images (a version-4 writer would free
                                     # them by their full size)
_META = Struct("<8sIIQQQQQQQQQQQQ")  # see docs/format.md, "Meta record"
_VERSION_PAGE = Struct("<II")         # its format version and page size, at offset 8
META_SIZE = _META.size + 8            # + checksum; pending bytes follow
PENDING_MAX = 1024                    # bytes of pending changes a record of versions 2 to 4
                                      # may carry; version 5: the rest of a 4 KiB page (a
                                      # commit rewrites them all: no more with larger pages)
PAGE_SIZES = tuple(1 << b for b in range(9, 17))  # a record names one: 512 to 65536 bytes


class RootRef(NamedTuple):
    """Where a tree or a page run lives: first page, checksum of its image, writing txn.
    (A NamedTuple, as Meta: a frozen dataclass took ~0.5 us to construct, and a version's
    first lookup, ``db.at(v)``, builds one.)"""
    page: int
    checksum: int
    txn: int


EMPTY = RootRef(0, 0, 0)


class Meta(NamedTuple):
    """One record (immutable; a NamedTuple, because a frozen dataclass takes ~2 us to
    construct and a ref change builds one per call)."""
    txn: int              # strictly increasing per published meta record
    durable_base: int     # every txn <= this was durable before this record was written
    page_size: int
    catalog: RootRef      # root of the catalog tree (commits, refs, settings)
    freelist: RootRef     # page run holding the free page lists
    freelist_len: int     # bytes in that run's image
    page_count: int       # units in use up to the high-water mark (incl. the meta pages)
    unit: int = 0         # bytes per allocation unit (0 in versions 1 and 2: the page size)
    pending: bytes = b""  # catalog changes not in the catalog tree yet (history/catalog.py)
    version: int = FORMAT_VERSION  # the format version the record was read as (written:
                                   # always FORMAT_VERSION; `cowdb upgrade` rewrites older)

    def encode(self) -> bytes:
        body = _META.pack(MAGIC, FORMAT_VERSION, self.page_size, self.txn, self.durable_base,
                          self.catalog.page, self.catalog.checksum, self.catalog.txn,
                          self.freelist.page, self.freelist.checksum, self.freelist.txn,
                          self.freelist_len, self.page_count, self.unit or self.page_size,
                          len(self.pending))
        checksum = xxh3_64_intdigest(body + self.pending).to_bytes(8, "little")
        return body + checksum + self.pending


class BadMeta(Exception):
    """A slot that does not hold a valid record; ``foreign`` if not even the magic matches."""

    def __init__(self, why: str, foreign: bool = False, version: int | None = None):
        super().__init__(why)
        self.foreign = foreign
        self.version = version


def pending_max(version: int, page_size: int) -> int:
    """The most pending bytes a record of a format version may carry: none in version 1,
    1024 in versions 2 to 4, in version 5 the rest of its page up to a 4 KiB one
    (min(page size, 4096) - META_SIZE)."""
    if version < 2:
        return 0
    return min(page_size, 4096) - META_SIZE if version >= 5 else PENDING_MAX


def pending_length(head: bytes) -> int:
    """How many pending bytes follow the record that ``head`` (its first META_SIZE bytes)
    begins, as it claims: unverified, 0 if implausible (decode then rejects the record)."""
    if len(head) < META_SIZE or head[:8] != MAGIC:
        return 0
    version, page_size = _VERSION_PAGE.unpack_from(head, 8)
    if version not in READABLE_VERSIONS or page_size not in PAGE_SIZES:
        return 0
    n = int.from_bytes(head[_META.size - 8:_META.size], "little")
    return n if n <= pending_max(version, page_size) else 0


def decode(data: bytes) -> Meta:
    """A record from its bytes: META_SIZE, then the pending bytes it claims."""
    if len(data) < META_SIZE or data[:8] != MAGIC:
        raise BadMeta("no cowdb magic", foreign=True)
    (_magic, version, page_size, txn, base, cpage, csum, ctxn, fpage, fsum, ftxn, flen,
     count, unit, npending) = _META.unpack_from(data, 0)
    if version not in READABLE_VERSIONS:
        raise BadMeta(f"format version {version}", version=version)
    if page_size not in PAGE_SIZES:
        raise BadMeta(f"bad page size {page_size}")
    if npending > pending_max(version, page_size) or len(data) < META_SIZE + npending:
        raise BadMeta(f"bad pending length {npending}")
    pending = bytes(data[META_SIZE:META_SIZE + npending])
    if xxh3_64_intdigest(data[:_META.size] + pending) != int.from_bytes(
            data[_META.size:META_SIZE], "little"):
        raise BadMeta("checksum mismatch")
    if version < 3:
        unit = page_size
    elif not unit or unit & (unit - 1) or unit > page_size or (2 * page_size) % unit:
        raise BadMeta(f"bad unit size {unit}")
    return Meta(txn, base, page_size, RootRef(cpage, csum, ctxn), RootRef(fpage, fsum, ftxn),
                flen, count, unit, pending, version)
