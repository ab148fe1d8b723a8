/* Node images (one file of cowdb.tree._write_c, see _write_c.h): a node's full image
 * (node.py's encode_leaf and encode_branch), its delta on the image it was copied from
 * (encode_delta) or on its chain's full image (rebase_delta), and the slicing of keys
 * and values back out of an image (the decoder's part). Formats: node.py and
 * docs/format.md. */
#include "_write_c.h"
#include "_xxh3.h"

/* 1 if the two keys lists hold equal bytes, 0 if not, -1 on error. */
static int
same_keys(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyList_GET_SIZE(a);
    if (a == b)
        return 1;  /* (a copy that kept its keys borrows its base's list: node.own_keys) */
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


/* A new image of ``size`` bytes, its header written (the checksum zero, sealed by the
 * caller; flags 0: no overflow value); *body points past the header. NULL with ValueError
 * when n or size do not fit their header fields (``who`` names the caller). */
static PyObject *
new_image(const char *who, int kind, Py_ssize_t n, Py_ssize_t size, unsigned long long txn,
          unsigned char **body)
{
    if (size > 0xFFFFFFFFLL || n > 0xFFFF) {
        PyErr_Format(PyExc_ValueError, "%s(): the node is too large for a page", who);
        return NULL;
    }
    PyObject *out = PyByteArray_FromStringAndSize(NULL, size);
    if (out == NULL)
        return NULL;
    unsigned char *p = (unsigned char *)PyByteArray_AS_STRING(out);
    p = put64(p, 0);
    *p++ = (unsigned char)kind;
    *p++ = 0;
    p = put16(p, (unsigned)n);
    p = put32(p, (unsigned long)size);
    *body = put64(p, txn);
    return out;
}

PyObject *
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
    return delta_core(is_leaf, (int)kind, args[2], args[3], bpage, bsum, btxn, (unsigned)depth,
                      txn);
}

/* Entry i differs from the base's: the last of the s runs (at, length) grows, or a run
 * begins. */
static inline void
run_add(Py_ssize_t *runs, Py_ssize_t *s, Py_ssize_t i)
{
    if (*s && runs[2 * (*s - 1)] + runs[2 * (*s - 1) + 1] == i)
        runs[2 * (*s - 1) + 1]++;
    else {
        runs[2 * *s] = i;
        runs[2 * *s + 1] = 1;
        (*s)++;
    }
}

/* The delta image (checksum zero) of a node whose entries in the s runs (at, length) of
 * ``runs`` differ from its base's, in place: keys and vk (its vals, or kids) are its lists,
 * refs a branch's counts, sums and txns; size the image's bytes, counted by the caller. */
static PyObject *
encode_runs(int is_leaf, int kind, PyObject *keys, PyObject *vk, unsigned long long *refs[3],
            Py_ssize_t n, const Py_ssize_t *runs, Py_ssize_t s, Py_ssize_t size,
            unsigned long long bpage, unsigned long long bsum, unsigned long long btxn,
            unsigned depth, unsigned long long txn)
{
    unsigned char *p;
    PyObject *out = new_image("delta_image", kind, n, size, txn, &p);
    if (out == NULL)
        return NULL;
    unsigned char *start = (unsigned char *)PyByteArray_AS_STRING(out);
    p = put64(p, bpage);
    p = put64(p, bsum);
    p = put64(p, btxn);
    p = put16(p, depth);
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
                p = put32(p, (unsigned long)PyBytes_GET_SIZE(PyList_GET_ITEM(vk, i)));
                continue;
            }
            unsigned long long v = u64_at(vk, i);   /* page */
            if (v == (unsigned long long)-1 && PyErr_Occurred()) {
                Py_DECREF(out);
                return NULL;
            }
            p = put64(p, v);
            for (int j = 0; j < 3; j++)    /* count, checksum, txn */
                p = put64(p, refs[j][i]);
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
                PyObject *v = PyList_GET_ITEM(vk, i);
                memcpy(p, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
                p += PyBytes_GET_SIZE(v);
            }
        }
    }
    if (p != start + size) {  /* (cannot happen: the sizes were summed by the caller) */
        Py_DECREF(out);
        PyErr_SetString(PyExc_SystemError, "delta_image(): the image's size was miscounted");
        return NULL;
    }
    return out;
}

