"""PVector: a persistent list, a 32-way trie with a tail (as in Clojure).

The last up-to-32 elements live in a plain list, the tail, so most appends
copy only that; the tail is pushed into the trie as a leaf when full.  A
trie node is a list of 32 slots (None where empty) plus an owner token at
index 32, the same in-place rule as the hash trie (see Transient).  Leaves
to the left of the tail are always full, so element ``i`` is found by
shifting ``i`` five bits per level.
"""

import reprlib
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from types import GenericAlias
from typing import TYPE_CHECKING, Any, Generic, Self, TypeAlias, TypeVar, overload

from cowdb.pds._transient import Transient

T = TypeVar("T")
# A trie node: 32 slots (children, or elements in a leaf; None where empty), then the owner.
Node: TypeAlias = list[Any]

_new = object.__new__
_EMPTY_SLOTS: Node = [None] * 32


def _node(children: list[Any], owner: object) -> Node:
    """A trie node holding ``children`` left-packed."""
    return children + _EMPTY_SLOTS[len(children):] + [owner]


def _editable(node: Node, owner: object) -> Node:
    if owner is not None and node[32] is owner:
        return node
    node = node[:]
    node[32] = owner
    return node


def _leaf(root: Node, shift: int, i: int) -> Node:
    """The leaf holding element ``i`` (which must be left of the tail)."""
    node = root
    while shift:
        node = node[(i >> shift) & 31]
        shift -= 5
    return node


def _edit_path(root: Node, shift: int, i: int, owner: object) -> tuple[Node, Node]:
    """(root, leaf) with every node on the way to element ``i`` editable.

    Missing nodes are created, so this also makes room for a new leaf.
    """
    root = node = _editable(root, owner)
    while shift > 5:
        j = (i >> shift) & 31
        child = node[j]
        child = _node([], owner) if child is None else _editable(child, owner)
        node[j] = child
        node = child
        shift -= 5
    return root, node


def _push_leaf(root: Node, shift: int, tailoff: int, leaf: Node,
               owner: object) -> tuple[Node, int]:
    """Root and shift after appending ``leaf`` (elements from ``tailoff``)."""
    if tailoff >> 5 == 1 << shift:  # the trie is full: grow a level
        root = _node([root], owner)
        shift += 5
    root, parent = _edit_path(root, shift, tailoff, owner)
    parent[(tailoff >> 5) & 31] = leaf
    return root, shift


def _set_in_trie(root: Node, shift: int, i: int, x: object, owner: object) -> Node:
    """The root after element ``i`` (left of the tail) became ``x``."""
    root, parent = _edit_path(root, shift, i, owner)
    leaf = parent[(i >> 5) & 31] = _editable(parent[(i >> 5) & 31], owner)
    leaf[i & 31] = x
    return root


def _trie_equal(a: Node, b: Node, shift: int) -> bool:
    """Whether two tries of the same length hold equal elements.

    Subtrees the two share are skipped: versions of one vector compare in
    time proportional to what changed.
    """
    if a is b:
        return True
    if not shift:
        return a[:32] == b[:32]
    return all(x is y or (x is not None and y is not None and _trie_equal(x, y, shift - 5))
               for x, y in zip(a[:32], b[:32]))


def _pop_leaf(node: Node, shift: int, i: int, owner: object) -> Node | None:
    """``node`` without the leaf holding element ``i`` (None if left empty)."""
    j = (i >> shift) & 31
    if shift > 5:
        child = _pop_leaf(node[j], shift - 5, i, owner)
        if child is None and j == 0:
            return None
    elif j == 0:
        return None
    else:
        child = None
    node = _editable(node, owner)
    node[j] = child
    return node


def _build(items: list[Any]) -> tuple[Node, int, list[Any]]:
    """(root, shift, tail) for a list of elements, built bottom-up."""
    tailoff = (len(items) - 1) & ~31 if items else 0
    nodes = [items[i:i + 32] + [None] for i in range(0, tailoff, 32)]
    shift = 5
    while len(nodes) > 32:
        nodes = [_node(nodes[i:i + 32], None) for i in range(0, len(nodes), 32)]
        shift += 5
    return _node(nodes, None), shift, items[tailoff:]


class _Reader:
    """What a PVector and its mutation both answer."""

    __slots__ = ()
    _count: int
    _shift: int
    _root: Node
    _tail: list[Any]

    def __len__(self) -> int:
        return self._count

    def _index(self, i: int) -> int:
        n = self._count
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("PVector index out of range")
        return i

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return PVector([self[j] for j in range(*i.indices(self._count))])
        i = self._index(i)
        tailoff = self._count - len(self._tail)
        if i >= tailoff:
            return self._tail[i - tailoff]
        return _leaf(self._root, self._shift, i)[i & 31]

    def __iter__(self) -> Iterator[Any]:
        root, shift, tail = self._root, self._shift, self._tail
        leaves = (_leaf(root, shift, i)[:32] for i in range(0, self._count - len(tail), 32))
        return chain(chain.from_iterable(leaves), tail)


# The checker reads PVector as the Sequence it is registered as; at run time it is
# Generic only, for its type parameter.
if TYPE_CHECKING:
    _Typed = Sequence
else:
    _Typed = Generic


