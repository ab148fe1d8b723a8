"""Corruption: damaged bytes give correct data or cowdb.errors.Corruption, never wrong data.

A closed database with several versions (a multi-level tree, overflow
values, deletes, a tag and a branch) is damaged in a copy: every page zeroed
in turn, and random bytes flipped (one to three at a time). The copy is
opened and every version read in full; each read either returns exactly the
model's data or raises Corruption (with ``.page`` naming a page at or
before the damaged one when a page is at fault). ``check()`` must report
a problem whenever a read failed.

Then the page decoders meet arbitrary bytes (hypothesis):
``checksum.verify``, ``node.decode`` (raw and behind a valid checksum),
``meta.decode`` and ``PageStore.read`` raise Corruption (BadMeta for a
meta slot) and nothing else.
"""
import os
import random
import shutil

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import cowdb
from cowdb.errors import Corruption, CowdbError, NotACowdbFile
from cowdb.pages import meta as metamod
from cowdb.pages.checksum import BRANCH, FREELIST, HEADER, HEADER_SIZE, LEAF, OVERFLOW, seal, verify
from cowdb.pages.io import MemoryIO
from cowdb.pages.store import DEFAULT_UNIT, PageStore
from cowdb.tree.node import Branch, Leaf, decode

LONG = bool(os.environ.get("COWDB_LONG"))
PAGE = 1024


def build(path: str) -> dict:
    """A closed database on disk; returns the model {version: {key: value}}."""
    rng = random.Random(7)
    model = {0: {}}
    cur: dict = {}
    with cowdb.open(path, page_size=PAGE) as db:
        def commit(puts, dels=(), durability="sync"):
            with db.write(durability=durability) as tx:
                for k in dels:
                    tx.delete(k)
                tx.update(puts)
            for k in dels:
                cur.pop(k, None)
            cur.update(puts)
            model[tx.version] = dict(cur)
        commit({b"k%04d" % i: rng.randbytes(rng.choice([5, 50, 200])) for i in range(300)})
        commit({b"k%04d" % i: rng.randbytes(30) for i in range(0, 300, 7)})
        commit({b"big1": rng.randbytes(9000), b"big2": rng.randbytes(3000)}, durability="none")
        commit({}, [b"k%04d" % i for i in range(0, 300, 3)])
        db.tag("t")
        db.branch("b")
        commit({b"big1": rng.randbytes(5000), b"new": b"x"}, [b"big2"], durability="none")
    return model


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("corrupt") / "clean.cow")
    model = build(path)
    with open(path, "rb") as f:
        return path, f.read(), model


