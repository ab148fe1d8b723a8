"""Recovery: a damaged file gives back its newest intact version, never wrong data.

The damage matrix: a closed database with versions on main (a multi-level
tree, overflow values, deletes), a tag and a branch is copied and damaged:
truncated at several offsets, zeroed in ranges, bytes flipped, pages
swapped, garbage appended, on the newest pages and on old ones. For each:

- a plain open either raises Corruption (naming the file and the recover
  command) or NotACowdbFile, or every version it reads is exactly the model;
- ``open(recover=True)`` keeps exactly the versions whose pages the damage
  missed and opens at the newest of them, when the damage spared the meta
  records and the catalog (else it keeps a subset, every one exact);
- ``salvage`` copies the same versions into a new file, every one exact; with
  ``partial=True`` also each lost branch head's pairs that read, exactly as the model
  has them, every missing key inside a reported lost range.

Which pages a version reaches is computed from the clean file beforehand.
"""
import logging
import os
import random
import shutil

import pytest

import cowdb
from cowdb.errors import Corruption, CowdbError, NotACowdbFile
from cowdb.pages.checksum import HEADER, HEADER_SIZE
from cowdb.pages.io import OsFileIO
from cowdb.pages.store import PageStore
from cowdb.recovery import salvage
from cowdb.tree.btree import NodeCache, Tree
from cowdb.tree.walk import walk

PAGE = 1024


def build(path):
    rng = random.Random(20)
    model, cur = {0: {}}, {}
    with cowdb.open(path, page_size=PAGE) as db:
        for i in range(10):
            with db.write(message=f"c{i}", durability="sync" if i % 3 else "none") as tx:
                if i % 4 == 3:
                    for k in list(cur)[::5]:
                        del tx[k]
                        del cur[k]
                puts = {b"k%04d" % rng.randrange(400): rng.randbytes(rng.choice([8, 60, 300]))
                        for _ in range(60)}
                if i % 3 == 1:
                    puts[b"big%d" % i] = rng.randbytes(3000)
                tx.update(puts)
                cur.update(puts)
            model[tx.version] = dict(cur)
        db.tag("t4", 4)
        db.branch("side", 6)
    return model


def ranges(path):
    """{version: [(offset, length)] of the images its tree reaches}, the catalog's, and
    the newest free list image's (offset, length)."""
    io = OsFileIO(path, readonly=True)
    try:
        store = PageStore(io, page_size=PAGE, readonly=True)
        slot, meta = store.candidates()[0]
        store.adopt(slot, meta)
        nodes = NodeCache(store)

        def spans(ref):
            out = []
            for page, n in walk(nodes, ref, 0):
                out.append((page * store.unit, store.read_head(page)[4]))
            return out
        from cowdb.history.catalog import Catalog, decode_pending
        from cowdb.tree.btree import Tree
        cat = Catalog(Tree(nodes, meta.catalog), decode_pending(meta.pending))
        per = {c.version: spans(c.root) for c in cat.commits()}
        return per, spans(meta.catalog), (meta.freelist.page * store.unit, meta.freelist_len)
    finally:
        io.close()


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    path = str(d / "clean.cow")
    model = build(path)
    per, catalog, freelist = ranges(path)
    return path, model, per, catalog, freelist


def hits(spans, bad):
    return any(a < o + n and o < b for o, n in spans for a, b in bad)


