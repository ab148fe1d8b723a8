"""Argument checks shared by the public methods: bad input raises a specific error from
cowdb.errors before anything is written."""
from __future__ import annotations

import math
import os
import re
from typing import NoReturn, TypeAlias

from .errors import InvalidKey, InvalidRefName, InvalidType, InvalidValue, KeyTooLarge


def check_text(s: object, what: str) -> str:
    """A message or an author: a str that UTF-8 can store (no lone surrogates)."""
    if not isinstance(s, str):
        raise InvalidType(f"{what} must be a str, not {type(s).__name__}")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidValue(f"{what} is not valid text ({e.reason} at character {e.start}); "
                           f"a lone surrogate cannot be stored") from None
    return s


def check_timeout(timeout: float | None) -> None:
    """None (wait as long as it takes) or a number of seconds >= 0."""
    if timeout is None:
        return
    if type(timeout) not in (int, float):
        raise InvalidType(f"timeout must be a number of seconds or None, not "
                          f"{type(timeout).__name__}")
    if not timeout >= 0 or math.isinf(timeout):
        raise InvalidValue(f"timeout must be >= 0 seconds (or None to wait without limit), "
                           f"not {timeout}")


def check_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes], what: str) -> str:
    """A path for a new file: non-empty."""
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
    def bad(why: str) -> NoReturn:
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


# What stands for a key (check_key, as_bytes): bytes, a copy of a bytearray or memoryview's
# bytes, or a str's UTF-8 bytes.
Key: TypeAlias = bytes | bytearray | memoryview | str


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with prefix (None: no bound)."""
    p = prefix.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else None


def as_bytes(x: object, what: str, text: bool = True,
             bad_text: type[Exception] = InvalidKey) -> bytes:
    """The one rule for what stands for bytes: bytes as they are, bytearray and memoryview
    copied, str (when ``text``) as UTF-8; anything else raises InvalidType naming ``what``."""
    if type(x) is bytes:
        return x
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    if text and isinstance(x, str):
        try:
            return x.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_text(f"{x!r} is not valid text (a lone surrogate); give bytes, or a str "
                           f"UTF-8 can encode") from None
    if text:
        raise InvalidType(f"{what} must be bytes or str, not {type(x).__name__}")
    raise InvalidType(f"{what} must be bytes, not {type(x).__name__} (encode it first, or "
                      f"open the database with a codec)")


def check_key(key: object, max_key: int = 1 << 62, what: str = "keys") -> bytes:
    """Normalise a key to bytes; reject other types, the empty key and oversized keys."""
    if type(key) is not bytes:
        key = as_bytes(key, what)
    if not key:
        raise InvalidKey("the empty key cannot be stored; use a key of at least one byte")
    if len(key) > max_key:
        raise KeyTooLarge(f"a key of {len(key)} bytes is longer than this database's limit of "
                          f"{max_key} bytes (page size / 4 - 64); store long keys hashed")
    return key


def check_bound(key: object) -> bytes | None:
    """A range bound or prefix: None, or any bytes or str, empty or long (never stored)."""
    if key is None or type(key) is bytes:
        return key
    return b"" if key == "" else check_key(key)


def key_range(start: object, stop: object, prefix: object) -> tuple[bytes | None, bytes | None]:
    """The [start, stop) bounds that ``start``, ``stop`` and ``prefix`` together allow."""
    lo, hi, pre = check_bound(start), check_bound(stop), check_bound(prefix)
    if pre is not None:
        end = prefix_end(pre)
        lo = pre if lo is None or lo < pre else lo
        hi = end if hi is None or (end is not None and hi > end) else hi
    return lo, hi


def check_value(value: object) -> bytes:
    return value if type(value) is bytes else as_bytes(value, "values", text=False)