def read_all(db, model) -> list[Corruption]:
    """Read every version in full; a wrong value fails the test, Corruption is collected."""
    found = []
    assert db.version == max(model), "the damaged file opens at another newest version"
    for v, want in model.items():
        try:
            with db.at(v) as snap:
                got = dict(snap.items())
                n = len(snap)
                some = [snap.get(k) for k in list(want)[:: max(1, len(want) // 20)]]
        except Corruption as e:
            found.append(e)
            continue
        assert got == want and n == len(want), f"WRONG DATA in version {v}"
        assert some == [want[k] for k in list(want)[:: max(1, len(want) // 20)]]
    try:
        assert db.tags() == {"t": 4} and set(db.branches()) == {"main", "b"}
        assert [c.version for c in db.log()] == sorted(model, reverse=True)
    except Corruption as e:
        found.append(e)
    return found


def damaged(image: bytes, model, damaged_page: int | None) -> str:
    """Open and read a damaged image; return what happened ("ok", "corruption")."""
    try:
        db = cowdb.open(io=MemoryIO(image), page_size=PAGE)
    except Corruption as e:
        check_page(e, damaged_page)
        return "corruption at open"
    try:
        errors = read_all(db, model)
        for e in errors:
            check_page(e, damaged_page)
        try:
            report = db.check()
        except Corruption as e:
            check_page(e, damaged_page)
            return "corruption"
        if errors:
            assert not report.ok, "check() passed a file whose reads fail"
        return "corruption" if errors or not report.ok else "ok"
    finally:
        db.close()


def check_page(e: Corruption, damaged_page: int | None) -> None:
    if damaged_page is not None and damaged_page >= 2 and e.page is not None:
        # references name allocation units (DEFAULT_UNIT bytes); an image is named by
        # its first unit, which is in the damaged page or before it
        assert 2 * PAGE // DEFAULT_UNIT <= e.page < (damaged_page + 1) * PAGE // DEFAULT_UNIT, \
            f"Corruption names unit {e.page}, page {damaged_page} was damaged: {e}"


def test_zero_every_page(clean):
    _, image, model = clean
    outcomes = {}
    pages = len(image) // PAGE
    assert pages > 40
    for p in range(pages):
        img = bytearray(image)
        img[p * PAGE:(p + 1) * PAGE] = bytes(PAGE)
        what = damaged(bytes(img), model, p)
        outcomes[what] = outcomes.get(what, 0) + 1
    assert outcomes.get("corruption", 0) + outcomes.get("corruption at open", 0) > pages // 2
    assert outcomes.get("ok", 0) >= 1  # zeroing page 0 or 1: the other meta slot serves


def test_flip_random_bytes(clean):
    _, image, model = clean
    rng = random.Random(11)
    outcomes = {}
    for _ in range(3000 if LONG else 300):
        img = bytearray(image)
        spots = [rng.randrange(len(img)) for _ in range(rng.choice([1, 1, 2, 3]))]
        for s in spots:
            img[s] ^= 1 << rng.randrange(8)
        pages = {s // PAGE for s in spots}
        what = damaged(bytes(img), model, pages.pop() if len(pages) == 1 else None)
        outcomes[what] = outcomes.get(what, 0) + 1
    assert outcomes.get("corruption", 0) > 50


def test_damaged_file_on_disk(clean, tmp_path):
    """The same through a real file (pread, the mmap of the meta pages)."""
    path, image, model = clean
    rng = random.Random(5)
    for i in range(20):
        p = str(tmp_path / f"bad{i}.cow")
        img = bytearray(image)
        page = rng.randrange(2, len(img) // PAGE) if i % 2 else rng.randrange(2)
        img[page * PAGE + rng.randrange(PAGE)] ^= 0xFF
        with open(p, "wb") as f:
            f.write(img)
        try:
            db = cowdb.open(p, readonly=True)
        except Corruption as e:
            check_page(e, page)
            continue
        try:
            for e in read_all(db, model):
                check_page(e, page)
        finally:
            db.close()


def test_both_meta_slots_damaged(clean):
    _, image, model = clean
    img = bytearray(image)
    img[40] ^= 1
    img[PAGE + 40] ^= 1
    with pytest.raises(Corruption) as e:
        cowdb.open(io=MemoryIO(bytes(img)))
    assert "meta" in str(e.value)


# ---- decoders on arbitrary bytes ----------------------------------------------------------
@settings(max_examples=3000 if LONG else 300)
@given(st.binary(max_size=3000))
def test_verify_arbitrary_bytes(data):
    try:
        verify(data, 9)
    except Corruption as e:
        assert e.page == 9


@settings(max_examples=3000 if LONG else 300)
@given(st.binary(max_size=3000))
def test_decode_arbitrary_bytes(data):
    try:
        node = decode(data, 9)
    except Corruption as e:
        assert e.page == 9
    else:
        assert type(node) in (Leaf, Branch)


def sealed(kind: int, n: int, body: bytes) -> bytes:
    image = bytearray(HEADER_SIZE) + body
    HEADER.pack_into(image, 0, 0, kind, 0, n, len(image), 1)
    seal(image)
    return bytes(image)


@st.composite
def plausible_images(draw):
    """Images that pass their checksum: right kind and length, arbitrary contents."""
    kind = draw(st.sampled_from([LEAF, BRANCH, OVERFLOW, FREELIST, 0, 9]))
    n = draw(st.one_of(st.integers(0, 8), st.integers(0, 0xFFFF)))
    body = draw(st.one_of(st.binary(max_size=2000),
                          st.builds(lambda lens, rest: b"".join(lens) + rest,
                                    st.lists(st.sampled_from([b"\x00\x00", b"\x03\x00",
                                                              b"\xff\xff", b"\x00\x00\x00\x80"]),
                                             max_size=20), st.binary(max_size=300))))
    return sealed(kind, n, body)


@settings(max_examples=3000 if LONG else 400)
@given(plausible_images())
def test_decode_sealed_garbage(image):
    try:
        verify(image, 9)
        node = decode(image, 9)
    except Corruption as e:
        assert e.page == 9
    else:
        assert type(node) in (Leaf, Branch)


@settings(max_examples=3000 if LONG else 300)
@given(st.binary(min_size=0, max_size=300))
def test_meta_decode_arbitrary_bytes(data):
    try:
        m = metamod.decode(data)
    except metamod.BadMeta:
        return
    assert m.encode() == data[:metamod.META_SIZE + len(m.pending)]


@settings(max_examples=2000 if LONG else 200)
@given(st.binary(min_size=1, max_size=4 * PAGE), st.integers(2, 5))
def test_store_read_arbitrary_page(junk, page):
    """Whatever a page holds, reading it verifies or raises Corruption naming it."""
    io = MemoryIO(bytes(2 * PAGE) + junk)
    store = PageStore(io, page_size=PAGE)
    try:
        store.read(page)
    except Corruption as e:
        assert e.page == page


@settings(max_examples=1000 if LONG else 100)
@given(st.binary(min_size=2 * PAGE, max_size=6 * PAGE))
def test_open_arbitrary_file(junk):
    try:
        cowdb.open(io=MemoryIO(junk), page_size=PAGE).close()
    except (Corruption, NotACowdbFile):
        pass


@settings(max_examples=1000 if LONG else 100)
@given(st.data())
def test_open_with_garbage_behind_valid_meta(data):
    """Valid meta records pointing at arbitrary pages: Corruption, never another error."""
    clean_io = MemoryIO()
    cowdb.open(io=clean_io, page_size=PAGE).close()
    img = bytearray(clean_io.buf)
    junk = data.draw(st.binary(min_size=PAGE, max_size=4 * PAGE))
    start = data.draw(st.integers(2, max(2, len(img) // PAGE - 1))) * PAGE
    img[start:start + len(junk)] = junk
    try:
        db = cowdb.open(io=MemoryIO(bytes(img)), page_size=PAGE)
    except (Corruption, NotACowdbFile):
        return
    try:
        with db.read() as snap:
            list(snap.items())
        db.check()
    except CowdbError as e:
        assert isinstance(e, Corruption), repr(e)
    finally:
        db.close()


@pytest.mark.parametrize("flags, body", [(0, b"\x01" * 5),          # a base cut short
                                         (1, b"\x01" * 5),          # a delta cut short
                                         (0, bytes(16) + b"\x01" * 3)])
def test_free_list_image_cut_short(flags, body):
    """A free-list image that passes its checksum but is cut mid-record (found while
    writing the fuzz target tests/fuzz freelist, issue 18): Corruption, not struct.error."""
    image = bytearray(HEADER_SIZE) + body
    HEADER.pack_into(image, 0, 0, FREELIST, flags, 0, len(image), 1)
    seal(image)
    io = MemoryIO(bytes(2 * PAGE) + bytes(image))
    store = PageStore(io, page_size=PAGE, unit=PAGE)  # whole-page units: page 2 is unit 2
    ref = metamod.RootRef(2, int.from_bytes(image[:8], "little"), 1)
    meta = metamod.Meta(txn=2, durable_base=1, page_size=PAGE, catalog=metamod.EMPTY,
                        freelist=ref, freelist_len=len(image), page_count=3, unit=PAGE)
    with pytest.raises(Corruption, match="free list"):
        store._load_freelist(meta)
