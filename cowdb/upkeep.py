"""Upkeep of a Database's space: the retention rule, garbage collection (and giving the
end of the file back), compaction into a new file, backup, and where the bytes are
(stats). Each change is one atomic txn under the writer lock, as in versions.py."""
from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING

from .checks import check_path
from .engine import Engine, StrPath
from .errors import InvalidType, InvalidValue, RefExists, WriteFailed
from .history import gc as gcmod
from .history.catalog import BRANCH, TAG
from .history.retention import Retention
from .pages.io import OsFileIO, new_file
from .tree.copy import relocate_tree
from .tree.walk import walk

if TYPE_CHECKING:
    from .db import _State
    from .history.catalog import Catalog
    from .history.commits import Commit
    from .pages.meta import RootRef

RELOCATE_MIN_PAGES = 16   # gc moves images down to give the end back only past this much
GC_ROUND = 8              # on a full disk, gc drops this many versions per txn
GC_ROUND_RUNS = 64        # ... and frees this many page runs per txn


def _disk_full(e: BaseException | None) -> bool:
    while e is not None:
        if getattr(e, "errno", None) == errno.ENOSPC:
            return True
        e = e.__cause__
    return False


@dataclass(slots=True)
class GcReport:
    """What ``gc()`` did. ``pages_freed`` counts the store's allocation units (64 bytes
    from format 3 on, a whole page in older files; the name is kept for compatibility):
    ``bytes_freed`` is the figure to show."""
    versions_dropped: int = 0
    pages_freed: int = 0
    bytes_freed: int = 0
    file_bytes_before: int = 0
    file_bytes_after: int = 0


@dataclass(slots=True)
class Stats:
    """Where the bytes are: ``file_bytes`` is the sum of ``header_bytes`` (the two meta
    pages), ``live_bytes`` (what kept versions, tags, the catalog and the free list's
    images use), ``reclaimable_bytes`` (what only versions retention drops use: gc frees
    it), ``free_bytes`` (free inside the file, reused before it grows) and
    ``reserve_bytes`` (kept past the end so that gc can run on a full disk). ``pinned``
    maps "tag NAME", "version V" and "reader TXN" to the bytes each holds beyond what the
    branch heads (and newer kept versions) hold."""
    file_bytes: int = 0
    live_bytes: int = 0
    reclaimable_bytes: int = 0
    free_bytes: int = 0
    header_bytes: int = 0
    reserve_bytes: int = 0
    versions: int = 0
    kept_versions: int = 0
    pinned: dict[str, int] = field(default_factory=dict)