class PVector(_Reader, _Typed[T]):
    """An immutable sequence; ``append``/``set``/``pop`` return new vectors.

    Equal to a list, a tuple or a PVector with equal elements in order, and
    hashes like the tuple of its elements.
    """

    __slots__ = ("_count", "_shift", "_root", "_tail", "_hash", "__weakref__")
    __class_getitem__: Any = classmethod(GenericAlias)
    _hash: int | None

    if TYPE_CHECKING:  # _Reader's, with the element type
        @overload
        def __getitem__(self, i: int) -> T: ...
        @overload
        def __getitem__(self, i: slice) -> "PVector[T]": ...
        def __getitem__(self, i: int | slice) -> "T | PVector[T]": ...
        def __iter__(self) -> Iterator[T]: ...

    def __init__(self, iterable: Iterable[T] = ()) -> None:
        items = list(iterable)
        self._root, self._shift, self._tail = _build(items)
        self._count = len(items)
        self._hash = None

    @classmethod
    def _make(cls, count: int, shift: int, root: Node, tail: list[Any]) -> Self:
        v = _new(cls)
        v._count, v._shift, v._root, v._tail, v._hash = count, shift, root, tail, None
        return v

    def append(self, x: T) -> Self:
        """A vector with ``x`` at the end."""
        tail = self._tail
        n = self._count
        if len(tail) < 32:
            return self._make(n + 1, self._shift, self._root, tail + [x])
        root, shift = _push_leaf(self._root, self._shift, n - 32, tail + [None], None)
        return self._make(n + 1, shift, root, [x])

    def extend(self, iterable: Iterable[T]) -> "PVector[T]":
        """A vector with every element of ``iterable`` appended."""
        e = self.evolver()
        e.extend(iterable)
        return e.finish()

    def set(self, i: int, x: T) -> Self:
        """A vector with element ``i`` replaced by ``x``."""
        i = self._index(i)
        tailoff = self._count - len(self._tail)
        if i >= tailoff:
            tail = self._tail[:]
            tail[i - tailoff] = x
            return self._make(self._count, self._shift, self._root, tail)
        root = _set_in_trie(self._root, self._shift, i, x, None)
        return self._make(self._count, self._shift, root, self._tail)

    def pop(self) -> "PVector[T]":
        """A vector without its last element; IndexError if empty."""
        e = self.evolver()
        e.pop()
        return e.finish()

    def evolver(self) -> "PVectorMutation[T]":
        """A transient copy to edit in place; ``finish()`` it into a PVector."""
        return PVectorMutation(self)

    mutate = evolver

    def index(self, x: Any, start: int = 0, stop: int | None = None) -> int:
        n = self._count
        start, stop, _ = slice(start, stop).indices(n)
        for i, e in enumerate(self):
            if start <= i < stop and (e is x or e == x):
                return i
        raise ValueError(f"{x!r} is not in PVector")

    def count(self, x: Any) -> int:
        return sum(1 for e in self if e is x or e == x)

    def __add__(self, other: Iterable[T]) -> "PVector[T]":
        if isinstance(other, (PVector, list, tuple)):
            return self.extend(other)
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PVector):
            return (
                self._count == other._count
                and self._shift == other._shift
                and self._tail == other._tail
                and _trie_equal(self._root, other._root, self._shift)
            )
        if isinstance(other, (list, tuple)):
            return self._count == len(other) and all(a is b or a == b for a, b in zip(self, other))
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self))
        return self._hash

    def __reduce__(self) -> tuple[type[Self], tuple[list[T]]]:
        return type(self), (list(self),)

    @reprlib.recursive_repr("[...]")
    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class PVectorMutation(_Reader, Transient[PVector[T]]):
    """A PVector being edited in place (pyrsistent calls it an evolver)."""

    __slots__ = ("_count", "_shift", "_root", "_tail", "_owner", "_result")

    if TYPE_CHECKING:  # _Reader's, with the element type
        @overload
        def __getitem__(self, i: int) -> T: ...
        @overload
        def __getitem__(self, i: slice) -> PVector[T]: ...
        def __getitem__(self, i: int | slice) -> T | PVector[T]: ...

    def __init__(self, v: PVector[T]) -> None:
        super().__init__()
        self._count, self._shift, self._root = v._count, v._shift, v._root
        self._tail = v._tail[:]  # the one list it edits without a token

    def append(self, x: T) -> None:
        owner = self._token()
        tail = self._tail
        if len(tail) == 32:
            tail.append(owner)  # the full tail becomes an owned leaf
            self._root, self._shift = _push_leaf(self._root, self._shift, self._count - 32,
                                                 tail, owner)
            tail = self._tail = []
        tail.append(x)
        self._count += 1

    def extend(self, iterable: Iterable[T]) -> None:
        for x in iterable:
            self.append(x)

    def __setitem__(self, i: int, x: T) -> None:
        owner = self._token()
        i = self._index(i)
        tailoff = self._count - len(self._tail)
        if i >= tailoff:
            self._tail[i - tailoff] = x
            return
        self._root = _set_in_trie(self._root, self._shift, i, x, owner)

    set = __setitem__

    def pop(self) -> T:
        """Remove the last element and return it."""
        owner = self._token()
        n = self._count
        if not n:
            raise IndexError("pop from empty PVector")
        x: T = self._tail.pop()
        self._count = n - 1
        if not self._tail and n > 1:  # refill the tail from the last leaf
            tailoff = n - 1 - 32
            self._tail = _leaf(self._root, self._shift, tailoff)[:32]
            root = _pop_leaf(self._root, self._shift, tailoff, owner) or _node([], owner)
            if self._shift > 5 and root[1] is None:
                root = root[0]
                self._shift -= 5
            self._root = root
        return x

    def _freeze(self) -> PVector[T]:
        return PVector._make(self._count, self._shift, self._root, self._tail)

    def persistent(self) -> PVector[T]:
        """finish(), by pyrsistent's name."""
        return self.finish()


Sequence.register(PVector)
