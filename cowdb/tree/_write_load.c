/* A bulk load (one file of cowdb.tree._write_c, see _write_c.h): Transaction.update's
 * dict checked and sorted in one pass (sorted_items), and sorted pairs cut into leaves
 * (leaves), the bottom of the tree Tree._build stacks branches on. */
#include "_write_c.h"

/* sorted_items(mapping, max_key): btree.py's py_sorted_items. A bulk load of a dict
 * checked each pair in a Python loop into a second dict, then sorted the pairs with
 * Python's comparisons: ~55% of a 100,000-pair load. Here a pass of checks and a qsort
 * of records that carry each key's first bytes. */
typedef struct {
    unsigned long long head[2];   /* the key's first 16 bytes, big-endian, zero-padded */
    Py_ssize_t kl;
    PyObject *key, *val;   /* borrowed from the dict, which the caller holds */
} Pair;

/* As bytes compare: the first 16 bytes from the record (most keys differ there, and the
 * keys themselves lie scattered in memory: ~3x fewer cache misses than memcmp alone),
 * then the rest, then the length (a key sorts after its prefixes). */
static int
pair_cmp(const void *a, const void *b)
{
    const Pair *x = a, *y = b;
    for (int j = 0; j < 2; j++)
        if (x->head[j] != y->head[j])
            return x->head[j] < y->head[j] ? -1 : 1;
    Py_ssize_t m = x->kl < y->kl ? x->kl : y->kl;
    if (m > 16) {
        int c = memcmp(PyBytes_AS_STRING(x->key) + 16, PyBytes_AS_STRING(y->key) + 16,
                       (size_t)(m - 16));
        if (c)
            return c;
    }
    return (x->kl > y->kl) - (x->kl < y->kl);
}

PyObject *
sorted_items(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "sorted_items(mapping, max_key): a dict and an int");
        return NULL;
    }
    Py_ssize_t max_key = PyLong_AsSsize_t(args[1]);
    if (max_key == -1 && PyErr_Occurred())
        return NULL;
    PyObject *d = args[0], *key, *val, *out = NULL;
    Py_ssize_t n = PyDict_GET_SIZE(d), pos = 0, i = 0;
    Pair *pairs = PyMem_Malloc(sizeof(Pair) * (size_t)(n ? n : 1));
    if (pairs == NULL)
        return PyErr_NoMemory();
    while (PyDict_Next(d, &pos, &key, &val)) {
        if (i == n || !PyBytes_CheckExact(key) || !PyBytes_CheckExact(val) ||
                PyBytes_GET_SIZE(key) < 1 || PyBytes_GET_SIZE(key) > max_key) {
            out = Py_NewRef(Py_None);   /* (i == n: the dict grew under us; cannot here) */
            goto done;
        }
        const unsigned char *k = (const unsigned char *)PyBytes_AS_STRING(key);
        Py_ssize_t kl = PyBytes_GET_SIZE(key);
        Pair *pr = &pairs[i++];
        pr->head[0] = pr->head[1] = 0;
        for (Py_ssize_t j = 0; j < 16 && j < kl; j++)
            pr->head[j >> 3] |= (unsigned long long)k[j] << (8 * (7 - (j & 7)));
        pr->kl = kl;
        pr->key = key;
        pr->val = val;
    }
    if (i != n) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    qsort(pairs, (size_t)n, sizeof(Pair), pair_cmp);
    if ((out = PyList_New(n)) == NULL)
        goto done;
    for (i = 0; i < n; i++) {
        PyObject *t = PyTuple_Pack(2, pairs[i].key, pairs[i].val);
        if (t == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, t);
    }
done:
    PyMem_Free(pairs);
    return out;
}

/* One leaf of a bulk load appended to out as (first key, Leaf(keys, vals, size, big)). */
static int
cut_leaf(PyObject *out, PyObject *keys, PyObject *vals, Py_ssize_t size, int big)
{
    PyObject *leaf = PyObject_CallFunction(leaf_type, "OOnO", keys, vals, size,
                                           big ? Py_True : Py_False);
    PyObject *low = leaf == NULL ? NULL : PyTuple_Pack(2, PyList_GET_ITEM(keys, 0), leaf);
    int r = low == NULL ? -1 : PyList_Append(out, low);
    Py_XDECREF(leaf);
    Py_XDECREF(low);
    return r;
}

/* leaves(items, limit, inline_max): btree.py's py_leaves. A bulk load of 100,000 pairs
 * spent ~60% of its time in that loop (two appends and the inline rule a pair). */
PyObject *
leaves(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || leaf_type == NULL) {
        PyErr_SetString(PyExc_TypeError, "leaves(items, limit, inline_max), after bind()");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]), inline_max = PyLong_AsSsize_t(args[2]);
    if ((limit == -1 || inline_max == -1) && PyErr_Occurred())
        return NULL;
    PyObject *it = PyObject_GetIter(args[0]), *out = PyList_New(0);
    PyObject *keys = PyList_New(0), *vals = PyList_New(0), *pair;
    Py_ssize_t size = HEADER_SIZE;
    int big = 0;
    if (it == NULL || out == NULL || keys == NULL || vals == NULL)
        goto fail;
    while ((pair = PyIter_Next(it)) != NULL) {
        PyObject *k, *v;
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
                !PyBytes_CheckExact(k = PyTuple_GET_ITEM(pair, 0)) ||
                !PyBytes_CheckExact(v = PyTuple_GET_ITEM(pair, 1))) {
            Py_DECREF(pair);
            PyErr_SetString(PyExc_TypeError, "leaves(): an item is not a (bytes, bytes) pair");
            goto fail;
        }
        Py_ssize_t vl = PyBytes_GET_SIZE(v), vs = vl <= inline_max ? vl : OVERFLOW_REF;
        Py_ssize_t es = LEAF_ENTRY + PyBytes_GET_SIZE(k) + vs;
        if (size + es > limit && PyList_GET_SIZE(keys)) {
            if (cut_leaf(out, keys, vals, size, big) < 0) {
                Py_DECREF(pair);
                goto fail;
            }
            Py_SETREF(keys, PyList_New(0));
            Py_SETREF(vals, PyList_New(0));
            size = HEADER_SIZE;
            big = 0;
            if (keys == NULL || vals == NULL) {
                Py_DECREF(pair);
                goto fail;
            }
        }
        big = big || vs != vl;
        int bad = PyList_Append(keys, k) < 0 || PyList_Append(vals, v) < 0;
        Py_DECREF(pair);
        if (bad)
            goto fail;
        size += es;
    }
    if (PyErr_Occurred() || (PyList_GET_SIZE(keys) && cut_leaf(out, keys, vals, size, big) < 0))
        goto fail;
    Py_DECREF(keys);
    Py_DECREF(vals);
    Py_DECREF(it);
    return out;
fail:
    Py_XDECREF(keys);
    Py_XDECREF(vals);
    Py_XDECREF(it);
    Py_XDECREF(out);
    return NULL;
}

