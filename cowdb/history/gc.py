"""Garbage collection: mark what kept versions reach, free what only dropped ones reach.

Marking walks each kept root with one shared ``seen`` set, so a subtree
that many versions share is visited once: O(unique reachable pages). The
sweep walks only the dropped roots, skipping everything marked, so its cost
is the garbage itself. Freed pages are handed to the page store, which
reuses them once no reader or fallback commit can reach them.
"""
from ..tree.walk import walk


def mark(nodes, roots) -> set[int]:
    seen: set[int] = set()
    for ref in roots:
        for _ in walk(nodes, ref, 0, seen):
            pass
    return seen


def sweep(nodes, roots, marked: set[int]) -> list[tuple[int, int]]:
    """(page, npages) runs reachable from ``roots`` and not marked; ``marked`` grows."""
    garbage = []
    for ref in roots:
        garbage.extend(walk(nodes, ref, 0, marked))
    return garbage


def mark_count(nodes, roots, seen: set[int]) -> int:
    """Mark ``roots`` into ``seen``; return how many pages were new."""
    return sum(n for ref in roots for _, n in walk(nodes, ref, 0, seen))
