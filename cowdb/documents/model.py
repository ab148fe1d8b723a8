"""A document: an ordered list of blocks (paragraphs) kept in a cowdb database.

Layout, under the document's name (``NAME`` is [A-Za-z0-9._-]):

    doc/NAME/b/<block id>  -> the block's text, UTF-8
    doc/NAME/m/hidden/<n>  -> why revision n's content is hidden (JSON)

A block id is a fractional key (see keys.py): the ids sort in document order, so
reading the document is one range scan, and an insertion takes a fresh id between
its neighbours without touching them. An edit writes only the blocks it changed;
a revision is the commit that wrote them, with the saving account as its author.

Saving takes what the writer changed and the revision the writer started from
(the base). Each touched block is merged three-way (base, ours, what is there now),
so a save from a stale base keeps everything others saved meanwhile; a block both
sides changed is merged word by word, and a true conflict is returned as data,
leaving the block as the other writer left it.
"""
from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, TypedDict, overload

from cowdb.errors import VersionNotFound

from . import keys as fkeys
from .errors import BlockNotFound, InvalidName, RevisionHidden
from .merge import merge_block

if TYPE_CHECKING:
    from cowdb.db import Database

    from .blame import BlameLine
    from .history import BlockChange, Revision
    from .revert import RevertPlan

# A block operation: ("set", id, text), ("insert", after, text) or ("delete", id), where
# ``after`` is a block id, ("op", i) (the block ops[i] inserted) or None (the top). Checked
# as it is applied: operations may come from JSON, as lists.
BlockOp = Sequence[object]
# What save_ops() means to write: {block key: (its value in the base, ours)}, None: absent.
Intents = dict[bytes, tuple[str | None, str | None]]
# What at= accepts: None or "head", a version number (or its digits), a tag, a time.
At = int | str | datetime | None


class HiddenRecord(TypedDict):
    """Why a revision's content is hidden (stored as JSON under m/hidden/)."""
    by: str
    reason: str
    time: str

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_MESSAGE = re.compile(r"doc (\S+) ([a-z-]+)(?: base=(\d+))?: (.*)\Z", re.S)


@dataclass(frozen=True, slots=True)
class Block:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """A block both sides changed in ways that do not merge: nothing is lost, the
    block keeps ``theirs`` (what was there) and ``ours`` is handed back."""
    block: str
    base: str | None
    ours: str | None
    theirs: str | None


@dataclass(frozen=True, slots=True)
class SaveResult:
    revision: int | None          # the new revision; None when nothing changed
    base: int                     # the revision the save started from
    head: int                     # the revision it was applied onto (== base: no merge)
    written: int = 0              # blocks written (put or deleted)
    conflicts: tuple[Conflict, ...] = ()
    inserted: tuple[str, ...] = ()  # ids of the inserted blocks, in operation order

    @property
    def merged(self) -> bool:
        return self.head != self.base

    @property
    def ok(self) -> bool:
        return not self.conflicts


@overload
def text_of(b: bytes) -> str: ...


@overload
def text_of(b: None) -> None: ...


@overload
def text_of(b: bytes | None) -> str | None: ...


def text_of(b: bytes | None) -> str | None:
    """A stored value as text (None stays None); bytes that are not UTF-8 (written
    through the raw key API, say) read with replacement characters, never an error."""
    return None if b is None else b.decode("utf-8", "replace")


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidName(f"document name {name!r} is not valid: use 1 to 100 of "
                          f"A-Z a-z 0-9 . _ - (not starting with . _ -)")
    return name


def split_text(text: str) -> list[str]:
    """A text as paragraphs: separated by a blank line. '' is no paragraph."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n\n") if text else []


def join_text(paragraphs: Iterable[str]) -> str:
    return "\n\n".join(paragraphs)


def parse_message(message: str) -> tuple[str, str, int | None, str] | None:
    """(document, op, base, summary) from a revision's commit message, or None."""
    m = _MESSAGE.match(message or "")
    if not m:
        return None
    return m.group(1), m.group(2), None if m.group(3) is None else int(m.group(3)), m.group(4)


