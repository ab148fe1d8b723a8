"""The writer lock and the reader table, shared by every handle in a process.

Beside ``data.cow`` lives ``data.cow-lock``: byte 0 is the writer lock
(``fcntl`` record lock) and a table of reader slots (pid, txn) that writers
read to learn the oldest txn a live reader may still use. A process claims
one slot, holds a record lock on it for as long as it lives (so a dead
process's slot is recognised and reaped), and keeps in it the oldest txn
pinned by any of its snapshots. In-process, a ``threading.Lock`` makes
threads take turns as the writer; fcntl locks would not, since they belong
to the process.

fcntl locks vanish when *any* descriptor of the file is closed, so there is
exactly one ``Shared`` per lock file per process, found by inode.
"""
import errno
import fcntl
import gc
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable
from functools import cache
from itertools import compress
from struct import Struct
from types import ModuleType
from typing import Any

from ._accelerators import load, wanted
from .errors import Locked, LockFileReplaced, NestedTransaction, ReadersFull, WriteFailed

SLOTS = 126
_SLOT = Struct("<QQ")          # pid, txn
_TABLE = 64                    # first slot's offset
_LOCK_SIZE = 4096
_SLOT_LOCK_BASE = 4096         # fcntl byte that guards slot i: 4096 + i
_registry: dict[tuple[object, ...], "Shared"] = {}
_registry_lock = threading.Lock()


class PyPins:
    """A process's reader pins of one lock file: for each txn, how many open snapshots
    pin it, and the oldest such txn published in this process's slot of the lock file
    (``attach(map, index)``: u64 number ``index`` of the mapped lock file), which writers
    of every process read. ``hold(txn)`` pins and returns a PyPin that unpins once, when
    released or deallocated. ``freeze()`` before fork holds every change until ``thaw()``
    (the parent) or ``after_fork()`` (the child). The pure-Python twin of
    ``_pins_c.Pins``, which needs no lock (its methods are atomic under the GIL)."""

    def __init__(self) -> None:
        self.mutex: threading.Lock = threading.Lock()
        self._counts: dict[int, int] = {}
        self.slot_txn: int = 0
        self._slot: memoryview | None = None
        self._index = 0

    def pin(self, txn: int) -> None:
        with self.mutex:
            counts = self._counts
            counts[txn] = counts.get(txn, 0) + 1
            if not self.slot_txn or txn < self.slot_txn:
                self._set_slot(txn)

    def unpin(self, txn: int) -> None:
        with self.mutex:
            counts = self._counts
            n = counts[txn] - 1
            if n:
                counts[txn] = n
                return
            del counts[txn]
            if txn == self.slot_txn:
                self._set_slot(min(counts) if counts else 0)

    def hold(self, txn: int) -> "PyPin":
        self.pin(txn)
        return PyPin(self, txn)

    def oldest(self) -> int | None:
        with self.mutex:
            return min(self._counts) if self._counts else None

    def counts(self) -> dict[int, int]:
        with self.mutex:
            return dict(self._counts)

    def attach(self, buf: mmap.mmap, index: int) -> None:
        self.detach()
        self._slot, self._index = memoryview(buf).cast("Q"), index
        self._set_slot(self.slot_txn)

    def detach(self) -> None:
        if self._slot is not None:
            self._slot.release()
            self._slot = None

    def freeze(self) -> None:
        self.mutex.acquire()

    def thaw(self) -> None:
        self.mutex.release()

    def after_fork(self) -> None:
        self.mutex = threading.Lock()  # held by the parent's freeze(): a new one

    def _set_slot(self, txn: int) -> None:
        self.slot_txn = txn
        if self._slot is not None:
            self._slot[self._index] = txn


class PyPin:
    """One pin of ``txn`` (see PyPins.hold)."""
    __slots__ = ("_pins", "txn")

    def __init__(self, pins: PyPins, txn: int) -> None:
        self._pins: PyPins | None = pins
        self.txn: int = txn

    def release(self) -> None:
        pins, self._pins = self._pins, None
        if pins is not None:
            pins.unpin(self.txn)

    __del__ = release


