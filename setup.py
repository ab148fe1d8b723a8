"""Builds the optional C accelerators; the metadata is in pyproject.toml.

``pip install .`` compiles cowdb/pds/_champ_c.c (the persistent structures' trie),
cowdb/tree/_tree_c.c (the B+tree's point-read descent), cowdb/tree/_write_*.c (the write
path's node work: images, the put, the commit's write pass, bulk loads; _write_c.h lists
its files), cowdb/_pins_c.c (a process's reader pins: a snapshot's open and close) and
cowdb/pages/_pages_c.c (the free list's runs) when a C compiler is there, and installs
the pure-Python package without them when not (optional=True).
For development without installing: ``python setup.py build_ext --inplace``.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("cowdb.pds._champ_c", ["cowdb/pds/_champ_c.c"], optional=True),
    Extension("cowdb.tree._tree_c", ["cowdb/tree/_tree_c.c"], optional=True),
    Extension("cowdb.tree._write_c",
              [f"cowdb/tree/_write_{part}.c" for part in ("c", "image", "pass", "put", "cache",
                                                          "load", "chain")],
              depends=["cowdb/tree/_write_c.h"], optional=True),
    Extension("cowdb._pins_c", ["cowdb/_pins_c.c"], optional=True),
    Extension("cowdb.pages._pages_c", ["cowdb/pages/_pages_c.c"], optional=True),
])