class Document:
    """One named document in a database opened with the bytes codec (the default)."""
    db: Database
    name: str
    branch: str
    prefix: bytes
    bprefix: bytes
    hprefix: bytes

    def __init__(self, db: Database, name: str, branch: str = "main",
                 rng: fkeys.Rng | None = None, trust: Callable[[str], bool] | None = None):
        """``trust``: None, or a function author -> bool naming who may hide revisions.
        With it, what is hidden is read from the hide/unhide revisions of trusted
        authors only, so a writer who can put raw keys (the server's key API) can
        neither hide a revision nor show one an admin hid."""
        if getattr(db, "codec", None) is not None:
            raise ValueError("documents need a database opened with codec='bytes' (the default)")
        self.db, self.name, self.branch = db, check_name(name), branch
        self.prefix = f"doc/{name}/".encode()
        self.bprefix = self.prefix + b"b/"
        self.hprefix = self.prefix + b"m/hidden/"
        self._rng = rng
        self.trust = trust

    def __repr__(self) -> str:
        return f"<Document {self.name!r} on {self.branch!r}>"

    # ---- keys ----------------------------------------------------------
    def _bkey(self, block_id: str) -> bytes:
        return self.bprefix + block_id.encode()

    def _bid(self, key: bytes) -> str:
        return key[len(self.bprefix):].decode("utf-8", "replace")

    # ---- reading ---------------------------------------------------------
    def head(self) -> int:
        """The newest version of the branch (the revision a save would start from)."""
        return self.db.head(self.branch)

    def resolve(self, at: At = None) -> int:
        """A version number from what at() accepts: None/'head', an int or digits, a tag
        of this document, a datetime or an ISO-8601 time."""
        if at is None or at == "head":
            return self.head()
        if isinstance(at, bool):
            raise TypeError("a revision is an int, a tag, a time or 'head'")
        if isinstance(at, int):
            return self.db.commit_info(at).version
        if isinstance(at, datetime):
            return self._at_time(at)
        if isinstance(at, str):
            if at.isdigit():
                return self.db.commit_info(int(at)).version
            try:
                return self.db.commit_info(self._tag(at)).version
            except VersionNotFound:
                pass
            try:
                t = datetime.fromisoformat(at)
            except ValueError:
                raise VersionNotFound(f"no revision {at!r} of document {self.name!r}: give a "
                                      f"number, a tag (see tags()), a time or 'head'") from None
            return self._at_time(t if t.tzinfo else t.replace(tzinfo=UTC))
        raise TypeError(f"a revision is an int, a tag, a time or 'head', not "
                        f"{type(at).__name__}")

    def _at_time(self, t: datetime) -> int:
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        if self.branch == "main":
            try:
                return self.db.commit_info(t).version      # main's time index: O(log n)
            except VersionNotFound:
                raise VersionNotFound(f"document {self.name!r}: no revision at or before "
                                      f"{t}") from None
        for c in self.db.log(branch=self.branch):
            if c.time <= t:
                return c.version
        raise VersionNotFound(f"document {self.name!r}: no revision at or before {t}")

    def _tag(self, tag: str) -> str:
        return f"doc/{self.name}/{tag}"

    def tag(self, tag: str, at: At = None) -> int:
        """Name a revision of this document (tags never move)."""
        return self.db.tag(self._tag(tag), self.resolve(at))

    def tags(self) -> dict[str, int]:
        pre = self._tag("")
        return {k[len(pre):]: v for k, v in self.db.tags().items() if k.startswith(pre)}

    def hidden(self) -> dict[int, HiddenRecord]:
        """Revisions whose content admins hid: {revision: {"by", "reason", "time"}}."""
        if self.trust is not None:
            return self._trusted_hidden()
        out = {}
        with self.db.read(self.branch) as snap:
            for k, v in snap.items(prefix=self.hprefix):
                try:
                    out[int(k[len(self.hprefix):])] = json.loads(v)
                except ValueError:
                    continue        # not a record this module wrote
        return out

    def _trusted_hidden(self) -> dict[int, HiddenRecord]:
        """The newest hide or unhide of each revision made by a trusted author (commit
        records only: a walk of the log, no tree reads but one per hidden revision)."""
        out: dict[int, HiddenRecord] = {}
        seen = set()
        trust = self.trust
        assert trust is not None        # hidden() calls this only with a trust function
        for c in self.db.log(branch=self.branch):
            p = parse_message(c.message)
            if not p or p[0] != self.name or p[1] not in ("hide", "unhide") or p[2] is None:
                continue
            rev = p[2]
            if rev in seen or not trust(c.author):
                continue
            seen.add(rev)
            if p[1] == "hide":
                with self.db.at(c.version) as snap:
                    v = snap.get(self.hprefix + b"%012d" % rev)
                out[rev] = json.loads(v) if v else {"by": c.author, "reason": "",
                                                    "time": c.time.isoformat()}
        return out

    def _check_visible(self, version: int, admin: bool,
                       hidden: dict[int, HiddenRecord] | None = None) -> None:
        if admin:
            return
        hidden = self.hidden() if hidden is None else hidden
        if not hidden:
            return
        rev = self.content_revision(version)
        if rev in hidden:
            raise RevisionHidden(f"revision {rev} of {self.name!r} was hidden by an admin")

    def content_revision(self, version: int) -> int | None:
        """The newest revision of this document at or before ``version`` (None: before
        the document's first revision)."""
        from .history import content_revision
        return content_revision(self, version)

    def blocks(self, at: At = None, *, admin: bool = True) -> list[Block]:
        """The blocks in order, at a revision (default: the head)."""
        if at is None:
            snap = self.db.read(self.branch)
        else:
            v = self.resolve(at)
            self._check_visible(v, admin)
            snap = self.db.at(v)
        with snap:
            if at is None and not admin:
                self._check_visible(snap.version, admin)
            n = len(self.bprefix)
            return [Block(text_of(k[n:]), text_of(v))
                    for k, v in snap.items(prefix=self.bprefix)]

    def paragraphs(self, at: At = None, *, admin: bool = True) -> list[str]:
        return [b.text for b in self.blocks(at, admin=admin)]

    def text(self, at: At = None, *, admin: bool = True) -> str:
        """The document as text: blocks separated by a blank line."""
        if at is None and admin:
            with self.db.read(self.branch) as snap:
                return text_of(snap.join_values(b"\n\n", prefix=self.bprefix))
        return join_text(self.paragraphs(at, admin=admin))

    def exists(self) -> bool:
        with self.db.read(self.branch) as snap:
            return any(True for _ in snap.keys(prefix=self.bprefix)) or \
                any(True for _ in self.revisions(limit=1))

    # ---- saving ----------------------------------------------------------
    def save(self, text: str, base: At = None, *, author: str, summary: str | None = None
             ) -> SaveResult:
        """Save the whole text, edited from revision ``base`` (default: the head).

        The text is compared with the base's paragraphs; only the blocks that differ
        are written, then merged onto the head as save_ops() does."""
        if not isinstance(text, str):
            raise TypeError("text must be str")
        base_v = self.resolve(base)
        with self.db.at(base_v) as snap:
            n = len(self.bprefix)
            old = [(text_of(k[n:]), text_of(v)) for k, v in snap.items(prefix=self.bprefix)]
        new = split_text(text)
        ops = text_ops(old, new)
        return self.save_ops(ops, base_v, author=author, summary=summary)

    def save_ops(self, ops: Iterable[BlockOp], base: At = None, *, author: str,
                 summary: str | None = None,
                 op: str = "save") -> SaveResult:
        """Apply block operations made on revision ``base`` (default: the head):

            ("set", id, text)        replace a block's text
            ("insert", after, text)  a new block after block ``after`` (None: at the top);
                                     ("op", i) names the block that ops[i] inserted
            ("delete", id)

        Costs O(k log n) for k operations on a document of n blocks."""
        base_v = self.resolve(base)
        intents, inserted = self._intents(ops, base_v)
        if summary is None:
            summary = _summarize(intents)
        return self._commit(intents, base_v, author=author, op=op, summary=summary,
                            inserted=tuple(inserted))

    def _intents(self, ops: Iterable[BlockOp], base_v: int) -> tuple[Intents, list[str]]:
        """{key: (base value, our value)} and the inserted ids, from ops on base_v."""
        rng = self._rng
        intents: dict[bytes, list[str | None]] = {}
        pending: list[str] = []          # ids inserted by these ops, sorted
        inserted = []
        with self.db.at(base_v) as snap:
            end = self.prefix + b"b0"    # b"b/" + 1 sorts below b"b0"
            by_op: dict[object, str] = {}  # op index -> the block id it made
            todo = list(ops)
            i_op = 0
            while i_op < len(todo):
                o = todo[i_op]
                kind = o[0]
                if kind in ("set", "delete"):
                    bid = o[1]
                    if not isinstance(bid, str) or not fkeys.is_key(bid):
                        raise BlockNotFound(f"no block {bid!r} in {self.name!r}")
                    k = self._bkey(bid)
                    if k in intents:
                        cur = intents[k]
                    else:
                        v = snap.get(k)
                        if v is None:
                            raise BlockNotFound(f"block {bid!r} is not in revision {base_v} "
                                                f"of {self.name!r}")
                        t = v.decode("utf-8", "replace")
                        cur = intents[k] = [t, t]
                    if cur[1] is None:
                        raise BlockNotFound(f"block {bid!r} was deleted earlier in this save")
                    if kind == "set":
                        text = o[2]
                        if not isinstance(text, str):
                            raise TypeError("a block's text must be str")
                        cur[1] = text
                    else:
                        cur[1] = None
                    i_op += 1
                elif kind == "insert":
                    ref = o[1]
                    if isinstance(ref, tuple):
                        if ref[0] != "op" or ref[1] not in by_op:
                            raise ValueError(f"insert after {ref!r}: ('op', i) must name an "
                                             f"earlier insert")
                        ref = by_op[ref[1]]
                    # a run: each next insert goes right after the one before it
                    j = i_op + 1
                    while j < len(todo) and todo[j][0] == "insert" and \
                            todo[j][1] == ("op", j - 1):
                        j += 1
                    texts = [t for t in (todo[x][2] for x in range(i_op, j))
                             if isinstance(t, str)]
                    if len(texts) != j - i_op:
                        raise TypeError("a block's text must be str")
                    after: str | None = None
                    if ref is not None:
                        if not isinstance(ref, str) or not fkeys.is_key(ref) or (
                                ref not in pending and snap.get(self._bkey(ref)) is None):
                            raise BlockNotFound(f"no block {ref!r} to insert after")
                        after = ref
                        start = self._bkey(ref) + b"\x00"
                    else:
                        start = self.bprefix
                    first = next(iter(snap.keys(start, end)), None)
                    nxt = None if first is None else self._bid(first)
                    i = bisect.bisect_right(pending, after) if after is not None else 0
                    if i < len(pending) and (nxt is None or pending[i] < nxt):
                        nxt = pending[i]
                    while True:
                        if len(texts) == 1:
                            bids = [fkeys.between(after, nxt, rng)]
                        else:
                            bids = fkeys.run(after, nxt, len(texts), rng)
                        if all(snap.get(self._bkey(b)) is None and b not in pending
                               for b in bids):
                            break
                    for x, (bid, text) in enumerate(zip(bids, texts)):
                        bisect.insort(pending, bid)
                        inserted.append(bid)
                        by_op[i_op + x] = bid
                        intents[self._bkey(bid)] = [None, text]
                    i_op = j
                else:
                    raise ValueError(f"unknown block operation {kind!r}: use set, insert "
                                     f"or delete")
        return {k: (b, o) for k, (b, o) in intents.items() if b != o}, inserted

    def _message(self, op: str, base_v: int, summary: str) -> str:
        summary = " ".join(str(summary).split())[:200]
        return f"doc {self.name} {op} base={base_v}: {summary}"

    def _commit(self, intents: Intents, base_v: int, *, author: str, op: str, summary: str,
                inserted: tuple[str, ...] = ()) -> SaveResult:
        """Write intents {key: (base value, our value)} merged three-way onto the head,
        as one commit by ``author``."""
        if not isinstance(author, str) or not author:
            raise ValueError("a revision needs an author (the saving account)")
        conflicts = []
        written = 0
        with self.db.write(self._message(op, base_v, summary), author=author,
                           branch=self.branch) as tx:
            head = self.db.head(self.branch)
            for k in sorted(intents):
                b, o = intents[k]
                h = tx.get(k)
                h = text_of(h)
                v, conflict = merge_block(b, o, h)
                if conflict:
                    conflicts.append(Conflict(self._bid(k), b, o, h))
                    continue
                if v == h:
                    continue
                written += 1
                if v is None:
                    tx.delete(k)
                else:
                    tx[k] = v.encode()
            if not written:
                tx.abort()
        rev = tx.version if written else None
        return SaveResult(rev, base_v, head, written, tuple(conflicts), tuple(inserted))

    # ---- hiding (admins) -------------------------------------------------
    def hide(self, revision: int, *, by: str, reason: str = "") -> int:
        """Hide a revision's content from non-admins; the history around it stays."""
        from .history import revision_info
        revision_info(self, revision)   # raises NotARevision
        rec = json.dumps({"by": by, "reason": reason,
                          "time": datetime.now(UTC).isoformat(timespec="seconds")})
        with self.db.write(self._message("hide", revision, f"hide revision {revision}"),
                           author=by, branch=self.branch) as tx:
            tx[self.hprefix + b"%012d" % revision] = rec.encode()
        v = tx.version
        assert v is not None            # the record was written, so the commit happened
        return v

    def unhide(self, revision: int, *, by: str) -> int | None:
        with self.db.write(self._message("unhide", revision, f"unhide revision {revision}"),
                           author=by, branch=self.branch) as tx:
            if not tx.delete(self.hprefix + b"%012d" % revision):
                tx.abort()
                return None
        return tx.version

    # ---- the rest lives in its own module --------------------------------
    def revisions(self, limit: int | None = None, *, author: str | None = None,
                  since: datetime | None = None) -> list[Revision]:
        from .history import revisions
        return revisions(self, limit=limit, author=author, since=since)

    def revision(self, number: int) -> Revision:
        from .history import revision_info
        return revision_info(self, number)

    def diff(self, a: At, b: At = None, *, admin: bool = True) -> list[BlockChange]:
        from .history import diff
        return diff(self, a, b, admin=admin)

    def blame(self, at: At = None, *, admin: bool = True) -> list[BlameLine]:
        from .blame import blame
        return blame(self, at, admin=admin)

    def restore(self, revision: At, *, author: str) -> SaveResult:
        from .revert import restore
        return restore(self, revision, author=author)

    def undo(self, revision: int, *, author: str) -> SaveResult:
        from .revert import undo
        return undo(self, revision, author=author)

    def revert_author(self, account: str, since: datetime | str,
                      until: datetime | str | None = None) -> RevertPlan:
        """A preview: what reverting ``account``'s edits in [since, until] would do.
        Apply it with ``plan.apply(author=...)``."""
        from .revert import plan_revert_author
        return plan_revert_author(self, account, since, until)


