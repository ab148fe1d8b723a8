/* The hot paths of PMap and PSet in C: the CHAMP trie operations of
 * _champ.py, and the fields and hot methods of PMap, PSet and their
 * mutations.
 *
 * Optional: _champ.py uses this module when it is importable (and
 * COWDB_PURE_PYTHON is not 1), else its own Python functions and pmap.py's
 * Python bases, which stay the reference.  Same signatures, same tries,
 * same results:
 *
 *     lookup(node, key, h, default)
 *     assoc(node, h, key, val, owner, shift, box)
 *     dissoc(node, h, key, owner, shift, box)
 *     build_dict(d, pairs=True)
 *     iter_keys(root), iter_values(root), iter_items(root)
 *     accumulate(elements)                   (_hashing.accumulate)
 *     MapBase, MutationBase, make(cls, root, count, hacc)
 *                                            (pmap._PyMap, _PyMutation, _py_make)
 *     SetBase, SetMutationBase               (pset._PySet, _PySetMutation)
 *     Node                                   (the nodes made here)
 *
 * The Python trie's node is a list [datamap, nodemap, owner, k0, v0, ...,
 * child_1, child_0] (see _champ.py).  The nodes made here are Node
 * objects: the same fields in one block (uint32 bitmaps, the owner, the
 * items inline), so a lookup reads one object per level where a list
 * costs the list, its item array and a bitmap int, three dependent cache
 * misses.  A Node cannot resize: an edit that changes a node's size makes
 * a new Node (in a mutation too) and rebinds the parent; a same-size edit
 * (a value, a child) of a node the mutation's token owns is done in place.
 * From Python a Node reads as the list (len, indexing, slices as lists,
 * iteration) with its owner as None, so the Python trie copies a Node
 * before editing it, and equality, diff, transients' finish and pickling
 * stay shared Python code.  The list nodes the Python trie made are
 * foreign here: read through the same Shape view as Nodes (its items
 * pointer, count and bitmaps; read_shape, whose list branch is out of
 * line), and copied into Nodes when edited, never edited in place.  So a
 * trie built or edited by either side is read and edited by the other.
 *
 * Key equality is PyObject_RichCompareBool(stored_key, key, Py_EQ), which
 * takes the identity shortcut first, like `k is key or k == key`.  User
 * code (a key's __eq__ or __hash__, a value's __hash__) may raise, which
 * propagates, or may edit the very mutation being walked.  So:
 *  - every node and key in use is held by a strong reference across such
 *    calls, and nothing is indexed outside a node: a list node's bitmaps
 *    are checked against its length when it is read (read_shape); a Node
 *    is right by construction, made here from checked shapes;
 *  - after such a call, the node must still have its shape and the slot
 *    the walk uses must still hold the same key or child (check_slot),
 *    else RuntimeError instead of using stale positions.  A Node a walk
 *    holds keeps its shape (a nested edit replaces it instead), so a walk
 *    that only reads goes on over the Node it holds and answers for the
 *    trie as it was when it started;
 *  - a mutation's update checks its whole path from the root after its
 *    last call into user code and before its first write in place
 *    (path_intact: the mutation's root is still the one the walk started
 *    from, and every node on the path still holds the child the walk
 *    took), and refuses a root replaced meanwhile (root_unchanged): an
 *    update happens whole or raises, so the count always matches;
 *  - nothing is written before the last call into user code at a level,
 *    and references that might be the last ones are dropped only after the
 *    writes.
 * The Python reference has none of these checks (it would go on with
 * stale positions): the RuntimeErrors are where the two differ.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define BITS 5
#define MASK 31u

/* _champ.API: what _champ.py expects of this module (its functions, its
 * types, their node representation).  Bumped with every change to those,
 * so a module left from an older checkout is refused, not half used. */
#define CHAMP_API 2

/* The popcnt instruction when the compiler may use it; else, on x86, the
 * instruction through inline assembly when the CPU has it (checked at
 * import: builds do not assume it); else bit tricks, which beat the library
 * call __builtin_popcount becomes without the instruction. */
static inline int
popcount_bits(uint32_t x)
{
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return (int)((((x + (x >> 4)) & 0x0F0F0F0Fu) * 0x01010101u) >> 24);
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__POPCNT__)
#define POPCOUNT(x) __builtin_popcount(x)
#elif (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define POPCNT_AT_RUNTIME
static int have_popcnt = 0;

static inline int
POPCOUNT(uint32_t x)
{
    if (have_popcnt) {
        uint32_t r;
        __asm__("popcnt %1, %0" : "=r"(r) : "rm"(x) : "cc");
        return (int)r;
    }
    return popcount_bits(x);
}
#else
#define POPCOUNT(x) popcount_bits(x)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)0)
#endif

/* the nodes ------------------------------------------------------------- */

/* A trie node made here: one block holding the two bitmaps, the owner
 * token and the items, so that a lookup reads one object per level (a list
 * node is the list, its separate item array and a bitmap int object: three
 * dependent cache misses per level).  The items are the list node's after
 * its three header fields: k0, v0, k1, v1, ..., child_1, child_0.
 *
 * A node cannot grow or shrink: an edit that changes the number of items
 * makes a new node, even in a mutation that owns the old one, and the
 * parent is rebound to it.  Only a same-size edit (a value rebound, a child
 * replaced) of a node the mutation owns is done in place.  So a node's
 * shape never changes once it is made, except that it may be emptied: by
 * tp_clear, or when an insertion moves its items into the new node
 * (may_move_items: only if nothing but its parent and that walk hold it).
 * A node anything else holds (a walk, an iterator, Python code) keeps its
 * shape. */
typedef struct {
    PyObject_VAR_HEAD        /* ob_size: the number of items */
    uint32_t dm;             /* datamap: slots holding a key/value pair */
    uint32_t nm;             /* nodemap: slots holding a child node */
    PyObject *owner;         /* the token of the mutation that made it, or None */
    PyObject *items[1];
} NodeObject;

static PyTypeObject NodeType;

#define IS_NODE(o) Py_IS_TYPE((o), &NodeType)
#define NODE(o) ((NodeObject *)(o))

/* What the walks read of a node, a C node or a list node alike: its
 * bitmaps and its items (a list's from index 3 on, so item i is list
 * index i + 3).  Python's list nodes are foreign here: read, and copied
 * into C nodes when edited, never edited in place. */
typedef struct {
    PyObject **items;
    Py_ssize_t n;    /* the number of items */
    uint32_t dm;
    uint32_t nm;
} Shape;

static int
read_bitmap_slow(PyObject *o, uint32_t *out)
{
    unsigned long v;
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "not a CHAMP node: bitmap is not an int");
        return -1;
    }
    v = PyLong_AsUnsignedLong(o);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (v > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_ValueError, "not a CHAMP node: bitmap wider than 32 bits");
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* A list node's bitmap: an int in [0, 2**32).  Small ints are read in
 * place (no call), where this CPython's int layout is known; anything else
 * the slow way. */
static inline int
read_bitmap(PyObject *o, uint32_t *out)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (PyLong_CheckExact(o) && PyUnstable_Long_IsCompact((PyLongObject *)o)) {
        Py_ssize_t v = PyUnstable_Long_CompactValue((PyLongObject *)o);
        if (v >= 0) {
            *out = (uint32_t)v;
            return 0;
        }
    }
#elif PYLONG_BITS_IN_DIGIT == 30
    if (PyLong_CheckExact(o)) {
        const digit *d = ((PyLongObject *)o)->ob_digit;
        switch (Py_SIZE(o)) {
        case 0:
            *out = 0;
            return 0;
        case 1:
            *out = (uint32_t)d[0];
            return 0;
        case 2:
            if (d[1] < 4) {
                *out = (uint32_t)d[0] | ((uint32_t)d[1] << 30);
                return 0;
            }
        }
    }
#endif
    return read_bitmap_slow(o, out);
}

/* read_shape for anything but a C node: a list node, checked, so that
 * every index derived from its bitmaps is within the list. */
static Py_NO_INLINE int
read_list_shape(PyObject *node, Shape *s)
{
    Py_ssize_t n;
    if (!PyList_Check(node) || PyList_GET_SIZE(node) < 3) {
        PyErr_SetString(PyExc_TypeError, "not a CHAMP node");
        return -1;
    }
    if (read_bitmap(PyList_GET_ITEM(node, 0), &s->dm) < 0
        || read_bitmap(PyList_GET_ITEM(node, 1), &s->nm) < 0)
        return -1;
    n = PyList_GET_SIZE(node) - 3;
    if ((s->dm & s->nm)
        || (s->dm | s->nm ? n != 2 * POPCOUNT(s->dm) + POPCOUNT(s->nm) : n % 2 != 0)) {
        PyErr_SetString(PyExc_ValueError, "not a CHAMP node: bitmaps do not match its length");
        return -1;
    }
    s->items = ((PyListObject *)node)->ob_item + 3;
    s->n = n;
    return 0;
}

/* A node's shape.  A C node's is right by construction (made here from
 * checked shapes), so the hot path is four loads from one block. */
static inline int
read_shape(PyObject *node, Shape *s)
{
    if (IS_NODE(node)) {
        s->items = NODE(node)->items;
        s->n = Py_SIZE(node);
        s->dm = NODE(node)->dm;
        s->nm = NODE(node)->nm;
        return 0;
    }
    return read_list_shape(node, s);
}

/* At 64 bits of hash a node must be a collision node (no bitmaps): its
 * items are then pairs only. */
static int
check_collision(const Shape *s)
{
    if (s->dm | s->nm) {
        PyErr_SetString(PyExc_ValueError, "not a CHAMP node: bitmaps below 64 bits of hash");
        return -1;
    }
    return 0;
}

/* After a call into user code: -1 with RuntimeError if ``node`` no longer
 * has the shape ``s`` it had before (a mutation edited a list node in
 * place; a C node's shape never changes).  Refreshes s->items, which a
 * list may have moved. */
static int
check_unchanged(PyObject *node, Shape *s)
{
    Shape now;
    if (read_shape(node, &now) < 0)
        return -1;
    if (now.dm != s->dm || now.nm != s->nm || now.n != s->n) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a CHAMP node changed during a key comparison or hash");
        return -1;
    }
    s->items = now.items;
    return 0;
}

