"""Garbage collection: mark what kept versions reach, free what only dropped ones reach.

Marking walks each kept root with one shared ``seen`` set, so a subtree
that many versions share is visited once: O(unique reachable pages). The
sweep walks only the dropped roots, skipping everything marked, so its cost
is the garbage itself. Freed pages are handed to the page store, which
reuses them once no reader or fallback commit can reach them.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..tree.walk import walk

if TYPE_CHECKING:
    from ..pages.meta import RootRef
    from ..tree.btree import NodeCache
    from .commits import Commit


def mark(nodes: NodeCache, roots: Iterable[RootRef]) -> set[int]:
    seen: set[int] = set()
    for ref in roots:
        for _ in walk(nodes, ref, 0, seen, light=True):
            pass
    return seen


def sweep(nodes: NodeCache, roots: Iterable[RootRef], marked: set[int]
          ) -> list[tuple[int, int]]:
    """(page, npages) runs reachable from ``roots`` and not marked; ``marked`` grows."""
    garbage: list[tuple[int, int]] = []
    for ref in roots:
        garbage.extend(walk(nodes, ref, 0, marked, light=True))
    return garbage


def mark_count(nodes: NodeCache, roots: Iterable[RootRef], seen: set[int]) -> int:
    """Mark ``roots`` into ``seen``; return how many pages were new."""
    return sum(n for ref in roots for _, n in walk(nodes, ref, 0, seen, light=True))


def rewire(commits: list[Commit], dropped: set[int]) -> list[Commit]:
    """Kept commits whose parents were dropped, with each dropped parent replaced by its
    nearest kept ancestors, so the commit graph of what is kept keeps its ancestry
    (merge bases stay findable). ``commits`` is every commit, newest first."""
    by_version = {c.version: c for c in commits}
    memo: dict[int, tuple[int, ...]] = {}

    def kept_ancestors(v: int) -> tuple[int, ...]:
        if v not in dropped or v not in by_version:
            return (v,) if v in by_version else ()
        if v not in memo:
            out: list[int] = []
            for p in by_version[v].parents:
                out += [a for a in kept_ancestors(p) if a not in out]
            memo[v] = tuple(out)
        return memo[v]

    from dataclasses import replace
    changed: list[Commit] = []
    for c in reversed(commits):  # oldest first, so memo fills bottom-up (no deep recursion)
        if c.version in dropped:
            kept_ancestors(c.version)
        elif any(p in dropped for p in c.parents):
            parents: list[int] = []
            for p in c.parents:
                parents += [a for a in kept_ancestors(p) if a not in parents]
            changed.append(replace(c, parents=tuple(parents), rewired=True))
    return changed