def damaged_copy(clean_path, tmp_path, how):
    """Copy the clean file and damage it; returns (path, [(start, end)] damaged)."""
    p = str(tmp_path / "d.cow")
    for f in (p, p + "-lock"):
        if os.path.exists(f):
            os.unlink(f)
    shutil.copy(clean_path, p)
    size = os.path.getsize(p)
    kind, arg = how
    rng = random.Random(hash(how) & 0xffff)
    with open(p, "r+b") as f:
        if kind == "cut":  # from the end of the data: the zeros padding the last image
            end = len(f.read().rstrip(b"\0"))  # and the reserve past it hold nothing
            at = end - arg if arg > 0 else -arg
            f.truncate(at)
            return p, [(at, size)]
        if kind == "zero":
            start, n = arg
            start = start if start >= 0 else size + start
            f.seek(start)
            f.write(bytes(n))
            return p, [(start, start + n)]
        if kind == "flip":
            out = []
            for _ in range(3):
                at = rng.randrange(arg[0] if arg[0] >= 0 else size + arg[0], size)
                f.seek(at)
                b = f.read(1)
                f.seek(at)
                f.write(bytes([b[0] ^ (1 << rng.randrange(8))]))
                out.append((at, at + 1))
            return p, out
        if kind == "swap":
            a, b = arg
            a, b = (a if a >= 0 else size // PAGE + a), (b if b >= 0 else size // PAGE + b)
            f.seek(a * PAGE)
            pa = f.read(PAGE)
            f.seek(b * PAGE)
            pb = f.read(PAGE)
            f.seek(a * PAGE)
            f.write(pb)
            f.seek(b * PAGE)
            f.write(pa)
            return p, ([] if pa == pb else [(a * PAGE, a * PAGE + PAGE), (b * PAGE, b * PAGE + PAGE)])
        if kind == "append":
            f.seek(size)
            f.write(rng.randbytes(arg))
            return p, []
    raise AssertionError(how)


CASES = [("cut", 1), ("cut", PAGE), ("cut", 3 * PAGE), ("cut", -40 * PAGE), ("cut", -90 * PAGE),
         ("zero", (0, 8192)), ("zero", (0, PAGE)), ("zero", (PAGE, PAGE)),
         ("zero", (-PAGE, PAGE)), ("zero", (-5 * PAGE, 2 * PAGE)), ("zero", (20 * PAGE, PAGE)),
         ("zero", (60 * PAGE, 3 * PAGE)), ("zero", (100 * PAGE + 100, 50)),
         ("flip", (-4 * PAGE,)), ("flip", (-20 * PAGE,)), ("flip", (2 * PAGE,)),
         ("flip", (50 * PAGE,)), ("swap", (10, 30)), ("swap", (-1, -3)), ("swap", (40, -2)),
         ("append", 10), ("append", 3 * PAGE)]


def read_all(db, v):
    with db.at(v) as s:
        return dict(s.items())


@pytest.mark.parametrize("how", CASES, ids=[f"{k}-{a}" for k, a in CASES])
def test_damage_matrix(clean, tmp_path, how):
    path, model, per, catalog, _ = clean
    p, bad = damaged_copy(path, tmp_path, how)
    untouched = {v for v in model if not hits(per.get(v, []), bad)}
    strict = not hits(catalog + [(0, 2 * PAGE)], bad)

    # a plain open: exact data or Corruption, never wrong data
    try:
        db = cowdb.open(p, readonly=True)
    except Corruption as e:
        assert p in str(e) and "cowdb recover" in str(e)
    except NotACowdbFile:
        pass
    else:
        with db:
            for v in model:
                try:
                    got = read_all(db, v)
                except (Corruption, cowdb.errors.VersionNotFound):
                    continue
                assert got == model[v], v

    # salvage
    out = str(tmp_path / "salvaged.cow")
    try:
        rep = salvage(p, out)
    except Corruption:
        assert not strict
    else:
        assert set(rep.kept) <= untouched
        if strict:
            assert set(rep.kept) == untouched
        with cowdb.open(out, readonly=True) as db:
            for v in rep.kept:
                assert read_all(db, v) == model[v]
            assert db.check().ok

    # a partial salvage: the same versions whole, and of each lost head exactly the pairs
    # outside the lost ranges, each as the model has it
    out = str(tmp_path / "partial.cow")
    try:
        rep = salvage(p, out, partial=True)
    except Corruption:
        assert not strict
    else:
        assert set(rep.kept) <= untouched
        with cowdb.open(out, readonly=True) as db:
            for v in rep.kept:
                assert read_all(db, v) == model[v]
            for pc in rep.partial:
                got = read_all(db, pc.version)
                assert len(got) == pc.keys
                want = model[pc.source]
                for k, v in got.items():
                    assert want[k] == v and not any(
                        (a is None or a <= k) and (b is None or k < b) for a, b in pc.lost)
                assert all(any((a is None or a <= k) and (b is None or k < b)
                               for a, b in pc.lost) for k in set(want) - set(got))
            assert db.check().ok

    # recover in place
    try:
        db = cowdb.open(p, recover=True)
    except Corruption:
        assert not strict
        return
    with db:
        rep = db.recovery
        kept = set(rep.kept) if rep.rewritten else set(model)
        assert kept <= untouched | (set() if rep.rewritten else set(model))
        if strict:
            assert kept == untouched
            assert db.head() == max(untouched)
        for v in kept:
            assert read_all(db, v) == model[v], v
        assert db.check().ok, db.check().errors
    with cowdb.open(p) as db:  # a plain open works now, and writes work
        with db.write() as tx:
            tx[b"after"] = b"recovery"
        assert db.check().ok


def test_plain_open_names_file_and_command(clean, tmp_path):
    path, _model, _per, catalog, _ = clean
    p, _ = damaged_copy(path, tmp_path, ("zero", (catalog[0][0], 64)))  # the catalog root
    with pytest.raises(Corruption) as e:
        cowdb.open(p)
    assert p in str(e.value) and f"cowdb recover {p}" in str(e.value)
    assert not os.path.exists(p + "-lock")  # a failed open leaves no lock file


def test_readonly_open_never_loads_the_free_list(clean, tmp_path):
    """Damage the free list's newest image and a read-only open still reads every
    version."""
    path, model, *_, freelist = clean
    p, bad = damaged_copy(path, tmp_path, ("zero", freelist))
    with cowdb.open(p, readonly=True) as db:
        for v in model:
            assert read_all(db, v) == model[v]


def test_fallback_to_older_meta_is_logged(clean, tmp_path, caplog):
    path, model, *_ = clean
    p, _ = damaged_copy(path, tmp_path, ("zero", (0, PAGE)))
    with caplog.at_level(logging.WARNING, logger="cowdb"):
        cowdb.open(p, readonly=True).close()
    assert any("meta slot 0" in r.getMessage() for r in caplog.records)


def test_check_reads_from_disk_not_the_cache(tmp_path):
    p = str(tmp_path / "c.cow")
    with cowdb.open(p, page_size=PAGE) as db:
        with db.write() as tx:
            tx.update({b"k%03d" % i: b"v" * 50 for i in range(100)})
        with db.read() as s:
            assert len(dict(s.items())) == 100   # everything is in the cache now
        report = db.check()
        assert report.ok
        page = report.pages_used[-1][0]
        at = page * db._store.unit + 40
        with open(p, "r+b") as f:                # damage a data page under the handle
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 1]))
        assert not db.check().ok


