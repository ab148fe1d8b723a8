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
- ``gc_objects()`` deletes objects no page references any more, behind a fence;
  ``compact_objects()`` copies the pages of small objects into one.
"""
from __future__ import annotations

import functools
import time

from .db import Database
from .errors import DatabaseNotFound, Locked, MergeConflict
from .pages.objcache import ChunkCache
from .pages.objclient import CountingClient, ObjectClient, client_for_url
from .pages.objectio import ManifestConflict, ObjectIO
from .pages.manifest import DATA_PREFIX, INDEX_PREFIX
from .tree.btree import Tree
from .tree.merge import Conflict

SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "memory", "file")
MAX_RETRIES = 64   # rebases of one transaction before giving up with Locked


def is_url(path) -> bool:
    return isinstance(path, str) and "://" in path and path.split("://", 1)[0].lower() in SCHEMES


class LoggingTree(Tree):
    """A transaction's tree that also remembers the final value of every key it changed
    (None: deleted): what a rebase replays."""
    __slots__ = ("log",)

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.log: dict = {}

    def put(self, key, val):
        self.log[key] = val
        return super().put(key, val)

    def put_sorted(self, items):
        items = list(items)
        self.log.update(items)
        return super().put_sorted(items)

    def delete(self, key):
        self.log[key] = None
        return super().delete(key)


class _HeadView:
    """Stands in for the mapped meta slots of a file (Database._meta_q): indexing it
    answers the newest txn known, polling the store at most every refresh_interval."""
    __slots__ = ("io",)

    def __init__(self, io: ObjectIO):
        self.io = io

    def __getitem__(self, i):
        return self.io.poll()

    def release(self):
        pass


class ObjectDatabase(Database):
    def __new__(cls, *args, io=None, **kw):
        if io is not None:  # Versions.compact() builds its copy with type(self)(io=...):
            db = Database.__new__(Database)  # a file, not an object store
            db.__init__(io=io, **kw)
            return db
        return super().__new__(cls)

    def __init__(self, url: str | None = None, *, readonly: bool = False,
                 timeout: float | None = 5.0, page_size: int = 4096,
                 cache_nodes: int = 65536, codec=None, client: ObjectClient | None = None,
                 options: dict | None = None, cache_dir: str | None = None,
                 cache_bytes: int = 64 << 20, lease: float = 600.0,
                 refresh_interval: float = 1.0, checkpoint_every: int = 64,
                 durability: str = "sync", attempts: int = 6, backoff: float = 0.05):
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

    def _update(self, change, durable: bool | None = None, **kw):
        return super()._update(change, True, **kw)

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

    def __repr__(self):
        return f"<cowdb.Database {self.url} {'closed' if self._closed else 'open'}>"

    # ---- racing writers ---------------------------------------------------
    def write(self, *args, **kw):
        tx = super().write(*args, **kw)
        t = tx._tree
        tx._tree = LoggingTree(self._nodes, t.ref, t.count)
        return tx

    def _adopt_newest(self):
        """Adopt the newest manifest while this handle holds the writer lock."""
        self._io.refresh()
        with self._refresh_lock:
            slot, meta = self._store.candidates()[0]
            if meta.txn > self._state.txn:
                self._store.adopt(slot, meta)
                self._state = self._load_state(meta)  # with a fresh commit-record cache
        return self._state

    def _commit(self, tx) -> int:
        base, log = tx._head, tx._tree.log
        for _ in range(MAX_RETRIES):
            try:
                return super()._commit(tx)
            except ManifestConflict:
                pass
            st = self._adopt_newest()
            head = self._commit_record(st, self._branch_version(st, tx.branch))
            tx._tree, tx._head = self._rebase(base, head, log), head
        raise Locked(f"the commit lost {MAX_RETRIES} races for the head in a row; try again")

    def _rebase(self, base, head, log: dict) -> LoggingTree:
        """A tree at ``head`` with the changes ``log`` made to ``base``: three-way per key."""
        nodes = self._nodes
        old = Tree(nodes, base.root, base.count)
        theirs = Tree(nodes, head.root, head.count)
        tree = LoggingTree(nodes, head.root, head.count)
        tree.log = log
        conflicts = []
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
    def gc_objects(self, min_age: float | None = None) -> dict:
        """Delete the objects no page of the newest index references.

        First a fence: an empty txn whose manifest bumps the writer epoch, so a writer
        paused with an object not yet published loses its race for the next manifest and
        rewrites it. Only objects older than the fence (by the store's clock, less
        ``min_age``, default the lease) are candidates; index checkpoints are kept from
        the newest one."""
        io = self._io
        min_age = io.lease if min_age is None else min_age
        for _ in range(MAX_RETRIES):
            try:
                with self._writer():
                    io.bump_epoch = True
                    self._update(lambda cat, txn: None)
                break
            except ManifestConflict:
                self._io.refresh()
                self._reload()
        else:
            raise Locked(f"gc_objects() lost {MAX_RETRIES} races for the head in a row")
        with io.lock:  # a reader thread's poll may be adding to the index
            live = {io.objects[loc >> 40] for loc in io.index.values()}
        fence = time.time() - min_age
        deleted = kept = 0
        for prefix in (DATA_PREFIX, INDEX_PREFIX):
            for key, mtime in self._listing(prefix):
                if key in live or (io.checkpoint and key == io.checkpoint[1]):
                    kept += 1
                    continue
                if mtime is None or mtime > fence:
                    kept += 1
                    continue
                self.requests.delete(key)
                deleted += 1
        return {"deleted": deleted, "kept": kept, "epoch": io.epoch}

    def compact_objects(self, below: int = 1 << 20, budget: int = 64 << 20) -> dict:
        """Copy the pages of objects smaller than ``below`` bytes (up to ``budget`` bytes
        of pages) into one new object, published by an empty txn: reads then take fewer,
        larger objects, and ``gc_objects()`` deletes the small ones after the lease."""
        io = self._io
        for _ in range(MAX_RETRIES):
            try:
                with self._writer():
                    chosen = io.small_objects(below, budget)
                    if not chosen:
                        return {"objects": 0, "into": None}
                    io.compact = chosen
                    self._update(lambda cat, txn: None)
                    return {"objects": len(chosen), "into": io.last_object}
            except ManifestConflict:
                self._io.refresh()
                self._reload()
            finally:
                io.compact = set()
        raise Locked(f"compact_objects() lost {MAX_RETRIES} races for the head in a row")

    def _listing(self, prefix: str):
        inner = self.requests.inner
        store = getattr(inner, "store", None)
        if store is None:
            return [(k, 0.0) for k in self.requests.list_after(prefix, None)]
        import obstore
        out = []
        for batch in obstore.list(store, prefix=prefix, chunk_size=1000):
            out.extend((m["path"], m["last_modified"].timestamp()) for m in batch)
        return out


def _retrying(name: str):
    """A write operation re-run from the start when another writer won the txn."""
    base = getattr(Database, name)

    @functools.wraps(base)
    def method(self, *args, **kw):
        for _ in range(MAX_RETRIES):
            try:
                return base(self, *args, **kw)
            except ManifestConflict:
                self._io.refresh()
                self._reload()
        raise Locked(f"{name}() lost {MAX_RETRIES} races for the head in a row; try again")
    return method


for _name in ("tag", "delete_tag", "branch", "delete_branch", "restore", "merge", "revert",
              "set_retention", "gc"):
    setattr(ObjectDatabase, _name, _retrying(_name))
