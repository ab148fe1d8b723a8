"""The copy-on-write B+tree over a page store.

A ``Tree`` is one root. Reading never changes anything. Writing copies the
path from the root to the leaf on first touch (path copying); the copies
are owned by this tree and edited in place afterwards, so a transaction of
k updates copies at most k x depth nodes and usually far fewer. ``write``
stores every dirty node bottom-up and returns the new root reference; the
old root stays valid for every version that holds it.

Typing note: ``kids[i]`` is a page (int) or a dirty node, told apart by ``type(kid) is
int`` (no bool is ever a kid). A checker narrows that test only where it holds (int is not
a final class), so the hot paths mark the other branch ``# type: ignore[...]  # (a node)``
rather than pay for an isinstance() or a cast().

Nodes split when their image outgrows a page and merge with a sibling when
they fall under a quarter page, so every node is one page. Values longer
than a quarter page go to overflow runs when written.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from itertools import islice
from operator import itemgetter
from typing import Any

from .._accelerators import load, wanted
from ..errors import Corruption, ReadFailed
from ..pages import checksum as checksum_mod
from ..pages.checksum import (
    BRANCH,
    BRANCH_DELTA,
    HEADER,
    HEADER_SIZE,
    LEAF,
    LEAF_DELTA,
    OVERFLOW,
    verify,
    xxh3_64_intdigest,
)
from ..pages.mapfile import PageMap
from ..pages.meta import EMPTY, RootRef
from ..pages.store import PageStore
from .node import (
    BRANCH_CHAIN,
    BRANCH_ENTRY,
    DELTA_HEAD,
    LEAF_CHAIN,
    LEAF_ENTRY,
    MAX_CHAIN,
    OVERFLOW_REF_SIZE,
    U64,
    Branch,
    Leaf,
    Node,
    Overflow,
    _write_c,
    apply_delta,
    branch_size,
    decode,
    delta_base,
    depth,
    dirty_kids,
    encode_branch,
    encode_delta,
    encode_leaf,
    own_keys,
    rebase_delta,
    restore_base,
)


def py_get(node: Node, key: bytes, nodes: NodeCache) -> bytes | Overflow | None:
    """The value under ``key`` below ``node`` (bytes or an Overflow), or None: the
    point-read descent. _tree_c.get is this loop in C (see the end of this file)."""
    get = nodes.get
    while type(node) is Branch:
        i = bisect_right(node.keys, key) - 1
        kid = node.kids[i]
        if type(kid) is int:
            n = get(kid)
            if n is None or n.txn != node.txns[i]:  # not cached, or the page was rewritten
                n = nodes.load(kid, node.sums[i], node.txns[i])
            kid = n
        node = kid  # type: ignore[assignment]  # (a node)
    keys = node.keys
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        return node.vals[i]
    return None


def read_overflow(store: PageStore, ov: Overflow) -> bytes:
    """An overflow value, checked against the checksum and length its leaf recorded."""
    data = store.read(ov.page)
    if int.from_bytes(data[:8], "little") != ov.checksum or len(data) != HEADER_SIZE + ov.length:
        raise Corruption(f"page {ov.page} does not hold the value its leaf expects", ov.page)
    return data[HEADER_SIZE:]


def images(store: PageStore, page: int, node: Node) -> tuple[tuple[int, int, int], ...]:
    """The images a clean node at ``page`` is made of, as (page, units, txn): its own,
    and if it is a delta, every image of its chain down to the full one."""
    chain = node.chain
    return chain if chain is not None else ((page, store.pages_for(node.size), node.txn),)


def evict_oldest(cache: dict[int, Any], n: int) -> None:
    """Drop the ``n`` entries cached first (a dict keeps insertion order), from a cache that
    threads share: one may insert while this walks it, even inside a walk in C, since a
    collection there runs finalizers (Python code). dict.copy() of int keys allocates
    nothing per entry, so no collection runs inside it: the copy is walked. pop()
    tolerates a key another thread evicted meanwhile."""
    for k in list(islice(cache.copy(), n)):
        cache.pop(k, None)


class NodeCache(dict[int, Node]):
    """Decoded clean nodes by page number, bounded, oldest-first eviction.

    A delta image (node.py) is materialised here: where its base is cached, the delta is
    applied to a copy of it; else the chain's images are applied on their bytes in C and
    the full image decoded (one node, not one per image); once per process either way:
    warm reads find the full node.

    A cached node is used only if the txn that wrote it (``node.txn``) is the
    txn its parent recorded for that page: (page, txn) names one image for the
    life of the file, because a page is rewritten only by a later txn (after
    garbage collection, perhaps by another process), so a reused page is never
    served stale. Identity never rests on the 64-bit XXH3 checksum, which a
    user could craft a collision for (see "Threat model" in docs/format.md);
    the checksum is still verified on every load, to detect damage. A txn that
    fails and is retried under the same number could write other images at the
    same pages: ``forget_txn`` drops what it cached (the store's rollback calls it).
    """
    __slots__ = ("store", "cap")
    store: PageStore
    cap: int

    def __init__(self, store: PageStore, cap: int = 65536) -> None:
        super().__init__()
        self.store, self.cap = store, cap
        hooks = getattr(store, "rollback_hooks", None)
        if hooks is not None:
            hooks.append(self.forget_txn)

    def load(self, page: int, checksum: int, txn: int) -> Node:
        """The node at ``page`` that its parent recorded as (checksum, txn)."""
        node = self.get(page)
        if node is None or node.txn != txn:
            data = self.store.image(page)
            node = None if checked_leaf is None else checked_leaf(
                data, checksum, txn, checksum_mod.xxh3_64_intdigest)  # (as verify finds it)
            if node is None:
                node = self._decoded(data, page, checksum, txn)
            self.put(page, node)
        return node

    def _decoded(self, data: bytes, page: int, checksum: int, txn: int) -> Node:
        """The node the image ``data`` read from ``page`` holds, verified against its
        parent's (checksum, txn): what _write_c.checked_leaf leaves (a branch, a delta, a
        leaf with overflow values, damage), or every node in pure Python."""
        verify(data, page)
        if int.from_bytes(data[:8], "little") != checksum:
            raise Corruption(f"page {page} does not hold the node its parent expects "
                             f"(stale or overwritten page)", page)
        if LEAF_DELTA <= data[8] <= BRANCH_DELTA:
            node = self._materialise(data, page)
        else:
            node = decode(data, page)
        if node.txn != txn:
            raise Corruption(f"page {page} was written by txn {node.txn}, its parent "
                             f"expects txn {txn}", page)
        return node

    def _materialise(self, data: bytes, page: int) -> Node:
        """The node a delta image at ``page`` makes of its base: where the base is not
        cached and the chain links and applies (see ``full_image``), decoded from the full
        image ``apply_chain`` makes; else through its base, loaded first (a damaged base
        raises Corruption naming it)."""
        bpage, bsum, btxn, _depth = delta_base(data, page)
        applied = None if self.cached(bpage, btxn) is not None else self._applied(
            page, int.from_bytes(data[:8], "little"), int.from_bytes(data[16:24], "little"),
            data)
        if applied is not None:
            chain, made = applied
            node = decode(bytes(made), page)
            pages_for = self.store.pages_for
            node.chain = tuple((p, pages_for(len(image)), HEADER.unpack_from(image)[5])
                               for p, image in reversed(chain))
            return node
        if bpage == page:
            raise Corruption(f"page {page} does not decode as a tree node: a delta of "
                             f"itself", page)
        base = self.load(bpage, bsum, btxn)
        node = apply_delta(base, data, page)
        node.chain = ((page, self.store.pages_for(len(data)), node.txn),) + images(
            self.store, bpage, base)
        return node

    def full_image(self, page: int, checksum: int, txn: int, head: bytes | None = None
                   ) -> bytes:
        """The full image (leaf or branch layout) of the node at ``page``, a delta
        materialised: what the mapped search reads for a reference to a delta. Its header
        carries the reference's checksum and txn (the bytes are made here, not read).
        Where the node is not cached, its chain's images are applied on their bytes in C
        (``apply_chain``: no node is built); else, or where they do not apply (a damaged
        chain, which the node path then names as Corruption), through the node. ``head``:
        the image at ``page``, already read and verified (the map's)."""
        node = self.cached(page, txn)
        if node is None:
            pagemap = self.store.pagemap
            applied = self._applied(page, checksum, txn, head,
                                    pagemap.made if pagemap is not None else None)
            if applied is not None:
                made = applied[1]
                made[:8] = checksum.to_bytes(8, "little")
                return bytes(made)
            node = self.load(page, checksum, txn)
        image = encode_leaf(node, txn) if type(node) is Leaf else encode_branch(node, txn)
        image[:8] = checksum.to_bytes(8, "little")
        return bytes(image)

    def _applied(self, page: int, checksum: int, txn: int, head: bytes | None,
                 made: dict[int, bytes] | None = None
                 ) -> tuple[list[tuple[int, bytes]], bytearray] | None:
        """The chain ``chain_images`` reads and the full image ``apply_chain`` makes of it
        (checksum zero); None without the C, or where they do not link or apply."""
        if apply_chain is None:
            return None
        chain = self.chain_images(page, checksum, txn, head, made)
        image = None if chain is None else apply_chain([img for _p, img in chain])
        return None if chain is None or image is None else (chain, image)

    def chain_images(self, page: int, checksum: int, txn: int, head: bytes | None = None,
                     made: dict[int, bytes] | None = None) -> list[tuple[int, bytes]] | None:
        """The images of the chain that the reference (page, checksum, txn) heads, as
        (page, image), its full image first: each read and verified (``head``, if given, is
        the first, already read), each the image its parent (the reference, or the delta
        after it) names by checksum and txn, each delta one deeper than the delta on it.
        With ``made`` (the page map's: the full images of deltas this process has
        materialised), a base found there ends the chain as its full image: reading
        versions one after another then applies one delta each, as a cached base node did.
        (Not for a node: its chain, which bounds the next delta's depth, is every image.)
        None where they do not link so (``load`` then says how, as Corruption)."""
        chain: list[tuple[int, bytes]] = []
        want: int | None = None  # the depth the next image must have (0: a full image)
        data = head
        while True:
            if data is None:
                full = made.get(page) if made is not None else None
                if full is not None and int.from_bytes(full[:8], "little") == checksum \
                        and int.from_bytes(full[16:24], "little") == txn:
                    chain.append((page, full))
                    chain.reverse()
                    return chain
                data = self.store.read(page)
            if len(data) < HEADER_SIZE or int.from_bytes(data[:8], "little") != checksum \
                    or int.from_bytes(data[16:24], "little") != txn:
                return None
            chain.append((page, data))
            if data[8] == LEAF or data[8] == BRANCH:
                chain.reverse()
                return chain if not want else None
            if not LEAF_DELTA <= data[8] <= BRANCH_DELTA or \
                    len(data) < HEADER_SIZE + DELTA_HEAD.size:
                return None
            bpage, checksum, txn, d, _runs = DELTA_HEAD.unpack_from(data, HEADER_SIZE)
            if not 1 <= d <= MAX_CHAIN or (want is not None and d != want) or bpage == page:
                return None
            want, page, data = d - 1, bpage, None

    def cached(self, page: int, txn: int) -> Node | None:
        """The cached node (page, txn), or None."""
        node = self.get(page)
        return node if node is not None and node.txn == txn else None

    def put(self, page: int, node: Node) -> None:
        if len(self) >= self.cap:
            evict_oldest(self, self.cap // 8 + 1)
        if settle is not None:  # out of the cyclic collector's walks (see _write_c.settle)
            settle(node)
        self[page] = node

    def drop(self, bases: list[tuple[Node, int, int, int]]) -> None:
        """Drop the clean nodes a write replaced (its ``superseded``), where the cache still
        holds them. The head reads their successors from now on; an older snapshot that
        still reaches one loads it again. Dropped while its memory is warm, each costs
        little, and the cache keeps room for live nodes: left to eviction, superseded nodes
        filled it (a 10-put commit at 100k keys adds ~20) and were freed later, cold."""
        if drop_superseded is not None:
            drop_superseded(self, bases)
            return
        get, pop = self.get, self.pop
        for node, page, _checksum, _txn in bases:
            if get(page) is node:
                pop(page, None)  # (another thread may have dropped or replaced it)
        bases.clear()

    def forget_txn(self, txn: int) -> None:
        """Drop every node written by ``txn`` (rolled back: its number will be reused)."""
        for page, node in self.copy().items():  # a copy, as in put()
            if node.txn >= txn:
                self.pop(page, None)


def py_sorted_items(mapping: dict[Any, Any], max_key: int) -> list[tuple[bytes, bytes]] | None:
    """A dict's (key, value) pairs in key order, when every key is bytes of 1 to
    ``max_key`` bytes and every value bytes (a bulk load that needs no conversion); None
    otherwise. _write_c.sorted_items is this in C."""
    for k, v in mapping.items():
        if type(k) is not bytes or not 0 < len(k) <= max_key or type(v) is not bytes:
            return None
    return sorted(mapping.items(), key=itemgetter(0))


def py_leaves(items: Iterable[tuple[bytes, bytes]], limit: int, inline_max: int
              ) -> list[tuple[bytes, Leaf]]:
    """A bulk load's (key, value) pairs, in key order, cut into leaves of at most ``limit``
    bytes: [(first key, leaf), ...]. A value over ``inline_max`` counts as an overflow
    reference (Tree._vsize's rule) and marks its leaf big. _write_c.leaves is this in C."""
    level: list[tuple[bytes, Leaf]] = []
    keys: list[bytes] = []
    vals: list[bytes | Overflow] = []
    size, big = HEADER_SIZE, False
    for k, v in items:
        if type(k) is not bytes or type(v) is not bytes:
            raise TypeError("leaves(): an item is not a (bytes, bytes) pair")
        vs = len(v) if len(v) <= inline_max else OVERFLOW_REF_SIZE
        es = LEAF_ENTRY + len(k) + vs
        if size + es > limit and keys:
            level.append((keys[0], Leaf(keys, vals, size, big)))
            keys, vals, size, big = [], [], HEADER_SIZE, False
        big = big or vs != len(v)
        keys.append(k)
        vals.append(v)
        size += es
    if keys:
        level.append((keys[0], Leaf(keys, vals, size, big)))
    return level


class Tree:
    """One B+tree root: read it, or (if given ``writable``) change it by path copying."""

    __slots__ = ("store", "nodes", "page_size", "inline_max", "count", "mod", "frees",
                 "deltas", "superseded", "stolen", "_root", "_ref", "_dirty", "_replaced")
    store: PageStore
    nodes: NodeCache
    page_size: int
    inline_max: int
    count: int
    mod: int
    frees: bool
    deltas: bool
    stolen: bool

    def __init__(self, nodes: NodeCache, ref: RootRef = EMPTY, count: int | None = None,
                 frees: bool = False) -> None:
        self.store = nodes.store
        self.nodes = nodes
        self.page_size = self.store.page_size
        self.inline_max = self.page_size // 4
        self.frees = frees      # free replaced pages (trees that no older version keeps)
        # write a changed node as a delta on the image it was copied from (node.py): in a
        # packed store (a page-sized unit would cost a delta a whole page)
        self.deltas = self.store.unit < self.page_size
        # a tree that frees: the clean nodes this writer copied, by page; write() frees the
        # images of each (its whole chain) unless the copy was written as a delta on it
        self._replaced: dict[int, Node] = {}
        # the bases (node, page, checksum, txn) of the nodes write() wrote: the caller drops
        # them from the node cache (NodeCache.drop) once it has done reading the old tree
        self.superseded: list[tuple[Node, int, int, int]] = []
        self.mod = 0            # bumped on every change, so cursors can re-seek
        self.stolen = False     # some dirty node took its base's lists (see restore)
        self._ref = ref
        self._dirty = False
        self._root: Node | None = nodes.load(ref.page, ref.checksum, ref.txn) if ref.page \
            else None
        if count is None:
            count = 0 if self._root is None else self._root.count()
        self.count = count

    @property
    def ref(self) -> RootRef:
        """The root as last written (EMPTY for an empty tree)."""
        return self._ref

    def root(self) -> Node | None:
        return self._root

    # ---- reading -------------------------------------------------------
    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        node = self._root
        if node is None:
            return default
        pm = self.store.pagemap
        if pm is not None and not self._dirty and map_descend is not None:
            ref = self._ref  # a clean tree: search the mapped images, build no nodes
            v = map_descend(pm, ref.page, ref.checksum, ref.txn, key)
            if v is None:
                return default
            return v if type(v) is bytes else self.read_overflow(Overflow(*v))
        v = descend(node, key, self.nodes)
        if v is None:
            return default
        return v if type(v) is not Overflow else self.read_overflow(v)

    def contains(self, key: bytes) -> bool:
        """Whether key is in the tree, without reading its value if that is an overflow."""
        node = self._root
        if node is None:
            return False
        pm = self.store.pagemap
        if pm is not None and not self._dirty and map_descend is not None:
            ref = self._ref
            return map_descend(pm, ref.page, ref.checksum, ref.txn, key) is not None
        return descend(node, key, self.nodes) is not None

    def kid(self, branch: Branch, i: int) -> Node:
        kid = branch.kids[i]
        return kid if type(kid) is not int else self.nodes.load(  # type: ignore[return-value]
            kid, branch.sums[i], branch.txns[i])  # (a node, or its page)

    def read_overflow(self, ov: Overflow) -> bytes:
        return read_overflow(self.store, ov)

    def rank(self, key: bytes | None) -> int:
        """How many keys sort before ``key`` (None: all of them). O(depth x fanout) in C."""
        if key is None:
            return self.count
        node, r = self._root, 0
        if node is None:
            return 0
        pm = self.store.pagemap
        if pm is not None and not self._dirty and map_rank is not None:
            ref = self._ref  # a clean tree: the counts its mapped branches record
            rank: int = map_rank(pm, ref.page, ref.checksum, ref.txn, key)
            return rank
        while type(node) is Branch:
            i = bisect_right(node.keys, key) - 1
            r += sum(node.counts[:i])
            node = self.kid(node, i)
        return r + bisect_left(node.keys, key)

    # ---- writing -------------------------------------------------------
    def restore(self) -> None:
        """Every dirty node that took its base's lists gives them back (node.py's
        ``restore_base``): the C put's fast case takes them; any other change, and any
        comparison with the bases, starts here (nothing taken: nothing to do)."""
        if not self.stolen:
            return
        todo = [self._root] if self._dirty and self._root is not None else []
        while todo:
            node = todo.pop()
            restore_base(node)
            if type(node) is Branch:
                todo += [kid for kid in node.kids if type(kid) is not int]  # type: ignore[misc]
        self.stolen = False

    def _own_root(self) -> Node:
        self.restore()  # (every Python change of the tree owns its root first)
        root = self._root
        if root is None:  # empty (on disk, or emptied by this writer)
            root = self._root = Leaf([], [], HEADER_SIZE)
            self._dirty = True
        elif not self._dirty:
            if self.frees:
                self._replaced[self._ref.page] = root
            ref = self._ref
            root = self._root = root.copy(
                (root, ref.page, ref.checksum, ref.txn) if self.deltas else None)
            self._dirty = True
        return root

    def _own_kid(self, parent: Branch, i: int) -> Node:
        kid = parent.kids[i]
        if type(kid) is int:
            s, t = parent.sums[i], parent.txns[i]
            node = self.nodes.load(kid, s, t)
            if self.frees:
                self._replaced[kid] = node
            copy = parent.kids[i] = node.copy((node, kid, s, t) if self.deltas else None)
            return copy
        return kid  # type: ignore[return-value]  # (a node)

    def _descend(self, key: bytes) -> tuple[Leaf, list[tuple[Branch, int]]]:
        """Own the path to key's leaf; return (leaf, [(branch, index), ...])."""
        node = self._own_root()
        path: list[tuple[Branch, int]] = []
        while type(node) is Branch:
            i = bisect_right(node.keys, key) - 1
            path.append((node, i))
            kid = node.kids[i]
            node = kid if type(kid) is not int else self._own_kid(  # type: ignore[assignment]
                node, i)  # (a node)
        return node, path

    def _vsize(self, v: bytes | Overflow) -> int:
        """The bytes a value takes in its leaf: the inline-value rule, in one place. A value
        of up to a quarter page lives in its leaf; a larger one (or an Overflow) takes a
        reference, and ``_write_node`` writes it to an overflow run. So for bytes ``v``,
        ``_vsize(v) != len(v)`` exactly when v overflows (a quarter page >= 256 bytes is far
        more than a reference's size)."""
        return len(v) if type(v) is bytes and len(v) <= self.inline_max else OVERFLOW_REF_SIZE

    def _drop_value(self, v: bytes | Overflow) -> None:
        if self.frees and type(v) is Overflow:
            self.store.free(v.page, self.store.pages_for(HEADER_SIZE + v.length))

    def put(self, key: bytes, val: bytes) -> bool:
        """Set key to val; True if the key is new."""
        if put_over is not None and not self.frees:  # the common cases, in C
            done = put_over(self, key, val)
            if done is not None:
                return done
        self.restore()
        self.mod += 1
        leaf, path = own_path(self, key) if own_path is not None and not self.frees else \
            self._descend(key)
        keys = leaf.keys
        i = bisect_left(keys, key)
        vs = len(val)  # (_vsize's rule inline, for bytes: the hot path)
        if vs > self.inline_max:
            vs = OVERFLOW_REF_SIZE
            leaf.big = True
        if i < len(keys) and keys[i] == key:
            old = leaf.vals[i]
            if type(old) is bytes and len(old) <= self.inline_max:
                leaf.size += vs - len(old)
            else:
                leaf.size += vs - OVERFLOW_REF_SIZE
                self._drop_value(old)
            leaf.vals[i] = val
            new = False
        else:
            own_keys(leaf).insert(i, key)
            leaf.vals.insert(i, val)
            leaf.size += LEAF_ENTRY + len(key) + vs
            for b, j in path:
                b.counts[j] += 1
            self.count += 1
            new = True
        if leaf.size > self.page_size:
            self._split_up(leaf, path)
        return new

    def put_sorted(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Put (key, value) pairs given in strictly increasing key order; return how many
        keys were new.

        One descent serves every key that falls in the same leaf, and a node
        that overflows while being appended to splits full-left, so a bulk
        load writes full pages (the loop of ``put`` would leave them half full).
        """
        self.mod += 1
        if self._root is None:
            return self._build(items)
        page_size = self.page_size
        new_keys = 0
        leaf: Leaf | None = None
        hi: bytes | None = None
        path: list[tuple[Branch, int]] = []  # these three are set at the first key (leaf is
        keys: list[bytes]                    # None)
        vals: list[bytes | Overflow]
        added = pos = 0
        first = -1  # the entry the first key put in this leaf went to
        owned = False  # whether keys is the leaf's own list (own_keys, once per leaf)
        for key, val in items:
            if leaf is None or (hi is not None and key >= hi):
                if leaf is not None:
                    new_keys += self._settle(leaf, path, added, pos, first)
                leaf, path = self._descend(key)
                hi = next((b.keys[j + 1] for b, j in reversed(path) if j + 1 < len(b.keys)),
                          None)
                keys, vals, added, pos, first, owned = leaf.keys, leaf.vals, 0, 0, -1, False
            i = bisect_left(keys, key, pos)
            if first < 0:
                first = i
            vs = self._vsize(val)
            if vs != len(val):
                leaf.big = True
            if i < len(keys) and keys[i] == key:
                old = vals[i]
                leaf.size += vs - self._vsize(old)
                self._drop_value(old)
                vals[i] = val
            else:
                if not owned:
                    keys, owned = own_keys(leaf), True
                keys.insert(i, key)
                vals.insert(i, val)
                leaf.size += LEAF_ENTRY + len(key) + vs
                added += 1
            pos = i + 1
            if leaf.size > page_size:
                new_keys += self._settle(leaf, path, added, pos, first)
                leaf = None
        if leaf is not None:
            new_keys += self._settle(leaf, path, added, pos, first)
        return new_keys

    def _build(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Bulk load into an empty tree: cut the sorted items into full leaves, then
        stack full branch levels on them. No descents, no splits."""
        limit = HEADER_SIZE + (self.page_size - HEADER_SIZE) * 15 // 16
        level: list[tuple[bytes, Node]]
        level = cut_leaves(items, limit, self.inline_max)  # type: ignore[assignment]
        if not level:
            return 0
        while len(level) > 1:
            parents: list[tuple[bytes, Node]] = []
            node: Branch | None = None
            for low, kid in level:
                if node is None or node.size + BRANCH_ENTRY + len(low) > limit:
                    node = Branch([b""], [kid], array(U64, [kid.count()]), array(U64, [0]),
                                  array(U64, [0]), HEADER_SIZE + BRANCH_ENTRY)
                    parents.append((low, node))
                else:
                    node.keys.append(low)
                    node.kids.append(kid)
                    node.counts.append(kid.count())
                    node.sums.append(0)
                    node.txns.append(0)
                    node.size += BRANCH_ENTRY + len(low)
            level = parents
        root = self._root = level[0][1]
        self._dirty = True
        self.count = root.count()
        return self.count

    def _settle(self, leaf: Leaf, path: list[tuple[Branch, int]], added: int,
                pos: int, first: int) -> int:
        """Account ``added`` new keys along the path and split the leaf if it overflowed
        (``pos``: the entry after the last key put, ``first``: the entry of the first: the
        leaf splits after a run of new keys, see ``_split``; in a tree that frees, before
        new keys appended at its end, which leaves the entries before them as they were,
        not written again: see ``_write_node``)."""
        if added:
            for b, j in path:
                b.counts[j] += added
            self.count += added
        if leaf.size > self.page_size:
            appending, at = pos >= len(leaf.keys), pos if added > 1 else 0
            if appending and self.frees and 0 < first == len(leaf.keys) - added:
                appending, at = False, first
            self._split_up(leaf, path, appending, at)
        return added

    def delete(self, key: bytes) -> bool:
        """Remove key; False if it was not there (and nothing is copied)."""
        if not self.contains(key):  # an overflow value is not read to be deleted
            return False
        self.mod += 1
        leaf, path = self._descend(key)
        i = bisect_left(leaf.keys, key)
        old = leaf.vals[i]
        leaf.size -= LEAF_ENTRY + len(key) + self._vsize(old)
        self._drop_value(old)
        del own_keys(leaf)[i], leaf.vals[i]
        for b, j in path:
            b.counts[j] -= 1
        self.count -= 1
        node: Node
        node, low = leaf, self.page_size // 4
        while path and node.size < low:
            parent, i = path.pop()
            self._merge(parent, i)
            node = parent
        self._shrink_root()
        return True

    def _shrink_root(self) -> None:
        root = self._root
        while type(root) is Branch and len(root.kids) == 1:
            kid = root.kids[0]
            if type(kid) is int:  # the only child is clean: it becomes the root as it is
                self._root, self._ref, self._dirty = (self.nodes.load(kid, root.sums[0],
                                                                      root.txns[0]),
                                                      RootRef(kid, root.sums[0], root.txns[0]),
                                                      False)
                return
            self._root = root = kid  # type: ignore[assignment]  # (a node)
        if type(root) is Leaf and not root.keys:
            self._root = None

    def _split(self, node: Node, full_left: bool = False, at: int = 0) -> tuple[bytes, Node]:
        """Split node in two by bytes; node keeps the left part. Return (separator, right).

        In half, or (``full_left``, when appending in key order) leaving the left
        node as full as a page allows, so sequential loads fill their pages; or (``at``,
        a leaf into whose middle keys were put in order) before entry ``at`` if at least
        half the entries' bytes are before it: the next keys in order append to the
        right node's start... and the left one, full, is left alone (a catalog fold puts
        new commit records before the refs and index entries that share their leaf).
        """
        keys = node.keys
        limit = self.page_size - HEADER_SIZE
        target = limit * 15 // 16 if full_left else (node.size - HEADER_SIZE) // 2
        right: Node
        if type(node) is Leaf:
            if node.big:
                vsize = self._vsize
                sizes = [LEAF_ENTRY + len(k) + vsize(v) for k, v in zip(keys, node.vals)]
            else:  # every value inline bytes (not big): sized by length, no call per entry
                lens = map(len, node.vals)  # type: ignore[arg-type]  # (bytes only)
                sizes = [LEAF_ENTRY + a + b for a, b in zip(map(len, keys), lens)]
            if at and not full_left:
                target = max(target, sum(sizes[:at]))
            m, acc = _cut(sizes, target, limit)
            right = Leaf(keys[m:], node.vals[m:], node.size - acc, node.big)
            node.keys = keys[:m]  # (a new list: keys may be borrowed, see own_keys)
            del node.vals[m:]
            node.size = HEADER_SIZE + acc
            return right.keys[0], right
        m, _ = _cut([BRANCH_ENTRY + len(k) for k in keys], target, limit)
        sep = keys[m]
        right = Branch([b""] + keys[m + 1:], node.kids[m:], node.counts[m:], node.sums[m:],
                       node.txns[m:], 0)
        node.keys = keys = keys[:m]  # (a new list: keys may be borrowed, see own_keys)
        del node.kids[m:], node.counts[m:], node.sums[m:], node.txns[m:]
        right.size = branch_size(right.keys)
        node.size = branch_size(keys)
        return sep, right

    def _split_up(self, node: Node, path: list[tuple[Branch, int]],
                  full_left: bool = False, at: int = 0) -> None:
        while node.size > self.page_size:
            sep, right = self._split(node, full_left, at)
            at = 0
            if path:
                parent, i = path.pop()
                self._insert_kid(parent, i, node, sep, right)
                node = parent
            else:
                self._root = Branch([b"", sep], [node, right],
                                    array(U64, [node.count(), right.count()]),
                                    array(U64, [0, 0]), array(U64, [0, 0]),
                                    branch_size([b"", sep]))
                return

    @staticmethod
    def _insert_kid(parent: Branch, i: int, left: Node, sep: bytes, right: Node) -> None:
        parent.counts[i] = left.count()
        own_keys(parent).insert(i + 1, sep)
        parent.kids.insert(i + 1, right)
        parent.counts.insert(i + 1, right.count())
        parent.sums.insert(i + 1, 0)
        parent.txns.insert(i + 1, 0)
        parent.size += BRANCH_ENTRY + len(sep)

    def _merge(self, parent: Branch, i: int) -> None:
        """Merge child i with a sibling; split again if the result outgrows a page."""
        if len(parent.kids) < 2:
            return
        lo = i - 1 if i + 1 == len(parent.kids) else i
        r = lo + 1
        left, right = self._own_kid(parent, lo), self._own_kid(parent, r)
        sep = parent.keys[r]
        if type(left) is Leaf:
            assert type(right) is Leaf  # (siblings are alike)
            left.keys = left.keys + right.keys  # (new lists: keys may be borrowed)
            left.vals += right.vals
            left.size += right.size - HEADER_SIZE
            left.big = left.big or right.big
        else:
            assert type(right) is Branch
            left.keys = left.keys + [sep] + right.keys[1:]
            left.kids += right.kids
            left.counts += right.counts
            left.sums += right.sums
            left.txns += right.txns
            left.size += right.size - HEADER_SIZE + len(sep)
        del own_keys(parent)[r], parent.kids[r], parent.counts[r], parent.sums[r], parent.txns[r]
        parent.size -= BRANCH_ENTRY + len(sep)
        parent.counts[lo] = left.count()
        if left.size > self.page_size:
            sep, right = self._split(left)
            self._insert_kid(parent, lo, left, sep, right)

    def relocate(self, limit: int) -> None:
        """Own every node at a page >= ``limit`` and the path to it, so that ``write``
        puts them in the lowest free pages (a tree that frees what it replaces: the
        catalog, when gc gives the end of the file back)."""
        root = self._root
        if root is None:
            return
        load, store = self.nodes.load, self.store

        def far(page: int, node: Node) -> bool:  # an image of its chain is at >= limit
            return any(p >= limit for p, _u, _t in images(store, page, node))

        def reaches(node: Node) -> bool:
            return type(node) is Branch and any(
                far(k, kid) or reaches(kid)
                for k, kid in ((k, load(k, s, t)) for k, s, t
                               in zip(node.kids, node.sums, node.txns) if type(k) is int))

        def own(node: Node) -> None:
            base = node.base
            if base is not None and far(base[1], base[0]):
                own_keys(node)  # (no longer borrowed once base is gone)
                node.base = None  # written whole, in the lowest free units: not a delta on it
            if type(node) is not Branch:
                return
            for i, k in enumerate(node.kids):
                if not isinstance(k, int):
                    own(k)
                else:
                    kid = load(k, node.sums[i], node.txns[i])
                    if far(k, kid) or reaches(kid):
                        own(self._own_kid(node, i))

        if self._dirty or far(self._ref.page, root) or reaches(root):
            self.mod += 1
            own(self._own_root())

    @property
    def dirty(self) -> bool:
        """Whether write() has changes to store."""
        return self._dirty

    def write(self, txn: int) -> RootRef:
        """Store every dirty node (bottom-up) and return the new root reference. A tree
        that frees then frees the images of every node it replaced: a node written as a
        delta keeps the chain it was copied from (its base), any other loses it whole."""
        if self._dirty:
            if self._root is None:
                self._ref = EMPTY
            elif write_tree is not None and not self.frees:
                page, s = write_tree(self._root, txn, self.store, self.nodes, self._encode,
                                     self._write_overflows,
                                     checksum_mod.xxh3_64_intdigest,  # (as seal() finds it)
                                     self.superseded)
                self._ref = RootRef(page, s, txn)
            else:
                self._ref = RootRef(*self._write_node(self._root, txn))
            self._dirty = self.stolen = False  # (written nodes keep no undo record)
        if self._replaced:
            store = self.store
            for page, node in self._replaced.items():
                for p, units, _t in images(store, page, node):
                    store.free(p, units)
            self._replaced.clear()
        return self._ref

    def _write_node(self, node: Node, txn: int) -> tuple[int, int, int]:
        """Write ``node`` and every dirty node below it (bottom-up); (page, checksum, txn)
        of its image. _write_c.write_tree is this in C for a tree that keeps what it
        replaces (see the end of this file); a tree that frees (the catalog) comes here."""
        store = self.store
        dirty = None
        if type(node) is Branch:
            kids, sums, txns = node.kids, node.sums, node.txns
            dirty = dirty_kids(kids)
            write = self._write_node
            for i in dirty:
                kids[i], sums[i], txns[i] = write(kids[i], txn)  # type: ignore[arg-type]
        elif node.big:
            self._write_overflows(node)
        image = None
        base, node.base = node.base, None
        if base is not None and self.frees and _same_entries(node, base[0]):
            self._replaced.pop(base[1], None)  # nothing changed: the image stays
            return base[1], base[2], base[3]
        if base is not None:
            self.superseded.append(base)  # (C's write_tree records the same)
            if self.frees and dirty is not None:
                # a tree that frees (the catalog) writes its branches whole: they are few
                # and small, and every lookup reads its root first (a chain would cost the
                # first one per process a materialisation, for a few dozen bytes a fold)
                base = None
        bottom = None  # a rebased delta's base: the chain's full image (page, units, txn)
        if base is not None:
            image = self._encode(node, base, txn, dirty)
            if image is not None:
                self._replaced.pop(base[1], None)  # (a tree that frees) kept as the base
            elif not self.frees and type(node) is type(base[0]) and depth(base[0]) >= (
                    LEAF_CHAIN if type(node) is Leaf else BRANCH_CHAIN):
                # at the chain's bound: a delta on the full image it starts from (a tree
                # that frees may have freed that image: it writes a full one, as before)
                links = base[0].chain
                assert links is not None  # (a delta: the chain's bound is at least 1)
                try:
                    full = store.read(links[-1][0])
                except (Corruption, ReadFailed):  # a full image, as without rebasing
                    full = None
                if full is not None:
                    image = rebase_delta(node, full, links[-1][0], txn)
                    bottom = links[-1] if image is not None else None
        if image is None:
            base = None
            image = self._encode(node, None, txn, None)
            assert image is not None  # (with no base: the full image)
        units = -(-len(image) // store.unit)  # (store.pages_for)
        page = store.place(image)
        node.txn = txn
        # a delta's chain: its own image, then its base's (a rebased one's: the full image)
        node.chain = None if base is None else ((page, units, txn),) + (
            (bottom,) if bottom is not None else images(store, base[1], base[0]))
        self.nodes.put(page, node)
        return page, int.from_bytes(image[:8], "little"), txn

    def _encode(self, node: Node, base: tuple[Node, int, int, int] | None, txn: int,
                dirty: list[int] | None) -> bytearray | None:
        """A dirty node's sealed image: a delta on ``base`` (None when a full image is
        due), or with no base the full image."""
        if base is not None:
            return encode_delta(node, base[0], base[1], base[2], base[3], txn, dirty)
        return encode_leaf(node, txn) if type(node) is Leaf else encode_branch(node, txn)

    def _write_overflows(self, leaf: Leaf) -> None:
        """Write a leaf's values that are too big to live in it to overflow runs."""
        vals, vsize = leaf.vals, self._vsize
        for i, v in enumerate(vals):
            if type(v) is bytes and vsize(v) != len(v):
                ref = self.store.write_image(OVERFLOW, v)
                vals[i] = Overflow(ref.page, len(v), ref.checksum, ref.txn)
        leaf.big = any(type(v) is not bytes for v in vals)


def _same_entries(node: Node, base: Node) -> bool:
    """Whether a dirty copy holds what the clean node it was copied from holds."""
    if type(node) is Leaf:
        assert type(base) is Leaf  # (a copy is of its base's kind)
        return node.keys == base.keys and node.vals == base.vals
    assert type(base) is Branch
    return (node.keys == base.keys and node.kids == base.kids and node.sums == base.sums
            and node.txns == base.txns and node.counts == base.counts)


_MISSING = object()


def _cut(sizes: list[int], target: int, limit: int) -> tuple[int, int]:
    """How many leading entries (at least one, never all) reach ``target`` bytes without
    passing ``limit``; and their bytes."""
    acc = 0
    for m, size in enumerate(sizes[:-1]):
        if m and acc + size > limit:
            return m, acc
        acc += size
        if acc >= target:
            return m + 1, acc
    return len(sizes) - 1, acc


# The optional C accelerator (_tree_c.c) replaces py_get, the point-read descent, when
# it is built and current and COWDB_PURE_PYTHON=1 does not ask for Python (see
# cowdb/_accelerators.py); both pass the same tests.
# Clean trees of a mapped file read through map_get (mapped.py), in C only: the pure-Python
# search of images (py_map_get, tested beside it) is slower than its node cache, so pure
# Python keeps the node objects.
# Scans of a clean tree on a mapped file walk its images in C (MapWalk, _tree_c.Walk: see
# cursor.py), and count's ranks search them (map_rank), building no node.
# A reader binds a version's root once (MapRoot, _tree_c.Root: map_get without the
# per-call arguments) and may take MapGetMethod (_tree_c.GetMethod) as its get method:
# one C call per point read. Both are None on the pure-Python path.
API = 10  # the _tree_c this package is written against (its API constant)
_tree_c = load("cowdb.tree", "_tree_c", API)
# _write_c.write_tree (node.py loads it) replaces Tree._write_node, the commit's write pass;
# _write_c.own_path Tree._descend in put() for a tree that keeps what it replaces, and
# _write_c.put_over does such a tree's put of an inline value, over one or as a new key
# (splitting a full leaf of inline values into a parent with room), whole.
write_tree: Callable[..., tuple[int, int]] | None = None
own_path: Callable[[Tree, bytes], tuple[Leaf, list[tuple[Branch, int]]]] | None = None
put_over: Callable[[Tree, bytes, bytes], bool | None] | None = None  # put()'s common cases
# Transaction.__setitem__ in C for put_over's cases (transaction.py binds it)
put_method: Callable[[type, Callable[..., None], type], Callable[..., None]] | None = None
settle: Callable[[Node], None] | None = None  # NodeCache.put: a clean node leaves the gc
drop_superseded: Callable[[NodeCache, list[Any]], None] | None = None  # NodeCache.drop
cut_leaves: Callable[[Iterable[tuple[bytes, bytes]], int, int], list[tuple[bytes, Leaf]]] = \
    py_leaves  # a bulk load's leaves
sorted_items: Callable[[dict[Any, Any], int], list[tuple[bytes, bytes]] | None] = \
    py_sorted_items  # a bulk load's pairs
apply_chain: Callable[[list[bytes]], bytearray | None] | None = None  # NodeCache.full_image
checked_leaf: Callable[[bytes, int, int, Callable[[Any], int]], Leaf | None] | None = None
if _write_c is not None:  # bound either way: the tests run both writers
    _write_c.bind(Leaf, Branch, LEAF, BRANCH, LEAF_DELTA, BRANCH_DELTA, LEAF_CHAIN, BRANCH_CHAIN,
                  restore_base)
    if wanted():
        write_tree, own_path = _write_c.write_tree, _write_c.own_path
        put_over, settle, drop_superseded = _write_c.put_over, _write_c.settle, _write_c.drop
        cut_leaves, sorted_items = _write_c.leaves, _write_c.sorted_items
        apply_chain, checked_leaf = _write_c.apply_chain, _write_c.checked_leaf
        put_method = _write_c.put_method
descend: Callable[[Node, bytes, NodeCache], bytes | Overflow | None] = py_get
map_descend: Callable[..., Any] | None = None
map_rank: Callable[..., Any] | None = None
MapWalk: Callable[..., Any] | None = None
MapRoot: Callable[..., Any] | None = None
MapGetMethod: Callable[..., Any] | None = None
if _tree_c is not None:  # bound either way: the tests run both searches
    _tree_c.bind(Branch)
    _tree_c.bind_map(Corruption, PageMap, xxh3_64_intdigest)
if _tree_c is not None and wanted():
    descend = _tree_c.get
    map_descend, map_rank, MapWalk = _tree_c.map_get, _tree_c.map_rank, _tree_c.Walk
    MapRoot, MapGetMethod = _tree_c.Root, _tree_c.GetMethod