/* The delta of the s runs (encode_runs; body: the put entries' bytes), or None when a
 * full image is due: too many runs, or a delta not under half the node's full image. */
static PyObject *
delta_of_runs(int is_leaf, int kind, PyObject *node, PyObject *keys, PyObject *vk,
              unsigned long long *refs[3], Py_ssize_t n, const Py_ssize_t *runs, Py_ssize_t s,
              Py_ssize_t body, unsigned long long bpage, unsigned long long bsum,
              unsigned long long btxn, unsigned depth, unsigned long long txn)
{
    if (s > 0xFFFF)
        return Py_NewRef(Py_None);
    Py_ssize_t size = HEADER_SIZE + DELTA_HEAD + 6 * s + body;
    PyObject *nsize = field(node, F_SIZE);
    if (nsize == NULL)
        return NULL;
    long long full_size = PyLong_AsLongLong(nsize);
    Py_DECREF(nsize);
    if (full_size == -1 && PyErr_Occurred())
        return NULL;
    if (2 * (long long)size > full_size)
        return Py_NewRef(Py_None);
    return encode_runs(is_leaf, kind, keys, vk, refs, n, runs, s, size, bpage, bsum, btxn,
                       depth, txn);
}

/* Entry i differs from the base's: its bytes added to *body and i to the runs; 0, 1 when
 * Python must encode the node (a value neither big nor bytes: it says what is wrong),
 * or -1 with an error. */
static int
add_differing(int is_leaf, PyObject *keys, PyObject *vk, Py_ssize_t i, Py_ssize_t *body,
              Py_ssize_t *runs, Py_ssize_t *s)
{
    PyObject *k = PyList_GET_ITEM(keys, i);
    if (!PyBytes_CheckExact(k) || PyBytes_GET_SIZE(k) > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "delta_image(): a key is not bytes of < 64 KiB");
        return -1;
    }
    *body += PyBytes_GET_SIZE(k);
    if (is_leaf) {
        PyObject *v = PyList_GET_ITEM(vk, i);
        if (!PyBytes_CheckExact(v))
            return 1;
        *body += 6 + PyBytes_GET_SIZE(v);
    }
    else
        *body += 34;
    run_add(runs, s, i);
    return 0;
}

/* Whether a branch's entry i (kid a, references u[0..2][i]) differs from (kid b, refs
 * br[0..2]): 1, 0, or -1 with an error. Kids by value, the common case by identity (a
 * copy shares its base's objects). */
static int
kid_differs(PyObject *a, PyObject *b, unsigned long long *u[3], Py_ssize_t i,
            const unsigned long long br[3])
{
    if (a != b) {
        int eq = PyObject_RichCompareBool(a, b, Py_EQ);
        if (eq <= 0)
            return eq < 0 ? -1 : 1;
    }
    for (int j = 0; j < 3; j++)
        if (u[j][i] != br[j])
            return 1;
    return 0;
}

/* The runs of a node that took its base's lists: only the entries its undo record holds
 * can differ from the base's (node.py's restore_base), each compared as delta_core
 * compares it; 0, 1 (Python encodes), or -1 with an error. */
static int
undo_runs(int is_leaf, PyObject *undo, PyObject *keys, PyObject *vk, unsigned long long *u[3],
          Py_ssize_t n, Py_ssize_t *body, Py_ssize_t *runs, Py_ssize_t *s)
{
    if (!PyDict_CheckExact(undo)) {
        PyErr_SetString(PyExc_TypeError, "delta_image(): a node's undo record is not a dict");
        return -1;
    }
    PyObject *at = PyDict_Keys(undo);
    int out = at == NULL || PyList_Sort(at) < 0 ? -1 : 0;
    for (Py_ssize_t j = 0; out == 0 && j < PyList_GET_SIZE(at); j++) {
        PyObject *key = PyList_GET_ITEM(at, j), *old = PyDict_GetItem(undo, key);
        Py_ssize_t i = PyLong_AsSsize_t(key);
        if (i == -1 && PyErr_Occurred())
            out = -1;
        else if (i < 0 || i >= n || old == NULL) {
            PyErr_SetString(PyExc_ValueError, "delta_image(): an undo record's entry is past "
                            "the node's");
            out = -1;
        }
        else if (is_leaf) {
            if (PyList_GET_ITEM(vk, i) != old)
                out = add_differing(is_leaf, keys, vk, i, body, runs, s);
        }
        else {
            unsigned long long br[3];
            if (!PyTuple_CheckExact(old) || PyTuple_GET_SIZE(old) != 4) {
                PyErr_SetString(PyExc_TypeError, "delta_image(): a branch's undo entry is "
                                "not (page, count, checksum, txn)");
                out = -1;
                break;
            }
            for (int f = 0; f < 3; f++)
                br[f] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(old, f + 1));
            int d = PyErr_Occurred() ? -1
                    : kid_differs(PyList_GET_ITEM(vk, i), PyTuple_GET_ITEM(old, 0), u, i, br);
            out = d <= 0 ? d : add_differing(is_leaf, keys, vk, i, body, runs, s);
        }
    }
    Py_XDECREF(at);
    return out;
}

