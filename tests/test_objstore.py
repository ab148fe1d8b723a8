"""The database on S3 (issue 17): the wire, and writers racing from several processes.

The S3 tests start their own server on 127.0.0.1 (tests/s3server.py): the wire
tests use moto; the races use LocalStack where it starts (it needs Python 3.13,
see tests/s3server.py) and moto otherwise, and say which in a warning of the test
summary. Child processes use the spawn start method: obstore is not fork-safe.
"""
from __future__ import annotations

import multiprocessing
import uuid
import warnings

import pytest

pytest.importorskip("obstore")

import cowdb                                          # noqa: E402
from cowdb.errors import MergeConflict                # noqa: E402
from cowdb.pages.objclient import ObjectExists, client_for_url  # noqa: E402
from cowdb.pages.io import MemoryIO                     # noqa: E402
from s3server import Unavailable, localstack_server, moto, moto_server  # noqa: E402,F401


@pytest.fixture(scope="module")
def race_server():
    """LocalStack if it starts here, else moto (said in the test summary)."""
    try:
        srv = localstack_server()
    except Unavailable as e:
        why = str(e)
        try:
            srv = moto_server()
        except Unavailable as e2:
            pytest.skip(f"no S3 server for the races: LocalStack: {why}; moto: {e2}")
        warnings.warn(f"the writer races ran against moto, not LocalStack ({why})")
    else:
        warnings.warn("the writer races ran against LocalStack")
    yield srv
    srv.stop()


def open_s3(srv, url, **kw):
    return cowdb.open(url, options=srv.options(), **kw)


# ---- the wire -------------------------------------------------------------------
def test_conditional_create_on_the_wire(moto):
    bucket = moto.new_bucket()
    client, _ = client_for_url(moto.url(bucket), moto.options())
    client.put_new("manifest/x", b"1")
    with pytest.raises(ObjectExists):
        client.put_new("manifest/x", b"2")
    assert client.get("manifest/x") == b"1"
    assert client.get_range("manifest/x", 0, 1) == b"1"
    assert client.list_after("manifest/", None) == ["manifest/x"]
    assert client.list_after("manifest/", "manifest/x") == []


def test_the_whole_api_on_s3(moto, tmp_path):
    bucket = moto.new_bucket()
    url = moto.url(bucket)
    with open_s3(moto, url, cache_dir=str(tmp_path / "cache")) as db:
        with db.write("one") as tx:
            tx.update({b"k%03d" % i: b"v%d" % i for i in range(300)})
        counts = dict(db.requests.counts)
        with db.write("two") as tx:
            tx[b"k001"] = b"changed"
            tx[b"big"] = b"x" * 20000
        after = db.requests.counts
        assert after["put"] - counts["put"] == 1 and after["put_new"] - counts["put_new"] == 1
        db.tag("t1")
        db.branch("dev")
        with db.write(branch="dev") as tx:
            tx[b"dev"] = b"1"
        db.merge("dev")
        assert db.read()[b"dev"] == b"1"
        assert [c.key for c in db.diff("t1", "main")] == [b"dev"]
        db.revert(db.head())
        assert b"dev" not in db.read()
        db.set_retention(keep_last=2)
        db.gc()
        assert db.check().ok
        head = db.head()
    with open_s3(moto, url) as db:  # a cold open, an empty cache
        assert db.head() == head and db.tags() == {"t1": 2}
        assert db.read()[b"big"] == b"x" * 20000 and db.read()[b"k001"] == b"changed"
        assert db.check().ok
        report = db.gc_objects(min_age=0)
        assert report["deleted"] >= 0 and db.check().ok
    with open_s3(moto, url, readonly=True) as db:
        assert len(db.read()) == 301


# ---- racing writers ------------------------------------------------------------------
def _writer(url, options, who, n, same_key):
    """A child process: n commits; returns [(base version, value, version or 'conflict')]."""
    db = cowdb.open(url, options=options, refresh_interval=0.05)
    out = []
    try:
        for j in range(n):
            value = b"%d-%d" % (who, j)
            tx = db.write(message=f"w{who}-{j}")
            base = tx._head.version
            key = b"shared" if same_key else b"w" + value
            tx[key] = value
            try:
                out.append((base, value, tx.commit()))
            except MergeConflict:
                out.append((base, value, "conflict"))
    finally:
        db.close()
    return out