def test_recover_of_a_clean_file_changes_nothing(clean, tmp_path):
    path, model, *_ = clean
    p, _ = damaged_copy(path, tmp_path, ("append", 0))
    before = open(p, "rb").read()
    with cowdb.open(p, recover=True) as db:
        assert db.recovery.ok and not db.recovery.rewritten
        assert db.head() == max(model)
    assert open(p, "rb").read() == before


def test_recover_reports_lost_versions_and_refs(clean, tmp_path):
    path, model, per, catalog, _ = clean
    # damage a page only version 4 (tagged) reaches, if there is one
    only4 = [o for o, n in per[4] if not any(hits([(o, n)], [(a, a + m)]) for v in per if v != 4
                                              for a, m in per[v])]
    if not only4:
        pytest.skip("no page unique to version 4")
    p = str(tmp_path / "r.cow")
    shutil.copy(path, p)
    with open(p, "r+b") as f:
        f.seek(only4[0] + 30)
        f.write(b"\xff\xff")
    with cowdb.open(p, recover=True) as db:
        rep = db.recovery
        assert 4 in rep.lost and "tag t4" in rep.refs_lost
        assert db.head() == max(model)
        assert "t4" not in db.tags()
        assert any("lost version 4" in line for line in rep.lines())


def test_recover_refuses_readonly(tmp_path):
    with pytest.raises(ValueError):
        cowdb.open(str(tmp_path / "x.cow"), readonly=True, recover=True)


