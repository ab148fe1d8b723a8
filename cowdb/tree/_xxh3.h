/* XXH3-64, the page checksum (pages/checksum.py), computed in C where a C module would
 * otherwise call the xxhash package's xxh3_64_intdigest: that call costs a memoryview,
 * the function's argument parsing and an int, ~1,000 instructions beside the ~300 of
 * hashing a delta image, ~20 images a commit. The code is the package's own (xxHash
 * 0.8, vendored in third_party/xxhash, BSD 2-clause), so the sums are the same bits
 * (tests/test_write_c.py checks them against the package's).
 *
 * Only a digest that *is* the package's function is computed here (is_xxh3): any other
 * callable a caller passes (a test's colliding digest) is still called. */
#ifndef COWDB_XXH3_H
#define COWDB_XXH3_H

#define XXH_INLINE_ALL
#include "xxhash.h"

/* Whether digest is xxhash.xxh3_64_intdigest (looked up once; 0 if it cannot be). */
static int
is_xxh3(PyObject *digest)
{
    static PyObject *xxh3 = NULL;  /* a strong reference, kept for the process's life */
    if (xxh3 == NULL) {
        PyObject *m = PyImport_ImportModule("xxhash");
        xxh3 = m == NULL ? NULL : PyObject_GetAttrString(m, "xxh3_64_intdigest");
        Py_XDECREF(m);
        if (xxh3 == NULL) {
            PyErr_Clear();  /* (no package: every digest is called) */
            return 0;
        }
    }
    return digest == xxh3;
}

/* The checksum of the n-byte image at p (n >= 8: the digest of its bytes after the first
 * 8) in *sum: computed here when xxh3 (is_xxh3(digest), asked once by the caller), else
 * digest called on a memoryview of them. -1 with an error set (a digest that raised or
 * gave no int). Every C image checksum goes through here: the write pass's seals, the
 * mapped read's and the node cache's checks. */
static int
image_digest(PyObject *digest, int xxh3, const unsigned char *p, Py_ssize_t n,
             unsigned long long *sum)
{
    if (xxh3) {
        *sum = XXH3_64bits(p + 8, (size_t)(n - 8));
        return 0;
    }
    PyObject *mv = PyMemoryView_FromMemory((char *)p + 8, n - 8, PyBUF_READ);
    if (mv == NULL)
        return -1;
    PyObject *r = PyObject_CallOneArg(digest, mv);
    Py_DECREF(mv);
    if (r == NULL)
        return -1;
    /* (the digest is a u64: the mask conversion is exact, and has no slow path for
     * 64-bit ints as PyLong_AsUnsignedLongLong has) */
    unsigned long long v = PyLong_Check(r) ? PyLong_AsUnsignedLongLongMask(r) : 0;
    int bad = !PyLong_Check(r) || (v == (unsigned long long)-1 && PyErr_Occurred());
    Py_DECREF(r);
    if (bad) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "the page digest is not an int");
        return -1;
    }
    *sum = v;
    return 0;
}

#endif
