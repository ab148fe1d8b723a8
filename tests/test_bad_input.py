"""The bad-input matrix: each case raises a specific cowdb.errors exception with a
message, and leaves the database file byte-for-byte as it was (a hash before and
after, taken with the database closed).
"""
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from contextlib import contextmanager

import pytest

import cowdb
from cowdb import errors as E


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@contextmanager
def unchanged(path: str):
    before = digest(path)
    yield
    assert digest(path) == before, f"{path} changed"


@contextmanager
def raises(exc, match: str | None = None):
    """pytest.raises that also wants a helpful message (a sentence, not a bare repr)."""
    with pytest.raises(exc, match=match) as info:
        yield info
    assert len(str(info.value)) >= 20, f"unhelpful message: {info.value!r}"


@pytest.fixture
def dbfile(tmp_path):
    path = str(tmp_path / "data.cow")
    with cowdb.open(path) as db:
        with db.write(message="one") as tx:
            tx.update({b"a": b"1", b"b": b"2", b"big": b"x" * 5000})
        with db.write(message="two") as tx:
            tx[b"c"] = b"3"
        db.tag("v1", 1)
    return path


def test_open_then_close_changes_nothing(dbfile):
    with unchanged(dbfile):
        cowdb.open(dbfile).close()
        cowdb.open(dbfile, readonly=True).close()


# ---- keys and values ------------------------------------------------------------------
@pytest.mark.parametrize("key", [123, None, 1.5, ("a",), [b"a"], object()])
def test_non_bytes_key(dbfile, key):
    with unchanged(dbfile), cowdb.open(dbfile) as db:
        with db.write() as tx:
            with raises(E.InvalidType):
                tx[key] = b"v"
            with raises(E.InvalidType):
                tx.get(key)
            with raises(E.InvalidType):
                tx.delete(key)
            with raises(E.InvalidType):
                tx.update([(key, b"v")])
            tx.abort()
        with db.read() as snap, raises(E.InvalidType):
            snap[key]


@pytest.mark.parametrize("value", ["text", 5, None, 1.5, [b"a"], {"a": 1}])
def test_non_bytes_value(dbfile, value):
    with unchanged(dbfile), cowdb.open(dbfile) as db:
        with raises(E.InvalidType):
            with db.write() as tx:
                tx[b"fine"] = b"ok"      # the whole transaction is dropped
                tx[b"k"] = value
        with raises(E.InvalidType):
            with db.write() as tx:
                tx.update([(b"k", value)])
        assert db.version == 2 and b"fine" not in db.read()


def test_empty_key(dbfile):
    with unchanged(dbfile), cowdb.open(dbfile) as db:
        with raises(E.InvalidKey):
            with db.write() as tx:
                tx[b""] = b"v"
        with raises(E.InvalidKey):
            with db.write() as tx:
                tx[""] = b"v"
        with db.read() as snap:  # reads: a key that cannot be stored is simply absent
            assert b"" not in snap and snap.get(b"") is None
            with pytest.raises(KeyError):
                snap[b""]


def test_oversized_key(dbfile):
    with unchanged(dbfile), cowdb.open(dbfile) as db:
        big = b"k" * (db.max_key + 1)
        with raises(E.KeyTooLarge):
            with db.write() as tx:
                tx[big] = b"v"
        with db.read() as snap:
            assert big not in snap


# ---- files that are not (whole) databases ---------------------------------------------
def test_path_is_a_directory(tmp_path):
    (tmp_path / "inside").write_bytes(b"keep")
    with raises(E.NotACowdbFile):
        cowdb.open(str(tmp_path))
    with raises(E.NotACowdbFile):
        cowdb.open(str(tmp_path), readonly=True)
    assert os.listdir(tmp_path) == ["inside"]
    assert (tmp_path / "inside").read_bytes() == b"keep"


@pytest.mark.parametrize("content", [b"hello, this is a text file\n" * 400,
                                     bytes(range(256)) * 40, b"\x00" * 8192,
                                     b"SQLite format 3\x00" + bytes(8192)])
def test_not_a_cowdb_file(tmp_path, content):
    path = str(tmp_path / "other.bin")
    with open(path, "wb") as f:
        f.write(content)
    for readonly in (False, True):
        with unchanged(path), raises(E.NotACowdbFile, match="not a cowdb"):
            cowdb.open(path, readonly=readonly)


