"""Restore a revision, undo one revision, and revert everything one author did in a
time window. Each is one new revision, merged three-way onto the head like a save,
so work saved meanwhile is kept and a true conflict is reported, not overwritten.

Revert-author, exactly. Take the revisions by ACCOUNT with since <= time <= until
(until: open-ended by default). For every block one of them changed, look at the
block's changes from ``since`` to the head, oldest first:

- the trailing run of changes made by ACCOUNT inside the window is undone: the
  block goes back to what it was just before the first change of that run. So a
  block ACCOUNT edited goes back to its text before; a block ACCOUNT deleted comes
  back, in its place (its id is its position); a block ACCOUNT inserted goes away;
- if the newest change to the block was made by someone else (or by ACCOUNT after
  the window), that later edit is kept and the block is listed in ``plan.kept``
  with who changed it after ACCOUNT.

The plan is a preview; ``plan.apply(author=...)`` writes it as one revision.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, overload

from .errors import NotARevision
from .history import changes_of, walk
from .model import At, Document, Intents, SaveResult, text_of

if TYPE_CHECKING:
    from cowdb.history.commits import Commit


@dataclass(frozen=True, slots=True)
class PlannedChange:
    block: str
    kind: str                   # reverted (edit undone), restored (deletion undone),
    current: str | None         # removed (insertion undone)
    target: str | None


@dataclass(frozen=True, slots=True)
class KeptBlock:
    """A block ACCOUNT changed that was changed again later: the later edit stays."""
    block: str
    text: str | None
    later: tuple[tuple[int, str], ...]      # (revision, author) of the later changes
    account_revisions: tuple[int, ...]


@dataclass
class RevertPlan:
    doc: Document
    account: str
    since: datetime
    until: datetime | None
    head: int
    revisions: list[int] = field(default_factory=list)   # ACCOUNT's, oldest first
    changes: list[PlannedChange] = field(default_factory=list)
    kept: list[KeptBlock] = field(default_factory=list)

    def summary(self) -> str:
        n = {k: sum(1 for c in self.changes if c.kind == k)
             for k in ("reverted", "restored", "removed")}
        return (f"revert {len(self.revisions)} revision(s) by {self.account}: "
                f"{n['reverted']} edited back, {n['restored']} restored, {n['removed']} "
                f"removed, {len(self.kept)} kept (changed later by others)")

    def apply(self, *, author: str) -> SaveResult:
        """Write the plan as one revision (merged onto the head if it moved)."""
        doc = self.doc
        intents: Intents = {doc._bkey(c.block): (c.current, c.target) for c in self.changes}
        if not intents:
            return SaveResult(None, self.head, doc.head())
        since = self.since.isoformat(timespec="seconds")
        return doc._commit(intents, self.head, author=author, op="revert-author",
                           summary=f"revert edits by {self.account} since {since}")


_SPAN = re.compile(r"\s*(\d+)\s*([smhd])\s*\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def span_back(s: str) -> datetime | None:
    """The time a span like 30m, 2h or 7d back from now names (None: not a span), the
    other way to say when a revert-author window starts."""
    m = _SPAN.match(s)
    if m is None:
        return None
    return datetime.now(UTC) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


@overload
def _aware(t: datetime | str) -> datetime: ...


@overload
def _aware(t: datetime | str | None) -> datetime | None: ...


def _aware(t: datetime | str | None) -> datetime | None:
    if t is None or isinstance(t, datetime):
        return t if t is None or t.tzinfo else t.replace(tzinfo=UTC)
    t = datetime.fromisoformat(str(t))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def plan_revert_author(doc: Document, account: str, since: datetime | str,
                       until: datetime | str | None = None) -> RevertPlan:
    t_since, t_until = _aware(since), _aware(until)
    head = doc.head()
    plan = RevertPlan(doc, account, t_since, t_until, head)
    history = list(walk(doc, start=head, since=t_since))
    history.reverse()                       # oldest first
    events: dict[bytes, list[tuple[Commit, bytes | None, bytes | None]]] = {}
    mine = set()

    def in_window(c: Commit) -> bool:
        return c.author == account and (t_until is None or c.time <= t_until)

    for c, changes in history:
        if in_window(c):
            plan.revisions.append(c.version)
        for k, old, new in changes:
            events.setdefault(k, []).append((c, old, new))
            if in_window(c):
                mine.add(k)
    n = len(doc.bprefix)
    for k in sorted(mine):
        ev = events[k]
        j = len(ev)
        while j and in_window(ev[j - 1][0]):
            j -= 1
        bid = k[n:].decode("utf-8", "replace")
        current = text_of(ev[-1][2])
        if j == len(ev):
            last_mine = max(i for i, e in enumerate(ev) if in_window(e[0]))
            plan.kept.append(KeptBlock(
                bid, current, tuple((e[0].version, e[0].author) for e in ev[last_mine + 1:]),
                tuple(e[0].version for e in ev if in_window(e[0]))))
            continue
        target = text_of(ev[j][1])
        if target == current:
            continue
        kind = "restored" if current is None else "removed" if target is None else "reverted"
        plan.changes.append(PlannedChange(bid, kind, current, target))
    return plan


def undo(doc: Document, revision: At, *, author: str) -> SaveResult:
    """Undo one revision: its inverse merged three-way onto the head."""
    c = doc.db.commit_info(doc.resolve(revision))
    changes = changes_of(doc, c)
    if not changes:
        raise NotARevision(f"version {c.version} did not change document {doc.name!r}")
    intents = {k: (text_of(new), text_of(old)) for k, old, new in changes}
    return doc._commit(intents, c.version, author=author, op="undo",
                       summary=f"undo revision {c.version}")


def restore(doc: Document, revision: At, *, author: str) -> SaveResult:
    """A new revision whose blocks equal ``revision``'s (history is kept)."""
    v = doc.resolve(revision)
    head = doc.head()
    with doc.db.diff(head, v, prefix=doc.bprefix) as d:
        intents = {x.key: (text_of(x.old), text_of(x.new)) for x in d}
    if not intents:
        return SaveResult(None, head, head)
    return doc._commit(intents, head, author=author, op="restore",
                       summary=f"restore revision {v}")
