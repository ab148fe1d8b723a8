"""A process's reader pins (cowdb/locks.py PyPins and its C twin _pins_c.Pins).

Both are checked against a model: the counts, the oldest pin, and the txn published
in the slot, which must always be the oldest pin (0 for none) except while frozen for
a fork, when it may only fall (the C twin; the Python one holds a lock while frozen,
so pins of other threads wait).
"""
import gc
import mmap
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cowdb import locks, snapshot

IMPLS = [locks.PyPins] + ([locks._pins_c.Pins] if locks._pins_c is not None else [])


@pytest.fixture(params=IMPLS, ids=lambda c: c.__module__)
def impl(request):
    return request.param


def slot_of(buf, index):
    return memoryview(buf).cast("Q")[index]


ops = st.lists(st.one_of(
    st.tuples(st.just("pin"), st.integers(1, 6)),
    st.tuples(st.just("hold"), st.integers(1, 6)),
    st.tuples(st.just("unpin"), st.integers(0, 20)),   # which held pin, modulo
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.tuples(st.just("drop"), st.integers(0, 20)),    # a hold token garbage collected
    st.tuples(st.just("freeze"), st.just(0)),
    st.tuples(st.just("thaw"), st.just(0)),
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops=ops)
def test_pins_follow_the_model(ops):
    for cls in IMPLS:
        pins, buf = cls(), mmap.mmap(-1, 64)
        pins.attach(buf, 3)
        model: dict[int, int] = {}
        plain, tokens, frozen, prev = [], [], False, 0

        def drop(txn):
            model[txn] -= 1
            if not model[txn]:
                del model[txn]

        for op, arg in ops:
            if op == "pin":
                pins.pin(arg)
                plain.append(arg)
                model[arg] = model.get(arg, 0) + 1
            elif op == "hold":
                tokens.append(pins.hold(arg))
                model[arg] = model.get(arg, 0) + 1
            elif op == "unpin" and plain:
                txn = plain.pop(arg % len(plain))
                pins.unpin(txn)
                drop(txn)
            elif op in ("release", "drop") and tokens:
                t = tokens.pop(arg % len(tokens))
                txn = t.txn
                if op == "release":
                    t.release()
                    t.release()  # a second release does nothing
                del t
                drop(txn)
            elif op == "freeze" and not frozen and cls is not locks.PyPins:
                pins.freeze()
                frozen = True
            elif op == "thaw" and frozen:
                pins.thaw()
                frozen = False
            oldest = min(model) if model else 0
            assert pins.counts() == model
            assert slot_of(buf, 3) == pins.slot_txn
            if frozen:  # only falls, and never above a live pin
                assert not prev or 0 < pins.slot_txn <= prev
                assert not model or 0 < pins.slot_txn <= oldest
                assert (pins.oldest() or 0) == pins.slot_txn
            else:
                assert pins.slot_txn == oldest
                assert pins.oldest() == (oldest or None)
            prev = pins.slot_txn
        if frozen:
            pins.thaw()
        tokens.clear()
        for txn in plain:
            pins.unpin(txn)
        assert pins.counts() == {} and pins.slot_txn == 0 and pins.oldest() is None
        pins.detach()
        buf.close()  # detach let go of the map's buffer


def test_a_dropped_hold_unpins_and_unpinning_nothing_is_a_key_error(impl):
    pins = impl()
    t = pins.hold(7)
    assert pins.counts() == {7: 1}
    del t
    gc.collect()
    assert pins.counts() == {}
    with pytest.raises(KeyError):
        pins.unpin(7)


def test_after_fork_ends_a_freeze_and_the_child_publishes_its_own_oldest(impl):
    pins, buf = impl(), mmap.mmap(-1, 64)
    pins.attach(buf, 0)
    a, b = pins.hold(3), pins.hold(5)
    pins.freeze()
    if impl is not locks.PyPins:  # (the Python twin's pins wait for thaw(): a lock)
        a.release()
        assert slot_of(buf, 0) == 3   # frozen: the parent's slot still covers txn 3
    pins.after_fork()
    a.release()             # as in the child, which then attaches its own slot
    pins.detach()
    pins.attach(buf, 1)
    assert slot_of(buf, 1) == 5 and pins.oldest() == 5
    b.release()
    assert slot_of(buf, 1) == 0
    pins.detach()


def test_attach_refuses_a_slot_outside_the_map():
    if locks._pins_c is None:
        pytest.skip("the C accelerator is not built")
    pins = locks._pins_c.Pins()
    with pytest.raises(ValueError):
        pins.attach(mmap.mmap(-1, 64), 8)
    with pytest.raises(TypeError):
        pins.hold("1")


BASES = [snapshot._SnapshotBase] + ([locks._pins_c.SnapshotBase]
                                    if locks._pins_c is not None else [])


@pytest.mark.parametrize("base", BASES, ids=lambda c: c.__module__)
def test_snapshot_bases_open_close_and_unpin_alike(base):
    """Both twins of a snapshot's base: close releases the pin once (again: nothing),
    `with` closes, and a snapshot dropped unclosed, even in a reference cycle, unpins."""
    import weakref

    class Snap(base):
        __slots__ = ()

    pins = locks.PyPins() if base is snapshot._SnapshotBase else locks._pins_c.Pins()
    s = Snap("db", "commit", pins.hold(4))
    assert (s._db, s._commit, s._mget) == ("db", "commit", None)
    assert s._tree is not None          # unopened: not closed
    assert pins.counts() == {4: 1}
    s.close()
    s.close()
    assert pins.counts() == {} and s._tree is None
    with Snap("db", "commit", pins.hold(5)) as t:
        assert pins.counts() == {5: 1}
    assert pins.counts() == {} and t._tree is None
    u = Snap("db", "commit", pins.hold(6))
    u._max_key = u                     # a cycle: only the collector frees it
    ref = weakref.ref(u)
    del u
    gc.collect()
    assert ref() is None and pins.counts() == {}


# ---- the lock file's per-commit checks (locks.py's twins) -------------------------------

C = locks._pins_c
needs_c = pytest.mark.skipif(C is None, reason="the C accelerator _pins_c is not built")


@needs_c
@settings(max_examples=200, deadline=None)
@given(txns=st.lists(st.one_of(st.just(0), st.integers(1, 2**64 - 1)), max_size=12),
       stride=st.sampled_from([8, 16, 24]), first=st.sampled_from([0, 8, 64]),
       own=st.integers(-1, 12))
def test_used_slots_twins_agree_with_the_model(txns, stride, first, own):
    """Both list (slot, txn) for every slot but the caller's whose txn is set, read from
    where Pins writes a slot's txn (any word of a table of any stride)."""
    buf = mmap.mmap(-1, 4096)
    for i, txn in enumerate(txns):
        memoryview(buf).cast("Q")[(first + stride * i) // 8] = txn
        if stride > 8:  # the other words of a slot (a pid) are never read as txns
            memoryview(buf).cast("Q")[(first + stride * i) // 8 + 1] = 7
    want = [(i, t) for i, t in enumerate(txns) if t and i != own]
    args = (buf, first, stride, len(txns), own)
    assert locks.py_used_slots(*args) == want
    assert C.used_slots(*args) == want


@needs_c
def test_used_slots_refuses_a_table_outside_the_map():
    buf = bytearray(64)
    for args in [(buf, 0, 16, 5, -1), (buf, -8, 16, 1, -1), (buf, 4, 16, 1, -1),
                 (buf, 0, 4, 2, -1), (buf, 64, 16, 1, -1), (buf, 0, 2**62, 3, -1)]:
        with pytest.raises(ValueError, match="do not fit"):
            C.used_slots(*args)
    assert C.used_slots(buf, 56, 16, 1, -1) == []   # the last word: fits
    with pytest.raises(TypeError):
        C.used_slots(buf, 0, 16)


@pytest.mark.parametrize("identity", [locks.py_file_identity] + (
    [C.file_identity] if C is not None else []), ids=["python", "c"][:1 + (C is not None)])
def test_file_identity_names_the_file_a_path_holds_now(identity, tmp_path):
    """(st_dev, st_ino) of the file a path names, as os.stat gives them; None once it is
    gone; another file at the same path: another identity."""
    path = tmp_path / "f-lock"
    path.write_bytes(b"x")
    st = os.stat(path)
    assert identity(os.fsencode(path)) == (st.st_dev, st.st_ino)
    other = tmp_path / "g"
    other.write_bytes(b"y")
    os.replace(other, path)
    assert identity(os.fsencode(path)) == (os.stat(path).st_dev, os.stat(path).st_ino) \
        != (st.st_dev, st.st_ino)
    path.unlink()
    assert identity(os.fsencode(path)) is None
    if identity is not locks.py_file_identity:
        with pytest.raises(TypeError):
            identity(str(path))
