"""Snapshot: a Mapping of one version, and the ``_Reader`` methods it shares with the
Transaction (cowdb/transaction.py), a MutableMapping being written.

Both read through the same ``_Reader`` methods over a ``Tree``; a
transaction's tree is writable and sees its own writes. A snapshot pins the
txn it was taken at, so no page it can reach is reused until it closes.
"""
from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, overload

from .checks import Key, check_bound, check_key
from .checks import key_range as key_range  # they lived here
from .checks import prefix_end as prefix_end
from .errors import (
    DatabaseClosed,
    InvalidKey,
    InvalidType,
    KeyTooLarge,
    ReadOnly,
    TransactionClosed,
)
from .locks import pins_c
from .tree import cursor
from .tree.btree import MapGetMethod, MapRoot, Tree

if TYPE_CHECKING:
    from .db import Database
    from .history.commits import Commit, CommitRoot
    from .transaction import Transaction


class _Unopened(Enum):
    UNOPENED = 0


# a snapshot's tree before its first read (the C base, _pins_c.SnapshotBase, has its own)
if TYPE_CHECKING:
    _UNOPENED: Final = _Unopened.UNOPENED
else:
    _UNOPENED = _Unopened.UNOPENED if pins_c is None else pins_c.UNOPENED
_MISSING: Any = object()


