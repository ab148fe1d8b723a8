"""The ``dbm`` interface over cowdb, made for ``shelve``: every sync is one version.

    import shelve, cowdb.dbm
    with cowdb.dbm.open_shelf("data.cow") as shelf:   # = shelve.Shelf(cowdb.dbm.open(..., "c"))
        shelf["config"] = {"retries": 3}
        shelf.sync()                                  # one commit: version 1

Writes and deletes go to an in-memory overlay; reads see the overlay over the
newest committed version. ``sync()`` (and ``close()``) commits the overlay
as one transaction, so the writer lock is held only for the length of a
commit and other processes may read and write the same file between syncs.
A sync with nothing pending commits nothing. ``.db`` is the underlying
:class:`cowdb.Database`, for its log, time travel, tags and branches.
"""
from __future__ import annotations

import builtins
import os
import shelve
from collections.abc import Iterator, MutableMapping
from enum import Enum
from typing import Any, Final, Self

from . import errors
from .checks import Key, as_bytes, check_key
from .db import Database
from .snapshot import Snapshot

__all__ = ["open", "open_shelf", "error", "ReadOnlyError", "CowDBM"]


class error(errors.CowdbError, OSError):
    """What ``cowdb.dbm`` raises, as ``dbm.error`` is what the stdlib modules raise.

    An error of the engine underneath is the ``__cause__``."""


class ReadOnlyError(error, errors.ReadOnly):
    """A write to a dbm opened with flag "r"."""


class _Deleted(Enum):
    DELETED = 0


_DELETED: Final = _Deleted.DELETED  # an overlay entry that hides a committed key
_CLOSED = "DBM object has already been closed"
_FLAGS = ("r", "w", "c", "n")