/* check_unchanged, and item ``i`` is still ``item`` (a key or child the
 * caller holds): an edit may replace a key or a child without changing
 * the node's shape, and writing a copy made from the old one over it
 * would undo that edit. */
static int
check_slot(PyObject *node, Shape *s, Py_ssize_t i, PyObject *item)
{
    if (check_unchanged(node, s) < 0)
        return -1;
    if (s->items[i] != item) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a CHAMP node changed during a key comparison or hash");
        return -1;
    }
    return 0;
}

/* A masked hash as Python passes it (``hash(key) & M64``, or that
 * shifted): an int in [0, 2**64), else OverflowError.  PyLong_AsUnsignedLong
 * where it is 64 bits wide: PyLong_AsUnsignedLongLong takes a slow path for
 * ints of more than one digit, which most hashes are. */
static int
read_hash(PyObject *o, uint64_t *h)
{
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "the hash must be an int");
        return -1;
    }
#if ULONG_MAX >= 0xFFFFFFFFFFFFFFFFull
    *h = PyLong_AsUnsignedLong(o);
#else
    *h = PyLong_AsUnsignedLongLong(o);
#endif
    if (*h == (uint64_t)-1 && PyErr_Occurred())
        return -1;
    return 0;
}

/* 1 if equal, 0 if not, -1 on error.  Holds ``k`` while __eq__ runs. */
static int
keys_equal(PyObject *k, PyObject *key)
{
    int r;
    if (k == key)
        return 1;
    Py_INCREF(k);
    r = PyObject_RichCompareBool(k, key, Py_EQ);
    Py_DECREF(k);
    return r;
}

/* Whether the mutation ``owner`` may edit ``node`` in place: a C node it
 * made.  A list node never: the C code copies it. */
static inline int
is_owned(PyObject *node, PyObject *owner)
{
    return owner != Py_None && IS_NODE(node) && NODE(node)->owner == owner;
}

/* A node on an update's path that will be copied: the copy increments the
 * reference count of every item, each a separate object and likely a cache
 * miss.  Start loading them now, on the way down, so that those misses
 * overlap the descent's instead of following it. */
static inline void
prefetch_items(PyObject *node, const Shape *s, PyObject *owner)
{
    Py_ssize_t i;
    if (is_owned(node, owner))
        return;
    for (i = 0; i < s->n; i++)
        PREFETCH(s->items[i]);
}

static int
box_append(PyObject *box, PyObject *v)
{
    PyObject *r;
    if (PyList_CheckExact(box))
        return PyList_Append(box, v);
    r = PyObject_CallMethod(box, "append", "O", v);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The ancestors of the node an update is at: each node, its shape and the
 * child the walk took.  A key's __eq__ or __hash__ runs at the bottom of
 * the walk, and in a mutation it may edit any node on the path (replace
 * the child the walk is in, fold it, split a slot) without the walk
 * noticing from where it is.  So a mutation's update checks the whole
 * path after its last call into user code and before its first write in
 * place: an edit written into a node no longer on the path would be lost
 * while the count moved. */
#define PATH_MAX_DEPTH 16   /* 13 levels of 5 bits; collision nodes add none */

typedef struct {
    PyObject *node;      /* held by the caller */
    Shape s;
    Py_ssize_t ci;
    PyObject *child;     /* held by the caller */
} Step;

/* ``root`` is where the mutation keeps its root (NULL for the raw
 * functions, whose caller keeps it), ``base`` the root the walk started
 * from.  A nested edit that resizes the root replaces it with a copy
 * sharing its children, which the mutation owns: the old root still holds
 * the path, so only this check sees that writing into those children
 * would change the live trie of an update that is going to be refused. */
typedef struct {
    int depth;
    PyObject **root;
    PyObject *base;
    Step steps[PATH_MAX_DEPTH];
} Path;

/* A new C node of ``n`` items, all NULL, untracked by the GC: the caller
 * fills the items, then tracks it (or leaves that to build_dict()). */
static PyObject *
node_new(Py_ssize_t n, uint32_t dm, uint32_t nm, PyObject *owner)
{
    NodeObject *node = PyObject_GC_NewVar(NodeObject, &NodeType, n);
    if (node == NULL)
        return NULL;
    node->dm = dm;
    node->nm = nm;
    node->owner = Py_NewRef(owner);
    memset(node->items, 0, (size_t)n * sizeof(PyObject *));
    return (PyObject *)node;
}

/* Whether the node an insertion resizes (``node``, at the end of
 * ``path``) may give its items' references to the new node instead of
 * each item getting one more (and one less when the old node is freed):
 * each item is a separate object, so on a big node of a mutation that
 * grows, those increments are most of the edit.  Only when the mutation
 * owns the node and its parent (or the node is the mutation's root), and
 * nothing but the parent's slot (or the mutation's root field) and the
 * walk holds it: the walk then rebinds the parent to the new node in
 * place, with nothing in between that allocates, can fail or runs user
 * code, so nobody ever sees the emptied node.  Not for deletions: an item
 * dropped with the node could be freed, and run a __del__, before the
 * parent is rebound. */
static int
may_move_items(PyObject *node, PyObject *owner, const Path *path)
{
    const Step *up;
    if (!is_owned(node, owner) || Py_REFCNT(node) != 2)
        return 0;
    if (path->depth == 0)
        return path->root != NULL && *path->root == node;
    up = &path->steps[path->depth - 1];
    return is_owned(up->node, owner) && up->ci < Py_SIZE(up->node)
           && NODE(up->node)->items[up->ci] == node;
}

/* A C node copied from ``node`` (shape ``s``, a C node or a list node),
 * owned by ``owner``, with bitmaps ``dm`` and ``nm``: its items with
 * ``del_n`` (at most 2) of them at ``del_at`` left out and the ``ins_n``
 * items of ``ins`` put before old item ``ins_at`` (outside the deleted
 * range).  ``move`` (an insertion's path, else NULL): take the items'
 * references and leave ``node`` empty if may_move_items allows it; the
 * deleted items must then be held elsewhere too (a split's by the new
 * child). */
static PyObject *
node_splice(PyObject *node, Shape *s, PyObject *owner, uint32_t dm, uint32_t nm,
            Py_ssize_t del_at, Py_ssize_t del_n, Py_ssize_t ins_at, PyObject *const *ins,
            Py_ssize_t ins_n, const Path *move)
{
    Py_ssize_t n = s->n, i, j = 0, t, d = 0;
    PyObject *new = node_new(n - del_n + ins_n, dm, nm, owner);
    PyObject **src, **dst, *dropped[2];
    int moving;
    if (new == NULL)
        return NULL;
    /* a collection during the allocation may have run a finalizer that
     * edited a list node */
    if (check_unchanged(node, s) < 0) {
        Py_DECREF(new);
        return NULL;
    }
    moving = move != NULL && may_move_items(node, owner, move);
    src = s->items;
    dst = NODE(new)->items;
    for (i = 0; i <= n; i++) {
        if (i == ins_at)
            for (t = 0; t < ins_n; t++)
                dst[j++] = Py_NewRef(ins[t]);
        if (i == n)
            break;
        if (i >= del_at && i < del_at + del_n) {
            if (moving)
                dropped[d++] = src[i];
            continue;
        }
        dst[j++] = moving ? src[i] : Py_NewRef(src[i]);
    }
    if (moving) {
        Py_SET_SIZE(node, 0);
        NODE(node)->dm = NODE(node)->nm = 0;
        while (d > 0)
            Py_DECREF(dropped[--d]);
    }
    PyObject_GC_Track(new);
    return new;
}

/* ``node`` itself (a new reference) if ``owner`` owns it, else a C node
 * copied from it, owned by ``owner``. */
static PyObject *
editable(PyObject *node, Shape *s, PyObject *owner)
{
    if (is_owned(node, owner))
        return Py_NewRef(node);
    return node_splice(node, s, owner, s->dm, s->nm, 0, 0, -1, NULL, 0, NULL);
}

/* Replace item ``i`` of an editable (C) node, keeping the old item alive
 * in ``*keep`` (released by the caller after all writes). */
static void
replace_item(PyObject *node, Py_ssize_t i, PyObject *v, PyObject **keep)
{
    PyObject **slot = &NODE(node)->items[i];
    *keep = *slot;
    *slot = Py_NewRef(v);
}

/* The smallest subtree at ``shift`` holding two distinct keys (_pair). */
static PyObject *
make_pair(PyObject *k1, PyObject *v1, uint64_t h1, PyObject *k2, PyObject *v2,
          uint64_t h2, int shift, PyObject *owner)
{
    uint32_t b1 = 0, b2 = 0;
    PyObject *node, *sub, **items;
    if (shift < 64) {
        b1 = (uint32_t)((h1 >> shift) & MASK);
        b2 = (uint32_t)((h2 >> shift) & MASK);
        if (b1 == b2) {
            sub = make_pair(k1, v1, h1, k2, v2, h2, shift + BITS, owner);
            if (sub == NULL)
                return NULL;
            node = node_new(1, 0, 1u << b1, owner);
            if (node == NULL) {
                Py_DECREF(sub);
                return NULL;
            }
            NODE(node)->items[0] = sub;
            PyObject_GC_Track(node);
            return node;
        }
    }
    node = shift < 64 ? node_new(4, (1u << b1) | (1u << b2), 0, owner) : node_new(4, 0, 0, owner);
    if (node == NULL)
        return NULL;
    if (b1 > b2) {
        PyObject *t;
        t = k1; k1 = k2; k2 = t;
        t = v1; v1 = v2; v2 = t;
    }
    items = NODE(node)->items;
    items[0] = Py_NewRef(k1);
    items[1] = Py_NewRef(v1);
    items[2] = Py_NewRef(k2);
    items[3] = Py_NewRef(v2);
    PyObject_GC_Track(node);
    return node;
}

/* lookup ---------------------------------------------------------------- */

/* 1 with the value in ``*out`` (a new reference) if ``key`` (hash ``h``)
 * is under ``node``, 0 if not, -1 on error. */
static int
lookup_node(PyObject *node, PyObject *key, uint64_t h, PyObject **out)
{
    Shape s;
    uint32_t bit;
    Py_ssize_t i;
    int eq, result = -1;
    PyObject *k = NULL;

    /* The descent runs no user code, so it borrows each node from its
     * parent; the node is held from the first key comparison on. */
    for (;;) {
        if (read_shape(node, &s) < 0)
            return -1;
        bit = 1u << (h & MASK);
        if (s.dm & bit) {
            i = 2 * POPCOUNT(s.dm & (bit - 1));
            PREFETCH(s.items[i + 1]);   /* the value, during the compare */
            if (s.items[i] == key) {
                *out = Py_NewRef(s.items[i + 1]);
                return 1;
            }
            Py_INCREF(node);
            k = Py_NewRef(s.items[i]);
            eq = keys_equal(k, key);
            if (eq < 0)
                goto done;
            if (!eq) {
                result = 0;
                goto done;
            }
            if (check_slot(node, &s, i, k) < 0)
                goto done;
            *out = Py_NewRef(s.items[i + 1]);
            result = 1;
            goto done;
        }
        if (s.nm & bit) {
            node = s.items[s.n - 1 - POPCOUNT(s.nm & (bit - 1))];
            h >>= BITS;
            continue;
        }
        if (s.dm || s.nm)
            return 0;
        Py_INCREF(node);
        for (i = 0; i < s.n; i += 2) {   /* a collision node (or the empty root) */
            k = Py_NewRef(s.items[i]);
            eq = keys_equal(k, key);
            if (eq < 0 || check_slot(node, &s, i, k) < 0)
                goto done;
            if (eq) {
                *out = Py_NewRef(s.items[i + 1]);
                result = 1;
                goto done;
            }
            Py_CLEAR(k);
        }
        result = 0;
        goto done;
    }
done:
    Py_XDECREF(k);
    Py_DECREF(node);
    return result;
}

static PyObject *
champ_lookup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *v = NULL;
    uint64_t h;
    int r;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "lookup() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (read_hash(args[2], &h) < 0)
        return NULL;
    r = lookup_node(args[0], args[1], h, &v);
    if (r < 0)
        return NULL;
    return r ? v : Py_NewRef(args[3]);
}

