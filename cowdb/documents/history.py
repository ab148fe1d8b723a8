"""A document's history: its revisions, what each changed, and diffs at block and word
level. A revision is a commit on the document's branch that changed one of its blocks
(commits that only hide a revision, or that touch other documents, are not)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any

from .errors import NotARevision
from .merge import words
from .model import At, Document, HiddenRecord, parse_message, text_of

if TYPE_CHECKING:
    from cowdb.history.commits import Commit

# One block's change in a commit: (its key, the value before, after); None: absent.
RawChange = tuple[bytes, bytes | None, bytes | None]


@dataclass(frozen=True, slots=True)
class Revision:
    number: int
    author: str
    time: datetime
    op: str                 # save, undo, restore, revert-author, or commit (not by this module)
    summary: str
    base: int | None        # the revision the writer started from
    parent: int | None
    blocks_changed: int
    bytes_changed: int      # UTF-8 bytes of the changed middles of the changed blocks
    hidden: bool = False
    blocks_added: int = 0
    blocks_deleted: int = 0

    @property
    def merged(self) -> bool:
        return self.base is not None and self.parent is not None and self.base != self.parent

    def as_json(self, iso: Callable[[datetime], str]) -> dict[str, Any]:
        """The revision for ``doc log --json`` and the history page's JSON twin; ``iso``
        writes the time as the caller's other output does."""
        return {"revision": self.number, "time": iso(self.time), "author": self.author,
                "op": self.op, "summary": self.summary, "base": self.base,
                "parent": self.parent, "blocks_changed": self.blocks_changed,
                "blocks_added": self.blocks_added, "blocks_deleted": self.blocks_deleted,
                "bytes_changed": self.bytes_changed, "hidden": self.hidden}


@dataclass(frozen=True, slots=True)
class BlockChange:
    """One block's change between two revisions; ``segments`` is the word diff:
    [(op, text)] with op '=' kept, '-' removed, '+' added."""
    block: str
    kind: str               # added, deleted, modified
    old: str | None
    new: str | None
    segments: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"block": self.block, "kind": self.kind, "old": self.old, "new": self.new,
                "segments": [list(s) for s in self.segments]}


def changes_of(doc: Document, commit: Commit) -> list[RawChange]:
    """The block changes (key, old bytes, new bytes) that ``commit`` made."""
    db = doc.db
    parent = commit.parents[0] if commit.parents else None
    if parent is None:
        with db.at(commit.version) as snap:
            return [(k, None, v) for k, v in snap.items(prefix=doc.bprefix)]
    with db.diff(parent, commit.version, prefix=doc.bprefix) as d:
        return [(c.key, c.old, c.new) for c in d]


def walk(doc: Document, start: int | None = None, since: datetime | None = None
         ) -> Iterator[tuple[Commit, list[RawChange]]]:
    """(commit, changes) for each revision of the document, newest first, from
    version ``start`` (default: the head), stopping before ``since``."""
    for c in doc.db.log(branch=doc.branch):
        if start is not None and c.version > start:
            continue
        if since is not None and c.time < since:
            return
        ch = changes_of(doc, c)
        if ch:
            yield c, ch


def _middle(a: bytes, b: bytes) -> int:
    """The bytes an edit of ``a`` into ``b`` changed: the longer side once their common
    prefix, then their common suffix (not overlapping it), are taken off. The lengths
    are found by halving, comparing slices (memcmp), not byte by byte in Python."""
    n = min(len(a), len(b))
    lo, hi = 0, n                 # the common prefix
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    i = lo
    lo, hi = 0, n - i             # the common suffix, within what the prefix left
    la, lb = len(a), len(b)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[la - mid:] == b[lb - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return max(la - i - lo, lb - i - lo)


def _changed_bytes(old: bytes | None, new: bytes | None) -> int:
    if old is None or new is None:
        return len(old or new or b"")
    return _middle(old, new)


def make_revision(doc: Document, c: Commit, changes: list[RawChange],
                  hidden: dict[int, HiddenRecord]) -> Revision:
    parsed = parse_message(c.message)
    if parsed and parsed[0] == doc.name:
        _, op, base, summary = parsed
    else:
        op, base, summary = "commit", None, c.message
    nbytes = sum(_changed_bytes(o, n) for _, o, n in changes)
    return Revision(c.version, c.author, c.time, op, summary, base,
                    c.parents[0] if c.parents else None, len(changes), nbytes,
                    c.version in hidden, sum(1 for _, o, _ in changes if o is None),
                    sum(1 for _, _, n in changes if n is None))


def revisions(doc: Document, limit: int | None = None, author: str | None = None,
              since: datetime | None = None) -> list[Revision]:
    """The revisions, newest first (all, or the newest ``limit``; by ``author``;
    at or after ``since``)."""
    hidden = doc.hidden()
    out = []
    for c, ch in walk(doc, since=since):
        if author is not None and c.author != author:
            continue
        out.append(make_revision(doc, c, ch, hidden))
        if limit is not None and len(out) >= limit:
            break
    return out


def revision_info(doc: Document, number: int) -> Revision:
    c = doc.db.commit_info(number)
    ch = changes_of(doc, c)
    if not ch:
        raise NotARevision(f"version {c.version} did not change document {doc.name!r}")
    return make_revision(doc, c, ch, doc.hidden())


def content_revision(doc: Document, version: int) -> int | None:
    for c, _ in walk(doc, start=version):
        return c.version
    return None


def word_segments(old: str, new: str) -> tuple[tuple[str, str], ...]:
    a, b = words(old), words(new)
    out = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(("=", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("-", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("+", "".join(b[j1:j2])))
    return tuple(out)


def diff(doc: Document, a: At, b: At = None, admin: bool = True) -> list[BlockChange]:
    """What changed from revision ``a`` to ``b``, in document order; with b None, what
    revision ``a`` itself changed (against its parent)."""
    db = doc.db
    if b is None:
        c = db.commit_info(doc.resolve(a))
        versions = (c.version,) + c.parents[:1]
        raw = changes_of(doc, c)
    else:
        c = None
        versions = (doc.resolve(a), doc.resolve(b))
    if not admin:
        hidden = doc.hidden()
        for v in versions:
            doc._check_visible(v, admin, hidden)
    if c is None:
        with db.diff(versions[0], versions[1], prefix=doc.bprefix) as d:
            raw = [(x.key, x.old, x.new) for x in d]
    n = len(doc.bprefix)
    out = []
    for k, ob, nb in raw:
        o, nw = text_of(ob), text_of(nb)
        bid = k[n:].decode("utf-8", "replace")
        if o is not None and nw is not None:
            out.append(BlockChange(bid, "modified", o, nw, word_segments(o, nw)))
        elif nw is not None:
            out.append(BlockChange(bid, "added", None, nw, (("+", nw),)))
        elif o is not None:
            out.append(BlockChange(bid, "deleted", o, None, (("-", o),)))
    return out
