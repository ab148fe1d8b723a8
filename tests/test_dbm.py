"""cowdb.dbm: the dbm interface (the behaviours CPython's test_dbm and test_dbm_dumb
check, written anew) and shelve on top of it, where every sync is one version."""
import os
import pickle
import pathlib
import random
import shelve
import stat
import threading

import pytest

import cowdb
import cowdb.dbm
from cowdb import errors

DATA = {b"a": b"Python:", b"b": b"Programming", b"c": b"the", b"d": b"way",
        b"f": b"Guido", b"g": b"intended", "\u00fc".encode(): b"!", b"0": b""}


def fill(path, data=DATA, flag="n"):
    with cowdb.dbm.open(path, flag) as d:
        for k, v in data.items():
            d[k] = v


def versions(path):
    with cowdb.open(path, readonly=True) as db:
        return [c.version for c in db.log()]


# ---- the module ---------------------------------------------------------------

def test_error_is_an_oserror_and_a_cowdb_error(path):
    assert issubclass(cowdb.dbm.error, OSError)
    assert issubclass(cowdb.dbm.error, errors.CowdbError)
    with pytest.raises(cowdb.dbm.error):
        cowdb.dbm.open(path)
    try:
        cowdb.dbm.open(path, "r")
    except cowdb.dbm.error as e:   # used the way dbm.error is
        assert "no database" in str(e)
    else:
        pytest.fail("opening a missing file with 'r' did not fail")


@pytest.mark.parametrize("flag", ["r", "w"])
def test_r_and_w_need_an_existing_file(path, flag):
    with pytest.raises(cowdb.dbm.error):
        cowdb.dbm.open(path, flag)
    assert not os.path.exists(path)


def test_bad_flag(path):
    with pytest.raises(ValueError):
        cowdb.dbm.open(path, "x")


def test_not_a_cowdb_file_is_an_error(path):
    pathlib.Path(path).write_bytes(b"not a database" * 100)
    for flag in "rwc":
        with pytest.raises(cowdb.dbm.error):
            cowdb.dbm.open(path, flag)
    with pytest.raises(cowdb.dbm.error):
        cowdb.dbm.open(os.path.dirname(path), "c")


def test_creation_then_read_back(path):
    d = cowdb.dbm.open(path, "c")
    assert d.keys() == [] and isinstance(d.keys(), list)
    for k, v in DATA.items():
        d[k] = v
    assert sorted(d.keys()) == sorted(DATA)
    assert all(d[k] == v for k, v in DATA.items())
    d.close()
    with cowdb.dbm.open(path, "r") as d:
        assert sorted(d.keys()) == sorted(DATA)
        assert {k: d[k] for k in d} == DATA


def test_n_on_an_empty_or_foreign_file_gives_a_new_database(path):
    pathlib.Path(path).write_bytes(b"")
    with cowdb.dbm.open(path, "n") as d:
        assert len(d) == 0
    pathlib.Path(path).write_bytes(b"junk" * 2000)
    with cowdb.dbm.open(path, "n") as d:
        assert len(d) == 0
        d[b"k"] = b"v"
    with cowdb.dbm.open(path, "r") as d:
        assert d.items() == [(b"k", b"v")]


def test_n_empties_and_starts_a_new_history(path):
    fill(path)
    fill(path, {b"x": b"1"}, "c")
    assert len(versions(path)) == 3
    with cowdb.dbm.open(path, "n") as d:
        assert d.keys() == []
        assert len(d) == 0
    assert versions(path) == [0]
    with cowdb.dbm.open(path, "c") as d:
        assert b"a" not in d


def test_modification_and_setdefault(path):
    fill(path)
    with cowdb.dbm.open(path, "w") as d:
        d[b"g"] = b"indented"
        assert d[b"g"] == b"indented"
        assert d.setdefault(b"xxx", b"foo") == b"foo"
        assert d[b"xxx"] == b"foo"
        assert d.setdefault(b"xxx", b"bar") == b"foo"
        assert d.setdefault(b"0") == b""
    with cowdb.dbm.open(path, "c") as d:
        assert d[b"g"] == b"indented" and d[b"xxx"] == b"foo" and d[b"a"] == b"Python:"


def test_get_and_missing_keys(path):
    fill(path)
    with cowdb.dbm.open(path, "r") as d:
        assert d.get(b"a") == b"Python:"
        assert d.get(b"xxx", b"foo") == b"foo"
        assert d.get(b"xxx") is None
        with pytest.raises(KeyError):
            d[b"xxx"]
        assert b"a" in d and b"xxx" not in d
        assert b"" not in d and b"k" * 5000 not in d   # keys cowdb cannot hold: just absent


