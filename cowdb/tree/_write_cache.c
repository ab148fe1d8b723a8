/* The node cache's entries (one file of cowdb.tree._write_c, see _write_c.h): a clean
 * node leaves the cyclic collector's walks as it enters the cache (settle), and the nodes
 * a commit superseded leave the cache once it is done with them (drop). */
#include "_write_c.h"

/* settle(node): a clean node entering the node cache leaves the cyclic garbage collector,
 * with its lists and arrays. The cache holds up to 65,536 nodes, each with two lists (and
 * a branch with three arrays, which the collector tracks too): tracked,
 * they made every full collection walk ~250,000 objects (about 45% of a no-sync commit's
 * CPU at 100,000 keys, docs/benchmarks.md). Untracking is safe because no cycle can pass
 * through a node: a node holds bytes, ints, None, tuples of ints, lists of those and
 * arrays of u64, or
 * (while dirty) its kids, which never refer back up; an untracked container is only ever
 * missed by the collector as a member of a cycle. */
PyObject *
settle(PyObject *Py_UNUSED(self), PyObject *node)
{
    const Py_ssize_t *off;
    if ((PyObject *)Py_TYPE(node) == leaf_type)
        off = leaf_off;
    else if ((PyObject *)Py_TYPE(node) == branch_type)
        off = branch_off;
    else  /* not a node (or bind() was not called): left as it is */
        Py_RETURN_NONE;
    for (int f = F_KEYS; f <= F_TXNS; f++) {
        PyObject *v = off[f] >= 0 ? SLOT(node, off[f]) : NULL;
        if (v != NULL && (PyList_CheckExact(v) || (f >= F_COUNTS && PyObject_IS_GC(v) &&
                                                   PyObject_CheckBuffer(v))))
            PyObject_GC_UnTrack(v);  /* (a list, or a branch's array of u64) */
    }
    PyObject_GC_UnTrack(node);
    Py_RETURN_NONE;
}

/* drop(nodes, bases): btree.py's NodeCache.drop; each base is (node, page, checksum, txn):
 * the page's entry is deleted where the cache still holds that very node; then bases is
 * emptied (freeing the nodes, while their memory is warm). */
PyObject *
drop(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_Check(args[0]) || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "drop(nodes, bases): a dict and a list");
        return NULL;
    }
    PyObject *nodes = args[0], *bases = args[1];
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(bases); i++) {
        PyObject *b = PyList_GET_ITEM(bases, i);
        if (!PyTuple_CheckExact(b) || PyTuple_GET_SIZE(b) != 4) {
            PyErr_SetString(PyExc_TypeError, "drop(): a base is not (node, page, checksum, "
                            "txn)");
            return NULL;
        }
        PyObject *page = PyTuple_GET_ITEM(b, 1);
        PyObject *cached = PyDict_GetItemWithError(nodes, page);  /* borrowed */
        if (cached == NULL && PyErr_Occurred())
            return NULL;
        if (cached == PyTuple_GET_ITEM(b, 0) && PyDict_DelItem(nodes, page) < 0)
            return NULL;
    }
    if (PyList_SetSlice(bases, 0, PY_SSIZE_T_MAX, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

