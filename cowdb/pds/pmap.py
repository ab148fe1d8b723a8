"""PMap: a persistent hash map, API-compatible with ``immutables.Map``.

Every update returns a new map and leaves the old one intact; the two share
all but the path that changed (see _champ).  ``mutate()`` gives a
transient that edits its own nodes in place, for batches.
"""

import reprlib
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from itertools import chain
from types import GenericAlias
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar, overload

from cowdb.pds import _champ
from cowdb.pds._champ import M64, Node, assoc, dissoc, lookup
from cowdb.pds._hashing import accumulate, finish, shuffle
from cowdb.pds._missing import MISSING
from cowdb.pds._transient import Transient, edit

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")

_new = object.__new__
_NO_DEFAULT: Any = object()

# What PMap.__init__ and update take: a mapping, or an iterable of (key, value) pairs.
MapSource = Mapping[Any, Any] | Iterable[tuple[Any, Any]] | Iterable[Iterable[Any]]


class _Fields(Protocol):
    """The fields of a PMap and a PMapMutation (held by their base, in C or Python)."""

    _root: Node
    _count: int
    _hacc: int | None


_F = TypeVar("_F", bound=_Fields)


def _rehash(acc: int | None, key: object, old: object, new: object) -> int | None:
    """The hash accumulator after ``key`` went from ``old`` to ``new``.

    None means "unknown": some value could not be hashed when it was set.
    The map then hashes from scratch if asked, which raises if that value
    is still there; an unhashable value must not make ``set`` fail.
    """
    if acc is None:
        return None
    try:
        if old is not MISSING:
            acc ^= shuffle(hash((key, old)) & M64)
        if new is not MISSING:
            acc ^= shuffle(hash((key, new)) & M64)
    except Exception:
        return None
    return acc


def _pairs(col: MapSource | None, kw: Mapping[str, Any]) -> Iterable[tuple[Any, ...]]:
    """The (key, value) pairs of a mapping or an iterable of pairs, then ``kw``."""
    if col is None:
        return kw.items()
    if isinstance(col, PMapMutation):
        raise TypeError("cannot create Maps from MapMutations: finish() it first")
    pairs: Iterable[tuple[Any, ...]] = (col.items() if hasattr(col, "items")
                                        else _checked_pairs(iter(col)))
    if kw:
        return chain(pairs, kw.items())
    return pairs


def _checked_pairs(it: Iterator[Any]) -> Iterator[tuple[Any, ...]]:
    """Pairs from an iterable, with dict()'s checks and immutables' messages."""
    for i, item in enumerate(it):
        try:
            item = tuple(item)
        except TypeError:
            raise TypeError(f"cannot convert map update sequence element #{i} to a "
                            f"sequence") from None
        if len(item) != 2:
            raise ValueError(f"map update sequence element #{i} has length {len(item)}; "
                             f"2 is required")
        yield item


def _py_make(cls: type[_F], root: Node, count: int, acc: int | None) -> _F:
    m = _new(cls)
    m._root = root
    m._count = count
    m._hacc = acc
    return m


class _Keys(KeysView[K]):
    __slots__ = ()
    _mapping: "PMap[K, Any]"

    def __iter__(self) -> Iterator[K]:
        return _champ.iter_keys(self._mapping._root)


class _Values(ValuesView[V]):
    __slots__ = ()
    _mapping: "PMap[Any, V]"

    def __iter__(self) -> Iterator[V]:
        return _champ.iter_values(self._mapping._root)


class _Items(ItemsView[K, V]):
    __slots__ = ()
    _mapping: "PMap[K, V]"

    def __iter__(self) -> Iterator[tuple[K, V]]:
        return _champ.iter_items(self._mapping._root)


# The fields and hot methods of PMap and PMapMutation, in Python.  These are
# the reference: _champ_c.MapBase and _champ_c.MutationBase do the same in
# C (same fields, results, exceptions), and PMap and PMapMutation subclass
# those when the accelerator is in use, these otherwise.  Everything else
# (views, equality, hashing, repr, pickling, update, finish) is the shared
# code in PMap and PMapMutation below.

class _PyReader:
    """The lookups a PMap and a PMapMutation share."""

    __slots__ = ()
    _root: Node
    _count: int
    _hacc: int | None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, key: Any) -> Any:
        v = lookup(self._root, key, hash(key) & M64, MISSING)
        if v is MISSING:
            raise KeyError(key)
        return v

    def get(self, key: Any, default: Any = None, /) -> Any:
        return lookup(self._root, key, hash(key) & M64, default)

    def __contains__(self, key: object) -> bool:
        return lookup(self._root, key, hash(key) & M64, MISSING) is not MISSING