# ---- the command line and backups ---------------------------------------------------
def _cli(*args, ok=True):
    from click.testing import CliRunner
    from cowdb.cli.app import cli
    r = CliRunner().invoke(cli, list(args))
    assert (r.exit_code == 0) == ok, r.output
    return r.output


def test_cli_recover_and_salvage(clean, tmp_path):
    path, model, *_, freelist = clean
    p, _ = damaged_copy(path, tmp_path, ("zero", freelist))  # no version reaches it
    out = _cli("salvage", p, str(tmp_path / "s.cow"))
    assert f"salvaged {len(model)} versions" in out
    out = _cli("--db", p, "recover")
    assert "recovered: head of main is version" in out
    out = _cli("recover", p)
    assert "nothing to recover" in out
    _cli("--db", p, "check")


def test_cli_check_and_recover_report_damage_once_without_pointing_at_themselves(
        tmp_path):
    """`cowdb check` and `cowdb recover` say what is damaged; the advice a failed read
    carries elsewhere ("run `cowdb check`") is not theirs to repeat, and recover prints
    its report once (the library's log line says the same: not shown again)."""
    import subprocess
    import sys
    p = str(tmp_path / "a.cow")
    with cowdb.open(p) as db:
        for i in range(3):
            with db.write() as tx:
                tx[b"k%d" % i] = b"v"
        pages = [pg for pg, _ in walk(db._nodes, db.commit_info(db.head()).root)]
        unit = db._store.unit
    with open(p, "r+b") as f:
        f.seek(pages[0] * unit + 30)
        f.write(b"\xff" * 4)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "cowdb", "--db", p, *args],
                              capture_output=True, text=True)
    r = cli("check")
    assert r.returncode == 1 and "failed its checksum" in r.stdout + r.stderr
    assert "cowdb check" not in r.stdout + r.stderr
    r = cli("recover")
    both = r.stdout + r.stderr
    assert r.returncode == 0 and "lost version 3: page" in both, both
    assert "cowdb check" not in both and both.count("recovered: head of main") == 1, both


def test_backup_while_writing(tmp_path):
    """A backup taken while another thread commits opens, checks and holds exactly the
    versions it says it copied."""
    import threading
    p = str(tmp_path / "live.cow")
    model = {}
    with cowdb.open(p, page_size=PAGE, durability="none") as db:
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                with db.write() as tx:
                    tx[b"k%03d" % (i % 50)] = b"%d" % i
                    tx[b"n"] = b"%d" % i
                model[tx.version] = i
                i += 1
        t = threading.Thread(target=writer)
        t.start()
        try:
            while len(model) < 5:
                pass
            v = db.backup(str(tmp_path / "copy.cow"))
        finally:
            stop.set()
            t.join()
    with cowdb.open(str(tmp_path / "copy.cow"), readonly=True) as b:
        assert b.version == v and b.check().ok
        assert b.read()[b"n"] == b"%d" % model[v]
    with pytest.raises(cowdb.errors.RefExists):
        with cowdb.open(p) as db:
            db.backup(str(tmp_path / "copy.cow"))
    out = _cli("backup", p, str(tmp_path / "copy2.cow"))
    assert "backed up" in out


def test_docs_warn_against_cp():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(here, "README.md")).read() + open(
        os.path.join(here, "docs", "reliability.md")).read()
    assert "cowdb backup" in text and "cp" in text


def test_recover_scan_reads_commit_records_in_catalog_deltas(tmp_path):
    """Both meta records lost: recovery scans the file for catalog leaves. A fold appends
    the new commit records to a catalog leaf as a delta image: the scan reads such a leaf
    through its chain, so the commits folded last (in no full image) are found too."""
    from cowdb.pages.checksum import LEAF_DELTA
    path = str(tmp_path / "d.cow")
    model = {0: {}}
    with cowdb.open(path, page_size=4096) as db:
        for i in range(23):
            with db.write(message=f"commit {i} with a message of some length") as tx:
                tx[b"k%02d" % (i % 7)] = b"v%d" % i
            model[tx.version] = read_all(db, tx.version)
            if i in (19, 22):
                db.set_retention(keep_last=100 + i)  # a setting: the pending commits fold
        kinds = [db._store.read_head(p)[1] for p, _ in walk(db._nodes, db._store.meta.catalog)]
        assert LEAF_DELTA in kinds and not db._store.meta.pending
    with open(path, "r+b") as f:
        f.write(bytes(2 * 4096))  # both meta slots
    with cowdb.open(path, recover=True) as db:
        assert set(db.recovery.kept) == set(model)
        for v in model:
            assert read_all(db, v) == model[v]
        assert db.check().ok


