"""The database on an object store: what the Database must know beyond ObjectIO.

``cowdb.open("s3://bucket/prefix")`` (or gs://, az://, file://, memory://) opens
an ``ObjectDatabase``: the same Database, over an ``ObjectIO`` (pages/objectio.py),
with these differences, each in its own method below:

- no lock file: the writer lock is the in-process one (``Shared`` without a
  file); writers in other processes and on other machines are not locked out
  but raced, and a race is settled by the create-if-absent manifest put;
- the loser of a race (``ManifestConflict``) adopts the new head and replays its
  transaction's key-level changes onto it, three-way against the version the
  transaction started from (``_rebase``), then retries; it raises
  ``MergeConflict`` only when a key it changed was changed differently by the
  winner. Other write operations (tags, branches, merge, gc...) are re-run;
- other processes' commits are noticed by polling (at most every
  ``refresh_interval`` seconds, or at once with ``refresh()``);
- every commit is durable (a manifest PUT that returned is), so there is no
  checkpoint on close;
- pages are reused only after the lease (ObjectIO.reuse_bound);
- ``gc_objects()`` deletes objects no page references any more (and manifests
  below the newest index checkpoint), behind a fence and after a grace period;
  ``compact_objects()`` copies the pages of small objects into one; ``gc()`` runs
  both after the usual version gc.
"""
from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import msgpack

from .db import Database
from .errors import Corruption, DatabaseNotFound, Locked, MergeConflict, WriteFailed
from .pages.objcache import ChunkCache
from .pages.objclient import CountingClient, ObjectClient, ObjectNotFound, client_for_url
from .pages.objectio import SHIFT, ManifestConflict, ObjectIO
from .pages.manifest import (DATA_PREFIX, INDEX_PREFIX, MANIFEST_PREFIX, MARK_PREFIX,
                             manifest_key, txn_of_key)
from .upkeep import GcReport
from .tree.btree import Tree
from .tree.merge import Conflict

if TYPE_CHECKING:
    from .db import _State
    from .history.catalog import Catalog
    from .history.commits import Commit
    from .pages.io import BlockIO
    from .transaction import Transaction

T = TypeVar("T")

SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "memory", "file")
MAX_RETRIES = 64   # rebases of one transaction before giving up with Locked


def is_url(path: object) -> TypeGuard[str]:
    return isinstance(path, str) and "://" in path and path.split("://", 1)[0].lower() in SCHEMES


def looks_like_url(path: object) -> bool:
    """``scheme://...`` with a scheme of two letters or more (not ``C://``)."""
    import re
    return isinstance(path, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]+://", path) is not None


