"""Ordered iteration over a Tree: forward or reverse, bounded by [start, stop).

The cursor keeps the path of (branch, index) from the root to the current
leaf and yields a leaf's slice at a time through ``zip`` (C speed). A tree
that may change while it is iterated (a transaction's: ``live=True``) is
watched after every item instead: when it changed, the cursor re-seeks
just past the last key it yielded, so it sees exactly the current tree.
"""
from bisect import bisect_left, bisect_right

from .node import Branch


def items(tree, start=None, stop=None, reverse=False, live=False):
    """Yield (key, value) in key order with start <= key < stop."""
    if reverse:
        return _backward(tree, start, stop, live)
    return _forward(tree, start, stop, live)


def _watched(tree, ks, vs, mod):
    """Yield pairs one by one; stop early (returning the last key) if the tree changes."""
    for k, v in zip(ks, vs):
        yield k, v
        if tree.mod != mod:
            return k
    return None


def _values(tree, leaf, i, j):
    vals = leaf.vals[i:j]
    if not leaf.big:
        return vals
    return [v if type(v) is bytes else tree.read_overflow(v) for v in vals]


def _seek(tree, key, right):
    """Path to the leaf holding key; ``right``: first leaf when key is None else last."""
    node, path = tree.root(), []
    while type(node) is Branch:
        if key is None:
            i = len(node.kids) - 1 if right else 0
        else:
            i = bisect_right(node.keys, key) - 1
        path.append([node, i])
        node = tree.kid(node, i)
    return node, path


def _step(tree, path, forward):
    """Move path to the next (or previous) leaf; None at the end."""
    while path:
        top = path[-1]
        top[1] += 1 if forward else -1
        if 0 <= top[1] < len(top[0].kids):
            node = tree.kid(top[0], top[1])
            while type(node) is Branch:
                i = 0 if forward else len(node.kids) - 1
                path.append([node, i])
                node = tree.kid(node, i)
            return node
        path.pop()
    return None


def _forward(tree, start, stop, live):
    if tree.root() is None:
        return
    leaf, path = _seek(tree, start, False)
    i = 0 if start is None else bisect_left(leaf.keys, start)
    mod = tree.mod
    while leaf is not None:
        keys = leaf.keys
        j = len(keys) if stop is None or not keys or keys[-1] < stop else bisect_left(keys, stop, i)
        if i < j:
            ks = keys[i:j]
            if live:
                last = yield from _watched(tree, ks, _values(tree, leaf, i, j), mod)
                if last is not None:  # changed under us: find the next key afresh
                    yield from _forward(tree, last + b"\x00", stop, live)
                    return
            else:
                yield from zip(ks, _values(tree, leaf, i, j))
        if j < len(keys):
            return
        leaf, i = _step(tree, path, True), 0


def _backward(tree, start, stop, live):
    if tree.root() is None:
        return
    leaf, path = _seek(tree, stop, True)
    j = len(leaf.keys) if stop is None else bisect_left(leaf.keys, stop)
    mod = tree.mod
    while leaf is not None:
        keys = leaf.keys
        i = 0 if start is None or not keys or keys[0] >= start else bisect_left(keys, start, 0, j)
        if i < j:
            ks, vs = keys[i:j][::-1], _values(tree, leaf, i, j)[::-1]
            if live:
                last = yield from _watched(tree, ks, vs, mod)
                if last is not None:
                    yield from _backward(tree, start, last, live)
                    return
            else:
                yield from zip(ks, vs)
        if i > 0:
            return
        leaf = _step(tree, path, False)
        j = len(leaf.keys) if leaf is not None else 0