# ---- partial salvage: what still reads of heads that do not verify --------------------
def leaf_offset(db, key):
    """The byte offset of the leaf that holds ``key`` at the head of main."""
    from cowdb.tree.node import Branch
    tree = Tree(db._nodes, db.commit_info(db.head()).root)
    node, page = tree.root(), None
    while type(node) is Branch:
        i = max(0, sum(1 for k in node.keys[1:] if k <= key))
        page = node.kids[i]
        node = tree.kid(node, i)
    return page * db._store.unit


def build_shared(path, versions=4):
    """A few versions that all share most leaves: only k0000 changes after the load; the
    empty version 0 dropped by retention, as in a database that has lived a while."""
    model = {}
    with cowdb.open(path, page_size=PAGE) as db:
        cur = {b"k%04d" % i: b"v%d" % i * 20 for i in range(600)}
        cur[b"k0300"] = os.urandom(5000)        # an overflow value, in the damaged leaf's range
        with db.write() as tx:
            tx.update(cur)
        model[tx.version] = dict(cur)
        for n in range(versions - 1):
            with db.write() as tx:
                tx[b"k0000"] = b"n%d" % n
            cur[b"k0000"] = b"n%d" % n
            model[tx.version] = dict(cur)
        db.set_retention(keep_last=versions)
        db.gc()
        at = leaf_offset(db, b"k0299")
    return model, at


def damage(path, at):
    with open(path, "r+b") as f:
        f.seek(at + 40)
        b = f.read(2)
        f.seek(at + 40)
        f.write(bytes(x ^ 0xff for x in b))


def assert_partial(got, want, lost):
    """``got`` holds exactly what ``want`` holds outside the lost ranges, and every key
    ``want`` has that ``got`` lacks lies in one of them."""
    def inside(k):
        return any((a is None or a <= k) and (b is None or k < b) for a, b in lost)
    for k, v in got.items():
        assert want[k] == v and not inside(k), k
    missing = set(want) - set(got)
    assert missing and all(inside(k) for k in missing)


def test_no_intact_version_recover_points_to_partial_salvage(tmp_path):
    p = str(tmp_path / "s.cow")
    _model, at = build_shared(p)
    damage(p, at)
    with pytest.raises(Corruption) as e:
        cowdb.open(p, recover=True)
    msg = str(e.value)
    assert "salvage --partial" in msg and "cowdb recover" not in msg and p in msg
    with pytest.raises(Corruption) as e:
        salvage(p, str(tmp_path / "whole.cow"))
    assert "--partial" in str(e.value)
    assert not os.path.exists(str(tmp_path / "whole.cow"))


def test_partial_salvage_copies_every_pair_that_reads(tmp_path):
    p, out = str(tmp_path / "s.cow"), str(tmp_path / "out.cow")
    model, at = build_shared(p)
    damage(p, at)
    rep = salvage(p, out, partial=True)
    assert rep.kept == [] and set(rep.lost) == set(model)
    (pc,) = rep.partial
    assert pc.branch == "main" and pc.source == max(model)
    with cowdb.open(out) as db:
        assert db.head() == pc.version
        got = read_all(db, pc.version)
        assert len(got) == pc.keys
        assert_partial(got, model[max(model)], pc.lost)
        assert db.check().ok
        info = db.commit_info(pc.version)
        assert f"version {pc.source}" in info.message and info.author == "cowdb salvage"
    assert any(line.startswith("partly salvaged branch main") for line in rep.lines())
    assert any("k0" in line and "lost keys" in line for line in rep.lines())


