"""The page store's accelerators in C (pages/_pages_c.c) against the Python: the write queue
joined into runs by PageStore._flush (the same pwrites, byte for byte and offset for
offset), and the free list's first-fit search."""
from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from cowdb.pages import freelist as freelistmod
from cowdb.pages import store as storemod
from cowdb.pages.io import MemoryIO
from cowdb.pages.store import PageStore

pages_c = storemod._pages_c
pytestmark = pytest.mark.skipif(pages_c is None, reason="_pages_c is not built")


def flushed(queue, unit, c):
    """The pwrites (offset, bytes) of PageStore._flush over ``queue``, in C or in Python."""
    store = PageStore(MemoryIO(), page_size=1024, unit=unit)
    store.initialize()
    writes = []
    store.io.pwrite = lambda data, at: writes.append((at, bytes(data)))
    was, storemod.join_runs = storemod.join_runs, (pages_c.runs if c else None)
    try:
        store._queue = dict(queue)
        store._flush()
    finally:
        storemod.join_runs = was
    assert store._queue == {}
    return writes


@st.composite
def queues(draw):
    """Images laid out as a txn lays them out: runs of consecutive units, each image at
    the unit after the one before ends, with gaps (and, rarely, overlaps) between runs;
    bytes or bytearrays, some empty."""
    unit = draw(st.sampled_from([1, 16, 64, 1024]))
    queue, page = {}, draw(st.integers(2, 50))
    for _ in range(draw(st.integers(0, 30))):
        image = draw(st.binary(max_size=3 * unit + 5))
        queue[page] = bytearray(image) if draw(st.booleans()) else image
        page += -(-len(image) // unit) + draw(st.sampled_from([0, 0, 0, 1, 7, -1]))
        page = max(page, 2)
    return unit, queue


@settings(max_examples=300, deadline=None)
@given(queues())
def test_runs_write_what_python_writes(unit_queue):
    unit, queue = unit_queue
    assert flushed(queue, unit, True) == flushed(queue, unit, False)


def test_runs_pad_each_image_to_its_last_unit_and_cut_at_gaps():
    runs = pages_c.runs({8: b"ab", 5: bytearray(b"xyz"), 6: b"", 9: b"q", 6 + 6: b"12345"}, 4)
    # unit 5 holds b"xyz" (padded to its end by the empty image at 6, which ends where it
    # starts, so the image at 8 starts a new run); 8 and 9 are consecutive; 12 is alone
    assert runs == [(5, 6, b"xyz\0"), (8, 10, b"ab\0\0q"), (12, 14, b"12345")]
    assert pages_c.runs({}, 64) == []


def test_runs_refuse_bad_input():
    with pytest.raises(TypeError):
        pages_c.runs([], 64)
    with pytest.raises(TypeError):
        pages_c.runs({1: "text"}, 64)
    with pytest.raises(ValueError):
        pages_c.runs({1: b"x"}, 0)
    with pytest.raises(ValueError):
        pages_c.runs({-1: b"x"}, 64)
    with pytest.raises(ValueError):
        pages_c.runs({2 ** 70: b"x"}, 64)
    with pytest.raises(TypeError):
        pages_c.runs({1: b"x", "a": b"y"}, 64)  # (unorderable pages: the sort refuses)


@st.composite
def pools(draw):
    """A free list's pool: disjoint runs, highest first."""
    top = draw(st.sampled_from([2 ** 40, 2 ** 64 - 2 ** 21]))  # (runs end below 2**64)
    starts = sorted(draw(st.sets(st.integers(0, top), max_size=40)), reverse=True)
    runs, above = [], None
    for s in starts:
        room = 2 ** 20 if above is None else above - s
        if room < 1:
            continue
        runs.append((s, draw(st.integers(1, min(room, 300)))))
        above = s
    return runs


@settings(max_examples=300, deadline=None)
@given(pools(), st.integers(1, 320), st.one_of(st.none(), st.integers(0, 2 ** 64 - 1)))
def test_first_fit_finds_what_python_finds(pool, n, below):
    """The lowest run that fits (its index), the longest run when none does, or the stop
    at ``below``: the C and the Python agree, and either is what a sorted search says."""
    got = pages_c.first_fit(pool, n, below)
    assert got == freelistmod.py_first_fit(pool, n, below)
    fits = [i for i in range(len(pool) - 1, -1, -1) if pool[i][1] >= n]
    if got[0] >= 0:
        assert got[0] == fits[0]
    elif got[1] >= 0:
        assert not fits and got[1] == max((r[1] for r in pool), default=0)


def test_first_fit_refuses_what_is_not_a_pool():
    with pytest.raises(TypeError):
        pages_c.first_fit(((1, 2),), 1, None)
    with pytest.raises(TypeError):
        pages_c.first_fit([(1, 2, 3)], 1, None)
    with pytest.raises(TypeError):
        pages_c.first_fit([(1, "2")], 1, None)
    assert pages_c.first_fit([], 1, None) == (-1, 0)
