"""Three-way merge at key level, by merging two structural diffs.

``theirs`` changes (base -> theirs) are applied to a writable copy of
``ours`` unless ours changed the same key differently (base -> ours): that
is a conflict, settled by ``resolve`` or reported. Both diffs skip shared
subtrees, and applying d changes copies O(d x depth) pages, so a merge
costs the size of the two sides' changes, not the size of the database.
"""
from dataclasses import dataclass

from . import diff as diffmod
from .btree import Tree


@dataclass(frozen=True, slots=True)
class Conflict:
    key: bytes
    base: bytes | None
    ours: bytes | None
    theirs: bytes | None


def merge3(nodes, base_ref, ours: Tree, theirs_ref, resolve=None,
           stats: diffmod.DiffStats | None = None) -> tuple[list[Conflict], int, int]:
    """Apply base->theirs onto ``ours`` (a writable Tree). Returns the conflicts left
    unresolved (if any, ``ours`` must be thrown away) and the keys put and deleted."""
    mine = diffmod.changes(nodes, base_ref, ours.ref, stats=stats)
    other = diffmod.changes(nodes, base_ref, theirs_ref, stats=stats)
    conflicts = []
    applied = [0, 0]  # puts, deletes
    m = next(mine, None)
    for t in other:
        while m is not None and m.key < t.key:
            m = next(mine, None)
        if m is not None and m.key == t.key:
            if m.new != t.new:
                c = Conflict(t.key, t.old, m.new, t.new)
                if resolve is None:
                    conflicts.append(c)
                    continue
                value = _settle(resolve, c)
                if value != m.new:
                    _apply(ours, t.key, value, applied)
            m = next(mine, None)
        else:
            _apply(ours, t.key, t.new, applied)
    return conflicts, applied[0], applied[1]


def _settle(resolve, c: Conflict):
    if resolve == "ours":
        return c.ours
    if resolve == "theirs":
        return c.theirs
    value = resolve(c.key, c.base, c.ours, c.theirs)
    if value is not None and not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"resolve() must return bytes or None, not {type(value).__name__}")
    return None if value is None else bytes(value)


def _apply(tree: Tree, key: bytes, value, applied: list[int]) -> None:
    if value is None:
        applied[1] += tree.delete(key)
    else:
        tree.put(key, value)
        applied[0] += 1
