"""Recovery and salvage: give back every version of a damaged file that still verifies.

A plain open refuses a damaged file (``Corruption``, naming the file and the
way out). Two ways out read what is left, page by page, checking every
checksum:

- ``recover`` (``cowdb.open(path, recover=True)``, ``cowdb recover PATH``)
  rewrites the file in place: a new catalog holding every commit whose whole
  tree verifies (one whose parent was lost naming that parent's nearest
  intact ancestors instead, as gc() rewires), branch heads moved back to
  their newest intact ancestor, tags of lost versions dropped, and a free
  list rebuilt from what is
  reachable. The new catalog and free list are written past every page a
  kept tree uses, and the old meta record stays until the new one is
  durable, so a crash during recovery leaves a file that recovers again.
- ``salvage`` (``cowdb salvage SRC DST``) never writes the source: it copies
  every intact version, branch and tag into a new file. With ``partial=True``
  (``--partial``) it also copies what still reads of each branch head that does
  not verify: one more version on that branch holding every pair whose pages
  verify, and the key ranges that did not read in the report. (Recovery in place
  frees the pages of lost versions, so a partial salvage comes first.)

Where the catalog comes from: the newest meta record whose catalog reads
whole; if its catalog is damaged, the older record's catalog fills in what
it lost; if both meta records are gone, the file is scanned for the newest
tree that looks like a catalog (it has a head of ``main`` and commit records).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from struct import Struct
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard, cast

from .errors import Corruption, CowdbError, NotACowdbFile, damage_of
from .history import gc as gcmod
from .history.catalog import BRANCH, TAG, Catalog, decode_pending
from .history.commits import Commit
from .pages import meta as metamod
from .pages.checksum import verify
from .pages.freelist import FreeList
from .pages.io import BlockIO
from .pages.meta import EMPTY, Meta, RootRef
from .pages.page import BRANCH as BRANCH_IMAGE
from .pages.page import HEADER, HEADER_SIZE, LEAF, LEAF_DELTA
from .pages.store import DEFAULT_UNIT, META_PAGES, PageStore
from .tree.btree import NodeCache, Tree, images, read_overflow
from .tree.node import Branch, Leaf, Node, Overflow, decode

if TYPE_CHECKING:
    from .db import Database

log: logging.Logger = logging.getLogger("cowdb")
_U64 = Struct(">Q")
PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)
# What one catalog source gives: (commits, refs kind -> name -> version, options, damage).
_Source: TypeAlias = tuple[dict[int, Commit], dict[bytes, dict[str, int]], dict[bytes, bytes],
                           list[str]]
# _verify's memo: (page, checksum, txn) -> (why the subtree does not verify, or None; its pages)
_VerifyMemo: TypeAlias = dict[tuple[int, int, int], tuple[str | None, frozenset[int]]]


KeyRange: TypeAlias = tuple[bytes | None, bytes | None]   # [first, end); None: unbounded


@dataclass
class PartialCopy:
    """A branch head that did not verify, copied as far as it reads (``salvage(...,
    partial=True)``): ``source`` is its version in the damaged file, ``version`` the
    version of the copy holding the ``keys`` pairs that read, ``lost`` the key ranges
    [first, end) whose pages did not (None: unbounded)."""
    branch: str
    source: int
    version: int
    keys: int
    lost: list[KeyRange]


def _show_versions(versions: list[int]) -> str:
    """Sorted version numbers as runs: "0-68, 70, 72-75"."""
    runs: list[list[int]] = []
    for v in versions:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _show_range(r: KeyRange) -> str:
    first, end = r
    return f"[{'the first key' if first is None else repr(first)}, " \
           f"{'the last key]' if end is None else repr(end) + ')'}"


@dataclass
class RecoveryReport:
    """What recovery or salvage found and did.

    ``kept``: versions that verify (and are in the result); ``lost``: version ->
    why it could not be read; ``unrecorded``: when the catalog was damaged, the versions
    below the newest found whose commit record no catalog could give (lost with the
    damaged pages, unless retention had dropped them before: a gap looks the same);
    ``refs_lost``: "tag NAME" / "branch NAME" -> the lost version it named;
    ``refs_moved``: "branch NAME" -> (from, to), from None when the branch's record was
    unreadable and its kept commits named it; ``damage``: what else was damaged (meta
    records, catalog pages, the free list); ``head``: the head of main in the result;
    ``rewritten``: the file was changed; ``partial``: the branch heads a partial salvage
    copied as far as they read.
    """
    path: str | None = None
    kept: list[int] = field(default_factory=list)
    lost: dict[int, str] = field(default_factory=dict)
    unrecorded: list[int] = field(default_factory=list)
    refs_lost: dict[str, int] = field(default_factory=dict)
    refs_moved: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    damage: list[str] = field(default_factory=list)
    head: int | None = None
    rewritten: bool = False
    partial: list[PartialCopy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing was lost or damaged."""
        return not (self.lost or self.unrecorded or self.refs_lost or self.damage)

    def lines(self) -> list[str]:
        out = []
        if self.rewritten:
            out.append(f"recovered: head of main is version {self.head}; "
                       f"{len(self.kept)} versions kept, {len(self.lost)} lost" +
                       (f", {len(self.unrecorded)} without a readable record"
                        if self.unrecorded else ""))
        for d in self.damage:
            out.append(f"damaged: {d}")
        if self.unrecorded:
            out.append(f"no record of versions {_show_versions(self.unrecorded)}: their "
                       f"commit records were on damaged catalog pages (or retention had "
                       f"dropped them before)")
        for v, why in sorted(self.lost.items()):
            out.append(f"lost version {v}: {why}")
        for name, v in sorted(self.refs_lost.items()):
            out.append(f"lost {name} (it named version {v})")
        for name, (a, b) in sorted(self.refs_moved.items()):
            out.append(f"moved {name} from version {a} to {b}" if a is not None else
                       f"recreated {name} at version {b}: its record was unreadable, and its "
                       f"newest kept commit is there")
        for pc in self.partial:
            out.append(f"partly salvaged branch {pc.branch}: {pc.keys} keys of version "
                       f"{pc.source} read, as version {pc.version}")
            out += [f"  lost keys in {_show_range(r)}" for r in pc.lost]
        return out