class LoggingTree(Tree):
    """A transaction's tree that also remembers the final value of every key it changed
    (None: deleted): what a rebase replays."""
    __slots__ = ("log",)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.log: dict[bytes, bytes | None] = {}

    def put(self, key: bytes, val: bytes) -> bool:
        self.log[key] = val
        return super().put(key, val)

    def put_sorted(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        items = list(items)
        self.log.update(items)
        return super().put_sorted(items)

    def delete(self, key: bytes) -> bool:
        self.log[key] = None
        return super().delete(key)


class _HeadView:
    """Stands in for the mapped meta slots of a file (Database._meta_q): indexing it
    answers the newest txn known, polling the store at most every refresh_interval."""
    __slots__ = ("io",)

    def __init__(self, io: ObjectIO) -> None:
        self.io = io

    def __getitem__(self, i: int) -> int:
        return self.io.poll()

    def release(self) -> None:
        pass


class ObjectDatabase(Database):
    _io: ObjectIO
    url: str
    requests: CountingClient

    def __new__(cls, *args: Any, io: BlockIO | None = None, **kw: Any) -> ObjectDatabase:
        if io is not None:  # Versions.compact() builds its copy with type(self)(io=...):
            db = Database.__new__(Database)  # a file, not an object store
            Database.__init__(db, io=io, **kw)
            return db  # type: ignore[return-value]  # (a Database: __init__ is not called)
        return super().__new__(cls)

    def __init__(self, url: str | None = None, *, readonly: bool = False,
                 timeout: float | None = 5.0, page_size: int = 4096,
                 cache_nodes: int = 65536, codec: Any = None,
                 client: ObjectClient | None = None, options: dict[str, Any] | None = None,
                 cache_dir: str | None = None,
                 cache_bytes: int = 64 << 20, lease: float = 600.0,
                 refresh_interval: float = 1.0, checkpoint_every: int = 64,
                 durability: str = "sync", attempts: int = 6, backoff: float = 0.05) -> None:
        if client is None:
            client, url = client_for_url(url, options)
        self.url = url or "object store"
        self.requests = CountingClient(client)
        io = ObjectIO(self.requests, page_size=page_size,
                      cache=ChunkCache(cache_bytes, cache_dir), lease=lease,
                      refresh_interval=refresh_interval, checkpoint_every=checkpoint_every,
                      attempts=attempts, backoff=backoff)
        if io.size() == 0 and readonly:
            raise DatabaseNotFound(f"no database at {self.url}; open it without readonly=True "
                                   f"to create one")
        for attempt in range(8):
            try:
                super().__init__(None, readonly=readonly, durability="sync", timeout=timeout,
                                 page_size=page_size, cache_nodes=cache_nodes, io=io,
                                 codec=codec)
                return
            except ManifestConflict:  # another process created it at the same moment
                time.sleep(0.01 * (attempt + 1))
                io.meta_bytes = b""
                io.refresh()
        raise Locked(f"could not open {self.url}: its first commits kept racing")

    # ---- what differs from a file ---------------------------------------
    def _map_meta(self) -> None:
        self._meta_map = None
        self._meta_q = _HeadView(self._io)
        self._slot1_txn = 0

    def _checkpoint(self) -> None:
        pass  # every commit is durable already

    def _reuse_bound(self) -> int:
        return min(super()._reuse_bound(), self._io.reuse_bound())

    def _update(self, change: Callable[[Catalog, int], T], durable: bool | None = None,
                forget: bool = False) -> T:
        return super()._update(change, True, forget)

    def _after_fork_in_child(self) -> None:
        """obstore's clients do not survive fork(): a forked child must open its own handle
        (or use the spawn start method)."""
        super()._after_fork_in_child()
        if not self._closed:
            self._poison(f"{self.url} was opened before this process was forked, and the "
                         f"object-store client does not survive fork(): open it again here")

    def refresh(self) -> int:
        """Look for other writers' commits now; returns the newest version."""
        self._check_open()
        self._io.refresh()
        return self.version

    def __repr__(self) -> str:
        return f"<cowdb.Database {self.url} {'closed' if self._closed else 'open'}>"

    # ---- racing writers ---------------------------------------------------
    def write(self, *args: Any, **kw: Any) -> Transaction:
        tx = super().write(*args, **kw)
        t = tx._tree
        assert t is not None  # (just opened)
        tx._tree = LoggingTree(self._nodes, t.ref, t.count)
        return tx

    def _adopt_newest(self) -> _State:
        """Adopt the newest manifest while this handle holds the writer lock."""
        self._io.refresh()
        with self._refresh_lock:
            slot, meta = self._store.candidates()[0]
            if meta.txn > self._state.txn:
                self._store.adopt(slot, meta)
                self._state = self._load_state(meta)  # with a fresh commit-record cache
        return self._state

    def _commit(self, tx: Transaction) -> int:
        tree = tx._tree
        assert isinstance(tree, LoggingTree)  # (write() made it)
        base, log = tx._head, tree.log
        for _ in range(MAX_RETRIES):
            try:
                return super()._commit(tx)
            except ManifestConflict:
                pass
            st = self._adopt_newest()
            head = self._commit_record(st, self._branch_version(st, tx.branch))
            tx._tree, tx._head = self._rebase(base, head, log), head
        raise Locked(f"the commit lost {MAX_RETRIES} races for the head in a row; try again")

    def _rebase(self, base: Commit, head: Commit, log: dict[bytes, bytes | None]
                ) -> LoggingTree:
        """A tree at ``head`` with the changes ``log`` made to ``base``: three-way per key."""
        nodes = self._nodes
        old = Tree(nodes, base.root, base.count)
        theirs = Tree(nodes, head.root, head.count)
        tree = LoggingTree(nodes, head.root, head.count)
        tree.log = log
        conflicts: list[Conflict] = []
        for key in sorted(log):
            ours, b = log[key], old.get(key)
            if ours == b:
                continue               # put back as it was: no change of ours
            t = theirs.get(key)
            if t == ours:
                continue               # both made the same change
            if t != b:
                conflicts.append(Conflict(key, b, ours, t))
                continue
            if ours is None:
                Tree.delete(tree, key)
            else:
                Tree.put(tree, key, ours)
        if conflicts:
            raise MergeConflict(f"{len(conflicts)} keys this transaction changed were changed "
                                f"differently by a commit of another writer (version "
                                f"{head.version}); nothing was committed", conflicts)
        return tree

    # ---- object gc ----------------------------------------------------------
    def gc(self) -> ObjectGcReport:
        """Database.gc (drop versions, free their pages), then the object store's own:
        compact the small objects (``compact_objects``) and delete, after the grace
        period of ``gc_objects`` (default: the lease), what nothing references."""
        report = _gc_versions(self)
        compacted = self.compact_objects()
        objects = self.gc_objects()
        return ObjectGcReport(**{f: getattr(report, f) for f in GcReport.__dataclass_fields__},
                              objects_compacted=compacted["objects"],
                              objects_marked=objects["marked"],
                              objects_deleted=objects["deleted"])

    def gc_objects(self, min_age: float | None = None) -> dict[str, int]:
        """Delete, after a grace period, the objects nothing references any more.

        First a fence: an empty txn whose manifest bumps the writer epoch, so a writer
        paused with an object not yet published loses its race for the next manifest and
        rewrites it. Then the candidates: data objects and index checkpoints no page of
        the newest index references (older than the fence, by the store's clock), and
        manifests below the newest index checkpoint (a cold open starts from it). They
        are written down in a mark (``gc/<time>-...``) and deleted by a later call, once
        the mark is ``min_age`` seconds old (default: the lease): a reader on another
        machine whose index is older than the gc keeps reading what it knows for that
        long. ``min_age=0`` deletes at once (tests, a single process)."""
        io = self._io
        min_age = io.lease if min_age is None else min_age
        for _ in range(MAX_RETRIES):
            try:
                with self._writer():
                    io.bump_epoch = True
                    self._update(lambda cat, txn: None)
                    fence = io.head
                break
            except ManifestConflict:
                self._io.refresh()
                self._reload()
        else:
            raise Locked(f"gc_objects() lost {MAX_RETRIES} races for the head in a row")
        try:
            return self._collect(fence, min_age)
        except OSError as e:   # the store failed through every retry: nothing is lost,
            raise WriteFailed(f"object gc stopped: {e}; run it again") from e  # gc resumes

    def _collect(self, fence: int, min_age: float) -> dict[str, int]:
        io, req = self._io, self.requests
        with io.lock:  # a reader thread's poll may be adding to the index
            live = {io.objects[loc >> SHIFT] for loc in io.index.values()}
            cp = io.checkpoint
        if cp:
            live.add(cp[1])
        listed = {p: io._retry(req.list_info, p)
                  for p in (MANIFEST_PREFIX, DATA_PREFIX, INDEX_PREFIX, MARK_PREFIX)}
        fence_time = dict(listed[MANIFEST_PREFIX]).get(manifest_key(fence)) or time.time()
        doomed = {key for p in (DATA_PREFIX, INDEX_PREFIX) for key, mtime in listed[p]
                  if key not in live and (mtime is None or mtime <= fence_time)}
        floor = cp[0] if cp else 0
        doomed.update(key for key, _ in listed[MANIFEST_PREFIX]
                      if (txn_of_key(key) or floor) < floor)
        due: set[str] = set()
        marks: list[str] = []
        pending: set[str] = set()
        now = time.time()
        if min_age <= 0:
            due = doomed
        else:
            for mark, _ in listed[MARK_PREFIX]:
                keys = self._read_mark(mark)
                if keys is None:
                    continue
                if now - _mark_time(mark) >= min_age:
                    due.update(keys)
                    marks.append(mark)
                else:
                    pending.update(keys)
            new = doomed - due - pending
            if new:
                key = f"{MARK_PREFIX}{time.time_ns():020d}-{io.writer}-{os.urandom(4).hex()}"
                io._retry(req.put, key, msgpack.packb(sorted(new)))
            pending |= new
        deleted = 0
        for key in sorted(due):      # manifests in ascending order: the chain stays a chain
            if key not in live:
                io._retry(req.delete, key)
                deleted += 1
        for mark in marks:
            io._retry(req.delete, mark)
        total = sum(len(v) for p, v in listed.items() if p != MARK_PREFIX)
        return {"deleted": deleted, "marked": len(pending), "kept": total - deleted,
                "epoch": io.epoch}

    def _dead_pages(self) -> set[int]:
        """Pages no reader may read any more: free since a txn at or before the reuse
        bound (the lease, and this process's readers), or past the end of the database."""
        store, io = self._store, self._io
        fl, bound = store.freelist, self._reuse_bound()
        dead: set[int] = set()
        for runs in [fl.pool] + [r for t, r in fl.pending.items() if t <= bound]:
            for start, n in runs:
                dead.update(range(start, start + n))
        with io.lock:
            dead.update(p for p in io.index if p >= store.page_count)
        return dead

    def _read_mark(self, key: str) -> list[str] | None:
        try:
            return list(msgpack.unpackb(self._io._retry(self.requests.get, key)))
        except ObjectNotFound:
            return None        # another process's gc took it meanwhile
        except (ValueError, TypeError) as e:
            raise Corruption(f"{key} (an object gc mark) does not decode: {e}") from e

    def compact_objects(self, below: int = 1 << 20, budget: int = 64 << 20,
                        sparse: float = 0.5) -> dict[str, Any]:
        """Copy the pages of objects smaller than ``below`` bytes, and of objects whose
        pages still in use fill less than ``sparse`` of them (up to ``budget`` bytes of
        pages), into one new object, published by an empty txn: reads then take fewer,
        larger objects, the bucket holds about what the pages in use need, and
        ``gc_objects()`` deletes the old objects after the grace period."""
        io = self._io
        for _ in range(MAX_RETRIES):
            try:
                with self._writer():
                    dead = self._dead_pages()
                    chosen = io.small_objects(below, budget, sparse, dead)
                    if not chosen:
                        return {"objects": 0, "into": None}
                    io.compact, io.dead = chosen, dead
                    self._update(lambda cat, txn: None)
                    return {"objects": len(chosen), "into": io.last_object}
            except ManifestConflict:
                self._io.refresh()
                self._reload()
            finally:
                io.compact, io.dead = set(), set()
        raise Locked(f"compact_objects() lost {MAX_RETRIES} races for the head in a row")



def _mark_time(key: str) -> float:
    name = key[len(MARK_PREFIX):].split("-", 1)[0]
    return int(name) / 1e9 if name.isdigit() else 0.0


@dataclass(slots=True)
class ObjectGcReport(GcReport):
    """GcReport and what gc() did to the objects of the store."""
    objects_compacted: int = 0   # small objects whose pages were copied into one
    objects_marked: int = 0      # unreferenced objects waiting for their grace period
    objects_deleted: int = 0     # objects (and manifests) deleted


def _retrying(name: str) -> Callable[..., Any]:
    """A write operation re-run from the start when another writer won the txn."""
    base = getattr(Database, name)

    @functools.wraps(base)
    def method(self: ObjectDatabase, *args: Any, **kw: Any) -> Any:
        for _ in range(MAX_RETRIES):
            try:
                return base(self, *args, **kw)
            except ManifestConflict:
                self._io.refresh()
                self._reload()
        raise Locked(f"{name}() lost {MAX_RETRIES} races for the head in a row; try again")
    return method


for _name in ("tag", "delete_tag", "branch", "delete_branch", "restore", "merge", "revert",
              "set_retention"):
    setattr(ObjectDatabase, _name, _retrying(_name))
_gc_versions = _retrying("gc")
