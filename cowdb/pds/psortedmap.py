"""PSortedMap: a persistent sorted map on a B+tree with path copying.

Keys are any mutually comparable Python objects, kept in ``<`` order.
The API follows sortedcontainers.SortedDict where it can (irange,
bisect_left/right, peekitem, index) and PMap for updates (set, delete,
update, mutate).
"""

import reprlib
from bisect import bisect_left, bisect_right
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from itertools import chain
from types import GenericAlias
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from cowdb.pds import _btree
from cowdb.pds._hashing import accumulate, finish
from cowdb.pds._missing import MISSING
from cowdb.pds._transient import Transient
from cowdb.pds.pmap import MapSource, _pairs

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")
_M = TypeVar("_M", bound="PSortedMap[Any, Any]")

_new = object.__new__


def _make(cls: type[_M], root: _btree.Node, height: int, count: int) -> _M:
    m = _new(cls)
    m._root, m._height, m._count, m._hash = root, height, count, None
    return m


class _Keys(KeysView[K]):
    __slots__ = ()
    _mapping: "PSortedMap[K, Any]"

    def __iter__(self) -> Iterator[K]:
        return self._mapping.irange()

    def __reversed__(self) -> Iterator[K]:
        return self._mapping.irange(reverse=True)


class _Values(ValuesView[V]):
    __slots__ = ()
    _mapping: "PSortedMap[Any, V]"

    def __iter__(self) -> Iterator[V]:
        m = self._mapping
        return chain.from_iterable(leaf[1] for leaf in _btree.leaves_from(m._root, m._height))


class _Items(ItemsView[K, V]):
    __slots__ = ()
    _mapping: "PSortedMap[K, V]"

    def __iter__(self) -> Iterator[tuple[K, V]]:
        m = self._mapping
        return chain.from_iterable(zip(leaf[0], leaf[1])
                                   for leaf in _btree.leaves_from(m._root, m._height))


class _Reader(Generic[K, V]):
    """The lookups a PSortedMap and its mutation share."""

    __slots__ = ()
    _root: _btree.Node
    _height: int
    _count: int

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, key: K) -> V:
        v: V = _btree.lookup(self._root, self._height, key, MISSING)
        if v is MISSING:
            raise KeyError(key)
        return v

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        return _btree.lookup(self._root, self._height, key, default)

    def __contains__(self, key: object) -> bool:
        return _btree.lookup(self._root, self._height, key, MISSING) is not MISSING


# The checker reads PSortedMap as the Mapping it is registered as, too.
if TYPE_CHECKING:
    _Typed = Mapping
else:
    _Typed = Generic