/* delta_image's work, its arguments converted (write_tree calls it too). A node that took
 * its base's lists (an undo record, see node.py's restore_base) is compared with the
 * record, the base's lists being None. */
PyObject *
delta_core(int is_leaf, int kind, PyObject *node, PyObject *base, unsigned long long bpage,
           unsigned long long bsum, unsigned long long btxn, unsigned depth,
           unsigned long long txn)
{
    PyObject *fields[2][2] = {{NULL}};  /* node's, base's: keys, then vals or kids */
    Py_buffer views[2][3];               /* a branch's: counts, sums, txns */
    unsigned long long *refs[2][3];
    int held[2] = {0, 0};
    int names[2] = {F_KEYS, is_leaf ? F_VALS : F_KIDS};
    PyObject *out = NULL;
    Py_ssize_t *runs = NULL;   /* pairs (at, length) of entries that differ */
    PyObject *undo = field(node, F_UNDO);
    if (undo == NULL)
        return NULL;
    int sides = undo == Py_None ? 2 : 1;   /* (with a record, only the node's lists) */
    for (int w = 0; w < sides; w++) {
        for (int f = 0; f < 2; f++) {
            fields[w][f] = list_of(w ? base : node, names[f]);
            if (fields[w][f] == NULL)
                goto done;
        }
        if (PyList_GET_SIZE(fields[w][1]) != PyList_GET_SIZE(fields[w][0])) {
            PyErr_SetString(PyExc_ValueError, "delta_image(): a node's lists differ in length");
            goto done;
        }
    }
    PyObject *keys = fields[0][0];
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (!is_leaf) {
        for (int w = 0; w < sides; w++) {
            if (refs_of(w ? base : node, views[w], refs[w], PyList_GET_SIZE(fields[w][0]),
                        0) < 0)
                goto done;
            held[w] = 1;
        }
    }
    if (sides == 2) {
        int same = same_keys(keys, fields[1][0]);
        if (same < 0)
            goto done;
        if (!same)
            goto python;
    }
    else {  /* a record holds while the keys are the base's (a change of them restores) */
        PyObject *bkeys = field(base, F_KEYS);
        if (bkeys == NULL)
            goto done;
        Py_DECREF(bkeys);
        if (bkeys != keys)
            goto python;
    }
    if (is_leaf) {
        PyObject *big = field(node, F_BIG);
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
    Py_ssize_t s = 0, body = 0;
    int r = 0;
    if (sides == 1)
        r = undo_runs(is_leaf, undo, keys, fields[0][1], refs[0], n, &body, runs, &s);
    for (Py_ssize_t i = 0; sides == 2 && r == 0 && i < n; i++) {
        PyObject *a = PyList_GET_ITEM(fields[0][1], i), *b = PyList_GET_ITEM(fields[1][1], i);
        int differs;
        if (is_leaf)  /* values by identity: a copy shares its base's objects */
            differs = a != b;
        else {        /* references by value */
            const unsigned long long br[3] = {refs[1][0][i], refs[1][1][i], refs[1][2][i]};
            if ((differs = kid_differs(a, b, refs[0], i, br)) < 0)
                goto done;
        }
        if (differs)
            r = add_differing(is_leaf, keys, fields[0][1], i, &body, runs, &s);
    }
    if (r < 0)
        goto done;
    if (r > 0)
        goto python;
    out = delta_of_runs(is_leaf, kind, node, keys, fields[0][1], refs[0], n, runs, s, body,
                        bpage, bsum, btxn, depth, txn);
    goto done;
python:
    out = Py_NewRef(Py_NotImplemented);
done:
    Py_DECREF(undo);
    PyMem_Free(runs);
    for (int w = 0; w < 2; w++) {
        for (int f = 0; f < 2; f++)
            Py_XDECREF(fields[w][f]);
        if (held[w])
            release_refs(views[w]);
    }
    return out;
}

/* ---- full images: node.py's encode_leaf and encode_branch ------------------------ */

/* rebase_image's work: node's image as a delta of depth 1 on ``img``, the full image (of
 * len bytes, verified by the caller) at page fpage that its base's chain starts from,
 * comparing entries by value; checksum left zero. None when a full image is due: img is
 * not a full image of node's kind, node's keys are not img's, a value is not inline
 * bytes, or the delta would not be under half the node (as delta_image's). */
PyObject *
rebase_core(int is_leaf, int kind, PyObject *node, const unsigned char *img, Py_ssize_t len,
            unsigned long long fpage, unsigned long long txn)
{
    PyObject *keys = NULL, *vk = NULL, *out = NULL;
    Py_buffer views[3];
    unsigned long long *refs[3] = {NULL, NULL, NULL};
    int held = 0;
    Py_ssize_t *runs = NULL;
    if (len < HEADER_SIZE || img[8] != (is_leaf ? leaf_full_kind : branch_full_kind) ||
            (Py_ssize_t)get_le(img + 12, 4) != len)
        goto full;
    Py_ssize_t n = (Py_ssize_t)get_le(img + 10, 2);
    if ((keys = list_of(node, F_KEYS)) == NULL ||
            (vk = list_of(node, is_leaf ? F_VALS : F_KIDS)) == NULL)
        goto done;
    if (PyList_GET_SIZE(keys) != n || PyList_GET_SIZE(vk) != n)
        goto full;
    if (is_leaf) {
        PyObject *big = field(node, F_BIG);
        int b = big == NULL ? -1 : PyObject_IsTrue(big);
        Py_XDECREF(big);
        if (b < 0)
            goto done;
        if (b)
            goto full;
    }
    else {
        if (refs_of(node, views, refs, n, 0) < 0)
            goto done;
        held = 1;
    }
    /* the image's layout: key lengths (u16), then a leaf's value lengths (u32) or a
     * branch's (page, count, checksum, txn) (u64 each), then keys, then a leaf's values */
    Py_ssize_t at = HEADER_SIZE, ents = at + 2 * n, pos = at + (is_leaf ? 6 : 34) * n;
    if (pos > len)
        goto full;
    Py_ssize_t kpos = pos, vpos;
    for (Py_ssize_t i = 0; i < n; i++) {   /* the keys must be the node's */
        Py_ssize_t kl = (Py_ssize_t)get_le(img + at + 2 * i, 2);
        PyObject *k = PyList_GET_ITEM(keys, i);
        if (!PyBytes_CheckExact(k) || PyBytes_GET_SIZE(k) != kl || kpos + kl > len ||
                memcmp(PyBytes_AS_STRING(k), img + kpos, (size_t)kl))
            goto full;
        kpos += kl;
    }
    vpos = kpos;
    runs = PyMem_Malloc(sizeof(Py_ssize_t) * 2 * (size_t)(n ? n : 1));
    if (runs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t s = 0, body = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int differs = 0;
        if (is_leaf) {
            unsigned long long vl = get_le(img + ents + 4 * i, 4);
            PyObject *v = PyList_GET_ITEM(vk, i);
            if ((vl >> 31) || vpos + (Py_ssize_t)vl > len || !PyBytes_CheckExact(v))
                goto full;   /* an overflow value (its own run), or not inline bytes */
            differs = PyBytes_GET_SIZE(v) != (Py_ssize_t)vl ||
                      memcmp(PyBytes_AS_STRING(v), img + vpos, (size_t)vl);
            vpos += (Py_ssize_t)vl;
        }
        else {
            const unsigned char *e = img + ents + 32 * i;
            unsigned long long page = u64_at(vk, i);
            if (page == (unsigned long long)-1 && PyErr_Occurred())
                goto done;
            differs = page != get_le(e, 8);
            for (int j = 0; j < 3 && !differs; j++)
                differs = refs[j][i] != get_le(e + 8 * (j + 1), 8);
        }
        if (!differs)
            continue;
        body += PyBytes_GET_SIZE(PyList_GET_ITEM(keys, i)) +
                (is_leaf ? 6 + PyBytes_GET_SIZE(PyList_GET_ITEM(vk, i)) : 34);
        run_add(runs, &s, i);
    }
    out = delta_of_runs(is_leaf, kind, node, keys, vk, refs, n, runs, s, body, fpage,
                        get_le(img, 8), get_le(img + 16, 8), 1, txn);
    goto done;
full:
    out = Py_NewRef(Py_None);
done:
    PyMem_Free(runs);
    Py_XDECREF(keys);
    Py_XDECREF(vk);
    if (held)
        release_refs(views);
    return out;
}

PyObject *
rebase_image(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "rebase_image(is_leaf, kind, node, image, fpage, txn)");
        return NULL;
    }
    int is_leaf = PyObject_IsTrue(args[0]);
    long kind = PyLong_AsLong(args[1]);
    unsigned long long fpage = PyLong_AsUnsignedLongLong(args[4]);
    unsigned long long txn = PyLong_AsUnsignedLongLong(args[5]);
    if (is_leaf < 0 || PyErr_Occurred())
        return NULL;
    if (kind < 0 || kind > 255) {
        PyErr_SetString(PyExc_ValueError, "rebase_image(): kind out of range");
        return NULL;
    }
    Py_buffer img;
    if (PyObject_GetBuffer(args[3], &img, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = rebase_core(is_leaf, (int)kind, args[2], img.buf, img.len, fpage, txn);
    PyBuffer_Release(&img);
    return out;
}

/* A node's full image, header and body, its checksum left zero for the caller to seal;
 * NotImplemented for a leaf marked big (a value may be an Overflow: Python encodes it).
 * A branch's kids must all be pages (ints): its dirty kids written first. */
PyObject *
full_core(PyObject *node, int is_leaf, unsigned long long txn)
{
    PyObject *keys = NULL, *list = NULL;   /* vals, or kids */
    Py_buffer views[3];                    /* a branch's counts, sums, txns */
    unsigned long long *refs[3];
    int held = 0;
    PyObject *out = NULL;
    if (is_leaf) {
        PyObject *big = field(node, F_BIG);
        int b = big == NULL ? -1 : PyObject_IsTrue(big);
        Py_XDECREF(big);
        if (b < 0)
            return NULL;
        if (b)
            return Py_NewRef(Py_NotImplemented);
    }
    if ((keys = list_of(node, F_KEYS)) == NULL ||
            (list = list_of(node, is_leaf ? F_VALS : F_KIDS)) == NULL)
        goto done;
    Py_ssize_t n = PyList_GET_SIZE(keys), size = HEADER_SIZE + (is_leaf ? 6 : 34) * n;
    if (PyList_GET_SIZE(list) != n) {
        PyErr_SetString(PyExc_ValueError, "full_image(): a node's lists differ in length");
        goto done;
    }
    if (!is_leaf) {
        if (refs_of(node, views, refs, n, 0) < 0)
            goto done;
        held = 1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        if (!PyBytes_CheckExact(k) || PyBytes_GET_SIZE(k) > 0xFFFF) {
            PyErr_SetString(PyExc_ValueError, "full_image(): a key is not bytes of < 64 KiB");
            goto done;
        }
        size += PyBytes_GET_SIZE(k);
        if (is_leaf) {
            PyObject *v = PyList_GET_ITEM(list, i);
            if (!PyBytes_CheckExact(v) || PyBytes_GET_SIZE(v) >= 0x80000000LL) {
                PyErr_SetString(PyExc_TypeError, "full_image(): a leaf not marked big holds "
                                "a value that is not inline bytes");
                goto done;
            }
            size += PyBytes_GET_SIZE(v);
        }
    }
    unsigned char *p;
    out = new_image("full_image", is_leaf ? leaf_full_kind : branch_full_kind, n, size, txn, &p);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++)
        p = put16(p, (unsigned)PyBytes_GET_SIZE(PyList_GET_ITEM(keys, i)));
    for (Py_ssize_t i = 0; i < n; i++) {
        if (is_leaf) {
            p = put32(p, (unsigned long)PyBytes_GET_SIZE(PyList_GET_ITEM(list, i)));
            continue;
        }
        PyObject *v = PyList_GET_ITEM(list, i);  /* page */
        unsigned long long u = PyLong_Check(v) ? PyLong_AsUnsignedLongLong(v) : 0;
        if (!PyLong_Check(v) || (u == (unsigned long long)-1 && PyErr_Occurred())) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "full_image(): a branch's kid is not a "
                                "page (write its dirty kids first)");
            Py_CLEAR(out);
            goto done;
        }
        p = put64(p, u);
        for (int j = 0; j < 3; j++)        /* count, checksum, txn */
            p = put64(p, refs[j][i]);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        memcpy(p, PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k));
        p += PyBytes_GET_SIZE(k);
    }
    if (is_leaf) {
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = PyList_GET_ITEM(list, i);
            memcpy(p, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
            p += PyBytes_GET_SIZE(v);
        }
    }
