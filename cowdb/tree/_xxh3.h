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

#endif
