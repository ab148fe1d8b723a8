"""PSortedMap: a persistent sorted map on a B+tree with path copying.

Keys are any mutually comparable Python objects, kept in ``<`` order.
The API follows sortedcontainers.SortedDict where it can (irange,
bisect_left/right, peekitem, index) and PMap for updates (set, delete,
update, mutate).
"""

import reprlib
from bisect import bisect_left, bisect_right
from collections.abc import ItemsView, KeysView, Mapping, ValuesView
from itertools import chain
from types import GenericAlias
from typing import Any

from cowdb.pds import _btree
from cowdb.pds._hashing import accumulate, finish
from cowdb.pds._missing import MISSING
from cowdb.pds._transient import Transient
from cowdb.pds.pmap import _pairs

_new = object.__new__


def _make(cls, root, height, count):
    m = _new(cls)
    m._root, m._height, m._count, m._hash = root, height, count, None
    return m


class _Keys(KeysView):
    __slots__ = ()

    def __iter__(self):
        return self._mapping.irange()

    def __reversed__(self):
        return self._mapping.irange(reverse=True)


class _Values(ValuesView):
    __slots__ = ()

    def __iter__(self):
        m = self._mapping
        return chain.from_iterable(leaf[1] for leaf in _btree.leaves_from(m._root, m._height))


class _Items(ItemsView):
    __slots__ = ()

    def __iter__(self):
        m = self._mapping
        return chain.from_iterable(zip(leaf[0], leaf[1])
                                   for leaf in _btree.leaves_from(m._root, m._height))


class _Reader:
    """The lookups a PSortedMap and its mutation share."""

    __slots__ = ()

    def __len__(self):
        return self._count

    def __getitem__(self, key):
        v = _btree.lookup(self._root, self._height, key, MISSING)
        if v is MISSING:
            raise KeyError(key)
        return v

    def get(self, key, default=None):
        return _btree.lookup(self._root, self._height, key, default)

    def __contains__(self, key):
        return _btree.lookup(self._root, self._height, key, MISSING) is not MISSING


class PSortedMap(_Reader):
    """An immutable mapping iterated in key order; updates return new maps.

    Equal to any Mapping with equal items (order is not compared, as for
    dict); hashes like a PMap with the same items, computed on first use.
    """

    __slots__ = ("_root", "_height", "_count", "_hash", "__weakref__")
    __class_getitem__: Any = classmethod(GenericAlias)

    def __init__(self, col=None, /, **kw):
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

    def __iter__(self):
        return self.irange()

    def __reversed__(self):
        return self.irange(reverse=True)

    def keys(self):
        return _Keys(self)

    def values(self):
        return _Values(self)

    def items(self):
        return _Items(self)

    def set(self, key, val):
        """A map with ``key`` bound to ``val`` (this one if it already is)."""
        root, height, old = _btree.assoc(self._root, self._height, key, val, None)
        if root is self._root:
            return self
        return _make(type(self), root, height, self._count + (old is MISSING))

    def delete(self, key):
        """A map without ``key``; KeyError if it is absent."""
        root, height, old = _btree.dissoc(self._root, self._height, key, None)
        if old is MISSING:
            raise KeyError(key)
        return _make(type(self), root, height, self._count - 1)

    def update(self, col=None, /, **kw):
        """A map with the pairs of ``col`` and ``kw`` added, built in one transient."""
        mm = self.mutate()
        mm.update(col, **kw)
        return mm.finish()

    def mutate(self):
        """A transient copy to edit in place; ``finish()`` it into a PSortedMap."""
        return PSortedMapMutation(self)

    def irange(self, minimum=None, maximum=None, inclusive=(True, True), reverse=False):
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

    def bisect_left(self, key):
        """The position ``key`` would take, before any equal key."""
        return _btree.position(self._root, self._height, key, False)

    def bisect_right(self, key):
        """The position ``key`` would take, after any equal key."""
        return _btree.position(self._root, self._height, key, True)

    def index(self, key):
        """The position of ``key``; ValueError if absent."""
        if key not in self:
            raise ValueError(f"{key!r} is not in map")
        return self.bisect_left(key)

    def peekitem(self, index=-1):
        """The (key, value) pair at position ``index`` (negative from the end)."""
        n = self._count
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("PSortedMap index out of range")
        return _btree.at(self._root, self._height, index)

    def __eq__(self, other):
        if isinstance(other, PSortedMap):
            return self._count == other._count and next(_diff(self, other), None) is None
        if isinstance(other, Mapping):
            return self._count == len(other) and all(
                (w := self.get(k, MISSING)) is v or w == v for k, v in other.items())
        return NotImplemented

    def __hash__(self):
        if self._hash is None:
            self._hash = finish(accumulate(self.items()), self._count)
        return self._hash

    def __reduce__(self):
        return type(self), (list(self.items()),)

    @reprlib.recursive_repr("{...}")
    def __repr__(self):
        body = ", ".join(f"{k!r}: {v!r}" for k, v in self.items())
        return f"{type(self).__name__}({{{body}}})"


def _first(pair):
    return pair[0]


def _diff(a, b):
    """diff() for two PSortedMaps; see _btree.diff."""
    return _btree.diff(a._root, a._height, b._root, b._height)


class PSortedMapMutation(_Reader, Transient):
    """A PSortedMap being edited in place; see Transient for the rules."""

    __slots__ = ("_root", "_height", "_count", "_owner", "_result")

    def __init__(self, m):
        super().__init__()
        self._root, self._height, self._count = m._root, m._height, m._count

    def __setitem__(self, key, val):
        self._root, self._height, old = _btree.assoc(self._root, self._height, key, val,
                                                     self._token())
        self._count += old is MISSING

    set = __setitem__

    def pop(self, key, default=MISSING):
        """Remove ``key`` and return its value (or ``default`` if absent)."""
        root, height, old = _btree.dissoc(self._root, self._height, key, self._token())
        if old is MISSING:
            if default is MISSING:
                raise KeyError(key)
            return default
        self._root, self._height = root, height
        self._count -= 1
        return old

    def __delitem__(self, key):
        self.pop(key)

    def update(self, col=None, /, **kw):
        for key, val in _pairs(col, kw):
            self[key] = val

    def __iter__(self):
        raise TypeError("a PSortedMapMutation is not iterable: finish() it first")

    def _freeze(self):
        return _make(PSortedMap, self._root, self._height, self._count)


Mapping.register(PSortedMap)
