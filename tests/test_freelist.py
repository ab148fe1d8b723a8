"""The free list: runs, and its chain of base + delta images, against replays."""
import hypothesis.strategies as st
from hypothesis import given, settings

from cowdb.pages.freelist import MAX_CHAIN, FreeList
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
            assert state(store._load_freelist(store.meta)) == state(store.freelist)
            assert len(store.freelist.chain) <= MAX_CHAIN + 1
            txn += 1
            store.begin(txn, store.durable_txn)
    free = list(store.freelist.pages())
    in_use = [p for page, n in owned for p in range(page, page + n)]
    assert len(free) == len(set(free)) and not set(free) & set(in_use)


def test_runs_merge_and_take_lowest_first():
    fl = FreeList()
    for p in (9, 3, 4, 5, 10, 20):
        fl.free(1, p)
    fl.release(1)
    assert fl.pool == [(20, 1), (9, 2), (3, 3)]
    assert fl.take(2) == 3 and fl.take(2) == 9 and fl.take(1) == 5 and fl.take(5) is None
    assert fl.trim_tail(21) == 20 and fl.pool == []