/* assoc ----------------------------------------------------------------- */

static int
path_intact(Path *p, PyObject *owner)
{
    int d;
    if (owner == Py_None)   /* a persistent update writes only to its copies */
        return 0;
    if (p->root != NULL && *p->root != p->base) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a CHAMP node changed during a key comparison or hash");
        return -1;
    }
    for (d = 0; d < p->depth; d++)
        if (check_slot(p->steps[d].node, &p->steps[d].s, p->steps[d].ci, p->steps[d].child) < 0)
            return -1;
    return 0;
}

static int
path_push(Path *p, PyObject *node, const Shape *s, Py_ssize_t ci, PyObject *child)
{
    if (p->depth >= PATH_MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "not a CHAMP trie: deeper than 64 bits of hash");
        return -1;
    }
    p->steps[p->depth].node = node;
    p->steps[p->depth].s = *s;
    p->steps[p->depth].ci = ci;
    p->steps[p->depth].child = child;
    p->depth++;
    return 0;
}

/* Bind ``val`` at the pair whose key is item ``i`` (found equal): the old
 * value goes into ``*old`` (a new reference, released by the caller even
 * on error); ``node`` itself if it already was ``val``. */
static PyObject *
rebind(PyObject *node, Shape *s, Py_ssize_t i, PyObject *val, PyObject *owner, PyObject **old)
{
    PyObject *new, *keep;
    Py_XSETREF(*old, Py_NewRef(s->items[i + 1]));
    if (*old == val)
        return Py_NewRef(node);
    new = editable(node, s, owner);
    if (new == NULL)
        return NULL;
    replace_item(new, i + 1, val, &keep);
    Py_DECREF(keep);   /* *old holds it */
    return new;
}

static PyObject *
assoc_collision(PyObject *node, PyObject *key, PyObject *val, PyObject *owner, PyObject **old,
                Path *path)
{
    Shape s;
    Py_ssize_t i;
    int eq;
    PyObject *k, *pair[2];

    if (read_shape(node, &s) < 0 || check_collision(&s) < 0)
        return NULL;
    for (i = 0; i < s.n; i += 2) {
        k = Py_NewRef(s.items[i]);
        eq = keys_equal(k, key);
        if (eq >= 0 && check_slot(node, &s, i, k) < 0)
            eq = -1;
        Py_DECREF(k);
        if (eq < 0)
            return NULL;
        if (eq) {
            if (path_intact(path, owner) < 0)
                return NULL;
            return rebind(node, &s, i, val, owner, old);
        }
    }
    if (s.n > 0 && path_intact(path, owner) < 0)   /* keys were compared */
        return NULL;
    pair[0] = key;
    pair[1] = val;
    return node_splice(node, &s, owner, 0, 0, 0, 0, s.n, pair, 2, path);
}

static PyObject *
assoc_node(PyObject *node, uint64_t h, PyObject *key, PyObject *val,
           PyObject *owner, int shift, PyObject **old, Path *path)
{
    Shape s;
    uint32_t bit, below;
    Py_ssize_t i, ci;
    int eq;
    PyObject *k = NULL, *v = NULL, *sub = NULL, *child = NULL, *new_child = NULL;
    PyObject *new = NULL, *keep = NULL, *pair[2];
    Py_hash_t kh;

    if (shift >= 64)
        return assoc_collision(node, key, val, owner, old, path);
    if (read_shape(node, &s) < 0)
        return NULL;
    prefetch_items(node, &s, owner);
    bit = 1u << ((h >> shift) & MASK);
    below = bit - 1;
    if (s.dm & bit) {
        i = 2 * POPCOUNT(s.dm & below);
        k = Py_NewRef(s.items[i]);
        eq = keys_equal(k, key);
        if (eq < 0 || check_slot(node, &s, i, k) < 0)
            goto done;
        if (eq) {
            if (path_intact(path, owner) < 0)
                goto done;
            new = rebind(node, &s, i, val, owner, old);
            goto done;
        }
        /* The slot holds another key: move both one level down. */
        kh = PyObject_Hash(k);
        if (kh == -1 && PyErr_Occurred())
            goto done;
        if (check_slot(node, &s, i, k) < 0 || path_intact(path, owner) < 0)
            goto done;
        v = Py_NewRef(s.items[i + 1]);
        sub = make_pair(k, v, (uint64_t)kh, key, val, h, shift + BITS, owner);
        if (sub == NULL)
            goto done;
        /* After deleting the pair, the child goes before the children of
         * the lower slots: old item n - popcount(nm & below). */
        new = node_splice(node, &s, owner, s.dm ^ bit, s.nm | bit, i, 2,
                          s.n - POPCOUNT(s.nm & below), &sub, 1, path);
        goto done;
    }
    if (s.nm & bit) {
        ci = s.n - 1 - POPCOUNT(s.nm & below);
        child = Py_NewRef(s.items[ci]);
        if (path_push(path, node, &s, ci, child) < 0)
            goto done;
        new_child = assoc_node(child, h, key, val, owner, shift + BITS, old, path);
        path->depth--;
        if (new_child == NULL)
            goto done;
        if (new_child == child) {
            new = Py_NewRef(node);
            goto done;
        }
        if (check_slot(node, &s, ci, child) < 0)
            goto done;
        new = editable(node, &s, owner);
        if (new == NULL)
            goto done;
        replace_item(new, ci, new_child, &keep);
        goto done;
    }
    pair[0] = key;
    pair[1] = val;
    new = node_splice(node, &s, owner, s.dm | bit, s.nm, 0, 0, 2 * POPCOUNT(s.dm & below), pair, 2,
                      path);
done:
    Py_XDECREF(keep);
    Py_XDECREF(new_child);
    Py_XDECREF(child);
    Py_XDECREF(sub);
    Py_XDECREF(v);
    Py_XDECREF(k);
    return new;
}

static int
parse_hash_shift(PyObject *ho, PyObject *shifto, uint64_t *h, int *shift)
{
    long sh;
    if (read_hash(ho, h) < 0)
        return -1;
    sh = PyLong_AsLong(shifto);
    if (sh == -1 && PyErr_Occurred())
        return -1;
    if (sh < 0) {
        PyErr_SetString(PyExc_ValueError, "negative shift count");
        return -1;
    }
    *shift = sh > 64 ? 64 : (int)sh;
    return 0;
}

static PyObject *
champ_assoc(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t h;
    int shift;
    PyObject *node, *result, *old = NULL;
    Path path;

    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "assoc() takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    if (parse_hash_shift(args[1], args[5], &h, &shift) < 0)
        return NULL;
    node = Py_NewRef(args[0]);
    path.depth = 0;
    path.root = NULL;
    path.base = node;
    result = assoc_node(node, h, args[2], args[3], args[4], shift, &old, &path);
    if (result != NULL && old != NULL && box_append(args[6], old) < 0)
        Py_CLEAR(result);
    Py_XDECREF(old);
    Py_DECREF(node);
    return result;
}

/* dissoc ---------------------------------------------------------------- */