PINS_API = 3  # the _pins_c this code is written against
_pins_c = load("cowdb", "_pins_c", PINS_API)
pins_c: ModuleType | None = _pins_c if wanted() else None  # what runs (snapshot.py takes
                                                            # SnapshotBase from it)
Pins: type[PyPins] = PyPins if pins_c is None else pins_c.Pins  # C or its Python twin


class Shared:
    """One per lock file (or per in-memory database) per process."""
    identity: tuple[int, int] | None
    forked_without_slot: bool
    writer: threading.Lock
    slot: int
    readers: PyPins  # or its C twin, _pins_c.Pins (the same methods)
    pin: Callable[[int], None]
    unpin: Callable[[int], None]
    hold: Callable[[int], Any]

    def __init__(self, fd: int | None, path: str | None = None):
        self.fd = fd
        self.path = path
        self._bpath = None if path is None else os.fsencode(path)  # (stat()ed per commit)
        self.identity = None if fd is None else _identity(os.fstat(fd))
        self.mm = mmap.mmap(fd, _LOCK_SIZE) if fd is not None else None
        self.forked_without_slot = False
        self.writer = threading.Lock()
        self.writer_thread: threading.Thread | None = None   # the thread holding it
        # set by the holder: called (by a waiter) to abort the holder's transaction when
        # its thread has ended (see acquire_writer)
        self.abandoned: Callable[[threading.Thread], None] | None = None
        self.readers = Pins()   # txn -> how many open snapshots pin it; the oldest in our slot
        # bound once: a snapshot's open + close is these calls (see Pins)
        self.pin, self.unpin, self.hold = self.readers.pin, self.readers.unpin, self.readers.hold
        self.slot = -1
        if self.mm is not None and fd is not None and not self._claim(fd):
            self.mm.close()
            raise ReadersFull(f"all {SLOTS} reader slots of {path} are held by live processes "
                              f"(each process with the database open takes one), so this one "
                              f"could not read safely; close the database in some of them, or "
                              f"share one handle between the threads of a process")
        if self.mm is not None:
            _SLOT.pack_into(self.mm, _TABLE + 16 * self.slot, os.getpid(), 0)
            self.readers.attach(self.mm, (_TABLE + 16 * self.slot + 8) // 8)
        self.users = 0
        self.key: tuple[object, ...] | None = None
        _every.add(self)

    # ---- writer --------------------------------------------------------
    def acquire_writer(self, timeout: float | None) -> None:
        me = threading.current_thread()
        if self.writer_thread is me:
            gc.collect()  # a transaction this thread dropped in a reference cycle aborts now
            if self.writer_thread is me:
                raise NestedTransaction(
                    "this thread already has an open write transaction; commit or abort it "
                    "before starting another (if you no longer hold it, db.abort_write() "
                    "aborts it)")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.writer.acquire(blocking=False):
            self._wait_writer(deadline, timeout)
        try:
            if self.fd is not None:
                self._lock_file(self.fd, deadline, timeout)
                try:
                    self.check_identity()
                except BaseException:
                    fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 0)
                    raise
        except BaseException:
            self.writer.release()
            raise
        self.writer_thread = me

    def _wait_writer(self, deadline: float | None, timeout: float | None) -> None:
        """Wait for another thread's writer lock; abort its transaction if that thread has
        ended (nothing else could ever commit or abort it)."""
        while True:
            holder, abandoned = self.writer_thread, self.abandoned
            if holder is not None and not holder.is_alive() and abandoned is not None:
                abandoned(holder)
            left = None if deadline is None else deadline - time.monotonic()
            if self.writer.acquire(timeout=0.05 if left is None else max(0.0, min(0.05, left))):
                return
            if left is not None and left <= 0.05:
                raise Locked(f"another thread held the writer lock for {timeout} s; try again "
                             f"or pass a larger timeout=")

    def _lock_file(self, fd: int, deadline: float | None, timeout: float | None) -> None:
        delay = 0.001
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
                return
            except OSError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise Locked(f"another process holds the writer lock (waited {timeout} s); "
                                 f"try again later or pass a larger timeout=") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def check_identity(self) -> None:
        """Raise LockFileReplaced if the lock file's path no longer names the file this
        process locks (deleted, or replaced by another file): a process opening the
        database now would lock the new file and write beside this one."""
        if self.fd is None or self._bpath is None:
            return
        now = file_identity(self._bpath)
        if now != self.identity:
            raise LockFileReplaced(
                f"the lock file {self.path} was {'deleted' if now is None else 'replaced'} "
                f"while this process had the database open, so other processes no longer "
                f"see its writer lock or its readers and two writers could write at once; "
                f"nothing was written. Close the database in every process and open it "
                f"again, and never delete a -lock file while its database is in use")

    def release_writer(self) -> None:
        self.writer_thread = self.abandoned = None
        if self.fd is not None:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 0)
        self.writer.release()

    # ---- readers -------------------------------------------------------
    @property
    def pins(self) -> dict[int, int]:
        """{txn: how many open snapshots of this process pin it}."""
        return self.readers.counts()

    @property
    def slot_txn(self) -> int:
        """The txn published in this process's slot: its oldest pin (0: none)."""
        return self.readers.slot_txn

    def oldest_pin(self) -> int | None:
        """This process's oldest pinned txn (None: no snapshot is open)."""
        return self.readers.oldest()

    def _after_fork_in_child(self) -> None:
        """Make this process's copy its own: fork copies the memory but no fcntl lock,
        so the child holds neither the writer lock nor the parent's reader slot.
        Thread locks are new (a thread that held one does not exist here); the child
        claims a slot and publishes in it the oldest txn its inherited snapshots pin.
        The parent waits for this (see _fork_handshake), so no page those snapshots
        read can be reused in between."""
        self.writer = threading.Lock()
        self.writer_thread = self.abandoned = None
        self.readers.after_fork()
        if self.mm is None or self.fd is None:
            return
        self.readers.detach()  # the parent's slot is the parent's
        self.slot = -1
        if not self._claim(self.fd):
            self.forked_without_slot = True  # Database poisons its handles (see db.py)
            return
        _SLOT.pack_into(self.mm, _TABLE + 16 * self.slot, os.getpid(), 0)
        self.readers.attach(self.mm, (_TABLE + 16 * self.slot + 8) // 8)

    def _claim(self, fd: int) -> bool:
        for i in range(SLOTS):
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SLOT_LOCK_BASE + i)
            except OSError:
                continue
            self.slot = i
            return True
        return False  # table full: this process's readers are not visible to other writers

    def oldest_reader(self) -> int | None:
        """The smallest txn pinned by a live reader in any process, or None."""
        best = self.oldest_pin()
        mm, fd = self.mm, self.fd
        if mm is None or fd is None:  # in memory (both are None), or closed
            return best
        for i, txn in used_slots(mm, _TABLE + 8, _SLOT.size, SLOTS, self.slot):
            try:  # if we can lock its slot, its owner is gone: reap it
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SLOT_LOCK_BASE + i)
            except OSError:
                best = txn if best is None else min(best, txn)
                continue
            _SLOT.pack_into(mm, _TABLE + 16 * i, 0, 0)
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, _SLOT_LOCK_BASE + i)
        return best

    def close(self) -> None:
        if self.mm is not None and self.fd is not None:  # both set, or both None
            self.readers.detach()
            if self.slot >= 0:
                _SLOT.pack_into(self.mm, _TABLE + 16 * self.slot, 0, 0)
            self.mm.close()
            os.close(self.fd)  # releases every fcntl lock of this process on the file
            self.mm = None
            self.fd = None     # so a late release_writer() touches no (reused) descriptor


