"""The mapped read path (issue 19): point gets that search page images in the file's map.

Both searches run here whatever COWDB_PURE_PYTHON says: py_map_get (pure Python) and,
when built, _tree_c.map_get; a snapshot's gets go through the C one.
"""
import os
import random
import subprocess
import sys
from functools import partial

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import cowdb
from cowdb.errors import Corruption
from cowdb.pages.checksum import BRANCH_DELTA, LEAF_DELTA
from cowdb.tree import btree, cursor
from cowdb.tree.mapped import py_map_get

SEARCHES = [py_map_get] + ([btree._tree_c.map_get] if btree._tree_c is not None else [])
PAGE = 1024

keys = st.binary(min_size=1, max_size=40)
values = st.one_of(st.binary(max_size=60), st.binary(min_size=200, max_size=1000))


def value_of(db, v):
    """A search's answer as the value a get returns (an overflow tuple is read)."""
    if v is None or type(v) is bytes:
        return v
    return btree.read_overflow(db._store, btree.Overflow(*v))


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(keys, values, max_size=300), st.lists(keys, max_size=30))
def test_mapped_search_matches_the_model(tmp_path_factory, model, absent):
    path = str(tmp_path_factory.mktemp("m") / "m.cow")
    db = cowdb.open(path, page_size=PAGE)
    try:
        with db.write() as tx:
            for k, v in model.items():
                tx[k] = v
        with db.read() as snap:
            ref = snap._live().ref
            for search in SEARCHES:
                for k in list(model) + absent:
                    got = value_of(db, search(db._store.pagemap, ref.page, ref.checksum,
                                              ref.txn, k)) if ref.page else None
                    assert got == model.get(k)
            for k in list(model) + absent:
                assert snap.get(k) == model.get(k)
    finally:
        db.close()


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.sampled_from([0, 1, 37, 100, 300]), st.integers(1, 400),
       st.integers(0, 2**32 - 1), st.lists(st.binary(min_size=1, max_size=41), max_size=20))
