"""cowdb.documents: shared documents kept as ordered blocks in a cowdb database, with
per-revision authors, three-way merging saves, diff, blame, restore, undo and
revert-by-author. Built on cowdb's public API only.

    import cowdb
    from cowdb.documents import Document
    db = cowdb.open("docs.cow")
    doc = Document(db, "handbook")
    r = doc.save("First paragraph.\\n\\nSecond.", author="owner")
    doc.text(), doc.revisions(), doc.blame(), doc.diff(r.revision)
    plan = doc.revert_author("vandal", since=some_datetime)   # a preview
    plan.apply(author="owner")
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .blame import BlameLine
from .errors import BlockNotFound, DocumentError, InvalidName, NotARevision, RevisionHidden
from .history import BlockChange, Revision
from .merge import merge_block, merge_words
from .model import Block, Conflict, Document, SaveResult
from .revert import KeptBlock, PlannedChange, RevertPlan

if TYPE_CHECKING:
    from cowdb.db import Database


def documents(db: Database, branch: str = "main") -> list[str]:
    """The names of the documents with blocks at the head of ``branch``."""
    names: list[str] = []
    with db.read(branch) as snap:
        start = b"doc/"
        while True:
            k = next(iter(snap.keys(start, b"doc0")), None)
            if k is None:
                return names
            name = k[4:].split(b"/", 1)[0]
            names.append(name.decode("utf-8", "replace"))
            start = b"doc/" + name + b"0"   # b"/" + 1: past every key of that document


__all__ = ["Document", "Block", "Conflict", "SaveResult", "Revision", "BlockChange",
           "BlameLine", "RevertPlan", "PlannedChange", "KeptBlock", "merge_words",
           "merge_block", "documents", "DocumentError", "InvalidName", "BlockNotFound",
           "NotARevision", "RevisionHidden"]