done:
    Py_XDECREF(keys);
    Py_XDECREF(list);
    if (held)
        release_refs(views);
    return out;
}

PyObject *
full_image(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "full_image(node, txn)");
        return NULL;
    }
    PyObject *tp = (PyObject *)Py_TYPE(args[0]);
    if (leaf_type == NULL || (tp != leaf_type && tp != branch_type)) {
        PyErr_SetString(PyExc_TypeError, "full_image(): not a tree node (or bind() was not "
                        "called)");
        return NULL;
    }
    unsigned long long txn = PyLong_AsUnsignedLongLong(args[1]);
    if (txn == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return full_core(args[0], tp == leaf_type, txn);
}

PyObject *
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


/* The n byte strings whose little-endian lengths (width bytes each) are at at in the
 * len bytes at d, laid out one after another from *pos (moved past them): a new list, or
 * NULL with ValueError when they do not fit. */
static PyObject *
sliced(const unsigned char *d, Py_ssize_t len, Py_ssize_t at, Py_ssize_t width, Py_ssize_t n,
       Py_ssize_t *pos)
{
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t l = (Py_ssize_t)get_le(d + at + width * i, (int)width);
        if (*pos > len || l > len - *pos) {
            PyErr_SetString(PyExc_ValueError, "entries past the image's end");
            Py_DECREF(list);
            return NULL;
        }
        PyObject *item = PyBytes_FromStringAndSize((const char *)d + *pos, l);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
        *pos += l;
    }
    if (*pos > len) {   /* (n == 0, first past the end) */
        PyErr_SetString(PyExc_ValueError, "entries past the image's end");
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

/* slices(data, n, at, width, first): node.py's py_slices. A node the write path has not
 * touched yet is decoded the first time a put reaches it, so at 1M keys a commit decodes
 * ~5 leaves for a long while after opening: slicing keys and values in list
 * comprehensions was ~10 µs a leaf (~8 a branch's keys), most of that commit's extra CPU
 * over 100k keys. */
PyObject *
slices(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "slices(data, n, at, width, first): bytes and "
                        "four ints");
        return NULL;
    }
    Py_ssize_t v[4];
    for (int i = 0; i < 4; i++)
        if ((v[i] = PyLong_AsSsize_t(args[i + 1])) == -1 && PyErr_Occurred())
            return NULL;
    Py_ssize_t n = v[0], at = v[1], width = v[2], pos = v[3];
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    if (width != 2 && width != 4) {
        PyErr_SetString(PyExc_ValueError, "slices(): lengths are 2 or 4 bytes wide");
        return NULL;
    }
    if (n < 0 || at < 0 || pos < 0 || at > len || n > (len - at) / width) {
        PyErr_SetString(PyExc_ValueError, "entries past the image's end");
        return NULL;
    }
    if (width == 4)
        for (Py_ssize_t i = 0; i < n; i++)
            if (get_le(d + at + 4 * i, 4) >> 31)
                Py_RETURN_NONE;   /* an overflow reference: Python reads those */
    PyObject *list = sliced(d, len, at, width, n, &pos);
    if (list == NULL)
        return NULL;
    PyObject *out = Py_BuildValue("(On)", list, pos);
    Py_DECREF(list);
    return out;
}

