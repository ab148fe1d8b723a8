"""A version-2 file made by cowdb as of commit 36e4be6 still opens, reads and writes.

``tests/data/v2.cowdb`` was made by ``build()`` below, run by that commit's code:

    git archive 36e4be6 | tar -x -C /tmp/old && (cd /tmp/old && python3 setup.py -q \\
        build_ext --inplace) && PYTHONPATH=/tmp/old python3 tests/test_format_v2.py \\
        tests/data/v2.cowdb

``model()`` replays the same steps in memory, so the test knows what every
version must hold. Formats 3 and 4 (issue 14) read it as it is; the
first write upgrades its meta record to the current version with whole-page units (the
file's references stay page numbers, and it gets no delta images: one would take
a whole page); ``compact()`` copies it into a packed file (64-byte units).
"""
import os
import random
import shutil
import struct
import sys

from cowdb.pages.meta import FORMAT_VERSION

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v2.cowdb")
PAGE_SIZE = 1024


def steps():
    """(kind, argument) steps, a pure function of nothing: commits of puts/deletes on a
    branch, tags, branches, a merge, a retention rule and a gc."""
    rng = random.Random(2)
    out = []
    for v in range(12):
        puts = {b"k%03d" % rng.randrange(150): rng.randbytes(rng.choice([5, 60, 200]))
                for _ in range(rng.randrange(5, 40))}
        if v == 3:
            puts[b"big"] = rng.randbytes(3000)          # an overflow value
        dels = [b"k%03d" % rng.randrange(150) for _ in range(v % 4)]
        if v == 9:
            dels.append(b"big")
        out.append(("commit", ("main", puts, dels)))
        if v == 4:
            out.append(("tag", "four"))
            out.append(("branch", "side"))
            out.append(("commit", ("side", {b"side%02d" % i: b"s" * i for i in range(30)},
                                   [])))
        if v == 7:
            out.append(("merge", "side"))
    out.append(("retention", 6))
    out.append(("gc", None))
    out.append(("tag", "last"))    # rides in the meta record (pending), unsettled
    return out


def build(path):
    import cowdb
    db = cowdb.open(path, page_size=PAGE_SIZE)
    for kind, arg in steps():
        if kind == "commit":
            branch, puts, dels = arg
            with db.write(branch=branch, message=f"{branch} {len(puts)}") as tx:
                for k in dels:
                    tx.pop(k, None)
                for k, v in puts.items():
                    tx[k] = v
        elif kind == "tag":
            db.tag(arg)
        elif kind == "branch":
            db.branch(arg)
        elif kind == "merge":
            db.merge(arg)
        elif kind == "retention":
            db.set_retention(keep_last=arg)
        elif kind == "gc":
            db.gc()
    db.close()


def model():
    """{version: contents} of every version the steps make, and the tags."""
    versions, heads, tags, v = {0: {}}, {"main": 0}, {}, 0
    for kind, arg in steps():
        if kind == "commit":
            branch, puts, dels = arg
            c = dict(versions[heads[branch]])
            for k in dels:
                c.pop(k, None)
            c.update(puts)
            v += 1
            versions[v] = c
            heads[branch] = v
        elif kind == "tag":
            tags[arg] = heads["main"]
        elif kind == "branch":
            heads[arg] = heads["main"]
        elif kind == "merge":   # the two sides touched different keys: a union
            c = dict(versions[heads["main"]])
            c.update({k: x for k, x in versions[heads[arg]].items()
                      if k.startswith(b"side")})
            v += 1
            versions[v] = c
            heads["main"] = v
    return versions, heads, tags


def test_the_fixture_is_version_2():
    with open(DATA, "rb") as f:
        head = f.read(16)
    assert head[:8] == b"COWDB\x00\r\n" and struct.unpack_from("<I", head, 8)[0] == 2


def test_a_version_2_file_opens_reads_and_writes(tmp_path):
    import cowdb
    path = str(tmp_path / "v2.cowdb")
    shutil.copyfile(DATA, path)
    versions, heads, tags = model()
    for round_ in range(2):
        db = cowdb.open(path)
        kept = [c.version for c in db.log()]
        assert kept and kept[0] == heads["main"]
        for v in kept:
            with db.at(v) as s:
                assert dict(s.items()) == versions[v], v
        for name, v in tags.items():
            with db.at(name) as s:
                assert dict(s.items()) == versions[v]
        assert db.tags() == tags and db.branches()["side"] == heads["side"]
        assert db.check().ok
        if round_ == 0:   # a write on the old file; then everything again after reopening
            with db.write() as tx:
                tx[b"new"] = b"after the upgrade"
                tx.pop(b"k000", None)
            v = db.version
            versions[v] = {**versions[heads["main"]], b"new": b"after the upgrade"}
            versions[v].pop(b"k000", None)
            heads["main"] = v
            assert db.check().ok
            # upgraded: a current-version record; the file keeps its whole-page units
            m = db._store.meta
            assert m.encode()[8:12] == FORMAT_VERSION.to_bytes(4, "little") and \
                m.unit == PAGE_SIZE
        db.close()