class _Reader:
    """Read methods shared by snapshots and transactions."""
    __slots__ = ()
    if TYPE_CHECKING:  # the slots of Snapshot and Transaction
        _tree: Tree | _Unopened | None  # None once closed
        _db: Database
        _max_key: int
        _codec: Any
        _live_cursor: bool

    def _live(self) -> Tree:
        tree = self._tree
        if not isinstance(tree, Tree):  # closed (a transaction's tree is never _UNOPENED)
            raise TransactionClosed(f"this {type(self).__name__.lower()} is closed; take a new "
                                    f"one with db.read() or db.write()")
        return tree

    # The point read is the hot path: the common case (an open tree, a bytes key of
    # legal length) is checked inline, and only the rest goes through _live/check_key.
    def get(self, key: Key, default: Any = None) -> Any:
        tree = self._tree
        if type(tree) is not Tree or self._db._closed:
            tree = self._live()
        if type(key) is not bytes or not 0 < len(key) <= self._max_key:
            try:
                key = check_key(key, self._max_key)
            except (InvalidKey, KeyTooLarge):
                return default  # a key that cannot be stored is simply not there
        v = tree.get(key)
        if v is None:
            return default
        return v if self._codec is None else self._codec.decode(v)

    def __getitem__(self, key: Key) -> Any:
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def __contains__(self, key: object) -> bool:
        tree = self._tree
        if type(tree) is not Tree or self._db._closed:
            tree = self._live()
        if type(key) is not bytes or not 0 < len(key) <= self._max_key:
            try:
                key = check_key(key, self._max_key)
            except (InvalidKey, KeyTooLarge):
                return False
        return tree.contains(key)  # no value is read (nor decoded)

    def __len__(self) -> int:
        return self._live().count

    def __iter__(self) -> Iterator[bytes]:
        return self._scan("keys")

    @overload
    def items(self) -> ItemsView[bytes, Any]: ...

    @overload
    def items(self, *args: Key | None, start: Key | None = None, stop: Key | None = None,
              prefix: Key | None = None, reverse: bool = False
              ) -> Iterator[tuple[bytes, Any]]: ...

    def items(self, *args: Key | None, start: Key | None = None, stop: Key | None = None,
              prefix: Key | None = None, reverse: bool = False
              ) -> ItemsView[bytes, Any] | Iterator[tuple[bytes, Any]]:
        """Without arguments a view, as a dict's (len, in, iterated again and again).
        With a range, ``items(start, stop, prefix=, reverse=)``: an iterator over the
        (key, value) pairs in key order with start <= key < stop and the given prefix."""
        r = _range(args, start, stop, prefix, reverse, "items")
        return _ItemsView(self) if r is None else self._scan("items", *r)

    @overload
    def keys(self) -> KeysView[bytes]: ...

    @overload
    def keys(self, *args: Key | None, start: Key | None = None, stop: Key | None = None,
             prefix: Key | None = None, reverse: bool = False) -> Iterator[bytes]: ...

    def keys(self, *args: Key | None, start: Key | None = None, stop: Key | None = None,
             prefix: Key | None = None, reverse: bool = False
             ) -> KeysView[bytes] | Iterator[bytes]:
        """A view, or with a range (as items()) an iterator over the keys in it."""
        r = _range(args, start, stop, prefix, reverse, "keys")
        return KeysView(self) if r is None else self._scan("keys", *r)

    @overload
    def values(self) -> ValuesView[Any]: ...

    @overload
    def values(self, *args: Key | None, start: Key | None = None, stop: Key | None = None,
               prefix: Key | None = None, reverse: bool = False) -> Iterator[Any]: ...

    def values(self, *args: Key | None, start: Key | None = None, stop: Key | None = None,
               prefix: Key | None = None, reverse: bool = False
               ) -> ValuesView[Any] | Iterator[Any]:
        """A view, or with a range (as items()) an iterator over the values in it."""
        r = _range(args, start, stop, prefix, reverse, "values")
        return _ValuesView(self) if r is None else self._scan("values", *r)

    def join_values(self, sep: bytes, start: Key | None = None, stop: Key | None = None,
                    prefix: Key | None = None) -> bytes:
        """The stored values of a key range (as ``items()`` takes it), in key order,
        joined by ``sep``: ``sep.join(self.values(start, stop, prefix=prefix))``, but
        with no object made per value on a mapped file (a document's text is one such
        read). Values are the stored bytes: a database with a codec raises InvalidType."""
        tree = self._live()
        if self._codec is not None:
            raise InvalidType("join_values() joins stored bytes, and this database decodes "
                              "values with a codec: join the decoded values() yourself")
        if type(sep) is not bytes:
            raise InvalidType(f"join_values() takes a bytes separator, not "
                              f"{type(sep).__name__}")
        start, stop = key_range(start, stop, prefix)
        if start is not None and stop is not None and start >= stop:
            return b""
        return cursor.join(tree, sep, start, stop)

    def _scan(self, part: str, start: object = None, stop: object = None,
              prefix: object = None, reverse: bool = False) -> Iterator[Any]:
        """An iterator over the ``part`` ("items", "keys" or "values") of a key range.
        A snapshot's tree never changes, so its scans flatten whole leaves in C
        (cursor.keys/values/items); a transaction's are watched item by item."""
        tree = self._live()
        start, stop = key_range(start, stop, prefix)
        if start is not None and stop is not None and start >= stop:
            return iter(())
        if self._live_cursor:
            pairs = cursor.items(tree, start, stop, reverse, live=True)
            if part == "keys":
                return (k for k, _ in pairs)
            part_of: Iterator[Any] = pairs if part == "items" else (v for _, v in pairs)
        else:
            part_of = getattr(cursor, part)(tree, start, stop, reverse)
            if part == "keys":
                return part_of
        decode = None if self._codec is None else self._codec.decode
        if decode is None:
            return part_of
        if part == "values":
            return map(decode, part_of)
        return ((k, decode(v)) for k, v in part_of)

    def __eq__(self, other: object) -> bool:
        """Equal to any mapping with the same keys and values; str keys count as their
        UTF-8 bytes (as they are stored), so ``snap == {"a": b"1"}`` works."""
        if not isinstance(other, Mapping):
            return NotImplemented
        if len(self) != len(other):
            return False
        for k, v in other.items():
            got = self.get(k, _MISSING) if isinstance(k, (bytes, str, bytearray, memoryview)) \
                else _MISSING
            if got is _MISSING or got != v:
                return False
        return True

    __hash__: ClassVar[None] = None  # type: ignore[assignment]  # unhashable, as a dict

    def count(self, start: Key | None = None, stop: Key | None = None) -> int:
        """How many keys k satisfy start <= k < stop, in O(log n)."""
        tree = self._live()
        lo = 0 if start is None else tree.rank(check_bound(start))
        return max(0, tree.rank(check_bound(stop)) - lo)


def _range(args: tuple[object, ...], start: object, stop: object, prefix: object,
           reverse: bool, name: str) -> tuple[object, object, object, bool] | None:
    """(start, stop, prefix, reverse) of a range given to items()/keys()/values(), or None
    for no range at all (the view). ``items(None)`` names nothing: a TypeError, as
    dict.items(None) is (CPython's mapping tests check it)."""
    if args:
        if len(args) > 2 or args == (None,):
            raise TypeError(f"{name}() takes no argument (the view), or a range: start, "
                            f"stop, prefix=, reverse=")
        if start is not None or (len(args) == 2 and stop is not None):
            raise TypeError(f"{name}() got start or stop twice")
        start = args[0]
        stop = args[1] if len(args) == 2 else stop
        return start, stop, prefix, reverse
    if start is None and stop is None and prefix is None and not reverse:
        return None
    return start, stop, prefix, reverse


