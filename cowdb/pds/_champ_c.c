/* The hot operations of the CHAMP trie in _champ.py, in C.
 *
 * Optional: _champ.py uses these when this module is importable (and
 * COWDB_PURE_PYTHON is not 1), else its own Python functions, which stay
 * the reference.  Same signatures, same node representation, same results:
 *
 *     lookup(node, key, h, default)
 *     assoc(node, h, key, val, owner, shift, box)
 *     dissoc(node, h, key, owner, shift, box)
 *     build(entries, shift=0)
 *
 * A node is a Python list [datamap, nodemap, owner, k0, v0, ..., child_1,
 * child_0] (see _champ.py), so a trie built or edited by either side is
 * read and edited by the other, and iteration, equality, diff, transients
 * and pickling stay shared Python code.  A node whose owner is the
 * mutation's token is edited in place; any other is copied first.
 *
 * Key equality is PyObject_RichCompareBool(stored_key, key, Py_EQ), which
 * takes the identity shortcut first, like `k is key or k == key`.  User
 * code (a key's __eq__ or __hash__) may raise, which propagates, or may
 * edit the very nodes being walked through a live mutation.  So every node
 * and key in use is held by a strong reference across such calls, every
 * node is checked against its bitmaps before it is indexed, and a node
 * whose shape changed under a call raises RuntimeError instead of being
 * indexed with stale positions.  Nothing is written to a node before the
 * last call into user code at its level, and references that might be the
 * last ones are dropped only after the writes.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define BITS 5
#define MASK 31u

/* The popcnt instruction when the compiler may use it; else bit tricks,
 * which beat the library call __builtin_popcount becomes without it. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__POPCNT__)
#define POPCOUNT(x) __builtin_popcount(x)
#else
static inline int
POPCOUNT(uint32_t x)
{
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return (int)((((x + (x >> 4)) & 0x0F0F0F0Fu) * 0x01010101u) >> 24);
}
#endif

typedef struct {
    uint32_t dm;     /* datamap: slots holding a key/value pair */
    uint32_t nm;     /* nodemap: slots holding a child node */
    Py_ssize_t n;    /* list length */
} Shape;

static int
read_bitmap(PyObject *o, uint32_t *out)
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

/* Read and check a node's shape, so that every index derived from its
 * bitmaps is within the list. */
static int
read_shape(PyObject *node, Shape *s)
{
    if (!PyList_Check(node) || PyList_GET_SIZE(node) < 3) {
        PyErr_SetString(PyExc_TypeError, "not a CHAMP node");
        return -1;
    }
    if (read_bitmap(PyList_GET_ITEM(node, 0), &s->dm) < 0
        || read_bitmap(PyList_GET_ITEM(node, 1), &s->nm) < 0)
        return -1;
    s->n = PyList_GET_SIZE(node);
    if ((s->dm & s->nm)
        || (s->dm | s->nm
            ? s->n != 3 + 2 * POPCOUNT(s->dm) + POPCOUNT(s->nm)
            : (s->n - 3) % 2 != 0)) {
        PyErr_SetString(PyExc_ValueError, "not a CHAMP node: bitmaps do not match its length");
        return -1;
    }
    return 0;
}

/* After a call into user code: -1 with RuntimeError if ``node`` no longer
 * has the shape ``s`` it had before (a mutation edited it in place). */
