"""Transaction: the one write transaction of a handle, a MutableMapping over a writable
tree that sees its own writes (its read methods are the ``_Reader``'s of snapshot.py).
It commits on a clean ``with`` exit and aborts on an exception; ``Database._commit``
writes it."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from itertools import chain
from operator import itemgetter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .checks import Key, check_key, check_value
from .snapshot import _Reader
from .tree.btree import Tree, put_method, sorted_items

if TYPE_CHECKING:
    from .db import Database
    from .history.commits import Commit


class Transaction(_Reader, MutableMapping[bytes, Any]):
    """The one write transaction: commits on a clean ``with`` exit, aborts on an exception."""
    message: str
    author: str
    branch: str
    durability: str
    puts: int
    deletes: int
    allow_empty: bool
    skipped: bool
    _live_cursor = True   # writes may come between two steps of an iteration
    __slots__ = ("_tree", "_db", "_max_key", "_codec", "_head", "_touched", "message", "author",
                 "branch", "durability", "version", "puts", "deletes", "allow_empty",
                 "skipped", "__weakref__")

    def __init__(self, db: Database, tree: Tree, head: Commit, message: str, author: str,
                 branch: str, durability: str) -> None:
        self._db, self._head = db, head
        self._tree: Tree | None = tree
        self._max_key = db.max_key
        self._codec = db.codec
        self.message, self.author, self.branch, self.durability = (message, author, branch,
                                                                   durability)
        self.version: int | None = None
        self.puts = self.deletes = 0
        self.allow_empty = False  # commit even if nothing changed
        self.skipped = False      # commit() found nothing changed and made no version
        # the last key written: where head and the new tree differ on it, the commit
        # changed something, found by two reads (see tree/compare.py's differs_at)
        self._touched: bytes | None = None

    def __setitem__(self, key: Key, value: Any) -> None:
        tree = self._tree
        if tree is None:
            tree = self._live()  # raises TransactionClosed
        if type(key) is not bytes or not 0 < len(key) <= self._max_key:  # the fast path is
            key = check_key(key, self._max_key)                          # inline: bytes in,
        if self._codec is not None:                                      # nothing to do
            value = check_value(self._codec.encode(value))
        elif type(value) is not bytes:
            value = check_value(value)
        tree.put(key, value)
        self.puts += 1
        self._touched = key

    put = __setitem__

    def delete(self, key: Key) -> bool:
        """Remove key; True if it was there."""
        key = check_key(key, self._max_key)
        done = self._live().delete(key)
        self.deletes += done
        self._touched = key
        return done

    def __delitem__(self, key: Key) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def update(self, other: Any = (), /, **kw: Any) -> None:
        """Put many pairs (a mapping, pairs, or keywords). Sorted first, then inserted
        leaf by leaf: much faster than a loop of puts, and it fills pages. A dict of
        bytes keys and bytes values (no codec) is the fastest input: checked and sorted
        in one C call where the accelerators are built."""
        tree = self._live()
        items: Iterable[tuple[Any, Any]]
        if isinstance(other, Mapping):
            items = other.items()
        elif hasattr(other, "keys"):  # as dict.update: keys() and [] are enough
            items = ((k, other[k]) for k in other.keys())
        else:
            items = other
        mk = self._max_key
        encode = None if self._codec is None else self._codec.encode
        # a dict of bytes, checked and sorted in C where built (btree.sorted_items)
        pairs = sorted_items(other, mk) if type(other) is dict and not kw and encode is None \
            else None
        if pairs is None:
            batch: dict[bytes, bytes] = {}
            for k, v in chain(items, kw.items()):
                if type(k) is not bytes or not 0 < len(k) <= mk:
                    k = check_key(k, mk)
                if encode is not None:
                    v = encode(v)
                batch[k] = v if type(v) is bytes else check_value(v)
            # the pairs sorted by key (the keys compared, the pairs carried along): looking
            # the values up after sorting bare keys took ~30% longer at 1M pairs (the
            # lookups in key order miss the caches), and comparing pairs as tuples longer
            pairs = sorted(batch.items(), key=itemgetter(0))
        tree.put_sorted(pairs)
        self.puts += len(pairs)
        if pairs:
            self._touched = pairs[-1][0]

    def commit(self) -> int:
        """Publish the changes as a new version and return it."""
        self._live()
        try:
            self.version = version = self._db._commit(self)
        finally:
            self._finish()
        return version

    def abort(self) -> None:
        """Drop every change; the database stays as it was."""
        if self._tree is not None:
            self._finish()

    def _finish(self) -> None:
        self._tree = None
        self._db._end_write(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._tree is None:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __del__(self) -> None:
        # dropped while open (its thread ended, or the last reference went): abort, so the
        # writer lock is not held until db.close(), and warn as an unclosed file does
        if getattr(self, "_tree", None) is not None:
            try:
                warnings.warn(f"write transaction on {self.branch!r} from version "
                              f"{self._head.version} was dropped without commit() or abort(); "
                              f"it was aborted", ResourceWarning, stacklevel=2,
                              source=self)
            finally:  # (at interpreter exit warnings may be half torn down)
                self.abort()

    def __repr__(self) -> str:
        state = "closed" if self._tree is None else f"{len(self)} keys"
        return f"<cowdb.Transaction on {self.branch!r} from version {self._head.version} {state}>"


# the Python method: the C one's fallback and twin (tests compare them)
py_setitem: Callable[[Transaction, Key, Any], None] = Transaction.__setitem__
if put_method is not None:  # its common case in C, without the put's two Python frames
    Transaction.__setitem__ = Transaction.put = put_method(  # type: ignore[method-assign]
        Transaction, py_setitem, Tree)
