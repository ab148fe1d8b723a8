"""Builds the optional C accelerator of cowdb.pds; the metadata is in pyproject.toml.

``pip install .`` compiles cowdb/pds/_champ_c.c when a C compiler is there
and installs the pure-Python package without it when not (optional=True).
For development without installing: ``python setup.py build_ext --inplace``.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("cowdb.pds._champ_c", ["cowdb/pds/_champ_c.c"], optional=True)])
