"""Database: opening and recovery, the writer, readers, and commits.

State is published the LMDB way: ``self._state`` is an immutable record of
the newest commit (txn, catalog root, head of main), swapped in one
assignment after a commit's meta record is written. A reader copies that
reference and pins its txn: O(1), no lock. A writer holds the writer lock
(threads and processes) from ``write()`` to commit or abort.

Threads share one handle (docs/concepts/multiprocess.md lists what guards
what). The meta record of a commit reaches the file before ``_state`` moves;
a reader that sees it in that window must not take it for another process's
commit: while this handle holds the writer lock (``_writing``) no other
process can commit, so a newer record is this handle's own, and the reader
keeps the published state. Only a handle that is not writing adopts
(``_reload``) another process's commit, so the writer's page count and free
list are never swapped under it.
"""
from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Self, TypeVar

from .check import CheckReport, check_state
from .checks import check_text, check_timeout
from .codecs import codec_name, get_codec, settle_codec
from .engine import Resolve, StrPath, VersionRef
from .errors import (
    Corruption,
    CowdbError,
    DatabaseClosed,
    DatabaseNotFound,
    InvalidType,
    InvalidValue,
    NotACowdbFile,
    ReadOnly,
    RefNotFound,
    VersionNotFound,
    VersionReclaimed,
    WriteFailed,
)
from .history.catalog import BRANCH, MAIN_HEAD, TAG, Catalog, decode_pending
from .history.commits import Commit, CommitRoot, CommitStats, now_ns, to_datetime, to_ns
from .history.retention import Retention
from .locks import close_shared, open_shared
from .pages.freelist import FreeList
from .pages.io import BlockIO, MemoryIO, OsFileIO, new_file
from .pages.mapfile import PageMap
from .pages.meta import EMPTY, FORMAT_VERSION, Meta, RootRef
from .pages.store import DEFAULT_PAGE_SIZE, PageStore
from .snapshot import Snapshot
from .transaction import Transaction
from .tree.btree import NodeCache, Tree, evict_oldest
from .tree.compare import differs_at, same_content, unchanged
from .tree.walk import walk
from .upkeep import GcReport, Stats, Upkeep
from .versions import Diff, Versions

if TYPE_CHECKING:
    from .recovery import RecoveryReport

log: logging.Logger = logging.getLogger("cowdb")
T = TypeVar("T")
_Found = TypeVar("_Found", Commit, CommitRoot)  # a version's record, whole or its root
RECORDS_CACHED = 4096  # records a handle keeps looked up, per cache: see _remember
DURABILITY = ("sync", "none")
UNSYNCED_FREE_LIMIT = 1024   # pages (4 MiB at 4 KiB): see _update


NO_STATS = CommitStats()  # a commit that records none (restore): immutable, so shared


