"""Fractional indexing: block keys that sort in document order and leave room between.

A key is a string of base-62 digits read as a fraction 0.d1d2d3... ; ``between(a, b)``
returns a key strictly between two keys, so an insertion never renumbers the blocks
around it. Keys never end in the smallest digit, so there is always room below any
key as well as above it. A few random digits are appended to every new key so two
writers inserting at the same place at the same time (from the same base) pick
different keys: the merge keeps both blocks instead of colliding.

The digits are ASCII and in ASCII order, so comparing the encoded bytes (what the
database's B+tree does) is comparing the fractions.
"""
from __future__ import annotations

import random as _random
from typing import Protocol


class Rng(Protocol):
    """What the keys need of a random source (random.Random, or the random module)."""

    def randrange(self, start: int, stop: int, /) -> int: ...


DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BASE = len(DIGITS)
_VALUE = {c: i for i, c in enumerate(DIGITS)}
JITTER = 3          # random digits appended to a new key


def is_key(k: str) -> bool:
    """A valid block key: digits only, not empty, not ending in the smallest digit."""
    return bool(k) and all(c in _VALUE for c in k) and k[-1] != DIGITS[0]


def _jitter(rng: Rng) -> str:
    return "".join(DIGITS[rng.randrange(1, BASE)] for _ in range(JITTER))


def between(a: str | None, b: str | None, rng: Rng | None = None, even: bool = False) -> str:
    """A key strictly between ``a`` and ``b``; None is the start (for a) or the end (for
    b) of the document. Raises ValueError unless a < b. ``even``: the middle of the gap
    (used to split a gap for a run of keys, see run())."""
    r: Rng = rng or _random
    a = a or ""
    if a and not is_key(a) or b is not None and not is_key(b):
        raise ValueError(f"not block keys: {a!r}, {b!r}")
    if b is not None and not a < b:
        raise ValueError(f"between({a!r}, {b!r}): the first key must sort before the second")
    out = []
    i = 0
    upper_open = b is None
    while True:
        da = _VALUE[a[i]] if i < len(a) else 0
        db = BASE if upper_open or b is None else (_VALUE[b[i]] if i < len(b) else 0)
        if db - da >= 2:
            # room for a digit strictly between: pick one at random, then jitter
            # Inside a gap bounded on both sides: anywhere in it. Appending (above a,
            # nothing above): a digit or two up, so a run of appends grows the key by
            # one digit per ~40 blocks. Prepending (below b, nothing of a left): a
            # digit or two down, likewise. An empty document: the middle.
            lo, hi = da + 1, db
            if even:
                lo = (da + db) // 2
                hi = lo + 1
            elif i >= len(a):
                if b is None:
                    lo = hi = BASE // 2
                    hi += 1
                else:
                    lo = max(lo, db - 2)
            elif upper_open:
                hi = min(db, da + 3)
            out.append(DIGITS[r.randrange(lo, hi)])
            return "".join(out) + _jitter(r)
        out.append(DIGITS[da])
        if db - da == 1:
            upper_open = True   # anything above a's digits now stays below b
        i += 1


def spread(n: int, rng: Rng | None = None) -> list[str]:
    """``n`` increasing keys spread evenly over the whole range (for a new document),
    so later insertions anywhere stay short."""
    r: Rng = rng or _random
    width = 1
    while BASE ** width < 2 * (n + 1):
        width += 1
    span = BASE ** width
    keys = []
    for i in range(1, n + 1):
        x = span * i // (n + 1)
        ds = []
        for _ in range(width):
            x, d = divmod(x, BASE)
            ds.append(DIGITS[d])
        keys.append("".join(reversed(ds)) + _jitter(r))
    return keys


def run(a: str | None, b: str | None, n: int, rng: Rng | None = None) -> list[str]:
    """``n`` increasing keys strictly between ``a`` and ``b``, by halving the gap: a
    block of n paragraphs pasted in one place gets keys of O(log n) digits, not the
    O(n) that n successive appends would make."""
    r: Rng = rng or _random
    out: list[str] = []

    def fill(lo: str | None, hi: str | None, m: int) -> None:
        if m <= 0:
            return
        mid = between(lo, hi, r, even=True)
        fill(lo, mid, m // 2)
        out.append(mid)
        fill(mid, hi, m - m // 2 - 1)

    fill(a, b, n)
    return out
