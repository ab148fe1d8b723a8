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
from itertools import compress
from struct import Struct

from .errors import Locked, LockFileReplaced, NestedTransaction, ReadersFull, WriteFailed

SLOTS = 126
_SLOT = Struct("<QQ")          # pid, txn
_SLOT_TXNS = Struct("<" + "Q8x" * (SLOTS - 1) + "Q")  # the txn of every slot
_TABLE = 64                    # first slot's offset
_LOCK_SIZE = 4096
_SLOT_LOCK_BASE = 4096         # fcntl byte that guards slot i: 4096 + i
_registry: dict[tuple[object, ...], "Shared"] = {}
_registry_lock = threading.Lock()


class Shared:
    """One per lock file (or per in-memory database) per process."""
    identity: tuple[int, int] | None
    forked_without_slot: bool
    writer: threading.Lock
    mutex: threading.Lock
    slot: int
    slot_txn: int
    slot_q: memoryview | None
    slot_index: int

    def __init__(self, fd: int | None, path: str | None = None):
        self.fd = fd
        self.path = path
        self.identity = None if fd is None else _identity(os.fstat(fd))
        self.mm = mmap.mmap(fd, _LOCK_SIZE) if fd is not None else None
        self.forked_without_slot = False
        self.writer = threading.Lock()
        self.writer_thread: threading.Thread | None = None   # the thread holding it
        # set by the holder: called (by a waiter) to abort the holder's transaction when
        # its thread has ended (see acquire_writer)
        self.abandoned: Callable[[threading.Thread], None] | None = None
        self.mutex = threading.Lock()
        self.pins: dict[int, int] = {}   # txn -> how many open snapshots pin it
        self.slot = -1
        self.slot_txn = 0
        self.slot_q = None      # the lock file as u64s; slot_q[slot_index] = our oldest pin
        self.slot_index = 0
        if self.mm is not None and fd is not None and not self._claim(fd):
            self.mm.close()
            raise ReadersFull(f"all {SLOTS} reader slots of {path} are held by live processes "
                              f"(each process with the database open takes one), so this one "
                              f"could not read safely; close the database in some of them, or "
                              f"share one handle between the threads of a process")
        if self.mm is not None:
            self.slot_q = memoryview(self.mm).cast("Q")
            self.slot_index = (_TABLE + 16 * self.slot + 8) // 8
            _SLOT.pack_into(self.mm, _TABLE + 16 * self.slot, os.getpid(), 0)
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
        if self.fd is None or self.path is None:
            return
        try:
            now = _identity(os.stat(self.path))
        except OSError:
            now = None
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
    # pin/unpin run for every snapshot, so they are kept flat: one lock, a dict, and
    # (only when this process's oldest pin changes) one store into the mapped slot.
    # (A lock-free variant lost pins to a race between a txn's last unpin and a
    # concurrent pin of the same txn; the lock costs ~0.2 us and keeps it exact.)
    def pin(self, txn: int) -> None:
        with self.mutex:
            pins = self.pins
            pins[txn] = pins.get(txn, 0) + 1
            if not self.slot_txn or txn < self.slot_txn:
                self._set_slot(txn)

    def unpin(self, txn: int) -> None:
        with self.mutex:
            pins = self.pins
            n = pins[txn] - 1
            if n:
                pins[txn] = n
                return
            del pins[txn]
            if txn == self.slot_txn:
                self._set_slot(min(pins) if pins else 0)

    def oldest_pin(self) -> int | None:
        """This process's oldest pinned txn (None: no snapshot is open)."""
        with self.mutex:
            return min(self.pins) if self.pins else None

    def _after_fork_in_child(self) -> None:
        """Make this process's copy its own: fork copies the memory but no fcntl lock,
        so the child holds neither the writer lock nor the parent's reader slot.
        Thread locks are new (a thread that held one does not exist here); the child
        claims a slot and publishes in it the oldest txn its inherited snapshots pin.
        The parent waits for this (see _fork_handshake), so no page those snapshots
        read can be reused in between."""
        self.writer, self.mutex = threading.Lock(), threading.Lock()
        self.writer_thread = self.abandoned = None
        if self.mm is None or self.fd is None:
            return
        self.slot = -1
        if not self._claim(self.fd):
            self.forked_without_slot = True  # Database poisons its handles (see db.py)
            return
        self.slot_index = (_TABLE + 16 * self.slot + 8) // 8
        _SLOT.pack_into(self.mm, _TABLE + 16 * self.slot, os.getpid(), 0)
        self._set_slot(min(self.pins) if self.pins else 0)

    def _set_slot(self, txn: int) -> None:
        self.slot_txn = txn
        if self.slot_q is not None:
            self.slot_q[self.slot_index] = txn

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
        txns = _SLOT_TXNS.unpack_from(mm, _TABLE + 8)
        for i in compress(range(SLOTS), txns):  # the used slots, found at C speed
            if i == self.slot:
                continue
            txn = txns[i]
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
            if self.slot_q is not None:
                self.slot_q.release()
                self.slot_q = None
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
# The parent holds every Shared's mutex across fork(), so no pin changes and no
# writer computes a reuse bound, and waits until the child has claimed its reader
# slots: from the first instruction of the child, its inherited snapshots are
# visible to writers. The wait is one pipe read, taken only while a database
# file is open.
_every: "weakref.WeakSet[Shared]" = weakref.WeakSet()
_handshake: list[int] = []   # [read fd, write fd] of the fork in progress


def _before_fork() -> None:
    _registry_lock.acquire()
    for s in list(_every):
        s.mutex.acquire()
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
        s.mutex.release()
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
