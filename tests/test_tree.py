"""The B+tree alone, over a memory page store: puts, deletes, sorted bulk puts,
splits and merges, cursors and ranks, against a dict."""
import random

import hypothesis.strategies as st
from hypothesis import given, settings

from cowdb.pages.io import MemoryIO
from cowdb.pages.store import PageStore
from cowdb.tree import cursor
from cowdb.tree.btree import NodeCache, Tree
from cowdb.tree.node import Branch


def new_tree(page_size=1024):
    store = PageStore(MemoryIO(), page_size=page_size)
    store.initialize()
    return Tree(NodeCache(store))


def check_shape(tree):
    """Every node fits its page, counts add up, keys are ordered."""
    def visit(node, low, high):
        assert node.size <= tree.page_size
        if type(node) is Branch:
            total = 0
            for i in range(len(node.kids)):
                lo = node.keys[i] if i else low
                hi = node.keys[i + 1] if i + 1 < len(node.keys) else high
                n = visit(tree.kid(node, i), lo, hi)
                assert n == node.counts[i]
                total += n
            return total
        assert node.keys == sorted(set(node.keys))
        assert all(low <= k and (high is None or k < high) for k in node.keys)
        return len(node.keys)
    if tree.root() is not None:
        assert visit(tree.root(), b"", None) == tree.count


ops = st.lists(st.tuples(st.integers(0, 3000), st.sampled_from([None, 1, 50, 300, 2000])),
               max_size=400)


