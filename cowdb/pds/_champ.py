"""The CHAMP hash trie under PMap and PSet (Steindorfer & Vinju, OOPSLA 2015).

A node is a plain list, because creating and copying lists is the cheapest
thing pure Python does, and path copying does little else::

    [datamap, nodemap, owner, k0, v0, k1, v1, ..., child_1, child_0]

Bit ``b`` of ``datamap`` says slot ``b`` holds an inline key/value pair;
bit ``b`` of ``nodemap`` says it holds a child node.  Pairs are stored in
slot order after the three header fields, children in reverse slot order
at the end, so both are found by a popcount of the lower bits.  ``owner``
is the token of the mutation that created the node: only that mutation may
edit it in place (persistent updates pass ``owner=None`` and never do).

Each level consumes BITS bits of the 64-bit hash; a node reached after all
64 bits are used is a collision node, ``[0, 0, owner, k0, v0, ...]``,
scanned linearly.  Deletion keeps the trie canonical: a node left with a
single pair and no children is folded into its parent, so the shape depends
only on the set of keys, never on the order of updates.  Equality and diff
rely on that to compare node by node and skip shared subtrees.

Lookups are loops; updates recurse, which measured faster than keeping
an explicit path (the trie is at most 13 levels deep).

``lookup``, ``assoc``, ``dissoc``, ``build_dict`` and the ``iter_*`` functions
have C versions in the optional extension ``_champ_c`` (same signatures,
same tries, same results), used when it was built unless
``COWDB_PURE_PYTHON=1``: see the end of this file.  The nodes the C code
makes are not lists but ``_champ_c.Node`` objects, one block each (the
bitmaps, the owner and the items inline: a lookup reads one object per
level), which read as the list above from Python: ``len``, indexing
(negative too; the bitmaps as ints), slices (lists), iteration.  Except
index 2, the owner, which reads as None: this code never owns a C node,
so ``_editable`` copies one (``node[:]`` is a list) before any edit and
never writes into it.  The C code likewise never edits a list node in
place: it copies it into a C node.  So a trie may hold both kinds (after
``select`` switched the implementation), each side editing only its own
nodes in place, and everything here that only reads nodes (equality,
diff, ``_walk``, the iterators) works on both.
"""

import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from itertools import chain, compress
from operator import is_not
from types import ModuleType
from typing import Any, Literal, TypeAlias, overload

from cowdb._accelerators import load, wanted
from cowdb.pds._hashing import accumulate, shuffle
from cowdb.pds._missing import MISSING

BITS = 5
_MASK = (1 << BITS) - 1
M64 = (1 << 64) - 1

# A node: [datamap, nodemap, owner, k0, v0, ..., children], a list (or a C node that reads
# as one) whose slots hold ints, the owner, users' keys and values, and child nodes.
Node: TypeAlias = list[Any]
# The (key, old, new) triples diff yields; MISSING on the side where the key is absent.
Change: TypeAlias = tuple[Any, Any, Any]


def lookup(node: Node, key: object, h: int, default: Any) -> Any:
    """The value of ``key`` (whose masked hash is ``h``), or ``default``.

    The hottest loop of all: it shifts ``h`` instead of counting levels,
    and only a miss checks for a collision node (the one kind of node with
    both bitmaps empty, bar the empty root).
    """
    while True:
        bit = 1 << (h & _MASK)
        dm = node[0]
        if dm & bit:
            i = 3 + 2 * (dm & (bit - 1)).bit_count()
            k = node[i]
            if k is key or k == key:
                return node[i + 1]
            return default
        nm = node[1]
        if nm & bit:
            node = node[~(nm & (bit - 1)).bit_count()]
            h >>= BITS
            continue
        if dm or nm:
            return default
        for i in range(3, len(node), 2):
            k = node[i]
            if k is key or k == key:
                return node[i + 1]
        return default


def _editable(node: Node, owner: object) -> Node:
    """``node`` itself if this mutation owns it, else an owned copy."""
    if owner is not None and node[2] is owner:
        return node
    node = node[:]
    node[2] = owner
    return node