/* checked_leaf(data, checksum, txn, digest): btree.py's NodeCache.load of a leaf it has
 * not cached, past the read: pages/checksum.py's verify, the parent's (checksum, txn)
 * compared with the image's, and node.py's decode, in one call. At 1M keys a commit
 * loads ~5 such leaves (W3's window), and the Python of those three steps was ~2 µs of
 * each ~7 µs load (a loop loading every leaf at 100k: 6.9 -> 4.9 µs a leaf). Only the
 * common case: a full leaf image of inline values, whole and verified; None for
 * anything else (a branch, a delta, an overflow value, a damaged image), which the
 * Python then verifies and decodes, and names what is wrong. */
PyObject *
checked_leaf(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyBytes_CheckExact(args[0]) || !PyLong_Check(args[1]) ||
            !PyLong_Check(args[2]) || leaf_type == NULL) {
        PyErr_SetString(PyExc_TypeError, "checked_leaf(data, checksum, txn, digest): bytes, "
                        "two ints and the page digest, after bind()");
        return NULL;
    }
    unsigned long long sum = PyLong_AsUnsignedLongLong(args[1]);
    unsigned long long txn = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    if (len < HEADER_SIZE || d[8] != leaf_full_kind || get_le(d, 8) != sum ||
            (Py_ssize_t)get_le(d + 12, 4) != len || get_le(d + 16, 8) != txn)
        Py_RETURN_NONE;
    unsigned long long computed;
    if (image_digest(args[3], is_xxh3(args[3]), d, len, &computed) < 0)
        return NULL;
    Py_ssize_t n = (Py_ssize_t)get_le(d + 10, 2), pos = HEADER_SIZE + LEAF_ENTRY * n;
    if (computed != sum || pos > len)
        Py_RETURN_NONE;
    const unsigned char *kls = d + HEADER_SIZE, *vls = kls + 2 * n;
    Py_ssize_t end = pos;   /* (< 2^48: n, a key and a value length are bounded) */
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long vl = get_le(vls + 4 * i, 4);
        if (vl >> 31)
            Py_RETURN_NONE;   /* an overflow reference: Python reads those */
        end += (Py_ssize_t)(get_le(kls + 2 * i, 2) + vl);
    }
    if (end != len)
        Py_RETURN_NONE;
    PyObject *keys = sliced(d, len, HEADER_SIZE, 2, n, &pos);
    PyObject *vals = keys == NULL ? NULL : sliced(d, len, HEADER_SIZE + 2 * n, 4, n, &pos);
    PyObject *size = vals == NULL ? NULL : PyLong_FromSsize_t(len), *leaf = NULL;
    if (size == NULL)
        goto done;
    PyTypeObject *tp = (PyTypeObject *)leaf_type;
    if ((leaf = tp->tp_alloc(tp, 0)) == NULL)
        goto done;
    /* every slot Leaf.__init__ sets, as decode leaves them */
    SLOT(leaf, leaf_off[F_KEYS]) = Py_NewRef(keys);
    SLOT(leaf, leaf_off[F_VALS]) = Py_NewRef(vals);
    SLOT(leaf, leaf_off[F_SIZE]) = Py_NewRef(size);
    SLOT(leaf, leaf_off[F_BIG]) = Py_NewRef(Py_False);
    SLOT(leaf, leaf_off[F_SIG]) = Py_NewRef(Py_None);
    SLOT(leaf, leaf_off[F_TXN]) = Py_NewRef(args[2]);
    SLOT(leaf, leaf_off[F_BASE]) = Py_NewRef(Py_None);
    SLOT(leaf, leaf_off[F_CHAIN]) = Py_NewRef(Py_None);
    SLOT(leaf, leaf_off[F_UNDO]) = Py_NewRef(Py_None);
done:
    Py_XDECREF(keys);
    Py_XDECREF(vals);
    Py_XDECREF(size);
    return leaf;
}