def open_shared(lock_path: str | None) -> Shared:
    """The process-wide Shared for a lock file (a fresh one for in-memory databases)."""
    if lock_path is None:
        mem = Shared(None)
        mem.users = 1
        return mem
    with _registry_lock:
        # Look the file up before opening it: closing a second descriptor of
        # it would drop every fcntl lock this process holds on it.
        s: Shared | None
        try:
            st = os.stat(lock_path)
            s = _registry.get((st.st_dev, st.st_ino, os.getpid()))
        except OSError:
            s = None
        if s is not None:
            s.users += 1
            return s
        fd = _open_lock_file(lock_path)
        key: tuple[object, ...]  # (device, inode, pid), or (path, pid) without a lock file
        if fd is None:
            key = (lock_path, os.getpid())
        else:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino, os.getpid())
        try:
            s = Shared(fd, os.path.abspath(lock_path))  # compared after any chdir()
        except BaseException:
            if fd is not None:
                os.close(fd)  # releases the slot locks _claim tried
            raise
        s.key, s.users = key, 1
        _registry[key] = s
        return s


# ---- fork ----------------------------------------------------------------
# The parent freezes every Shared's pins across fork() (their slot and oldest pin only
# fall, so no writer computes a reuse bound past a snapshot the child inherits), and
# waits until the child has claimed its reader slots: from the first instruction of
# the child, its inherited snapshots are visible to writers. The wait is one pipe
# read, taken only while a database file is open.
_every: "weakref.WeakSet[Shared]" = weakref.WeakSet()
_handshake: list[int] = []   # [read fd, write fd] of the fork in progress


