"""The marker for "no value on this side" in diffs and internal lookups."""


class _Missing:
    """A singleton no user value can be equal to (it compares by identity)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING = _Missing()
