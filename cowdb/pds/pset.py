"""PSet: a persistent set on the same CHAMP trie as PMap (values unused)."""

import reprlib
from collections.abc import Callable, Iterable, Iterator, Set
from types import GenericAlias
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from cowdb.pds import _champ
from cowdb.pds._champ import M64, Node, assoc, dissoc, lookup
from cowdb.pds._hashing import finish, shuffle
from cowdb.pds._missing import MISSING
from cowdb.pds._transient import Transient, edit

T = TypeVar("T")

_new = object.__new__


class _Fields(Protocol):
    """The fields of a PSet and a PSetMutation (held by their base, in C or Python)."""

    _root: Node
    _count: int
    _hacc: int


_F = TypeVar("_F", bound=_Fields)


def _py_make(cls: type[_F], root: Node, count: int, acc: int) -> _F:
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
    _root: Node
    _count: int
    _hacc: int

    def __len__(self) -> int:
        return self._count

    def __contains__(self, elem: object) -> bool:
        return lookup(self._root, elem, hash(elem) & M64, MISSING) is not MISSING


class _PySet(_PyReader):
    """PSet's base without the accelerator."""

    __slots__ = ("_root", "_count", "_hacc", "__weakref__")

    def __iter__(self) -> Iterator[Any]:
        return _champ.iter_keys(self._root)

    def add(self, elem: Any, /) -> Self:
        """A set with ``elem`` (this one if it is already in)."""
        h = hash(elem) & M64
        box: list[Any] = []
        root = assoc(self._root, h, elem, None, None, 0, box)
        if root is self._root:
            return self
        return _make(type(self), root, self._count + 1, self._hacc ^ shuffle(h))

    def discard(self, elem: Any, /) -> Self:
        """A set without ``elem`` (this one if it was not in)."""
        h = hash(elem) & M64
        box: list[Any] = []
        root = dissoc(self._root, h, elem, None, 0, box)
        if not box:
            return self
        return _make(type(self), root, self._count - 1, self._hacc ^ shuffle(h))

    def remove(self, elem: Any, /) -> Self:
        """A set without ``elem``; KeyError if it was not in."""
        s = self.discard(elem)
        if s is self:
            raise KeyError(elem)
        return s


class _PySetMutation(_PyReader):
    """PSetMutation's base without the accelerator."""

    __slots__ = ("_root", "_count", "_hacc", "_owner", "_result")

    if TYPE_CHECKING:
        def _token(self) -> object: ...  # Transient's, mixed in beside this base

    @edit
    def add(self, elem: Any, /) -> None:
        h = hash(elem) & M64
        box: list[Any] = []
        root = assoc(self._root, h, elem, None, self._token(), 0, box)
        if not box:
            self._root = root
            self._count += 1
            self._hacc ^= shuffle(h)

    @edit
    def discard(self, elem: Any, /) -> bool:
        """Remove ``elem`` if present; return whether it was."""
        h = hash(elem) & M64
        box: list[Any] = []
        root = dissoc(self._root, h, elem, self._token(), 0, box)
        if not box:
            return False
        self._root = root
        self._count -= 1
        self._hacc ^= shuffle(h)
        return True

    def remove(self, elem: Any, /) -> None:
        if not self.discard(elem):
            raise KeyError(elem)


# The C-or-Python switch.  The checker reads the bases as the fields they hold (the hot
# methods they add are declared in PSet and PSetMutation).
if TYPE_CHECKING:
    _SetBase = _Fields
    _SetMutationBase = _Fields
    _make = _py_make
elif _champ.accelerator is not None:
    _acc = _champ.accelerator
    _SetBase, _SetMutationBase, _make = _acc.SetBase, _acc.SetMutationBase, _acc.make
else:
    _SetBase, _SetMutationBase, _make = _PySet, _PySetMutation, _py_make