def test_partial_salvage_on_top_of_the_intact_ancestor(tmp_path):
    """Damage only what the newest version wrote: the older versions are copied whole,
    and main gets one more version: the newest's pairs that read."""
    p, out = str(tmp_path / "s.cow"), str(tmp_path / "out.cow")
    model, _ = build_shared(p, versions=3)
    with cowdb.open(p, page_size=PAGE) as db:
        with db.write() as tx:
            tx.update({b"k%04d" % i: b"new" for i in range(100, 140)})
        model[tx.version] = {**model[max(model)],
                             **{b"k%04d" % i: b"new" for i in range(100, 140)}}
        db.branch("side", tx.version)
        at = leaf_offset(db, b"k0120")
    damage(p, at)
    rep = salvage(p, out, partial=True)
    newest = max(model)
    assert rep.kept == sorted(v for v in model if v != newest)
    assert {pc.branch for pc in rep.partial} == {"main", "side"}
    with cowdb.open(out) as db:
        for v in rep.kept:
            assert read_all(db, v) == model[v]
        for pc in rep.partial:
            assert pc.source == newest
            head = db.head(pc.branch)
            assert head == pc.version
            assert_partial(read_all(db, head), model[newest], pc.lost)
        main = db.commit_info(db.head())
        assert main.parents == (max(rep.kept),)
        assert db.check().ok


def test_cli_partial_salvage(tmp_path):
    p, out = str(tmp_path / "s.cow"), str(tmp_path / "out.cow")
    _model, at = build_shared(p)
    damage(p, at)
    r = _cli("salvage", p, out, ok=False)
    assert "--partial" in r
    r = _cli("salvage", "--partial", p, out)
    assert "partly salvaged branch main" in r and f"into {out}" in r


def test_partial_salvage_writes_no_empty_head_when_the_root_is_lost(clean, tmp_path):
    """Cut the newest images (the newest root among them): nothing of the head reads, so
    main stays at its intact ancestor instead of gaining an empty version."""
    path, model, *_ = clean
    p, _ = damaged_copy(path, tmp_path, ("cut", 1))
    out = str(tmp_path / "o.cow")
    rep = salvage(p, out, partial=True)
    assert rep.partial == [] and any("nothing of version" in d for d in rep.damage)
    with cowdb.open(out) as db:
        assert db.head() == rep.head == max(rep.kept)
        assert read_all(db, db.head()) == model[db.head()]


# ---- a damaged catalog: what recovery can no longer name ------------------------------
def _catalog_leaves(db):
    """[(page, first key, last key)] of the catalog's leaves, in key order."""
    from cowdb.tree.node import Branch
    out = []

    def visit(page, checksum, txn):
        node = db._nodes.load(page, checksum, txn)
        if type(node) is Branch:
            for kid, s, t in zip(node.kids, node.sums, node.txns):
                visit(kid, s, t)
        else:
            out.append((page, node.keys[0], node.keys[-1]))

    ref = db._store.meta.catalog
    visit(ref.page, ref.checksum, ref.txn)
    return out


def test_recover_names_versions_whose_records_were_on_a_damaged_catalog_page(tmp_path):
    """The commit records of versions 0.. lie on the catalog's first leaf, which every
    meta record reaches (the catalog changes at a fold, not at every commit). Damaged,
    those versions cannot be kept: the report must say so, not "0 lost"."""
    path = str(tmp_path / "c.cow")
    with cowdb.open(path, page_size=4096) as db:
        for i in range(150):
            with db.write(message=f"commit {i}") as tx:
                tx[b"k%03d" % i] = b"v"
        db.set_retention(keep_last=1000)  # a setting: the pending commits fold
        before = {c.version for c in db.log()}
        leaves = _catalog_leaves(db)
        assert len(leaves) > 1 and leaves[0][1][:1] == b"c"
        unit = db._store.unit
    with open(path, "r+b") as f:
        f.seek(leaves[0][0] * unit + 30)
        f.write(b"\xff" * 8)
    with cowdb.open(path, recover=True) as db:
        rep = db.recovery
        gone = before - set(rep.kept) - set(rep.lost)
        assert gone, "the damaged leaf held commit records"
        assert set(rep.unrecorded) == gone
        assert not rep.ok
        head = rep.lines()[0]
        assert f"{len(gone)} without a readable record" in head
        assert any(line.startswith("no record of versions ") for line in rep.lines())
        assert db.check().ok


