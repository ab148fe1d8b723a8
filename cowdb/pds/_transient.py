"""What every mutation (transient) shares: an owner token and finish().

A mutation stamps the nodes it creates with its token and edits only those
in place; everything else is copied before it is touched, so the structure
it started from never changes.  finish() is O(1): it drops the token (no
node is ever editable again) and wraps the current root.
"""
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Self, TypeVar, cast

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

# Keys' own code (__eq__, __hash__) runs in the middle of an edit and may edit the very
# mutation being edited. The C trie checks the path it walks and raises where such a
# nested edit moved it; the Python trie has no such checks (they would cost every edit),
# so its mutations refuse nested edits outright: an edit marks its mutation here for its
# duration.
_editing: set[int] = set()


def edit(method: F) -> F:
    """Decorate a Python mutation's edit method: a nested edit of the same mutation (from
    a key's code) raises RuntimeError instead of running on stale positions."""
    @wraps(method)
    def guarded(self: object, *args: Any) -> Any:
        me = id(self)
        if me in _editing:
            raise RuntimeError(f"a key's __eq__ or __hash__ edited this {type(self).__name__} "
                               f"while an edit of it was running; edit it after that edit "
                               f"returns")
        _editing.add(me)
        try:
            return method(self, *args)
        finally:
            _editing.discard(me)
    return cast(F, guarded)


class Transient(Generic[R]):
    """A mixin: the class (or its base) holds the ``_owner`` and ``_result`` fields;
    ``R`` is the immutable structure ``finish()`` returns."""

    if not TYPE_CHECKING:  # the fields are in the slots of the class that mixes it in
        __slots__ = ()
    __hash__: ClassVar[None] = None  # type: ignore[assignment]  # it changes: unhashable

    _owner: object | None
    _result: R | None

    def __init__(self) -> None:
        self._owner = object()
        self._result = None

    def _token(self) -> object:
        """The owner token for an edit; ValueError once finished."""
        if self._owner is None:
            raise ValueError(f"this {type(self).__name__} has been finished; start another "
                             f"with mutate()")
        return self._owner

    def _freeze(self) -> R:
        """The immutable structure holding the current root."""
        raise NotImplementedError

    def finish(self) -> R:
        """The immutable result; later calls return the same object, edits raise."""
        if self._result is None:
            self._owner = None
            self._result = self._freeze()
        return self._result

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.finish()
        return False

    def __reduce__(self) -> str:
        raise TypeError(f"cannot pickle a {type(self).__name__}: finish() it first")
