/* The optional C accelerators of cowdb/pages: the write queue joined into runs (store.py),
 * the free list's first-fit search (freelist.py).
 *
 * runs(queue, unit) is the loop of PageStore._flush: the txn's queued images ({first
 * unit: image}, bytes or bytearray) in unit order, cut into runs of consecutive units,
 * each run's images joined with zeros padding each one to its last unit (not the last
 * image of a run): a list of (first unit, end unit, bytes), one pwrite each.
 *
 * Why C: a commit of 10 puts queues ~25 images, and the Python loop over them (sorting,
 * a comparison, a padding and an append each) was ~1,000 of a commit's ~5,400 Python
 * opcodes (docs/history-cost.md); here it is one pass and one copy per run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define API 2  /* freelist.py's PAGES_API must match */

/* An image's bytes and length (bytes or bytearray); NULL with TypeError otherwise. */
static const char *
image_bytes(PyObject *image, Py_ssize_t *len)
{
    if (PyBytes_CheckExact(image)) {
        *len = PyBytes_GET_SIZE(image);
        return PyBytes_AS_STRING(image);
    }
    if (PyByteArray_CheckExact(image)) {
        *len = PyByteArray_GET_SIZE(image);
        return PyByteArray_AS_STRING(image);
    }
    PyErr_SetString(PyExc_TypeError, "runs(): a queued image is not bytes or a bytearray");
    return NULL;
}

/* One run: items[lo:hi] (sorted (unit, image) pairs, consecutive), joined; a new
 * (first, end, bytes) tuple or NULL. */
static PyObject *
join_run(PyObject *items, Py_ssize_t lo, Py_ssize_t hi, const long long *units,
         Py_ssize_t unit, long long end)
{
    long long first = units[lo];
    Py_ssize_t last_len;
    if (image_bytes(PyTuple_GET_ITEM(PyList_GET_ITEM(items, hi - 1), 1), &last_len) == NULL)
        return NULL;
    Py_ssize_t size = (Py_ssize_t)(units[hi - 1] - first) * unit + last_len;
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(data);
    Py_ssize_t pos = 0;
    for (Py_ssize_t i = lo; i < hi; i++) {
        Py_ssize_t at = (Py_ssize_t)(units[i] - first) * unit, len;
        const char *src = image_bytes(PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1), &len);
        if (src == NULL) {
            Py_DECREF(data);
            return NULL;
        }
        memset(out + pos, 0, (size_t)(at - pos));  /* the image before, padded */
        memcpy(out + at, src, (size_t)len);
        pos = at + len;
    }
    return Py_BuildValue("(LLN)", first, end, data);
}

static PyObject *
runs(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "runs(queue, unit): queue is a dict");
        return NULL;
    }
    Py_ssize_t unit = PyLong_AsSsize_t(args[1]);
    if (unit == -1 && PyErr_Occurred())
        return NULL;
    if (unit <= 0) {
        PyErr_SetString(PyExc_ValueError, "runs(): the unit must be positive");
        return NULL;
    }
    PyObject *items = PyDict_Items(args[0]), *out = NULL;
    long long *units = NULL;
    if (items == NULL || PyList_Sort(items) < 0)
        goto done;
    Py_ssize_t n = PyList_GET_SIZE(items);
    units = PyMem_Malloc(sizeof(long long) * (size_t)(n ? n : 1));
    if (units == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *page = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
        units[i] = PyLong_Check(page) ? PyLong_AsLongLong(page) : -1;
        if (units[i] < 0 || units[i] > PY_SSIZE_T_MAX / unit / 2) {
            if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "runs(): a queued page is not a unit "
                                "number of the file");
            }
            goto done;
        }
    }
    if ((out = PyList_New(0)) == NULL)
        goto done;
    Py_ssize_t lo = 0;
    long long end = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        if (image_bytes(PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1), &len) == NULL)
            goto fail;
        if (units[i] != end && i > lo) {  /* a new run: the one before is complete */
            PyObject *run = join_run(items, lo, i, units, unit, end);
            if (run == NULL || PyList_Append(out, run) < 0) {
                Py_XDECREF(run);
                goto fail;
            }
            Py_DECREF(run);
            lo = i;
        }
        end = units[i] + (len + unit - 1) / unit;
    }
    if (n > lo) {
        PyObject *run = join_run(items, lo, n, units, unit, end);
        if (run == NULL || PyList_Append(out, run) < 0) {
            Py_XDECREF(run);
            goto fail;
        }
        Py_DECREF(run);
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    PyMem_Free(units);
    Py_XDECREF(items);
    return out;
}

/* first_fit(pool, n, below): freelist.py's py_first_fit. After a long life the pool holds
 * hundreds of one-unit runs below the long ones (the rest of a txn's run that the next
 * image did not fit), and take's Python loop walked ~150 of them per success: ~5-7 µs of
 * a commit (docs/history-cost.md). */
static PyObject *
first_fit(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "first_fit(pool, n, below): pool is a list");
        return NULL;
    }
    PyObject *pool = args[0];
    /* page numbers are u64 (a run ends below 2**64: freelist._checked) */
    unsigned long long n = PyLong_AsUnsignedLongLong(args[1]), below = 0;
    if (n == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    int bounded = args[2] != Py_None;
    if (bounded && (below = PyLong_AsUnsignedLongLong(args[2])) == (unsigned long long)-1 &&
            PyErr_Occurred())
        return NULL;
    unsigned long long longest = 0;
    for (Py_ssize_t i = PyList_GET_SIZE(pool) - 1; i >= 0; i--) {
        PyObject *run = PyList_GET_ITEM(pool, i);
        if (!PyTuple_CheckExact(run) || PyTuple_GET_SIZE(run) != 2) {
            PyErr_SetString(PyExc_TypeError, "first_fit(): a run is not (start, length)");
            return NULL;
        }
        unsigned long long start = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(run, 0));
        unsigned long long length = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(run, 1));
        if ((start == (unsigned long long)-1 || length == (unsigned long long)-1) &&
                PyErr_Occurred())
            return NULL;
        if (bounded && (n > below || start > below - n))   /* start + n > below, no wrap */
            return Py_BuildValue("(ii)", -1, -1);
        if (length > longest)
            longest = length;
        if (length >= n)
            return Py_BuildValue("(ni)", i, 0);
    }
    return Py_BuildValue("(iK)", -1, longest);
}

static PyMethodDef methods[] = {
    {"first_fit", (PyCFunction)(void (*)(void))first_fit, METH_FASTCALL,
     "first_fit(pool, n, below): freelist.py's py_first_fit: (index of the lowest run of at "
     "least n units, 0), (-1, the longest run) if none, (-1, -1) if stopped by below."},
    {"runs", (PyCFunction)(void (*)(void))runs, METH_FASTCALL,
     "runs(queue, unit): store.py's PageStore._flush loop: the queued images ({first unit: "
     "image}) in runs of consecutive units, each joined with zero padding: "
     "[(first, end, bytes), ...]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pages_c",
    "The page store's write queue joined into runs and the free list's first fit, in C.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__pages_c(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "API", API) < 0)
        Py_CLEAR(m);
    return m;
}