static PyObject *
dissoc_node(PyObject *node, uint64_t h, PyObject *key, PyObject *owner,
            int shift, PyObject **old, Path *path)
{
    Shape s, cs;
    uint32_t bit = 0, below;
    Py_ssize_t i, ci;
    int eq;
    PyObject *k = NULL, *v = NULL, *child = NULL, *new_child = NULL;
    PyObject *new = NULL, *keep = NULL, *pair[2] = {NULL, NULL};

    if (read_shape(node, &s) < 0)
        return NULL;
    prefetch_items(node, &s, owner);
    if (shift >= 64) {
        if (check_collision(&s) < 0)
            return NULL;
        for (i = 0; i < s.n; i += 2) {
            k = Py_NewRef(s.items[i]);
            eq = keys_equal(k, key);
            if (eq < 0 || check_slot(node, &s, i, k) < 0)
                goto done;
            if (eq)
                goto remove_pair;
            Py_CLEAR(k);
        }
        new = Py_NewRef(node);
        goto done;
    }
    bit = 1u << ((h >> shift) & MASK);
    below = bit - 1;
    if (s.dm & bit) {
        i = 2 * POPCOUNT(s.dm & below);
        k = Py_NewRef(s.items[i]);
        eq = keys_equal(k, key);
        if (eq < 0 || check_slot(node, &s, i, k) < 0)
            goto done;
        if (!eq) {
            new = Py_NewRef(node);
            goto done;
        }
        goto remove_pair;
    }
    if (!(s.nm & bit)) {
        new = Py_NewRef(node);
        goto done;
    }
    ci = s.n - 1 - POPCOUNT(s.nm & below);
    child = Py_NewRef(s.items[ci]);
    if (path_push(path, node, &s, ci, child) < 0)
        goto done;
    new_child = dissoc_node(child, h, key, owner, shift + BITS, old, path);
    path->depth--;
    if (new_child == NULL)
        goto done;
    if (read_shape(new_child, &cs) < 0)
        goto done;
    if (cs.nm == 0 && cs.n == 2) {   /* a lone pair: fold it into this node */
        if (check_slot(node, &s, ci, child) < 0)
            goto done;
        pair[0] = Py_NewRef(cs.items[0]);
        pair[1] = Py_NewRef(cs.items[1]);
        new = node_splice(node, &s, owner, s.dm | bit, s.nm ^ bit, ci, 1,
                          2 * POPCOUNT(s.dm & below), pair, 2, NULL);
        goto done;
    }
    if (new_child == child) {
        new = Py_NewRef(node);
        goto done;
    }
    if (check_slot(node, &s, ci, child) < 0)
        goto done;
    new = editable(node, &s, owner);
    if (new == NULL)
        goto done;
    replace_item(new, ci, new_child, &keep);
    goto done;

remove_pair:   /* the key at item i is ``key``: drop the pair */
    if (path_intact(path, owner) < 0)
        goto done;
    v = Py_NewRef(s.items[i + 1]);
    Py_XSETREF(*old, Py_NewRef(v));
    new = node_splice(node, &s, owner, s.dm ^ bit, s.nm, i, 2, -1, NULL, 0, NULL);
done:
    Py_XDECREF(pair[0]);
    Py_XDECREF(pair[1]);
    Py_XDECREF(keep);
    Py_XDECREF(new_child);
    Py_XDECREF(child);
    Py_XDECREF(v);
    Py_XDECREF(k);
    return new;
}

static PyObject *
champ_dissoc(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t h;
    int shift;
    PyObject *node, *result, *old = NULL;
    Path path;

    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "dissoc() takes 6 arguments (%zd given)", nargs);
        return NULL;
    }
    if (parse_hash_shift(args[1], args[4], &h, &shift) < 0)
        return NULL;
    node = Py_NewRef(args[0]);
    path.depth = 0;
    path.root = NULL;
    path.base = node;
    result = dissoc_node(node, h, args[2], args[3], shift, &old, &path);
    if (result != NULL && old != NULL && box_append(args[5], old) < 0)
        Py_CLEAR(result);
    Py_XDECREF(old);
    Py_DECREF(node);
    return result;
}

/* build ----------------------------------------------------------------- */

/* The entries of a build, as arrays; ``order`` is permuted in place.  The
 * arrays hold a reference to each key and value, which the nodes take over
 * (``take``): so a key object is not touched again for its reference count,
 * a cache miss each at 100,000 keys scattered in memory. */
typedef struct {
    uint64_t *h;
    PyObject **k;
    PyObject **v;
    Py_ssize_t *order;
    Py_ssize_t *scratch;
} Entries;

/* The array's reference to the object at ``slot``, which is emptied (what
 * is left when a build fails is released by its caller). */
static inline PyObject *
take(PyObject **slot)
{
    PyObject *o = *slot;
    *slot = NULL;
    return o;
}

/* Nodes are made untracked by the cyclic GC and tracked once the trie is
 * complete: a build allocates thousands of nodes, and each collection they
 * trigger would otherwise traverse the half-built trie again.  No cycle can
 * go through a node before build_dict() returns it. */
static void
set_tracking(PyObject *node, int track)
{
    Py_ssize_t n = Py_SIZE(node), i;
    if (track) {
        if (PyObject_GC_IsTracked(node))
            return;
        PyObject_GC_Track(node);
    }
    else if (PyObject_GC_IsTracked(node))
        PyObject_GC_UnTrack(node);
    for (i = n - POPCOUNT(NODE(node)->nm); i < n; i++)   /* made here: C nodes */
        set_tracking(NODE(node)->items[i], track);
}

/* The trie of the entries order[lo:hi] at ``shift``, exactly as
 * _champ.build makes it: slots in fragment order, a group of two through
 * make_pair (_pair), larger groups by recursion, collision nodes in input
 * order.  The order within each group is the input order (stable). */
static PyObject *
build_node(Entries *e, Py_ssize_t lo, Py_ssize_t hi, int shift)
{
    Py_ssize_t count[32] = {0}, start[32], i, j, p, c;
    uint32_t dm = 0, nm = 0, f;
    PyObject *node, *child, **items;

    if (shift >= 64) {
        node = node_new(2 * (hi - lo), 0, 0, Py_None);
        if (node == NULL)
            return NULL;
        items = NODE(node)->items;
        for (i = lo, j = 0; i < hi; i++, j += 2) {
            items[j] = take(&e->k[e->order[i]]);
            items[j + 1] = take(&e->v[e->order[i]]);
        }
        return node;
    }
    /* A stable counting sort of order[lo:hi] by fragment. */
    for (i = lo; i < hi; i++)
        count[(e->h[e->order[i]] >> shift) & MASK]++;
    for (f = 0, p = lo; f < 32; f++) {
        start[f] = p;
        p += count[f];
        if (count[f] == 1)
            dm |= 1u << f;
        else if (count[f] > 1)
            nm |= 1u << f;
    }
    for (i = lo; i < hi; i++) {
        f = (uint32_t)((e->h[e->order[i]] >> shift) & MASK);
        e->scratch[start[f]++] = e->order[i];
    }
    memcpy(e->order + lo, e->scratch + lo, (size_t)(hi - lo) * sizeof(Py_ssize_t));

    node = node_new(2 * POPCOUNT(dm) + POPCOUNT(nm), dm, nm, Py_None);
    if (node == NULL)
        return NULL;
    items = NODE(node)->items;
    /* Pairs from item 0 up, children from the end down, both in slot order;
     * items not filled yet are NULL, which node_dealloc skips on error. */
    for (f = 0, p = lo, j = 0, c = Py_SIZE(node) - 1; f < 32; p += count[f], f++) {
        if (count[f] == 1) {
            items[j] = take(&e->k[e->order[p]]);
            items[j + 1] = take(&e->v[e->order[p]]);
            j += 2;
        }
        else if (count[f] == 2) {
            Py_ssize_t a = e->order[p], b = e->order[p + 1];
            child = make_pair(e->k[a], e->v[a], e->h[a], e->k[b], e->v[b], e->h[b],
                              shift + BITS, Py_None);
            if (child == NULL)
                goto error;
            Py_CLEAR(e->k[a]);   /* make_pair took references of its own */
            Py_CLEAR(e->v[a]);
            Py_CLEAR(e->k[b]);
            Py_CLEAR(e->v[b]);
            set_tracking(child, 0);
            items[c--] = child;
        }
        else if (count[f] > 2) {
            child = build_node(e, p, p + count[f], shift + BITS);
            if (child == NULL)
                goto error;
            items[c--] = child;
        }
    }
    return node;
error:
    Py_DECREF(node);
    return NULL;
}

/* the hash accumulator (_hashing.py) ------------------------------------ */

/* CPython's tuple hash (Objects/tupleobject.c, xxHash-based since 3.8), so
 * the hash of the pair (key, value) is computed from the key's hash the
 * caller already has, without building the tuple.  Checked against real
 * tuples when the module loads; pair_from_tuple is set (and tuples are
 * built and hashed) if this interpreter hashes tuples otherwise. */
#if SIZEOF_PY_HASH_T == 8
#define XXPRIME_1 11400714785074694791ULL
#define XXPRIME_2 14029467366897019727ULL
#define XXPRIME_5 2870177450012600261ULL
#define XXROTATE(x) (((x) << 31) | ((x) >> 33))
static int pair_from_tuple = 0;
#else
static int pair_from_tuple = 1;
#endif

static uint64_t
pair_formula(Py_hash_t kh, Py_hash_t vh)
{
#if SIZEOF_PY_HASH_T == 8
    uint64_t acc = XXPRIME_5;
    acc += (uint64_t)kh * XXPRIME_2;
    acc = XXROTATE(acc);
    acc *= XXPRIME_1;
    acc += (uint64_t)vh * XXPRIME_2;
    acc = XXROTATE(acc);
    acc *= XXPRIME_1;
    acc += 2 ^ (XXPRIME_5 ^ 3527539UL);
    if (acc == (uint64_t)-1)
        return 1546275796;
    return acc;
#else
    return 0;
#endif
}

/* hash((key, value)) & M64, where ``kh`` is hash(key); -1 on error. */
static int
pair_hash(PyObject *key, Py_hash_t kh, PyObject *value, uint64_t *out)
{
    Py_hash_t vh;
    if (pair_from_tuple) {
        PyObject *t = PyTuple_Pack(2, key, value);
        if (t == NULL)
            return -1;
        vh = PyObject_Hash(t);
        Py_DECREF(t);
        if (vh == -1 && PyErr_Occurred())
            return -1;
        *out = (uint64_t)vh;
        return 0;
    }
    vh = PyObject_Hash(value);
    if (vh == -1 && PyErr_Occurred())
        return -1;
    *out = pair_formula(kh, vh);
    return 0;
}

/* _hashing.shuffle */
static inline uint64_t
shuffle(uint64_t h)
{
    return (h ^ 89869747u ^ (h << 16)) * 3644798167u;
}

/* pmap._rehash: the accumulator after ``key`` went from ``old`` to ``new``
 * (NULL for absent).  A value whose hash raises an Exception makes it
 * unknown (``*known = 0``) instead of failing; anything else (a
 * KeyboardInterrupt) also makes it unknown, and propagates (-1). */
