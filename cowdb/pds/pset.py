"""PSet: a persistent set on the same CHAMP trie as PMap (values unused)."""

import reprlib
from collections.abc import Set
from types import GenericAlias
from typing import Any

from cowdb.pds import _champ
from cowdb.pds._champ import M64, assoc, dissoc, lookup
from cowdb.pds._hashing import finish, shuffle
from cowdb.pds._missing import MISSING
from cowdb.pds._transient import Transient, edit

_new = object.__new__


def _py_make(cls, root, count, acc):
    s = _new(cls)
    s._root = root
    s._count = count
    s._hacc = acc
    return s


# The fields and hot methods of PSet and PSetMutation, in Python: the
# reference for _champ_c.SetBase and SetMutationBase, as pmap's _PyMap is
# for MapBase.  PSet and PSetMutation subclass the C ones when the
# accelerator is in use, these otherwise; the rest below is shared.

class _PyReader:
    """The lookups a PSet and a PSetMutation share."""

    __slots__ = ()

    def __len__(self):
        return self._count

    def __contains__(self, elem):
        return lookup(self._root, elem, hash(elem) & M64, MISSING) is not MISSING


class _PySet(_PyReader):
    """PSet's base without the accelerator."""

    __slots__ = ("_root", "_count", "_hacc", "__weakref__")

    def __iter__(self):
        return _champ.iter_keys(self._root)

    def add(self, elem, /):
        """A set with ``elem`` (this one if it is already in)."""
        h = hash(elem) & M64
        box = []
        root = assoc(self._root, h, elem, None, None, 0, box)
        if root is self._root:
            return self
        return _make(type(self), root, self._count + 1, self._hacc ^ shuffle(h))

    def discard(self, elem, /):
        """A set without ``elem`` (this one if it was not in)."""
        h = hash(elem) & M64
        box = []
        root = dissoc(self._root, h, elem, None, 0, box)
        if not box:
            return self
        return _make(type(self), root, self._count - 1, self._hacc ^ shuffle(h))

    def remove(self, elem, /):
        """A set without ``elem``; KeyError if it was not in."""
        s = self.discard(elem)
        if s is self:
            raise KeyError(elem)
        return s


class _PySetMutation(_PyReader):
    """PSetMutation's base without the accelerator."""

    __slots__ = ("_root", "_count", "_hacc", "_owner", "_result")

    @edit
    def add(self, elem, /):
        h = hash(elem) & M64
        box = []
        root = assoc(self._root, h, elem, None, self._token(), 0, box)
        if not box:
            self._root = root
            self._count += 1
            self._hacc ^= shuffle(h)

    @edit
    def discard(self, elem, /):
        """Remove ``elem`` if present; return whether it was."""
        h = hash(elem) & M64
        box = []
        root = dissoc(self._root, h, elem, self._token(), 0, box)
        if not box:
            return False
        self._root = root
        self._count -= 1
        self._hacc ^= shuffle(h)
        return True

    def remove(self, elem, /):
        if not self.discard(elem):
            raise KeyError(elem)


if _champ.accelerator is not None:
    _acc = _champ.accelerator
    _SetBase, _SetMutationBase, _make = _acc.SetBase, _acc.SetMutationBase, _acc.make
else:
    _SetBase, _SetMutationBase, _make = _PySet, _PySetMutation, _py_make


class PSet(_SetBase, Set):  # type: ignore[valid-type,misc]  # C-or-Python switch
    """An immutable set; ``add``/``discard``/``remove`` return new sets.

    Equal to any Set with the same elements (set, frozenset, ...), and
    ``hash(s) == hash(frozenset(s))`` in O(1).  The operators and the named
    methods (union, intersection, ...) return PSets.
    """

    __slots__ = ()
    __class_getitem__: Any = classmethod(GenericAlias)

    def __init__(self, iterable=()):
        if type(iterable) is type(self):
            self._root, self._count, self._hacc = iterable._root, iterable._count, iterable._hacc
            return
        elems = dict.fromkeys(iterable)
        self._root, self._count, self._hacc = _champ.build_dict(elems, False)

    @classmethod
    def _from_iterable(cls, it):
        return cls(it)

    def mutate(self):
        """A transient copy to edit in place; ``finish()`` it into a PSet."""
        return PSetMutation(self)

    def _edited(self, edit, others):
        mm = self.mutate()
        for other in others:
            edit(mm, other)
        return mm.finish()

    def union(self, *others):
        return self._edited(PSetMutation.update, others)

    def difference(self, *others):
        return self._edited(PSetMutation.difference_update, others)

    def intersection(self, *others):
        result = self
        for other in others:
            result = type(self)(e for e in other if e in result)
        return result

    def symmetric_difference(self, other):
        return self._edited(PSetMutation.symmetric_difference_update, (other,))

    def issubset(self, other):
        return self <= (other if isinstance(other, Set) else frozenset(other))

    def issuperset(self, other):
        return all(e in self for e in other)

    def __or__(self, other):
        return self.union(other) if isinstance(other, Set) else NotImplemented

    def __sub__(self, other):
        return self.difference(other) if isinstance(other, Set) else NotImplemented

    def __xor__(self, other):
        return self.symmetric_difference(other) if isinstance(other, Set) else NotImplemented

    def __eq__(self, other):
        if isinstance(other, PSet):
            return (
                self._count == other._count
                and self._hacc == other._hacc
                and _champ.equal(self._root, other._root)
            )
        if isinstance(other, Set):
            return self._count == len(other) and all(e in self for e in other)
        return NotImplemented

    def __hash__(self):
        return finish(self._hacc, self._count)

    def __reduce__(self):
        return type(self), (list(self),)

    @reprlib.recursive_repr("{...}")
    def __repr__(self):
        name = type(self).__name__
        return f"{name}({{{', '.join(map(repr, self))}}})" if self else f"{name}()"


class PSetMutation(_SetMutationBase, Transient):  # type: ignore[valid-type,misc]  # as PSet
    """A PSet being edited in place; see Transient for the rules."""

    __slots__ = ()

    def __init__(self, s):
        super().__init__()
        self._root = s._root
        self._count = s._count
        self._hacc = s._hacc

    def update(self, iterable):
        for e in iterable:
            self.add(e)

    def difference_update(self, iterable):
        for e in iterable:
            self.discard(e)

    def symmetric_difference_update(self, iterable):
        for e in set(iterable):
            if not self.discard(e):
                self.add(e)

    def __iter__(self):
        raise TypeError("a PSetMutation is not iterable: finish() it first")

    def _freeze(self):
        return _make(PSet, self._root, self._count, self._hacc)


_champ.python_methods(PSet, _PySet)
_champ.python_methods(PSetMutation, _PySetMutation)
