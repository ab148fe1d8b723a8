"""Subtree identity an adversary cannot forge (issue 14).

Diff, merge and the node cache tell subtrees apart by page reference (and the
txn that wrote the page), never by the 64-bit XXH3 checksum, which a user who
chooses values could make collide. These tests force every image checksum to
the same value (the worst collision there is) and check that diffs, merges
and reads through the cache still see every change.
"""
import pytest

import cowdb
from cowdb.pages import checksum as checksum_mod
from cowdb.tree import diff as diffmod


@pytest.fixture
def colliding(monkeypatch):
    """Every page image gets the same XXH3 checksum: all subtrees collide."""
    monkeypatch.setattr(checksum_mod, "xxh3_64_intdigest", lambda data: 0x5EED)


def key(i):
    return b"key%06d" % i


def fill(db, n, tag=b"v"):
    with db.write() as tx:
        for i in range(n):
            tx[key(i)] = tag + b"%06d" % i + b"." * 60


def test_diff_sees_changes_under_colliding_checksums(colliding):
    db = cowdb.open(None)
    fill(db, 3000)
    changed = [5, 700, 1500, 2999]
    with db.write() as tx:
        for i in changed:
            tx[key(i)] = b"changed %d" % i
    with db.at(1) as a, db.at(2) as b:
        ra, rb = a._live().ref, b._live().ref
    assert ra.checksum == rb.checksum and ra.page != rb.page   # the collision is real
    got = [(c.key, c.new) for c in db.diff(1, 2)]
    assert got == [(key(i), b"changed %d" % i) for i in changed]
    assert [c.key for c in db.diff(2, 1)] == [key(i) for i in changed]


def test_diff_without_a_secret_hash_key_compares_values(colliding, monkeypatch):
    monkeypatch.setattr(diffmod, "KEYED_HASH", False)
    db = cowdb.open(None)
    fill(db, 500)
    with db.write() as tx:
        tx[key(7)] = b"x"
        tx[key(300)] = b"y"
    assert [(c.key, c.new) for c in db.diff(1, 2)] == [(key(7), b"x"), (key(300), b"y")]


def test_overflow_values_with_colliding_checksums_differ(colliding):
    db = cowdb.open(None)
    with db.write() as tx:
        tx[b"big"] = b"a" * 5000
    with db.write() as tx:
        tx[b"big"] = b"b" * 5000
    assert [(c.key, c.old[:1], c.new[:1]) for c in db.diff(1, 2)] == [(b"big", b"a", b"b")]
    with db.at(1) as s:
        assert s[b"big"] == b"a" * 5000
    with db.at(2) as s:
        assert s[b"big"] == b"b" * 5000


def test_merge_grafts_by_page_not_checksum(colliding):
    db = cowdb.open(None)
    fill(db, 3000)
    db.branch("side")
    with db.write(branch="side") as tx:
        tx[key(10)] = b"theirs"
        tx[key(2500)] = b"theirs too"
    with db.write() as tx:
        tx[key(1200)] = b"ours"
    db.merge("side")
    with db.read() as s:
        assert s[key(10)] == b"theirs"
        assert s[key(2500)] == b"theirs too"
        assert s[key(1200)] == b"ours"
        assert s[key(11)] == b"v000011" + b"." * 60
    assert db.check().ok


def test_cache_serves_each_version_its_own_nodes(colliding):
    db = cowdb.open(None)
    fill(db, 2000, b"a")
    fill(db, 2000, b"b")
    for v, tag in ((1, b"a"), (2, b"b"), (1, b"a")):
        with db.at(v) as s:
            assert all(s[key(i)].startswith(tag) for i in range(0, 2000, 37))


def test_reused_page_with_equal_checksum_is_not_served_stale(colliding, tmp_path):
    """A page freed by gc and rewritten (with, here, the same checksum) by another
    handle: the cached node of the old image must not be served for the new one."""
    path = str(tmp_path / "db")
    a = cowdb.open(path, durability="none")
    fill(a, 300, b"a")
    b = cowdb.open(path)
    with b.read() as s:
        assert s[key(3)].startswith(b"a")    # b caches the leaves of version 1
    a.set_retention(keep_last=1)
    for round_ in range(4):                   # free version 1's pages and reuse them
        fill(a, 300, b"%d" % round_)
        a.gc()
    with a.read() as s:
        want = s[key(3)]
    with b.read() as s:
        assert s[key(3)] == want
        assert all(s[key(i)][:1] == want[:1] for i in range(300))
    b.close()
    a.close()