def test_zero_length_file(tmp_path):
    path = str(tmp_path / "empty.cow")
    open(path, "wb").close()
    for readonly in (False, True):
        with raises(E.NotACowdbFile, match="empty"):
            cowdb.open(path, readonly=readonly)
        assert os.path.getsize(path) == 0


@pytest.mark.parametrize("keep", [10, 100, 4096, 4096 + 100, 8192, 8192 + 10, "half", "-1"])
def test_truncated_file(dbfile, keep):
    size = os.path.getsize(dbfile)
    n = {"half": size // 2, "-1": size - 1}.get(keep, keep)
    with open(dbfile, "r+b") as f:
        f.truncate(n)
    for readonly in (True, False):
        with unchanged(dbfile):
            try:
                db = cowdb.open(dbfile, readonly=readonly)
            except (E.Corruption, E.NotACowdbFile) as e:
                assert len(str(e)) >= 20
                continue
            try:  # it opened: whatever it reads is right or Corruption
                with db.read() as snap:
                    assert dict(snap.items()) == {b"a": b"1", b"b": b"2", b"big": b"x" * 5000,
                                                  b"c": b"3"}
            except E.Corruption:
                pass
            finally:
                db.close()


def test_future_format_version(dbfile):
    with open(dbfile, "r+b") as f:
        data = bytearray(f.read())
        for off in (0, 4096):  # the version field of both meta slots (see meta.py)
            data[off + 8:off + 12] = (99).to_bytes(4, "little")
        f.seek(0)
        f.write(data)
    for readonly in (False, True):
        with unchanged(dbfile), raises(E.NotACowdbFile, match="format version 99"):
            cowdb.open(dbfile, readonly=readonly)


# ---- permissions ----------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import sys, cowdb
    from cowdb import errors as E
    path = sys.argv[1]
    try:
        cowdb.open(path)
    except E.ReadOnly as e:
        print("ReadOnly", e)
    except Exception as e:
        print("OTHER", type(e).__name__, e)
    else:
        print("OPENED")
    with cowdb.open(path, readonly=True) as db:
        assert db.read()[b"c"] == b"3"
        try:
            db.write()
        except E.ReadOnly:
            print("write refused")
""")


def run_child(args, path):
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(cowdb.__file__))}
    return subprocess.run(args + [sys.executable, "-c", CHILD, path], capture_output=True,
                          text=True, env=env, timeout=120)


def test_read_only_file(dbfile):
    """A file the process may not write: ReadOnly; readonly=True reads it."""
    folder = tempfile.mkdtemp()
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "ro.cow")
    shutil.copy(dbfile, path)
    os.chmod(path, 0o444)
    prefix = []
    if os.geteuid() == 0:  # root writes anything: the child runs without CAP_DAC_OVERRIDE
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a file unwritable")
        prefix = ["setpriv", "--bounding-set", "-dac_override", "--inh-caps=-all"]
    try:
        with unchanged(path):
            out = run_child(prefix, path)
        assert out.stdout.startswith("ReadOnly"), out.stdout + out.stderr
        assert "write refused" in out.stdout
    finally:
        shutil.rmtree(folder)


def test_read_only_file_system(dbfile):
    """A database on a read-only mount: ReadOnly; readonly=True reads it."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a read-only file system")
    mnt = tempfile.mkdtemp()
    script = (f"mount -t tmpfs tmpfs {mnt} && cp {dbfile} {mnt}/db.cow && "
              f"mount -o remount,ro {mnt} && exec \"$@\"")
    out = run_child(["unshare", "-m", "sh", "-c", script, "sh"], f"{mnt}/db.cow")
    if "mount" in out.stderr and not out.stdout:
        pytest.skip(f"cannot mount here: {out.stderr.strip()}")
    assert out.stdout.startswith("ReadOnly"), out.stdout + out.stderr
    assert "write refused" in out.stdout


# ---- misuse of the API ----------------------------------------------------------------
def test_closed_database(dbfile):
    with unchanged(dbfile):
        db = cowdb.open(dbfile)
        snap = db.read()
        db.close()
        for call in (db.read, lambda: db.at(1), lambda: db.write(), db.check,
                     lambda: db.version, lambda: db.tag("x"), db.tags):
            with raises(E.DatabaseClosed):
                call()
        with raises(E.TransactionClosed):
            snap[b"a"]
        db.close()  # closing twice is fine


