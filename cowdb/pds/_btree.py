"""The persistent B+tree under PSortedMap.

A node is a list ``[keys, items, counts, owner]``.  In a leaf, ``items``
are the values and ``counts`` is None.  In a branch, ``items`` are the
children, ``keys[i]`` separates ``items[i]`` (keys below it) from
``items[i + 1]`` (keys at or above it), and ``counts[i]`` is the number of
keys under ``items[i]``, which is what makes positional access O(log n).
The tree's height is kept by the map, so nodes need no type tag.

Updates copy the path from the root (path copying).  As in the hash trie,
a node whose ``owner`` is the running mutation's token is edited in place,
and a node a mutation takes over gets private copies of all three lists,
since other versions may still share them.  Persistent updates (owner None)
share the lists they do not change.

Nodes hold between MIN and MAX entries (the root fewer); a node that falls
below MIN after a delete merges with or borrows from a sibling, so the
tree shrinks as it empties.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import accumulate
from typing import Any, TypeAlias

from cowdb.pds._missing import MISSING

MAX = 64
MIN = MAX // 4

# A node: [keys, items, counts, owner], a heterogeneous list (see above); items are
# users' values in a leaf and child nodes in a branch, so its slots are typed Any.
Node: TypeAlias = list[Any]
# The path to a leaf: (branch, index of the child taken) from the root down.
Path: TypeAlias = list[tuple[Node, int]]


def size(node: Node) -> int:
    return len(node[0]) if node[2] is None else sum(node[2])


def _editable(node: Node, owner: object) -> Node:
    """``node`` if this mutation owns it, else a copy with private lists."""
    if owner is not None and node[3] is owner:
        return node
    counts = node[2]
    return [node[0][:], node[1][:], None if counts is None else counts[:], owner]


def find_leaf(root: Node, height: int, key: Any) -> Node:
    """The leaf where ``key`` is or would be."""
    node = root
    for _ in range(height):
        node = node[1][bisect_right(node[0], key)]
    return node


def lookup(root: Node, height: int, key: Any, default: Any) -> Any:
    keys, vals = find_leaf(root, height, key)[:2]
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        return vals[i]
    return default


def _descend(root: Node, height: int, key: Any) -> tuple[Path, Node]:
    """The path [(branch, child index), ...] to the leaf for ``key``, and the leaf."""
    path: Path = []
    node = root
    for _ in range(height):
        j = bisect_right(node[0], key)
        path.append((node, j))
        node = node[1][j]
    return path, node


def _split(node: Node, owner: object) -> tuple[Node, Any, Node]:
    """Split an overfull node into (left, separator, right)."""
    keys, items, counts = node[0], node[1], node[2]
    h = len(items) // 2
    if counts is None:
        return [keys[:h], items[:h], None, owner], keys[h], [keys[h:], items[h:], None, owner]
    left = [keys[:h - 1], items[:h], counts[:h], owner]
    return left, keys[h - 1], [keys[h:], items[h:], counts[h:], owner]


def assoc(root: Node, height: int, key: Any, val: Any, owner: object) -> tuple[Node, int, Any]:
    """Bind ``key``; return (root, height, previous value or MISSING)."""
    path, leaf = _descend(root, height, key)
    keys = leaf[0]
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        old = leaf[1][i]
        if old is val:
            return root, height, old
        if owner is None:  # share the keys: only one value changes
            node = [keys, leaf[1][:], None, None]
        else:
            node = _editable(leaf, owner)
        node[1][i] = val
        return _replace_child(path, node, owner, root), height, old
    node = _editable(leaf, owner)
    node[0].insert(i, key)
    node[1].insert(i, val)
    return _grow(path, node, owner, height) + (MISSING,)



def _replace_child(path: Path, node: Node, owner: object, root: Node) -> Node:
    """Point the path at ``node``; counts do not change."""
    while path:
        parent, j = path.pop()
        if parent[1][j] is node:  # edited in place all the way up
            return root
        if owner is None:
            parent = [parent[0], parent[1][:], parent[2], None]
        else:
            parent = _editable(parent, owner)
        parent[1][j] = node
        node = parent
    return node


def _grow(path: Path, node: Node, owner: object, height: int) -> tuple[Node, int]:
    """Point the path at ``node``, which gained one key; split what overflows."""
    split: tuple[Node, Any, Node] | None = None
    while True:
        if len(node[1]) > MAX:
            left, sep, right = _split(node, owner)
            split = left, sep, right
        else:
            split = None
        if not path:
            break
        parent, j = path.pop()
        parent = _editable(parent, owner)
        if split is None:
            parent[1][j] = node
            parent[2][j] += 1
        else:
            left, sep, right = split
            parent[0].insert(j, sep)
            parent[1][j:j + 1] = (left, right)
            parent[2][j:j + 1] = (size(left), size(right))
        node = parent
    if split is not None:
        left, sep, right = split
        return [[sep], [left, right], [size(left), size(right)], owner], height + 1
    return node, height


def dissoc(root: Node, height: int, key: Any, owner: object) -> tuple[Node, int, Any]:
    """Remove ``key``; return (root, height, removed value or MISSING)."""
    path, leaf = _descend(root, height, key)
    keys = leaf[0]
    i = bisect_left(keys, key)
    if i == len(keys) or not keys[i] == key:
        return root, height, MISSING
    old = leaf[1][i]
    node = _editable(leaf, owner)
    del node[0][i]
    del node[1][i]
    while path:
        parent, j = path.pop()
        parent = _editable(parent, owner)
        parent[1][j] = node
        parent[2][j] -= 1
        if len(node[1]) < MIN and len(parent[1]) > 1:
            _rebalance(parent, j, owner)
        node = parent
    if height and len(node[1]) == 1:  # a root with one child: drop a level
        return node[1][0], height - 1, old
    return node, height, old


def _rebalance(parent: Node, j: int, owner: object) -> None:
    """Merge the small child ``j`` of ``parent`` with a sibling, or borrow."""
    if j == 0:
        j = 1
    left = parent[1][j - 1]
    right = parent[1][j]
    sep = parent[0][j - 1]
    if left[2] is None:
        keys = left[0] + right[0]
        counts = None
    else:
        keys = left[0] + [sep] + right[0]
        counts = left[2] + right[2]
    merged = [keys, left[1] + right[1], counts, owner]
    if len(merged[1]) <= MAX:
        del parent[0][j - 1]
        parent[1][j - 1:j + 1] = [merged]
        parent[2][j - 1:j + 1] = [parent[2][j - 1] + parent[2][j]]
        return
    left, sep, right = _split(merged, owner)
    parent[0][j - 1] = sep
    parent[1][j - 1:j + 1] = (left, right)
    parent[2][j - 1:j + 1] = (size(left), size(right))


def build(pairs: list[tuple[Any, Any]]) -> tuple[Node, int]:
    """(root, height) for pairs sorted by distinct keys, bottom-up."""
    n = len(pairs)
    nodes: list[Node] = [[[k for k, _ in chunk], [v for _, v in chunk], None, None]
                         for chunk in _chunks(pairs)]
    height = 0
    while len(nodes) > 1:
        groups = _chunks(nodes)
        nodes = [
            [[_first_key(c) for c in g[1:]], g, [size(c) for c in g], None]
            for g in groups
        ]
        height += 1
    return (nodes[0] if n else [[], [], None, None]), height


def _chunks(seq: list[Any]) -> list[list[Any]]:
    """``seq`` cut into nearly equal runs of at most MAX."""
    n = len(seq)
    parts = -(-n // MAX)
    return [seq[i * n // parts:(i + 1) * n // parts] for i in range(parts)]


def _first_key(node: Node) -> Any:
    while node[2] is not None:
        node = node[1][0]
    return node[0][0]


def position(root: Node, height: int, key: Any, right: bool) -> int:
    """How many keys are below ``key`` (at or below it if ``right``)."""
    pos = 0
    node = root
    for _ in range(height):
        j = bisect_right(node[0], key)
        pos += sum(node[2][:j])
        node = node[1][j]
    return pos + (bisect_right if right else bisect_left)(node[0], key)


def at(root: Node, height: int, i: int) -> tuple[Any, Any]:
    """(key, value) at position ``i`` (0 <= i < size)."""
    node = root
    for _ in range(height):
        sums = list(accumulate(node[2]))
        j = bisect_right(sums, i)
        if j:
            i -= sums[j - 1]
        node = node[1][j]
    return node[0][i], node[1][i]


def leaves_from(root: Node, height: int, key: Any = MISSING,
                reverse: bool = False) -> Iterator[Node]:
    """The leaves in key order (or reversed), from the one where ``key`` is.

    Without ``key``, from the first (or last) leaf.  The siblings passed on
    the way down wait on a stack, so starting mid-tree costs one descent.
    """
    stack: list[tuple[Node, int]] = []
    node = root
    h = height
    while True:
        while h:
            children = node[1]
            if key is MISSING:
                j = len(children) - 1 if reverse else 0
            else:
                j = bisect_right(node[0], key)
            h -= 1
            stack.extend((c, h) for c in (children[:j] if reverse else reversed(children[j + 1:])))
            node = children[j]
        yield node
        if not stack:
            return
        node, h = stack.pop()
        key = MISSING


def diff(a: Node, ha: int, b: Node, hb: int) -> Iterator[tuple[Any, Any, Any]]:
    """Yield (key, old, new) in key order for keys bound differently.

    Both trees are walked as stacks of pending subtrees and items; when the
    two stacks show the same node on top, it is skipped unread.  Versions
    of one map share all but a few paths, so this costs those paths.
    """
    # pending subtrees (node, height) and items ((key, value), -1), the next on top
    sa: list[tuple[Any, int]] = [(a, ha)]
    sb: list[tuple[Any, int]] = [(b, hb)]
    while sa and sb:
        x, hx = sa[-1]
        y, hy = sb[-1]
        if hx >= 0 and x is y:
            sa.pop()
            sb.pop()
        elif hx >= 0 and hx >= hy:
            _expand(sa)
        elif hy >= 0:
            _expand(sb)
        else:
            (kx, vx), (ky, vy) = x, y
            if kx < ky:
                sa.pop()
                yield kx, vx, MISSING
            elif ky < kx:
                sb.pop()
                yield ky, MISSING, vy
            else:
                sa.pop()
                sb.pop()
                if not (vx is vy or vx == vy):
                    yield kx, vx, vy
    for stack, removed in ((sa, True), (sb, False)):
        while stack:
            if stack[-1][1] >= 0:
                _expand(stack)
            else:
                k, v = stack.pop()[0]
                yield (k, v, MISSING) if removed else (k, MISSING, v)


def _expand(stack: list[tuple[Any, int]]) -> None:
    """Replace the subtree on top of ``stack`` by its children (or items)."""
    node, h = stack.pop()
    if h:
        stack.extend((c, h - 1) for c in reversed(node[1]))
    else:
        stack.extend(((k, v), -1) for k, v in zip(reversed(node[0]), reversed(node[1])))