def open(file: str | bytes | os.PathLike[str] | os.PathLike[bytes], flag: str = "r",
         mode: int = 0o666, *, message: str = "dbm sync", author: str = "",
         durability: str = "sync", timeout: float | None = 5.0) -> CowDBM:
    """Open the cowdb database ``file`` as a dbm.

    flag: "r" read only, "w" read and write (both: the file must exist),
    "c" read and write, created if missing, "n" a new empty database (an
    existing file and its ``-lock`` file are removed first). ``mode`` sets
    the permissions of a file this call creates (less the umask). Each
    commit made by ``sync()`` has ``message`` and ``author``; ``durability``
    and ``timeout`` are those of :func:`cowdb.open`.
    """
    if not isinstance(flag, str) or flag[:1] not in _FLAGS:
        raise ValueError(f"flag must be one of 'r', 'w', 'c' or 'n', not {flag!r}")
    path = os.fsdecode(os.fspath(file))
    flag = flag[0]  # stdlib modules accept suffixes such as "cf"; cowdb has no such modes
    if os.path.isdir(path):
        raise error(f"{path} is a directory; give the path of a database file")
    if flag == "n":
        for p in (path, path + "-lock"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise error(f"cannot remove {p} to start a new database: {e.strerror}") from e
    created = not os.path.exists(path)
    if created and flag in "rw":
        raise error(f"no database at {path}; open it with flag 'c' to create one")
    try:
        db = Database(path, readonly=flag == "r", durability=durability, timeout=timeout)
    except errors.CowdbError as e:
        raise error(f"cannot open {path} as a cowdb dbm: {e}") from e
    if created:
        _chmod(path, mode)
    return CowDBM(db, message, author)


def open_shelf(file: str | bytes | os.PathLike[str] | os.PathLike[bytes], flag: str = "c",
               protocol: int | None = None, writeback: bool = False,
               **kw: Any) -> shelve.Shelf[Any]:
    """``shelve.Shelf(cowdb.dbm.open(file, flag, **kw), protocol, writeback)``: str keys,
    pickled values, and every ``sync()`` (and ``close()``) of the shelf one version."""
    return shelve.Shelf(open(file, flag, **kw), protocol, writeback)


def _chmod(path: str, mode: int) -> None:
    """Give the files we created ``mode`` less the umask, as os.open would have."""
    mask = _umask()
    for p in (path, path + "-lock"):
        try:
            os.chmod(p, mode & ~mask)
        except OSError:
            pass


def _umask() -> int:
    try:  # Linux says it without changing it (os.umask() must set one to read it)
        with builtins.open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _bytes(x: object, what: str = "keys") -> bytes:
    """A key or value as bytes: bytes-like as is, str as UTF-8, anything else InvalidType."""
    return as_bytes(x, f"dbm {what}", bad_text=errors.InvalidKey if what == "keys"
                    else errors.InvalidValue)


class CowDBM(MutableMapping[bytes, bytes]):
    """A dbm object: bytes keys to bytes values (str is encoded as UTF-8).

    Changes are buffered until ``sync()`` or ``close()``, which commit them as
    one version; reads see them at once. Iteration and ``keys()`` are in key
    order.
    """
    message: str
    author: str

    def __init__(self, db: Database, message: str = "dbm sync", author: str = ""):
        self._db: Database | None = db   # None once closed
        self._pending: dict[bytes, bytes | _Deleted] = {}
        self.message, self.author = message, author

    # ---- state -----------------------------------------------------------
    @property
    def db(self) -> Database:
        """The cowdb database underneath: ``d.db.log()``, ``d.db.at(v)``, tags, branches."""
        return self._live()

    def _live(self) -> Database:
        db = self._db
        if db is None:
            raise error(_CLOSED)
        return db

    def _read(self) -> Snapshot:
        try:
            return self._live().read()
        except errors.DatabaseClosed as e:
            raise error(_CLOSED) from e

    def _writable(self) -> dict[bytes, bytes | _Deleted]:
        db = self._live()
        if db.readonly:
            raise ReadOnlyError("this dbm was opened with flag 'r'; open it with 'w' or 'c' "
                                "to write")
        return self._pending

    # ---- reading -----------------------------------------------------------
    def __getitem__(self, key: Key) -> bytes:
        k = _bytes(key)
        v = self._pending.get(k) if self._pending else None
        if v is None:
            with self._read() as snap:
                v = snap.get(k) if self._storable(k) else None
        if v is None or v is _DELETED:
            raise KeyError(key)
        return v

    def _storable(self, k: bytes) -> bool:
        return 0 < len(k) <= self._live().max_key

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]  # any key: a bad one raises (as dbm's do)
        except KeyError:
            return False
        return True

    def get(self, key: Key, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __len__(self) -> int:
        pending = self._pending
        with self._read() as snap:
            n = len(snap)
            for k, v in pending.items():
                n += (v is not _DELETED) - (k in snap)
        return n

    def _items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) in key order: the overlay merged over one snapshot."""
        pending = sorted(self._pending.items())
        with self._read() as snap:
            i = 0
            for k, v in snap.items():
                while i < len(pending) and pending[i][0] < k:
                    pk, pv = pending[i]
                    if pv is not _DELETED:
                        yield pk, pv
                    i += 1
                if i < len(pending) and pending[i][0] == k:
                    v = pending[i][1]
                    i += 1
                if v is not _DELETED:
                    yield k, v
        for k, v in pending[i:]:
            if v is not _DELETED:
                yield k, v

    def __iter__(self) -> Iterator[bytes]:
        return (k for k, _ in self._items())

    # lists, as the dbm modules' keys() (and shelve's use of it) are
    def keys(self) -> list[bytes]:  # type: ignore[override]
        return [k for k, _ in self._items()]

    def values(self) -> list[bytes]:  # type: ignore[override]
        return [v for _, v in self._items()]

    def items(self) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        return list(self._items())

    # ---- writing -------------------------------------------------------------
    def __setitem__(self, key: Key, value: Key) -> None:
        pending = self._writable()
        k = check_key(key, self._live().max_key, "dbm keys")
        pending[k] = _bytes(value, "values")

    def __delitem__(self, key: Key) -> None:
        pending = self._writable()
        k = _bytes(key)
        v = pending.get(k)
        if v is _DELETED:
            raise KeyError(key)
        with self._read() as snap:
            committed = self._storable(k) and k in snap
        if committed:
            pending[k] = _DELETED
        elif v is None:
            raise KeyError(key)
        else:
            del pending[k]

    def clear(self) -> None:
        pending = self._writable()
        with self._read() as snap:
            keys = list(snap)
        pending.clear()
        pending.update(dict.fromkeys(keys, _DELETED))

    def sync(self, message: str | None = None) -> int | None:
        """Commit the pending changes as one version and return it (None: nothing pending).

        If the commit fails (another process holds the writer lock past the
        timeout, a disk error...) the changes stay pending and ``error`` is raised."""
        db, pending = self._live(), self._pending
        if not pending:
            return None
        puts = {k: v for k, v in pending.items() if v is not _DELETED}
        try:
            with db.write(self.message if message is None else message,
                          author=self.author) as tx:
                for k, v in pending.items():
                    if v is _DELETED:
                        tx.delete(k)
                tx.update(puts)
        except errors.CowdbError as e:
            raise error(f"sync failed, the changes are still pending: {e}") from e
        pending.clear()
        return tx.version

    def close(self) -> None:
        """Commit what is pending and close the database. Closing twice is fine."""
        db = self._db
        if db is None:
            return
        try:
            if not db.readonly:
                self.sync()
        finally:
            self._db = None
            self._pending = {}
            db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # The stdlib dbm modules write on close, and close when collected; so does this.
        # An error here has nowhere to go, so it is dropped.
        if getattr(self, "_db", None) is not None:
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        db = self._db
        if db is None:
            return "<cowdb.dbm closed>"
        return f"<cowdb.dbm {db.path!r} {len(self._pending)} pending>"