def _before_fork() -> None:
    _registry_lock.acquire()
    for s in list(_every):
        s.readers.freeze()
    if any(s.mm is not None for s in _every):
        _handshake[:] = os.pipe()


def _after_fork_in_parent() -> None:
    if _handshake:
        r, w = _handshake
        os.close(w)
        try:
            os.read(r, 1)   # the child claimed its slots (or died: end of file)
        finally:
            os.close(r)
            _handshake.clear()
    for s in list(_every):
        s.readers.thaw()
    _registry_lock.release()


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    pid = os.getpid()
    for key, s in list(_registry.items()):  # keyed by pid: a later open here finds it
        del _registry[key]
        s.key = key[:-1] + (pid,)
        _registry[s.key] = s
    for s in list(_every):
        s._after_fork_in_child()
    if _handshake:
        r, w = _handshake
        os.close(r)
        os.write(w, b"1")
        os.close(w)
        _handshake.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


def close_shared(s: Shared) -> None:
    with _registry_lock:
        s.users -= 1
        if s.users == 0:
            if s.key is not None:  # None: in memory, never registered
                _registry.pop(s.key, None)
            s.close()


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def py_used_slots(mm: Any, first: int, stride: int, count: int, own: int
                  ) -> list[tuple[int, int]]:
    """(slot, txn) of every reader slot but ``own`` whose txn is not 0: the u64s at
    ``first + stride * slot`` of the lock file's map. _pins_c.used_slots is its twin."""
    txns = _u64s(stride, count).unpack_from(mm, first)
    return [(i, txns[i]) for i in compress(range(count), txns) if i != own]


@cache
def _u64s(stride: int, count: int) -> Struct:
    return Struct("<" + f"Q{stride - 8}x" * (count - 1) + "Q")


def py_file_identity(path: bytes) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file ``path`` names, or None where there is none.
    _pins_c.file_identity is its twin."""
    try:
        return _identity(os.stat(path))
    except OSError:
        return None


# the lock file's per-commit checks: in C where built (see _pins_c.c)
used_slots: Callable[[Any, int, int, int, int], list[tuple[int, int]]] = \
    py_used_slots if pins_c is None else pins_c.used_slots
file_identity: Callable[[bytes], tuple[int, int] | None] = \
    py_file_identity if pins_c is None else pins_c.file_identity


def _open_lock_file(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError:
        return None  # read-only directory or file: no cross-process registry
    try:
        _allocate(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _allocate(fd: int, path: str) -> None:
    """Give the lock file real blocks before it is mapped: a store into a mapped hole on
    a full disk is SIGBUS, which kills the interpreter. (posix_fallocate never changes
    bytes already written, so a process using the file meanwhile loses nothing.)"""
    try:
        os.posix_fallocate(fd, 0, _LOCK_SIZE)
        return
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise WriteFailed(f"cannot allocate the lock file {path}: {e.strerror}; free some "
                              f"space on that file system and open the database again") from e
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    except AttributeError:
        pass  # no posix_fallocate on this platform
    if os.fstat(fd).st_size < _LOCK_SIZE:   # a file system that cannot preallocate
        os.ftruncate(fd, _LOCK_SIZE)
