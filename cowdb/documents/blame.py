"""Blame: for each block of a revision, the revision and author that last changed it.

Walks the revisions newest first, each one's changes found by a structural diff
(O(changes x depth) pages), and stops as soon as every block has its answer."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .history import walk
from .model import At, Document

if TYPE_CHECKING:
    from cowdb.history.commits import Commit


@dataclass(frozen=True, slots=True)
class BlameLine:
    block: str
    text: str
    revision: int
    author: str
    time: datetime

    def as_json(self, iso: Callable[[datetime], str]) -> dict[str, Any]:
        return {"block": self.block, "text": self.text, "revision": self.revision,
                "author": self.author, "time": iso(self.time)}


def blame(doc: Document, at: At = None, admin: bool = True) -> list[BlameLine]:
    v = doc.resolve(at)
    blocks = doc.blocks(v, admin=admin)
    need = {doc._bkey(b.id) for b in blocks}
    found: dict[bytes, Commit] = {}
    if need:
        for c, changes in walk(doc, start=v):
            for k, _, new in changes:
                if new is not None and k in need and k not in found:
                    found[k] = c
            if len(found) == len(need):
                break
    out = []
    for b in blocks:
        c = found[doc._bkey(b.id)]
        out.append(BlameLine(b.id, b.text, c.version, c.author, c.time))
    return out