def _pair(k1: object, v1: object, h1: int, k2: object, v2: object, h2: int, shift: int,
          owner: object) -> Node:
    """The smallest subtree at ``shift`` holding two distinct keys."""
    if shift >= 64:
        return [0, 0, owner, k1, v1, k2, v2]
    b1 = (h1 >> shift) & _MASK
    b2 = (h2 >> shift) & _MASK
    if b1 == b2:
        return [0, 1 << b1, owner, _pair(k1, v1, h1, k2, v2, h2, shift + BITS, owner)]
    if b1 < b2:
        return [(1 << b1) | (1 << b2), 0, owner, k1, v1, k2, v2]
    return [(1 << b1) | (1 << b2), 0, owner, k2, v2, k1, v1]


def assoc(node: Node, h: int, key: object, val: object, owner: object, shift: int,
          box: list[Any]) -> Node:
    """``node`` with ``key`` bound to ``val``; the old value goes into ``box``.

    ``box`` stays empty when the key is new.  The node itself comes back
    when nothing changed, or when the mutation ``owner`` edited it in
    place, so callers compare identities to know what to copy.  Recursion
    measured faster than a loop with an explicit path here: the path
    bookkeeping costs more than the calls.
    """
    if shift >= 64:
        return _assoc_collision(node, key, val, owner, box)
    bit = 1 << ((h >> shift) & _MASK)
    dm = node[0]
    if dm & bit:
        i = 3 + 2 * (dm & (bit - 1)).bit_count()
        k = node[i]
        if k is key or k == key:
            old = node[i + 1]
            box.append(old)
            if old is val:
                return node
            new = _editable(node, owner)
            new[i + 1] = val
            return new
        # The slot holds another key: move both one level down.
        sub = _pair(k, node[i + 1], hash(k) & M64, key, val, h, shift + BITS, owner)
        new = _editable(node, owner)
        del new[i:i + 2]
        nm = new[1]
        new[0] = dm ^ bit
        new[1] = nm | bit
        new.insert(len(new) - (nm & (bit - 1)).bit_count(), sub)
        return new
    nm = node[1]
    if nm & bit:
        ci = ~(nm & (bit - 1)).bit_count()
        child = node[ci]
        new_child = assoc(child, h, key, val, owner, shift + BITS, box)
        if new_child is child:
            return node
        if owner is None or node[2] is not owner:
            node = node[:]
            node[2] = owner
        node[ci] = new_child
        return node
    new = _editable(node, owner)
    i = 3 + 2 * (dm & (bit - 1)).bit_count()
    new[i:i] = (key, val)
    new[0] = dm | bit
    return new


def _assoc_collision(node: Node, key: object, val: object, owner: object,
                     box: list[Any]) -> Node:
    for i in range(3, len(node), 2):
        k = node[i]
        if k is key or k == key:
            old = node[i + 1]
            box.append(old)
            if old is val:
                return node
            new = _editable(node, owner)
            new[i + 1] = val
            return new
    new = _editable(node, owner)
    new += (key, val)
    return new


def dissoc(node: Node, h: int, key: object, owner: object, shift: int,
           box: list[Any]) -> Node:
    """``node`` without ``key``; the removed value goes into ``box``.

    A child left holding a single pair and no children is folded into its
    parent: this keeps the trie canonical, and its nodes small.
    """
    if shift >= 64:
        for i in range(3, len(node), 2):
            k = node[i]
            if k is key or k == key:
                box.append(node[i + 1])
                new = _editable(node, owner)
                del new[i:i + 2]
                return new
        return node
    bit = 1 << ((h >> shift) & _MASK)
    dm = node[0]
    if dm & bit:
        i = 3 + 2 * (dm & (bit - 1)).bit_count()
        k = node[i]
        if not (k is key or k == key):
            return node
        box.append(node[i + 1])
        new = _editable(node, owner)
        del new[i:i + 2]
        new[0] = dm ^ bit
        return new
    nm = node[1]
    if not nm & bit:
        return node
    ci = ~(nm & (bit - 1)).bit_count()
    child = node[ci]
    new_child = dissoc(child, h, key, owner, shift + BITS, box)
    if new_child[1] == 0 and len(new_child) == 5:  # a lone pair: fold it in
        new = _editable(node, owner)
        del new[ci]
        i = 3 + 2 * (dm & (bit - 1)).bit_count()
        new[i:i] = (new_child[3], new_child[4])
        new[0] = dm | bit
        new[1] = nm ^ bit
        return new
    if new_child is child:
        return node
    new = _editable(node, owner)
    new[ci] = new_child
    return new


