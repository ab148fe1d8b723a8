"""The free list: runs, and its chain of base + delta images, against replays."""
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from cowdb.pages.freelist import MAX_CHAIN, FreeList, _coalesce
from cowdb.pages.io import MemoryIO
from cowdb.pages.meta import EMPTY
from cowdb.pages.store import PageStore


def state(fl):
    return sorted(fl.pool), {t: sorted(set(fl_pages(r))) for t, r in fl.pending.items() if r}


def fl_pages(runs):
    return [p for s, n in runs for p in range(s, s + n)]


ops = st.lists(st.tuples(st.sampled_from(["alloc", "alloc3", "free", "publish", "sync"]),
                         st.integers(0, 40)), max_size=120)


@settings(max_examples=60, deadline=None)
@given(ops=ops)
def test_chain_replays_to_the_same_list(ops):
    store = PageStore(MemoryIO(), page_size=1024)
    store.initialize()
    txn, owned, publishes = 2, [], 0
    store.begin(txn, store.durable_txn)
    for op, x in ops:
        if op == "alloc":
            owned.append((store.allocate(1), 1))
        elif op == "alloc3":
            owned.append((store.allocate(3), 3))
        elif op == "free" and owned:
            page, n = owned.pop(x % len(owned))
            store.free(page, n)
        elif op in ("publish", "sync"):
            store.publish(EMPTY, b"", durable=op == "sync")
            publishes += 1
            stored = store._load_freelist(store.meta)
            assert state(stored) == state(store.freelist)
            assert stored.chain == store.freelist.chain  # the pages each image spans
            assert len(store.freelist.chain) <= MAX_CHAIN + 1
            txn += 1
            store.begin(txn, store.durable_txn)
    store.publish(EMPTY, b"", durable=True)   # the txn's unfilled run goes back
    free = list(store.freelist.pages())
    in_use = [p for page, n in owned for p in range(page, page + n)]
    assert len(free) == len(set(free)) and not set(free) & set(in_use)
    chain = [p for page, n in store.freelist.chain for p in range(page, page + n)]
    assert set(free) | set(in_use) | set(chain) == set(range(store.first_unit,
                                                            store.page_count))


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 5)), max_size=40))
def test_give_back_merges_runs_as_a_full_sort_does(runs):
    """give_back places a run in O(log n) and merges it with its neighbours: the pool is
    what sorting and merging every run would give."""
    taken: set[int] = set()
    fl, kept = FreeList(), []
    for start, n in runs:
        pages = set(range(start, start + n))
        if pages & taken:
            continue
        taken |= pages
        kept.append((start, n))
        fl.give_back(start, n)
        assert fl.pool == _coalesce(kept)


def model_take(pool, n, below, most):
    """The lowest run of at least n pages (ending by ``below``): its start and how many
    pages a take gets, or None."""
    for start, length in sorted(pool):
        if below is not None and start + n > below:
            return None
        if length >= n:
            return start, max(n, min(length, most))
    return None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["give", "take", "take_below", "put_back", "trim",
                                           "free_release"]),
                          st.integers(0, 300), st.integers(1, 9), st.integers(0, 12)),
                max_size=80))
def test_take_finds_the_lowest_run_that_fits(ops):
    """Whatever gave pages back, took, trimmed or released them, take finds the lowest
    run long enough (the free list's shortcut, the longest run it last saw, never hides
    one) and takes up to ``most`` pages of it."""
    fl, free = FreeList(), set()

    def pool_pages():
        return {p for s, n in fl.pool for p in range(s, s + n)}

    for op, start, n, most in ops:
        run = set(range(start, start + n))
        if op in ("give", "put_back", "free_release"):
            if run & free:
                continue
            free |= run
            if op == "give":
                fl.give_back(start, n)
            elif op == "put_back":
                fl.put_back(start, n)
            else:
                fl.free(7, start, n)
                fl.release(7)
        elif op == "trim":
            fl.trim_tail(max((s + k for s, k in fl.pool), default=0))
            free = pool_pages()
        else:
            below = start if op == "take_below" else None
            want = model_take(fl.pool, n, below, most)
            got = fl.take(n, below, most)
            assert (got, fl.taken if got is not None else None) == \
                (want if want is not None else (None, None))
            if got is not None:
                free -= set(range(got, got + fl.taken))
        assert pool_pages() == free