static int
rehash(uint64_t *acc, int *known, PyObject *key, Py_hash_t kh, PyObject *old, PyObject *new)
{
    uint64_t ph;
    if (!*known)
        return 0;
    if (old != NULL) {
        if (pair_hash(key, kh, old, &ph) < 0)
            goto fail;
        *acc ^= shuffle(ph);
    }
    if (new != NULL) {
        if (pair_hash(key, kh, new, &ph) < 0)
            goto fail;
        *acc ^= shuffle(ph);
    }
    return 0;
fail:
    *known = 0;
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyErr_Clear();
    return 0;
}

/* _hashing.accumulate(elements): XOR of shuffle(hash(e) & M64). */
static PyObject *
champ_accumulate(PyObject *module, PyObject *elements)
{
    PyObject *it, *e;
    uint64_t acc = 0;
    Py_hash_t h;

    it = PyObject_GetIter(elements);
    if (it == NULL)
        return NULL;
    while ((e = PyIter_Next(it)) != NULL) {
        h = PyObject_Hash(e);
        Py_DECREF(e);
        if (h == -1 && PyErr_Occurred()) {
            Py_DECREF(it);
            return NULL;
        }
        acc ^= shuffle((uint64_t)h);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromUnsignedLongLong(acc);
}

/* _champ.build_dict(d, pairs=True): (root, count, acc).  Two passes over d: the
 * first takes a reference to each key and value (no user code runs, so d
 * cannot change under it), the second hashes them, which may run user code
 * that edits d: the build goes on from the references it holds.  The nodes
 * then take those references over. */
static PyObject *
champ_build_dict(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *d, *k, *v, *root = NULL, *result = NULL, *acco;
    Entries e = {NULL, NULL, NULL, NULL, NULL};
    Py_ssize_t n, i, pos = 0;
    Py_hash_t kh;
    uint64_t acc = 0;
    int pairs = 1, known = 1;

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "build_dict() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    d = args[0];
    if (!PyDict_Check(d)) {
        PyErr_Format(PyExc_TypeError, "build_dict() needs a dict, not %.200s", Py_TYPE(d)->tp_name);
        return NULL;
    }
    if (nargs == 2 && (pairs = PyObject_IsTrue(args[1])) < 0)
        return NULL;
    n = PyDict_GET_SIZE(d);
    e.h = PyMem_Malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    e.k = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    e.v = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    e.order = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    e.scratch = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    if (!e.h || !e.k || !e.v || !e.order || !e.scratch) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n && PyDict_Next(d, &pos, &k, &v); i++) {
        e.k[i] = Py_NewRef(k);
        e.v[i] = Py_NewRef(v);
        e.order[i] = i;
    }
    n = i;
    for (i = 0; i < n; i++) {
        if (i + 8 < n)
            PREFETCH(e.k[i + 8]);
        kh = PyObject_Hash(e.k[i]);
        if (kh == -1 && PyErr_Occurred())
            goto done;
        e.h[i] = (uint64_t)kh;
        if (!pairs)
            acc ^= shuffle((uint64_t)kh);
        else if (known && rehash(&acc, &known, e.k[i], kh, NULL, e.v[i]) < 0)
            goto done;
    }
    root = build_node(&e, 0, n, 0);
    if (root == NULL)
        goto done;
    set_tracking(root, 1);
    acco = known ? PyLong_FromUnsignedLongLong(acc) : Py_NewRef(Py_None);
    if (acco != NULL)
        result = Py_BuildValue("(OnO)", root, n, acco);
    Py_XDECREF(acco);
done:
    Py_XDECREF(root);
    for (i = 0; e.k && i < n; i++) {   /* what no node took: everything, on an error */
        Py_XDECREF(e.k[i]);
        Py_XDECREF(e.v[i]);
    }
    PyMem_Free(e.h);
    PyMem_Free(e.k);
    PyMem_Free(e.v);
    PyMem_Free(e.order);
    PyMem_Free(e.scratch);
    return result;
}

/* iteration (_champ.iter_keys / iter_values / iter_items) -------------- */

/* Deeper than any trie: 13 levels of 5 bits, then a collision node. */
#define MAX_DEPTH 16

enum { ITER_KEYS, ITER_VALUES, ITER_ITEMS };

typedef struct {
    PyObject *node;     /* held */
    uint32_t dm, nm;    /* its shape when entered */
    Py_ssize_t n;
    Py_ssize_t i;       /* next pair's key item */
    Py_ssize_t split;   /* where its pairs end */
    Py_ssize_t c;       /* its children still to visit are items [split, c) */
} Frame;

typedef struct {
    PyObject_HEAD
    int kind;
    int depth;
    PyObject *item;     /* the last (key, value) tuple, reused when free */
    Frame stack[MAX_DEPTH];
} IterObject;

static PyTypeObject IterType;

static int
iter_push(IterObject *it, PyObject *node)
{
    Shape s;
    Frame *f;
    if (it->depth >= MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "not a CHAMP trie: deeper than 64 bits of hash");
        return -1;
    }
    if (read_shape(node, &s) < 0)
        return -1;
    f = &it->stack[it->depth++];
    f->node = Py_NewRef(node);
    f->dm = s.dm;
    f->nm = s.nm;
    f->n = s.n;
    f->i = 0;
    f->split = s.n - POPCOUNT(s.nm);
    f->c = s.n;
    return 0;
}

static PyObject *
make_iter(PyObject *root, int kind)
{
    IterObject *it = PyObject_GC_New(IterObject, &IterType);
    if (it == NULL)
        return NULL;
    it->kind = kind;
    it->depth = 0;
    it->item = NULL;
    if (kind == ITER_ITEMS) {
        it->item = PyTuple_Pack(2, Py_None, Py_None);
        if (it->item == NULL) {
            Py_DECREF(it);
            return NULL;
        }
    }
    if (iter_push(it, root) < 0) {
        Py_DECREF(it);
        return NULL;
    }
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

/* The items of the node of ``f``, if it still has the shape it had when
 * entered (a C node always does; a list node may have been edited in
 * place by a live Python mutation): else NULL with RuntimeError. */
static PyObject **
frame_items(Frame *f)
{
    Shape s;
    if (read_shape(f->node, &s) < 0 || s.n != f->n || s.dm != f->dm || s.nm != f->nm) {
        PyErr_Clear();
        PyErr_SetString(PyExc_RuntimeError, "a CHAMP node changed during iteration");
        return NULL;
    }
    return s.items;
}

static PyObject *
iter_next(IterObject *it)
{
    Frame *f;
    PyObject **items, *k, *v, *item, *child;
    while (it->depth > 0) {
        f = &it->stack[it->depth - 1];
        items = frame_items(f);
        if (items == NULL)
            return NULL;
        if (f->i < f->split) {
            k = items[f->i];
            v = items[f->i + 1];
            f->i += 2;
            if (it->kind == ITER_KEYS)
                return Py_NewRef(k);
            if (it->kind == ITER_VALUES)
                return Py_NewRef(v);
            item = it->item;
            if (Py_REFCNT(item) == 1) {   /* the caller dropped it: reuse */
                PyObject *ok = PyTuple_GET_ITEM(item, 0), *ov = PyTuple_GET_ITEM(item, 1);
                PyTuple_SET_ITEM(item, 0, Py_NewRef(k));
                PyTuple_SET_ITEM(item, 1, Py_NewRef(v));
                Py_DECREF(ok);
                Py_DECREF(ov);
                if (!PyObject_GC_IsTracked(item))
                    PyObject_GC_Track(item);
                return Py_NewRef(item);
            }
            item = PyTuple_Pack(2, k, v);
            if (item == NULL)
                return NULL;
            Py_SETREF(it->item, Py_NewRef(item));
            return item;
        }
        if (f->c > f->split) {   /* children from slot 0 (at the end) up */
            child = items[--f->c];
            if (iter_push(it, child) < 0)
                return NULL;
            continue;
        }
        it->depth--;
        Py_DECREF(f->node);
    }
    return NULL;
}

static int
iter_traverse(IterObject *it, visitproc visit, void *arg)
{
    int d;
    for (d = 0; d < it->depth; d++)
        Py_VISIT(it->stack[d].node);
    Py_VISIT(it->item);
    return 0;
}

static void
iter_dealloc(IterObject *it)
{
    PyObject_GC_UnTrack(it);
    while (it->depth > 0)
        Py_DECREF(it->stack[--it->depth].node);
    Py_XDECREF(it->item);
    PyObject_GC_Del(it);
}

static PyTypeObject IterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb.pds._champ_c.iterator",
    .tp_basicsize = sizeof(IterObject),
    .tp_dealloc = (destructor)iter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)iter_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)iter_next,
};

static PyObject *
champ_iter_keys(PyObject *module, PyObject *root)
{
    return make_iter(root, ITER_KEYS);
}

static PyObject *
champ_iter_values(PyObject *module, PyObject *root)
{
    return make_iter(root, ITER_VALUES);
}

static PyObject *
champ_iter_items(PyObject *module, PyObject *root)
{
    return make_iter(root, ITER_ITEMS);
}

/* the node type, as Python sees it --------------------------------------
 *
 * A C node reads as the list node it stands for, [datamap, nodemap, None,
 * k0, v0, ..., child_1, child_0]: len, indexing (negative too), slices
 * (lists), iteration.  So the Python code that reads tries (equality,
 * diff, _walk, the Python trie itself after select("python")) works on
 * both kinds of node.  Index 2, the owner, reads as None: the Python trie
 * then never takes a C node for its own and copies it (into a list)
 * before any edit, never writing into one.  The real owner is the
 * read-only attribute ``owner``, for tests. */

/* The int object for a bitmap, for node[0] and node[1].  Bitmaps repeat
 * (few bits set deep down, all 32 near the root), so equal bitmaps share
 * one object through a small direct-mapped cache: equality and diff, which
 * read both bitmaps of every node they compare, then allocate nothing.
 * Below 256, CPython's own small ints. */
#define BITMAP_CACHE_BITS 12
static PyObject *bitmap_cache[1 << BITMAP_CACHE_BITS];
static uint32_t bitmap_cache_value[1 << BITMAP_CACHE_BITS];