def build(entries: list[tuple[int, Any, Any]], shift: int = 0) -> Node:
    """A fresh trie from ``[(masked hash, key, value), ...]`` with distinct keys.

    Partitions by hash fragment, level by level, instead of inserting one
    pair at a time: several times faster for building from a dict.
    """
    node: Node
    if shift >= 64:
        node = [0, 0, None]
        for _, k, v in entries:
            node += (k, v)
        return node
    groups: defaultdict[int, list[tuple[int, Any, Any]]] = defaultdict(list)
    for e in entries:
        groups[e[0] >> shift & _MASK].append(e)
    node = [0, 0, None]
    children: list[Node] = []
    dm = nm = 0
    for frag in sorted(groups):
        group = groups[frag]
        if len(group) == 1:
            dm |= 1 << frag
            node += group[0][1:]
        else:
            nm |= 1 << frag
            if len(group) == 2:  # the usual case near the leaves
                (h1, k1, v1), (h2, k2, v2) = group
                children.append(_pair(k1, v1, h1, k2, v2, h2, shift + BITS, None))
            else:
                children.append(build(group, shift + BITS))
    node[0] = dm
    node[1] = nm
    node += reversed(children)
    return node


@overload
def build_dict(d: Mapping[Any, Any], pairs: Literal[False]) -> tuple[Node, int, int]: ...
@overload
def build_dict(d: Mapping[Any, Any], pairs: bool = True) -> tuple[Node, int, int | None]: ...
def build_dict(d: Mapping[Any, Any], pairs: bool = True) -> tuple[Node, int, int | None]:
    """``(root, count, acc)``: build()'s trie of dict ``d``'s items, how many it holds,
    and the hash accumulator of its pairs (``pairs``: a map's; None if a value cannot be
    hashed) or of its keys (a set's, whose values are None).

    One call for what a new PMap or PSet needs, so that the C version makes it in
    one pass over ``d`` (each key's object is read once) with no entry tuples.
    """
    entries = [(hash(k) & M64, k, v) for k, v in d.items()]
    root = build(entries)
    if not pairs:  # a set's elements are hashed already: not their __hash__ again
        acc = 0
        for h, _, _ in entries:
            acc ^= shuffle(h)
        return root, len(entries), acc
    try:
        return root, len(entries), accumulate(e[1:] for e in entries)
    except Exception:  # an unhashable value: see pmap._rehash
        return root, len(entries), None


def _split(node: Node) -> int:
    """Where the pairs of ``node`` end and its children begin."""
    nodemap: int = node[1]
    return len(node) - nodemap.bit_count()


def _walk(root: Node) -> Iterator[tuple[Node, int]]:
    """Each node under ``root`` with the index where its pairs end."""
    stack = [root]
    pop = stack.pop
    push = stack.extend
    while stack:
        node = pop()
        n = _split(node)
        push(node[n:])
        yield node, n


# Each iterator is a C-level chain over per-node slices: no Python frame
# runs per element, only one per node.

def iter_items(root: Node) -> Iterator[tuple[Any, Any]]:
    """Every (key, value) pair; the order follows the hashes."""
    return chain.from_iterable(zip(node[3:n:2], node[4:n:2]) for node, n in _walk(root))


def iter_keys(root: Node) -> Iterator[Any]:
    """Every key, in iter_items order."""
    return chain.from_iterable(node[3:n:2] for node, n in _walk(root))


def iter_values(root: Node) -> Iterator[Any]:
    """Every value, in iter_items order."""
    return chain.from_iterable(node[4:n:2] for node, n in _walk(root))


