/* cowdb.tree._write_c: the commit's node encoding in C (tree/node.py's encode_delta for
 * a node with its base's keys, and btree.py's search for a dirty branch's written
 * children). Optional: node.py and btree.py keep the pure-Python paths, and both pass the
 * same tests (tests/test_write_c.py compares them image for image).
 *
 * delta_image(is_leaf, kind, node, base, bpage, bsum, btxn, depth, txn)
 *     node's image as a delta on base (format 4, see node.py), checksum left zero for
 *     the caller to seal; None when the delta would not be under half the node's full
 *     image (a full image is due); NotImplemented when node and base differ in keys, or
 *     the leaf holds values that are not inline bytes: node.py's Python encodes those.
 * dirty_kids(kids)
 *     the indexes of a branch's kids that are not ints (dirty nodes to write).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define API 1                 /* node.py's WRITE_API: bump with any change of behaviour */
#define HEADER_SIZE 24        /* <QBBHIQ: checksum, type, flags, n, length, txn */
#define DELTA_HEAD 28         /* <QQQHH: base page, checksum, txn; depth; run count */

static PyObject *s_keys, *s_vals, *s_kids, *s_counts, *s_sums, *s_txns, *s_size, *s_big;

static inline unsigned char *
put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static inline unsigned char *
put32(unsigned char *p, unsigned long v)
{
    for (int b = 0; b < 4; b++)
        *p++ = (unsigned char)(v >> (8 * b));
    return p;
}

static inline unsigned char *
put64(unsigned char *p, unsigned long long v)
{
    for (int b = 0; b < 8; b++)
        *p++ = (unsigned char)(v >> (8 * b));
    return p;
}

/* A list attribute of a node (a new reference), or NULL with TypeError. */
static PyObject *
list_of(PyObject *node, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(node, name);
    if (v != NULL && !PyList_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "a node's %U is not a list", name);
        Py_CLEAR(v);
    }
    return v;
}

/* 1 if the two keys lists hold equal bytes, 0 if not, -1 on error. */
static int
same_keys(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyList_GET_SIZE(a);
    if (PyList_GET_SIZE(b) != n)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyList_GET_ITEM(a, i), *y = PyList_GET_ITEM(b, i);
        if (x == y)
            continue;
        if (!PyBytes_CheckExact(x) || !PyBytes_CheckExact(y)) {
            PyErr_SetString(PyExc_TypeError, "a node's key is not bytes");
            return -1;
        }
        if (PyBytes_GET_SIZE(x) != PyBytes_GET_SIZE(y) ||
                memcmp(PyBytes_AS_STRING(x), PyBytes_AS_STRING(y), PyBytes_GET_SIZE(x)))
            return 0;
    }
    return 1;
}

/* The u64 an entry field holds, or -1 with an error set (check PyErr_Occurred). */
static inline unsigned long long
u64_at(PyObject *list, Py_ssize_t i)
{
    return PyLong_AsUnsignedLongLong(PyList_GET_ITEM(list, i));
}

