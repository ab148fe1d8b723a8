"""cowdb: a copy-on-write, versioned, branching key-value store.

    import cowdb
    with cowdb.open("data.cow") as db:
        with db.write(message="first") as tx:
            tx[b"hello"] = b"world"
        with db.read() as snap:
            snap[b"hello"]
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors

if TYPE_CHECKING:
    from .db import Database
    from .engine import StrPath
    from .history.commits import Commit, CommitStats
    from .pages.io import BlockIO
    from .snapshot import Snapshot
    from .transaction import Transaction

# The engine (and msgpack, xxhash, fcntl with it) is imported on first use, not
# by ``import cowdb``: ``cowdb.pds`` runs this file too, and must need only the
# standard library (see tests/pds/test_pds_standalone.py).
_LAZY = {"Database": "db", "Snapshot": "snapshot", "Transaction": "transaction",
         "Commit": "history.commits", "CommitStats": "history.commits"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cowdb' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["open", "Database", "Snapshot", "Transaction", "Commit", "CommitStats", "errors"]
__version__ = "0.1.0"


def open(path: StrPath | None = None, *, readonly: bool = False, durability: str = "sync",
         timeout: float | None = 5.0, page_size: int = 4096, cache_nodes: int = 65536,
         io: BlockIO | None = None, codec: Any = None, recover: bool = False,
         **store_options: Any) -> Database:
    """Open (or create) the database at ``path``; no path: a new in-memory database.

    ``durability="sync"`` makes a commit durable when it returns; ``"none"``
    skips the fsync (the file stays consistent; the newest commits may be
    lost on power failure). ``timeout`` bounds the wait for the writer lock.
    ``codec`` stores values as "bytes" (default), "json", "msgpack", or through
    any object with encode(value) -> bytes and decode(bytes) -> value. A new file
    records its codec: opening it later without ``codec=`` uses that one, and
    another one is refused (CodecError).
    ``recover=True`` opens a damaged file at its newest version whose whole tree
    verifies (rewriting its catalog and free list); ``db.recovery`` then tells which
    versions were lost (see cowdb.recovery).

    ``path`` may be a URL: ``s3://bucket/prefix``, ``gs://``, ``az://``,
    ``file:///folder`` or ``memory://name`` open the database on an object store
    (docs/object-store.md; needs ``pip install 'cowdb[s3]'``), and take these
    ``store_options``: ``options`` (dict for obstore: endpoint, region, keys...),
    ``cache_dir``, ``cache_bytes``, ``lease``, ``refresh_interval``, ``client``.
    """
    from .objdb import ObjectDatabase, is_url, looks_like_url
    if looks_like_url(path) and not is_url(path):
        from .errors import InvalidValue
        raise InvalidValue(f"unsupported URL scheme in {path!r}: use s3://, gs://, az://, "
                           f"file:// or memory:// (or a file path)")
    if is_url(path):
        if recover:
            from .errors import InvalidValue
            raise InvalidValue("recover=True applies to a file; an object store's manifests "
                               "name only verified commits: open the URL without it")
        return ObjectDatabase(path, readonly=readonly, timeout=timeout, page_size=page_size,
                              cache_nodes=cache_nodes, codec=codec, durability=durability,
                              **store_options)
    if store_options:
        raise TypeError(f"unexpected options {sorted(store_options)} (they apply to "
                        f"object-store URLs only)")
    from .db import Database
    return Database(path, readonly=readonly, durability=durability, timeout=timeout,
                    page_size=page_size, cache_nodes=cache_nodes, io=io, codec=codec,
                    recover=recover)