def test_runs_merge_and_take_lowest_first():
    fl = FreeList()
    for p in (9, 3, 4, 5, 10, 20):
        fl.free(1, p)
    fl.release(1)
    assert fl.pool == [(20, 1), (9, 2), (3, 3)]
    assert fl.take(2) == 3 and fl.take(2) == 9 and fl.take(1) == 5 and fl.take(5) is None
    assert fl.trim_tail(21) == 20 and fl.pool == []


def test_a_base_image_whose_spare_pages_do_not_fit_back_leaks_no_page():
    """A base image is allocated from the pool for a bound (``encoded_size``); when it uses
    fewer pages it gives the rest back, and the run given back can make the list too long
    for the pages used. The store once kept those pages then: its chain in memory spanned a
    page more than the stored image's length, so a reload (a rolled-back empty commit,
    another process adopting, a reopen) lost that page: neither in use nor free."""
    store = PageStore(MemoryIO(), page_size=1024, unit=1024)  # whole-page units (format 2's)
    store.initialize()
    store.begin(2, 1)
    base = store.allocate(130)               # fresh pages 2..131
    fl = store.freelist
    # 62 free runs in the pool: at 1024-byte pages their bound needs 2 pages, one 2-page
    # run (the lowest that fits) is taken whole, and 61 runs plus the group head fit in
    # one page; giving the spare page back makes it 62 runs again: 1008 bytes, not 1000
    freed = [(base, 2)] + [(base + 3 + 2 * k, 1) for k in range(61)]
    for page, n in freed:
        fl.free(1, page, n)
    fl.release(1)
    assert len(fl.pool) == 62 and fl.encoded_size() > 1000
    store.publish(EMPTY, b"", durable=True)
    store.begin(3, 2)
    store.rollback()                         # what an empty commit does: reread the image
    meta = store.meta
    stored = store._load_freelist(meta)
    in_use = {p for s, n in stored.chain for p in range(s, s + n)}
    in_use |= set(range(base, base + 130)) - {p for s, n in freed for p in range(s, s + n)}
    free = set(stored.pages())
    assert not in_use & free
    lost = set(range(2, meta.page_count)) - in_use - free
    assert lost == set(), f"pages neither in use nor free: {sorted(lost)}"


def test_every_unit_is_reachable_or_free_while_commits_reuse_runs():
    """A txn fills a run of reused units, then takes another and gives the first one's
    rest back; the second run's rest goes back at publish. (It once read the length of
    the second take after logging the first give-back, so the second run's rest was
    neither used nor free.)"""
    import random

    import cowdb
    rng = random.Random(1)
    db = cowdb.open(page_size=1024)
    with db.write() as tx:
        tx.update({b"k%04d" % i: rng.randbytes(50) for i in range(300)})
    for _ in range(40):
        with db.write() as tx:
            for _ in range(3):
                tx[b"k%04d" % rng.randrange(300)] = rng.randbytes(50)
        assert db.check().errors == []