static PyObject *
bitmap_int(uint32_t v)
{
    uint32_t slot;
    PyObject *o;
    if (v < 256)
        return PyLong_FromUnsignedLong(v);
    slot = (v * 2654435761u) >> (32 - BITMAP_CACHE_BITS);
    if (bitmap_cache[slot] != NULL && bitmap_cache_value[slot] == v)
        return Py_NewRef(bitmap_cache[slot]);
    o = PyLong_FromUnsignedLong(v);
    if (o != NULL) {
        Py_XSETREF(bitmap_cache[slot], Py_NewRef(o));
        bitmap_cache_value[slot] = v;
    }
    return o;
}

static Py_ssize_t
node_length(PyObject *node)
{
    return Py_SIZE(node) + 3;
}

static PyObject *
node_item(PyObject *node, Py_ssize_t i)
{
    if (i < 0 || i >= Py_SIZE(node) + 3) {
        PyErr_SetString(PyExc_IndexError, "Node index out of range");
        return NULL;
    }
    switch (i) {
    case 0:
        return bitmap_int(NODE(node)->dm);
    case 1:
        return bitmap_int(NODE(node)->nm);
    case 2:
        Py_RETURN_NONE;
    }
    return Py_NewRef(NODE(node)->items[i - 3]);
}

static PyObject *
node_subscript(PyObject *node, PyObject *key)
{
    Py_ssize_t start, stop, step, count, i, j;
    PyObject *list, *o;
    if (PyLong_CheckExact(key)) {   /* the usual case, without PyIndex_Check's call */
        i = PyLong_AsSsize_t(key);
        if (i == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_SetString(PyExc_IndexError, "Node index out of range");
            return NULL;
        }
        if (i < 0)
            i += Py_SIZE(node) + 3;
        return node_item(node, i);
    }
    if (PyIndex_Check(key)) {
        i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return NULL;
        if (i < 0)
            i += Py_SIZE(node) + 3;
        return node_item(node, i);
    }
    if (!PySlice_Check(key)) {
        PyErr_Format(PyExc_TypeError, "Node indices must be integers or slices, not %.200s",
                     Py_TYPE(key)->tp_name);
        return NULL;
    }
    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return NULL;
    count = PySlice_AdjustIndices(Py_SIZE(node) + 3, &start, &stop, step);
    list = PyList_New(count);
    if (list == NULL)
        return NULL;
    for (i = start, j = 0; j < count; i += step, j++) {
        o = i >= 3 ? Py_NewRef(NODE(node)->items[i - 3]) : node_item(node, i);
        if (o == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, j, o);
    }
    return list;
}

static PyObject *
node_repr(PyObject *node)
{
    PyObject *list = PySequence_List(node), *r;
    if (list == NULL)
        return NULL;
    r = PyUnicode_FromFormat("Node(%R)", list);
    Py_DECREF(list);
    return r;
}

static PyObject *
node_get_owner(PyObject *node, void *closure)
{
    return Py_NewRef(NODE(node)->owner != NULL ? NODE(node)->owner : Py_None);
}

static int
node_traverse(PyObject *node, visitproc visit, void *arg)
{
    Py_ssize_t i;
    for (i = Py_SIZE(node); --i >= 0;)
        Py_VISIT(NODE(node)->items[i]);
    Py_VISIT(NODE(node)->owner);
    return 0;
}

/* Break a reference cycle through the node: it becomes an empty node
 * (what a reader may still meet) before its items are released. */
static int
node_clear(PyObject *node)
{
    Py_ssize_t i, n = Py_SIZE(node);
    Py_SET_SIZE(node, 0);
    NODE(node)->dm = NODE(node)->nm = 0;
    for (i = 0; i < n; i++)
        Py_CLEAR(NODE(node)->items[i]);
    Py_CLEAR(NODE(node)->owner);
    return 0;
}

static void
node_dealloc(PyObject *node)
{
    Py_ssize_t i;
    PyObject_GC_UnTrack(node);
    Py_TRASHCAN_BEGIN(node, node_dealloc)
    for (i = Py_SIZE(node); --i >= 0;)
        Py_XDECREF(NODE(node)->items[i]);
    Py_XDECREF(NODE(node)->owner);
    PyObject_GC_Del(node);
    Py_TRASHCAN_END
}

static PySequenceMethods node_as_sequence = {
    .sq_length = node_length,
    .sq_item = node_item,
};

static PyMappingMethods node_as_mapping = {
    .mp_length = node_length,
    .mp_subscript = node_subscript,
};

static PyGetSetDef node_getset[] = {
    {"owner", node_get_owner, NULL,
     "the token of the mutation that made the node (node[2] reads None)", NULL},
    {NULL},
};

static PyTypeObject NodeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb.pds._champ_c.Node",
    .tp_doc = "A CHAMP trie node made by the C code; reads as the list "
              "[datamap, nodemap, None, k0, v0, ..., child_1, child_0].",
    .tp_basicsize = offsetof(NodeObject, items),
    .tp_itemsize = sizeof(PyObject *),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = node_dealloc,
    .tp_traverse = node_traverse,
    .tp_clear = node_clear,
    .tp_repr = node_repr,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_as_sequence = &node_as_sequence,
    .tp_as_mapping = &node_as_mapping,
    .tp_getset = node_getset,
};

/* the map types ---------------------------------------------------------
 *
 * MapBase and MutationBase are the C versions of pmap._PyMap and
 * pmap._PyMutation: the fields a PMap (or PMapMutation) holds and its hot
 * methods, which PMap and PMapMutation inherit when this module is in use.
 * Same fields (as attributes _root, _count, _hacc, and _owner, _result on
 * a mutation), same results, same exceptions. */

typedef struct {
    PyObject_HEAD
    PyObject *root;          /* never NULL */
    Py_ssize_t count;
    uint64_t hacc;           /* the hash accumulator, if hknown */
    int hknown;
    PyObject *owner;         /* a mutation's token; None when finished */
    PyObject *result;        /* a mutation's finish() result, or None */
    PyObject *weakreflist;
} MapObject;

static PyTypeObject MapBaseType, MutationBaseType, SetBaseType, SetMutationBaseType;

static PyObject *
empty_root(void)
{
    PyObject *node = node_new(0, 0, 0, Py_None);
    if (node != NULL)
        PyObject_GC_Track(node);
    return node;
}

/* A new instance of ``type`` (a subtype of MapBase or MutationBase);
 * steals ``root``. */
static PyObject *
new_map(PyTypeObject *type, PyObject *root, Py_ssize_t count, uint64_t hacc, int hknown)
{
    MapObject *m = (MapObject *)type->tp_alloc(type, 0);
    if (m == NULL) {
        Py_DECREF(root);
        return NULL;
    }
    m->root = root;
    m->count = count;
    m->hacc = hacc;
    m->hknown = hknown;
    m->owner = Py_NewRef(Py_None);
    m->result = Py_NewRef(Py_None);
    return (PyObject *)m;
}

static PyObject *
map_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *root = empty_root();
    if (root == NULL)
        return NULL;
    return new_map(type, root, 0, 0, 1);
}

static int
map_traverse(MapObject *m, visitproc visit, void *arg)
{
    Py_VISIT(m->root);
    Py_VISIT(m->owner);
    Py_VISIT(m->result);
    return 0;
}

/* No tp_clear: a cycle through a map goes through its nodes, which are
 * cleared (C nodes and lists alike); so root is never NULL. */
static void
map_dealloc(MapObject *m)
{
    PyObject_GC_UnTrack(m);
    if (m->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)m);
    Py_XDECREF(m->root);
    Py_XDECREF(m->owner);
    Py_XDECREF(m->result);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

/* make(cls, root, count, hacc): pmap._make for these types. */
static PyObject *
champ_make(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyTypeObject *type;
    Py_ssize_t count;
    uint64_t hacc = 0;
    int hknown = 1;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "make() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyType_Check(args[0])
        || !(PyType_IsSubtype((PyTypeObject *)args[0], &MapBaseType)
             || PyType_IsSubtype((PyTypeObject *)args[0], &MutationBaseType)
             || PyType_IsSubtype((PyTypeObject *)args[0], &SetBaseType)
             || PyType_IsSubtype((PyTypeObject *)args[0], &SetMutationBaseType))) {
        PyErr_SetString(PyExc_TypeError, "make() needs a subclass of MapBase, MutationBase, SetBase or SetMutationBase");
        return NULL;
    }
    type = (PyTypeObject *)args[0];
    count = PyLong_AsSsize_t(args[2]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (args[3] == Py_None)
        hknown = 0;
    else {
        hacc = PyLong_AsUnsignedLongLong(args[3]);
        if (hacc == (uint64_t)-1 && PyErr_Occurred())
            return NULL;
    }
    return new_map(type, Py_NewRef(args[1]), count, hacc, hknown);
}

static PyObject *
map_get_root(MapObject *m, void *closure)
{
    return Py_NewRef(m->root);
}

static int
map_set_root(MapObject *m, PyObject *v, void *closure)
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_root cannot be deleted");
        return -1;
    }
    Py_SETREF(m->root, Py_NewRef(v));
    return 0;
}

static PyObject *
map_get_hacc(MapObject *m, void *closure)
{
    if (!m->hknown)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(m->hacc);
}

static int
map_set_hacc(MapObject *m, PyObject *v, void *closure)
{
    uint64_t h;
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_hacc cannot be deleted");
        return -1;
    }
    if (v == Py_None) {
        m->hknown = 0;
        return 0;
    }
    h = PyLong_AsUnsignedLongLong(v);
    if (h == (uint64_t)-1 && PyErr_Occurred())
        return -1;
    m->hacc = h;
    m->hknown = 1;
    return 0;
}

static PyGetSetDef map_getset[] = {
    {"_root", (getter)map_get_root, (setter)map_set_root, "the trie's root node", NULL},
    {"_hacc", (getter)map_get_hacc, (setter)map_set_hacc,
     "the hash accumulator, None when unknown", NULL},
    {NULL},
};

static PyMemberDef map_members[] = {
    {"_count", T_PYSSIZET, offsetof(MapObject, count), 0, "the number of keys"},
    {NULL},
};

static PyMemberDef mutation_members[] = {
    {"_count", T_PYSSIZET, offsetof(MapObject, count), 0, "the number of keys"},
    {"_owner", T_OBJECT, offsetof(MapObject, owner), 0, "the owner token, None once finished"},
    {"_result", T_OBJECT, offsetof(MapObject, result), 0, "what finish() returned, or None"},
    {NULL},
};