def test_empty_value(path):
    with cowdb.dbm.open(path, "c") as d:
        d[b"empty"] = b""
        assert d.keys() == [b"empty"]
        assert b"empty" in d
        assert d[b"empty"] == b"" and d.get(b"empty") == b""
        assert d.setdefault(b"empty") == b""
    with cowdb.dbm.open(path, "r") as d:
        assert d[b"empty"] == b"" and b"empty" in d


def test_str_keys_and_values_are_utf8(path):
    fill(path)
    with cowdb.dbm.open(path, "w") as d:
        assert d["\u00fc"] == b"!"
        d["\u00e9t\u00e9"] = "\u00e0 Paris"
        d["1"] = "a"
        assert d[b"1"] == b"a"
    with cowdb.dbm.open(path, "r") as d:
        assert "\u00fc" in d and "\u00e9t\u00e9".encode() in d
        assert d["\u00e9t\u00e9".encode()] == "\u00e0 Paris".encode()
        assert d["1"] == d[b"1"] == b"a"


def test_other_types_are_type_errors(path):
    with cowdb.dbm.open(path, "c") as d:
        for bad_key in (1, None, 1.5, (b"a",)):
            with pytest.raises(TypeError):
                d[bad_key] = b"v"
            with pytest.raises(TypeError):
                d[bad_key]
        for bad_value in (1, None, [b"v"]):
            with pytest.raises(TypeError):
                d[b"k"] = bad_value
        with pytest.raises(TypeError):
            d.setdefault(b"new")          # the default None is no value
        assert d.keys() == []


def test_keys_cowdb_cannot_store_fail_at_assignment(path):
    with cowdb.dbm.open(path, "c") as d:
        with pytest.raises(errors.InvalidKey):
            d[b""] = b"v"
        with pytest.raises(errors.KeyTooLarge):
            d[b"k" * (d.db.max_key + 1)] = b"v"
        d[b"k" * d.db.max_key] = b"longest"
    with cowdb.dbm.open(path, "r") as d:
        assert d.keys() == [b"k" * d.db.max_key]


def test_write_write_read_and_contains(path):
    with cowdb.dbm.open(path, "c") as d:
        d[b"1"] = b"hello"
        assert b"1" in d
        d[b"1"] = b"hello2"
    with cowdb.dbm.open(path, "c") as d:
        assert d[b"1"] == b"hello2"


def test_keys_len_iteration_and_clear(path):
    with cowdb.dbm.open(path, "c") as d:
        pairs = [(b"a", b"b"), (b"12345678910", b"019237410982340912840198242")]
        for k, v in pairs:
            d[k] = v
        assert d.keys() == sorted(k for k, _ in pairs)
        assert list(d) == d.keys()
        assert len(d) == 2
        d.sync()
        d[b"zz"] = b"new"
        del d[b"a"]
        assert len(d) == 2 and list(d) == [b"12345678910", b"zz"]
        assert d.items() == [(b"12345678910", pairs[1][1]), (b"zz", b"new")]
        assert d.values() == [pairs[1][1], b"new"]
        d.clear()
        assert len(d) == 0 and d.keys() == []
        assert all(k not in d for k, _ in pairs)
    with cowdb.dbm.open(path, "r") as d:
        assert len(d) == 0


def test_delete(path):
    fill(path)
    with cowdb.dbm.open(path, "w") as d:
        del d[b"a"]
        assert b"a" not in d
        with pytest.raises(KeyError):
            del d[b"a"]
        with pytest.raises(KeyError):
            del d[b"nope"]
        d[b"new"] = b"1"
        del d[b"new"]                       # only ever pending: nothing to commit for it
        assert b"new" not in d
        d[b"b"] = b"again"
        del d[b"b"]                          # committed and overwritten, then deleted
        assert b"b" not in d
        assert d.pop(b"c") == b"the"
    with cowdb.dbm.open(path, "r") as d:
        assert sorted(d.keys()) == sorted(set(DATA) - {b"a", b"b", b"c"})


