"""Three-way merges: of one block's text word by word, and of a whole block's value.

``merge_words(base, ours, theirs)`` splits each text into words (a word keeps the
white space that follows it), finds what each side changed against the base as
regions of base words, and applies both sides' regions when they do not overlap.
Two regions overlap when they share a base word, or when both insert at the same
place, or one inserts strictly inside the other's region; identical changes on
both sides are taken once. Anything else is a true conflict: None is returned and
the caller reports both versions.

``merge_block(base, ours, theirs)`` does the same for one block, where None means
"the block is not there" (never made, or deleted).
"""
from __future__ import annotations

import re
from difflib import SequenceMatcher

_WORD = re.compile(r"\s+|\S+\s*")


def words(text: str) -> list[str]:
    """A text as words, each with the white space after it (leading space alone)."""
    return _WORD.findall(text)


Region = tuple[int, int, list[str]]     # base words [i1, i2) replaced by a list of words


def _changes(base: list[str], other: list[str]) -> list[Region]:
    """What ``other`` changed against ``base``: (i1, i2, replacement) regions."""
    sm = SequenceMatcher(None, base, other, autojunk=False)
    return [(i1, i2, other[j1:j2]) for tag, i1, i2, j1, j2 in sm.get_opcodes()
            if tag != "equal"]


def _overlap(a: Region, b: Region) -> bool:
    (a1, a2, _), (b1, b2, _) = a, b
    if a1 < b2 and b1 < a2:
        return True                   # they share a base word
    if a1 == a2 and b1 == b2:
        return a1 == b1               # both insert at the same place
    if a1 == a2:
        return b1 < a1 < b2
    if b1 == b2:
        return a1 < b1 < a2
    return False


def merge_words(base: str, ours: str, theirs: str) -> str | None:
    """The text with both sides' changes, or None for a true conflict."""
    if ours == theirs or theirs == base:
        return ours
    if ours == base:
        return theirs
    b = words(base)
    mine, yours = _changes(b, words(ours)), _changes(b, words(theirs))
    regions: list[Region] = []
    for c in mine:
        same = [d for d in yours if d[:2] == c[:2]]
        if same and same[0][2] == c[2]:
            continue                  # the same change on both sides: take it once
        if any(_overlap(c, d) for d in yours):
            return None
        regions.append(c)
    regions += yours
    regions.sort(key=lambda r: (r[0], r[1]))
    out: list[str] = []
    at = 0
    for i1, i2, repl in regions:
        out += b[at:i1]
        out += repl
        at = i2
    out += b[at:]
    return "".join(out)


def merge_block(base: str | None, ours: str | None, theirs: str | None
                ) -> tuple[str | None, bool]:
    """Three-way merge of one block's value (a str, or None when absent).

    Returns (value, conflict): value is the merged value (None: the block is gone);
    when conflict is True, value is ``theirs`` (what is already there) and the caller
    reports ours."""
    if ours == theirs:
        return ours, False
    if theirs == base:
        return ours, False
    if ours == base:
        return theirs, False
    if base is None or ours is None or theirs is None:
        return theirs, True           # added twice differently, or deleted against an edit
    merged = merge_words(base, ours, theirs)
    if merged is None:
        return theirs, True
    return merged, False
