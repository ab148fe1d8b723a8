"""The meta record: the one small write that publishes a commit.

Two slots, at the start of page 0 and page 1. A commit writes the slot that
does not hold the last durable commit, so a torn meta write can only damage
a record that is not needed. On open the newest slot whose checksum verifies
and whose new pages verify is used (see docs/format.md).
"""
from dataclasses import dataclass
from struct import Struct

from xxhash import xxh3_64_intdigest

MAGIC = b"COWDB\x00\r\n"
FORMAT_VERSION = 1
_META = Struct("<8sIIQQQQQQQQQQQQ")  # see docs/format.md, "Meta record"
META_SIZE = _META.size + 8            # + checksum


@dataclass(frozen=True, slots=True)
class RootRef:
    """Where a tree or a page run lives: first page, checksum of its image, writing txn."""
    page: int
    checksum: int
    txn: int


EMPTY = RootRef(0, 0, 0)


@dataclass(frozen=True, slots=True)
class Meta:
    txn: int              # strictly increasing per published meta record
    durable_base: int     # every txn <= this was durable before this record was written
    page_size: int
    catalog: RootRef      # root of the catalog tree (commits, refs, settings)
    freelist: RootRef     # page run holding the free page lists
    freelist_len: int     # bytes in that run's image
    page_count: int       # pages in use up to the high-water mark (incl. the two meta pages)
    flags: int = 0

    def encode(self) -> bytes:
        body = _META.pack(MAGIC, FORMAT_VERSION, self.page_size, self.txn, self.durable_base,
                          self.catalog.page, self.catalog.checksum, self.catalog.txn,
                          self.freelist.page, self.freelist.checksum, self.freelist.txn,
                          self.freelist_len, self.page_count, self.flags, 0)
        return body + xxh3_64_intdigest(body).to_bytes(8, "little")


class BadMeta(Exception):
    """A slot that does not hold a valid record; ``foreign`` if not even the magic matches."""

    def __init__(self, why: str, foreign: bool = False, version: int | None = None):
        super().__init__(why)
        self.foreign = foreign
        self.version = version


def decode(data: bytes) -> Meta:
    if len(data) < META_SIZE or data[:8] != MAGIC:
        raise BadMeta("no cowdb magic", foreign=True)
    (_magic, version, page_size, txn, base, cpage, csum, ctxn, fpage, fsum, ftxn, flen,
     count, flags, _res) = _META.unpack_from(data, 0)
    if version != FORMAT_VERSION:
        raise BadMeta(f"format version {version}", version=version)
    if xxh3_64_intdigest(data[:_META.size]) != int.from_bytes(data[_META.size:META_SIZE], "little"):
        raise BadMeta("checksum mismatch")
    return Meta(txn, base, page_size, RootRef(cpage, csum, ctxn), RootRef(fpage, fsum, ftxn),
                flen, count, flags)
