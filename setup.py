"""Builds the optional C accelerators; the metadata is in pyproject.toml.

``pip install .`` compiles cowdb/pds/_champ_c.c (the persistent structures' trie),
cowdb/tree/_tree_c.c (the B+tree's point-read descent), cowdb/tree/_write_*.c (the write
path's node work: images, the put, the commit's write pass, bulk loads; _write_c.h lists
its files), cowdb/_pins_c.c (a process's reader pins: a snapshot's open and close) and
cowdb/pages/_pages_c.c (the free list's runs) when a C compiler is there, and installs
the pure-Python package without them when not (optional=True). The two tree modules
compute the page checksum (XXH3-64) with xxHash's own code, vendored in third_party/xxhash
(cowdb/tree/_xxh3.h says why).
For development without installing: ``python setup.py build_ext --inplace``.
"""

from setuptools import Extension, setup

XXHASH = ["third_party/xxhash"]
XXH3 = ["cowdb/tree/_xxh3.h", "third_party/xxhash/xxhash.h", "third_party/xxhash/LICENSE"]

setup(ext_modules=[
    Extension("cowdb.pds._champ_c", ["cowdb/pds/_champ_c.c"], optional=True),
    Extension("cowdb.tree._tree_c", ["cowdb/tree/_tree_c.c"], include_dirs=XXHASH,
              depends=XXH3, optional=True),
    Extension("cowdb.tree._write_c",
              [f"cowdb/tree/_write_{part}.c" for part in ("c", "image", "pass", "put", "cache",
                                                          "load", "chain")],
              include_dirs=XXHASH, depends=["cowdb/tree/_write_c.h", *XXH3], optional=True),
    Extension("cowdb._pins_c", ["cowdb/_pins_c.c"], optional=True),
    Extension("cowdb.pages._pages_c", ["cowdb/pages/_pages_c.c"], optional=True),
])
