"""What every mutation (transient) shares: an owner token and finish().

A mutation stamps the nodes it creates with its token and edits only those
in place; everything else is copied before it is touched, so the structure
it started from never changes.  finish() is O(1): it drops the token (no
node is ever editable again) and wraps the current root.
"""


class Transient:
    """A mixin: the class (or its base) holds the ``_owner`` and ``_result`` fields."""

    __slots__ = ()
    __hash__ = None  # it changes: unhashable, like a list

    def __init__(self):
        self._owner = object()
        self._result = None

    def _token(self):
        """The owner token for an edit; ValueError once finished."""
        if self._owner is None:
            raise ValueError(f"this {type(self).__name__} has been finished; start another with mutate()")
        return self._owner

    def _freeze(self):
        """The immutable structure holding the current root."""
        raise NotImplementedError

    def finish(self):
        """The immutable result; later calls return the same object, edits raise."""
        if self._result is None:
            self._owner = None
            self._result = self._freeze()
        return self._result

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()
        return False

    def __reduce__(self):
        raise TypeError(f"cannot pickle a {type(self).__name__}: finish() it first")