def _remember(cache: dict[int, _Found], version: int, record: _Found) -> None:
    """Cache a version's record (``_State.commits`` or ``roots``). Past RECORDS_CACHED,
    the eighth cached first goes: a writer cached every commit it made, forever (~150 B
    each). A dropped record is read from the catalog again."""
    if len(cache) >= RECORDS_CACHED:
        evict_oldest(cache, RECORDS_CACHED // 8)
    cache[version] = record


class NothingChanged(Exception):
    """Raised inside _update by a commit whose tree equals its parent's (rolled back)."""


class _State(NamedTuple):  # not a frozen dataclass: ~1.5 us to construct, per txn
    txn: int
    catalog: RootRef
    version: int        # newest version on any branch
    head: Commit        # head of main
    pending: dict[bytes, Any]  # ref changes the meta record carries (see history/catalog.py)
    pending_log: bytes  # the same, as the record carries them
    meta: Meta          # the meta record of txn (its free list, page count)
    commits: dict[int, Commit]  # version -> Commit, looked up so far: shared by the states that
                        # follow until a txn drops or rewrites commits (gc), then a new one,
                        # so a reader of an older state never caches into a newer one
    roots: dict[int, CommitRoot]  # version -> what at(v) decoded of it (a snapshot needs no
                        # more), for versions not in commits; shared and renewed as commits is


class Database:
    """A cowdb database: one file (or memory), every commit a readable version."""

    codec: Any      # how values are stored: None for bytes as they are (see codecs.py)
    max_key: int    # the longest key, in bytes (page size / 4 - 64)
    path: str | None
    recovery: RecoveryReport | None

    def __init__(self, path: StrPath | None = None, *, readonly: bool = False,
                 durability: str = "sync",
                 timeout: float | None = 5.0, page_size: int = DEFAULT_PAGE_SIZE,
                 cache_nodes: int = 65536, io: BlockIO | None = None, codec: Any = None,
                 recover: bool = False) -> None:
        if recover and readonly:
            raise ValueError("recover=True rewrites a damaged file; it cannot be readonly "
                             "(use `cowdb salvage` to copy what is intact without writing)")
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, not {durability!r}")
        check_timeout(timeout)
        if page_size < 1024 or page_size & (page_size - 1) or page_size > 65536:
            raise ValueError("page_size must be a power of two from 1024 to 65536")
        self._versions = Versions(self)   # the version graph: log, refs, merge... (versions.py)
        self._upkeep = Upkeep(self)       # retention, gc, compact, stats (upkeep.py)
        self.codec = get_codec("bytes" if codec is None else codec)  # checked again below
        created = io is None and path is not None and not os.path.exists(os.fsdecode(path))
        self.path = None if path is None else os.fsdecode(path)
        self.readonly = readonly
        self.durability = durability
        self.timeout = timeout
        self._closed = False
        self._poisoned: str | None = None
        self._refresh_lock = threading.Lock()
        self._new: Commit | None = None   # the commit being written (writer only)
        self._wrote = False       # this handle committed: close() records a checkpoint
        # a weak reference to the open write transaction of this handle: dropped, it
        # aborts (Transaction.__del__) and frees the lock
        self._tx: weakref.ref[Transaction] | None = None
        self._end_lock = threading.Lock()    # one release per transaction (see _end_write)
        self._writing = False     # this handle holds the writer lock (see _reload)
        self._foreign = False     # the newest state was written by another process
        self.recovery = None      # what open(recover=True) found and did
        if io is None:
            io = MemoryIO() if self.path is None else self._open_file(page_size)
        if self.path is None and io.size() == 0:
            _create(io, page_size)
        self._io = io
        self._store = store = PageStore(io, page_size=page_size, readonly=readonly)
        self._nodes = NodeCache(store, cache_nodes)
        self._read_catalog: tuple[_State, Catalog] | None = None  # see _catalog
        if type(io) is OsFileIO:  # one read-only map of the file, for every snapshot
            store.pagemap = PageMap(store, io.fd)
            store.pagemap.expand = self._nodes.full_image  # delta images (format 4)
            store.rollback_hooks.append(store.pagemap.forget_txn)
        lock = None if self.path is None else self.path + "-lock"
        new_lock = lock is not None and not os.path.exists(lock)
        try:
            self._shared = open_shared(lock)
        except BaseException:  # ReadersFull, WriteFailed (no space for the lock file)...
            io.close()
            raise
        if self.path is not None and self._shared.fd is None and not readonly:
            self._close_failed(new_lock)
            raise ReadOnly(f"cannot open the lock file {self.path}-lock for writing, so other "
                           f"processes could not see this writer; fix the folder's "
                           f"permissions, or open with readonly=True")
        try:
            if recover:
                from .recovery import recover_io
                self._shared.acquire_writer(timeout)
                try:
                    self.recovery = recover_io(io, page_size, self.path)
                finally:
                    self._shared.release_writer()
            self._state = self._recover()
            self._map_meta()
            self._settle_codec(codec, created)
        except Corruption as e:
            self._close_failed(new_lock)
            raise Corruption(self._damaged(e, recover), e.page) from e
        except NotACowdbFile as e:
            pages = self.path is not None and "no cowdb header" in str(e) and _has_pages(io)
            self._close_failed(new_lock)
            if pages:
                raise Corruption(self._damaged(Corruption(
                    "both meta records are damaged, but cowdb pages follow them"))) from e
            raise
        except BaseException:
            self._close_failed(new_lock)
            raise
        self.max_key = store.page_size // 4 - 64
        _open_handles.add(self)

    # ---- opening -------------------------------------------------------
    def _close_failed(self, new_lock: bool) -> None:
        """Undo a failed open: close the lock file and the file, and remove the lock file
        if this open created it (a PNG opened by mistake leaves nothing behind)."""
        shared = self._shared
        last = shared.users == 1
        close_shared(shared)
        self._io.close() if hasattr(self, "_io") else None
        if new_lock and last and self.path is not None:
            try:
                os.unlink(self.path + "-lock")
            except OSError:
                pass

    def _settle_codec(self, spec: Any, record: bool) -> None:
        """Take the codec the file records (refusing another), or record it in a new file."""
        with self._pinned() as st:
            recorded = self._catalog(st).option("codec")
        self.codec = settle_codec(spec, recorded)
        if record and recorded is None and self._state.version == 0:
            name = codec_name(self.codec)
            with self._writer():
                self._update(lambda cat, txn: cat.set_option("codec", name))
            self._wrote = False  # no checkpoint needed for the record alone

    def _damaged(self, e: Exception, recovering: bool = False) -> str:
        where = self.path or "the database"
        if self.path is None or recovering:  # (recovery's own message says what is left)
            return f"{where} is damaged: {e}"
        return (f"{where} is damaged: {e}. Open its newest intact version with `cowdb recover "
                f"{self.path}` (or cowdb.open(path, recover=True)), or copy every intact "
                f"version to a new file with `cowdb salvage {self.path} NEW_PATH` (with "
                f"--partial, also what still reads of the versions that do not verify: "
                f"before a recovery, which frees their pages)")

    def _open_file(self, page_size: int) -> BlockIO:
        path = self.path
        assert path is not None  # only a database with a path has a file
        if os.path.isdir(path):
            raise NotACowdbFile(f"{path} is a directory; give the path of a database file")
        if not os.path.exists(path):
            if self.readonly:
                raise DatabaseNotFound(f"no database at {path}; open it without readonly=True "
                                       f"to create one")
            try:
                _create_file(path, page_size)
            except FileExistsError:
                pass  # another process created it since the check: open that one
        try:
            io = OsFileIO(path, readonly=self.readonly)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise ReadOnly(f"cannot open {path} for writing ({e.strerror}); open it with "
                           f"readonly=True to read it") from e
        if io.size() == 0:
            io.close()
            raise NotACowdbFile(f"{path} is empty, not a cowdb database; delete it or choose "
                                f"another path")
        return io

    def _recover(self) -> _State:
        """Adopt the newest meta record whose new pages all verify (see docs/format.md).

        Each candidate is read under a pin of its txn, checked to have been in time (the
        meta records have not moved since), as _reload does: a process already writing
        this file could otherwise reuse its pages under us, and a page it rewrote would
        read as corruption. If they moved, start again from the newer ones.
        """
        store = self._store
        state = None
        while state is None:
            found, error = store.candidates(), None
            for slot, meta in found:
                self._shared.pin(meta.txn)
                try:
                    if [m.txn for _, m in store.candidates()] != [m.txn for _, m in found]:
                        break  # a writer moved on before the pin showed
                    store.adopt(slot, meta)
                    self._verify_since(meta, meta.durable_base)
                    state = self._load_state(meta)
                    if error is not None or len(found) < 2:
                        why = (f"the newest meta record (txn {found[0][1].txn}) does not "
                               f"verify: {error}" if error is not None
                               else f"meta slot {1 - slot} is damaged")
                        log.warning("cowdb: %s: %s; opened the record of txn %d in slot %d "
                                    "(version %d)", self.path or "database", why, meta.txn,
                                    slot, state.version)
                    break
                except Corruption as e:
                    error = error or e
                finally:
                    self._shared.unpin(meta.txn)
            else:
                raise error if error is not None else Corruption("no meta record to open")
        if not self.readonly:
            store.sync()  # what we adopted may sit only in the page cache: make it durable
        return state

    def _verify_since(self, meta: Meta, base: int) -> None:
        """Check every page written after txn ``base`` that ``meta`` reaches."""
        nodes = self._nodes
        for _ in walk(nodes, meta.catalog, base):
            pass
        if meta.catalog.page:
            cat = Catalog(Tree(nodes, meta.catalog), decode_pending(meta.pending))
            for c in cat.commits(reverse=True):  # the pending ones first: the newest
                if c.txn <= base:
                    break
                for _ in walk(nodes, c.root, base):
                    pass

    def _load_state(self, meta: Meta) -> _State:
        cat = Catalog(Tree(self._nodes, meta.catalog), decode_pending(meta.pending),
                      meta.pending)
        v = cat.head("main")
        head = None if v is None else cat.commit(v)
        if head is None:
            raise Corruption("the catalog has no head for branch main")
        return _State(meta.txn, meta.catalog, cat.last_version(), head, cat.pending, cat.log,
                      meta, {}, {})

    def _map_meta(self) -> None:
        """Map the meta slots: noticing another process's commit is then two loads."""
        self._meta_map: mmap.mmap | None = None
        self._meta_q: Any = None  # the txn fields of both slots, indexable (see _current)
        if isinstance(self._io, OsFileIO):
            self._meta_map = mmap.mmap(self._io.fd, 2 * self._store.page_size,
                                       prot=mmap.PROT_READ)
            self._meta_q = memoryview(self._meta_map).cast("Q")  # txn fields: [2], [ps/8 + 2]
            self._slot1_txn = self._store.page_size // 8 + 2

    # ---- state ---------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosed(self._poisoned or "the database is closed; open it again with "
                                 "cowdb.open()")

    def _current(self) -> _State:
        """The newest state, noticing commits made by other processes."""
        st = self._state
        q = self._meta_q
        if q is not None and (q[2] > st.txn or q[self._slot1_txn] > st.txn):
            st = self._reload()
        return st

    def _reload(self) -> _State:
        """Adopt another process's newer commit. Its pages are read under a pin of its
        txn, taken before reading and checked to have been in time (the newest meta is
        still that txn); otherwise a writer could reuse them under us.

        A newer meta record may instead be this handle's own commit, written but not yet
        published (``_update`` moves ``_state`` after ``publish``): that is never
        adopted, or the writer's page count and free list would be swapped under it
        (issue 13). While this handle holds the writer lock no other process commits,
        and ``_writing`` is cleared only after ``_state`` moved; so a record is foreign
        exactly when, read after it, ``_writing`` is False and ``_state`` is older.
        """
        if self._writing:
            return self._state
        with self._refresh_lock:
            while True:
                slot, meta = self._store.candidates()[0]
                if self._writing or meta.txn <= self._state.txn:
                    return self._state
                self._shared.pin(meta.txn)
                try:
                    if self._store.candidates()[0][1].txn != meta.txn:
                        continue  # superseded before the pin showed: take the newer one
                    if self._writing or meta.txn <= self._state.txn:
                        return self._state
                    self._store.adopt(slot, meta, durable=False)
                    self._state = self._load_state(meta)
                    self._foreign = True
                    return self._state
                finally:
                    self._shared.unpin(meta.txn)

    @contextmanager
    def _pinned(self) -> Iterator[_State]:
        """The newest state, pinned while the caller reads its pages (catalog lookups,
        logs): a writer in this process or another then reuses none of them."""
        self._check_open()
        while True:
            st = self._current()
            self._shared.pin(st.txn)
            if self._current() is st:
                break
            self._shared.unpin(st.txn)  # a commit came between: pin the newer state
        try:
            yield st
        finally:
            self._shared.unpin(st.txn)

    def _catalog(self, st: _State) -> Catalog:
        """The catalog of a state the caller has pinned (or holds the writer lock on), for
        reading: built once per state (a Catalog and its Tree cost ~0.7 us, which a
        version's first lookup would pay each time) and kept until the next state."""
        found = self._read_catalog
        if found is not None and found[0] is st:
            return found[1]
        cat = Catalog.reader(Tree(self._nodes, st.catalog), st.pending, st.pending_log)
        self._read_catalog = (st, cat)  # one assignment: a thread sees one pair or the other
        return cat

    @property
    def _commits(self) -> dict[int, Commit]:
        """The commit records the newest state has cached (see _State.commits)."""
        return self._state.commits

    def _commit_record(self, st: _State, version: int) -> Commit:
        return self._look_up(st, version, st.commits, Catalog.commit)

    def _version_root(self, st: _State, version: int) -> Commit | CommitRoot:
        """What a snapshot of an int version needs: its Commit if cached, else only its
        root (at()'s first lookup of a version; see CommitRoot)."""
        return st.commits.get(version) or self._look_up(st, version, st.roots, Catalog.root)

    def _look_up(self, st: _State, version: int, cache: dict[int, _Found],
                 find: Callable[[Catalog, int], _Found | None]) -> _Found:
        """``find`` a version's record in the catalog of ``st``, through ``cache``."""
        if type(version) is not int:  # before the cache: 1.0 and True hash like 1
            raise InvalidType(f"a version is an int, a tag or branch name, or a datetime; "
                              f"not {type(version).__name__}")
        c = cache.get(version)
        if c is None:
            c = find(self._catalog(st), version) if 0 <= version <= st.version else None
            if c is None:
                if 0 <= version <= st.version:
                    raise VersionReclaimed(f"version {version} was dropped by the retention "
                                           f"rule and reclaimed by gc(); it cannot be read")
                raise VersionNotFound(f"version {version} does not exist (the newest is "
                                      f"{st.version})")
            _remember(cache, version, c)
        return c

    # ---- public reading ------------------------------------------------
    @property
    def version(self) -> int:
        """The newest committed version on any branch (see head() for one branch's)."""
        self._check_open()
        return self._current().version

    def head(self, branch: str = "main") -> int:
        """The version at the head of a branch: what db.read(branch) reads."""
        if type(branch) is not str:
            raise InvalidType(f"a branch name is a str, not {type(branch).__name__}")
        with self._pinned() as st:
            return st.head.version if branch == "main" else self._branch_version(st, branch)

    def read(self, branch: str = "main") -> Snapshot:
        """A snapshot of the newest version of a branch: O(1), never blocks."""
        if type(branch) is not str:
            raise InvalidType(f"a branch name is a str, not {type(branch).__name__}")
        if branch == "main":
            st = self._state
            pin = self._pin_published(st)
            if pin is not None:
                return Snapshot(self, st.head, pin)
        return self._open(lambda st: st.head if branch == "main" else self._commit_record(
            st, self._branch_version(st, branch)))

    def at(self, ref: VersionRef) -> Snapshot:
        """A read-only snapshot of a kept version: an int version, a tag or branch name,
        or a datetime (the newest version of main committed at or before it)."""
        st = self._state
        if type(ref) is int:  # the common case, kept flat
            pin = self._pin_published(st)
            if pin is not None:
                try:  # under the snapshot's own pin; a version looked up before is cached
                    return Snapshot(self, st.roots.get(ref) or self._version_root(st, ref),
                                    pin)
                except BaseException:
                    pin.release()
                    raise
        return self._open(lambda st: self._resolve(st, ref))

    def _pin_published(self, st: _State) -> Any:
        """A pin (``Shared.hold``) of ``st``, the published state, if no other process
        has committed since (the common case of read() and at(), kept flat): pin, then
        make sure no commit raced the pin. None, with nothing pinned, otherwise: take
        the slow path."""
        q = self._meta_q
        if self._closed or (q is not None and (q[2] > st.txn or q[self._slot1_txn] > st.txn)):
            return None
        pin = self._shared.hold(st.txn)
        if self._state is st and (
                q is None or (q[2] <= st.txn and q[self._slot1_txn] <= st.txn)):
            return pin
        pin.release()
        return None

    def _open(self, find: Callable[[_State], Commit]) -> Snapshot:
        """A snapshot of the commit ``find(state)`` names, looked up under the pin that
        the snapshot then keeps."""
        with self._pinned() as st:
            pin = self._shared.hold(st.txn)  # the snapshot's own pin, released by close()
            try:
                return Snapshot(self, find(st), pin)
            except BaseException:
                pin.release()
                raise

    def _resolve(self, st: _State, ref: VersionRef) -> Commit:
        """What ``at()`` accepts -> the commit it names."""
        if isinstance(ref, datetime):
            if ref.tzinfo is None:
                raise InvalidValue("give an aware datetime (for example with "
                                   "tzinfo=timezone.utc)")
            v = self._catalog(st).version_at("main", to_ns(ref), st.head.version)
            if v is None:
                raise VersionNotFound(f"no version of main was committed at or before {ref}")
            return self._commit_record(st, v)
        if isinstance(ref, str):
            cat = self._catalog(st)
            v = cat.ref(TAG, ref)
            if v is None:
                v = cat.ref(BRANCH, ref)
            if v is None:
                raise RefNotFound(f"no tag or branch named {ref!r}; see db.tags() and "
                                  f"db.branches()")
            return self._commit_record(st, v)
        return self._commit_record(st, ref)

    def check(self) -> CheckReport:
        """Verify every page that any version, the catalog and the free list reach.

        Also checks that no page is both free and in use, that every page lies
        inside the file and that every branch and tag names a kept version.
        Problems are collected, not raised.
        """
        with self._pinned() as st:
            return check_state(self, st)

    def _upgrade(self) -> int | None:
        """Rewrite both meta records in the current format version (`cowdb upgrade`):
        return the oldest version they had, or None if both were current already.

        Each record is a durable txn that changes nothing else (it writes its meta
        record into the slot that does not hold the last durable one, then syncs), so a
        crash at any point leaves a file that opens: at worst the older record, which
        this code reads as it was. A version 1 or 2 file keeps its whole-page units
        (`compact()` packs them)."""
        with self._writer():
            found = [m.version for _, m in self._store.candidates()]
            if len(found) == 2 and min(found) == FORMAT_VERSION:
                return None
            for _ in range(2):  # one record per slot
                self._update(lambda cat, txn: None, durable=True)
        return min(found)

    def _freelist_of(self, st: _State) -> FreeList:
        """The free list as of a pinned state, read from its image: the store's own is the
        writer's, which another thread may be changing."""
        try:
            return self._store._load_freelist(st.meta)
        except Corruption as e:
            raise Corruption(f"the free list of txn {st.txn} is damaged: {e}", e.page) from e

    # ---- versions: log, refs, restore, diff, merge, revert (versions.py) ----
    def commit_info(self, version: VersionRef) -> Commit:
        """The commit record of a version (or of what a tag/branch/datetime names)."""
        return self._versions.commit_info(version)

    def log(self, limit: int | None = None, branch: str = "main") -> Iterator[Commit]:
        """Commits of a branch, newest first, following first parents. Bad arguments
        raise here, not at the first step of the iteration."""
        return self._versions.log(limit, branch)

    def history(self, key: bytes | str, limit: int | None = None,
                branch: str = "main") -> Iterator[tuple[int, datetime, Any]]:
        """(version, time, value or None) for each version of ``branch`` where key changed,
        newest first."""
        return self._versions.history(key, limit, branch)

    def tags(self) -> dict[str, int]:
        """Every tag: name -> the version it names."""
        return self._versions.tags()

    def branches(self) -> dict[str, int]:
        """Every branch: name -> the version at its head."""
        return self._versions.branches()

    def tag(self, name: str, version: VersionRef | None = None) -> int:
        """Name a version (None: the newest of main). Tags are immutable; returns the version."""
        return self._versions.tag(name, version)

    def delete_tag(self, name: str) -> None:
        """Delete a tag (the version it named is then kept only by the retention rule)."""
        return self._versions.delete_tag(name)

    def branch(self, name: str, at: VersionRef | None = None) -> int:
        """Start a branch at a version, tag or branch (None: head of main). O(1)."""
        return self._versions.branch(name, at)

    def delete_branch(self, name: str) -> None:
        """Delete a branch (not main); its versions stay readable until gc drops them."""
        return self._versions.delete_branch(name)

    def restore(self, version: VersionRef, message: str | None = None, branch: str = "main",
                author: str = "") -> int:
        """Commit, on ``branch``, a new version whose content equals ``version``'s.

        History is kept: the bad versions stay readable. O(1) pages: the new
        version shares the old root.
        """
        return self._versions.restore(version, message, branch, author)

    def diff(self, a: VersionRef, b: VersionRef, prefix: bytes | str | None = None,
             start: bytes | str | None = None, stop: bytes | str | None = None) -> Diff:
        """Changes from a to b (anything at() accepts), in key order. Skips every subtree
        the two versions share: O(d x depth) pages for d changes."""
        return self._versions.diff(a, b, prefix, start, stop)

    def merge(self, source: str, into: str = "main", resolve: Resolve = None,
              message: str | None = None, author: str = "") -> int:
        """Three-way merge of branch ``source`` into branch ``into``; returns the version
        now at the head of ``into`` (a merge commit, or source's head on a fast-forward).

        Conflicts (a key changed differently on both sides since the merge base)
        raise MergeConflict with nothing committed, unless ``resolve`` is "ours",
        "theirs" or a callable (key, base, ours, theirs) -> bytes | None.
        """
        return self._versions.merge(source, into, resolve, message, author)

    def revert(self, version: VersionRef, branch: str = "main", resolve: Resolve = None,
               message: str | None = None, author: str = "", allow_empty: bool = False) -> int:
        """Commit, on ``branch``, the inverse of exactly that version's changes.

        A key that a later commit changed differently is a conflict (MergeConflict,
        or settled by ``resolve`` as in merge). A revert that changes nothing (already
        undone) makes no version and returns the branch's head, unless ``allow_empty``."""
        return self._versions.revert(version, branch, resolve, message, author, allow_empty)

    # ---- upkeep: retention, gc, compact, backup, stats (upkeep.py) ----------
    @property
    def retention(self) -> Retention:
        """The retention rule gc() applies (see set_retention)."""
        return self._upkeep.retention

    def set_retention(self, keep_last: int | None = None,
                      keep_within: timedelta | None = None) -> None:
        """Keep the newest ``keep_last`` versions and those younger than ``keep_within``
        (tags and branch heads always); both None keeps everything. Applied by gc()."""
        return self._upkeep.set_retention(keep_last, keep_within)

    def gc(self) -> GcReport:
        """Drop versions the retention rule does not keep and free the pages only they reach.

        Readers that hold a dropped version (here or in another process) keep
        reading it: its pages are reused only after they close.

        Works on a full disk: its txns may write into the pages the store keeps
        in reserve (``RESERVE_PAGES``), and if one txn does not fit there it goes
        again in small rounds, each durable, so each round reuses what the one
        before freed.
        """
        return self._upkeep.gc()

    def compact(self, dest_path: StrPath) -> None:
        """Write a compacted copy to a new file: every kept version, tag, branch and the
        retention rule, with the versions' shared pages shared in the copy too."""
        return self._upkeep.compact(dest_path)

    def backup(self, dest_path: StrPath) -> int:
        """Write a consistent copy of the newest state (every version, branch, tag and
        setting) to the new file ``dest_path``, while writers go on; returns the newest
        version copied. Never ``cp`` a database that is being written: see cowdb/backup.py."""
        return self._upkeep.backup(dest_path)

    def stats(self) -> Stats:
        """Bytes in the file, live, reclaimable by gc(), free, and pinned by whom."""
        return self._upkeep.stats()

    # ---- writing -------------------------------------------------------
    def write(self, message: str = "", *, author: str = "", branch: str = "main",
              durability: str | None = None, timeout: float | None = None,
              allow_empty: bool = False) -> Transaction:
        """Start the write transaction; use it with ``with`` (commit on success).

        A transaction that changes nothing makes no version: ``tx.version`` is then the
        branch's head and ``tx.skipped`` is True; ``allow_empty=True`` commits anyway."""
        if durability is not None and durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, not {durability!r}")
        check_text(message, "message")
        check_text(author, "author")
        check_timeout(timeout)
        if type(branch) is not str:
            raise InvalidType(f"a branch name is a str, not {type(branch).__name__}")
        st = self._lock_writer(timeout)
        try:
            head = self._commit_record(st, self._branch_version(st, branch))
            tree = Tree(self._nodes, head.root, head.count)
        except BaseException:
            self._release_writer()
            raise
        tx = Transaction(self, tree, head, message, author, branch, durability or self.durability)
        tx.allow_empty = bool(allow_empty)
        self._tx = weakref.ref(tx)
        self._shared.abandoned = self._abandoned
        return tx

    def abort_write(self) -> bool:
        """Abort this handle's open write transaction, whichever thread opened it: the way
        out for a thread that lost its transaction object (db.write() then raises
        NestedTransaction in that thread, Locked in others). True if there was one."""
        ref = self._tx
        tx = None if ref is None else ref()
        if tx is None:
            return False
        tx.abort()
        return True

    def _abandoned(self, thread: threading.Thread) -> None:
        """Called by a thread waiting for the writer lock when the thread that holds it for
        this handle's transaction has ended: abort that transaction."""
        ref = self._tx
        tx = None if ref is None else ref()
        if tx is not None:
            warnings.warn(f"the write transaction of thread {thread.name!r}, which ended "
                          f"without committing or aborting it, was aborted", ResourceWarning,
                          stacklevel=2, source=tx)
            tx.abort()

    def _lock_writer(self, timeout: float | None = None) -> _State:
        """Take the writer lock and return the newest state, owned by this process."""
        self._check_open()
        if self.readonly:
            raise ReadOnly("this database was opened with readonly=True; open it without it "
                           "to write")
        self._shared.acquire_writer(self.timeout if timeout is None else timeout)
        try:
            st = self._current()
            if self._foreign:  # another process wrote last: make its state durable, then ours
                store = self._store
                store.sync()
                slot = store.slot_of(st.txn)
                store.mark_durable(store.durable_slot if slot is None else slot, st.txn)
                self._foreign = False
            self._writing = True  # after _current(): it may have to adopt a foreign commit
            return st
        except BaseException:
            self._shared.release_writer()
            raise

    def _release_writer(self) -> None:
        self._writing = False  # after _state moved (see _reload), before others may write
        self._shared.release_writer()

    @contextmanager
    def _writer(self, timeout: float | None = None) -> Iterator[_State]:
        """Hold the writer lock for a catalog-only change (tag, branch, gc...)."""
        st = self._lock_writer(timeout)
        try:
            yield st
        finally:
            self._release_writer()

    def _branch_version(self, st: _State, branch: str) -> int:
        if branch == "main":
            return st.head.version
        v = self._catalog(st).head(branch)
        if v is None:
            raise RefNotFound(f"no branch named {branch!r}; see db.branches()")
        return v

    def _end_write(self, tx: Transaction) -> None:
        """Release the writer lock, once per transaction (a commit whose fsync failed
        closes the database, which aborts it, and then ends it again)."""
        with self._end_lock:
            ref = self._tx
            # a dead reference: tx is being finalized (a reference cycle's weak references
            # are cleared before __del__ runs), and only the open transaction calls this
            held = None if ref is None else ref()
            if ref is None or (held is not tx and held is not None):
                return
            self._tx = None
        self._release_writer()

    def _reuse_bound(self) -> int:
        oldest = self._shared.oldest_reader()
        bound = self._store.durable_txn
        return bound if oldest is None else min(bound, oldest)

    def _update(self, change: Callable[[Catalog, int], T], durable: bool | None = None,
                forget: bool = False) -> T:
        """Run ``change(catalog, txn)`` as one atomic txn and publish it (writer lock held).

        Every write path goes through here: commits, tags, branches,
        retention, gc. On any error the store rolls back and nothing of the
        change is visible. ``forget``: the change drops or rewrites commits, so the new
        state starts with no cached commit records.
        """
        self._check_open()
        store, st = self._store, self._state
        if durable is None:  # catalog changes (tags, branches, gc...) follow the handle
            durable = self.durability == "sync"
        if store.meta.txn != st.txn or not self._writing:
            # the store's writer side must be that of the published state, under the lock
            # (a reader thread once swapped it: issue 13): never build on anything else
            raise WriteFailed(f"internal error: the page store is at txn {store.meta.txn}, "
                              f"the published state at txn {st.txn}; nothing was written: "
                              f"close and reopen the database, and report this")
        txn = store.meta.txn + 1
        store.begin(txn, self._reuse_bound())
        try:
            cat = Catalog.writing(self._nodes, st.catalog, dict(st.pending), st.pending_log)
            result = change(cat, txn)
            pending = cat.settle(store.pending_room)  # a txn that only moves refs writes no page
            wrote_catalog = cat.dirty
            # Without syncs, pages freed since the last sync can never be reused (a crash
            # may fall back to a version that reaches them), so they pile up and the free
            # list grows with every commit: sync once they pass a bound.
            durable = durable or (store.unsynced_free_pages * store.unit >
                                  UNSYNCED_FREE_LIMIT * store.page_size)
            self._shared.check_identity()  # the lock file replaced since the lock was taken?
            meta = store.publish(cat.write(txn), pending, durable)
        except BaseException as e:
            self._new = None
            try:
                store.rollback()
            except Exception as again:  # cannot even reread the last state: stop here
                self._poison(f"rolling back a failed commit failed too ({again}); reopen "
                             f"the database")
                raise e from again
            if getattr(e, "uncertain", False):
                self._poison(str(e))
            raise
        # published: from here nothing may roll back (not even an interrupt)
        self._nodes.drop(cat.superseded)
        commits, roots = ({}, {}) if forget else (st.commits, st.roots)
        new, self._new = self._new, None
        if new is not None:
            _remember(commits, new.version, new)  # published: readers may now look it up
        if wrote_catalog or MAIN_HEAD in cat.pending:
            main = cat.head("main")
            assert main is not None  # every catalog has a head of main
            found = commits.get(main) or cat.commit(main)
            assert found is not None  # ... and keeps its commit
            head = found
        else:
            head = st.head  # neither a catalog page nor a pending change moved main
        # a txn that wrote no catalog page dropped no commit: no walk for the newest version
        version = cat.last_version() if wrote_catalog else st.version if new is None \
            else new.version
        self._state = _State(meta.txn, meta.catalog, version, head, cat.pending, cat.log, meta,
                             commits, roots)
        self._wrote = True
        return result

    def _new_commit(self, cat: Catalog, txn: int, branch: str, root: RootRef, count: int,
                    parents: tuple[int, ...], message: str, author: str,
                    stats: CommitStats = NO_STATS) -> Commit:
        """Record a new version at the head of ``branch`` (inside ``_update``)."""
        st = self._state
        version = st.version + 1
        now = _commit_time(now_ns(), self._commit_record(st, st.version).time_ns, self.path)
        c = Commit(version, now, root, count, parents, message, author, branch, txn, stats)
        cat.add_commit(c)  # pending in the meta record until the catalog folds
        cat.set_ref(BRANCH, branch, version)
        self._new = c  # cached once published: a reader in the window must not find it
        return c

    def _commit(self, tx: Transaction) -> int:
        """Write the transaction's tree and its commit record (writer lock held)."""
        tree = tx._tree
        assert tree is not None  # tx.commit() checked that tx is open
        if not tx.allow_empty and not tree.dirty:  # nothing was even touched
            tx.skipped = True
            return tx._head.version
        v = self._commit_tree(tree, tx._head, tx.branch, (tx._head.version,), tx.message,
                              tx.author, tx.puts, tx.deletes, tx.allow_empty,
                              durable=tx.durability == "sync", touched=tx._touched)
        if v is None:  # rolled back: no page and no version written
            tx.skipped = True
            return tx._head.version
        return v

    def _commit_tree(self, tree: Tree, head: Commit, branch: str, parents: tuple[int, ...],
                     message: str, author: str, puts: int, deletes: int, allow_empty: bool,
                     durable: bool | None = None, touched: bytes | None = None) -> int | None:
        """Commit ``tree`` on ``branch`` as one txn, with its stats (writer lock held):
        the new version, or None when the tree holds what ``head`` does and not
        ``allow_empty`` (then nothing is written). ``touched``: a key the change wrote
        (see tree/compare.py's differs_at)."""
        store = self._store

        # the last key written read in both trees proves most commits change something;
        # else the dirty tree against the nodes it copied, before any txn, then the trees
        # as written (see tree/compare.py)
        check = not allow_empty and (touched is None or not differs_at(tree, head.root,
                                                                        touched))
        if check and unchanged(tree, head.root):
            return None  # (no txn begun: nothing to roll back)

        def change(cat: Catalog, txn: int) -> int:
            pages0, bytes0 = store.pages_written, store.bytes_written
            root = tree.write(txn)
            if check and same_content(self._nodes, head.root, root):
                raise NothingChanged
            self._nodes.drop(tree.superseded)  # (same_content read them: done with them)
            stats = CommitStats(puts, deletes, store.pages_written - pages0,
                                store.bytes_written - bytes0)
            return self._new_commit(cat, txn, branch, root, tree.count, parents, message,
                                    author, stats).version

        try:
            return self._update(change, durable=durable)
        except NothingChanged:
            return None

    def _after_fork_in_child(self) -> None:
        """This handle in a forked child (the lock table made its Shared the child's
        first, see locks.py): a write transaction open at the fork stays the parent's,
        so its copy here is closed without releasing anything (the child holds no
        writer lock), and the store forgets what that transaction had allocated."""
        self._refresh_lock, self._end_lock = threading.Lock(), threading.Lock()
        self._new = None   # a commit a parent thread was writing: not this process's
        ref, self._tx = self._tx, None
        tx = None if ref is None else ref()
        if tx is not None:
            tx._tree = None
        if self._writing:
            self._writing = False
            self._store.rollback()
        if self._shared.forked_without_slot and not self._closed:
            self._poison(f"this process was forked while all reader slots of "
                         f"{self.path}-lock were held, so its snapshots would be unprotected; "
                         f"the handle was closed: close the database in some processes, then "
                         f"open it again in this one")

    def _poison(self, why: str) -> None:
        self._poisoned = why
        self.close()

    # ---- closing -------------------------------------------------------
    def close(self) -> None:
        """Close the database; snapshots and transactions still open become unusable."""
        if self._closed:
            return
        self.abort_write()  # an open write transaction cannot commit any more
        try:
            if not self.readonly and self._poisoned is None:
                self._checkpoint()
        finally:
            self._closed = True
            if self._meta_map is not None:
                self._meta_q.release()
                self._meta_map.close()
            close_shared(self._shared)
            self._store.close()  # the map, then the file

    def _checkpoint(self) -> None:
        """Sync and record that everything is durable, so the next open verifies nothing."""
        store = self._store
        if not self._wrote:
            return
        try:
            self._shared.acquire_writer(0)
        except CowdbError:
            return  # another writer is active; it will record durability itself
        try:
            st = self._current()  # adopts another process's newer commit first: the
            self._writing = True  # checkpoint goes on top of it, never over it
            if st.txn == store.meta.txn:
                store.sync()
                # the newest record (maybe of a no-sync commit) is now the durable one: the
                # checkpoint must go to the other slot, or a torn write loses both
                slot = store.slot_of(store.meta.txn)
                if slot is not None:
                    store.mark_durable(slot, store.meta.txn)
                # the reuse bound of every txn: its free list must keep what readers pin
                store.begin(store.meta.txn + 1, self._reuse_bound())
                try:
                    meta = store.publish(store.meta.catalog, store.meta.pending, durable=True)
                except WriteFailed:
                    store.rollback()
                    return
                self._state = self._state._replace(txn=meta.txn, catalog=meta.catalog,
                                                   meta=meta)
        finally:
            self._release_writer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or "memory"
        return f"<cowdb.Database {where} {'closed' if self._closed else 'open'}>"


