"""PMap: a persistent hash map, API-compatible with ``immutables.Map``.

Every update returns a new map and leaves the old one intact; the two share
all but the path that changed (see _champ).  ``mutate()`` gives a
transient that edits its own nodes in place, for batches.
"""

import reprlib
from collections.abc import ItemsView, KeysView, Mapping, ValuesView
from itertools import chain
from types import GenericAlias
from typing import Any

from cowdb.pds import _champ
from cowdb.pds._champ import M64, accumulate, assoc, dissoc, lookup
from cowdb.pds._hashing import finish, shuffle
from cowdb.pds._missing import MISSING
from cowdb.pds._transient import Transient, edit

_new = object.__new__
_NO_DEFAULT = object()


def _rehash(acc, key, old, new):
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


def _pairs(col, kw):
    """The (key, value) pairs of a mapping or an iterable of pairs, then ``kw``."""
    if col is None:
        return kw.items()
    if isinstance(col, PMapMutation):
        raise TypeError("cannot create Maps from MapMutations: finish() it first")
    pairs = col.items() if hasattr(col, "items") else _checked_pairs(iter(col))
    if kw:
        return chain(pairs, kw.items())
    return pairs


def _checked_pairs(it):
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


def _py_make(cls, root, count, acc):
    m = _new(cls)
    m._root = root
    m._count = count
    m._hacc = acc
    return m


class _Keys(KeysView):
    __slots__ = ()

    def __iter__(self):
        return _champ.iter_keys(self._mapping._root)


class _Values(ValuesView):
    __slots__ = ()

    def __iter__(self):
        return _champ.iter_values(self._mapping._root)


class _Items(ItemsView):
    __slots__ = ()

    def __iter__(self):
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

    def __len__(self):
        return self._count

    def __getitem__(self, key):
        v = lookup(self._root, key, hash(key) & M64, MISSING)
        if v is MISSING:
            raise KeyError(key)
        return v

    def get(self, key, default=None, /):
        return lookup(self._root, key, hash(key) & M64, default)

    def __contains__(self, key):
        return lookup(self._root, key, hash(key) & M64, MISSING) is not MISSING


class _PyMap(_PyReader):
    """PMap's base without the accelerator."""

    __slots__ = ("_root", "_count", "_hacc", "__weakref__")

    def __iter__(self):
        return _champ.iter_keys(self._root)

    def set(self, key, val, /):
        """A map with ``key`` bound to ``val`` (this one if it already is)."""
        box = []
        root = assoc(self._root, hash(key) & M64, key, val, None, 0, box)
        old = box[0] if box else MISSING
        if root is self._root:
            return self
        return _make(type(self), root, self._count + (old is MISSING),
                     _rehash(self._hacc, key, old, val))

    def delete(self, key, /):
        """A map without ``key``; KeyError if it is absent."""
        box = []
        root = dissoc(self._root, hash(key) & M64, key, None, 0, box)
        old = box[0] if box else MISSING
        if old is MISSING:
            raise KeyError(key)
        return _make(type(self), root, self._count - 1, _rehash(self._hacc, key, old, MISSING))


class _PyMutation(_PyReader):
    """PMapMutation's base without the accelerator."""

    __slots__ = ("_root", "_count", "_hacc", "_owner", "_result")

    @edit
    def __setitem__(self, key, val):
        box = []
        h = hash(key) & M64  # before reading the root: a key's __hash__ may edit it
        root = assoc(self._root, h, key, val, self._token(), 0, box)
        old = box[0] if box else MISSING
        if old is not val:
            self._root = root
            self._count += old is MISSING
            acc, self._hacc = self._hacc, None  # unknown if hashing is interrupted
            self._hacc = _rehash(acc, key, old, val)

    def set(self, key, val, /):
        """Bind ``key`` to ``val`` in place."""
        self[key] = val

    def __delitem__(self, key):
        self.pop(key)

    @edit
    def pop(self, key, default=_NO_DEFAULT, /):
        """Remove ``key`` and return its value (or ``default`` if absent)."""
        box = []
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


