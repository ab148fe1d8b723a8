"""A version-4 file made by cowdb as of commit fc0b6dc still opens, reads and writes.

``tests/data/v4.cowdb`` was made by ``build()`` below, run by that commit's code:

    git archive fc0b6dc | tar -x -C /tmp/old && (cd /tmp/old && python3 setup.py -q \\
        build_ext --inplace) && PYTHONPATH=/tmp/old python3 tests/test_format_v4.py \\
        tests/data/v4.cowdb

Version 5 differs only in that the catalog's nodes may be delta images too (a version-4
writer frees a catalog node by its full size, so it must not write a version-5 file).
A version-4 file's catalog has only full images: it reads as it is, its first write
makes its record version 5, and the folds after it write catalog deltas.
"""
import os
import random
import shutil
import struct
import sys

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v4.cowdb")
PAGE_SIZE = 1024


def steps():
    """(kind, argument) steps, a pure function of nothing: commits with messages long
    enough that the catalog has several levels at 1 KiB pages, tags, a branch, a
    retention rule and a gc, and a pending commit and tag at the end (unfolded)."""
    rng = random.Random(4)
    out = []
    for v in range(60):
        branch = "side" if 20 <= v < 25 else "main"
        puts = {b"k%03d" % rng.randrange(200): rng.randbytes(rng.choice([5, 40, 90]))
                for _ in range(rng.randrange(1, 8))}
        out.append(("commit", (branch, puts)))
        if v == 19:
            out.append(("branch", "side"))
        if v == 30:
            out.append(("tag", "thirty"))
        if v == 45:
            out.append(("retention", 40))
            out.append(("gc", None))
    out.append(("tag", "last"))
    return out


def build(path):
    import cowdb
    db = cowdb.open(path, page_size=PAGE_SIZE)
    do = {"tag": db.tag, "branch": db.branch, "gc": lambda _: db.gc(),
          "retention": lambda n: db.set_retention(keep_last=n)}
    for kind, arg in steps():
        if kind != "commit":
            do[kind](arg)
            continue
        branch, puts = arg
        with db.write(branch=branch, message=f"{branch} commit of {len(puts)} keys, "
                                             f"a message of some length") as tx:
            tx.update(puts)
    db.close()


def model():
    """({version: contents}, heads, tags) of what the steps make."""
    versions, heads, tags, v = {0: {}}, {"main": 0}, {}, 0
    for kind, arg in steps():
        if kind == "commit":
            branch, puts = arg
            v += 1
            versions[v] = {**versions[heads[branch]], **puts}
            heads[branch] = v
        elif kind == "tag":
            tags[arg] = heads["main"]
        elif kind == "branch":
            heads[arg] = heads["main"]
    return versions, heads, tags


def _versions(data: bytes) -> list[int]:
    return [struct.unpack_from("<I", data, off + 8)[0] for off in (0, PAGE_SIZE)]


def _holds_the_model(db, versions, heads, tags) -> None:
    kept = [c.version for c in db.log()]
    assert kept and kept[0] == heads["main"]
    for v in kept:
        with db.at(v) as s:
            assert dict(s.items()) == versions[v], v
    assert db.tags() == tags and db.branches() == heads
    assert db.check().ok


def _catalog_images(db) -> list[int]:
    """The page type of every image the catalog tree reaches (chains included)."""
    from cowdb.tree.walk import walk
    store = db._store
    return [store.read_head(p)[1] for p, _n in walk(db._nodes, store.meta.catalog)]


def test_the_fixture_is_version_4_with_a_full_image_catalog(tmp_path):
    import cowdb
    with open(DATA, "rb") as f:
        assert _versions(f.read(2 * PAGE_SIZE)) == [4, 4]
    path = str(tmp_path / "v4.cowdb")
    shutil.copyfile(DATA, path)  # (an open makes a lock file beside it)
    with cowdb.open(path, readonly=True) as db:
        kinds = _catalog_images(db)
        assert len(kinds) > 3 and set(kinds) == {1, 2}  # leaves and branches, no delta
        assert db._store.meta.pending  # a commit and a tag not folded yet


def test_a_version_4_file_opens_reads_and_its_folds_write_catalog_deltas(tmp_path):
    import cowdb
    from cowdb.pages.checksum import BRANCH_DELTA, LEAF_DELTA
    from cowdb.pages.meta import FORMAT_VERSION
    path = str(tmp_path / "v4.cowdb")
    shutil.copyfile(DATA, path)
    versions, heads, tags = model()
    db = cowdb.open(path)
    _holds_the_model(db, versions, heads, tags)
    for i in range(40):  # enough commits for several folds
        with db.write(message=f"after the upgrade {i}, a message of some length") as tx:
            tx[b"new%02d" % i] = b"x" * i
        versions[db.version] = {**versions[heads["main"]], b"new%02d" % i: b"x" * i}
        heads["main"] = db.version
    assert db.check().ok
    assert {LEAF_DELTA, BRANCH_DELTA} & set(_catalog_images(db))
    db.close()
    with open(path, "rb") as f:
        assert set(_versions(f.read(2 * PAGE_SIZE))) == {FORMAT_VERSION}
    db = cowdb.open(path)
    _holds_the_model(db, versions, heads, tags)
    db.set_retention(keep_last=10)  # gc with relocation over a catalog of delta chains
    db.gc()
    kept = [c.version for c in db.log()]
    assert len(kept) >= 10
    _holds_the_model(db, {v: versions[v] for v in kept}, heads,
                     {t: v for t, v in tags.items() if v in kept})
    db.close()


if __name__ == "__main__":
    if os.path.exists(sys.argv[1]):
        sys.exit(f"{sys.argv[1]} exists")
    build(sys.argv[1])
