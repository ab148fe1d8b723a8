"""Database.check(): verify every page that any version, the catalog and the free list
reach, and that the page accounting adds up (the way bbolt's tx_check.go does)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import Corruption, damage_of
from .history.catalog import BRANCH, TAG, Catalog
from .tree.btree import NodeCache, Tree
from .tree.walk import walk

if TYPE_CHECKING:
    from .db import Database, _State


@dataclass(slots=True)
class CheckReport:
    """What ``Database.check()`` found: ok is True when errors is empty."""
    versions: int = 0
    pages: int = 0
    free_pages: int = 0
    page_count: int = 0
    errors: list[str] = field(default_factory=list)
    pages_used: list[tuple[int, int]] = field(default_factory=list, repr=False)  # runs

    @property
    def ok(self) -> bool:
        return not self.errors


def check_state(db: Database, st: _State) -> CheckReport:
    """What ``Database.check()`` reports of a state it has pinned."""
    report = CheckReport()
    store = db._store
    nodes = NodeCache(store, 1 << 16)  # read from the file, not this handle's cache
    seen: set[int] = set()
    used = report.pages_used
    try:
        used.extend(walk(nodes, st.catalog, 0, seen))
        cat = Catalog(Tree(nodes, st.catalog), st.pending, st.pending_log)
        kept = set()
        for c in cat.commits(reverse=False):
            report.versions += 1
            kept.add(c.version)
            try:
                used.extend(walk(nodes, c.root, 0, seen))
            except Corruption as e:
                report.errors.append(f"version {c.version}: {damage_of(e)}")
        for kind, word in ((BRANCH, "branch"), (TAG, "tag")):
            report.errors += [f"{word} {name!r} names version {v}, which is not kept"
                              for name, v in cat.refs(kind).items() if v not in kept]
    except Corruption as e:
        report.errors.append(f"catalog: {damage_of(e)}")
    meta = st.meta  # not the store's: a writer thread may be changing those
    try:  # every image of the chain, read from the file
        fl = store._load_freelist(meta)
    except Corruption as e:
        report.errors.append(f"free list: {damage_of(e)}")
        fl = None
    if fl is not None:
        used.extend(fl.chain)
    owned: dict[int, int] = {}
    for first, n in used:
        for p in range(first, first + n):
            if p >= meta.page_count:
                report.errors.append(f"page {p} lies past the end of the database")
            owned[p] = owned.get(p, 0) + 1
    free = set() if fl is None else set(fl.pages())
    if fl is not None:
        if len(free) != fl.count():
            report.errors.append(f"the free list holds {fl.count() - len(free)} pages "
                                 f"more than once")
        both = sorted(free.intersection(owned))
        if both:
            report.errors.append(f"{len(both)} pages are both free and in use, e.g. "
                                 f"{both[:5]}")
        if not report.errors:  # with damage, what is unreachable says nothing new
            lost = [p for p in range(store.first_unit, meta.page_count)
                    if p not in owned and p not in free]
            if lost:
                report.errors.append(f"{len(lost)} pages are neither reachable nor free, "
                                     f"e.g. {lost[:5]}")
    report.pages = len(owned)
    report.free_pages = len(free)
    report.page_count = meta.page_count
    return report