static PyObject *
delta_image(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "delta_image(is_leaf, kind, node, base, bpage, bsum, "
                        "btxn, depth, txn)");
        return NULL;
    }
    int is_leaf = PyObject_IsTrue(args[0]);
    long kind = PyLong_AsLong(args[1]);
    unsigned long long bpage = PyLong_AsUnsignedLongLong(args[4]);
    unsigned long long bsum = PyLong_AsUnsignedLongLong(args[5]);
    unsigned long long btxn = PyLong_AsUnsignedLongLong(args[6]);
    long depth = PyLong_AsLong(args[7]);
    unsigned long long txn = PyLong_AsUnsignedLongLong(args[8]);
    if (is_leaf < 0 || PyErr_Occurred())
        return NULL;
    if (kind < 0 || kind > 255 || depth < 0 || depth > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "delta_image(): kind or depth out of range");
        return NULL;
    }
    PyObject *node = args[2], *base = args[3];
    PyObject *fields[2][5] = {{NULL}};  /* node's, base's: keys, then vals or 4 lists */
    PyObject *names[5] = {s_keys, s_vals, NULL, NULL, NULL};
    int nf = 2;
    if (!is_leaf) {
        names[1] = s_kids;
        names[2] = s_counts;
        names[3] = s_sums;
        names[4] = s_txns;
        nf = 5;
    }
    PyObject *out = NULL;
    Py_ssize_t *runs = NULL;   /* pairs (at, length) of entries that differ */
    for (int w = 0; w < 2; w++) {
        for (int f = 0; f < nf; f++) {
            fields[w][f] = list_of(w ? base : node, names[f]);
            if (fields[w][f] == NULL)
                goto done;
        }
    }
    PyObject *keys = fields[0][0];
    Py_ssize_t n = PyList_GET_SIZE(keys);
    for (int f = 1; f < nf; f++) {
        if (PyList_GET_SIZE(fields[0][f]) != n || PyList_GET_SIZE(fields[1][f]) !=
                PyList_GET_SIZE(fields[1][0])) {
            PyErr_SetString(PyExc_ValueError, "delta_image(): a node's lists differ in length");
            goto done;
        }
    }
    int same = same_keys(keys, fields[1][0]);
    if (same < 0)
        goto done;
    if (!same)
        goto python;
    if (is_leaf) {
        PyObject *big = PyObject_GetAttr(node, s_big);
        if (big == NULL)
            goto done;
        int b = PyObject_IsTrue(big);
        Py_DECREF(big);
        if (b < 0)
            goto done;
        if (b)
            goto python;
    }
    runs = PyMem_Malloc(sizeof(Py_ssize_t) * 2 * (size_t)(n ? n : 1));
    if (runs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t s = 0, m = 0, body = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int differs = 0;
        if (is_leaf) {  /* values by identity: a copy shares its base's objects */
            differs = PyList_GET_ITEM(fields[0][1], i) != PyList_GET_ITEM(fields[1][1], i);
        }
        else {          /* references by value */
            for (int f = 1; f < 5 && !differs; f++) {
                int eq = PyObject_RichCompareBool(PyList_GET_ITEM(fields[0][f], i),
                                                  PyList_GET_ITEM(fields[1][f], i), Py_EQ);
                if (eq < 0)
                    goto done;
                differs = !eq;
            }
        }
        if (!differs)
            continue;
        PyObject *k = PyList_GET_ITEM(keys, i);
        if (!PyBytes_CheckExact(k) || PyBytes_GET_SIZE(k) > 0xFFFF) {
            PyErr_SetString(PyExc_ValueError, "delta_image(): a key is not bytes of < 64 KiB");
            goto done;
        }
        body += PyBytes_GET_SIZE(k);
        if (is_leaf) {
            PyObject *v = PyList_GET_ITEM(fields[0][1], i);
            if (!PyBytes_CheckExact(v))
                goto python;  /* (not big, yet not bytes: Python says what is wrong) */
            body += 6 + PyBytes_GET_SIZE(v);
        }
        else
            body += 34;
        m++;
        if (s && runs[2 * (s - 1)] + runs[2 * (s - 1) + 1] == i)
            runs[2 * (s - 1) + 1]++;
        else {
            runs[2 * s] = i;
            runs[2 * s + 1] = 1;
            s++;
        }
    }
    if (s > 0xFFFF)
        goto full;
    Py_ssize_t size = HEADER_SIZE + DELTA_HEAD + 6 * s + body;
    PyObject *nsize = PyObject_GetAttr(node, s_size);
    if (nsize == NULL)
        goto done;
    long long full_size = PyLong_AsLongLong(nsize);
    Py_DECREF(nsize);
    if (full_size == -1 && PyErr_Occurred())
        goto done;
    if (2 * (long long)size > full_size)
        goto full;
    if (size > 0xFFFFFFFFLL || n > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "delta_image(): the node is too large for a page");
        goto done;
    }
    out = PyByteArray_FromStringAndSize(NULL, size);
    if (out == NULL)
        goto done;
    unsigned char *start = (unsigned char *)PyByteArray_AS_STRING(out), *p = start;
    p = put64(p, 0);                       /* the checksum, sealed by the caller */
    *p++ = (unsigned char)kind;
    *p++ = 0;                              /* flags: no overflow value (not big) */
    p = put16(p, (unsigned)n);
    p = put32(p, (unsigned long)size);
    p = put64(p, txn);
    p = put64(p, bpage);
    p = put64(p, bsum);
    p = put64(p, btxn);
    p = put16(p, (unsigned)depth);
    p = put16(p, (unsigned)s);
    for (Py_ssize_t r = 0; r < s; r++) {
        p = put16(p, (unsigned)runs[2 * r]);
        p = put16(p, (unsigned)runs[2 * r + 1]);
        p = put16(p, (unsigned)runs[2 * r + 1]);
    }
    /* the put entries, in the node's own layout: key lengths first */
    for (Py_ssize_t r = 0; r < s; r++)
        for (Py_ssize_t i = runs[2 * r]; i < runs[2 * r] + runs[2 * r + 1]; i++)
            p = put16(p, (unsigned)PyBytes_GET_SIZE(PyList_GET_ITEM(keys, i)));
    for (Py_ssize_t r = 0; r < s; r++) {
        for (Py_ssize_t i = runs[2 * r]; i < runs[2 * r] + runs[2 * r + 1]; i++) {
            if (is_leaf) {
                p = put32(p, (unsigned long)PyBytes_GET_SIZE(PyList_GET_ITEM(fields[0][1], i)));
                continue;
            }
            for (int f = 1; f < 5; f++) {  /* page, count, checksum, txn */
                unsigned long long v = u64_at(fields[0][f], i);
                if (v == (unsigned long long)-1 && PyErr_Occurred()) {
                    Py_CLEAR(out);
                    goto done;
                }
                p = put64(p, v);
            }
        }
    }
    for (Py_ssize_t r = 0; r < s; r++) {
        for (Py_ssize_t i = runs[2 * r]; i < runs[2 * r] + runs[2 * r + 1]; i++) {
            PyObject *k = PyList_GET_ITEM(keys, i);
            memcpy(p, PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k));
            p += PyBytes_GET_SIZE(k);
        }
    }
    if (is_leaf) {
        for (Py_ssize_t r = 0; r < s; r++) {
            for (Py_ssize_t i = runs[2 * r]; i < runs[2 * r] + runs[2 * r + 1]; i++) {
                PyObject *v = PyList_GET_ITEM(fields[0][1], i);
                memcpy(p, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
                p += PyBytes_GET_SIZE(v);
            }
        }
    }
    if (p != start + size) {  /* (cannot happen: the sizes were summed above) */
        Py_CLEAR(out);
        PyErr_SetString(PyExc_SystemError, "delta_image(): the image's size was miscounted");
    }
    goto done;
full:
    out = Py_NewRef(Py_None);
    goto done;
python:
    out = Py_NewRef(Py_NotImplemented);
done:
    PyMem_Free(runs);
    for (int w = 0; w < 2; w++)
        for (int f = 0; f < 5; f++)
            Py_XDECREF(fields[w][f]);
    return out;
}