class Upkeep:
    """Retention, gc, compaction, backup and stats of one Database (``db``, through the
    ``Engine`` interface): the work behind Database's methods of the same names, documented
    there."""

    def __init__(self, db: Engine) -> None:
        self._db = db

    # ---- retention and gc ------------------------------------------------
    @property
    def retention(self) -> Retention:
        with self._db._pinned() as st:
            return Retention.decode(self._db._catalog(st).option("retention"))

    def set_retention(self, keep_last: int | None = None,
                      keep_within: timedelta | None = None) -> None:
        if keep_last is not None and type(keep_last) is not int:
            raise InvalidType(f"keep_last must be an int or None, not {type(keep_last).__name__}")
        if keep_last is not None and not 1 <= keep_last < 1 << 63:
            raise InvalidValue(f"keep_last must be from 1 to 2**63 - 1, or None; not {keep_last}")
        if keep_within is not None and not isinstance(keep_within, timedelta):
            raise InvalidType("keep_within must be a datetime.timedelta or None")
        if keep_within is not None and keep_within <= timedelta(0):
            raise InvalidValue(f"keep_within must be a positive duration, not {keep_within}")
        r = Retention(keep_last, keep_within)

        def change(cat: Catalog, txn: int) -> None:
            self._db._store.may_use_reserve = True  # a full disk is freed by retention + gc
            cat.set_option("retention", r.encode())
        with self._db._writer():
            self._db._update(change)

    def _plan(self, st: _State) -> tuple[list[Commit], set[int]]:
        """(all commits newest first, kept versions) under the stored retention rule."""
        cat = self._db._catalog(st)
        commits = list(cat.commits(reverse=True))
        named = set(cat.refs(TAG).values()) | set(cat.refs(BRANCH).values())
        rule = Retention.decode(cat.option("retention"))
        return commits, rule.kept(commits, time.time_ns(), named)

    def gc(self) -> GcReport:
        self._db._check_open()
        report = GcReport(file_bytes_before=self._db._io.size())
        store = self._db._store
        with self._db._writer() as st:
            commits, keep = self._plan(st)
            dropped = [c for c in commits if c.version not in keep]
            if dropped:
                try:
                    freed = self._drop(commits, keep, [dropped], None)
                except WriteFailed as e:
                    if self._db._closed or not _disk_full(e):
                        raise
                    commits, keep = self._plan(self._db._state)
                    dropped = [c for c in commits if c.version not in keep]
                    rounds = [dropped[i:i + GC_ROUND] for i in range(0, len(dropped), GC_ROUND)]
                    freed = self._drop(commits, keep, rounds, GC_ROUND_RUNS)
                report.versions_dropped = len(dropped)
                report.pages_freed = freed
                report.bytes_freed = report.pages_freed * store.unit
            self._give_back_tail(compact=bool(dropped))
        report.file_bytes_after = self._db._io.size()
        return report

    def _drop(self, commits: list[Commit], keep: set[int], rounds: list[list[Commit]],
              max_runs: int | None) -> int:
        """Drop the commits of each round, and free the pages only they reach, in one
        durable txn per round (per ``max_runs`` freed runs, if given: the later txns of
        a round only free). A round's garbage is what it reaches and neither the kept
        versions nor the later rounds do. Return the pages freed."""
        store, nodes = self._db._store, self._db._nodes
        marked = gcmod.mark(nodes, [c.root for c in commits if c.version in keep])
        garbage = [gcmod.sweep(nodes, [c.root for c in r], marked) for r in reversed(rounds)]
        garbage.reverse()
        remaining, freed = list(commits), 0
        for chunk, runs in zip(rounds, garbage):
            gone = {c.version for c in chunk}
            rewired = gcmod.rewire(remaining, gone)
            step = max_runs or max(len(runs), 1)
            slices = [runs[i:i + step] for i in range(0, len(runs), step)] or [[]]
            for i, part in enumerate(slices):
                def change(cat: Catalog, txn: int, first: bool = i == 0,
                           part: list[tuple[int, int]] = part, chunk: list[Commit] = chunk,
                           rewired: list[Commit] = rewired) -> None:
                    store.may_use_reserve = True
                    if first:
                        for c in chunk:
                            cat.drop_commit(c)
                        for c in rewired:
                            cat.put_commit(c)
                    for page, n in part:
                        store.free(page, n)
                # durable: its frees are reusable by the next txn; forget: readers may cache
                # what it drops or rewires until it publishes, the new state forgets them
                self._db._update(change, durable=True, forget=i == 0)
                freed += sum(n for _, n in part)
            new = {c.version: c for c in rewired}
            remaining = [new.get(c.version, c) for c in remaining if c.version not in gone]
        return freed

    def _give_back_tail(self, compact: bool = False) -> None:
        """Give the end of the file back (writer lock held): move what still lives near
        the end into free space lower down, then truncate the free pages at the end.

        Two txns, each durable. The first (only when enough is free to be worth it)
        copies every image at a page >= a limit (the end the file would have if packed,
        plus slack) into the lowest free pages: the kept versions' tree pages (their
        commit records get the new roots; a subtree several versions share is copied
        once), the catalog's and the free list's (written as a new base). It syncs its
        images before its meta record (``store.barrier``), since open-time verification
        walks only commits newer than the last durable txn. The second releases what
        the first freed, once no reader and no fallback meta record can reach it (the
        usual reuse bound: a reader pinning an older txn keeps those pages, and the
        file, as they are until a later gc), cuts the free run at the end off the page
        count and truncates the file. Both are best effort: gc's own txn is already
        durable, so a failure here leaves a correct, longer file that the next gc()
        shortens."""
        try:
            if compact:
                self._compact_chains()
            self._relocate_tail()
            self._trim_tail()
        except OSError:  # WriteFailed too
            if self._db._closed:
                raise

    def _relocate_tail(self) -> None:
        store = self._db._store
        count = store.page_count
        free = store.freelist.reusable_count(self._db._reuse_bound())
        least = RELOCATE_MIN_PAGES * store.page_size // store.unit  # in units
        if free < max(least, count // 8):
            return
        packed = count - free
        limit = packed + max(least, packed // 8)
        if limit >= count:
            return
        self._rewrite_kept(limit, False)

    def _compact_chains(self) -> None:
        """After versions were dropped: write the kept delta nodes whose chains hold
        dropped versions' images again on the nearest image of the chain that is a kept
        node or a full one, and free those images (see tree/copy.py, ``live``). Without
        this, what a dropped version wrote would stay, cut into small holes between kept
        chain images, for as long as a kept version's chain reaches it."""
        self._rewrite_kept(self._db._store.page_count, True)

    def _rewrite_kept(self, limit: int, compact: bool) -> None:
        """One durable txn that relocates every kept version's tree (images at or past
        ``limit`` moved lower; with ``compact``, delta chains compacted), frees what the
        old trees reached and the new ones do not, and gives the commits their new roots.
        Nothing to do, or (relocation) a file that would grow: the txn is rolled back."""
        store = self._db._store
        count = store.page_count
        nodes = self._db._nodes

        def change(cat: Catalog, txn: int) -> None:
            memo: dict[int, RootRef] = {}  # old page -> its new reference
            commits = list(cat.commits(reverse=False))
            old = [c.root for c in commits]
            live = None
            if compact:  # the pages of every node a kept version reaches (walk: ~page)
                live = {~p for p in gcmod.mark(nodes, old) if p < 0}
            roots = []
            for c in commits:
                root = relocate_tree(nodes, store, c.root, memo, txn, limit, live)
                roots.append(root)
                if root != c.root:
                    cat.put_commit(replace(c, root=root))
            if compact and roots == old:
                raise _NoRoom  # no chain to compact
            # free what the old trees reached and the new ones do not (an image that a
            # kept delta chain still reaches stays)
            for page, n in gcmod.sweep(nodes, old, gcmod.mark(nodes, roots)):
                store.free(page, n)
            if not compact:
                cat.tree.relocate(limit)
                if store.page_count > count:
                    # free space too cut up for what must move: moving would grow the
                    # file, so do not
                    raise _NoRoom
                store.rebase_freelist = True
            store.barrier = True
            store.may_use_reserve = True
        try:
            self._db._update(change, durable=True, forget=True)  # new roots in commits
        except _NoRoom:
            pass

    def _trim_tail(self) -> None:
        store = self._db._store
        fl = store.freelist

        def change(cat: Catalog, txn: int) -> None:
            store.may_use_reserve = True
            store.page_count = fl.trim_tail(store.page_count)
        if fl.reusable_count(self._db._reuse_bound()) and fl.is_free(store.page_count - 1):
            before = store.page_count
            self._db._update(change, durable=True)
            end = store.reserve_end()
            if store.page_count < before and self._db._io.size() > end:
                self._db._io.truncate(end)   # the reserve stays, for the next gc on a full disk
                store._file_size = None

    def compact(self, dest_path: StrPath) -> None:
        dest_path = check_path(dest_path, "compact()'s destination")
        self._db._check_open()
        if os.path.exists(dest_path):
            raise RefExists(f"{dest_path} exists; compact() writes a new file")
        with self._db._pinned() as st:  # the source stays readable whatever its writer does
            cat = self._db._catalog(st)
            commits, keep = self._plan(st)
            # what gc() would drop goes, and the kept versions it would rewire are rewired
            rewired = {c.version: c for c in gcmod.rewire(
                commits, {c.version for c in commits if c.version not in keep})}
            kept = [rewired.get(c.version, c) for c in reversed(commits) if c.version in keep]
            refs = {kind: cat.refs(kind) for kind in (BRANCH, TAG)}
            options = cat.options()  # (the retention rule, the codec)
            try:
                with new_file(dest_path) as tmp:  # appears whole at dest_path, or not at all
                    from .db import Database  # (db.py imports this module)

                    # a file, whatever the source is (an object store too)
                    dst = Database(io=OsFileIO(tmp), page_size=self._db._store.page_size)
                    try:
                        with dst._writer():
                            dst._update(lambda dcat, txn: dcat.fill(
                                kept, self._db._nodes, dst._nodes, txn, refs, options))
                    finally:
                        dst.close()
            except FileExistsError:
                raise RefExists(f"{dest_path} was created while compact() wrote the copy; "
                                f"the copy was discarded: choose another path") from None

    def backup(self, dest_path: StrPath) -> int:
        from .backup import backup
        return backup(self._db, dest_path)

    # ---- stats -----------------------------------------------------------
    def stats(self) -> Stats:
        with self._db._pinned() as st:
            return self._stats(st)

    def _stats(self, st: _State) -> Stats:
        store, nodes, ps = self._db._store, self._db._nodes, self._db._store.unit
        commits, keep = self._plan(st)
        cat = self._db._catalog(st)
        out = Stats(file_bytes=self._db._io.size(), versions=len(commits), kept_versions=len(keep))
        by_version = {c.version: c for c in commits}
        seen: set[int] = set()
        catalog_pages = sum(n for _, n in walk(nodes, st.catalog, 0, seen))
        heads = cat.refs(BRANCH)
        live = catalog_pages + gcmod.mark_count(nodes, [by_version[v].root for v in
                                                        heads.values()], seen)
        for name, v in sorted(cat.refs(TAG).items()):
            n = gcmod.mark_count(nodes, [by_version[v].root], seen)
            out.pinned[f"tag {name}"] = n * ps
            live += n
        for c in commits:
            if c.version in keep:
                n = gcmod.mark_count(nodes, [c.root], seen)
                if n:
                    out.pinned[f"version {c.version}"] = n * ps
                live += n
        dead = sum(gcmod.mark_count(nodes, [c.root], seen) for c in commits
                   if c.version not in keep)
        fl = self._db._freelist_of(st)  # not the store's: a writer thread may be changing it
        pins = dict(self._db._shared.pins)
        pins[st.txn] = pins.get(st.txn, 0) - 1   # stats()'s own pin is not a reader
        for txn in sorted(t for t, n in pins.items() if n > 0):
            held = sum(fl.pages_in(runs) for t, runs in fl.pending.items() if t > txn)
            out.pinned[f"reader {txn}"] = held * ps
        # the free list is a chain of images (a base and its deltas): all of them are live
        out.live_bytes = (live + sum(n for _, n in fl.chain)) * ps
        out.reclaimable_bytes = dead * ps
        out.free_bytes = fl.count() * ps
        out.header_bytes = store.first_unit * ps
        # (in memory there is no reserve, and the last image's unused tail is not stored)
        out.reserve_bytes = max(0, out.file_bytes - st.meta.page_count * ps)
        return out


class _NoRoom(Exception):
    """Relocation would grow the file: its txn is rolled back (see _relocate_tail)."""

