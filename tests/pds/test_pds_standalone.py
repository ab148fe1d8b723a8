"""cowdb.pds stands on its own: importing it needs only the standard library.

The persistent structures are documented as independent of the engine, so a
user who wants only them must not need msgpack, xxhash or fcntl installed, and
must not pay for importing the engine. Each check runs in a fresh interpreter
whose import system refuses the engine's third-party dependencies.
"""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HIDE = textwrap.dedent("""
    import importlib.abc, sys
    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"msgpack", "xxhash", "click", "rich"}:
                raise ModuleNotFoundError(f"{name} is hidden by the test", name=name)
    sys.meta_path.insert(0, Hide())
""")


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE + textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_pds_imports_without_the_engine_dependencies():
    r = run("""
        from cowdb.pds import PMap, PVector, PSet, PSortedMap, diff
        m = PMap({"a": 1}).set("b", 2)
        assert dict(m) == {"a": 1, "b": 2}
        assert list(PVector([1, 2]).append(3)) == [1, 2, 3]
        assert 3 in PSet([3]) and list(PSortedMap({2: 0, 1: 0})) == [1, 2]
        engine = [n for n in ("cowdb.db", "cowdb.pages", "cowdb.tree", "fcntl", "msgpack")
                  if n in sys.modules]
        assert not engine, engine
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_the_engine_says_what_is_missing():
    """Hidden dependencies surface as the ImportError naming them, not as something else."""
    r = run("""
        import cowdb
        try:
            cowdb.open()
        except ModuleNotFoundError as e:
            print(e.name)
    """)
    assert r.returncode == 0 and r.stdout.strip() in {"msgpack", "xxhash"}, r.stderr


def test_public_names_still_resolve():
    import cowdb
    assert {"open", "Database", "Snapshot", "Transaction", "Commit", "CommitStats",
            "errors"} <= set(dir(cowdb))
    assert cowdb.Database.__name__ == "Database"
    assert cowdb.errors.CowdbError.__name__ == "CowdbError"
