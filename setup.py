"""Builds the optional C accelerators; the metadata is in pyproject.toml.

``pip install .`` compiles cowdb/pds/_champ_c.c (the persistent structures'
trie), cowdb/tree/_tree_c.c (the B+tree's point-read descent), cowdb/tree/_write_c.c (a
commit's delta images) and
cowdb/_pins_c.c (a process's reader pins: a snapshot's open and close) when a C
compiler is there, and installs the pure-Python package without them when not
(optional=True).
For development without installing: ``python setup.py build_ext --inplace``.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("cowdb.pds._champ_c", ["cowdb/pds/_champ_c.c"], optional=True),
    Extension("cowdb.tree._tree_c", ["cowdb/tree/_tree_c.c"], optional=True),
    Extension("cowdb.tree._write_c", ["cowdb/tree/_write_c.c"], optional=True),
    Extension("cowdb._pins_c", ["cowdb/_pins_c.c"], optional=True),
    Extension("cowdb.pages._pages_c", ["cowdb/pages/_pages_c.c"], optional=True),
])