def _collision_dict(node: Node) -> dict[Any, Any]:
    return dict(zip(node[3::2], node[4::2]))


def equal(a: Node, b: Node) -> bool:
    """Whether two tries hold equal pairs, skipping subtrees they share.

    Canonical shape means equal contents have equal bitmaps at every node,
    so any bitmap difference answers False without looking further.  Only
    the pairs of children that differ are pushed, picked by C-level
    iterators over the two slices: no Python loop over the children, and
    no indexing, which costs more on the C accelerator's nodes than on
    lists.
    """
    stack = [(a, b)]
    pop = stack.pop
    push = stack.extend
    while stack:
        x, y = pop()
        if x is y:
            continue
        if x[0] != y[0] or x[1] != y[1] or len(x) != len(y):
            return False
        if not (x[0] or x[1]):  # collision nodes: same pairs in any order
            if _collision_dict(x) != _collision_dict(y):
                return False
            continue
        n = _split(x)
        if x[3:n] != y[3:n]:
            return False
        if n < len(x):
            xs, ys = x[n:], y[n:]
            push(compress(zip(xs, ys), map(is_not, xs, ys)))
    return True


def diff(a: Node, b: Node, shift: int = 0) -> Iterator[Change]:
    """Yield (key, old, new) for every key whose binding differs.

    ``old`` or ``new`` is MISSING where the key is absent.  Subtrees the two
    tries share are skipped, so two versions one update apart cost one path.
    """
    if a is b:
        return
    if shift >= 64:
        yield from diff_dicts(_collision_dict(a), _collision_dict(b))
        return
    adm, anm, bdm, bnm = a[0], a[1], b[0], b[1]
    bits = adm | anm | bdm | bnm
    while bits:
        bit = bits & -bits
        bits ^= bit
        below = bit - 1
        if adm & bit:
            i = 3 + 2 * (adm & below).bit_count()
            ka, va = a[i], a[i + 1]
            if bdm & bit:
                j = 3 + 2 * (bdm & below).bit_count()
                kb, vb = b[j], b[j + 1]
                if ka is kb or ka == kb:
                    if not (va is vb or va == vb):
                        yield ka, va, vb
                else:
                    yield ka, va, MISSING
                    yield kb, MISSING, vb
            elif bnm & bit:
                sub = b[len(b) - 1 - (bnm & below).bit_count()]
                yield from _diff_pair_vs_node(ka, va, sub, shift + BITS, False)
            else:
                yield ka, va, MISSING
        elif anm & bit:
            sa = a[len(a) - 1 - (anm & below).bit_count()]
            if bdm & bit:
                j = 3 + 2 * (bdm & below).bit_count()
                yield from _diff_pair_vs_node(b[j], b[j + 1], sa, shift + BITS, True)
            elif bnm & bit:
                sb = b[len(b) - 1 - (bnm & below).bit_count()]
                if sa is not sb:  # shared: skipped without a generator
                    yield from diff(sa, sb, shift + BITS)
            else:
                for k, v in iter_items(sa):
                    yield k, v, MISSING
        elif bdm & bit:
            j = 3 + 2 * (bdm & below).bit_count()
            yield b[j], MISSING, b[j + 1]
        else:
            for k, v in iter_items(b[len(b) - 1 - (bnm & below).bit_count()]):
                yield k, MISSING, v


def _diff_pair_vs_node(key: object, val: object, node: Node, shift: int,
                       pair_is_new: bool) -> Iterator[Change]:
    """Diff one inline pair against the subtree that took its slot."""
    other = lookup(node, key, (hash(key) & M64) >> shift, MISSING)
    if other is MISSING:
        yield (key, MISSING, val) if pair_is_new else (key, val, MISSING)
    elif not (other is val or other == val):
        yield (key, other, val) if pair_is_new else (key, val, other)
    for k, v in iter_items(node):
        if not (k is key or k == key):
            yield (k, v, MISSING) if pair_is_new else (k, MISSING, v)