def _race(srv, writers, n, same_key):
    bucket = srv.new_bucket()
    url = srv.url(bucket)
    open_s3(srv, url).close()   # created before the race
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(writers) as pool:
        results = pool.starmap(_writer, [(url, srv.options(), w, n, same_key)
                                         for w in range(writers)])
    return url, results


def test_racing_writers_on_one_branch_lose_nothing(race_server):
    url, results = _race(race_server, 4, 50, same_key=False)
    done = [r for rs in results for r in rs]
    assert all(v != "conflict" for _, _, v in done), "writers of different keys conflicted"
    with open_s3(race_server, url) as db:
        log = list(db.log())
        assert len(log) == 201, f"{len(log) - 1} commits of 200 on {race_server.name}"
        assert sorted(c.version for c in log) == list(range(201))
        snap = db.read()
        assert len(snap) == 200 and all(snap[b"w" + val] == val for _, val, _ in done)
        assert sorted(v for _, _, v in done) == list(range(1, 201))  # each version once
        assert db.check().ok


def test_racing_writers_of_one_key_conflict_exactly_when_they_must(race_server):
    url, results = _race(race_server, 4, 12, same_key=True)
    done = [r for rs in results for r in rs]
    with open_s3(race_server, url) as db:
        commits = {c.version: c for c in db.log()}
        won = [(b, val, v) for b, val, v in done if v != "conflict"]
        lost = [(b, val) for b, val, v in done if v == "conflict"]
        assert len(commits) == len(won) + 1
        for base, value, v in won:
            # it committed: nobody changed the key between its base and it
            assert commits[v].parents == (base,), (base, v, commits[v].parents)
            with db.at(v) as snap:
                assert snap[b"shared"] == value
        for base, value in lost:
            # it lost: a commit after its base changed the key
            assert any(v > base for v in commits), base
            assert all(db.at(v)[b"shared"] != value for v in commits if v)
    assert won and lost, (len(won), len(lost))


def test_the_command_line_takes_a_url(tmp_path):
    from click.testing import CliRunner
    from cowdb.cli import cli
    url = f"file://{tmp_path}/store"
    runner = CliRunner()
    for args in (["init"], ["put", "k", "v"], ["tag", "t1"]):
        r = runner.invoke(cli, ["--db", url, *args])
        assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["--db", url, "get", "k"])
    assert r.exit_code == 0 and r.output.strip() == "v"
    with cowdb.open(url) as db:
        assert db.tags() == {"t1": 1}


# ---- without a server: memory:// ---------------------------------------------------
def _mem(name, **kw):
    return cowdb.open(f"memory://{name}-{uuid.uuid4().hex}", **kw)


def test_pages_are_reused_only_after_the_lease():
    """lease=0 reuses freed pages as a file does; the default lease (600 s) reuses none of
    the pages freed by this minute's txns, so the store grows more. (A commit frees no
    page: its record rides in the meta record; a setting rewrites the catalog's path and
    frees the old one.)"""
    growth = {}
    whole_pages = MemoryIO()
    whole_pages.unit = 4096  # an object store allocates whole pages: compare with that
    for lease in (None, 0, 600):
        with (cowdb.open(io=whole_pages) if lease is None else
              _mem("lease", lease=lease)) as db:
            with db.write() as tx:
                tx.update({b"k%04d" % i: b"v" * 50 for i in range(500)})
            before = db._store.page_count
            for i in range(30):
                with db.write() as tx:
                    tx[b"k%04d" % (i * 7)] = b"w%d" % i
                db.set_retention(keep_last=1000 + i)
            growth[lease] = db._store.page_count - before
            assert db.check().ok
    assert growth[0] == growth[None] < growth[600], growth


def test_racing_handles_tag_branch_and_commit():
    url = f"memory://refs-{uuid.uuid4().hex}"
    a, b = cowdb.open(url, refresh_interval=3600), cowdb.open(url, refresh_interval=3600)
    with a.write() as tx:
        tx[b"x"] = b"1"
    b.refresh()
    with a.write() as tx:     # b does not know this one
        tx[b"y"] = b"2"
    b.tag("t")                # loses the race for the txn, re-runs on the new head
    b.branch("dev")
    with a.write() as tx:
        tx[b"z"] = b"3"
    with b.write() as tx:     # rebased onto a's commit
        tx[b"w"] = b"4"
    a.refresh()
    for db in (a, b):
        db.refresh()
        assert db.tags() == {"t": 2} and db.branches() == {"main": 4, "dev": 2}
        assert dict(db.read()) == {b"x": b"1", b"y": b"2", b"z": b"3", b"w": b"4"}
    a.close()
    b.close()


