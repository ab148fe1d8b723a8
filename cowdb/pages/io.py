"""Block devices under the page store: an OS file and a bytearray.

The page store talks to storage only through this small interface
(``pread``, ``pwrite``, ``sync``, ``size``, ``truncate``, ``close``), so the
fault-injection tests can slip a faulty device underneath it and an
in-memory database is the same code over a bytearray.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeAlias

from ..errors import DatabaseClosed, DatabaseNotFound, ReadOnly

# What pwrite takes: an image is built in a bytearray and written without a copy.
BytesLike: TypeAlias = bytes | bytearray | memoryview


class BlockIO:
    """The contract. Offsets and sizes are in bytes."""

    def pread(self, size: int, offset: int) -> bytes: raise NotImplementedError
    def pwrite(self, data: BytesLike, offset: int) -> None: raise NotImplementedError
    def sync(self) -> None: raise NotImplementedError
    def size(self) -> int: raise NotImplementedError
    def truncate(self, size: int) -> None: raise NotImplementedError
    def close(self) -> None: pass

    def reserve(self, size: int) -> None:
        """Make the file at least ``size`` bytes long, with its blocks allocated, so that
        writes below ``size`` cannot fail for want of space: zeros are written past the
        end. Written, not ``posix_fallocate``d: a write into a fallocated (unwritten)
        extent converts it, and a write past the end changes the size, and either makes
        the next fdatasync commit the file system's journal as well as flush the data."""
        cur = self.size()
        if size > cur:
            self.pwrite(bytes(size - cur), cur)


class MemoryIO(BlockIO):
    """A growable bytearray; ``sync`` does nothing."""
    buf: bytearray

    def __init__(self, data: bytes = b"") -> None:
        self.buf = bytearray(data)

    def pread(self, size: int, offset: int) -> bytes:
        return bytes(self.buf[offset:offset + size])

    def pwrite(self, data: BytesLike, offset: int) -> None:
        end = offset + len(data)
        if end > len(self.buf):
            self.buf.extend(bytes(end - len(self.buf)))
        self.buf[offset:end] = data

    def sync(self) -> None:
        pass

    def size(self) -> int:
        return len(self.buf)

    def truncate(self, size: int) -> None:
        del self.buf[size:]

    def reserve(self, size: int) -> None:
        pass  # memory is not a disk that fills: nothing to set aside (writes extend buf)


_datasync = getattr(os, "fdatasync", os.fsync)


class OsFileIO(BlockIO):
    """A file opened by path, read with pread and made durable with fsync."""
    fd: int

    def __init__(self, path: str, readonly: bool = False) -> None:
        flags = os.O_RDONLY if readonly else os.O_RDWR | os.O_CREAT
        self.fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
        self.path = path

    def pread(self, size: int, offset: int) -> bytes:
        try:
            return os.pread(self.fd, size, offset)
        except OSError as e:
            if self.fd < 0:  # a snapshot outlived its database
                raise DatabaseClosed("the database is closed; open it again with "
                                     "cowdb.open()") from e
            raise

    def pwrite(self, data: BytesLike, offset: int) -> None:
        n = os.pwrite(self.fd, data, offset)
        if n == len(data):  # (almost always: then no view of data is made)
            return
        view = memoryview(data)[n:]
        while view:  # pwrite may write less than asked
            offset += n
            n = os.pwrite(self.fd, view, offset)
            view = view[n:]

    def sync(self) -> None:
        # fdatasync flushes the data and what reading it back needs (the file size)
        # and skips the rest (times): on Linux about half the cost of fsync.
        _datasync(self.fd)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@contextmanager
def new_file(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path`` to build a file in; on success that file
    appears at ``path`` at once and whole, and the folder is synced; on any failure it
    is removed.

    The file is linked in, not renamed over: a file that another process made at
    ``path`` meanwhile (it may already hold commits) is never replaced; that raises
    FileExistsError. A file system without hard links gets a rename checked just
    before.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".cowdb-new-{os.getpid()}-{secrets.token_hex(4)}")
    try:  # 0644 less the umask, like any new file (mkstemp would make it 0600)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644))
    except FileNotFoundError as e:
        raise DatabaseNotFound(f"cannot create {path}: folder {folder} does not exist") from e
    except PermissionError as e:
        raise ReadOnly(f"cannot create {path}: folder {folder} is not writable") from e
    try:
        yield tmp
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            if os.path.exists(path):
                raise FileExistsError(f"{path} exists") from None
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