class _Analysis:
    """What the damaged file still holds: commits whose trees verify, refs, options."""
    report: RecoveryReport

    def __init__(self) -> None:
        self.commits: dict[int, Commit] = {}     # every commit record found
        self.kept: dict[int, Commit] = {}        # ... whose tree verifies
        self.refs: dict[bytes, dict[str, int]] = {BRANCH: {}, TAG: {}}
        self.options: dict[bytes, bytes] = {}
        self.used: set[int] = set()              # pages the kept trees reach
        self.max_txn = 0
        self.catalog_damaged = False             # some catalog page did not read
        self.metas: list[tuple[int, Meta]] = []
        self.report = RecoveryReport()


def _slot_meta(io: BlockIO) -> Meta | None:
    """The first meta record that decodes at its place (slot 0, or slot 1 at a page size)."""
    for off in [0] + list(PAGE_SIZES):
        try:
            head = io.pread(metamod.META_SIZE, off)
            n = metamod.pending_length(head)
            m = metamod.decode(head + io.pread(n, off + metamod.META_SIZE) if n else head)
            if off in (0, m.page_size):
                return m
        except metamod.BadMeta:
            continue
    return None


def _image_at(io: BlockIO, offset: int) -> bool:
    """Whether a node image (at most a page) that verifies starts at ``offset``."""
    data = io.pread(HEADER_SIZE, offset)
    length = HEADER.unpack_from(data, 0)[4] if len(data) == HEADER_SIZE else 0
    if not HEADER_SIZE <= length <= max(PAGE_SIZES):
        return False
    try:
        verify(io.pread(length, offset), offset)
        return True
    except Corruption:
        return False


def _page_size(io: BlockIO, hint: int) -> int:
    """The page size: from a meta slot if one decodes, else the smallest size at which
    the first image after the two meta pages is found (a smaller size would put it in a
    meta page), else the longest node image found (nodes are at most a page, and most
    are over half of one) rounded up to a page size."""
    m = _slot_meta(io)
    if m is not None:
        return m.page_size
    for ps in sorted(p for p in PAGE_SIZES if p >= 1024):
        if _image_at(io, 2 * ps):
            return ps
    longest = 0  # else: the longest node image near the start, rounded up to a page size
    for off in range(1024, min(io.size(), 1 << 20), 64):
        data = io.pread(HEADER_SIZE, off)
        if len(data) == HEADER_SIZE and data[8] in (LEAF, BRANCH_IMAGE):
            length = HEADER.unpack_from(data, 0)[4]
            if length > longest and _image_at(io, off):
                longest = length
    if longest:
        return next(p for p in sorted(PAGE_SIZES) if p >= max(longest, 1024))
    raise NotACowdbFile("no cowdb meta record and no cowdb page found: this is not a "
                        "cowdb database")


