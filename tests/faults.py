"""A block device that fails on purpose: the fault-injection layer under the page store.

``FaultyIO`` implements the ``BlockIO`` contract (pread, pwrite, sync, size,
truncate, close) over two images, the redb way:

* ``live``: what a process reading the file would see (the OS page cache);
* ``durable``: what is on the platter as of the last successful ``sync``.

Every mutating call (pwrite, sync, truncate) is one numbered *operation*.
A dry run with no fault counts the operations of a workload and records
their kinds (``ops``); a faulty run names one operation ``k`` and one fault:

``eio``        pwrite (or truncate) k raises EIO and nothing of it lands (a transient error)
``enospc``     the disk is full from pwrite k (counted among writes that grow
               the file) until ``free_space()``: every growing write raises ENOSPC
``torn``       pwrite k lands only a prefix of its bytes, then raises EIO
``fsync``      sync k raises EIO; as Linux does after a failed fsync, an
               arbitrary subset of the unsynced writes reached the disk and
               the rest never will (``durable`` takes that subset)
``power``      power is lost just before operation k: everything after the
               last sync is gone
``power_torn`` power is lost during pwrite k: the writes before it reached
               the disk in order, write k only partly (a prefix)
``power_lost`` power is lost before operation k and an arbitrary subset of
               the unsynced writes survives, sector by sector (512 bytes),
               in any order, so a page can be half old and half new

and, counted apart from those (reads are numbered among reads only):

``read_eio``   pread k raises EIO (a transient read error: the data is intact)

A lost power raises ``PowerLoss``, a ``BaseException``: like a killed
process, nothing the engine does afterwards reaches the disk (every later
operation raises it again). ``crash_image()`` is then what a reboot finds.
"""
from __future__ import annotations

import errno
import random
from contextlib import contextmanager

from cowdb.pages.io import BlockIO

SECTOR = 512

WRITE_KINDS = ("eio", "enospc", "torn")          # the run goes on after the error
SYNC_KINDS = ("fsync",)                          # the database is closed; the run stops
POWER_KINDS = ("power", "power_torn", "power_lost")
READ_KINDS = ("read_eio",)                       # the run goes on after the error
KINDS = WRITE_KINDS + SYNC_KINDS + POWER_KINDS + READ_KINDS


class PowerLoss(BaseException):
    """The machine lost power: the process stops here, nothing more reaches the disk."""