CLOCK_SLACK_NS = 10 ** 9   # a clock this far behind the newest commit time: see below
MAX_TIME_NS = (1 << 64) - 2


def _commit_time(now: int, newest: int, where: str | None) -> int:
    """A new commit's time: the clock's reading, made later than the newest commit's
    time when the clock reads within a second of it (commits in one clock tick, a small
    step back): each commit's own time then finds it with at(). A clock further behind
    is recorded as it reads, with a warning: the newest commit's time was then a bad
    reading (say 80 years ahead), and copying it forward would freeze time for every
    later commit. at(t) names the version with the latest time at or before t."""
    if now > newest:
        return min(now, MAX_TIME_NS)
    if newest - now <= CLOCK_SLACK_NS:
        return min(newest + 1000, MAX_TIME_NS)
    log.warning("cowdb: %s: the clock reads %s, before the newest commit's time (%s); the "
                "commit records the clock's time: check the system clock", where or
                "database", to_datetime(now), to_datetime(newest))
    return now


_open_handles: weakref.WeakSet[Database] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for db in list(_open_handles):
        if not db._closed:
            db._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # after locks.py's hook, which runs first
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _create(io: BlockIO, page_size: int) -> None:
    """Lay out a new database: meta slots, then version 0 (empty) as the head of main."""
    store = PageStore(io, page_size=page_size)
    store.initialize()
    store.begin(2, 1)
    cat = Catalog(Tree(NodeCache(store), EMPTY, frees=True))
    cat.put_commit(Commit(0, now_ns(), EMPTY, 0, (), "create", "", "main", 2))
    cat.set_ref(BRANCH, "main", 0)
    cat.settle(0)
    store.publish(cat.tree.write(2), b"", durable=True)


def _create_file(path: str, page_size: int) -> None:
    """Create atomically: build in a temporary file, fsync, link it in, fsync the folder.
    FileExistsError if another process created the file meanwhile."""
    with new_file(path) as tmp:
        io = OsFileIO(tmp)
        try:
            _create(io, page_size)
        finally:
            io.close()


def _has_pages(io: BlockIO) -> bool:
    """Whether the file holds cowdb page images (its meta records may be gone)."""
    from .recovery import _page_size
    try:
        _page_size(io, DEFAULT_PAGE_SIZE)
        return True
    except (CowdbError, OSError):
        return False