def test_recover_names_no_unrecorded_versions_when_the_catalog_reads(clean, tmp_path):
    """Versions retention dropped leave gaps too; only a damaged catalog makes a gap
    something recovery reports."""
    path, model, per, catalog, _ = clean
    p = str(tmp_path / "g.cow")
    shutil.copy(path, p)
    with cowdb.open(p) as db:
        db.set_retention(keep_last=3)
        db.gc()
    with cowdb.open(p, recover=True) as db:
        assert db.recovery.unrecorded == []


def test_recover_recreates_a_branch_whose_record_was_on_a_damaged_catalog_page(tmp_path):
    """A branch's record lost with its catalog leaf: its kept commits still name it, so
    recovery puts it back at the newest of them, and says so."""
    path = str(tmp_path / "b.cow")
    with cowdb.open(path, page_size=4096) as db:
        with db.write() as tx:
            tx[b"a"] = b"1"
        db.branch("feature")
        for i in range(3):
            with db.write(branch="feature") as tx:
                tx[b"f%d" % i] = b"v"
        feature = db.branches()["feature"]
        for i in range(150):
            with db.write(message=f"commit {i}") as tx:
                tx[b"k%03d" % i] = b"v"
        db.set_retention(keep_last=1000)  # a setting: the pending commits fold
        leaf = [page for page, first, last in _catalog_leaves(db)
                if first <= b"hfeature" <= last]
        assert len(leaf) == 1
        unit = db._store.unit
    with open(path, "r+b") as f:
        f.seek(leaf[0] * unit + 30)
        f.write(b"\xff" * 8)
    with cowdb.open(path, recover=True) as db:
        assert db.branches()["feature"] == feature
        assert db.recovery.refs_moved["branch feature"] == (None, feature)
        assert f"recreated branch feature at version {feature}" in "\n".join(
            db.recovery.lines())
        with db.at("feature") as s:
            assert s[b"f2"] == b"v"


@pytest.mark.parametrize("how", ["salvage", "recover"])
def test_a_lost_middle_version_is_bridged_by_its_kept_ancestors(tmp_path, how):
    """Version 2 is lost (its overflow value's page damaged) while 3, which overwrote that
    value, verifies: the result rewires 3's parent to 1, as gc() does for a dropped one,
    so log() and merge bases go on past the loss and revert(3) refuses (it had named the
    lost version: log() stopped at 3)."""
    p = str(tmp_path / "a.cow")
    with cowdb.open(p, page_size=PAGE) as db:
        with db.write() as tx:
            tx.update({b"k%04d" % i: b"v" for i in range(200)})    # 1
        db.branch("side")
        with db.write() as tx:
            tx[b"k0100"] = b"B" * 5000                              # 2: an overflow value
        with db.write() as tx:
            tx[b"k0100"] = b"small"                                 # 3
        with db.write(branch="side") as tx:
            tx[b"side"] = b"s"                                      # 4, from 1
    per, _catalog, _freelist = ranges(p)
    only2 = max((s for s in per[2] if all(s not in per[v] for v in per if v != 2)),
                key=lambda s: s[1])   # the value's overflow run, the largest image
    assert only2[1] > 5000
    with open(p, "r+b") as f:
        f.seek(only2[0] + HEADER_SIZE + 8)
        f.write(b"\xff" * 8)
    if how == "salvage":
        rep = salvage(p, str(tmp_path / "b.cow"))
        db = cowdb.open(str(tmp_path / "b.cow"))
    else:
        db = cowdb.open(p, recover=True)
        rep = db.recovery
    assert rep.kept == [0, 1, 3, 4] and set(rep.lost) == {2}
    assert [c.version for c in db.log()] == [3, 1, 0]
    assert db.commit_info(3).parents == (1,) and db.commit_info(3).rewired
    with pytest.raises(cowdb.errors.VersionReclaimed):
        db.revert(3)
    merged = db.merge("side", into="main")
    assert dict(db.at(merged).items())[b"side"] == b"s"
    assert db.check().ok
    db.close()
