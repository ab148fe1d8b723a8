"""Manifests: the numbered records that publish commits on an object store.

Manifest N (key ``manifest/`` + N as 20 digits) is written once, create-if-absent,
by the writer that won txn N. It carries the meta record of txn N (the same
bytes a file's meta slot would hold, see meta.py), the one object holding the
page images txn N wrote and where each run of pages sits in it, the newest
index checkpoint, the writer epoch, and a random nonce: every manifest's bytes
are unique, so a content hash (an S3 ETag) never names two of them, and a
writer that lost track of its put can tell its own manifest from a rival's.
Each manifest also carries the nonce of manifest N - 1 (``prev``), so a reader
can tell the chain from a manifest put by a writer that was paused while the
manifests before the newest checkpoint were deleted (see objdb.gc_objects).

Bytes: ``COWDBMF1``, a msgpack map, then the XXH3-64 of both (8 bytes, LE).
An index checkpoint (key ``index/``...) is ``COWDBIX1``, a msgpack map
{txn, objects: [[key, size]...], pages: bytes of u64 triples (page, object number,
offset)}, and its XXH3-64.
"""
from __future__ import annotations

import os
import time
from array import array
from dataclasses import dataclass, field

import msgpack
from xxhash import xxh3_64_intdigest

from ..errors import Corruption

MAGIC = b"COWDBMF1"
INDEX_MAGIC = b"COWDBIX1"
MANIFEST_PREFIX = "manifest/"
DATA_PREFIX = "data/"
INDEX_PREFIX = "index/"
MARK_PREFIX = "gc/"          # object gc: keys found unreferenced, deleted after a grace period


def manifest_key(txn: int) -> str:
    return f"{MANIFEST_PREFIX}{txn:020d}"


def txn_of_key(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    return int(name) if name.isdigit() and len(name) == 20 else None


@dataclass
class Manifest:
    txn: int
    meta: bytes                     # the meta record of txn (meta.py), pending bytes included
    page_size: int
    epoch: int = 1                  # bumped by object gc: fences writers paused across it
    object: str | None = None       # the object holding this txn's page images
    runs: list[tuple[int, int, int]] = field(default_factory=list)  # first page, bytes, offset
    checkpoint: tuple[int, str] | None = None  # (txn, key) of the newest index checkpoint
    time_ns: int = 0
    writer: str = ""
    nonce: bytes = b""
    prev: bytes = b""               # the nonce of manifest txn - 1: the chain links
    drop: list[tuple[int, int]] = field(default_factory=list)  # first page, pages: unmapped

    def encode(self) -> bytes:
        body = msgpack.packb({
            "txn": self.txn, "meta": self.meta, "ps": self.page_size, "epoch": self.epoch,
            "object": self.object, "runs": self.runs,
            "cp": list(self.checkpoint) if self.checkpoint else None,
            "time": self.time_ns or time.time_ns(), "writer": self.writer,
            "nonce": self.nonce or os.urandom(16), "prev": self.prev,
            "drop": self.drop}, use_bin_type=True)
        data = MAGIC + body
        return data + xxh3_64_intdigest(data).to_bytes(8, "little")


def decode(data: bytes, key: str = "manifest") -> Manifest:
    if len(data) < 16 or data[:8] != MAGIC:
        raise Corruption(f"{key} is not a cowdb manifest")
    if xxh3_64_intdigest(data[:-8]) != int.from_bytes(data[-8:], "little"):
        raise Corruption(f"{key} is damaged (checksum mismatch)")
    try:
        d = msgpack.unpackb(data[8:-8], raw=False)
        return Manifest(d["txn"], d["meta"], d["ps"], d["epoch"], d["object"],
                        [tuple(r) for r in d["runs"]],
                        tuple(d["cp"]) if d["cp"] else None, d["time"], d["writer"],
                        d["nonce"], d.get("prev", b""),
                        [tuple(r) for r in d.get("drop", ())])
    except (ValueError, KeyError, TypeError) as e:
        raise Corruption(f"{key} does not decode: {e}") from e


def encode_index(txn: int, objects: list[tuple[str, int]], index: dict[int, int],
                 shift: int) -> bytes:
    """A checkpoint of the page index: page -> (object number, offset)."""
    flat = array("Q")
    mask = (1 << shift) - 1
    for page, loc in index.items():
        flat.extend((page, loc >> shift, loc & mask))
    body = msgpack.packb({"txn": txn, "objects": [list(o) for o in objects],
                          "pages": flat.tobytes()},
                         use_bin_type=True)
    data = INDEX_MAGIC + body
    return data + xxh3_64_intdigest(data).to_bytes(8, "little")


def decode_index(data: bytes, key: str,
                 shift: int) -> tuple[int, list[tuple[str, int]], dict[int, int]]:
    if len(data) < 16 or data[:8] != INDEX_MAGIC or xxh3_64_intdigest(
            data[:-8]) != int.from_bytes(data[-8:], "little"):
        raise Corruption(f"index checkpoint {key} is damaged")
    d = msgpack.unpackb(data[8:-8], raw=False)
    flat = array("Q")
    flat.frombytes(d["pages"])
    it = iter(flat)
    index = {page: (obj << shift) | off for page, obj, off in zip(it, it, it)}
    return d["txn"], [tuple(o) for o in d["objects"]], index
