/* The optional C accelerator of cowdb.tree: the point-read descent of Tree.get.
 *
 * get(root, key, nodes) walks from a root node to the leaf that may hold `key`
 * and returns the leaf's value (bytes, or the Overflow object for Python to read),
 * or None.  It is the loop `py_get` in btree.py, line for line: in a branch the
 * child is kids[bisect_right(keys, key) - 1]; a clean child (an int page number)
 * is looked up in `nodes` (the NodeCache, a dict keyed by page number) and used
 * if the cached node's txn is the txn its parent recorded (txns[i]); else it is
 * loaded by calling nodes.load(page, sums[i], txns[i]);
 * a dirty child (a writer's node object) is taken as it is.
 *
 * Why C: at 1M keys a warm get spends ~4.5 us in that Python loop, against ~2 us
 * for lmdb's whole get; the loop is bisects and list/dict lookups, so C does the
 * same work with no interpreter in between (see docs/benchmarks.md, W2).
 *
 * Keys are compared with memcmp when both are exact bytes (always, for keys the
 * tree stores), else through Python's comparison.  No Python code runs during a
 * descent except nodes.load, after which nothing borrowed from before is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define API 3  /* btree.API must match: bump both on any change of get()'s contract */

static PyTypeObject *branch_type = NULL;   /* node.Branch, set by bind() */
static PyObject *s_keys, *s_kids, *s_sums, *s_txns, *s_txn, *s_vals, *s_load;

/* -1, 0, 1 as a <, ==, > b; -2 on error */
static int
compare(PyObject *a, PyObject *b)
{
    if (PyBytes_CheckExact(a) && PyBytes_CheckExact(b)) {
        Py_ssize_t la = PyBytes_GET_SIZE(a), lb = PyBytes_GET_SIZE(b);
        int c = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), la < lb ? la : lb);
        if (c)
            return c < 0 ? -1 : 1;
        return la < lb ? -1 : la > lb;
    }
    int lt = PyObject_RichCompareBool(a, b, Py_LT);
    if (lt < 0)
        return -2;
    if (lt)
        return -1;
    int eq = PyObject_RichCompareBool(a, b, Py_EQ);
    return eq < 0 ? -2 : (eq ? 0 : 1);
}

/* bisect_right (right = 1) or bisect_left (right = 0) of key in a list; -1 on error */
static Py_ssize_t
bisect(PyObject *list, PyObject *key, int right)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(list);
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        int c = compare(PyList_GET_ITEM(list, mid), key);
        if (c == -2)
            return -1;
        if (c < 0 || (right && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static PyObject *
list_attr(PyObject *node, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(node, name);
    if (v != NULL && !PyList_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "a tree node's %U is not a list", name);
        Py_CLEAR(v);
    }
    return v;
}

/* node.<name>[i], a new reference; an error if that is not a list this long */
static PyObject *
list_item(PyObject *node, PyObject *name, Py_ssize_t i)
{
    PyObject *list = list_attr(node, name), *item = NULL;
    if (list == NULL)
        return NULL;
    if (i < PyList_GET_SIZE(list)) {
        item = PyList_GET_ITEM(list, i);
        Py_INCREF(item);
    }
    else {
        PyErr_Format(PyExc_ValueError, "a tree node's %U has no item %zd", name, i);
    }
    Py_DECREF(list);
    return item;
}

/* the index of key in node.keys: bisect_right (right = 1) or bisect_left; -1 on error */
static Py_ssize_t
key_index(PyObject *node, PyObject *key, int right, int *found)
{
    PyObject *keys = list_attr(node, s_keys);
    if (keys == NULL)
        return -1;
    Py_ssize_t i = bisect(keys, key, right);
    if (found != NULL && i >= 0) {
        int c = i < PyList_GET_SIZE(keys) ? compare(PyList_GET_ITEM(keys, i), key) : 1;
        if (c == -2)
            i = -1;
        *found = c == 0;
    }
    Py_DECREF(keys);
    return i;
}

static PyObject *
tree_get(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "get(root, key, nodes) takes 3 arguments");
        return NULL;
    }
    PyObject *key = args[1], *nodes = args[2];
    if (branch_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cowdb.tree._tree_c.bind(Branch) was not called");
        return NULL;
    }
    if (!PyDict_Check(nodes)) {
        PyErr_SetString(PyExc_TypeError, "nodes must be the NodeCache (a dict)");
        return NULL;
    }
    PyObject *node = args[0], *child;
    Py_INCREF(node);
    while (Py_TYPE(node) == branch_type) {
        Py_ssize_t i = key_index(node, key, 1, NULL) - 1;
        if (i < -1)
            goto fail;
        if (i < 0)
            i = 0;  /* key 0 of a branch is b"", below every key: never taken */
        PyObject *kid = list_item(node, s_kids, i);
        if (kid == NULL)
            goto fail;
        if (PyLong_CheckExact(kid)) {  /* clean: cached by (page, txn), or loaded */
            PyObject *txn = list_item(node, s_txns, i);
            if (txn == NULL) {
                Py_DECREF(kid);
                goto fail;
            }
            child = PyDict_GetItemWithError(nodes, kid);
            if (child != NULL) {
                Py_INCREF(child);
                PyObject *ctxn = PyObject_GetAttr(child, s_txn);
                int same = ctxn == NULL ? -1 : PyObject_RichCompareBool(ctxn, txn, Py_EQ);
                Py_XDECREF(ctxn);
                if (same < 0)
                    Py_CLEAR(child);
                else if (!same) {  /* the page was rewritten since: not this image */
                    Py_CLEAR(child);
                    PyObject *sum = list_item(node, s_sums, i);
                    if (sum != NULL)
                        child = PyObject_CallMethodObjArgs(nodes, s_load, kid, sum, txn, NULL);
                    Py_XDECREF(sum);
                }
            }
            else if (!PyErr_Occurred()) {
                PyObject *sum = list_item(node, s_sums, i);
                if (sum != NULL)
                    child = PyObject_CallMethodObjArgs(nodes, s_load, kid, sum, txn, NULL);
                Py_XDECREF(sum);
            }
            Py_DECREF(txn);
            Py_DECREF(kid);
        }
        else {  /* a writer's dirty child */
            child = kid;
        }
        if (child == NULL)
            goto fail;
        Py_SETREF(node, child);
    }
    int found = 0;
    Py_ssize_t i = key_index(node, key, 0, &found);
    if (i < 0)
        goto fail;
    PyObject *result = found ? list_item(node, s_vals, i) : Py_NewRef(Py_None);
    Py_DECREF(node);
    return result;