class FaultyIO(BlockIO):
    """A BlockIO over a live and a durable image that injects one fault at operation k."""

    def __init__(self, image: bytes = b"", kind: str | None = None, k: int = -1,
                 seed: int = 0):
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        self.live = bytearray(image)
        self.durable = bytearray(image)
        self.unsynced: list[tuple] = []   # ("w", offset, bytes) / ("t", size) since last sync
        self.kind, self.k = kind, k
        self.rng = random.Random(seed)
        self.ops: list[tuple[str, bool]] = []  # per operation: (kind, grows the file)
        self.fired: str | None = None     # what was injected, once it was
        self.full = False                 # ENOSPC for every growing write
        self.dead = False
        self.torn_write: tuple[int, bytes] | None = None  # power_torn: the partial write
        self.syncs = 0
        self.reads = 0                    # preads so far (read_eio's k counts these)
        self.checking = False             # the test's own reads: not counted, never failed

    # ---- the BlockIO contract -------------------------------------------
    def pread(self, size, offset):
        if self.dead:
            raise PowerLoss("the power is off")
        if self.checking:
            return bytes(self.live[offset:offset + size])
        n = self.reads
        self.reads += 1
        if n == self.k and self.kind == "read_eio":
            self._fire(f"EIO on pread {n} ({size} bytes at {offset})")
            raise OSError(errno.EIO, "Input/output error (injected)")
        return bytes(self.live[offset:offset + size])

    def size(self):
        return len(self.live)

    def close(self):
        pass  # the device outlives a Database; reopening it is the point

    def pwrite(self, data, offset):
        data = bytes(data)
        grows = offset + len(data) > len(self.live)
        n = self._op("write", grows)
        kind = self.kind
        if self.full and grows:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        if n == self.k:
            if kind == "eio":
                self._fire(f"EIO on pwrite op {n} ({len(data)} bytes at {offset})")
                raise OSError(errno.EIO, "Input/output error (injected)")
            if kind == "torn":
                cut = self.rng.randrange(0, len(data))
                self._apply_live(offset, data[:cut])
                self._fire(f"torn pwrite op {n}: {cut} of {len(data)} bytes at {offset}")
                raise OSError(errno.EIO, "Input/output error after a short write (injected)")
            if kind == "power_torn":
                cut = self.rng.randrange(0, len(data))
                self.torn_write = (offset, data[:cut])
                self._die(f"power lost during pwrite op {n}: {cut} of {len(data)} bytes "
                          f"at {offset} landed")
        self._apply_live(offset, data)
        self.unsynced.append(("w", offset, data))

    def sync(self):
        n = self._op("sync", False)
        if n == self.k and self.kind == "fsync":
            kept = self._subset()
            self.durable = self._replay(self.durable, kept)
            self.unsynced = []  # the kernel dropped the rest: it will never be written
            self._fire(f"fsync op {n} failed; {len(kept)} unsynced writes reached the disk")
            raise OSError(errno.EIO, "fsync: Input/output error (injected)")
        self.durable = bytearray(self.live)
        self.unsynced = []
        self.syncs += 1

    def truncate(self, size):
        n = self._op("truncate", False)
        if n == self.k and self.kind == "eio":
            self._fire(f"EIO on truncate op {n} (to {size} bytes)")
            raise OSError(errno.EIO, "Input/output error (injected)")
        del self.live[size:]
        self.unsynced.append(("t", size))

    @contextmanager
    def unfaulted(self):
        """Reads made by the checker, not by the workload: no read fault strikes them."""
        self.checking = True
        try:
            yield
        finally:
            self.checking = False

    # ---- faults -----------------------------------------------------------
    def _op(self, what: str, grows: bool) -> int:
        if self.dead:
            raise PowerLoss("the power is off")
        n = len(self.ops)
        self.ops.append((what, grows))
        if n == self.k:
            if self.kind in ("power", "power_lost"):
                self._die(f"power lost before {what} op {n}")
            if self.kind == "enospc":
                self.full = True
                self._fire(f"disk full from {what} op {n}")
        return n

    def _fire(self, what: str) -> None:
        self.fired = what

    def _die(self, what: str) -> None:
        self.fired = what
        self.dead = True
        raise PowerLoss(what)

    def free_space(self) -> None:
        """The operator made room: growing writes succeed again."""
        self.full = False

    def _apply_live(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if end > len(self.live):
            self.live.extend(bytes(end - len(self.live)))
        self.live[offset:end] = data

    def _subset(self) -> list[tuple]:
        """A random subset of the unsynced writes, cut into sectors (truncates: kept or not)."""
        out = []
        for rec in self.unsynced:
            if rec[0] == "t":
                if self.rng.random() < 0.5:
                    out.append(rec)
                continue
            _, offset, data = rec
            mode = self.rng.random()
            if mode < 0.3:
                out.append(rec)
            elif mode < 0.6:
                continue
            else:  # sector by sector
                first = offset - offset % SECTOR
                for s in range(first, offset + len(data), SECTOR):
                    if self.rng.random() < 0.5:
                        lo, hi = max(s, offset), min(s + SECTOR, offset + len(data))
                        out.append(("w", lo, data[lo - offset:hi - offset]))
        return out

    @staticmethod
    def _replay(image: bytearray, records) -> bytearray:
        img = bytearray(image)
        for rec in records:
            if rec[0] == "t":
                del img[rec[1]:]
                continue
            _, offset, data = rec
            end = offset + len(data)
            if end > len(img):
                img.extend(bytes(end - len(img)))
            img[offset:end] = data
        return img

    def crash_image(self) -> bytes:
        """What the disk holds after the power loss (or right now, if the power failed now)."""
        if self.kind == "power_torn" and self.torn_write is not None:
            recs = list(self.unsynced) + [("w", *self.torn_write)]
            return bytes(self._replay(self.durable, recs))
        if self.kind == "power_lost" and self.dead:
            return bytes(self._replay(self.durable, self._subset()))
        return bytes(self.durable)


def fault_points(ops: list[tuple[str, bool]], kind: str, reads: int = 0) -> list[int]:
    """The operation numbers where ``kind`` can strike, given a dry run's ``ops`` (and,
    for read faults, its number of ``reads``)."""
    if kind in READ_KINDS:
        return list(range(reads))
    if kind == "eio":
        return [i for i, (what, _) in enumerate(ops) if what in ("write", "truncate")]
    if kind in ("torn", "power_torn"):
        return [i for i, (what, _) in enumerate(ops) if what == "write"]
    if kind == "enospc":
        return [i for i, (what, grows) in enumerate(ops) if what == "write" and grows]
    if kind == "fsync":
        return [i for i, (what, _) in enumerate(ops) if what == "sync"]
    return list(range(len(ops)))