static int
set_key_error(PyObject *key)
{
    PyObject *t = PyTuple_Pack(1, key);   /* KeyError(key), a tuple key too */
    if (t != NULL) {
        PyErr_SetObject(PyExc_KeyError, t);
        Py_DECREF(t);
    }
    return -1;
}

/* The readers both types share (pmap._PyReader). */

static Py_ssize_t
map_length(MapObject *m)
{
    if (m->count < 0) {   /* only if _count was set so */
        PyErr_SetString(PyExc_ValueError, "__len__() should return >= 0");
        return -1;
    }
    return m->count;
}

/* 1 found (*out), 0 absent, -1 error. */
static int
map_find(MapObject *m, PyObject *key, PyObject **out)
{
    Py_hash_t kh = PyObject_Hash(key);
    PyObject *root;
    int r;
    if (kh == -1 && PyErr_Occurred())
        return -1;
    root = Py_NewRef(m->root);
    r = lookup_node(root, key, (uint64_t)kh, out);
    Py_DECREF(root);
    return r;
}

static PyObject *
map_subscript(MapObject *m, PyObject *key)
{
    PyObject *v = NULL;
    int r = map_find(m, key, &v);
    if (r < 0)
        return NULL;
    if (r == 0) {
        set_key_error(key);
        return NULL;
    }
    return v;
}

static int
map_contains(MapObject *m, PyObject *key)
{
    PyObject *v = NULL;
    int r = map_find(m, key, &v);
    Py_XDECREF(v);
    return r;
}

static PyObject *
map_get(MapObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *v = NULL;
    int r;
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    r = map_find(m, args[0], &v);
    if (r < 0)
        return NULL;
    if (r)
        return v;
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *
map_iter(MapObject *m)
{
    return make_iter(m->root, ITER_KEYS);
}

/* The owner token for an edit (borrowed); ValueError once finished. */
static PyObject *
mutation_token(MapObject *m)
{
    PyObject *name;
    if (m->owner != Py_None && m->owner != NULL)   /* NULL: del mm._owner */
        return m->owner;
    name = PyObject_GetAttrString((PyObject *)Py_TYPE(m), "__name__");
    if (name != NULL) {
        PyErr_Format(PyExc_ValueError,
                     "this %U has been finished; start another with mutate()", name);
        Py_DECREF(name);
    }
    return NULL;
}

/* After an edit's walk: -1 with RuntimeError if a key's __eq__ or
 * __hash__ replaced the mutation's root meanwhile (a nested edit that
 * resized the root, or the mutation's first edit).  The walk then wrote
 * nothing in place (path_intact refuses to once the root moved), and
 * storing its result would drop the nested edit while keeping its count. */
static int
root_unchanged(MapObject *m, PyObject *base)
{
    if (m->root == base)
        return 0;
    PyErr_SetString(PyExc_RuntimeError,
                    "a CHAMP node changed during a key comparison or hash");
    return -1;
}

/* The walk of every update, persistent or in a mutation, map or set: hash
 * ``key`` (into *kh), check the mutation's token (``in_mutation``), then
 * bind ``val`` (assoc) or, if ``val`` is NULL, remove the key (dissoc),
 * from the root.  The new root (a new reference; the same one if nothing
 * changed or the mutation edited it in place) with the key's old value in
 * *old (NULL if it was absent), or NULL on error. */
static PyObject *
walk(MapObject *m, PyObject *key, PyObject *val, int in_mutation, Py_hash_t *kh, PyObject **old)
{
    Path path;
    PyObject *owner = Py_None, *base, *root;

    *kh = PyObject_Hash(key);
    if (*kh == -1 && PyErr_Occurred())
        return NULL;
    if (in_mutation && (owner = mutation_token(m)) == NULL)
        return NULL;
    owner = Py_NewRef(owner);
    base = Py_NewRef(m->root);
    path.depth = 0;
    path.root = in_mutation ? &m->root : NULL;
    path.base = base;
    if (val != NULL)
        root = assoc_node(base, (uint64_t)*kh, key, val, owner, 0, old, &path);
    else
        root = dissoc_node(base, (uint64_t)*kh, key, owner, 0, old, &path);
    if (root != NULL && in_mutation && root_unchanged(m, base) < 0)
        Py_CLEAR(root);
    if (root == NULL)
        Py_CLEAR(*old);
    Py_DECREF(base);
    Py_DECREF(owner);
    return root;
}

/* PMap.set and PMap.delete (pmap._PyMap). */

static PyObject *
map_set(MapObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *root, *old = NULL, *result = NULL;
    Py_hash_t kh;
    uint64_t acc;
    int known;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "set() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    root = walk(m, args[0], args[1], 0, &kh, &old);
    if (root == NULL)
        return NULL;
    if (root == m->root) {
        Py_DECREF(root);
        result = Py_NewRef(m);
        goto done;
    }
    acc = m->hacc;
    known = m->hknown;
    if (rehash(&acc, &known, args[0], kh, old, args[1]) < 0) {
        Py_DECREF(root);
        goto done;
    }
    result = new_map(Py_TYPE(m), root, m->count + (old == NULL), acc, known);
done:
    Py_XDECREF(old);
    return result;
}

static PyObject *
map_delete(MapObject *m, PyObject *key)
{
    PyObject *root, *old = NULL, *result = NULL;
    Py_hash_t kh;
    uint64_t acc;
    int known;

    root = walk(m, key, NULL, 0, &kh, &old);
    if (root == NULL)
        return NULL;
    if (old == NULL) {
        Py_DECREF(root);
        set_key_error(key);
        return NULL;
    }
    acc = m->hacc;
    known = m->hknown;
    if (rehash(&acc, &known, key, kh, old, NULL) < 0)
        Py_DECREF(root);
    else
        result = new_map(Py_TYPE(m), root, m->count - 1, acc, known);
    Py_DECREF(old);
    return result;
}

/* PMapMutation's edits (pmap._PyMutation). */

/* Store an edit's result: the new root (stolen), the count, the
 * accumulator; -1 if rehashing was interrupted (the edit is kept). */
static int
mutation_store(MapObject *m, PyObject *root, Py_ssize_t delta, PyObject *key,
               Py_hash_t kh, PyObject *old, PyObject *new)
{
    uint64_t acc = m->hacc;
    int known = m->hknown, r;
    Py_SETREF(m->root, root);
    m->count += delta;
    r = rehash(&acc, &known, key, kh, old, new);
    m->hacc = acc;
    m->hknown = known;
    return r;
}

static int
mutation_setitem(MapObject *m, PyObject *key, PyObject *val)
{
    PyObject *root, *old = NULL;
    Py_hash_t kh;
    int r = 0;

    root = walk(m, key, val, 1, &kh, &old);
    if (root == NULL)
        return -1;
    if (old == val)
        Py_DECREF(root);
    else
        r = mutation_store(m, root, old == NULL, key, kh, old, val);
    Py_XDECREF(old);
    return r;
}

/* pop(): 1 with the value in *out, 0 if absent, -1 on error. */
static int
mutation_remove(MapObject *m, PyObject *key, PyObject **out)
{
    PyObject *root, *old = NULL;
    Py_hash_t kh;

    root = walk(m, key, NULL, 1, &kh, &old);
    if (root == NULL)
        return -1;
    if (old == NULL) {
        Py_DECREF(root);
        return 0;
    }
    if (mutation_store(m, root, -1, key, kh, old, NULL) < 0) {
        Py_DECREF(old);
        return -1;
    }
    *out = old;
    return 1;
}

static int
mutation_ass_subscript(MapObject *m, PyObject *key, PyObject *val)
{
    PyObject *old = NULL;
    int r;
    if (val != NULL)
        return mutation_setitem(m, key, val);
    r = mutation_remove(m, key, &old);
    if (r == 0)
        return set_key_error(key);
    Py_XDECREF(old);
    return r < 0 ? -1 : 0;
}

static PyObject *
mutation_set(MapObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "set() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (mutation_setitem(m, args[0], args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
mutation_pop(MapObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *old = NULL;
    int r;
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "pop() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    r = mutation_remove(m, args[0], &old);
    if (r < 0)
        return NULL;
    if (r)
        return old;
    if (nargs == 2)
        return Py_NewRef(args[1]);
    set_key_error(args[0]);
    return NULL;
}

static PyMappingMethods map_as_mapping = {
    .mp_length = (lenfunc)map_length,
    .mp_subscript = (binaryfunc)map_subscript,
};

static PyMappingMethods mutation_as_mapping = {
    .mp_length = (lenfunc)map_length,
    .mp_subscript = (binaryfunc)map_subscript,
    .mp_ass_subscript = (objobjargproc)mutation_ass_subscript,
};

static PySequenceMethods map_as_sequence = {
    .sq_contains = (objobjproc)map_contains,
};

static PyMethodDef map_methods[] = {
    {"get", (PyCFunction)(void (*)(void))map_get, METH_FASTCALL,
     "get(key, default=None): the value of key, or default."},
    {"set", (PyCFunction)(void (*)(void))map_set, METH_FASTCALL,
     "set(key, val): a map with key bound to val (this one if it already is)."},
    {"delete", (PyCFunction)map_delete, METH_O,
     "delete(key): a map without key; KeyError if it is absent."},
    {NULL},
};

static PyMethodDef mutation_methods[] = {
    {"get", (PyCFunction)(void (*)(void))map_get, METH_FASTCALL,
     "get(key, default=None): the value of key, or default."},
    {"set", (PyCFunction)(void (*)(void))mutation_set, METH_FASTCALL,
     "set(key, val): bind key to val in place."},
    {"pop", (PyCFunction)(void (*)(void))mutation_pop, METH_FASTCALL,
     "pop(key[, default]): remove key and return its value (or default if absent)."},
    {NULL},
};

/* What the four base types (MapBase, MutationBase, SetBase,
 * SetMutationBase) share: one struct, its allocation and its GC. */
#define BASE_TYPE_SLOTS \
    .tp_basicsize = sizeof(MapObject), \
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, \
    .tp_new = map_tp_new, \
    .tp_dealloc = (destructor)map_dealloc, \
    .tp_traverse = (traverseproc)map_traverse, \
    .tp_getset = map_getset

static PyTypeObject MapBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb.pds._champ_c.MapBase",
    .tp_doc = "The C base of PMap: its fields and hot methods (pmap._PyMap in C).",
    BASE_TYPE_SLOTS,
    .tp_weaklistoffset = offsetof(MapObject, weakreflist),
    .tp_as_mapping = &map_as_mapping,
    .tp_as_sequence = &map_as_sequence,
    .tp_iter = (getiterfunc)map_iter,
    .tp_methods = map_methods,
    .tp_members = map_members,
};

static PyTypeObject MutationBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb.pds._champ_c.MutationBase",
    .tp_doc = "The C base of PMapMutation: its fields and hot methods (pmap._PyMutation in C).",
    BASE_TYPE_SLOTS,
    .tp_as_mapping = &mutation_as_mapping,
    .tp_as_sequence = &map_as_sequence,
    .tp_methods = mutation_methods,
    .tp_members = mutation_members,
};