class _ItemsView(ItemsView[bytes, Any]):
    """items(): iterates with the tree's cursor (one pass), not a lookup per key."""
    __slots__ = ()
    if TYPE_CHECKING:
        _mapping: _Reader

    def __iter__(self) -> Iterator[tuple[bytes, Any]]:
        return self._mapping._scan("items")


class _ValuesView(ValuesView[Any]):
    __slots__ = ()
    if TYPE_CHECKING:
        _mapping: _Reader

    def __iter__(self) -> Iterator[Any]:
        return self._mapping._scan("values")


class _SnapshotBase:
    """A snapshot's fields, its construction and its close: all that a snapshot's open +
    close runs (W5). The pure-Python twin of ``_pins_c.SnapshotBase``, which does it with
    no Python frame. The pin is a ``Pins.hold`` token: closing the snapshot, or dropping
    it unclosed, releases it (once)."""
    __slots__ = ("_tree", "_commit", "_db", "_pin", "_max_key", "_codec", "_mget",
                 "__weakref__")
    if TYPE_CHECKING:
        _tree: Tree | _Unopened | None  # None once closed
        _commit: Commit | CommitRoot  # at(v) of a version not looked up whole: its root
        _db: Database
        _pin: Any        # a Pins.hold token
        _max_key: int
        _codec: Any
        _mget: Any       # btree.MapRoot, once opened on a mapped file

    def __init__(self, db: Database, commit: Commit | CommitRoot, pin: Any) -> None:
        # kept to what open + close needs: _max_key and _codec are set on first use;
        # _mget, once opened on a mapped file: the version's root bound (btree.MapRoot)
        self._db, self._commit, self._pin, self._tree, self._mget = \
            db, commit, pin, _UNOPENED, None

    def close(self) -> None:
        """Close the snapshot: its pin is released (once), its pages may be reused."""
        self._tree = self._mget = None
        self._pin.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tree = self._mget = None
        self._pin.release()


if TYPE_CHECKING:
    SnapshotBase = _SnapshotBase
else:
    SnapshotBase = _SnapshotBase if pins_c is None else pins_c.SnapshotBase


class Snapshot(SnapshotBase, _Reader, Mapping[bytes, Any]):
    """One version, read-only, for as long as it is open. Cheap: a commit and a pin
    (see _SnapshotBase); the tree is opened on first use."""
    _live_cursor = False  # a snapshot's tree never changes: cursors take the fast path
    __slots__ = ()

    @property
    def version(self) -> int:
        return self._commit.version

    def _live(self) -> Tree:
        tree = self._tree
        if self._db._closed and tree is not None:
            raise DatabaseClosed("the database of this snapshot was closed; open it again "
                                 "with cowdb.open()")
        if tree is _UNOPENED:
            c, db = self._commit, self._db
            self._max_key, self._codec = db.max_key, db.codec
            tree = self._tree = Tree(db._nodes, c.root, c.count)
            pm = tree.store.pagemap
            if pm is not None and MapRoot is not None and c.root.page:
                r = c.root
                self._mget = MapRoot(pm, r.page, r.checksum, r.txn, self._max_key,
                                     None if self._codec is None else self._codec.decode)
        elif tree is None:
            raise TransactionClosed("this snapshot is closed; take a new one with db.read() "
                                    "or db.at()")
        return tree

    def __setitem__(self, key: object, value: object) -> None:
        raise ReadOnly("a snapshot is read-only; write with `with db.write() as tx:`")

    def __delitem__(self, key: object) -> None:
        self.__setitem__(key, None)

    def __repr__(self) -> str:
        state = "closed" if self._tree is None else f"{self._commit.count} keys"
        return f"<cowdb.Snapshot version={self.version} {state}>"


# The point read of a mapped file's snapshot (with the C accelerator): one C call through
# the version's root, bound on first use (_mget), which leaves the rest (not opened yet,
# an overflow value, a key to check, a closed snapshot) to _Reader.get.
if MapGetMethod is not None:
    Snapshot.get = MapGetMethod(vars(SnapshotBase)["_mget"],  # type: ignore[method-assign]
                                _Reader.get)


def __getattr__(name: str) -> type[Transaction]:
    """``cowdb.snapshot.Transaction``: it lives in cowdb/transaction.py now (imported
    lazily, since transaction.py builds on this module's ``_Reader``)."""
    if name == "Transaction":
        from .transaction import Transaction
        return Transaction
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