def test_closed_dbm_raises_error(path):
    d = cowdb.dbm.open(path, "c")
    d.close()
    d.close()                                 # closing twice is fine
    ops = [lambda: d[b"test"], lambda: d.__setitem__(b"test", b"v"),
           lambda: d.__delitem__(b"test"), lambda: b"test" in d, lambda: d.get(b"test"),
           d.keys, d.items, d.values, lambda: len(d), lambda: list(d), d.sync, d.clear,
           lambda: d.db]
    for op in ops:
        with pytest.raises(cowdb.dbm.error, match="DBM object has already been closed"):
            op()


def test_context_manager(path):
    with cowdb.dbm.open(path, "c") as db:
        db["context manager"] = "value"
    with cowdb.dbm.open(path, "r") as db:
        assert db.keys() == [b"context manager"]
    with pytest.raises(cowdb.dbm.error):
        db.keys()


def test_read_only_refuses_writes(path):
    fill(path)
    with cowdb.dbm.open(path, "r") as d:
        for op in (lambda: d.__setitem__(b"a", b"x"), lambda: d.__delitem__(b"a"), d.clear,
                   lambda: d.setdefault(b"new", b"x")):
            with pytest.raises(cowdb.dbm.error) as info:
                op()
            assert isinstance(info.value, errors.ReadOnly)
            assert isinstance(info.value, PermissionError)
        assert d.sync() is None
        assert d[b"a"] == b"Python:"
    assert len(versions(path)) == 2


@pytest.mark.parametrize("kind", [os.fsencode, pathlib.Path,
                                  lambda p: pathlib.Path(p).as_posix()])
def test_open_with_bytes_and_path_objects(path, kind):
    with cowdb.dbm.open(kind(path), "c") as d:
        d[b"k"] = b"v"
    with cowdb.dbm.open(kind(path), "r") as d:
        assert d[b"k"] == b"v"


@pytest.mark.skipif(not hasattr(os, "umask"), reason="needs os.umask")
def test_creation_mode_less_umask(path):
    old = os.umask(0o002)
    try:
        cowdb.dbm.open(path, "c", 0o637).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o635
    # an existing file keeps its mode
    os.chmod(path, 0o600)
    cowdb.dbm.open(path, "c", 0o666).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_random_operations_match_a_dict(path):
    rng = random.Random(1234)
    model = {}
    for _ in range(5):
        with cowdb.dbm.open(path, "c") as d:
            for _ in range(150):
                k = rng.choice("abcdefghijklm").encode()
                r = rng.random()
                if r < 0.2:
                    if k in model:
                        del model[k]
                        del d[k]
                    else:
                        with pytest.raises(KeyError):
                            del d[k]
                elif r < 0.3:
                    v = d.sync()
                    assert v is None or v == d.db.version
                    assert d.sync() is None
                else:
                    v = rng.choice((b"a", b"b", b"c")) * rng.randrange(3000)
                    model[k] = v
                    d[k] = v
                    assert d[k] == v
                assert len(d) == len(model)
            assert d.items() == sorted(model.items())
        with cowdb.dbm.open(path, "r") as d:
            assert d.items() == sorted(model.items())


# ---- versions: the overlay and sync ---------------------------------------------------

def test_changes_are_pending_until_sync(path):
    with cowdb.dbm.open(path, "c") as d, cowdb.dbm.open(path, "r") as other:
        d[b"k"] = b"v"
        assert d[b"k"] == b"v" and b"k" not in other
        v = d.sync()
        assert v == 1 == d.db.version
        assert other[b"k"] == b"v"           # a reader sees each new version
        assert d.sync() is None               # nothing pending: no empty version
        assert d.db.version == 1


def test_every_sync_with_changes_is_one_version(path):
    with cowdb.dbm.open(path, "c", message="batch", author="ann") as d:
        for i in range(5):
            for j in range(10):
                d[f"k{i}-{j}"] = b"x" * j
            if i:
                del d[f"k{i - 1}-0"]
            d.sync()
            assert len(list(d.db.log())) == i + 2
        d.sync(message="nothing")
        commits = list(d.db.log())
        assert len(commits) == 6
        assert commits[0].message == "batch" and commits[0].author == "ann"
        assert commits[0].stats.keys_put == 10 and commits[0].stats.keys_deleted == 1
        with d.db.at(1) as first:
            assert len(first) == 10
        d[b"last"] = b"1"
        d.sync(message="the last one")
        assert next(d.db.log()).message == "the last one"
    assert len(versions(path)) == 7