class PSet(_SetBase, Set[T]):
    """An immutable set; ``add``/``discard``/``remove`` return new sets.

    Equal to any Set with the same elements (set, frozenset, ...), and
    ``hash(s) == hash(frozenset(s))`` in O(1).  The operators and the named
    methods (union, intersection, ...) return PSets.
    """

    __slots__ = ()
    __class_getitem__: Any = classmethod(GenericAlias)

    if TYPE_CHECKING:  # defined by the base: _PySet, or _champ_c.SetBase (the same in C)
        _root: Node
        _count: int
        _hacc: int

        def __len__(self) -> int: ...
        def __contains__(self, elem: object, /) -> bool: ...
        def __iter__(self) -> Iterator[T]: ...
        def add(self, elem: T, /) -> Self: ...
        def discard(self, elem: T, /) -> Self: ...
        def remove(self, elem: T, /) -> Self: ...

    def __init__(self, iterable: Iterable[T] = ()) -> None:
        if type(iterable) is type(self):
            self._root, self._count, self._hacc = iterable._root, iterable._count, iterable._hacc
            return
        elems = dict.fromkeys(iterable)
        self._root, self._count, self._hacc = _champ.build_dict(elems, False)

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> "PSet[Any]":
        return cls(it)

    def mutate(self) -> "PSetMutation[T]":
        """A transient copy to edit in place; ``finish()`` it into a PSet."""
        return PSetMutation(self)

    def _edited(self, edit: Callable[["PSetMutation[T]", Any], object],
                others: Iterable[Any]) -> "PSet[T]":
        mm = self.mutate()
        for other in others:
            edit(mm, other)
        return mm.finish()

    def union(self, *others: Iterable[T]) -> "PSet[T]":
        return self._edited(PSetMutation.update, others)

    def difference(self, *others: Iterable[object]) -> "PSet[T]":
        return self._edited(PSetMutation.difference_update, others)

    def intersection(self, *others: Iterable[Any]) -> "PSet[T]":
        result = self
        for other in others:
            result = type(self)(e for e in other if e in result)
        return result

    def symmetric_difference(self, other: Iterable[T]) -> "PSet[T]":
        return self._edited(PSetMutation.symmetric_difference_update, (other,))

    def issubset(self, other: Iterable[object]) -> bool:
        return self <= (other if isinstance(other, Set) else frozenset(other))

    def issuperset(self, other: Iterable[object]) -> bool:
        return all(e in self for e in other)

    def __or__(self, other: Set[T]) -> "PSet[T]":  # type: ignore[override]
        return self.union(other) if isinstance(other, Set) else NotImplemented

    def __sub__(self, other: Set[Any]) -> "PSet[T]":
        return self.difference(other) if isinstance(other, Set) else NotImplemented

    def __xor__(self, other: Set[T]) -> "PSet[T]":  # type: ignore[override]
        return self.symmetric_difference(other) if isinstance(other, Set) else NotImplemented

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PSet):
            return (
                self._count == other._count
                and self._hacc == other._hacc
                and _champ.equal(self._root, other._root)
            )
        if isinstance(other, Set):
            return self._count == len(other) and all(e in self for e in other)
        return NotImplemented

    def __hash__(self) -> int:
        return finish(self._hacc, self._count)

    def __reduce__(self) -> tuple[type[Self], tuple[list[T]]]:
        return type(self), (list(self),)

    @reprlib.recursive_repr("{...}")
    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({{{', '.join(map(repr, self))}}})" if self else f"{name}()"


class PSetMutation(_SetMutationBase, Transient[PSet[T]]):
    """A PSet being edited in place; see Transient for the rules."""

    __slots__ = ()

    if TYPE_CHECKING:  # defined by the base: _PySetMutation, or _champ_c.SetMutationBase
        def __len__(self) -> int: ...
        def __contains__(self, elem: object, /) -> bool: ...
        def add(self, elem: T, /) -> None: ...
        def discard(self, elem: T, /) -> bool: ...
        def remove(self, elem: T, /) -> None: ...

    def __init__(self, s: PSet[T]) -> None:
        super().__init__()
        self._root = s._root
        self._count = s._count
        self._hacc = s._hacc

    def update(self, iterable: Iterable[T]) -> None:
        for e in iterable:
            self.add(e)

    def difference_update(self, iterable: Iterable[T]) -> None:
        for e in iterable:
            self.discard(e)

    def symmetric_difference_update(self, iterable: Iterable[T]) -> None:
        for e in set(iterable):
            if not self.discard(e):
                self.add(e)

    def __iter__(self) -> Iterator[T]:
        raise TypeError("a PSetMutation is not iterable: finish() it first")

    def _freeze(self) -> PSet[T]:
        return _make(PSet, self._root, self._count, self._hacc)


_champ.python_methods(PSet, _PySet)
_champ.python_methods(PSetMutation, _PySetMutation)