def test_gc_objects_fences_a_writer_paused_before_its_manifest():
    """A writer that put its data object, then paused while another process collected
    unreferenced objects (that one among them), loses its race for the manifest to the
    fence and writes its object again: nothing it commits points to a deleted object."""
    from test_objstore_faults import FaultyClient
    url = f"memory://fence-{uuid.uuid4().hex}"
    inner, _ = client_for_url(url)
    other = cowdb.open(url, lease=0)
    paused = FaultyClient(inner)
    fired = []

    def pause_then(op):
        if op == "put_new" and not fired:
            fired.append(other.gc_objects(min_age=0))   # runs while the writer is paused

    paused.before = pause_then
    from cowdb.objdb import ObjectDatabase
    db = ObjectDatabase(client=paused, lease=0)
    with db.write() as tx:
        tx[b"k"] = b"v"
    assert fired and fired[0]["deleted"] >= 1, fired
    assert fired[0]["epoch"] == 2 and db._io.epoch == 2
    with cowdb.open(url) as fresh:
        assert dict(fresh.read()) == {b"k": b"v"} and fresh.check().ok
        assert [c.version for c in fresh.log()] == [1, 0]
    db.close()
    other.close()


def test_compact_objects_then_gc_objects():
    url = f"memory://compact-{uuid.uuid4().hex}"
    with cowdb.open(url, lease=0) as db:
        with db.write() as tx:
            tx.update({b"k%04d" % i: b"v%d" % i * 10 for i in range(2000)})
        for i in range(40):
            with db.write() as tx:
                tx[b"k%04d" % (i * 37)] = b"changed %d" % i
        want = dict(db.read())
        io = db._io
        used = lambda: len({loc >> 40 for loc in io.index.values()})  # noqa: E731
        before = used()
        report = db.compact_objects()
        assert report["objects"] >= before - 1 and used() <= 2, (report, used())
        assert dict(db.read()) == want and db.check().ok
        gone = db.gc_objects(min_age=0)["deleted"]
        assert gone >= before - 2
    with cowdb.open(url) as fresh:   # a cold open after the small objects were deleted
        assert dict(fresh.read()) == want and fresh.check().ok
        for v in range(1, 42):
            fresh.at(v).close()


def test_compact_an_object_store_database_into_a_file(tmp_path):
    with _mem("tofile") as db:
        with db.write() as tx:
            tx.update({b"k%03d" % i: b"v" for i in range(100)})
        db.tag("t")
        db.compact(str(tmp_path / "copy.cow"))
    with cowdb.open(str(tmp_path / "copy.cow")) as copy:
        assert len(copy.read()) == 100 and copy.tags() == {"t": 1}


# ---- gc and compaction: the grace period, and a bounded bucket -------------------------
def _keys(url):
    client, _ = client_for_url(url)
    return client.list_after("", None)


def test_a_reader_keeps_its_snapshot_across_gc_within_the_grace_period():
    """A reader on "another machine" (its own handle: its own page index, never refreshed)
    holds version 1 while a writer rewrites everything, compacts and collects objects with
    a grace period: the reader reads on. After the grace period the objects are gone."""
    import time
    url = f"memory://grace-{uuid.uuid4().hex}"
    writer = cowdb.open(url, lease=0.5, checkpoint_every=8)
    with writer.write() as tx:
        tx.update({b"k%04d" % i: b"one %d" % i for i in range(1500)})
    reader = cowdb.open(url, lease=0.5, refresh_interval=3600)
    snap = reader.read()
    assert snap.version == 1
    first = {k for k in _keys(url) if k.startswith("data/")}
    for round_ in range(20):
        with writer.write() as tx:
            for i in range(round_, 1500, 20):
                tx[b"k%04d" % i] = b"two %d" % i
    report = writer.gc()                    # compacts, marks; the grace is 0.5 s
    assert report.objects_compacted >= 2 and report.objects_marked >= 2, report
    assert report.objects_deleted == 0
    assert first <= set(_keys(url))         # nothing deleted yet
    assert all(snap[b"k%04d" % i] == b"one %d" % i for i in range(1500))
    time.sleep(0.6)
    report = writer.gc_objects()            # the marks are older than the grace: deleted
    assert report["deleted"] >= 2, report
    left = set(_keys(url))
    assert not first & left, "the first commit's object outlived the grace period"
    assert not any(k.startswith("manifest/") and int(k[9:]) < writer._io.checkpoint[0]
                   for k in left)
    snap.close()
    reader.refresh()
    with reader.read() as now:              # the new layout
        assert now[b"k0000"] == b"two 0" and reader.check().ok
    with cowdb.open(url) as cold:           # a cold open after manifests were deleted
        assert dict(cold.read()) == dict(writer.read()) and cold.check().ok
        assert [c.version for c in cold.log()][-1] == 0
    reader.close()
    writer.close()