def diff_dicts(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> Iterator[Change]:
    """diff() for any two mappings, by lookups."""
    for k, v in a.items():
        w = b.get(k, MISSING)
        if w is MISSING or not (v is w or v == w):
            yield k, v, w
    for k, w in b.items():
        if k not in a:
            yield k, MISSING, w


# The optional C accelerator (_champ_c.c) replaces the hot operations above
# (and _hashing.accumulate); everything else here works on the nodes either
# version makes.  The Python versions stay reachable as py_*, and recurse
# through the module globals, so rebinding the names switches the whole path.
# PMap and PSet import these names, so the choice is made here, before they do.
#
# It also holds the C bases of PMap and PMapMutation (MapBase, MutationBase:
# their fields and hot methods).  A class cannot change its base once made,
# so ``accelerator`` (the module, or None) is fixed at import; select()
# switches those methods by installing the Python reference methods on the
# classes (select("python")) and removing them again (select("c")).
_NAMES = ("lookup", "assoc", "dissoc", "build_dict", "iter_keys", "iter_values", "iter_items",
          "accumulate")
py_lookup, py_assoc, py_dissoc, py_build_dict = lookup, assoc, dissoc, build_dict
py_iter_keys, py_iter_values = iter_keys, iter_values
py_iter_items, py_accumulate = iter_items, accumulate

IMPLEMENTATIONS: dict[str, tuple[Callable[..., Any], ...]] = {
    "python": (py_lookup, py_assoc, py_dissoc, py_build_dict, py_iter_keys, py_iter_values,
               py_iter_items, py_accumulate)}
API = 2  # the _champ_c this code is written against (its API constant)
accelerator: ModuleType | None = None
_champ_c = load("cowdb.pds", "_champ_c", API)  # None: not built, or out of date
if _champ_c is not None:
    IMPLEMENTATIONS["c"] = tuple(getattr(_champ_c, name) for name in _NAMES)
    if wanted():
        (lookup, assoc, dissoc, build_dict, iter_keys, iter_values, iter_items,
         accumulate) = IMPLEMENTATIONS["c"]
        accelerator = _champ_c

_OVERRIDES: list[tuple[type, dict[str, Any]]] = []  # (class on a C base, {name: method})


def python_methods(cls: type, reference: type) -> None:
    """Let select("python") run ``cls`` (whose base is C) on the methods of
    ``reference`` (the pure-Python base it has without the accelerator)."""
    if accelerator is None:
        return
    methods: dict[str, Any] = {}
    for klass in reference.__mro__[:-1]:
        for name, value in vars(klass).items():
            if callable(value) and name not in methods and name not in (
                    "__init_subclass__", "__subclasshook__"):
                methods[name] = value
    _OVERRIDES.append((cls, methods))


def implementation() -> str:
    """"c" or "python": which trie operations PMap and PSet run on."""
    return "python" if lookup is py_lookup else "c"


def select(name: str) -> None:
    """Run PMap and PSet on ``name`` ("c" or "python") from now on.

    For tests and benchmarks that compare the two in one process; users get
    the choice made at import.  Rebinds the trie functions in every loaded
    cowdb.pds module that holds them, which is how PMap and PSet use them,
    and puts the Python methods on (or takes them off) the classes whose
    base is the accelerator's.
    """
    new = dict(zip(_NAMES, IMPLEMENTATIONS[name]))
    which = {id(fn): n for fns in IMPLEMENTATIONS.values() for n, fn in zip(_NAMES, fns)}
    for modname, module in list(sys.modules.items()):
        if (modname.startswith("cowdb.pds.") and module is not None
                and modname != "cowdb.pds._champ_c"):
            namespace = vars(module)
            for attr, value in list(namespace.items()):
                n = which.get(id(value))
                if n is not None and not attr.startswith("py_"):
                    namespace[attr] = new[n]
    for cls, methods in _OVERRIDES:
        for attr, fn in methods.items():
            if name == "python":
                setattr(cls, attr, fn)
            elif vars(cls).get(attr) is fn:
                delattr(cls, attr)
