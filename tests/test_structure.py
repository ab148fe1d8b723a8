"""The shape issue 18 asked for: what a user calls on Database is defined in its class."""
import inspect

from cowdb.db import Database
from cowdb.engine import Engine


def test_every_public_method_of_database_is_defined_in_its_class():
    inherited = [name for name, _ in inspect.getmembers(Database)
                 if not name.startswith("_") and name not in vars(Database)]
    assert inherited == [], f"public names Database only inherits: {inherited}"


def test_database_provides_what_the_history_components_need():
    import cowdb
    names = {n for n in vars(Engine) if not n.startswith("__")} | set(Engine.__annotations__)
    names -= {"_is_protocol", "_is_runtime_protocol", "_abc_impl"}
    with cowdb.open() as db:
        missing = sorted(n for n in names if not hasattr(db, n))
    assert "_update" in names and missing == []
