"""Argument checks shared by the public methods: bad input raises a specific error from
cowdb.errors before anything is written."""
from __future__ import annotations

import math

import re

from .errors import InvalidRefName, InvalidType, InvalidValue


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


_REF_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f~^:?*\[\\\u2028\u2029]")
_TIME_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def check_ref_name(name: str, what: str) -> str:
    """A name for a new branch or tag (the caller checked it is a valid str).

    git's check-ref-format rules: no control characters or ``~ ^ : ? * [ \\``;
    no ``..`` or ``@{``; not ``@``; no part (between ``/``) that starts with ``.`` or
    ends with ``.lock``; no leading, trailing or doubled ``/``; no trailing ``.``.
    And, so the command line can tell it from a version, a time or an option: not all
    digits, not starting like a date (``2025-01-31``), not starting with ``-``.
    Unlike git, a space inside a name is fine ("before shipping"): a quoted argument
    shows where it ends. Existing refs are never checked again: they stay readable and deletable."""
    def bad(why: str):
        raise InvalidRefName(f"{what} name {name!r} is not allowed: {why}")
    m = _REF_BAD_CHARS.search(name)
    if m:
        bad(f"it contains {m.group()!r} (no control characters or ~ ^ : ? * [ \\)")
    if name.isdigit():
        bad("a name of digits only would read as a version number")
    if _TIME_LIKE.match(name):
        bad("a name that starts like a date would read as a time")
    if name.startswith("-"):
        bad("a name that starts with '-' would read as an option")
    if ".." in name or "@{" in name or name == "@":
        bad("'..', '@{' and '@' alone are reserved (git's ref-name rules)")
    if name.startswith("/") or name.endswith("/") or "//" in name or name.endswith("."):
        bad("no leading, trailing or doubled '/', and no trailing '.'")
    for part in name.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            bad("no part may start with '.' or end with '.lock'")
    return name