@settings(max_examples=60, deadline=None)
@given(ops=ops, bulk=st.lists(st.integers(0, 3000), max_size=600))
def test_tree_against_dict(ops, bulk):
    tree, model = new_tree(), {}
    tree.store.begin(2, 1)
    batch = {b"k%05d" % i: b"b" * (i % 7) for i in bulk}
    assert tree.put_sorted(sorted(batch.items())) == len(batch)
    model.update(batch)
    for i, size in ops:
        k = b"k%05d" % i
        if size is None:
            assert tree.delete(k) == (k in model)
            model.pop(k, None)
        else:
            v = bytes([i % 251]) * size
            assert tree.put(k, v) == (k not in model)
            model[k] = v
    check_shape(tree)
    assert list(cursor.items(tree)) == sorted(model.items())
    ref = tree.write(2)
    again = Tree(tree.nodes, ref)
    assert again.count == len(model)
    assert list(cursor.items(again, reverse=True)) == sorted(model.items(), reverse=True)
    keys = sorted(model)
    if len(keys) > 2:
        a, b = keys[len(keys) // 3], keys[2 * len(keys) // 3]
        assert [k for k, _ in cursor.items(again, a, b)] == [k for k in keys if a <= k < b]
        assert again.rank(b) - again.rank(a) == len([k for k in keys if a <= k < b])


def test_sorted_bulk_load_fills_pages():
    loop, bulk = new_tree(4096), new_tree(4096)
    items = [(b"key%08d" % i, b"v" * 100) for i in range(20_000)]
    for k, v in items:
        loop.put(k, v)
    assert bulk.put_sorted(items) == 20_000
    check_shape(bulk)

    def leaves(tree):
        n, stack = 0, [tree.root()]
        while stack:
            node = stack.pop()
            if type(node) is Branch:
                stack.extend(tree.kid(node, i) for i in range(len(node.kids)))
            else:
                n += 1
        return n
    assert leaves(bulk) < leaves(loop) * 0.6  # full pages, not half-full ones


def test_iteration_survives_writes_in_the_same_tree():
    tree = new_tree()
    for i in range(2000):
        tree.put(b"k%05d" % i, b"v")
    seen, added, deleted = [], [], set()
    for k, _ in cursor.items(tree, live=True):
        seen.append(k)
        if len(seen) % 7 == 0:
            tree.put(k + b"x", b"new")       # just after the cursor: must be seen
            added.append(k + b"x")
            gone = b"k%05d" % (len(seen) * 3 % 2000)
            if tree.delete(gone):
                deleted.add(gone)
    assert seen == sorted(set(seen))
    assert set(added) <= set(seen)
    late = [k for k in seen if k in deleted and k > seen[-1]]
    assert not late


def test_random_workload_with_writes_between_commits():
    rnd = random.Random(3)
    tree, model = new_tree(), {}
    for txn in range(2, 12):
        tree.store.begin(txn, txn - 1)
        for _ in range(500):
            k = b"k%04d" % rnd.randrange(3000)
            if rnd.random() < 0.4:
                tree.delete(k)
                model.pop(k, None)
            else:
                tree.put(k, b"x" * rnd.randrange(200))
                model[k] = tree.get(k)
        ref = tree.write(txn)
        tree = Tree(tree.nodes, ref)
        check_shape(tree)
        assert dict(cursor.items(tree)) == model


def test_reverse_iteration_survives_writes():
    tree = new_tree()
    for i in range(1000):
        tree.put(b"k%05d" % (i * 10), b"v")
    seen, added = [], []
    for k, _ in cursor.items(tree, reverse=True, live=True):
        seen.append(k)
        if len(seen) % 5 == 0:
            tree.put(k[:-1] + b"!", b"new")  # just before k: must be seen next
            added.append(k[:-1] + b"!")
    assert seen == sorted(set(seen), reverse=True)
    assert set(added) <= set(seen)


@settings(max_examples=80, deadline=None)
@given(ops=ops, probes=st.lists(st.binary(max_size=8) | st.integers(0, 3100).map(
    lambda i: b"k%05d" % i), max_size=60), cap=st.sampled_from([4, 65536]))
def test_point_read_descents_agree(ops, probes, cap):
    """btree.descend (the C descent when built) and py_get give the same answer for every
    key: on a writer's dirty tree, on the written clean tree (children found in the node
    cache or, with a tiny cache, loaded through nodes.load) and for overflow values."""
    from cowdb.tree import btree
    tree = new_tree()
    tree.store.begin(2, 1)
    model = {}
    for i, size in ops:
        k = b"k%05d" % i
        if size is None:
            tree.delete(k)
            model.pop(k, None)
        else:
            tree.put(k, bytes([i % 251]) * size)
            model[k] = bytes([i % 251]) * size
    keys = list(model) + probes
    for t in (tree, Tree(NodeCache(tree.store, cap=cap), tree.write(2))):
        if t.root() is None:
            continue
        for k in keys:
            got = btree.descend(t.root(), k, t.nodes)
            want = btree.py_get(t.root(), k, t.nodes)
            assert got is want or got == want or (
                type(got) is type(want) is btree.Overflow and vars_of(got) == vars_of(want))
            assert t.get(k) == model.get(k)


def vars_of(ov):
    return ov.page, ov.length, ov.checksum, ov.txn


def test_the_c_descent_is_used_unless_pure_python_is_asked_for():
    import os
    from cowdb.tree import btree
    if btree._tree_c is None:
        assert btree.descend is btree.py_get
    elif os.environ.get("COWDB_PURE_PYTHON") == "1":
        assert btree.descend is btree.py_get
    else:
        assert btree.descend is btree._tree_c.get


def test_a_stale_tree_accelerator_falls_back_to_python():
    """A compiled _tree_c from an older checkout is refused with a warning saying how to
    rebuild, and the tree reads through py_get (the same loader as cowdb.pds's)."""
    import os
    import subprocess
    import sys
    code = (
        "import sys, types, warnings\n"
        "stale = types.ModuleType('cowdb.tree._tree_c')\n"
        "sys.modules['cowdb.tree._tree_c'] = stale\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from cowdb.tree import btree\n"
        "import cowdb\n"
        "db = cowdb.open()\n"
        "with db.write() as tx:\n"
        "    tx[b'k'] = b'v'\n"
        "print(btree.descend is btree.py_get, db.read()[b'k'].decode(),"
        " 'build_ext' in str(caught[0].message))"
    )
    env = {k: v for k, v in os.environ.items() if k != "COWDB_PURE_PYTHON"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == ["True", "v", "True"]