def test_mapped_search_of_nodes_whose_keys_or_values_are_one_length(
        tmp_path_factory, key_len, value_len, n, seed, absent):
    """Keys all of one length and values all of one length (an overflow reference when
    long), or all but the first (a branch's first key is empty): the C search finds an
    entry's offset by arithmetic there, not a prefix sum; nodes with an odd value or a
    first key of another length take the general path or the first-differs one."""
    import random
    rnd = random.Random(seed)
    model = {rnd.randbytes(key_len): rnd.randbytes(value_len) for _ in range(n)}
    odd = {k: v + b"x" for k, v in list(model.items())[:: max(1, n // 3)]}
    odd[b"\x00"] = b"first"  # a first key of another length (sorts before the rest)
    path = str(tmp_path_factory.mktemp("u") / "u.cow")
    db = cowdb.open(path, page_size=PAGE)
    try:
        with db.write() as tx:
            tx.update(model)
        for version_model in (dict(model), {**model, **odd}):
            with db.write() as tx:
                tx.update(version_model)
            with db.read() as snap:
                ref = snap._live().ref
                asked = list(version_model) + absent + [k[:-1] for k in list(model)[:5]]
                for search in SEARCHES:
                    for k in asked:
                        got = value_of(db, search(db._store.pagemap, ref.page, ref.checksum,
                                                  ref.txn, k))
                        assert got == version_model.get(k)
                ordered = sorted(version_model)
                for k in asked[:50]:
                    assert snap.count(None, k) == sum(1 for x in ordered if x < k)
    finally:
        db.close()


def build(path, n=3000):
    db = cowdb.open(path, page_size=PAGE)
    with db.write() as tx:
        for i in range(n):
            tx[b"key%06d" % i] = b"v%d" % i
    db.close()


def damaged_copies(path):
    """Flip one byte in the middle of every third page of ``path`` in turn; yield the
    database opened read-only (None if opening found the damage), then undo."""
    size = os.path.getsize(path)
    for page in range(2, size // PAGE, 3):
        with open(path, "r+b") as f:
            f.seek(page * PAGE + PAGE // 2)
            b = f.read(1)
            f.seek(page * PAGE + PAGE // 2)
            f.write(bytes([b[0] ^ 0x5A]))
        try:
            db = cowdb.open(path, readonly=True)
        except Corruption:
            db = None
        try:
            yield db
        finally:
            if db is not None:
                db.close()
            with open(path, "r+b") as f:  # undo
                f.seek(page * PAGE + PAGE // 2)
                f.write(b)


@pytest.mark.parametrize("read_first", [False, True])
def test_a_file_truncated_under_a_reader_raises(tmp_path, read_first):
    """Another process truncates the file under a live reader, before its first get or
    after it (its pages then verified and read in place): the next get raises ReadFailed
    or Corruption (or, on the pure-Python path's node cache, still answers right),
    never SIGBUS."""
    path = str(tmp_path / "t.cow")
    build(path)
    code = f"""
import os, subprocess, sys, cowdb
from cowdb.errors import Corruption, ReadFailed
db = cowdb.open({path!r}, readonly=True)
snap = db.read()
snap._live()
if {read_first!r}:
    assert snap.get(b"key001234") == b"v1234"
subprocess.run([sys.executable, "-c", "import os; os.truncate({path!r}, 3 * {PAGE})"],
               check=True)
try:
    got = snap.get(b"key001234")
except (Corruption, ReadFailed):
    print("raised")
else:
    print("right" if got == b"v1234" else "WRONG")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in (("raised", "right") if read_first else ("raised",))
    if btree.map_descend is not None:
        assert out.stdout.strip() == "raised"


def run_truncating(path, code):
    """Run ``code`` in a child process after a prelude that opens ``path`` (db, snap,
    ref, pm) and defines truncate(); the child's stdout, or the test fails if it died
    (SIGBUS kills it with no output)."""
    prelude = f"""
import os, subprocess, sys, cowdb
from cowdb.errors import Corruption, ReadFailed
from cowdb.tree import btree
from cowdb.tree.mapped import py_map_get
db = cowdb.open({path!r}, readonly=True)
snap = db.read()
ref = snap._live().ref
pm = db._store.pagemap
def truncate():
    subprocess.run([sys.executable, "-c", "import os; os.truncate({path!r}, 3 * {PAGE})"],
                   check=True)
"""
    out = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.returncode == 0, f"the reader died ({out.returncode}): {out.stderr}"
    return out.stdout.strip()


@pytest.mark.parametrize("search", ["py_map_get", "_tree_c.map_get"])
def test_pages_verified_then_truncated_under_the_map_raise_on_both_searches(tmp_path,
                                                                             search):
    """Both searches read verified pages from the map; after another process truncates
    the file, the next search raises (the pure-Python one checks the file's size before
    touching the map; the C one catches SIGBUS), never kills the process."""
    if search != "py_map_get" and btree._tree_c is None:
        pytest.skip("the C accelerator is not built")
    path = str(tmp_path / "v.cow")
    build(path)
    fn = "py_map_get" if search == "py_map_get" else "btree._tree_c.map_get"
    assert run_truncating(path, f"""
k = b"key001234"
assert {fn}(pm, ref.page, ref.checksum, ref.txn, k) == b"v1234"
assert pm.verified  # the path to the key is verified: the next search reads the map
truncate()
try:
    {fn}(pm, ref.page, ref.checksum, ref.txn, k)
except (Corruption, ReadFailed):
    print("raised")
""") == "raised"


def test_a_page_is_verified_without_touching_the_map(tmp_path):
    """PageMap.image reads a page it has not verified through the store (pread), never
    through the map: even if the file is truncated right after the map was checked to
    cover the page (simulated: covers() answers True), it raises instead of SIGBUS."""
    path = str(tmp_path / "i.cow")
    build(path)
    assert run_truncating(path, """
assert snap.get(b"key000007") == b"v7"   # the file is mapped
truncate()
pm.verified.clear()
type(pm).covers = lambda self, end: True  # as if truncated just after the check
try:
    pm.image(ref.page, ref.checksum, ref.txn)
except (Corruption, ReadFailed):
    print("raised")
""") == "raised"


def test_a_snapshot_taken_before_fork_reads_through_the_map_in_the_child(tmp_path):
    path = str(tmp_path / "f.cow")
    build(path)
    db = cowdb.open(path)
    snap = db.read()
    assert snap[b"key000007"] == b"v7"
    pid = os.fork()
    if pid == 0:
        ok = all(snap[b"key%06d" % i] == b"v%d" % i for i in range(3000))
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    snap.close()
    db.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_commit_after_the_map_is_read_through_a_grown_map(tmp_path):
    path = str(tmp_path / "g.cow")
    build(path, 100)
    db = cowdb.open(path, page_size=PAGE)
    assert db.read()[b"key000001"] == b"v1"
    with db.write() as tx:
        for i in range(100, 5000):
            tx[b"key%06d" % i] = b"w%d" % i
    with db.read() as snap:
        assert snap[b"key004999"] == b"w4999" and snap[b"key000002"] == b"v2"
    db.close()


def test_a_file_that_shrinks_between_fstat_and_map_is_not_covered(tmp_path, monkeypatch):
    # another process's gc may cut the file's tail between covers()'s fstat and its mmap:
    # mmap then refuses a length past the end (ValueError); covers() must look again and
    # answer for the file as it is now, not raise (seen once under load in
    # test_processes.py::test_opening_while_a_writer_reuses_pages)
    from cowdb.pages import mapfile
    path = str(tmp_path / "s.cow")
    build(path, 100)
    db = cowdb.open(path, page_size=PAGE)
    pm = db._store.pagemap
    real = os.fstat(pm.fd).st_size
    true_fstat = os.fstat
    sizes = iter([real + 64 * PAGE])  # the first look sees the file before the cut

    class Stat:
        def __init__(self, size):
            self.st_size = size

    def fstat(fd):
        size = next(sizes, None)
        return true_fstat(fd) if size is None or fd != pm.fd else Stat(size)

    pm.buf = b""
    monkeypatch.setattr(mapfile.os, "fstat", fstat)
    assert pm.covers(real + PAGE) is False   # not in the file any more: read it, and fail
    assert pm.covers(real) is True and len(pm.buf) == real
    monkeypatch.undo()
    assert db.read()[b"key000001"] == b"v1"
    db.close()


@pytest.mark.parametrize("codec", ["bytes", "json"])
def test_snapshot_get_on_a_mapped_file_answers_as_any_reader(tmp_path, codec):
    """Snapshot.get is one C call on a mapped file (btree.MapGetMethod) and hands what
    it does not read in place to the Python reader: each case answers as a dict would."""
    from cowdb.errors import DatabaseClosed, TransactionClosed
    path = str(tmp_path / f"g-{codec}.cow")
    value = (lambda i: b"v%d" % i) if codec == "bytes" else (lambda i: {"i": i})
    big = b"x" * 5000 if codec == "bytes" else {"x": "y" * 5000}  # an overflow value
    db = cowdb.open(path, page_size=PAGE, codec=codec)
    with db.write() as tx:
        for i in range(500):
            tx[b"key%06d" % i] = value(i)
        tx[b"big"] = big
    snap = db.read()
    for i in range(0, 500, 7):
        assert snap.get(b"key%06d" % i) == value(i)
        assert snap[b"key%06d" % i] == value(i)
    assert snap.get(b"big") == big
    assert snap.get(b"nope") is None and snap.get(b"nope", 5) == 5
    assert snap.get(b"nope", default=6) == 6
    assert snap.get("key000007") == value(7)       # a str key: its UTF-8 bytes
    assert snap.get(b"k" * 100_000, 1) == 1          # too long to be stored: absent
    with pytest.raises(cowdb.errors.InvalidType):     # not a key at all
        snap.get(3)
    if btree.MapGetMethod is not None:
        assert snap._mget is not None                # the C path was taken
    snap.close()
    with pytest.raises(TransactionClosed):
        snap.get(b"key000007")
    snap2 = db.read()
    assert snap2.get(b"key000014") == value(14)
    db.close()
    with pytest.raises(DatabaseClosed):
        snap2.get(b"key000014")


WALKS = [None] + ([btree._tree_c.Walk] if btree._tree_c is not None else [])
PARTS = {"items": 0, "keys": 1, "values": 2}


def scan(tree, walk, start=None, stop=None, reverse=False, part="items"):
    """A clean tree's scan: through walk (_tree_c.Walk over the map) or, for None, the
    pure-Python cursor over decoded nodes (cursor.runs)."""
    if walk is None:
        pairs = [(k, v if type(v) is bytes else tree.read_overflow(v))
                 for ks, vs in cursor.runs(tree, start, stop, reverse) for k, v in zip(ks, vs)]
        return pairs if part == "items" else [p[PARTS[part] - 1] for p in pairs]
    if not tree.ref.page:
        return []
    ref = tree.ref
    return list(walk(tree.store.pagemap, ref.page, ref.checksum, ref.txn, start, stop,
                     reverse, PARTS[part], partial(cursor._overflow, tree)))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.dictionaries(keys, st.one_of(st.none(), values), max_size=200),
                min_size=1, max_size=4),
       st.tuples(st.one_of(st.none(), keys), st.one_of(st.none(), keys)), st.booleans(),
       st.sampled_from(sorted(PARTS)))
def test_mapped_scans_match_the_model(tmp_path_factory, commits, bounds, reverse, part):
    """The C walk over the mapped images and the pure-Python cursor over decoded nodes
    scan every version alike, and as a dict would: later commits write delta images
    (format 4) over the first one's, some values are overflow pages; counts too."""
    path = str(tmp_path_factory.mktemp("s") / "s.cow")
    db = cowdb.open(path, page_size=PAGE)
    try:
        model, versions = {}, []
        for edits in commits:
            with db.write() as tx:
                for k, v in edits.items():
                    if v is None:
                        tx.pop(k, None)
                        model.pop(k, None)
                    else:
                        tx[k] = model[k] = v
            versions.append((db.version, dict(model)))
        start, stop = bounds
        for version, want_model in versions:
            want = sorted((k, v) for k, v in want_model.items()
                          if (start is None or k >= start) and (stop is None or k < stop))
            if reverse:
                want.reverse()
            if part != "items":
                want = [p[PARTS[part] - 1] for p in want]
            with db.at(version) as snap:
                tree = snap._live()
                for walk in WALKS:
                    db._nodes.clear()
                    db._store.pagemap.verified.clear()  # verified again on the way
                    assert scan(tree, walk, start, stop, reverse, part) == want, walk
                    assert scan(tree, walk, start, stop, reverse, part) == want, walk
                got = getattr(snap, part)(start=start, stop=stop, reverse=reverse)
                if start is None or stop is None or start < stop:
                    assert list(got) == want
                    if part == "values":  # joined in C (one buffer) or by bytes.join
                        assert snap.join_values(b", ", start, stop) == \
                            b", ".join(want[::-1] if reverse else want)
                    lo = sum(1 for k in want_model if start is not None and k < start)
                    n = sum(1 for k in want_model
                            if (start is None or k >= start) and (stop is None or k < stop))
                    assert snap.count(start, stop) == n
                    assert tree.rank(start) == (len(want_model) if start is None else lo)
    finally:
        db.close()


def get_reads(db, ref, search):
    """(what search answered, what it should have) for keys of build()."""
    for i in range(0, 3000, 37):
        yield lambda i=i: search(db._store.pagemap, ref.page, ref.checksum, ref.txn,
                                 b"key%06d" % i), b"v%d" % i


def walk_reads(db, ref, walk):
    """(a scan of the tree, by walk or the Python cursor, and what it should be)."""
    want = [(b"key%06d" % i, b"v%d" % i) for i in range(3000)]
    tree = db.read()._live()
    yield lambda: scan(tree, walk), want
    yield lambda: scan(tree, walk, b"key001000", b"key001500", True), want[1000:1500][::-1]
    yield lambda: tree.rank(b"key002000"), 2000


@pytest.mark.parametrize("reads, fn", [(get_reads, f) for f in SEARCHES] +
                         [(walk_reads, w) for w in WALKS])
def test_a_damaged_page_is_corruption_never_wrong_data(tmp_path, reads, fn):
    """A byte flipped in a page: every mapped read (point gets, scans, ranks) raises
    Corruption or answers right, never wrong data."""
    path = str(tmp_path / "d.cow")
    build(path)
    for db in damaged_copies(path):
        if db is None:
            continue
        try:
            for read, want in reads(db, db.read()._live().ref, fn):
                try:
                    got = read()
                except Corruption:
                    continue
                assert got == want, "wrong data after damage"
        except Corruption:
            pass


def test_scans_and_counts_build_no_node(tmp_path):
    """A snapshot's scans, counts and membership tests on a mapped file build no node
    (the root aside, which opening the tree loads): a forked reader copies nothing."""
    path = str(tmp_path / "k.cow")
    build(path)
    db = cowdb.open(path)
    try:
        with db.read() as snap:
            snap._live()
            db._nodes.clear()
            assert sum(1 for _ in snap.items()) == 3000
            got = list(snap.items(b"key000100", b"key000200"))
            assert got == [(b"key%06d" % i, b"v%d" % i) for i in range(100, 200)]
            assert list(snap.keys(b"key000150", b"key000153", reverse=True)) == \
                [b"key000152", b"key000151", b"key000150"]
            assert list(snap.values(b"key000150", b"key000152")) == [b"v150", b"v151"]
            assert snap.count(b"key000100", b"key000200") == 100
            assert b"key000007" in snap and b"key0000070" not in snap
            if btree.MapWalk is not None:
                assert len(db._nodes) == 0
    finally:
        db.close()


def test_a_walk_stops_after_an_error_and_after_its_end(tmp_path):
    """A walk that raised, or ran out, hands out nothing more; a closed database's walk
    raises DatabaseClosed; a Walk is type-checked."""
    if btree.MapWalk is None:
        pytest.skip("the C accelerator is not built")
    from cowdb.errors import DatabaseClosed
    path = str(tmp_path / "e.cow")
    build(path)
    db = cowdb.open(path)
    snap = db.read()
    it = iter(snap.keys())
    assert next(it) == b"key000000"
    assert len(list(it)) == 2999 and list(it) == []
    it = iter(snap.items())
    db.close()
    with pytest.raises(DatabaseClosed):
        next(it)
    assert list(it) == []
    with pytest.raises(TypeError):
        btree.MapWalk(None, 1, 2, 3, "a", None, False, 0, None)
    with pytest.raises(TypeError):
        btree.MapWalk(None, 1, 2, 3, None, None, False, 7, None)
    db = cowdb.open(path)
    with db.read() as snap:
        it = snap.values(b"key000100", b"key000200")
        assert next(it) == b"v100"
        assert it.join(b"") == b"".join(b"v%d" % i for i in range(101, 200))
        assert it.join(b"") == b"" and list(it) == []
        with pytest.raises(TypeError):
            snap.keys(b"key000100", b"key000200").join(b"")
    db.close()


def test_join_values_raises_on_a_codec_and_a_bad_separator(tmp_path):
    db = cowdb.open(str(tmp_path / "j.cow"), codec="json")
    with db.write() as tx:
        tx[b"a"] = [1]
    with db.read() as snap, pytest.raises(cowdb.errors.InvalidType):
        snap.join_values(b",")
    db.close()
    db = cowdb.open(str(tmp_path / "k.cow"))
    with db.write() as tx:
        tx[b"a"], tx[b"b"], tx[b"c"] = b"1", b"2", b"3" * 5000  # an overflow value
    with db.read() as snap:
        assert snap.join_values(b",") == b"1,2," + b"3" * 5000
        assert snap.join_values(b",", b"b", b"a") == b""
        assert snap.join_values(b"-", prefix=b"a") == b"1"
        with pytest.raises(cowdb.errors.InvalidType):
            snap.join_values(",")
    with db.write() as tx:  # a transaction's (written) tree: the Python join
        tx[b"d"] = b"4"
        assert tx.join_values(b",", b"b", b"e") == b"2," + b"3" * 5000 + b",4"
    db.close()


@pytest.mark.parametrize("verify_first", [False, True])
def test_a_file_truncated_under_a_scan_raises(tmp_path, verify_first):
    """Another process truncates the file while a scan runs (its pages verified by an
    earlier scan, or not): the scan raises Corruption or ReadFailed, never SIGBUS."""
    path = str(tmp_path / "w.cow")
    build(path, 20000)
    assert run_truncating(path, f"""
if {verify_first!r}:
    assert sum(1 for _ in snap.items()) == 20000
it = iter(snap.items())
assert next(it) == (b"key000000", b"v0")
truncate()
try:
    n = sum(1 for _ in it)
    print("read", n)
except (Corruption, ReadFailed):
    print("raised")
""") in ("raised", "read 19999" if btree.MapWalk is None else "raised")


def test_a_root_holding_delta_images_reads_them_and_refuses_after_close(tmp_path):
    """A snapshot's Root keeps the full images of the deltas it read (no dict lookup per
    level on the next get): they read right version after version, and a closed database
    still refuses the read though the Root holds them."""
    from cowdb.errors import DatabaseClosed
    path = str(tmp_path / "r.cow")
    db = cowdb.open(path, page_size=PAGE)
    with db.write() as tx:
        for i in range(500):
            tx[b"key%06d" % i] = b"v0"
    rng = random.Random(3)
    model = {b"key%06d" % i: b"v0" for i in range(500)}
    for v in range(1, 40):
        with db.write() as tx:
            for _ in range(5):
                k = b"key%06d" % rng.randrange(500)
                tx[k] = model[k] = b"v%d" % v
    db.close()
    db = cowdb.open(path)
    snap = db.read()
    assert db._store.read(snap._commit.root.page)[8] in (LEAF_DELTA, BRANCH_DELTA)
    for _ in range(2):   # the second pass reads what the Root holds
        for k, val in model.items():
            assert snap.get(k) == val
    db.close()
    for k in list(model)[:20]:
        with pytest.raises(DatabaseClosed):
            snap.get(k)