def test_writer_lock_is_not_held_between_syncs(path):
    a = cowdb.dbm.open(path, "c")
    b = cowdb.dbm.open(path, "w")
    try:
        a[b"x"] = b"from a"
        b[b"y"] = b"from b"
        with cowdb.open(path) as db:             # a plain writer gets in at once
            with db.write(timeout=0) as tx:
                tx[b"z"] = b"from db"
        assert b"z" in a and b"z" in b           # reads see the newest version
        assert b.sync() == 2 and a.sync() == 3
        assert a.items() == [(b"x", b"from a"), (b"y", b"from b"), (b"z", b"from db")]
    finally:
        a.close()
        b.close()


def test_failed_sync_keeps_the_changes(path):
    held, done = threading.Event(), threading.Event()

    def writer():
        with cowdb.open(path) as db, db.write() as tx:
            tx[b"other"] = b"1"
            held.set()
            done.wait(10)

    with cowdb.dbm.open(path, "c", timeout=0.05) as d:
        d[b"mine"] = b"2"
        t = threading.Thread(target=writer)
        t.start()
        held.wait(10)
        with pytest.raises(cowdb.dbm.error) as info:
            d.sync()
        assert isinstance(info.value.__cause__, errors.Locked)
        assert d[b"mine"] == b"2"
        done.set()
        t.join()
        assert d.sync() == 2
        assert d.items() == [(b"mine", b"2"), (b"other", b"1")]


def test_forgotten_dbm_commits_when_collected(path):
    d = cowdb.dbm.open(path, "c")
    d[b"k"] = b"v"
    del d
    with cowdb.dbm.open(path, "r") as d:
        assert d[b"k"] == b"v"
    half = cowdb.dbm.CowDBM.__new__(cowdb.dbm.CowDBM)   # __del__ of a half-built object
    del half


def test_iteration_sees_one_state(path):
    fill(path)
    with cowdb.dbm.open(path, "w") as d:
        it = iter(d)
        first = next(it)
        d[b"zzz"] = b"added after"
        del d[b"g"]
        assert [first, *it] == sorted(DATA)


# ---- shelve ---------------------------------------------------------------------------

def test_shelf_round_trips_pickled_objects(path):
    value = {"list": [1, 2.5, None], "tuple": (1, "two"), "set": {3}, "bytes": b"\x00\xff"}
    with shelve.Shelf(cowdb.dbm.open(path, "c")) as shelf:
        shelf["obj"] = value
        shelf["\u00fcber"] = [1]
        assert shelf["obj"] == value
    with shelve.Shelf(cowdb.dbm.open(path, "r")) as shelf:
        assert shelf["obj"] == value and shelf["\u00fcber"] == [1]
        assert sorted(shelf) == ["obj", "\u00fcber"]
        assert len(shelf) == 2 and "obj" in shelf and shelf.get("nope") is None
        with pytest.raises(KeyError):
            shelf["nope"]


def test_every_shelf_sync_is_a_version(path):
    shelf = cowdb.dbm.open_shelf(path)
    db = shelf.dict.db
    n = len(list(db.log()))
    for i in range(4):
        shelf[f"item{i}"] = {"i": i}
        shelf.sync()
        assert len(list(db.log())) == n + i + 1
    shelf.sync()                                   # nothing changed: no version
    assert len(list(db.log())) == n + 4
    del shelf["item0"]
    shelf.close()                                  # close syncs once, not twice
    assert len(versions(path)) == n + 5
    with cowdb.open(path, readonly=True) as db, db.at(1) as v:       # the first sync
        assert pickle.loads(v[b"item0"]) == {"i": 0} and b"item1" not in v


def test_shelf_writeback(path):
    with cowdb.dbm.open_shelf(path, writeback=True) as shelf:
        shelf["l"] = []
        shelf["l"].append(1)                       # mutated in the cache
        shelf.sync()
        shelf["l"].append(2)
    with cowdb.dbm.open_shelf(path, "r") as shelf:
        assert shelf["l"] == [1, 2]
    assert len(versions(path)) == 3


def test_open_shelf_flags_and_protocol(path):
    with pytest.raises(cowdb.dbm.error):
        cowdb.dbm.open_shelf(path, "r")
    with cowdb.dbm.open_shelf(path, "n", protocol=2) as shelf:
        shelf["x"] = 1
    with cowdb.dbm.open_shelf(path, "r") as shelf:
        assert shelf["x"] == 1
        assert shelf.dict[b"x"][:2] == b"\x80\x02"   # pickled with protocol 2
        with pytest.raises(cowdb.dbm.error):
            shelf["y"] = 2