fail:
    Py_DECREF(node);
    return NULL;
}

static PyObject *
bind(PyObject *Py_UNUSED(self), PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "bind() takes the Branch class");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(branch_type, (PyTypeObject *)cls);
    Py_RETURN_NONE;
}

/* branch_body(keys, kids, counts, sums, txns): a branch image after its header:
 * n x u16 key lengths, n x (u64 page, count, checksum, txn), the keys; the body of
 * node.encode_branch in C (converting ~320 Python ints, most of them 64-bit checksums,
 * is most of a branch's encoding). */
static PyObject *
branch_body(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "branch_body(keys, kids, counts, sums, txns)");
        return NULL;
    }
    for (int j = 0; j < 5; j++) {
        if (!PyList_CheckExact(args[j])) {
            PyErr_SetString(PyExc_TypeError, "branch_body() takes 5 lists");
            return NULL;
        }
    }
    PyObject *keys = args[0];
    Py_ssize_t n = PyList_GET_SIZE(keys), klen = 0;
    for (int j = 1; j < 5; j++) {
        if (PyList_GET_SIZE(args[j]) != n) {
            PyErr_SetString(PyExc_ValueError, "branch_body(): the lists differ in length");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        if (!PyBytes_CheckExact(k) || PyBytes_GET_SIZE(k) > 0xFFFF) {
            PyErr_SetString(PyExc_ValueError, "branch_body(): a key is not bytes of < 64 KiB");
            return NULL;
        }
        klen += PyBytes_GET_SIZE(k);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 34 * n + klen);
    if (out == NULL)
        return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t l = PyBytes_GET_SIZE(PyList_GET_ITEM(keys, i));
        *p++ = (unsigned char)l;
        *p++ = (unsigned char)(l >> 8);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        for (int j = 1; j < 5; j++) {
            unsigned long long v = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(args[j], i));
            if (v == (unsigned long long)-1 && PyErr_Occurred()) {
                Py_DECREF(out);
                return NULL;
            }
            for (int b = 0; b < 8; b++)
                *p++ = (unsigned char)(v >> (8 * b));
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        memcpy(p, PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k));
        p += PyBytes_GET_SIZE(k);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"branch_body", (PyCFunction)(void (*)(void))branch_body, METH_FASTCALL,
     "branch_body(keys, kids, counts, sums, txns): a branch image after its header."},
    {"get", (PyCFunction)(void (*)(void))tree_get, METH_FASTCALL,
     "get(root, key, nodes): the value stored under key below root (bytes or an "
     "Overflow), or None; the descent of btree.py's py_get."},
    {"bind", bind, METH_O, "bind(Branch): the class whose instances are branch nodes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tree_c", "The C descent of cowdb.tree's point reads.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__tree_c(void)
{
    if (!(s_keys = PyUnicode_InternFromString("keys")) ||
        !(s_kids = PyUnicode_InternFromString("kids")) ||
        !(s_sums = PyUnicode_InternFromString("sums")) ||
        !(s_txns = PyUnicode_InternFromString("txns")) ||
        !(s_txn = PyUnicode_InternFromString("txn")) ||
        !(s_vals = PyUnicode_InternFromString("vals")) ||
        !(s_load = PyUnicode_InternFromString("load")))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "API", API) < 0)
        Py_CLEAR(m);
    return m;
}