def test_a_base_longer_than_a_page_is_written_in_pieces_in_the_holes():
    """Issue 14: a base image of many runs (16 bytes each) needs one long run, which only
    the end of the file has once gc has cut the free space into small holes, so the end
    could not be given back. A base longer than a page is written as a chain of pieces
    of a page each, taken from the holes: the file does not grow, and the list reloads
    the same (every unit in use, free, or one of the pieces)."""
    store = PageStore(MemoryIO(), page_size=1024)   # 64-byte units: 16 a page
    store.initialize()
    store.begin(2, 1)
    first = store.allocate(2000)
    fl = store.freelist
    freed = [(first + 2 * k, 1) for k in range(400)]                # 400 one-unit holes
    freed += [(first + 1000 + 40 * k, 16) for k in range(20)]       # 20 one-page holes
    for page, n in freed:
        fl.free(1, page, n)
    fl.release(1)
    assert fl.encoded_size() > 6000 and max(n for _, n in fl.pool) == 16
    count = store.page_count
    store.rebase_freelist = True
    store.publish(EMPTY, b"", durable=True)
    assert store.page_count == count                 # the pieces went into the holes
    assert len(store.freelist.chain) > 6 and all(n == 16 for _, n in store.freelist.chain)
    stored = store._load_freelist(store.meta)
    assert state(stored) == state(store.freelist) and stored.chain == store.freelist.chain
    in_use = set(range(first, first + 2000)) - {p for s, n in freed for p in range(s, s + n)}
    pieces = {p for s, n in stored.chain for p in range(s, s + n)}
    free = set(stored.pages())
    assert not (in_use & free or pieces & free or in_use & pieces)
    assert in_use | free | pieces == set(range(store.first_unit, store.page_count))
    store.begin(3, 2)                                # a delta then points at the last piece
    store.free(store.allocate(1))
    store.publish(EMPTY, b"", durable=True)
    assert state(store._load_freelist(store.meta)) == state(store.freelist)


@settings(max_examples=80, deadline=None)
@given(groups=st.dictionaries(st.integers(0, 6), st.lists(st.integers(1, 4), max_size=30)),
       rooms=st.lists(st.integers(2, 20), min_size=1, max_size=12))
def test_pieces_decode_to_the_list_they_cut(groups, rooms):
    """encode_pieces cuts the groups anywhere (a group goes on in the next piece); the
    pieces, decoded in order, are the same list; None only when they do not fit."""
    fl, page, pool = FreeList(), 10, []
    for txn, lengths in sorted(groups.items()):
        for n in lengths:
            if txn:
                fl.free(txn, page, n)
            else:
                pool.append((page, n))
            page += n + 1
    fl.pool = _coalesce(pool)
    room = [16 * r for r in rooms]
    pieces = fl.encode_pieces(room)
    runs = len(fl.pool) + sum(len(r) for r in fl.pending.values())
    if pieces is None:   # only when a head and a run each would not fit
        assert sum(r // 32 for r in room) < runs
        return
    assert [len(p) for p in pieces] == room
    assert state(FreeList.decode(*pieces)) == state(fl)


def test_a_damaged_piece_of_a_base_reads_as_corruption():
    from cowdb.errors import Corruption
    store = PageStore(MemoryIO(), page_size=1024)
    store.initialize()
    store.begin(2, 1)
    first = store.allocate(1000)
    for k in range(200):
        store.freelist.free(1, first + 2 * k, 1)
    store.freelist.release(1)
    store.rebase_freelist = True
    store.publish(EMPTY, b"", durable=True)
    chain = store.freelist.chain
    assert len(chain) > 2
    page = chain[1][0]                       # a middle piece
    raw = bytearray(store.io.pread(64, page * store.unit))
    raw[40] ^= 1
    store.io.pwrite(bytes(raw), page * store.unit)
    with pytest.raises(Corruption):
        store._load_freelist(store.meta)


@given(txns=st.lists(st.integers(1, 50), min_size=1, max_size=12, unique=True),
       bounds=st.lists(st.integers(0, 60), max_size=8))
def test_release_moves_exactly_the_groups_old_enough(txns, bounds):
    """release(bound) moves every group freed at a txn <= bound into the pool and no other,
    after a round trip through the encoded base too (release looks only at the oldest
    group to find that none is ready: groups are kept in txn order)."""
    txns.sort()   # a writer frees in txn order
    fl = FreeList()
    for t in txns:
        fl.free(t, 100 * t, 1 + t % 3)
    for bound in bounds:
        for f in (fl, FreeList.decode(fl.encode())):
            want_pool = sorted(fl_pages(fl.pool) + [p for t in txns if t <= bound
                                                      for p in fl_pages(fl.pending.get(t, []))])
            f.release(bound)
            assert sorted(fl_pages(f.pool)) == want_pool
            assert all(t > bound for t in f.pending)