class _PyMap(_PyReader):
    """PMap's base without the accelerator."""

    __slots__ = ("_root", "_count", "_hacc", "__weakref__")

    def __iter__(self) -> Iterator[Any]:
        return _champ.iter_keys(self._root)

    def set(self, key: Any, val: Any, /) -> Self:
        """A map with ``key`` bound to ``val`` (this one if it already is)."""
        box: list[Any] = []
        root = assoc(self._root, hash(key) & M64, key, val, None, 0, box)
        old = box[0] if box else MISSING
        if root is self._root:
            return self
        return _make(type(self), root, self._count + (old is MISSING),
                     _rehash(self._hacc, key, old, val))

    def delete(self, key: Any, /) -> Self:
        """A map without ``key``; KeyError if it is absent."""
        box: list[Any] = []
        root = dissoc(self._root, hash(key) & M64, key, None, 0, box)
        old = box[0] if box else MISSING
        if old is MISSING:
            raise KeyError(key)
        return _make(type(self), root, self._count - 1, _rehash(self._hacc, key, old, MISSING))


class _PyMutation(_PyReader):
    """PMapMutation's base without the accelerator."""

    __slots__ = ("_root", "_count", "_hacc", "_owner", "_result")

    if TYPE_CHECKING:
        def _token(self) -> object: ...  # Transient's, mixed in beside this base

    @edit
    def __setitem__(self, key: Any, val: Any) -> None:
        box: list[Any] = []
        h = hash(key) & M64  # before reading the root: a key's __hash__ may edit it
        root = assoc(self._root, h, key, val, self._token(), 0, box)
        old = box[0] if box else MISSING
        if old is not val:
            self._root = root
            self._count += old is MISSING
            acc, self._hacc = self._hacc, None  # unknown if hashing is interrupted
            self._hacc = _rehash(acc, key, old, val)

    def set(self, key: Any, val: Any, /) -> None:
        """Bind ``key`` to ``val`` in place."""
        self[key] = val

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    @edit
    def pop(self, key: Any, default: Any = _NO_DEFAULT, /) -> Any:
        """Remove ``key`` and return its value (or ``default`` if absent)."""
        box: list[Any] = []
        h = hash(key) & M64  # before reading the root, as in __setitem__
        root = dissoc(self._root, h, key, self._token(), 0, box)
        old = box[0] if box else MISSING
        if old is MISSING:
            if default is _NO_DEFAULT:
                raise KeyError(key)
            return default
        self._root = root
        self._count -= 1
        acc, self._hacc = self._hacc, None
        self._hacc = _rehash(acc, key, old, MISSING)
        return old


# The C-or-Python switch.  The checker reads the bases as the fields they hold (the hot
# methods they add are declared in PMap and PMapMutation) and PMap as the Mapping it is
# registered as; at run time PMap is Generic only, for its type parameters.
if TYPE_CHECKING:
    _MapBase = _Fields
    _MutationBase = _Fields
    _Typed = Mapping
    _make = _py_make
else:
    _Typed = Generic
    if _champ.accelerator is not None:
        _acc = _champ.accelerator
        _MapBase, _MutationBase, _make = _acc.MapBase, _acc.MutationBase, _acc.make
    else:
        _MapBase, _MutationBase, _make = _PyMap, _PyMutation, _py_make