def _entries(nodes: NodeCache, ref: RootRef, damage: list[str], what: str
             ) -> dict[bytes, bytes]:
    """Every (key, value) of the leaves of a tree that verify; damaged subtrees are
    noted in ``damage`` and skipped."""
    out: dict[bytes, bytes] = {}
    if not ref.page:
        return out
    stack = [(ref.page, ref.checksum, ref.txn)]
    while stack:
        page, checksum, txn = stack.pop()
        try:
            node = nodes.load(page, checksum, txn)
        except (Corruption, OSError) as e:
            damage.append(f"{what}: {damage_of(e)}")
            continue
        if type(node) is Branch:
            stack.extend(zip(node.kids, node.sums, node.txns))  # type: ignore[arg-type]  # (pages)
            continue
        for k, v in zip(node.keys, node.vals):
            if type(v) is Overflow:
                try:
                    v = read_overflow(nodes.store, v)
                except (Corruption, OSError) as e:
                    damage.append(f"{what}: {damage_of(e)}")
                    continue
            out[bytes(k)] = bytes(v)
    return out


def _catalog_source(nodes: NodeCache, ref: RootRef, pending: bytes, what: str) -> _Source:
    """(commits, refs, options, damage) of one catalog tree and its pending changes."""
    damage: list[str] = []
    ents = _entries(nodes, ref, damage, what)
    if pending:
        try:
            for k, v in decode_pending(pending).items():
                if v is None:
                    ents.pop(k, None)
                else:
                    ents[k] = v
        except Corruption as e:
            damage.append(f"{what}: {damage_of(e)}")
    commits: dict[int, Commit] = {}
    refs: dict[bytes, dict[str, int]] = {BRANCH: {}, TAG: {}}
    options: dict[bytes, bytes] = {}
    for k, v in ents.items():
        kind = k[:1]
        if kind == b"c" and len(k) == 9:
            version = _U64.unpack_from(k, 1)[0]
            try:
                commits[version] = Commit.decode(version, v)
            except Exception as e:
                damage.append(f"{what}: the commit record of version {version} does not "
                              f"decode ({e})")
        elif kind in (BRANCH, TAG) and len(v) == 8:
            try:
                refs[kind][k[1:].decode()] = _U64.unpack(v)[0]
            except UnicodeDecodeError:
                damage.append(f"{what}: a ref name does not decode: {k[1:]!r}")
        elif kind == b"o":
            options[k[1:]] = v
    return commits, refs, options, damage


def _catalog_leaf(node: Node) -> TypeGuard[Leaf]:
    """Whether a node is a leaf and every entry has the shape of a catalog entry (commit
    records decode, refs name one version, time index entries are empty)."""
    if type(node) is not Leaf or not node.keys:
        return False
    for k, v in zip(node.keys, node.vals):
        kind = bytes(k[:1])
        if type(v) is Overflow:
            if kind != b"o":
                return False
        elif kind == b"c":
            if len(k) != 9:
                return False
            try:
                Commit.decode(_U64.unpack_from(k, 1)[0], bytes(v))
            except Exception:
                return False
        elif kind in (BRANCH, TAG):
            if len(v) != 8 or len(k) < 2:
                return False
        elif kind == b"i":
            if v or len(k) < 18 or k[-17] != 0:
                return False
        elif kind != b"o":
            return False
    return True


