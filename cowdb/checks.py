"""Argument checks shared by the public methods: bad input raises a specific error from
cowdb.errors before anything is written."""
from __future__ import annotations

import math

from .errors import InvalidType, InvalidValue


def check_text(s, what: str) -> str:
    """A message or an author: a str that UTF-8 can store (no lone surrogates)."""
    if not isinstance(s, str):
        raise InvalidType(f"{what} must be a str, not {type(s).__name__}")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidValue(f"{what} is not valid text ({e.reason} at character {e.start}); "
                           f"a lone surrogate cannot be stored") from None
    return s


def check_timeout(timeout) -> None:
    """None (wait as long as it takes) or a number of seconds >= 0."""
    if timeout is None:
        return
    if type(timeout) not in (int, float):
        raise InvalidType(f"timeout must be a number of seconds or None, not "
                          f"{type(timeout).__name__}")
    if not timeout >= 0 or math.isinf(timeout):
        raise InvalidValue(f"timeout must be >= 0 seconds (or None to wait without limit), "
                           f"not {timeout}")


def check_path(path, what: str) -> str:
    """A path for a new file: non-empty."""
    import os
    try:
        path = os.fspath(path)
    except TypeError:
        raise InvalidType(f"{what} must be a path (str or os.PathLike), not "
                          f"{type(path).__name__}") from None
    if not path:
        raise InvalidValue(f"{what} is empty; give the path of a new file")
    return os.fsdecode(path)
