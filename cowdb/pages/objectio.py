"""A block device on an object store: the page store, unchanged, over S3 and kin.

``ObjectIO`` is a ``BlockIO`` (see io.py): the page store above it writes
page images at page offsets, then a meta record into a meta slot, exactly as
on a file. Here:

- page writes are buffered; the meta record write is the commit: the
  buffered runs become **one** immutable object (``data/<txn>-<writer>-<rand>``),
  then manifest ``txn`` is put **create-if-absent** (``manifest.py``). Two PUTs.
  If the manifest exists, another writer won this txn: ``ManifestConflict``
  (the database rebases the transaction and retries, see objdb.py).
- a put whose outcome is unknown (a timeout, a 5xx) is resolved by reading
  the manifest back: ours (the nonce makes the bytes unique) means committed,
  a rival's means conflict, none means put again. Only if that cannot be
  settled does it raise ``UncertainCommit`` (the database closes itself).
- reads map a page to (object, offset) through the page index, which every
  manifest extends with the runs it wrote (an index checkpoint every
  ``checkpoint_every`` txns bounds how many manifests a cold open reads), and
  fetch by ranged GET into a ``ChunkCache`` (memory, then a folder).
- both meta slots read as the newest loaded manifest's meta record: there are
  no torn meta records to fall back from.
- ``sync`` does nothing: a manifest PUT that returned is durable.

Pages are reused as on a file (the free list), but only once freed by a txn
published more than ``lease`` seconds ago (``reuse_bound``): a reader in
another process cannot pin pages here, so a snapshot is guaranteed for
``lease`` seconds after the state it reads was superseded.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import AccessDenied, Corruption, CowdbError, ReadFailed, StoreNotFound
from . import meta as metamod
from .io import BlockIO, BytesLike
from .manifest import (DATA_PREFIX, INDEX_PREFIX, MANIFEST_PREFIX, Manifest, decode,
                       decode_index, encode_index, manifest_key, txn_of_key)
from .objcache import CHUNK, ChunkCache
from .objclient import (NoBucket, ObjectClient, ObjectExists, ObjectNotFound, Refused,
                        TransientError, retry)

T = TypeVar("T")
SHIFT = 40                 # index value: object number << SHIFT | byte offset in the object
MASK = (1 << SHIFT) - 1


class ManifestConflict(CowdbError):
    """Another writer published this txn first (internal: the database rebases)."""

    def __init__(self, txn: int) -> None:
        super().__init__(f"another writer published txn {txn} first")
        self.txn = txn


class UncertainCommit(CowdbError):
    """The manifest put failed in a way that may or may not have taken effect, and reading
    it back did not settle which."""
    uncertain = True


class ObjectIO(BlockIO):
    page_size: int
    cache: ChunkCache
    attempts: int
    backoff: float
    writer: str
    lock: threading.RLock
    head: int
    meta_bytes: bytes
    epoch: int
    head_nonce: bytes
    confirmed: float
    bump_epoch: bool
    def __init__(self, client: ObjectClient, *, page_size: int = 4096,
                 cache: ChunkCache | None = None, lease: float = 600.0,
                 refresh_interval: float = 1.0, checkpoint_every: int = 64,
                 attempts: int = 6, backoff: float = 0.05) -> None:
        self.client = client
        self.page_size = page_size
        self.cache = cache if cache is not None else ChunkCache()
        self.lease = lease
        self.refresh_interval = refresh_interval
        self.checkpoint_every = checkpoint_every
        self.attempts, self.backoff = attempts, backoff
        self.writer = os.urandom(4).hex()
        self.lock = threading.RLock()
        self.head = 0                   # txn of the newest manifest loaded (0: none)
        self.meta_bytes = b""           # its meta record
        self.epoch = 1
        self.head_nonce = b""           # the nonce of the head's manifest (the next one's prev)
        self.confirmed = 0.0            # monotonic time the head was last known to be newest
        self._listed = 0.0              # monotonic time of the last LIST of the manifests
        self.checkpoint: tuple[int, str] | None = None
        self.index: dict[int, int] = {}
        self.objects: list[str] = []    # object number -> key
        self.sizes: list[int] = []      # object number -> bytes
        self._objno: dict[str, int] = {}
        # (txn, time_ns) of manifests seen, oldest first
        self.published: deque[tuple[int, int]] = deque()
        self._floor = (0, 0)            # the newest (txn, time_ns) dropped from published
        self._buf: dict[int, bytes] = {}  # first page -> run, for the txn being written
        self._polled = 0.0
        self.bump_epoch = False         # the next manifest fences: epoch + 1 (object gc)
        self.compact: set[int] = set()  # the next commit copies these objects' pages too
        self.dead: set[int] = set()     # ... but not these pages (free past the lease)
        self.last_object: str | None = None
        self.refresh()

    # ---- requests ------------------------------------------------------
    def _retry(self, fn: Callable[..., T], *args: Any) -> T:
        return retry(fn, *args, attempts=self.attempts, delay=self.backoff)

    def _get_manifest(self, txn: int) -> Manifest | None:
        key = manifest_key(txn)
        try:
            data = self._retry(self.client.get, key)
        except ObjectNotFound:
            return None
        m = decode(data, key)
        if m.txn != txn:
            raise Corruption(f"{key} holds the manifest of txn {m.txn}")
        return m

    # ---- following the newest manifest ----------------------------------
    def poll(self) -> int:
        """The newest txn, looking for new manifests at most every refresh_interval s."""
        now = time.monotonic()
        if now - self._polled >= self.refresh_interval and self.lock.acquire(blocking=False):
            try:
                self._polled = now
                self.refresh()
            except CowdbError:
                pass   # the store is unreachable for now: readers go on with what they have
            finally:
                self.lock.release()
        return self.head

    def refresh(self) -> int:
        """Load every manifest newer than the head; return the newest txn.

        One GET (of manifest head + 1) when nothing changed (and a LIST every lease / 2).
        Otherwise LIST past the head, then probe the txns after the newest listed (a LIST
        may lag: the probe
        finds what it missed), and load what is new."""
        try:
            return self._refresh()
        except Refused as e:
            raise AccessDenied(str(e)) from e
        except NoBucket as e:
            raise StoreNotFound(str(e)) from e
        except (OSError, ObjectNotFound) as e:
            raise ReadFailed(f"reading the manifests failed: {e} (is the endpoint right and "
                             f"reachable? AWS_ENDPOINT_URL or options={{'endpoint': ...}})") from e

    def _refresh(self) -> int:
        with self.lock:
            found: dict[int, Manifest | None] = {}
            if self.head:
                m = self._get_manifest(self.head + 1)
                if m is not None:
                    found[m.txn] = m
                elif time.monotonic() - self._listed <= self.lease / 2:
                    self.confirmed = time.monotonic()
                    return self.head
                # else: LIST too, every lease / 2 at least: object gc deletes the manifests
                # below the newest checkpoint (head + 1 among them, if this handle fell that
                # far behind) only after a grace period at least the lease
            after = manifest_key(self.head) if self.head else None
            listed_at = time.monotonic()
            keys = self._retry(self.client.list_after, MANIFEST_PREFIX, after)
            self._listed = listed_at
            listed = [t for t in map(txn_of_key, keys) if t is not None]
            newest = max(listed + list(found) + [self.head])
            while True:
                m = self._get_manifest(newest + 1)
                if m is None:
                    break
                found[m.txn] = m
                newest = m.txn
            if newest > self.head:
                self._advance(newest, found)
            self._polled = self.confirmed = time.monotonic()
            return self.head

    def _advance(self, newest: int, found: dict[int, Manifest | None]) -> None:
        """Apply the manifests after the head up to ``newest``: all of them, linked each to
        the one before (``prev``); or, when far behind, or when some were deleted by object
        gc (or one is not in the chain: a paused writer's, put where gc deleted one), the
        newest index checkpoint and the manifests from its txn on."""
        top = found.get(newest) or self._get_manifest(newest)
        if top is None:
            raise Corruption(f"manifest {newest} was listed but cannot be read")
        found[newest] = top
        start = self.head + 1
        cp = top.checkpoint
        usable = cp is not None and cp[0] >= start
        chain = None
        if not (usable and (not self.head or newest - self.head > self.checkpoint_every)):
            chain = self._chain(start, newest, found, self.head_nonce if self.head else b"")
        if chain is None:
            if usable and cp is not None:
                chain = self._chain(cp[0], newest, found, b"")
            if chain is None:
                raise Corruption(f"the manifests from txn {start} to {newest} are not one "
                                 f"chain (missing or not linked) and no index checkpoint "
                                 f"covers the gap")
            assert cp is not None  # (usable)
            self._load_checkpoint(cp)  # its own manifest is applied again: the same runs
        for m in chain:
            self._apply(m)

    def _chain(self, first: int, last: int, found: dict[int, Manifest | None],
               prev: bytes) -> list[Manifest] | None:
        """Manifests first..last, each linked to the one before (the first to ``prev``,
        if given); None if one is missing or a link is broken."""
        want = [t for t in range(first, last + 1) if t not in found]
        if len(want) > 4:
            with ThreadPoolExecutor(8) as pool:
                for t, m in zip(want, pool.map(self._get_manifest, want)):
                    found[t] = m
        else:
            for t in want:
                found[t] = self._get_manifest(t)
        chain: list[Manifest] = []
        for t in range(first, last + 1):
            m = found.get(t)
            if m is None:
                if t == 1:
                    continue  # txn 1 (an empty store) is never published: manifests start at 2
                return None
            if m.prev and prev and m.prev != prev:
                return None
            chain.append(m)
            prev = m.nonce
        return chain

    def _load_checkpoint(self, cp: tuple[int, str]) -> None:
        """Replace the page index by the checkpoint's. Its objects keep the numbers this
        handle gave them (new ones are appended): a reader thread between an index
        lookup and its object lookup never finds another object under that number."""
        data = self._retry(self.client.get, cp[1])
        _txn, objects, index = decode_index(data, cp[1], SHIFT)
        local = []
        for key, size in objects:
            no = self._objno.get(key)
            if no is None:
                no = self._objno[key] = len(self.objects)
                self.objects.append(key)
                self.sizes.append(size)
            local.append(no << SHIFT)
        self.index = {p: local[loc >> SHIFT] | (loc & MASK) for p, loc in index.items()}

    def _apply(self, m: Manifest) -> None:
        """Add a manifest's runs to the index and make it the head."""
        ps = self.page_size = m.page_size
        for first, n in m.drop:          # pages compaction unmapped (free past the lease)
            for page in range(first, first + n):
                self.index.pop(page, None)
        if m.object:
            no = self._objno.get(m.object)
            if no is None:
                no = self._objno[m.object] = len(self.objects)
                self.objects.append(m.object)
                self.sizes.append(max((off + n for _, n, off in m.runs), default=0))
            index, base = self.index, no << SHIFT
            for first, nbytes, off in m.runs:
                for i in range(-(-nbytes // ps)):
                    index[first + i] = base | (off + i * ps)
        self.head, self.meta_bytes, self.head_nonce = m.txn, m.meta, m.nonce
        self.epoch = max(self.epoch, m.epoch)
        if m.checkpoint:
            self.checkpoint = m.checkpoint
        self.published.append((m.txn, m.time_ns))
        while len(self.published) > 1024:
            self._floor = self.published.popleft()

    def reuse_bound(self) -> int:
        """The newest txn published more than ``lease`` seconds ago (as far as known)."""
        if self.lease <= 0:
            return self.head
        cutoff = time.time_ns() - int(self.lease * 1e9)
        best = self._floor[0] if self._floor[1] <= cutoff else 0
        for txn, t in self.published:
            if t <= cutoff and txn > best:
                best = txn
        return best

    # ---- BlockIO ---------------------------------------------------------
    @property
    def unit(self) -> int:
        """The allocation unit a new database here uses: a whole page (the index maps
        pages to objects)."""
        return self.page_size

    def pread(self, size: int, offset: int) -> bytes:
        ps = self.page_size
        if offset < 2 * ps:
            # both slots answer the head's record: there is no older one to fall back to,
            # and an empty slot would read as a damaged one
            rec = self.meta_bytes
            offset -= ps if offset >= ps else 0
            # the whole record at once: a second read for its pending bytes appends bytes
            # that decode() ignores, so a record replaced meanwhile cannot be torn
            return rec[offset:] if offset == 0 else rec[offset:offset + size]
        page, within = divmod(offset, ps)
        out = []
        index = self.index
        while size > 0:
            loc = index.get(page)
            if loc is None:
                break
            n = min(size, ps - within)
            try:
                piece = self._read_object(loc >> SHIFT, (loc & MASK) + within, n)
            except ObjectNotFound as e:
                # deleted by object gc after compaction moved the page: the newer
                # manifests say where it is now
                moved = self._relocated(page, loc)
                if moved is None:
                    raise self._missing(e.args[0]) from None
                try:
                    piece = self._read_object(moved >> SHIFT, (moved & MASK) + within, n)
                except ObjectNotFound as gone:
                    raise self._missing(gone.args[0]) from None
            out.append(piece)
            if len(piece) < n:
                break
            size -= n
            page, within = page + 1, 0
        return b"".join(out)

    def _read_object(self, no: int, start: int, n: int) -> bytes:
        key, size = self.objects[no], self.sizes[no]
        out = []
        while n > 0 and start < size:
            chunk, at = divmod(start, CHUNK)
            data = self.cache.get(key, chunk)
            if data is None:
                lo = chunk * CHUNK
                try:
                    data = self._retry(self.client.get_range, key, lo, min(lo + CHUNK, size))
                except ObjectNotFound:
                    raise ObjectNotFound(key) from None
                self.cache.put(key, chunk, data)
            piece = data[at:at + n]
            if not piece:
                break
            out.append(piece)
            n -= len(piece)
            start += len(piece)
        return b"".join(out)

    def _missing(self, key: str) -> Corruption:
        return Corruption(f"object {key} is missing (deleted while a snapshot older than the "
                          f"lease of {self.lease} s still read it?)")

    def _relocated(self, page: int, loc: int) -> int | None:
        """Where ``page`` is now, after the newest manifests, if not at ``loc``."""
        with self.lock:
            self.refresh()
            now = self.index.get(page)
        return now if now is not None and now != loc else None

    def pwrite(self, data: BytesLike, offset: int) -> None:
        ps = self.page_size
        if offset < 2 * ps:
            if offset in (0, ps) and bytes(data[:8]) == metamod.MAGIC:
                self._commit(bytes(data))
            return
        self._buf[offset // ps] = bytes(data)

    def sync(self) -> None:
        pass  # a manifest PUT that returned is durable

    def size(self) -> int:
        if not self.meta_bytes:
            return 0
        m = metamod.decode(self.meta_bytes)
        return m.page_count * self.page_size

    def truncate(self, size: int) -> None:
        pass  # pages past the page count are unreachable; object gc drops their objects

    def reserve(self, size: int) -> None:
        pass  # a bucket does not fill up: nothing to set aside (and no zeros to upload)

    def close(self) -> None:
        self.client.close()

    # ---- the commit --------------------------------------------------------
    def _commit(self, data: bytes) -> None:
        """Publish the buffered runs and the meta record in ``data`` as manifest txn."""
        buf, self._buf = self._buf, {}
        meta = metamod.decode(data)
        record = data[:metamod.META_SIZE + len(meta.pending)]
        txn = meta.txn
        if txn == 1 and not self.head:
            self.meta_bytes = record   # a new database: its first manifest will be txn 2
            return
        with self.lock:
            if txn <= self.head:       # a manifest of another writer was loaded meanwhile
                raise ManifestConflict(txn)
            known = self.confirmed
        drop = self._copy_compacted(buf) if self.compact else []
        runs: list[tuple[int, int, int]] = []
        parts: list[bytes] = []
        off, ps = 0, self.page_size
        for first in sorted(buf):
            run = buf[first]
            if runs and runs[-1][1] % ps == 0 and runs[-1][0] + runs[-1][1] // ps == first:
                f, n, o = runs[-1]         # it follows a run of whole pages: extend that
                runs[-1] = (f, n + len(run), o)
            else:
                runs.append((first, len(run), off))
            parts.append(run)
            off += len(run)
        key = None
        blob = b"".join(parts)
        if blob:
            key = f"{DATA_PREFIX}{txn:020d}-{self.writer}-{os.urandom(4).hex()}"
            self._retry(self.client.put, key, blob)  # TransientError -> OSError: not applied
        cp = self.checkpoint
        if (cp[0] if cp else 0) + self.checkpoint_every <= txn:
            cp = self._write_checkpoint(txn, key, blob, runs)
        epoch = self.epoch + (1 if self.bump_epoch else 0)
        m = Manifest(txn, record, self.page_size, epoch, key, runs, cp, time.time_ns(),
                     self.writer, os.urandom(16), self.head_nonce, drop)
        self._put_manifest(m)
        if time.monotonic() - known > self.lease:
            self._check_linked(m)
        with self.lock:
            if key:
                for chunk in range(0, len(blob), CHUNK):
                    self.cache.put(key, chunk // CHUNK, blob[chunk:chunk + CHUNK])
            self._apply(m)
            self.confirmed = time.monotonic()
            self.bump_epoch = False
            self.compact, self.dead = set(), set()
            self.last_object = key

    def _copy_compacted(self, buf: dict[int, bytes]) -> list[tuple[int, int]]:
        """Add to this commit's object every indexed page that lives in an object being
        compacted (and that the commit does not write anew): the next manifest then maps
        those pages here, and the old objects are left to object gc. Pages in ``dead``
        (free since before the lease: no reader may read them) are not copied but
        unmapped; returns them as runs, for the manifest's ``drop``."""
        ps, chosen, dead = self.page_size, self.compact, self.dead
        with self.lock:
            moved = [(p, loc) for p, loc in self.index.items() if loc >> SHIFT in chosen]
        written: set[int] = set()
        for first, run in buf.items():
            written.update(range(first, first + -(-len(run) // ps)))
        drop: list[list[int]] = []
        for page, loc in sorted(moved):
            if page in written:
                continue
            if page in dead:
                if drop and drop[-1][0] + drop[-1][1] == page:
                    drop[-1][1] += 1
                else:
                    drop.append([page, 1])
                continue
            no, off = loc >> SHIFT, loc & MASK
            try:
                buf[page] = self._read_object(no, off, min(ps, self.sizes[no] - off))
            except ObjectNotFound as e:
                raise Corruption(f"object {e.args[0]} is missing: compaction cannot copy "
                                 f"page {page} out of it") from None
        return [(first, n) for first, n in drop]  # (as a decoded manifest's)

    def small_objects(self, below: int, budget: int, sparse: float = 0.5,
                      dead: set[int] | frozenset[int] = frozenset()) -> set[int]:
        """What compaction should rewrite: objects smaller than ``below`` bytes (merged
        into one, when there are two or more), and objects of any size whose indexed
        pages not in ``dead`` fill less than ``sparse`` of them (their other pages were
        reused or freed: rewritten, they shrink); at most ``budget`` bytes of pages."""
        with self.lock:
            live: dict[int, int] = {}
            for page, loc in self.index.items():
                no = loc >> SHIFT
                live[no] = live.get(no, 0) + (page not in dead)
        ps = self.page_size
        small, thin, total = set(), set(), 0
        for no, pages in sorted(live.items()):
            size, need = self.sizes[no], pages * ps
            if total + need > budget:
                continue
            if size < below:
                small.add(no)
            elif need < size * sparse:
                thin.add(no)
            else:
                continue
            total += need
        return (small if len(small) > 1 else set()) | thin

    def _check_linked(self, m: Manifest) -> None:
        """After creating manifest m.txn on a head learned more than ``lease`` seconds ago:
        was the number free only because object gc deleted the manifests below the newest
        checkpoint while this writer was paused? Then the chain went on without it (the
        next manifest does not link to it): ManifestConflict, and the transaction is
        rebased onto the real head. One LIST (and one GET if later manifests exist)."""
        keys = self._retry(self.client.list_after, MANIFEST_PREFIX, manifest_key(m.txn))
        if not any(t is not None and t > m.txn for t in map(txn_of_key, keys)):
            return
        nxt = self._get_manifest(m.txn + 1)
        if nxt is not None and (not nxt.prev or nxt.prev == m.nonce):
            return
        raise ManifestConflict(m.txn)

    def _write_checkpoint(self, txn: int, key: str | None, blob: bytes,
                          runs: list[tuple[int, int, int]]) -> tuple[int, str]:
        with self.lock:
            objects = list(zip(self.objects, self.sizes))
            index = dict(self.index)
        if key:
            no, ps = len(objects), self.page_size
            objects.append((key, len(blob)))
            for first, nbytes, off in runs:
                for i in range(-(-nbytes // ps)):
                    index[first + i] = (no << SHIFT) | (off + i * ps)
        # only the objects some page still lives in, numbered anew: the checkpoint does not
        # grow with every object ever written
        used = sorted({loc >> SHIFT for loc in index.values()})
        renum = {old: new for new, old in enumerate(used)}
        objects = [objects[o] for o in used]
        index = {p: (renum[loc >> SHIFT] << SHIFT) | (loc & MASK) for p, loc in index.items()}
        ckey = f"{INDEX_PREFIX}{txn:020d}-{self.writer}-{os.urandom(4).hex()}"
        self._retry(self.client.put, ckey, encode_index(txn, objects, index, SHIFT))
        return (txn, ckey)

    def _put_manifest(self, m: Manifest) -> None:
        """Create manifest m.txn; settle an ambiguous outcome by reading it back."""
        key, data = manifest_key(m.txn), m.encode()
        unsure = None
        for i in range(self.attempts):
            try:
                self.client.put_new(key, data)
                return
            except ObjectExists:
                pass
            except TransientError as e:
                unsure = e   # it may have landed: read it back
            try:
                there = self._retry(self.client.get, key)
            except ObjectNotFound:
                time.sleep(self.backoff * (2 ** i))
                continue     # it did not land: put again (create-if-absent: never twice)
            except TransientError as e:
                unsure = e
                time.sleep(self.backoff * (2 ** i))
                continue
            if there == data:
                return       # our own put landed before it reported failure
            raise ManifestConflict(m.txn)
        raise UncertainCommit(f"publishing txn {m.txn} failed ({unsure}); whether it landed "
                              f"is unknown, so the database was closed: open it again to see")