def test_the_bucket_stays_bounded_over_many_commits():
    url = f"memory://bounded-{uuid.uuid4().hex}"
    counts = []
    with cowdb.open(url, lease=0, checkpoint_every=16) as db:
        with db.write() as tx:
            tx.update({b"k%04d" % i: b"v" * 40 for i in range(800)})
        for i in range(1, 401):
            with db.write() as tx:
                tx[b"k%04d" % (i * 13 % 800)] = b"w%d" % i
            if i % 25 == 0:
                db.set_retention(keep_last=10)
                db.gc()
                counts.append(len(_keys(url)))
        want = dict(db.read())
        assert db.check().ok
    assert max(counts) <= 45, counts                 # ~16 manifests, a few objects
    assert max(counts[-4:]) <= max(counts[:4]) + 5, counts   # not growing
    with cowdb.open(url) as cold:
        assert dict(cold.read()) == want and cold.check().ok
        assert len(list(cold.log())) == 10


def test_a_writer_paused_while_gc_deleted_its_manifest_number_is_rebased():
    """A writer learns head N, pauses; meanwhile others commit far past the next checkpoint
    and gc deletes manifest N+1. Its create of N+1 then succeeds on the empty number: it
    must notice that the chain went on without it and rebase, not report a commit that no
    reader will ever see."""
    from cowdb.objdb import ObjectDatabase
    from test_objstore_faults import FaultyClient
    url = f"memory://zombie-{uuid.uuid4().hex}"
    inner, _ = client_for_url(url)
    other = cowdb.open(url, lease=0, checkpoint_every=4)
    with other.write() as tx:
        tx[b"base"] = b"0"
    paused = FaultyClient(inner)
    fired = []

    def pause_then(op):
        if op == "put" and not fired:      # its data put: the writer is about to publish
            fired.append(True)
            for i in range(12):
                with other.write() as tx:
                    tx[b"other%d" % i] = b"x"
            other.gc_objects(min_age=0)

    db = ObjectDatabase(client=paused, lease=0, checkpoint_every=4)
    tx = db.write()
    tx[b"mine"] = b"1"
    paused.before = pause_then
    version = tx.commit()
    assert fired
    other.refresh()
    with other.read() as snap:
        assert snap.version == version and snap[b"mine"] == b"1" and snap[b"other11"] == b"x"
    with cowdb.open(url) as cold:
        assert cold.read()[b"mine"] == b"1" and cold.check().ok
    db.close()
    other.close()


def test_compaction_rewrites_a_large_object_most_of_whose_pages_were_reused():
    """An object past the small-object size is rewritten once less than half of it is in
    use: the bucket's bytes follow the pages in use, not every page ever written."""
    url = f"memory://sparse-{uuid.uuid4().hex}"
    with cowdb.open(url, lease=0) as db:
        with db.write() as tx:     # one object of about 2 MiB
            tx.update({b"k%04d" % i: b"%04d" % i * 250 for i in range(1500)})
        io = db._io
        big = io.last_object
        assert io.sizes[io.objects.index(big)] > 1 << 20
        for r in range(6):         # rewrite every value: the pages are reused
            with db.write() as tx:
                for i in range(r, 1500, 6):
                    tx[b"k%04d" % i] = b"new %d" % i
        db.set_retention(keep_last=1)
        db.gc()                    # drops the old versions; compacts; deletes (lease 0)
        db.gc()                    # the pages freed by the first are reused/compacted
        want = dict(db.read())
        assert big not in _keys(url), "the sparse large object is still in the bucket"
        data = [k for k in _keys(url) if k.startswith("data/")]
        stored = sum(len(client_for_url(url)[0].get(k)) for k in data)
        assert stored < 2 * db.stats().file_bytes, (stored, db.stats().file_bytes)
    with cowdb.open(url) as cold:
        assert dict(cold.read()) == want and cold.check().ok
