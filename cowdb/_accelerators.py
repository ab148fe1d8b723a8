"""Loading the optional compiled accelerators (cowdb.pds._champ_c, cowdb.tree._tree_c,
cowdb.tree._write_c, cowdb._pins_c, cowdb.pages._pages_c).

Each replaces a hot pure-Python path that stays beside it and passes the same
tests. One rule for all of them: a module that was not built is simply absent;
one built from an older checkout (its API constant differs from what the Python
side is written against) is refused with a warning saying how to rebuild, never
half used; and ``COWDB_PURE_PYTHON=1`` selects every pure-Python path.
"""
import importlib
import os
import warnings
from types import ModuleType


def load(package: str, name: str, api: int) -> ModuleType | None:
    """The compiled module ``package.name`` if it is built and current, else None."""
    try:
        module = importlib.import_module(f"{package}.{name}")
    except ImportError:  # not built (no C compiler at install): pure Python only
        return None
    if getattr(module, "API", None) != api:
        warnings.warn(f"{package}: the compiled accelerator ({name}) is out of date, so pure "
                      f"Python is used; rebuild it: python setup.py build_ext --inplace",
                      RuntimeWarning, stacklevel=2)
        return None
    return module


def wanted() -> bool:
    """Whether to run the compiled paths (False under COWDB_PURE_PYTHON=1)."""
    return os.environ.get("COWDB_PURE_PYTHON") != "1"
