"""Three-way merge: subtrees first, then keys, by merging two structural diffs.

First the three trees are walked together while their nodes line up (same
separator keys, as after overwrites): a child that only theirs changed is
grafted into ours whole — its pages are shared, not copied or even read —
and a child that only ours changed is kept. Where both sides changed a
subtree (or the shapes differ), its key range is merged key by key:
``theirs`` changes (base -> theirs) are applied to ``ours`` unless ours
changed the same key differently (base -> ours), which is a conflict,
settled by ``resolve`` or reported. A merge therefore reads and writes in
proportion to where both sides changed, not to the size of the database.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ..pages.meta import RootRef
from . import diff as diffmod
from .btree import Tree
from .node import Branch

if TYPE_CHECKING:
    from .btree import NodeCache

# How a conflict is settled: not at all (None: reported), one side, or a function
# (key, base, ours, theirs) -> the value to keep (bytes-like), or None to delete the key.
Settle: TypeAlias = Literal["ours", "theirs"] | Callable[[bytes, Any, Any, Any], Any] | None
# (base, ours, theirs) references of subtrees that both sides changed
_Triple: TypeAlias = tuple[RootRef, RootRef, RootRef]


@dataclass(frozen=True, slots=True)
class Conflict:
    key: bytes
    base: bytes | None
    ours: bytes | None
    theirs: bytes | None


def merge3(nodes: NodeCache, base_ref: RootRef, ours: Tree, theirs_ref: RootRef,
           resolve: Settle = None, stats: diffmod.DiffStats | None = None
           ) -> tuple[list[Conflict], int, int]:
    """Apply base->theirs onto ``ours`` (a writable Tree). Returns the conflicts left
    unresolved (if any, ``ours`` must be thrown away) and the keys put and deleted one
    by one (subtrees grafted whole are not counted)."""
    conflicts: list[Conflict] = []
    applied = [0, 0]  # puts, deletes
    for b, o, t in _graft(nodes, base_ref, ours, theirs_ref):
        _merge_keys(nodes, b, o, ours, t, resolve, stats, conflicts, applied)
    return conflicts, applied[0], applied[1]


def _graft(nodes: NodeCache, base_ref: RootRef, ours: Tree, theirs_ref: RootRef
           ) -> list[_Triple]:
    """Graft into ``ours`` every aligned subtree only theirs changed; return the
    subtrees (base, ours, theirs references) both sides changed, to merge key by key."""
    whole = [(base_ref, ours.ref, theirs_ref)]
    if theirs_ref.page == base_ref.page:   # the same image: theirs changed nothing
        return []
    if not (base_ref.page and ours.ref.page and theirs_ref.page):
        return whole
    b = nodes.load(base_ref.page, base_ref.checksum, base_ref.txn)
    t = nodes.load(theirs_ref.page, theirs_ref.checksum, theirs_ref.txn)
    o = ours.root()
    if not (type(b) is type(t) is type(o) is Branch and b.keys == t.keys == o.keys):
        return whole
    both: list[_Triple] = []
    own = ours._own_root()
    assert type(own) is Branch  # (a copy of o)
    _graft_children(nodes, ours, own, b, t, both)
    ours.count = own.count()
    ours.mod += 1
    return both


def _graft_children(nodes: NodeCache, ours: Tree, o: Branch, b: Branch, t: Branch,
                    both: list[_Triple]) -> None:
    # Children are told apart by page, never by checksum (a crafted value could make
    # two different subtrees' 64-bit checksums equal): equal pages are the same image.
    # (b and t are clean, and o's children on this walk too: every kid here is a page.)
    for i in range(len(o.keys)):
        bp, tp = b.kids[i], t.kids[i]
        if bp == tp:
            continue                                   # theirs left this child alone
        bs, ts = b.sums[i], t.sums[i]
        mine = o.kids[i]  # a page number: this walk owns only the path it is on
        if mine == bp:                                 # only theirs changed it: take theirs'
            o.kids[i], o.sums[i], o.txns[i], o.counts[i] = tp, ts, t.txns[i], t.counts[i]
            continue
        if mine == tp:                                 # ours already has theirs' child
            continue
        bk = nodes.load(bp, bs, b.txns[i])  # type: ignore[arg-type]
        tk = nodes.load(tp, ts, t.txns[i])  # type: ignore[arg-type]
        ok = nodes.load(mine, o.sums[i], o.txns[i])  # type: ignore[arg-type]
        if type(bk) is type(tk) is type(ok) is Branch and bk.keys == tk.keys == ok.keys:
            child = ours._own_kid(o, i)
            _graft_children(nodes, ours, child, bk, tk, both)  # type: ignore[arg-type]
            o.counts[i] = child.count()
        else:   # both changed it, or the shapes differ: its keys are merged one by one
            both.append((RootRef(b.kids[i], bs, b.txns[i]),  # type: ignore[arg-type]
                         RootRef(mine, o.sums[i], o.txns[i]),  # type: ignore[arg-type]
                         RootRef(t.kids[i], ts, t.txns[i])))  # type: ignore[arg-type]


def _merge_keys(nodes: NodeCache, base_ref: RootRef, ours_ref: RootRef, ours: Tree,
                theirs_ref: RootRef, resolve: Settle, stats: diffmod.DiffStats | None,
                conflicts: list[Conflict], applied: list[int]) -> None:
    """Merge two subtrees key by key into ``ours``: theirs' changes, unless ours changed
    the same key too."""
    mine = diffmod.changes(nodes, base_ref, ours_ref, stats=stats)
    other = diffmod.changes(nodes, base_ref, theirs_ref, stats=stats)
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


def _settle(resolve: Settle, c: Conflict) -> bytes | None:
    if resolve == "ours":
        return c.ours
    if resolve == "theirs":
        return c.theirs
    assert resolve is not None  # (_merge_keys reports the conflict instead)
    value = resolve(c.key, c.base, c.ours, c.theirs)
    if value is not None and not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"resolve() must return bytes or None, not {type(value).__name__}")
    return None if value is None else bytes(value)


def _apply(tree: Tree, key: bytes, value: bytes | None, applied: list[int]) -> None:
    if value is None:
        applied[1] += tree.delete(key)
    else:
        tree.put(key, value)
        applied[0] += 1