def test_compact_packs_a_version_2_file(tmp_path):
    """compact() writes a current-version file with packed (64-byte) units and every kept
    version as it was."""
    import cowdb
    path, out = str(tmp_path / "v2.cowdb"), str(tmp_path / "v3.cowdb")
    shutil.copyfile(DATA, path)
    versions, _heads, tags = model()
    with cowdb.open(path, readonly=True) as db:
        kept = [c.version for c in db.log()]
        db.compact(out)
    with cowdb.open(out) as db:
        assert db._store.unit == 64 and db._store.meta.encode()[8:12] == \
            FORMAT_VERSION.to_bytes(4, "little")
        assert [c.version for c in db.log()] == kept and db.tags() == tags
        for v in kept:
            with db.at(v) as s:
                assert dict(s.items()) == versions[v], v
        assert db.check().ok


def _versions(data: bytes) -> list[int]:
    """The format version of each meta slot's record."""
    return [struct.unpack_from("<I", data, off + 8)[0] for off in (0, PAGE_SIZE)]


def _holds_the_model(db) -> None:
    versions, heads, tags = model()
    kept = [c.version for c in db.log()]
    assert kept and kept[0] == heads["main"]
    for v in kept:
        with db.at(v) as s:
            assert dict(s.items()) == versions[v], v
    assert db.tags() == tags and db.branches()["side"] == heads["side"]
    assert db.check().ok


def test_cowdb_upgrade_rewrites_a_version_2_file_in_place(tmp_path):
    """`cowdb upgrade PATH`: both meta records become the current version, every version, tag and
    branch reads as before, the units stay whole pages; run again, it says so and
    writes nothing."""
    from click.testing import CliRunner

    import cowdb
    from cowdb.cli.app import cli
    path = str(tmp_path / "v2.cowdb")
    shutil.copyfile(DATA, path)
    assert sorted(_versions(open(path, "rb").read())) == [2, 2]
    r = CliRunner().invoke(cli, ["upgrade", path])
    assert r.exit_code == 0, r.output
    assert r.output == f"upgraded {path} from format version 2 to {FORMAT_VERSION}\n"
    data = open(path, "rb").read()
    assert _versions(data) == [FORMAT_VERSION, FORMAT_VERSION]
    with cowdb.open(path) as db:
        assert db._store.unit == PAGE_SIZE
        _holds_the_model(db)
    before = open(path, "rb").read()
    r = CliRunner().invoke(cli, ["--db", path, "upgrade"])
    assert r.exit_code == 0
    assert f"already at format version {FORMAT_VERSION}; nothing to do" in r.output
    assert open(path, "rb").read() == before
    r = CliRunner().invoke(cli, ["upgrade", str(tmp_path / "none.cowdb")])
    assert r.exit_code == 1 and "no database at" in r.output


def test_an_upgrade_cut_short_at_any_operation_leaves_a_file_that_opens():
    """Power lost (or a write failed, torn) at each operation of `cowdb upgrade`: the file
    as a reboot finds it opens, holds every version, and upgrading it again completes."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from faults import FaultyIO, PowerLoss, fault_points

    import cowdb
    from cowdb.errors import WriteFailed
    from cowdb.pages.io import MemoryIO
    image = open(DATA, "rb").read()
    dry = FaultyIO(image)
    db = cowdb.open(io=dry, page_size=PAGE_SIZE)
    n0 = len(dry.ops)
    assert db._upgrade() == 2 and db._upgrade() is None
    db.close()
    assert _versions(bytes(dry.durable)) == [FORMAT_VERSION, FORMAT_VERSION]
    struck = 0
    for kind in ("power", "power_torn", "power_lost", "eio", "torn", "fsync"):
        for k in fault_points(dry.ops, kind):
            if k < n0:
                continue  # an operation of the open, not of the upgrade
            io = FaultyIO(image, kind, k, seed=k)
            db = cowdb.open(io=io, page_size=PAGE_SIZE)
            try:
                db._upgrade()
                db.close()
            except (PowerLoss, WriteFailed):
                struck += 1
            if not io.dead:
                db.close()
            after = io.crash_image() if io.dead else bytes(io.durable)
            assert set(_versions(after)) <= {2, FORMAT_VERSION}
            with cowdb.open(io=MemoryIO(after), page_size=PAGE_SIZE) as again:
                _holds_the_model(again)
                again._upgrade()
                assert _versions(bytes(again._io.buf)) == [FORMAT_VERSION, FORMAT_VERSION]
    assert struck >= 10


if __name__ == "__main__":
    if os.path.exists(sys.argv[1]):
        sys.exit(f"{sys.argv[1]} exists")
    build(sys.argv[1])