/* the set types -----------------------------------------------------------
 *
 * SetBase and SetMutationBase: pset._PySet and pset._PySetMutation in C,
 * the same struct as the maps' (values are None; the accumulator XORs
 * shuffle(hash(element)) and is always known). */

static PyTypeObject SetBaseType, SetMutationBaseType;

/* PSet.add / PSet.discard: the new set, or this one if nothing changes. */
static PyObject *
set_add(MapObject *m, PyObject *elem)
{
    PyObject *root, *old = NULL;
    Py_hash_t h;

    root = walk(m, elem, Py_None, 0, &h, &old);
    Py_XDECREF(old);
    if (root == NULL)
        return NULL;
    if (root == m->root) {
        Py_DECREF(root);
        return Py_NewRef(m);
    }
    return new_map(Py_TYPE(m), root, m->count + 1, m->hacc ^ shuffle((uint64_t)h), 1);
}

static PyObject *
set_discard_impl(MapObject *m, PyObject *elem, int must)
{
    PyObject *root, *old = NULL;
    Py_hash_t h;

    root = walk(m, elem, NULL, 0, &h, &old);
    if (root == NULL)
        return NULL;
    if (old == NULL) {
        Py_DECREF(root);
        if (!must)
            return Py_NewRef(m);
        set_key_error(elem);
        return NULL;
    }
    Py_DECREF(old);
    return new_map(Py_TYPE(m), root, m->count - 1, m->hacc ^ shuffle((uint64_t)h), 1);
}

static PyObject *
set_discard(MapObject *m, PyObject *elem)
{
    return set_discard_impl(m, elem, 0);
}

static PyObject *
set_remove(MapObject *m, PyObject *elem)
{
    return set_discard_impl(m, elem, 1);
}

static PyObject *
setmut_add(MapObject *m, PyObject *elem)
{
    PyObject *root, *old = NULL;
    Py_hash_t h;

    root = walk(m, elem, Py_None, 1, &h, &old);
    if (root == NULL)
        return NULL;
    if (old != NULL) {   /* already in: nothing changed */
        Py_DECREF(old);
        Py_DECREF(root);
        Py_RETURN_NONE;
    }
    Py_SETREF(m->root, root);
    m->count += 1;
    m->hacc ^= shuffle((uint64_t)h);
    Py_RETURN_NONE;
}

/* 1 if removed, 0 if absent, -1 on error. */
static int
setmut_discard_impl(MapObject *m, PyObject *elem)
{
    PyObject *root, *old = NULL;
    Py_hash_t h;

    root = walk(m, elem, NULL, 1, &h, &old);
    if (root == NULL)
        return -1;
    if (old == NULL) {
        Py_DECREF(root);
        return 0;
    }
    Py_DECREF(old);
    Py_SETREF(m->root, root);
    m->count -= 1;
    m->hacc ^= shuffle((uint64_t)h);
    return 1;
}

static PyObject *
setmut_discard(MapObject *m, PyObject *elem)
{
    int r = setmut_discard_impl(m, elem);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *
setmut_remove(MapObject *m, PyObject *elem)
{
    int r = setmut_discard_impl(m, elem);
    if (r < 0)
        return NULL;
    if (r == 0) {
        set_key_error(elem);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PySequenceMethods set_as_sequence = {
    .sq_length = (lenfunc)map_length,
    .sq_contains = (objobjproc)map_contains,
};

static PyMethodDef set_methods[] = {
    {"add", (PyCFunction)set_add, METH_O, "add(elem): a set with elem (this one if it is already in)."},
    {"discard", (PyCFunction)set_discard, METH_O, "discard(elem): a set without elem (this one if it was not in)."},
    {"remove", (PyCFunction)set_remove, METH_O, "remove(elem): a set without elem; KeyError if it was not in."},
    {NULL},
};

static PyMethodDef setmut_methods[] = {
    {"add", (PyCFunction)setmut_add, METH_O, "add(elem): add elem in place."},
    {"discard", (PyCFunction)setmut_discard, METH_O, "discard(elem): remove elem if present; whether it was."},
    {"remove", (PyCFunction)setmut_remove, METH_O, "remove(elem): remove elem; KeyError if it was not in."},
    {NULL},
};

static PyTypeObject SetBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb.pds._champ_c.SetBase",
    .tp_doc = "The C base of PSet: its fields and hot methods (pset._PySet in C).",
    BASE_TYPE_SLOTS,
    .tp_weaklistoffset = offsetof(MapObject, weakreflist),
    .tp_as_sequence = &set_as_sequence,
    .tp_iter = (getiterfunc)map_iter,
    .tp_methods = set_methods,
    .tp_members = map_members,
};

static PyTypeObject SetMutationBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb.pds._champ_c.SetMutationBase",
    .tp_doc = "The C base of PSetMutation: its fields and hot methods (pset._PySetMutation in C).",
    BASE_TYPE_SLOTS,
    .tp_as_sequence = &set_as_sequence,
    .tp_methods = setmut_methods,
    .tp_members = mutation_members,
};

/* module ---------------------------------------------------------------- */

static PyMethodDef champ_methods[] = {
    {"lookup", (PyCFunction)(void (*)(void))champ_lookup, METH_FASTCALL,
     "lookup(node, key, h, default): the value of key (masked hash h), or default."},
    {"assoc", (PyCFunction)(void (*)(void))champ_assoc, METH_FASTCALL,
     "assoc(node, h, key, val, owner, shift, box): node with key bound to val; "
     "the old value is appended to box."},
    {"dissoc", (PyCFunction)(void (*)(void))champ_dissoc, METH_FASTCALL,
     "dissoc(node, h, key, owner, shift, box): node without key; "
     "the removed value is appended to box."},
    {"build_dict", (PyCFunction)(void (*)(void))champ_build_dict, METH_FASTCALL,
     "build_dict(d, pairs=True): (build()'s trie of d's items, their count, the hash "
     "accumulator of its pairs, None if a value is unhashable, or of its keys) (_champ.build_dict)."},
    {"accumulate", (PyCFunction)champ_accumulate, METH_O,
     "accumulate(elements): the XOR of shuffle(hash(e) & M64) over elements (_hashing.accumulate)."},
    {"iter_keys", (PyCFunction)champ_iter_keys, METH_O, "iter_keys(root): every key of the trie."},
    {"iter_values", (PyCFunction)champ_iter_values, METH_O, "iter_values(root): every value, in iter_keys order."},
    {"iter_items", (PyCFunction)champ_iter_items, METH_O, "iter_items(root): every (key, value), in iter_keys order."},
    {"make", (PyCFunction)(void (*)(void))champ_make, METH_FASTCALL,
     "make(cls, root, count, hacc): a new cls (a MapBase or MutationBase subclass) with these fields."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef champ_module = {
    PyModuleDef_HEAD_INIT,
    "cowdb.pds._champ_c",
    "C versions of the hot CHAMP trie operations of cowdb.pds._champ.",
    0,
    champ_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

/* Whether pair_formula hashes pairs as this interpreter hashes tuples. */
static int
check_pair_formula(void)
{
    static const long samples[][2] = {{1, 2}, {-1, 0}, {0, -2}, {123456789, 987654321}};
    size_t i;
    for (i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        PyObject *k = PyLong_FromLong(samples[i][0]), *v = PyLong_FromLong(samples[i][1]);
        PyObject *t = (k && v) ? PyTuple_Pack(2, k, v) : NULL;
        Py_hash_t th = t ? PyObject_Hash(t) : -1, kh = k ? PyObject_Hash(k) : -1;
        Py_hash_t vh = v ? PyObject_Hash(v) : -1;
        Py_XDECREF(t);
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (PyErr_Occurred())
            return -1;
        if ((uint64_t)th != pair_formula(kh, vh))
            pair_from_tuple = 1;
    }
    return 0;
}

PyMODINIT_FUNC
PyInit__champ_c(void)
{
    PyObject *m;
#ifdef POPCNT_AT_RUNTIME
    __builtin_cpu_init();
    have_popcnt = __builtin_cpu_supports("popcnt") ? 1 : 0;
#endif
    if (PyType_Ready(&NodeType) < 0 || PyType_Ready(&IterType) < 0 || PyType_Ready(&MapBaseType) < 0
        || PyType_Ready(&MutationBaseType) < 0 || PyType_Ready(&SetBaseType) < 0
        || PyType_Ready(&SetMutationBaseType) < 0)
        return NULL;
    if (!pair_from_tuple && check_pair_formula() < 0)
        return NULL;
    m = PyModule_Create(&champ_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Node", (PyObject *)&NodeType) < 0
        || PyModule_AddObjectRef(m, "MapBase", (PyObject *)&MapBaseType) < 0
        || PyModule_AddObjectRef(m, "MutationBase", (PyObject *)&MutationBaseType) < 0
        || PyModule_AddObjectRef(m, "SetBase", (PyObject *)&SetBaseType) < 0
        || PyModule_AddObjectRef(m, "SetMutationBase", (PyObject *)&SetMutationBaseType) < 0
        || PyModule_AddIntConstant(m, "PAIR_HASH_FROM_TUPLE", pair_from_tuple) < 0
        || PyModule_AddIntConstant(m, "API", CHAMP_API) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