static PyObject *
dirty_kids(PyObject *Py_UNUSED(self), PyObject *kids)
{
    if (!PyList_CheckExact(kids)) {
        PyErr_SetString(PyExc_TypeError, "dirty_kids() takes a list");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(kids);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyLong_CheckExact(PyList_GET_ITEM(kids, i)))
            continue;
        PyObject *ix = PyLong_FromSsize_t(i);
        if (ix == NULL || PyList_Append(out, ix) < 0) {
            Py_XDECREF(ix);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(ix);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"delta_image", (PyCFunction)(void (*)(void))delta_image, METH_FASTCALL,
     "delta_image(is_leaf, kind, node, base, bpage, bsum, btxn, depth, txn): node.py's "
     "encode_delta for a node with its base's keys, unsealed; None (a full image is due) "
     "or NotImplemented (Python encodes it)."},
    {"dirty_kids", dirty_kids, METH_O,
     "dirty_kids(kids): the indexes of a branch's kids that are not ints."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_write_c", "The commit's node encoding in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__write_c(void)
{
    if (!(s_keys = PyUnicode_InternFromString("keys")) ||
        !(s_vals = PyUnicode_InternFromString("vals")) ||
        !(s_kids = PyUnicode_InternFromString("kids")) ||
        !(s_counts = PyUnicode_InternFromString("counts")) ||
        !(s_sums = PyUnicode_InternFromString("sums")) ||
        !(s_txns = PyUnicode_InternFromString("txns")) ||
        !(s_size = PyUnicode_InternFromString("size")) ||
        !(s_big = PyUnicode_InternFromString("big")))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "API", API) < 0)
        Py_CLEAR(m);
    return m;
}