static int
check_unchanged(PyObject *node, const Shape *s)
{
    Shape now;
    if (read_shape(node, &now) < 0)
        return -1;
    if (now.dm != s->dm || now.nm != s->nm || now.n != s->n) {
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

static inline int
is_owned(PyObject *node, PyObject *owner)
{
    return owner != Py_None && PyList_GET_ITEM(node, 2) == owner;
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

static int
set_bitmap(PyObject *node, Py_ssize_t i, uint32_t v)
{
    PyObject *o = PyLong_FromUnsignedLong(v);
    if (o == NULL)
        return -1;
    PyList_SET_ITEM(node, i, o);   /* the old int is released below */
    return 0;
}

/* Set the two bitmaps of a node this call owns (fresh or owned). */
static int
set_bitmaps(PyObject *node, uint32_t dm, uint32_t nm)
{
    PyObject *old0 = PyList_GET_ITEM(node, 0), *old1 = PyList_GET_ITEM(node, 1);
    if (set_bitmap(node, 0, dm) < 0)
        return -1;
    if (set_bitmap(node, 1, nm) < 0) {
        Py_SETREF(((PyListObject *)node)->ob_item[0], old0);  /* restore */
        return -1;
    }
    Py_DECREF(old0);
    Py_DECREF(old1);
    return 0;
}

/* A copy of ``node`` owned by ``owner``, with ``del_n`` items at ``del_at``
 * left out and the ``ins_n`` items of ``ins`` put before old index
 * ``ins_at`` (outside the deleted range, both past the header). */
static PyObject *
splice(PyObject *node, PyObject *owner, Py_ssize_t del_at, Py_ssize_t del_n,
       Py_ssize_t ins_at, PyObject *const *ins, Py_ssize_t ins_n)
{
    Py_ssize_t n = PyList_GET_SIZE(node), i, j = 0, t;
    PyObject *new = PyList_New(n - del_n + ins_n);
    PyObject **src, **dst;
    if (new == NULL)
        return NULL;
    if (PyList_GET_SIZE(node) != n) {
        /* a collection during PyList_New ran a finalizer that edited it */
        Py_DECREF(new);
        PyErr_SetString(PyExc_RuntimeError, "a CHAMP node changed while it was copied");
        return NULL;
    }
    src = ((PyListObject *)node)->ob_item;
    dst = ((PyListObject *)new)->ob_item;
    for (i = 0; i <= n; i++) {
        if (i == ins_at)
            for (t = 0; t < ins_n; t++)
                dst[j++] = Py_NewRef(ins[t]);
        if (i == n)
            break;
        if (i >= del_at && i < del_at + del_n)
            continue;
        dst[j++] = Py_NewRef(i == 2 ? owner : src[i]);
    }
    return new;
}

/* ``node`` itself (a new reference) if ``owner`` owns it, else a copy
 * owned by ``owner``. */
static PyObject *
editable(PyObject *node, PyObject *owner)
{
    if (is_owned(node, owner))
        return Py_NewRef(node);
    return splice(node, owner, 0, 0, -1, NULL, 0);
}

/* Replace item ``i`` of an editable node, keeping the old item alive in
 * ``*keep`` (released by the caller after all writes). */
static void
replace_item(PyObject *node, Py_ssize_t i, PyObject *v, PyObject **keep)
{
    PyObject **slot = &((PyListObject *)node)->ob_item[i];
    *keep = *slot;
    *slot = Py_NewRef(v);
}

/* The smallest subtree at ``shift`` holding two distinct keys (_pair). */
static PyObject *
make_pair(PyObject *k1, PyObject *v1, uint64_t h1, PyObject *k2, PyObject *v2,
          uint64_t h2, int shift, PyObject *owner)
{
    uint32_t b1, b2;
    PyObject *node, *sub;
    if (shift >= 64) {
        node = PyList_New(7);
        if (node == NULL)
            return NULL;
        PyList_SET_ITEM(node, 0, PyLong_FromLong(0));
        PyList_SET_ITEM(node, 1, PyLong_FromLong(0));
        PyList_SET_ITEM(node, 2, Py_NewRef(owner));
        PyList_SET_ITEM(node, 3, Py_NewRef(k1));
        PyList_SET_ITEM(node, 4, Py_NewRef(v1));
        PyList_SET_ITEM(node, 5, Py_NewRef(k2));
        PyList_SET_ITEM(node, 6, Py_NewRef(v2));
        return node;
    }
    b1 = (uint32_t)((h1 >> shift) & MASK);
    b2 = (uint32_t)((h2 >> shift) & MASK);
    if (b1 == b2) {
        sub = make_pair(k1, v1, h1, k2, v2, h2, shift + BITS, owner);
        if (sub == NULL)
            return NULL;
        node = PyList_New(4);
        if (node == NULL) {
            Py_DECREF(sub);
            return NULL;
        }
        PyList_SET_ITEM(node, 0, PyLong_FromLong(0));
        PyList_SET_ITEM(node, 1, PyLong_FromUnsignedLong(1ul << b1));
        PyList_SET_ITEM(node, 2, Py_NewRef(owner));
        PyList_SET_ITEM(node, 3, sub);
        if (PyList_GET_ITEM(node, 1) == NULL) {
            Py_DECREF(node);
            return NULL;
        }
        return node;
    }
    node = PyList_New(7);
    if (node == NULL)
        return NULL;
    PyList_SET_ITEM(node, 0, PyLong_FromUnsignedLong((1ul << b1) | (1ul << b2)));
    PyList_SET_ITEM(node, 1, PyLong_FromLong(0));
    PyList_SET_ITEM(node, 2, Py_NewRef(owner));
    if (b1 > b2) {
        PyObject *t;
        t = k1; k1 = k2; k2 = t;
        t = v1; v1 = v2; v2 = t;
    }
    PyList_SET_ITEM(node, 3, Py_NewRef(k1));
    PyList_SET_ITEM(node, 4, Py_NewRef(v1));
    PyList_SET_ITEM(node, 5, Py_NewRef(k2));
    PyList_SET_ITEM(node, 6, Py_NewRef(v2));
    if (PyList_GET_ITEM(node, 0) == NULL) {
        Py_DECREF(node);
        return NULL;
    }
    return node;
}

/* lookup ---------------------------------------------------------------- */

static PyObject *
champ_lookup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *node, *key, *deflt, *result = NULL;
    uint64_t h;
    Shape s;
    uint32_t bit;
    Py_ssize_t i;
    int eq;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "lookup() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    key = args[1];
    deflt = args[3];
    if (read_hash(args[2], &h) < 0)
        return NULL;
    /* The descent runs no user code, so it borrows each node from its
     * parent; the node is held from the first key comparison on. */
    node = args[0];
    for (;;) {
        if (read_shape(node, &s) < 0)
            return NULL;
        bit = 1u << (h & MASK);
        if (s.dm & bit) {
            i = 3 + 2 * POPCOUNT(s.dm & (bit - 1));
            if (PyList_GET_ITEM(node, i) == key)
                return Py_NewRef(PyList_GET_ITEM(node, i + 1));
            Py_INCREF(node);
            eq = keys_equal(PyList_GET_ITEM(node, i), key);
            if (eq < 0)
                goto done;
            if (!eq) {
                result = Py_NewRef(deflt);
                goto done;
            }
            if (check_unchanged(node, &s) < 0)
                goto done;
            result = Py_NewRef(PyList_GET_ITEM(node, i + 1));
            goto done;
        }
        if (s.nm & bit) {
            node = PyList_GET_ITEM(node, s.n - 1 - POPCOUNT(s.nm & (bit - 1)));
            h >>= BITS;
            continue;
        }
        if (s.dm || s.nm)
            return Py_NewRef(deflt);
        Py_INCREF(node);
        for (i = 3; i < s.n; i += 2) {   /* a collision node (or the empty root) */
            eq = keys_equal(PyList_GET_ITEM(node, i), key);
            if (eq < 0 || check_unchanged(node, &s) < 0)
                goto done;
            if (eq) {
                result = Py_NewRef(PyList_GET_ITEM(node, i + 1));
                goto done;
            }
        }
        result = Py_NewRef(deflt);
        goto done;
    }
done:
    Py_DECREF(node);
    return result;
}

/* assoc ----------------------------------------------------------------- */

/* Bind ``val`` at the pair whose key is at ``i`` (found equal): the old
 * value goes into ``box``; ``node`` itself if it already was ``val``. */
static PyObject *
rebind(PyObject *node, Py_ssize_t i, PyObject *val, PyObject *owner, PyObject *box)
{
    PyObject *old = Py_NewRef(PyList_GET_ITEM(node, i + 1)), *new = NULL, *keep;
    if (box_append(box, old) < 0)
        goto done;
    if (old == val) {
        new = Py_NewRef(node);
        goto done;
    }
    new = editable(node, owner);
    if (new == NULL)
        goto done;
    replace_item(new, i + 1, val, &keep);
    Py_DECREF(keep);
done:
    Py_DECREF(old);
    return new;
}

static PyObject *
assoc_collision(PyObject *node, PyObject *key, PyObject *val, PyObject *owner, PyObject *box)
{
    Shape s;
    Py_ssize_t i;
    int eq;
    PyObject *new, *pair[2];

    if (read_shape(node, &s) < 0)
        return NULL;
    for (i = 3; i < s.n; i += 2) {
        eq = keys_equal(PyList_GET_ITEM(node, i), key);
        if (eq < 0 || check_unchanged(node, &s) < 0)
            return NULL;
        if (eq)
            return rebind(node, i, val, owner, box);
    }
    if (is_owned(node, owner)) {
        if (PyList_Append(node, key) < 0)
            return NULL;
        if (PyList_Append(node, val) < 0) {
            PyList_SetSlice(node, s.n, s.n + 1, NULL);
            return NULL;
        }
        return Py_NewRef(node);
    }
    pair[0] = key;
    pair[1] = val;
    new = splice(node, owner, 0, 0, s.n, pair, 2);
    return new;
}

static PyObject *
assoc_node(PyObject *node, uint64_t h, PyObject *key, PyObject *val,
           PyObject *owner, int shift, PyObject *box)
{
    Shape s;
    uint32_t bit, below;
    Py_ssize_t i, ci, at;
    int eq;
    PyObject *k = NULL, *v = NULL, *sub = NULL, *child = NULL, *new_child = NULL;
    PyObject *new = NULL, *keep = NULL, *pair[2];
    Py_hash_t kh;

    if (shift >= 64)
        return assoc_collision(node, key, val, owner, box);
    if (read_shape(node, &s) < 0)
        return NULL;
    bit = 1u << ((h >> shift) & MASK);
    below = bit - 1;
    if (s.dm & bit) {
        i = 3 + 2 * POPCOUNT(s.dm & below);
        k = Py_NewRef(PyList_GET_ITEM(node, i));
        eq = keys_equal(k, key);
        if (eq < 0 || check_unchanged(node, &s) < 0)
            goto done;
        if (eq) {
            new = rebind(node, i, val, owner, box);
            goto done;
        }
        /* The slot holds another key: move both one level down. */
        kh = PyObject_Hash(k);
        if (kh == -1 && PyErr_Occurred())
            goto done;
        if (check_unchanged(node, &s) < 0)
            goto done;
        v = Py_NewRef(PyList_GET_ITEM(node, i + 1));
        sub = make_pair(k, v, (uint64_t)kh, key, val, h, shift + BITS, owner);
        if (sub == NULL)
            goto done;
        /* After deleting the pair, the child goes before the children of
         * the lower slots: old index n - popcount(nm & below). */
        at = s.n - POPCOUNT(s.nm & below);
        if (is_owned(node, owner)) {
            if (PyList_Insert(node, at, sub) < 0)
                goto done;
            if (PyList_SetSlice(node, i, i + 2, NULL) < 0)   /* k, v are held */
                goto done;
            new = Py_NewRef(node);
        }
        else {
            new = splice(node, owner, i, 2, at, &sub, 1);
            if (new == NULL)
                goto done;
        }
        if (set_bitmaps(new, s.dm ^ bit, s.nm | bit) < 0)
            Py_CLEAR(new);
        goto done;
    }
    if (s.nm & bit) {
        ci = s.n - 1 - POPCOUNT(s.nm & below);
        child = Py_NewRef(PyList_GET_ITEM(node, ci));
        new_child = assoc_node(child, h, key, val, owner, shift + BITS, box);
        if (new_child == NULL)
            goto done;
        if (new_child == child) {
            new = Py_NewRef(node);
            goto done;
        }
        if (check_unchanged(node, &s) < 0)
            goto done;
        new = editable(node, owner);
        if (new == NULL)
            goto done;
        replace_item(new, ci, new_child, &keep);
        goto done;
    }
    i = 3 + 2 * POPCOUNT(s.dm & below);
    if (is_owned(node, owner)) {
        if (PyList_Insert(node, i, val) < 0)
            goto done;
        if (PyList_Insert(node, i, key) < 0) {
            PyList_SetSlice(node, i, i + 1, NULL);
            goto done;
        }
        new = Py_NewRef(node);
    }
    else {
        pair[0] = key;
        pair[1] = val;
        new = splice(node, owner, 0, 0, i, pair, 2);
        if (new == NULL)
            goto done;
    }
    if (set_bitmaps(new, s.dm | bit, s.nm) < 0)
        Py_CLEAR(new);
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
    PyObject *node, *result;

    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "assoc() takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    if (parse_hash_shift(args[1], args[5], &h, &shift) < 0)
        return NULL;
    node = Py_NewRef(args[0]);
    result = assoc_node(node, h, args[2], args[3], args[4], shift, args[6]);
    Py_DECREF(node);
    return result;
}

/* dissoc ---------------------------------------------------------------- */

static PyObject *
dissoc_node(PyObject *node, uint64_t h, PyObject *key, PyObject *owner,
            int shift, PyObject *box)
{
    Shape s, cs;
    uint32_t bit = 0, below;
    Py_ssize_t i, ci;
    int eq;
    PyObject *k = NULL, *v = NULL, *child = NULL, *new_child = NULL;
    PyObject *new = NULL, *keep = NULL, *pair[2];

    if (read_shape(node, &s) < 0)
        return NULL;
    if (shift >= 64) {
        for (i = 3; i < s.n; i += 2) {
            k = Py_NewRef(PyList_GET_ITEM(node, i));
            eq = keys_equal(k, key);
            if (eq < 0 || check_unchanged(node, &s) < 0)
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
        i = 3 + 2 * POPCOUNT(s.dm & below);
        k = Py_NewRef(PyList_GET_ITEM(node, i));
        eq = keys_equal(k, key);
        if (eq < 0 || check_unchanged(node, &s) < 0)
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
    child = Py_NewRef(PyList_GET_ITEM(node, ci));
    new_child = dissoc_node(child, h, key, owner, shift + BITS, box);
    if (new_child == NULL)
        goto done;
    if (read_shape(new_child, &cs) < 0)
        goto done;
    if (cs.nm == 0 && cs.n == 5) {   /* a lone pair: fold it into this node */
        if (check_unchanged(node, &s) < 0)
            goto done;
        i = 3 + 2 * POPCOUNT(s.dm & below);
        pair[0] = PyList_GET_ITEM(new_child, 3);
        pair[1] = PyList_GET_ITEM(new_child, 4);
        if (is_owned(node, owner)) {
            /* child and new_child are held, so nothing is freed here */
            if (PyList_SetSlice(node, ci, ci + 1, NULL) < 0)
                goto done;
            if (PyList_Insert(node, i, pair[1]) < 0 || PyList_Insert(node, i, pair[0]) < 0)
                goto done;
            new = Py_NewRef(node);
        }
        else {
            new = splice(node, owner, ci, 1, i, pair, 2);
            if (new == NULL)
                goto done;
        }
        if (set_bitmaps(new, s.dm | bit, s.nm ^ bit) < 0)
            Py_CLEAR(new);
        goto done;
    }
    if (new_child == child) {
        new = Py_NewRef(node);
        goto done;
    }
    if (check_unchanged(node, &s) < 0)
        goto done;
    new = editable(node, owner);
    if (new == NULL)
        goto done;
    replace_item(new, ci, new_child, &keep);
    goto done;

remove_pair:   /* the key at i is ``key``: drop the pair */
    v = Py_NewRef(PyList_GET_ITEM(node, i + 1));
    if (box_append(box, v) < 0)
        goto done;
    if (is_owned(node, owner)) {
        if (PyList_SetSlice(node, i, i + 2, NULL) < 0)   /* k, v are held */
            goto done;
        new = Py_NewRef(node);
    }
    else {
        new = splice(node, owner, i, 2, -1, NULL, 0);
        if (new == NULL)
            goto done;
    }
    if (shift < 64 && set_bitmaps(new, s.dm ^ bit, s.nm) < 0)
        Py_CLEAR(new);
done:
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
    PyObject *node, *result;

    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "dissoc() takes 6 arguments (%zd given)", nargs);
        return NULL;
    }
    if (parse_hash_shift(args[1], args[4], &h, &shift) < 0)
        return NULL;
    node = Py_NewRef(args[0]);
    result = dissoc_node(node, h, args[2], args[3], shift, args[5]);
    Py_DECREF(node);
    return result;
}

/* build ----------------------------------------------------------------- */

/* The entries of a build, as arrays; ``order`` is permuted in place. */
typedef struct {
    uint64_t *h;
    PyObject **k;
    PyObject **v;
    Py_ssize_t *order;
    Py_ssize_t *scratch;
} Entries;

/* Nodes are made untracked by the cyclic GC and tracked once the trie is
 * complete: a build allocates thousands of lists, and each collection they
 * trigger would otherwise traverse the half-built trie again.  No cycle can
 * go through a node before build() returns it. */
static void
set_tracking(PyObject *node, int track)
{
    Py_ssize_t n = PyList_GET_SIZE(node), i, first_child;
    uint32_t nm;
    if (track) {
        if (PyObject_GC_IsTracked(node))
            return;
        PyObject_GC_Track(node);
    }
    else if (PyObject_GC_IsTracked(node))
        PyObject_GC_UnTrack(node);
    nm = (uint32_t)PyLong_AsUnsignedLong(PyList_GET_ITEM(node, 1));  /* made here: valid */
    first_child = n - POPCOUNT(nm);
    for (i = first_child; i < n; i++)
        set_tracking(PyList_GET_ITEM(node, i), track);
}

/* The trie of the entries order[lo:hi] at ``shift``, exactly as
 * _champ.build makes it: slots in fragment order, a group of two through
 * make_pair (_pair), larger groups by recursion, collision nodes in input
 * order.  The order within each group is the input order (stable). */
static PyObject *
build_node(Entries *e, Py_ssize_t lo, Py_ssize_t hi, int shift)
{
    Py_ssize_t count[32] = {0}, start[32], i, j, n, p, c;
    uint32_t dm = 0, nm = 0, f;
    PyObject *node, *child;

    if (shift >= 64) {
        node = PyList_New(3 + 2 * (hi - lo));
        if (node == NULL)
            return NULL;
        PyObject_GC_UnTrack(node);
        PyList_SET_ITEM(node, 0, PyLong_FromLong(0));
        PyList_SET_ITEM(node, 1, PyLong_FromLong(0));
        PyList_SET_ITEM(node, 2, Py_NewRef(Py_None));
        for (i = lo, j = 3; i < hi; i++, j += 2) {
            PyList_SET_ITEM(node, j, Py_NewRef(e->k[e->order[i]]));
            PyList_SET_ITEM(node, j + 1, Py_NewRef(e->v[e->order[i]]));
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

    n = 3 + 2 * POPCOUNT(dm) + POPCOUNT(nm);
    node = PyList_New(n);
    if (node == NULL)
        return NULL;
    PyObject_GC_UnTrack(node);
    PyList_SET_ITEM(node, 0, PyLong_FromUnsignedLong(dm));
    PyList_SET_ITEM(node, 1, PyLong_FromUnsignedLong(nm));
    PyList_SET_ITEM(node, 2, Py_NewRef(Py_None));
    if (PyList_GET_ITEM(node, 0) == NULL || PyList_GET_ITEM(node, 1) == NULL) {
        Py_DECREF(node);
        return NULL;
    }
    /* Pairs from index 3 up, children from the end down, both in slot order;
     * slots not filled yet are NULL, which list_dealloc skips on error. */
    for (f = 0, p = lo, j = 3, c = n - 1; f < 32; p += count[f], f++) {
        if (count[f] == 1) {
            PyList_SET_ITEM(node, j, Py_NewRef(e->k[e->order[p]]));
            PyList_SET_ITEM(node, j + 1, Py_NewRef(e->v[e->order[p]]));
            j += 2;
        }
        else if (count[f] == 2) {
            Py_ssize_t a = e->order[p], b = e->order[p + 1];
            child = make_pair(e->k[a], e->v[a], e->h[a], e->k[b], e->v[b], e->h[b],
                              shift + BITS, Py_None);
            if (child == NULL)
                goto error;
            set_tracking(child, 0);
            PyList_SET_ITEM(node, c--, child);
        }
        else if (count[f] > 2) {
            child = build_node(e, p, p + count[f], shift + BITS);
            if (child == NULL)
                goto error;
            PyList_SET_ITEM(node, c--, child);
        }
    }
    return node;
error:
    Py_DECREF(node);
    return NULL;
}

static PyObject *
champ_build(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *seq = NULL, *held = NULL, *item, *result = NULL, *o;
    Entries e = {NULL, NULL, NULL, NULL, NULL};
    Py_ssize_t n, i;
    long sh = 0;

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "build() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (nargs == 2) {
        sh = PyLong_AsLong(args[1]);
        if (sh == -1 && PyErr_Occurred())
            return NULL;
        if (sh < 0) {
            PyErr_SetString(PyExc_ValueError, "negative shift count");
            return NULL;
        }
        if (sh > 64)
            sh = 64;
    }
    /* A tuple of the entries, each a tuple: nothing can change under us
     * while the nodes are made (a collection could run a finalizer). */
    seq = PySequence_Tuple(args[0]);
    if (seq == NULL)
        return NULL;
    n = PyTuple_GET_SIZE(seq);
    held = PyList_New(0);
    e.h = PyMem_Malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    e.k = PyMem_Malloc(sizeof(PyObject *) * (size_t)(n ? n : 1));
    e.v = PyMem_Malloc(sizeof(PyObject *) * (size_t)(n ? n : 1));
    e.order = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    e.scratch = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    if (held == NULL || !e.h || !e.k || !e.v || !e.order || !e.scratch) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++) {
        item = PyTuple_GET_ITEM(seq, i);
        if (!PyTuple_CheckExact(item)) {
            o = PySequence_Tuple(item);
            if (o == NULL)
                goto done;
            if (PyList_Append(held, o) < 0) {
                Py_DECREF(o);
                goto done;
            }
            Py_DECREF(o);
            item = o;
        }
        if (PyTuple_GET_SIZE(item) != 3) {
            PyErr_Format(PyExc_ValueError, "build() entry %zd is not (hash, key, value)", i);
            goto done;
        }
        e.h[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(item, 0));
        if (e.h[i] == (uint64_t)-1 && PyErr_Occurred())
            goto done;
        e.k[i] = PyTuple_GET_ITEM(item, 1);
        e.v[i] = PyTuple_GET_ITEM(item, 2);
        e.order[i] = i;
    }
    result = build_node(&e, 0, n, (int)sh);
    if (result != NULL)
        set_tracking(result, 1);
done:
    PyMem_Free(e.h);
    PyMem_Free(e.k);
    PyMem_Free(e.v);
    PyMem_Free(e.order);
    PyMem_Free(e.scratch);
    Py_XDECREF(held);
    Py_DECREF(seq);
    return result;
}

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
    {"build", (PyCFunction)(void (*)(void))champ_build, METH_FASTCALL,
     "build(entries, shift=0): a fresh trie from [(masked hash, key, value), ...] with distinct keys."},
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

PyMODINIT_FUNC
PyInit__champ_c(void)
{
    return PyModule_Create(&champ_module);
}