class PSortedMap(_Reader[K, V], _Typed[K, V]):
    """An immutable mapping iterated in key order; updates return new maps.

    Equal to any Mapping with equal items (order is not compared, as for
    dict); hashes like a PMap with the same items, computed on first use.
    """

    __slots__ = ("_root", "_height", "_count", "_hash", "__weakref__")
    __class_getitem__: Any = classmethod(GenericAlias)
    _hash: int | None

    @overload
    def __init__(self, /) -> None: ...
    @overload
    def __init__(self: "PSortedMap[str, V]", /, **kw: V) -> None: ...
    @overload
    def __init__(self, col: Mapping[K, V] | Iterable[tuple[K, V]], /) -> None: ...
    @overload
    def __init__(self: "PSortedMap[str, V]", col: Mapping[str, V] | Iterable[tuple[str, V]], /,
                 **kw: V) -> None: ...
    def __init__(self, col: MapSource | None = None, /, **kw: Any) -> None:
        if type(col) is type(self) and not kw:
            self._root, self._height = col._root, col._height
            self._count, self._hash = col._count, col._hash
            return
        items = dict(_pairs(col, kw))
        try:
            pairs = sorted(items.items(), key=_first)
        except TypeError:
            raise TypeError("PSortedMap keys must be comparable with each other") from None
        self._root, self._height = _btree.build(pairs)
        self._count = len(pairs)
        self._hash = None

    def __iter__(self) -> Iterator[K]:
        return self.irange()

    def __reversed__(self) -> Iterator[K]:
        return self.irange(reverse=True)

    def keys(self) -> KeysView[K]:
        return _Keys(self)

    def values(self) -> ValuesView[V]:
        return _Values(self)

    def items(self) -> ItemsView[K, V]:
        return _Items(self)

    def set(self, key: K, val: V) -> Self:
        """A map with ``key`` bound to ``val`` (this one if it already is)."""
        root, height, old = _btree.assoc(self._root, self._height, key, val, None)
        if root is self._root:
            return self
        return _make(type(self), root, height, self._count + (old is MISSING))

    def delete(self, key: K) -> Self:
        """A map without ``key``; KeyError if it is absent."""
        root, height, old = _btree.dissoc(self._root, self._height, key, None)
        if old is MISSING:
            raise KeyError(key)
        return _make(type(self), root, height, self._count - 1)

    def update(self, col: MapSource | None = None, /, **kw: Any) -> "PSortedMap[K, V]":
        """A map with the pairs of ``col`` and ``kw`` added, built in one transient."""
        mm = self.mutate()
        mm.update(col, **kw)
        return mm.finish()

    def mutate(self) -> "PSortedMapMutation[K, V]":
        """A transient copy to edit in place; ``finish()`` it into a PSortedMap."""
        return PSortedMapMutation(self)

    def irange(self, minimum: K | None = None, maximum: K | None = None,
               inclusive: tuple[bool, bool] = (True, True),
               reverse: bool = False) -> Iterator[K]:
        """Keys from ``minimum`` to ``maximum`` (None: unbounded), as SortedDict.irange.

        Starts with one descent to the first leaf, then walks leaves.
        """
        lo, hi = minimum is not None, maximum is not None
        start = (maximum if hi else MISSING) if reverse else (minimum if lo else MISSING)
        leaves = _btree.leaves_from(self._root, self._height, start, reverse)
        for leaf in leaves:
            keys = leaf[0]
            s = (bisect_left if inclusive[0] else bisect_right)(keys, minimum) if lo else 0
            e = (bisect_right if inclusive[1] else bisect_left)(keys, maximum) if hi else len(keys)
            if reverse:
                yield from reversed(keys[s:e])
                if s > 0:
                    return
                hi = False
            else:
                yield from keys[s:e]
                if e < len(keys):
                    return
                lo = False

    def bisect_left(self, key: K) -> int:
        """The position ``key`` would take, before any equal key."""
        return _btree.position(self._root, self._height, key, False)

    def bisect_right(self, key: K) -> int:
        """The position ``key`` would take, after any equal key."""
        return _btree.position(self._root, self._height, key, True)

    def index(self, key: K) -> int:
        """The position of ``key``; ValueError if absent."""
        if key not in self:
            raise ValueError(f"{key!r} is not in map")
        return self.bisect_left(key)

    def peekitem(self, index: int = -1) -> tuple[K, V]:
        """The (key, value) pair at position ``index`` (negative from the end)."""
        n = self._count
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("PSortedMap index out of range")
        return _btree.at(self._root, self._height, index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PSortedMap):
            return self._count == other._count and next(_diff(self, other), None) is None
        if isinstance(other, Mapping):
            return self._count == len(other) and all(
                (w := self.get(k, MISSING)) is v or w == v for k, v in other.items())
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = finish(accumulate(self.items()), self._count)
        return self._hash

    def __reduce__(self) -> tuple[type[Self], tuple[list[tuple[K, V]]]]:
        return type(self), (list(self.items()),)

    @reprlib.recursive_repr("{...}")
    def __repr__(self) -> str:
        body = ", ".join(f"{k!r}: {v!r}" for k, v in self.items())
        return f"{type(self).__name__}({{{body}}})"


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _diff(a: PSortedMap[Any, Any],
          b: PSortedMap[Any, Any]) -> Iterator[tuple[Any, Any, Any]]:
    """diff() for two PSortedMaps; see _btree.diff."""
    return _btree.diff(a._root, a._height, b._root, b._height)


class PSortedMapMutation(_Reader[K, V], Transient[PSortedMap[K, V]]):
    """A PSortedMap being edited in place; see Transient for the rules."""

    __slots__ = ("_root", "_height", "_count", "_owner", "_result")

    def __init__(self, m: PSortedMap[K, V]) -> None:
        super().__init__()
        self._root, self._height, self._count = m._root, m._height, m._count

    def __setitem__(self, key: K, val: V) -> None:
        self._root, self._height, old = _btree.assoc(self._root, self._height, key, val,
                                                     self._token())
        self._count += old is MISSING

    set = __setitem__

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V | D) -> V | D: ...
    def pop(self, key: K, default: Any = MISSING) -> Any:
        """Remove ``key`` and return its value (or ``default`` if absent)."""
        root, height, old = _btree.dissoc(self._root, self._height, key, self._token())
        if old is MISSING:
            if default is MISSING:
                raise KeyError(key)
            return default
        self._root, self._height = root, height
        self._count -= 1
        return old

    def __delitem__(self, key: K) -> None:
        self.pop(key)

    def update(self, col: MapSource | None = None, /, **kw: Any) -> None:
        for key, val in _pairs(col, kw):
            self[key] = val

    def __iter__(self) -> Iterator[K]:
        raise TypeError("a PSortedMapMutation is not iterable: finish() it first")

    def _freeze(self) -> PSortedMap[K, V]:
        return _make(PSortedMap, self._root, self._height, self._count)


Mapping.register(PSortedMap)