def text_ops(old: list[tuple[str, str]], new: list[str]) -> list[BlockOp]:
    """Block operations turning blocks ``old`` [(id, text)] into paragraphs ``new``.

    Equal paragraphs keep their block. Within a changed run, old and new paragraphs
    are paired in order by likeness (shared words): a pair is an edit of the block,
    the rest are deletions and insertions. A run rewritten wholesale (nothing alike)
    with as many paragraphs as before is an edit of each block in place."""
    sm = SequenceMatcher(None, [t for _, t in old], new, autojunk=False)
    ops: list[BlockOp] = []
    after: str | tuple[str, int] | None = None
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            after = old[i2 - 1][0]
            continue
        for i, j in _pair([t for _, t in old[i1:i2]], new[j1:j2]):
            if i is not None and j is not None:
                ops.append(("set", old[i1 + i][0], new[j1 + j]))
                after = old[i1 + i][0]
            elif i is not None:
                ops.append(("delete", old[i1 + i][0]))
            elif j is not None:
                ops.append(("insert", after, new[j1 + j]))
                after = ("op", len(ops) - 1)     # the block that insert makes
    return ops


LIKE = 0.3          # paragraphs sharing at least this share of their words are one block


def _likeness(a: str, b: str) -> float:
    wa, wb = set(a.split()), set(b.split())
    return len(wa & wb) / len(wa | wb) if wa or wb else 1.0