def test_transaction_used_after_commit(dbfile):
    with cowdb.open(dbfile) as db:
        tx = db.write()
        tx[b"d"] = b"4"
        tx.commit()
    with unchanged(dbfile), cowdb.open(dbfile) as db:
        for call in (lambda: tx.__setitem__(b"e", b"5"), lambda: tx[b"a"], tx.commit,
                     lambda: tx.delete(b"a"), lambda: len(tx)):
            with raises(E.TransactionClosed):
                call()
        tx.abort()  # a no-op once closed
        with db.write() as tx2:
            with raises(E.TransactionClosed):
                tx[b"f"] = b"6"   # does not write through the new transaction
            tx2.abort()


def test_nested_write_in_one_thread(dbfile):
    with unchanged(dbfile), cowdb.open(dbfile) as db:
        with db.write() as tx:
            tx[b"x"] = b"y"
            with raises(E.NestedTransaction):
                db.write()
            with raises(E.NestedTransaction):
                db.tag("nested")
            tx.abort()
        assert b"x" not in db.read()


def test_writing_through_a_snapshot(dbfile):
    with unchanged(dbfile), cowdb.open(dbfile) as db:
        with db.read() as snap:
            with raises(E.ReadOnly):
                snap[b"a"] = b"9"
            with raises(E.ReadOnly):
                del snap[b"a"]
            assert snap[b"a"] == b"1"
        with db.at(1) as old, raises(E.ReadOnly):
            old[b"a"] = b"9"


def test_readonly_database_refuses_writes(dbfile):
    with unchanged(dbfile), cowdb.open(dbfile, readonly=True) as db:
        for call in (lambda: db.write(), lambda: db.tag("x"), lambda: db.branch("b"),
                     db.gc, lambda: db.restore(1)):
            with raises(E.ReadOnly):
                call()


def test_versions_that_do_not_exist(dbfile):
    with unchanged(dbfile), cowdb.open(dbfile) as db:
        for v in (3, 999, -1, 2 ** 70):
            with raises(E.VersionNotFound):
                db.at(v)
        with raises(E.RefNotFound):
            db.at("no-such-tag")
        with raises(E.InvalidType):
            db.at(1.5)
        with raises(E.RefNotFound):
            db.write(branch="no-such-branch")
        with raises(E.RefExists):
            db.tag("v1")
        with raises(E.InvalidKey):
            db.tag("")
        with raises(E.RefNotFound):
            db.delete_tag("nope")
        with raises(E.RefNotFound):
            db.delete_branch("nope")


def test_missing_paths(tmp_path):
    with raises(E.DatabaseNotFound):
        cowdb.open(str(tmp_path / "missing.cow"), readonly=True)
    with raises(E.DatabaseNotFound):
        cowdb.open(str(tmp_path / "no" / "such" / "folder.cow"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, exc", [
    ({"durability": "sometimes"}, ValueError),
    ({"page_size": 1000}, ValueError),
    ({"page_size": 1 << 17}, ValueError),
    ({"timeout": "5"}, E.InvalidType),
])
def test_bad_open_argument(dbfile, kwargs, exc):
    """Error paths branch coverage found untested (issue 18): bad arguments to open()."""
    with unchanged(dbfile), raises(exc):
        cowdb.open(dbfile, **kwargs)


@pytest.mark.parametrize("call, exc", [
    (lambda db: db.write(durability="sometimes"), ValueError),
    (lambda db: db.set_retention(keep_last="3"), E.InvalidType),
    (lambda db: db.set_retention(keep_within=5), E.InvalidType),
    (lambda db: db.backup(42), E.InvalidType),
    (lambda db: db.merge("main", into="main"), E.InvalidMerge),
    (lambda db: db.merge("main", into="other", resolve="mine"), ValueError),
    (lambda db: db.read().items(b"a", start=b"b"), TypeError),
])
def test_bad_call_argument(dbfile, call, exc):
    """Error paths branch coverage found untested (issue 18): bad arguments to the API."""
    with unchanged(dbfile), cowdb.open(dbfile) as db, raises(exc):
        call(db)


def test_merge_resolve_returns_non_bytes(dbfile):
    with cowdb.open(dbfile) as db:
        db.branch("side", "main")
        with db.write(branch="side") as tx:
            tx[b"a"] = b"side"
        with db.write() as tx:
            tx[b"a"] = b"main"
        with raises(TypeError, match="resolve"):
            db.merge("side", resolve=lambda key, base, ours, theirs: 5)