def _scan_catalog_leaves(store: PageStore, nodes: NodeCache, damage: list[str]) -> _Source:
    """The catalog entries of every catalog leaf found by reading the whole file (the
    meta records or the catalog they name are damaged), the newest image of each entry
    winning: (commits, refs, options, damage) like _catalog_source."""
    ps = store.page_size
    nunits = -(-store.io.size() // store.unit)
    best: dict[bytes, tuple[int, bytes]] = {}
    for page in range(store.first_unit, nunits):
        try:
            head = store.read_head(page)
            if head[1] not in (LEAF, LEAF_DELTA) or head[4] > ps:
                continue
            # a leaf delta (a fold appends commit records as one) reads through its chain
            node = decode(store.read(page), page) if head[1] == LEAF else nodes.load(
                page, head[0], head[5])
        except (Corruption, OSError):
            continue
        if not _catalog_leaf(node):
            continue
        txn = head[5]
        for k, v in zip(node.keys, node.vals):
            k = bytes(k)
            if k in best and best[k][0] >= txn:
                continue
            if type(v) is Overflow:
                try:
                    v = read_overflow(store, v)
                except (Corruption, OSError):
                    continue
            best[k] = (txn, bytes(v))
    commits: dict[int, Commit] = {}
    refs: dict[bytes, dict[str, int]] = {BRANCH: {}, TAG: {}}
    options: dict[bytes, bytes] = {}
    for k, (_t, v) in best.items():
        kind = k[:1]
        if kind == b"c":
            version = _U64.unpack_from(k, 1)[0]
            commits[version] = Commit.decode(version, v)
        elif kind in (BRANCH, TAG):
            try:
                refs[kind][k[1:].decode()] = _U64.unpack(v)[0]
            except UnicodeDecodeError:
                pass
        elif kind == b"o":
            options[k[1:]] = v
    if commits:
        damage.append(f"read {len(commits)} commit records from catalog pages found by "
                      f"scanning the file")
    return commits, refs, options, []


def _verify(nodes: NodeCache, ref: RootRef, memo: _VerifyMemo, pages: set[int]) -> str | None:
    """None if every page of the tree verifies (and its pages are added to ``pages``),
    else why not. ``memo`` (page, checksum, txn) -> (error or None, pages) is shared between
    the trees, so shared subtrees are read once."""
    if not ref.page:
        return None

    def sub(page: int, checksum: int, txn: int) -> tuple[str | None, frozenset[int]]:
        key = (page, checksum, txn)
        done = memo.get(key)
        if done is not None:
            return done
        mine: set[int] = set()
        err: str | None = None
        try:
            node = nodes.load(page, checksum, txn)
            mine = {u for p, n, _t in images(nodes.store, page, node) for u in range(p, p + n)}
            if type(node) is Branch:
                for kid, s, t in zip(node.kids, node.sums, node.txns):
                    e, p = sub(kid, s, t)  # type: ignore[arg-type]  # (clean: a page)
                    if e is not None:
                        err = e
                        break
                    mine |= p
            else:
                for v in node.vals:
                    if type(v) is Overflow:
                        read_overflow(nodes.store, v)
                        mine.update(range(v.page, v.page + nodes.store.pages_for(
                            HEADER_SIZE + v.length)))
        except (Corruption, OSError) as e:
            err = damage_of(e)
        out = memo[key] = (err, frozenset() if err else frozenset(mine))
        return out

    err, p = sub(ref.page, ref.checksum, ref.txn)
    if err is None:
        pages.update(p)
    return err


def analyze(store: PageStore, nodes: NodeCache, partial: bool = False) -> _Analysis:
    """Read what a damaged file still holds (never writes). Without an intact version
    this raises Corruption, unless ``partial`` (a partial salvage reads the heads)."""
    a = _Analysis()
    rep = a.report
    try:
        slots = store.read_slots()
    except (OSError, CowdbError) as e:
        slots = []
        rep.damage.append(f"the meta records cannot be read: {damage_of(e)}")
    metas = sorted(((s, m) for s, m in slots if isinstance(m, Meta)),
                   key=lambda sm: sm[1].txn, reverse=True)
    for s, m in slots:
        if not isinstance(m, Meta):
            rep.damage.append(f"meta slot {s} is damaged ({m})")
    a.metas = metas
    a.max_txn = max([m.txn for _, m in metas], default=0)
    sources: list[_Source] = []
    for slot, meta in metas:
        src = _catalog_source(nodes, meta.catalog, meta.pending,
                              f"catalog of meta slot {slot} (txn {meta.txn})")
        sources.append(src)
        if not src[3]:
            break
    a.catalog_damaged = any(src[3] for src in sources)
    scanned = not sources or all(src[3] for src in sources)
    if scanned:  # no catalog reads whole: take every catalog leaf the file still holds
        sources.append(_scan_catalog_leaves(store, nodes, rep.damage))
    for commits, refs, options, _damage in reversed(sources):  # the newest source wins
        a.commits.update(commits)
        for kind in refs:
            a.refs[kind].update(refs[kind])
        a.options.update(options)
    # an older source only fills gaps: the damage it has is not the result's
    rep.damage[:0] = sources[0][3] if len(sources) == 1 else [
        d for src in sources[:-1] for d in src[3]]
    if not a.commits:
        raise Corruption("no commit record could be read: no version can be recovered")
    memo: _VerifyMemo = {}
    for v in sorted(a.commits, reverse=True):
        c = a.commits[v]
        a.max_txn = max(a.max_txn, c.txn, c.root.txn)
        err = _verify(nodes, c.root, memo, a.used)
        if err is None:
            a.kept[v] = c
        else:
            rep.lost[v] = err
    # a kept version whose parent was lost (or never read) names its nearest kept
    # ancestors instead, as after gc(): log() and merge bases go on past the loss
    gone = set(a.commits) - set(a.kept) | {p for c in a.kept.values() for p in c.parents
                                           if p not in a.kept}
    for c in gcmod.rewire([a.commits[v] for v in sorted(a.commits, reverse=True)], gone):
        a.kept[c.version] = c
    if not a.kept and not partial:
        raise Corruption("no version's tree verifies: nothing can be recovered whole. "
                         "`cowdb salvage --partial` (salvage(..., partial=True)) copies "
                         "every key that still reads into a new file")
    if scanned:  # refs may come from old catalog pages: a branch's newest commit is newer
        for name, v in list(a.refs[BRANCH].items()):
            on = [x for x, c in a.kept.items() if c.branch == name]
            if on and max(on) > v:
                a.refs[BRANCH][name] = max(on)
    _fix_refs(a)
    rep.kept = sorted(a.kept)
    rep.head = a.refs[BRANCH].get("main")
    if a.catalog_damaged:  # versions are numbered densely: a gap had a record once
        newest = max([*a.commits, *a.refs[BRANCH].values(), *a.refs[TAG].values()])
        rep.unrecorded = sorted(set(range(newest + 1)) - a.commits.keys())
    return a


def _fix_refs(a: _Analysis) -> None:
    """Branch heads of lost versions move to their newest intact first-parent ancestor;
    tags of lost versions are dropped; main always has a head."""
    rep = a.report
    for name, v in list(a.refs[TAG].items()):
        if v not in a.kept:
            rep.refs_lost[f"tag {name}"] = v
            del a.refs[TAG][name]
    for name, v in list(a.refs[BRANCH].items()):
        if v in a.kept:
            continue
        w: int | None = v
        seen: set[int] = set()
        while w is not None and w not in a.kept and w not in seen:
            seen.add(w)
            c = a.commits.get(w)
            w = c.parents[0] if c is not None and c.parents else None
        if w is None or w not in a.kept:
            on = [x for x, c in a.kept.items() if c.branch == name and x <= v]
            w = max(on) if on else None
        if w is None:
            rep.refs_lost[f"branch {name}"] = v
            del a.refs[BRANCH][name]
        else:
            rep.refs_moved[f"branch {name}"] = (v, w)
            a.refs[BRANCH][name] = w
    if a.catalog_damaged:  # a branch whose record was lost: its commits still name it
        for v in sorted(a.kept, reverse=True):
            name = a.kept[v].branch
            if name not in a.refs[BRANCH] and f"branch {name}" not in rep.refs_lost:
                a.refs[BRANCH][name] = v
                rep.refs_moved[f"branch {name}"] = (None, v)
    if "main" not in a.refs[BRANCH] and a.kept:
        a.refs[BRANCH]["main"] = max(a.kept)
        rep.refs_moved["branch main"] = (None, max(a.kept))


def _unit(io: BlockIO, page_size: int) -> int:
    """The allocation unit: from a meta slot if one decodes, else the packed unit if an
    image starts between page boundaries near the start of the data (format 3 packs
    them), else the page size (a format 2 file)."""
    m = _slot_meta(io)
    if m is not None:
        return m.unit
    unit, first = DEFAULT_UNIT, META_PAGES * page_size
    for off in range(first, min(first + 64 * page_size, io.size()), unit):
        if off % page_size and _image_at(io, off):
            return unit
    return page_size


def _store_for(io: BlockIO, hint: int) -> tuple[PageStore, NodeCache]:
    ps = _page_size(io, hint)
    store = PageStore(io, page_size=ps, readonly=True, unit=_unit(io, ps))
    store.page_count = max(store.first_unit, -(-io.size() // store.unit))
    return store, NodeCache(store, 1 << 16)


def _clean(io: BlockIO, page_size: int) -> bool:
    """True when the file opens as it is and every page of every version verifies,
    the free list included."""
    from .db import Database
    try:
        db = Database(io=cast(BlockIO, _Borrowed(io)), page_size=page_size)
    except (CowdbError, OSError):
        return False
    try:
        return len(db._store.candidates()) == 2 and db.check().ok
    except (CowdbError, OSError):
        return False
    finally:
        db.close()


class _Borrowed:
    """A block device whose close() leaves the underlying one open."""

    def __init__(self, io: BlockIO) -> None:
        self._io = io

    def __getattr__(self, name: str) -> Any:
        return getattr(self._io, name)

    def close(self) -> None:
        pass


def recover_io(io: BlockIO, page_size: int, path: str | None = None) -> RecoveryReport:
    """Recover the database on ``io`` in place (the caller holds the writer lock)."""
    if _clean(io, page_size):
        return RecoveryReport(path=path, head=None)
    store, nodes = _store_for(io, page_size)
    a = analyze(store, nodes)
    rep = a.report
    rep.path = path
    _rewrite(store, nodes, a)
    rep.rewritten = True
    log.warning("cowdb: recovered %s: %s", path or "the database", "; ".join(rep.lines()))
    return rep


def _rewrite(store: PageStore, nodes: NodeCache, a: _Analysis) -> None:
    """Write a new catalog and free list past every used page, then the meta records."""
    store.readonly = False
    ps = store.page_size
    end = max(a.used, default=store.first_unit - 1) + 1
    page_count = max(end, store.first_unit)
    txn = a.max_txn + 1
    best = a.metas[0][0] if a.metas else 1
    store.meta = Meta(txn=txn - 1, durable_base=0, page_size=ps, catalog=EMPTY,
                      freelist=EMPTY, freelist_len=0, page_count=page_count, unit=store.unit)
    store.page_count = page_count
    store.freelist = FreeList()
    store.durable_slot = best      # publish writes the other slot: the best record stays
    store.durable_txn = txn - 1
    store.begin(txn, 0)
    cat = Catalog(Tree(nodes, EMPTY))
    for v in sorted(a.kept):
        cat.put_commit(a.kept[v])
    cat.set_refs_and_options(a.refs, a.options)
    cat.settle(0)
    root = cat.tree.write(txn)
    used = a.used
    free: list[list[int]] = []
    run: list[int] | None = None
    for p in range(store.first_unit, page_count):
        if p in used:
            run = None
        elif run is not None and run[0] + run[1] == p:
            run[1] += 1
        else:
            run = [p, 1]
            free.append(run)
    fl = store.freelist
    if free:  # reusable after the next durable txn: until then the old records may need them
        fl.pending[txn] = [(r[0], r[1]) for r in free]
    fl.changed = True
    store.sync()
    store.publish(root, b"", durable=True)
    store.begin(txn + 1, 0)   # the same state in the other slot too
    store.publish(root, b"", durable=True)


def salvage(src: str | bytes | os.PathLike[str] | os.PathLike[bytes],
            dst: str | bytes | os.PathLike[str] | os.PathLike[bytes],
            page_size: int = 4096, partial: bool = False) -> RecoveryReport:
    """Copy every version, branch and tag of ``src`` that verifies into a new file
    ``dst``. The source is only read. ``partial``: also copy what still reads of each
    branch head that does not verify (see ``PartialCopy``); then ``dst`` is written even
    when no version verifies whole."""
    from .db import Database
    from .pages.io import OsFileIO, new_file
    src_path, dst_path = os.fsdecode(src), os.fsdecode(dst)
    if os.path.exists(dst_path):
        from .errors import RefExists
        raise RefExists(f"{dst_path} exists; salvage writes a new file")
    io = OsFileIO(src_path, readonly=True)
    try:
        store, nodes = _store_for(io, page_size)
        a = analyze(store, nodes, partial)
        rep = a.report
        rep.path = dst_path
        with new_file(dst_path) as tmp:
            out = Database(io=OsFileIO(tmp), page_size=store.page_size)
            try:
                # (nothing kept: the new file's empty version 0 stays the head)
                kept = [a.kept[v] for v in sorted(a.kept)]
                with out._writer():
                    out._update(lambda cat, txn: cat.fill(
                        kept, nodes, out._nodes, txn, a.refs if kept else {}, a.options),
                        durable=True)
                if partial:
                    _copy_partial(a, nodes, out)
                rep.head = out.head()
            finally:
                out.close()
    finally:
        io.close()
    return rep


def _lost_heads(rep: RecoveryReport) -> dict[str, int]:
    """Branch -> the version its head named in the damaged file, for heads that were lost
    (moved back to an intact ancestor, or dropped)."""
    heads = {name[7:]: v for name, (v, _to) in rep.refs_moved.items()
             if name.startswith("branch ") and v is not None}
    heads.update((name[7:], v) for name, v in rep.refs_lost.items()
                 if name.startswith("branch "))
    return heads


def _copy_partial(a: _Analysis, nodes: NodeCache, out: Database) -> None:
    """For each lost branch head: one more version on that branch in ``out`` holding
    exactly the pairs of the lost version that read (main first: a branch created here
    starts from it)."""
    rep = a.report
    for branch, v in sorted(_lost_heads(rep).items(), key=lambda bv: bv[0] != "main"):
        c = a.commits.get(v)
        if c is None:  # its commit record did not read either: no root to start from
            continue
        if c.root.page:
            try:
                nodes.load(c.root.page, c.root.checksum, c.root.txn)
            except (Corruption, OSError) as e:  # nothing reads: no empty version on top
                rep.damage.append(f"nothing of version {v} (the head of branch {branch}) "
                                  f"reads: its root is damaged ({damage_of(e)})")
                continue
        if branch not in out.branches():
            out.branch(branch)
        lost: list[KeyRange] = []
        read: set[bytes] = set()
        with out.write(branch=branch, author="cowdb salvage",
                       message=f"salvaged: the pairs of version {v} that still read") as tx:
            pairs = readable(nodes, c.root, lost)
            while chunk := list(islice(pairs, 4096)):
                tx.update(chunk)
                read.update(k for k, _ in chunk)
            for k in [k for k in tx.keys() if k not in read]:
                del tx[k]
        assert tx.version is not None  # committed (or skipped: then the head's version)
        rep.partial.append(PartialCopy(branch, v, tx.version, len(read), _merged(lost)))


def readable(nodes: NodeCache, ref: RootRef, lost: list[KeyRange]
             ) -> Iterator[tuple[bytes, bytes]]:
    """The pairs of the tree at ``ref`` whose pages read and verify, in key order. The key
    range under each subtree (or the key of each overflow value) that does not is
    appended to ``lost``."""
    def sub(page: int, checksum: int, txn: int, lo: bytes | None, hi: bytes | None
            ) -> Iterator[tuple[bytes, bytes]]:
        try:
            node = nodes.load(page, checksum, txn)
        except (Corruption, OSError):
            lost.append((lo, hi))
            return
        if type(node) is Branch:
            keys = node.keys
            for i, (kid, s, t) in enumerate(zip(node.kids, node.sums, node.txns)):
                yield from sub(kid, s, t, lo if i == 0 else keys[i],  # type: ignore[arg-type]
                               keys[i + 1] if i + 1 < len(keys) else hi)
            return
        assert type(node) is Leaf
        for k, v in zip(node.keys, node.vals):
            if type(v) is Overflow:
                try:
                    v = read_overflow(nodes.store, v)
                except (Corruption, OSError):
                    lost.append((k, k + b"\0"))  # [k, k + 0x00): the key alone
                    continue
            yield k, v
    if ref.page:
        yield from sub(ref.page, ref.checksum, ref.txn, None, None)


def _merged(ranges: list[KeyRange]) -> list[KeyRange]:
    """Adjacent ranges ([a, b) then [b, c)) as one."""
    out: list[KeyRange] = []
    for first, end in ranges:
        if out and out[-1][1] is not None and out[-1][1] == first:
            out[-1] = (out[-1][0], end)
        else:
            out.append((first, end))
    return out