class PMap(_MapBase, _Typed[K, V]):
    """An immutable mapping; ``set``/``delete``/``update`` return new maps.

    ``PMap(mapping_or_pairs, **kw)`` builds one like ``dict(...)``.  Equal to
    any Mapping with equal items; ``hash(m) == hash(frozenset(m.items()))``
    and costs O(1), the accumulator being kept up to date by every update.
    """

    __slots__ = ()
    __class_getitem__: Any = classmethod(GenericAlias)

    if TYPE_CHECKING:  # defined by the base: _PyMap, or _champ_c.MapBase (the same in C)
        _root: Node
        _count: int
        _hacc: int | None

        def __len__(self) -> int: ...
        def __getitem__(self, key: K, /) -> V: ...
        @overload
        def get(self, key: K, /) -> V | None: ...
        @overload
        def get(self, key: K, default: V | D, /) -> V | D: ...
        def get(self, key: K, default: object = None, /) -> object: ...
        def __contains__(self, key: object, /) -> bool: ...
        def __iter__(self) -> Iterator[K]: ...
        def set(self, key: K, val: V, /) -> Self: ...
        def delete(self, key: K, /) -> Self: ...

    @overload
    def __init__(self, /) -> None: ...
    @overload
    def __init__(self: "PMap[str, V]", /, **kw: V) -> None: ...
    @overload
    def __init__(self, col: Mapping[K, V] | Iterable[tuple[K, V]], /) -> None: ...
    @overload
    def __init__(self: "PMap[str, V]", col: Mapping[str, V] | Iterable[tuple[str, V]], /,
                 **kw: V) -> None: ...
    def __init__(self, col: MapSource | None = None, /, **kw: Any) -> None:
        if type(col) is type(self) and not kw:
            self._root, self._count, self._hacc = col._root, col._count, col._hacc
            return
        d = col if type(col) is dict and not kw else dict(_pairs(col, kw))
        self._root, self._count, self._hacc = _champ.build_dict(d)  # _hacc None: unhashable

    def keys(self) -> KeysView[K]:
        return _Keys(self)

    def values(self) -> ValuesView[V]:
        return _Values(self)

    def items(self) -> ItemsView[K, V]:
        return _Items(self)

    def update(self, col: MapSource | None = None, /, **kw: Any) -> "PMap[K, V]":
        """A map with the pairs of ``col`` and ``kw`` added, built in one transient."""
        if col is None and not kw:
            return self
        mm = self.mutate()
        mm.update(col, **kw)
        return mm.finish()

    def mutate(self) -> "PMapMutation[K, V]":
        """A transient copy to edit in place; ``finish()`` it into a PMap."""
        return PMapMutation(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PMap):
            if self._count != other._count:
                return False
            a, b = self._hacc, other._hacc
            if a is not None and b is not None and a != b:
                return False
            return _champ.equal(self._root, other._root)
        if isinstance(other, Mapping):
            return _mapping_equal(self._root, self._count, other)
        return NotImplemented

    def __hash__(self) -> int:
        if self._hacc is None:
            self._hacc = accumulate(self.items())
        return finish(self._hacc, self._count)

    def __reduce__(self) -> tuple[type[Self], tuple[dict[K, V]]]:
        return type(self), (dict(self.items()),)

    @reprlib.recursive_repr("{...}")
    def __repr__(self) -> str:
        body = ", ".join(f"{k!r}: {v!r}" for k, v in self.items())
        return f"{type(self).__name__}({{{body}}})"


def _mapping_equal(root: Node, count: int, other: Mapping[Any, Any]) -> bool:
    if len(other) != count:
        return False
    for k, v in other.items():
        w = lookup(root, k, hash(k) & M64, MISSING)
        if w is MISSING or not (w is v or w == v):
            return False
    return True


class PMapMutation(_MutationBase, Transient[PMap[K, V]], Generic[K, V]):
    """A PMap being edited in place: ``mm[k] = v``, ``del mm[k]``, ``finish()``.

    See Transient for the rules; a finished mutation raises ValueError on
    any edit.
    """

    __slots__ = ()

    if TYPE_CHECKING:  # defined by the base: _PyMutation, or _champ_c.MutationBase
        def __len__(self) -> int: ...
        def __getitem__(self, key: K, /) -> V: ...
        @overload
        def get(self, key: K, /) -> V | None: ...
        @overload
        def get(self, key: K, default: V | D, /) -> V | D: ...
        def get(self, key: K, default: object = None, /) -> object: ...
        def __contains__(self, key: object, /) -> bool: ...
        def __setitem__(self, key: K, val: V, /) -> None: ...
        def set(self, key: K, val: V, /) -> None: ...
        def __delitem__(self, key: K, /) -> None: ...
        @overload
        def pop(self, key: K, /) -> V: ...
        @overload
        def pop(self, key: K, default: V | D, /) -> V | D: ...
        def pop(self, key: K, default: object = _NO_DEFAULT, /) -> object: ...

    def __init__(self, m: PMap[K, V]) -> None:
        super().__init__()
        self._root = m._root
        self._count = m._count
        self._hacc = m._hacc

    def update(self, col: MapSource | None = None, /, **kw: Any) -> None:
        """Set every pair of ``col`` (a mapping or pairs) and ``kw``."""
        self._token()
        setitem = self.__setitem__
        for key, val in _pairs(col, kw):
            setitem(key, val)

    def __iter__(self) -> Iterator[K]:
        raise TypeError("a PMapMutation is not iterable: finish() it first")

    def _freeze(self) -> PMap[K, V]:
        return _make(PMap, self._root, self._count, self._hacc)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PMapMutation):
            return NotImplemented
        return self._count == other._count and _champ.equal(self._root, other._root)

    @reprlib.recursive_repr("{...}")
    def __repr__(self) -> str:
        body = ", ".join(f"{k!r}: {v!r}" for k, v in _champ.iter_items(self._root))
        return f"PMapMutation({{{body}}})"


Mapping.register(PMap)
_champ.python_methods(PMap, _PyMap)
_champ.python_methods(PMapMutation, _PyMutation)