def _pair(olds: list[str], news: list[str]) -> list[tuple[int | None, int | None]]:
    """An order-keeping alignment of a changed run: (i, j) an edit of old i into new j,
    (i, None) old i deleted, (None, j) new j inserted."""
    n, m = len(olds), len(news)
    k = min(n, m)
    in_place: list[tuple[int | None, int | None]] = [(d, d) for d in range(k)]
    in_place += [(d, None) for d in range(k, n)] + [(None, d) for d in range(k, m)]
    if not n or not m or n * m > 4000:
        return in_place
    like = [[_likeness(a, b) for b in news] for a in olds]
    if n == m and all(like[d][d] >= LIKE for d in range(n)):
        return in_place                 # each paragraph edited where it stands
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            v = max(best[i - 1][j], best[i][j - 1])
            s = like[i - 1][j - 1]
            if s >= LIKE:
                v = max(v, best[i - 1][j - 1] + s)
            best[i][j] = v
    out: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i or j:
        if i and j and like[i - 1][j - 1] >= LIKE and \
                best[i][j] == best[i - 1][j - 1] + like[i - 1][j - 1]:
            out.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and (not j or best[i][j] == best[i - 1][j]):
            out.append((i - 1, None))
            i -= 1
        else:
            out.append((None, j - 1))
            j -= 1
    out.reverse()
    if n == m and not any(i is not None and j is not None for i, j in out):
        return in_place                 # rewritten wholesale: still edits in place
    return out


def _summarize(intents: Intents) -> str:
    """'2 edited, 1 added' for intents {key: (base, ours)}."""
    add = sum(1 for b, o in intents.values() if b is None)
    rm = sum(1 for b, o in intents.values() if o is None)
    ed = len(intents) - add - rm
    parts = [f"{n} {w}" for n, w in ((ed, "edited"), (add, "added"), (rm, "deleted")) if n]
    return ", ".join(parts) if parts else "no change"