if _champ.accelerator is not None:
    _acc = _champ.accelerator
    _MapBase, _MutationBase, _make = _acc.MapBase, _acc.MutationBase, _acc.make
else:
    _MapBase, _MutationBase, _make = _PyMap, _PyMutation, _py_make


class PMap(_MapBase):  # type: ignore[valid-type,misc]  # C-or-Python switch
    """An immutable mapping; ``set``/``delete``/``update`` return new maps.

    ``PMap(mapping_or_pairs, **kw)`` builds one like ``dict(...)``.  Equal to
    any Mapping with equal items; ``hash(m) == hash(frozenset(m.items()))``
    and costs O(1), the accumulator being kept up to date by every update.
    """

    __slots__ = ()
    __class_getitem__: Any = classmethod(GenericAlias)

    def __init__(self, col=None, /, **kw):
        if type(col) is type(self) and not kw:
            self._root, self._count, self._hacc = col._root, col._count, col._hacc
            return
        d = col if type(col) is dict and not kw else dict(_pairs(col, kw))
        self._root, self._count, self._hacc = _champ.build_dict(d)  # _hacc None: unhashable

    def keys(self):
        return _Keys(self)

    def values(self):
        return _Values(self)

    def items(self):
        return _Items(self)

    def update(self, col=None, /, **kw):
        """A map with the pairs of ``col`` and ``kw`` added, built in one transient."""
        if col is None and not kw:
            return self
        mm = self.mutate()
        mm.update(col, **kw)
        return mm.finish()

    def mutate(self):
        """A transient copy to edit in place; ``finish()`` it into a PMap."""
        return PMapMutation(self)

    def __eq__(self, other):
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

    def __hash__(self):
        if self._hacc is None:
            self._hacc = accumulate(self.items())
        return finish(self._hacc, self._count)

    def __reduce__(self):
        return type(self), (dict(self.items()),)

    @reprlib.recursive_repr("{...}")
    def __repr__(self):
        body = ", ".join(f"{k!r}: {v!r}" for k, v in self.items())
        return f"{type(self).__name__}({{{body}}})"


def _mapping_equal(root, count, other):
    if len(other) != count:
        return False
    for k, v in other.items():
        w = lookup(root, k, hash(k) & M64, MISSING)
        if w is MISSING or not (w is v or w == v):
            return False
    return True


class PMapMutation(_MutationBase, Transient):  # type: ignore[valid-type,misc]  # as PMap
    """A PMap being edited in place: ``mm[k] = v``, ``del mm[k]``, ``finish()``.

    See Transient for the rules; a finished mutation raises ValueError on
    any edit.
    """

    __slots__ = ()

    def __init__(self, m):
        super().__init__()
        self._root = m._root
        self._count = m._count
        self._hacc = m._hacc

    def update(self, col=None, /, **kw):
        """Set every pair of ``col`` (a mapping or pairs) and ``kw``."""
        self._token()
        setitem = self.__setitem__
        for key, val in _pairs(col, kw):
            setitem(key, val)

    def __iter__(self):
        raise TypeError("a PMapMutation is not iterable: finish() it first")

    def _freeze(self):
        return _make(PMap, self._root, self._count, self._hacc)

    def __eq__(self, other):
        if not isinstance(other, PMapMutation):
            return NotImplemented
        return self._count == other._count and _champ.equal(self._root, other._root)

    @reprlib.recursive_repr("{...}")
    def __repr__(self):
        body = ", ".join(f"{k!r}: {v!r}" for k, v in _champ.iter_items(self._root))
        return f"PMapMutation({{{body}}})"


Mapping.register(PMap)
_champ.python_methods(PMap, _PyMap)
_champ.python_methods(PMapMutation, _PyMutation)
