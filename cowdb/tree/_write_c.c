/* cowdb.tree._write_c: the write path's node work in C: node images encoded (full, delta,
 * rebased) and sliced back, the put (descent, path copy, overwrite, insert, a leaf's
 * split), the commit's write pass, a bulk load's sorting and leaves. Optional: node.py and
 * btree.py keep the pure-Python paths, and both pass the same tests (tests/test_write_c.py
 * compares them image for image and node for node).
 *
 * delta_image(is_leaf, kind, node, base, bpage, bsum, btxn, depth, txn)
 *     node's image as a delta on base (format 4, see node.py), checksum left zero for
 *     the caller to seal; None when the delta would not be under half the node's full
 *     image (a full image is due); NotImplemented when node and base differ in keys, or
 *     the leaf holds values that are not inline bytes: node.py's Python encodes those.
 * full_image(node, txn)
 *     node's full image (encode_leaf, encode_branch), checksum left zero for the caller
 *     to seal; NotImplemented for a leaf marked big: node.py's Python encodes those.
 * rebase_image(is_leaf, kind, node, image, fpage, txn)
 *     node.py's rebase_delta: at a chain's bound, node's image as a delta of depth 1 on
 *     the full image (bytes, verified) its chain starts from, entries compared by value;
 *     None when a full image is due (other keys, an overflow value, not under half).
 * dirty_kids(kids)
 *     the indexes of a branch's kids that are not ints (dirty nodes to write).
 * write_tree(root, txn, store, nodes, encode, overflows, digest, superseded)
 *     btree.py's Tree._write_node: every dirty node below root written bottom-up, each
 *     a delta (delta_image) where its base allows, else encode(node, base, txn, dirty)'s
 *     (Python: a sealed delta, or None); at its chain's bound a delta on the chain's
 *     full image (rebase_image; the image read straight from the file, or by
 *     store.read; unreadable: none); else its full image (full_image; for a big leaf
 *     encode(node, None, txn, None)'s);
 *     placed as store.place(image) does and cached as nodes.put(page, node) does (see
 *     place_image and cache_node); overflows(leaf) writes a leaf's big values first;
 *     digest(bytes after the first 8) is the checksum (looked up per call, as
 *     checksum.seal does); each written node's base (the clean node it was copied from,
 *     as (node, page, checksum, txn)) is appended to the list superseded. Returns (page,
 *     checksum) of root's image.
 * own_path(tree, key)
 *     btree.py's Tree._descend for a tree that keeps what it replaces (not ``frees``):
 *     the path from the root to key's leaf owned (clean nodes copied, as Leaf.copy and
 *     Branch.copy do, with their bases), as (leaf, [(branch, index), ...]).
 * put_over(tree, key, val)
 *     btree.py's Tree.put of an inline value, in such a tree, over an inline value or as
 *     a new key (True: new, False: overwritten), splitting a full leaf of inline values
 *     whose parent has room; None (Tree.put does it) for a root leaf's split, a split
 *     that reaches the parent, a big leaf's, an overflow value, or a put over one.
 * drop(nodes, bases)
 *     btree.py's NodeCache.drop: the superseded nodes leave the cache, bases is emptied.
 * sorted_items(mapping, max_key)
 *     btree.py's py_sorted_items: a dict's (key, value) pairs in key order, when every key
 *     is bytes of 1 to max_key bytes and every value bytes; None otherwise (the caller's
 *     Python converts and checks them).
 * leaves(items, limit, inline_max)
 *     btree.py's py_leaves, a bulk load's leaves: the (key, value) pairs of the iterable
 *     items (bytes, in key order) cut into Leaf nodes of at most limit bytes each (a
 *     value over inline_max counts as an overflow reference and marks its leaf big), as
 *     a list of (first key, leaf).
 * slices(data, n, at, width, first)
 *     node.py's py_slices, the decoder's part in C: the n byte strings whose little-endian
 *     lengths (width 2 or 4 bytes each) are at at in the bytes data, laid out one after
 *     another from first, as (list, end); None when a 4-byte length carries the overflow
 *     flag (a leaf's overflow reference: node.py's Python reads those); ValueError when
 *     they do not fit in data.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#ifndef _WIN32
#include <unistd.h>   /* pread: a rebase reads its full image straight from the file */
#endif

#define API 21                /* node.py's WRITE_API: bump with any change of behaviour */
#define HEADER_SIZE 24        /* <QBBHIQ: checksum, type, flags, n, length, txn */
#define DELTA_HEAD 28         /* <QQQHH: base page, checksum, txn; depth; run count */
#define LEAF_ENTRY 6          /* a leaf entry's lengths: u16 key, u32 value */
#define OVERFLOW_REF 32       /* an overflow value's reference in its leaf: 4 x u64 */
#define BRANCH_ENTRY 34       /* a branch entry's key length and (page, count, sum, txn) */

/* A node's fields by their slots' offsets (bind() finds them): the commit reads a dozen
 * per node, and PyObject_GetAttr's lookups were ~8% of its instructions. */
enum { F_KEYS, F_VALS, F_KIDS, F_COUNTS, F_SUMS, F_TXNS, F_SIZE, F_BIG, F_SIG, F_TXN, F_BASE,
       F_CHAIN, NF };
static const char *field_names[NF] = {"keys", "vals", "kids", "counts", "sums", "txns", "size",
                                      "big", "sig", "txn", "base", "chain"};
static Py_ssize_t leaf_off[NF], branch_off[NF];   /* slot offsets, -1: not a slot */
static PyObject *leaf_type, *branch_type;   /* set by bind() */

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* Field f of a node (a new reference), by its slot when node is a bound Leaf or Branch,
 * else by name; NULL with AttributeError when it is unset. */
static PyObject *
field(PyObject *node, int f)
{
    PyObject *tp = (PyObject *)Py_TYPE(node);
    Py_ssize_t off = tp == leaf_type ? leaf_off[f] : tp == branch_type ? branch_off[f] : -1;
    if (off < 0)
        return PyObject_GetAttrString(node, field_names[f]);
    PyObject *v = SLOT(node, off);
    if (v == NULL)
        PyErr_Format(PyExc_AttributeError, "a node's %s is unset", field_names[f]);
    return Py_XNewRef(v);
}

/* Set field f of a bound node (by its slot), or of any object by name. */
static int
set_field(PyObject *node, int f, PyObject *v)
{
    PyObject *tp = (PyObject *)Py_TYPE(node);
    Py_ssize_t off = tp == leaf_type ? leaf_off[f] : tp == branch_type ? branch_off[f] : -1;
    if (off < 0)
        return PyObject_SetAttrString(node, field_names[f], v);
    Py_XSETREF(SLOT(node, off), Py_NewRef(v));
    return 0;
}

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

/* The little-endian unsigned integer of ``bytes`` bytes at p. */
static inline unsigned long long
get_le(const unsigned char *p, int bytes)
{
    unsigned long long v = 0;
    for (int b = bytes - 1; b >= 0; b--)
        v = (v << 8) | p[b];
    return v;
}

/* A list attribute of a node (a new reference), or NULL with TypeError. */
static PyObject *
list_of(PyObject *node, int f)
{
    PyObject *v = field(node, f);
    if (v != NULL && !PyList_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "a node's %s is not a list", field_names[f]);
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

/* A branch's counts, sums or txns (field f: an array of u64, node.py's U64) as C memory,
 * the array's buffer held in *view until PyBuffer_Release; n entries expected. NULL with
 * TypeError or ValueError (view then holds nothing to release). */
static unsigned long long *
u64s_of(PyObject *node, int f, Py_buffer *view, Py_ssize_t n, int writable)
{
    PyObject *v = field(node, f);
    if (v == NULL)
        return NULL;
    int r = PyObject_GetBuffer(v, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS |
                                        (writable ? PyBUF_WRITABLE : 0));
    Py_DECREF(v);  /* (the view holds its own reference) */
    if (r < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "a branch's %s is not %s of u64", field_names[f],
                     writable ? "a writable array" : "an array");
        return NULL;
    }
    if (view->itemsize != 8 || view->format == NULL || strcmp(view->format, "Q") != 0) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "a branch's %s is not an array of u64", field_names[f]);
        return NULL;
    }
    if (view->len != 8 * n) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "a branch's lists and arrays differ in length");
        return NULL;
    }
    return (unsigned long long *)view->buf;
}

/* A branch's counts, sums and txns (F_COUNTS..F_TXNS), n entries each, in u[0..2] with
 * their buffers in views[0..2]; -1 with an error (nothing then held). */
static int
refs_of(PyObject *node, Py_buffer views[3], unsigned long long *u[3], Py_ssize_t n,
        int writable)
{
    for (int j = 0; j < 3; j++) {
        if ((u[j] = u64s_of(node, F_COUNTS + j, &views[j], n, writable)) == NULL) {
            while (j--)
                PyBuffer_Release(&views[j]);
            return -1;
        }
    }
    return 0;
}

static void
release_refs(Py_buffer views[3])
{
    for (int j = 0; j < 3; j++)
        PyBuffer_Release(&views[j]);
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

static PyObject *delta_core(int is_leaf, int kind, PyObject *node, PyObject *base,
                            unsigned long long bpage, unsigned long long bsum,
                            unsigned long long btxn, unsigned depth, unsigned long long txn);

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

/* delta_image's work, its arguments converted (write_tree calls it too). */
static PyObject *
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
    for (int w = 0; w < 2; w++) {
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
        for (int w = 0; w < 2; w++) {
            if (refs_of(w ? base : node, views[w], refs[w], PyList_GET_SIZE(fields[w][0]),
                        0) < 0)
                goto done;
            held[w] = 1;
        }
    }
    int same = same_keys(keys, fields[1][0]);
    if (same < 0)
        goto done;
    if (!same)
        goto python;
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
    for (Py_ssize_t i = 0; i < n; i++) {
        int differs = 0;
        if (is_leaf) {  /* values by identity: a copy shares its base's objects */
            differs = PyList_GET_ITEM(fields[0][1], i) != PyList_GET_ITEM(fields[1][1], i);
        }
        else {          /* references by value */
            PyObject *a = PyList_GET_ITEM(fields[0][1], i);
            PyObject *b = PyList_GET_ITEM(fields[1][1], i);
            if (a != b) {  /* (a copy shares its base's objects: the common case) */
                int eq = PyObject_RichCompareBool(a, b, Py_EQ);
                if (eq < 0)
                    goto done;
                differs = !eq;
            }
            for (int j = 0; j < 3 && !differs; j++)
                differs = refs[0][j][i] != refs[1][j][i];
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
        run_add(runs, &s, i);
    }
    out = delta_of_runs(is_leaf, kind, node, keys, fields[0][1], refs[0], n, runs, s, body,
                        bpage, bsum, btxn, depth, txn);
    goto done;
python:
    out = Py_NewRef(Py_NotImplemented);
done:
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
static int leaf_kind, branch_kind;            /* the delta kinds (bind) */
static int leaf_full_kind, branch_full_kind;  /* the full-image kinds (bind) */

/* rebase_image's work: node's image as a delta of depth 1 on ``img``, the full image (of
 * len bytes, verified by the caller) at page fpage that its base's chain starts from,
 * comparing entries by value; checksum left zero. None when a full image is due: img is
 * not a full image of node's kind, node's keys are not img's, a value is not inline
 * bytes, or the delta would not be under half the node (as delta_image's). */
static PyObject *
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

static PyObject *
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
static PyObject *
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

static PyObject *
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

/* ---- write_tree: btree.py's Tree._write_node in C ---------------------------------- */
static Py_ssize_t leaf_chain, branch_chain;

typedef struct {
    PyObject *txn;              /* the txn, a Python int */
    unsigned long long txn_v;
    Py_ssize_t unit;
    PyObject *store, *queue;    /* the PageStore and its _queue (a dict) */
    Py_ssize_t run_start, run_end;   /* the store's _run, held here between Python calls */
    Py_ssize_t grow_from;       /* an image of this many units or more grows the file */
    Py_ssize_t pages_written, bytes_written;   /* added to the store's at the end */
    PyObject *nodes;            /* the NodeCache (a dict) */
    Py_ssize_t cap;             /* its cap */
    PyObject *encode, *overflows, *digest, *superseded;
    int fd;                     /* the store's file (io.fd), -1: read by store.read; */
    int fd_known;               /* ... looked up at the first rebase */
    Py_ssize_t page_size;
} Writer;

static PyObject *s__run, *s_page_count, *s_put, *s_pages_written,
    *s_bytes_written, *s_read;

/* Set the store's _run to the writer's (before Python allocates, and at the end). */
static int
run_back(Writer *w)
{
    PyObject *a = PyLong_FromSsize_t(w->run_start), *b = PyLong_FromSsize_t(w->run_end);
    PyObject *run = a == NULL || b == NULL ? NULL : PyTuple_Pack(2, a, b);
    Py_XDECREF(a);
    Py_XDECREF(b);
    int r = run == NULL ? -1 : PyObject_SetAttr(w->store, s__run, run);
    Py_XDECREF(run);
    return r;
}

/* Read the store's _run into the writer. */
static int
run_in(Writer *w)
{
    PyObject *run = PyObject_GetAttr(w->store, s__run);
    if (run == NULL)
        return -1;
    if (!PyTuple_CheckExact(run) || PyTuple_GET_SIZE(run) != 2) {
        Py_DECREF(run);
        PyErr_SetString(PyExc_TypeError, "write_tree(): the store's _run is not a pair");
        return -1;
    }
    w->run_start = PyLong_AsSsize_t(PyTuple_GET_ITEM(run, 0));
    w->run_end = PyLong_AsSsize_t(PyTuple_GET_ITEM(run, 1));
    Py_DECREF(run);
    return PyErr_Occurred() ? -1 : 0;
}

/* store.place(image) without its Python frames: the page an image of this txn is queued
 * at. Its units come as PageStore.allocate gives them: the next of the txn's run of
 * reused units, else (Python) a new run from the free list or the end of the file. Once
 * an image of n units grew the file, every image of n units or more does, with no search
 * (its units come from the end here), until the free list gains: only when a new run is
 * taken (the last one's rest goes back) or Python allocates (a leaf's overflow values). */
static PyObject *
place_image(Writer *w, PyObject *image)
{
    Py_ssize_t len = PyByteArray_GET_SIZE(image), n = (len + w->unit - 1) / w->unit;
    PyObject *page = NULL;
    if (w->run_start + n <= w->run_end) {
        if ((page = PyLong_FromSsize_t(w->run_start)) == NULL)
            return NULL;
        w->run_start += n;
    }
    else {
        PyObject *count = PyObject_GetAttr(w->store, s_page_count);
        Py_ssize_t c = count == NULL ? -1 : PyLong_AsSsize_t(count);
        Py_XDECREF(count);
        if (c < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "write_tree(): a negative page count");
            return NULL;
        }
        if (n >= w->grow_from) {  /* PageStore._grow */
            PyObject *next = PyLong_FromSsize_t(c + n);
            int r = next == NULL ? -1 : PyObject_SetAttr(w->store, s_page_count, next);
            Py_XDECREF(next);
            if (r < 0 || (page = PyLong_FromSsize_t(c)) == NULL)
                return NULL;
        }
        else {
            if (run_back(w) < 0 ||
                    (page = PyObject_CallMethod(w->store, "allocate", "n", n)) == NULL)
                return NULL;
            if (run_in(w) < 0) {
                Py_DECREF(page);
                return NULL;
            }
            Py_ssize_t at = PyLong_AsSsize_t(page);
            if (at == -1 && PyErr_Occurred()) {
                Py_DECREF(page);
                return NULL;
            }
            if (at != c)  /* a new run: the last one's rest went back to the free list,
                           * where it may join free neighbours into a longer run */
                w->grow_from = PY_SSIZE_T_MAX;
            else if (n < w->grow_from)  /* it grew the file: no run of n units */
                w->grow_from = n;
        }
    }
    if (PyDict_SetItem(w->queue, page, image) < 0) {  /* PageStore.write */
        Py_DECREF(page);
        return NULL;
    }
    w->pages_written++;
    w->bytes_written += len;
    return page;
}

static PyObject *settle(PyObject *self, PyObject *node);

/* nodes.put(page, node) without its Python frame while the cache has room (NodeCache.put
 * evicts when it is full: called then). */
static int
cache_node(Writer *w, PyObject *page, PyObject *node)
{
    if (PyDict_GET_SIZE(w->nodes) >= w->cap) {
        PyObject *r = PyObject_CallMethodObjArgs(w->nodes, s_put, page, node, NULL);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    Py_DECREF(settle(NULL, node));  /* (returns None) */
    return PyDict_SetItem(w->nodes, page, node);
}

/* The checksum of an image of n bytes at p (the digest of its bytes after the first 8),
 * in *sum; -1 with an error set. */
static int
digest_of(Writer *w, const unsigned char *p, Py_ssize_t n, unsigned long long *sum)
{
    PyObject *mv = PyMemoryView_FromMemory((char *)p + 8, n - 8, PyBUF_READ);
    if (mv == NULL)
        return -1;
    PyObject *r = PyObject_CallOneArg(w->digest, mv);
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
            PyErr_SetString(PyExc_TypeError, "write_tree(): the digest is not an int");
        return -1;
    }
    *sum = v;
    return 0;
}

/* An image's checksum: computed into its first 8 bytes (seal), or read from them. */
static int
image_sum(Writer *w, PyObject *image, int seal, unsigned long long *sum)
{
    if (!PyByteArray_CheckExact(image) || PyByteArray_GET_SIZE(image) < HEADER_SIZE) {
        PyErr_SetString(PyExc_TypeError, "write_tree(): an image is not a bytearray with a "
                        "header");
        return -1;
    }
    unsigned char *p = (unsigned char *)PyByteArray_AS_STRING(image);
    if (seal) {
        unsigned long long v;
        if (digest_of(w, p, PyByteArray_GET_SIZE(image), &v) < 0)
            return -1;
        put64(p, v);
    }
    *sum = get_le(p, 8);
    return 0;
}

/* Write a branch's dirty children (bottom-up), their pages, checksums and txn into its
 * kids, sums and txns; the new list of their indexes, or NULL. */
static PyObject *write_node(Writer *w, PyObject *node, unsigned long long *sum);

static PyObject *
write_kids(Writer *w, PyObject *node)
{
    PyObject *kids = list_of(node, F_KIDS), *dirty = NULL;
    Py_ssize_t *at = NULL, m = 0;            /* the dirty kids' indexes, */
    unsigned long long *sums = NULL;         /* ... their images' checksums */
    PyObject **pages = NULL;                 /* ... and first units */
    if (kids == NULL || (dirty = PyList_New(0)) == NULL)
        goto fail;
    Py_ssize_t n = PyList_GET_SIZE(kids);
    at = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    sums = PyMem_Malloc(sizeof(unsigned long long) * (size_t)(n ? n : 1));
    pages = PyMem_Malloc(sizeof(PyObject *) * (size_t)(n ? n : 1));
    if (at == NULL || sums == NULL || pages == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(kids) && i < n; i++) {
        PyObject *kid = PyList_GET_ITEM(kids, i);
        if (PyLong_CheckExact(kid))
            continue;
        PyObject *ix = PyLong_FromSsize_t(i);
        if (ix == NULL || PyList_Append(dirty, ix) < 0) {
            Py_XDECREF(ix);
            goto fail;
        }
        Py_DECREF(ix);
        Py_INCREF(kid);
        PyObject *page = write_node(w, kid, &sums[m]);
        Py_DECREF(kid);
        if (page == NULL)
            goto fail;
        pages[m] = page;
        at[m++] = i;
    }
    /* every child written (each write may run Python): each one's page, checksum and txn
     * set together, through the arrays' buffers taken once */
    if (m) {
        Py_buffer views[3];
        unsigned long long *refs[3];
        if (at[m - 1] >= PyList_GET_SIZE(kids)) {
            PyErr_SetString(PyExc_ValueError, "write_tree(): a branch's lists changed size");
            goto fail;
        }
        if (refs_of(node, views, refs, PyList_GET_SIZE(kids), 1) < 0)
            goto fail;
        for (Py_ssize_t j = 0; j < m; j++) {
            PyList_SetItem(kids, at[j], pages[j]);  /* (steals the reference) */
            refs[1][at[j]] = sums[j];
            refs[2][at[j]] = w->txn_v;
        }
        m = 0;  /* (the pages are the list's now) */
        release_refs(views);
    }
    PyMem_Free(at);
    PyMem_Free(sums);
    PyMem_Free(pages);
    Py_DECREF(kids);
    return dirty;
fail:
    for (Py_ssize_t j = 0; j < m; j++)
        Py_DECREF(pages[j]);
    PyMem_Free(at);
    PyMem_Free(sums);
    PyMem_Free(pages);
    Py_XDECREF(kids);
    Py_XDECREF(dirty);
    return NULL;
}

/* (a, n, c) as a tuple (Py_BuildValue parses its format on every call: ~3% of a
 * commit's instructions went to that). */
static PyObject *
triple(PyObject *a, Py_ssize_t n, PyObject *c)
{
    PyObject *t = PyTuple_New(3), *v = PyLong_FromSsize_t(n);
    if (t == NULL || v == NULL) {
        Py_XDECREF(t);
        Py_XDECREF(v);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, Py_NewRef(a));
    PyTuple_SET_ITEM(t, 1, v);
    PyTuple_SET_ITEM(t, 2, Py_NewRef(c));
    return t;
}

/* A written delta's chain: its own image, then its base's ((page, units, txn), ...). */
static PyObject *
delta_chain(Writer *w, PyObject *page, Py_ssize_t units, PyObject *base)
{
    PyObject *bnode = PyTuple_GET_ITEM(base, 0), *rest = field(bnode, F_CHAIN), *own = NULL;
    if (rest == NULL)
        return NULL;
    if (rest == Py_None) {  /* the base is a full image: its chain is itself */
        Py_DECREF(rest);
        PyObject *size = field(bnode, F_SIZE), *btxn = NULL, *one = NULL;
        Py_ssize_t n = size == NULL ? -1 : PyLong_AsSsize_t(size);
        Py_XDECREF(size);
        if ((n == -1 && PyErr_Occurred()) || (btxn = field(bnode, F_TXN)) == NULL)
            return NULL;
        one = triple(PyTuple_GET_ITEM(base, 1), (n + w->unit - 1) / w->unit, btxn);
        Py_DECREF(btxn);
        if (one == NULL)
            return NULL;
        rest = PyTuple_Pack(1, one);
        Py_DECREF(one);
        if (rest == NULL)
            return NULL;
    }
    if (!PyTuple_CheckExact(rest)) {
        Py_DECREF(rest);
        PyErr_SetString(PyExc_TypeError, "write_tree(): a node's chain is not a tuple");
        return NULL;
    }
    Py_ssize_t m = PyTuple_GET_SIZE(rest);
    PyObject *chain = PyTuple_New(m + 1);
    if (chain == NULL || (own = triple(page, units, w->txn)) == NULL) {
        Py_XDECREF(chain);
        Py_DECREF(rest);
        return NULL;
    }
    PyTuple_SET_ITEM(chain, 0, own);
    for (Py_ssize_t i = 0; i < m; i++)
        PyTuple_SET_ITEM(chain, i + 1, Py_NewRef(PyTuple_GET_ITEM(rest, i)));
    Py_DECREF(rest);
    return chain;
}

/* 1 when the error set is what store.read raises for a page it cannot give (Corruption,
 * ReadFailed: cowdb.errors), 0 when it is another, -1 when those cannot be looked up. */
static int
unreadable_error(void)
{
    static PyObject *kinds = NULL;   /* (Corruption, ReadFailed), looked up once */
    if (kinds == NULL) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *mod = PyImport_ImportModule("cowdb.errors");
        PyObject *a = mod == NULL ? NULL : PyObject_GetAttrString(mod, "Corruption");
        PyObject *b = mod == NULL ? NULL : PyObject_GetAttrString(mod, "ReadFailed");
        if (a != NULL && b != NULL)
            kinds = PyTuple_Pack(2, a, b);
        Py_XDECREF(mod);
        Py_XDECREF(a);
        Py_XDECREF(b);
        PyErr_Clear();
        PyErr_Restore(et, ev, tb);
        if (kinds == NULL)
            return -1;
    }
    return PyErr_ExceptionMatches(kinds);
}

/* The verified image at page (len bytes) read straight from the store's file into a new
 * PyMem buffer, or NULL (no error set) when it cannot be: the store's io has no file
 * (memory, an object store, a test's faulty device), the read fails or comes short, or
 * the image does not verify. Callers then read it by store.read, which is slower (a
 * Python call, ~20,000 instructions) but raises what a failed read raises. */
static unsigned char *
read_direct(Writer *w, unsigned long long page, Py_ssize_t *len)
{
#ifdef _WIN32
    return NULL;
#else
    if (!w->fd_known) {
        w->fd_known = 1;
        w->fd = -1;
        PyObject *io = PyObject_GetAttrString(w->store, "io");
        PyObject *fd = io == NULL ? NULL : PyObject_GetAttrString(io, "fd");
        PyObject *ps = PyObject_GetAttrString(w->store, "page_size");
        if (fd != NULL && PyLong_CheckExact(fd) && ps != NULL && PyLong_CheckExact(ps)) {
            long v = PyLong_AsLong(fd);
            Py_ssize_t n = PyLong_AsSsize_t(ps);
            if (v >= 0 && v <= 0x7FFFFFFF && n >= HEADER_SIZE && !PyErr_Occurred()) {
                w->fd = (int)v;
                w->page_size = n;
            }
        }
        PyErr_Clear();
        Py_XDECREF(io);
        Py_XDECREF(fd);
        Py_XDECREF(ps);
    }
    if (w->fd < 0 || page > (unsigned long long)PY_SSIZE_T_MAX / (unsigned long long)w->unit)
        return NULL;
    unsigned char *buf = PyMem_Malloc((size_t)w->page_size);
    if (buf == NULL)
        return NULL;
    ssize_t got = pread(w->fd, buf, (size_t)w->page_size, (off_t)(page * (unsigned long long)w->unit));
    Py_ssize_t n = got >= HEADER_SIZE ? (Py_ssize_t)get_le(buf + 12, 4) : 0;
    if (n < HEADER_SIZE || n > got) {
        PyMem_Free(buf);
        return NULL;
    }
    unsigned long long sum;
    int ok = digest_of(w, buf, n, &sum) == 0 && sum == get_le(buf, 8);
    PyErr_Clear();
    if (!ok) {
        PyMem_Free(buf);
        return NULL;
    }
    *len = n;
    return buf;
#endif
}

/* At a chain's bound: node's image as a delta on the full image its base bnode's chain
 * starts from (rebase_core; the image read from the file and verified, by read_direct or
 * store.read), or None (a full image is due); *bottom gets that image's (page, units,
 * txn) when a delta is returned. NULL on error. */
static PyObject *
rebase_at_bound(Writer *w, PyObject *node, int is_leaf, PyObject *bnode, PyObject **bottom)
{
    PyObject *bchain = field(bnode, F_CHAIN), *data = NULL, *out = NULL;
    unsigned char *buf = NULL;
    if (bchain == NULL)
        return NULL;
    if (!PyTuple_CheckExact(bchain) || PyTuple_GET_SIZE(bchain) < 2) {
        Py_DECREF(bchain);
        PyErr_SetString(PyExc_TypeError, "write_tree(): a delta's chain is not a tuple");
        return NULL;
    }
    PyObject *last = PyTuple_GET_ITEM(bchain, PyTuple_GET_SIZE(bchain) - 1);
    if (!PyTuple_CheckExact(last) || PyTuple_GET_SIZE(last) != 3) {
        Py_DECREF(bchain);
        PyErr_SetString(PyExc_TypeError, "write_tree(): a chain's link is not (page, units, "
                        "txn)");
        return NULL;
    }
    unsigned long long fpage = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(last, 0));
    if (PyErr_Occurred())
        goto done;
    Py_ssize_t len = 0;
    const unsigned char *img = buf = read_direct(w, fpage, &len);
    if (img == NULL) {
        data = PyObject_CallMethodOneArg(w->store, s_read, PyTuple_GET_ITEM(last, 0));
        if (data == NULL) {  /* damaged or unreadable: a full image, as without rebasing */
            if (unreadable_error() > 0) {
                PyErr_Clear();
                out = Py_NewRef(Py_None);
            }
            goto done;
        }
        if (!PyBytes_CheckExact(data)) {
            PyErr_SetString(PyExc_TypeError, "write_tree(): store.read() did not return bytes");
            goto done;
        }
        img = (const unsigned char *)PyBytes_AS_STRING(data);
        len = PyBytes_GET_SIZE(data);
    }
    out = rebase_core(is_leaf, is_leaf ? leaf_kind : branch_kind, node, img, len, fpage,
                      w->txn_v);
    if (out != NULL && out != Py_None)
        *bottom = Py_NewRef(last);
done:
    PyMem_Free(buf);
    Py_XDECREF(data);
    Py_DECREF(bchain);
    return out;
}

/* Write node (its dirty children first); its image's first unit (a new reference) and
 * its checksum in *sum, or NULL. */
static PyObject *
write_node(Writer *w, PyObject *node, unsigned long long *sum_out)
{
    int is_leaf = (PyObject *)Py_TYPE(node) == leaf_type;
    if (!is_leaf && (PyObject *)Py_TYPE(node) != branch_type) {
        PyErr_SetString(PyExc_TypeError, "write_tree(): not a tree node");
        return NULL;
    }
    PyObject *dirty = NULL, *base = NULL, *image = NULL, *page = NULL, *chain = NULL;
    PyObject *bottom = NULL;   /* a rebased delta's base: the (page, units, txn) it is on */
    PyObject *out = NULL;
    unsigned long long sum;
    if (!is_leaf) {
        if ((dirty = write_kids(w, node)) == NULL)
            return NULL;
    }
    else {
        PyObject *big = field(node, F_BIG);
        int b = big == NULL ? -1 : PyObject_IsTrue(big);
        Py_XDECREF(big);
        if (b < 0)
            return NULL;
        if (b) {  /* (Python allocates their units: it gets the run, then gives it back) */
            PyObject *r = run_back(w) < 0 ? NULL : PyObject_CallOneArg(w->overflows, node);
            if (r == NULL)
                return NULL;
            Py_DECREF(r);
            if (run_in(w) < 0)
                return NULL;
            w->grow_from = PY_SSIZE_T_MAX;  /* (as after a new run: see place_image) */
        }
    }
    if ((base = field(node, F_BASE)) == NULL)
        goto done;
    if (base != Py_None) {
        if (set_field(node, F_BASE, Py_None) < 0)
            goto done;
        if (!PyTuple_CheckExact(base) || PyTuple_GET_SIZE(base) != 4) {
            PyErr_SetString(PyExc_TypeError, "write_tree(): a node's base is not "
                            "(node, page, checksum, txn)");
            goto done;
        }
        if (PyList_Append(w->superseded, base) < 0)
            goto done;
        PyObject *bnode = PyTuple_GET_ITEM(base, 0);
        if (Py_TYPE(bnode) == Py_TYPE(node)) {
            PyObject *bchain = field(bnode, F_CHAIN);
            if (bchain == NULL)
                goto done;
            Py_ssize_t d = bchain == Py_None ? 1 : PyObject_Length(bchain);
            Py_DECREF(bchain);
            if (d < 0)
                goto done;
            if (d <= (is_leaf ? leaf_chain : branch_chain)) {
                unsigned long long bp = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(base, 1));
                unsigned long long bs = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(base, 2));
                unsigned long long bt = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(base, 3));
                if (PyErr_Occurred())
                    goto done;
                image = delta_core(is_leaf, is_leaf ? leaf_kind : branch_kind, node, bnode, bp,
                                   bs, bt, (unsigned)d, w->txn_v);
                if (image == NULL)
                    goto done;
                if (image == Py_NotImplemented) {  /* Python's (sealed), or None */
                    Py_DECREF(image);
                    image = PyObject_CallFunctionObjArgs(w->encode, node, base, w->txn,
                                                         dirty ? dirty : Py_None, NULL);
                    if (image == NULL || (image != Py_None && image_sum(w, image, 0, &sum) < 0))
                        goto done;
                }
                else if (image != Py_None && image_sum(w, image, 1, &sum) < 0)
                    goto done;
            }
            else {  /* the chain is at its bound: a delta on the full image it starts from */
                if ((image = rebase_at_bound(w, node, is_leaf, bnode, &bottom)) == NULL)
                    goto done;
                if (image != Py_None && image_sum(w, image, 1, &sum) < 0)
                    goto done;
            }
        }
    }
    if (image == NULL || image == Py_None) {  /* a full image */
        Py_XDECREF(image);
        Py_SETREF(base, Py_NewRef(Py_None));
        if ((image = full_core(node, is_leaf, w->txn_v)) == NULL)
            goto done;
        if (image != Py_NotImplemented) {
            if (image_sum(w, image, 1, &sum) < 0)
                goto done;
        }
        else {  /* a big leaf: Python's (sealed) */
            Py_DECREF(image);
            image = PyObject_CallFunctionObjArgs(w->encode, node, Py_None, w->txn, Py_None,
                                                 NULL);
            if (image == NULL || image_sum(w, image, 0, &sum) < 0)
                goto done;
        }
    }
    Py_ssize_t units = (PyByteArray_GET_SIZE(image) + w->unit - 1) / w->unit;
    if ((page = place_image(w, image)) == NULL)
        goto done;
    if (set_field(node, F_TXN, w->txn) < 0)
        goto done;
    if (base == Py_None)
        chain = Py_NewRef(Py_None);
    else if (bottom != NULL) {  /* a rebased delta: itself, then the full image */
        PyObject *own = triple(page, units, w->txn);
        chain = own == NULL ? NULL : PyTuple_Pack(2, own, bottom);
        Py_XDECREF(own);
    }
    else
        chain = delta_chain(w, page, units, base);
    if (chain == NULL || set_field(node, F_CHAIN, chain) < 0)
        goto done;
    if (cache_node(w, page, node) < 0)
        goto done;
    *sum_out = sum;
    out = Py_NewRef(page);
done:
    Py_XDECREF(dirty);
    Py_XDECREF(base);
    Py_XDECREF(image);
    Py_XDECREF(page);
    Py_XDECREF(chain);
    Py_XDECREF(bottom);
    return out;
}

static PyObject *
write_tree(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 || !PyList_CheckExact(args[7]) || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "write_tree(root, txn, store, nodes, encode, "
                        "overflows, digest, superseded): nodes is a dict, superseded a list");
        return NULL;
    }
    if (leaf_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "write_tree(): bind() was not called");
        return NULL;
    }
    Writer w = {.txn = args[1], .txn_v = PyLong_AsUnsignedLongLong(args[1]),
                .store = args[2], .grow_from = PY_SSIZE_T_MAX, .nodes = args[3],
                .encode = args[4], .overflows = args[5], .digest = args[6],
                .superseded = args[7]};
    if (PyErr_Occurred())
        return NULL;
    PyObject *v = PyObject_GetAttrString(w.store, "unit");
    w.unit = v == NULL ? -1 : PyLong_AsSsize_t(v);
    Py_XDECREF(v);
    if ((v = PyObject_GetAttrString(w.nodes, "cap")) == NULL)
        return NULL;
    w.cap = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    if (PyErr_Occurred())
        return NULL;
    if (w.unit <= 0) {
        PyErr_SetString(PyExc_ValueError, "write_tree(): the unit must be positive");
        return NULL;
    }
    if ((w.queue = PyObject_GetAttrString(w.store, "_queue")) == NULL)
        return NULL;
    if (!PyDict_CheckExact(w.queue)) {
        Py_DECREF(w.queue);
        PyErr_SetString(PyExc_TypeError, "write_tree(): the store's queue is not a dict");
        return NULL;
    }
    if (run_in(&w) < 0) {
        Py_DECREF(w.queue);
        return NULL;
    }
    unsigned long long sum;
    PyObject *page = write_node(&w, args[0], &sum), *out = NULL;
    if (page != NULL) {
        PyObject *s = PyLong_FromUnsignedLongLong(sum);
        out = s == NULL ? NULL : PyTuple_Pack(2, page, s);
        Py_XDECREF(s);
        Py_DECREF(page);
    }
    /* the store's run and counters as the Python's would be, on an error too (the txn
     * then rolls back) */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    int ok = run_back(&w) == 0;
    PyObject *names[2] = {s_pages_written, s_bytes_written};
    Py_ssize_t adds[2] = {w.pages_written, w.bytes_written};
    for (int i = 0; i < 2 && ok; i++) {
        PyObject *was = PyObject_GetAttr(w.store, names[i]), *add = PyLong_FromSsize_t(adds[i]);
        PyObject *now = was == NULL || add == NULL ? NULL : PyNumber_Add(was, add);
        ok = now != NULL && PyObject_SetAttr(w.store, names[i], now) == 0;
        Py_XDECREF(was);
        Py_XDECREF(add);
        Py_XDECREF(now);
    }
    Py_DECREF(w.queue);
    if (et != NULL) {  /* the first error is the one to raise */
        PyErr_Restore(et, ev, tb);
        Py_XDECREF(out);
        return NULL;
    }
    if (!ok)
        Py_CLEAR(out);
    return out;
}

/* ---- own_path: btree.py's Tree._descend in C ----------------------------------------- */
static PyObject *s__root, *s__dirty, *s_frees, *s_deltas, *s_nodes, *s__own_root, *zero;
static PyObject *s_inline_max, *s_page_size, *s_mod, *s_count, *s_insert, *one;

/* The offset of the slot a class attribute describes, or -1 when it is not an object
 * slot (or absent): what lets a node's and a Tree's fields be read without a lookup. */
static Py_ssize_t
slot_offset(PyObject *descr)
{
    if (descr != NULL && Py_TYPE(descr) == &PyMemberDescr_Type &&
            ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX)
        return ((PyMemberDescrObject *)descr)->d_member->offset;
    return -1;
}

static void
slot_offsets(PyTypeObject *cls, Py_ssize_t *off)
{
    for (int f = 0; f < NF; f++)
        off[f] = slot_offset(PyDict_GetItemString(cls->tp_dict, field_names[f]));
}

/* A dirty copy of a clean node: node.py's Leaf.copy / Branch.copy without their Python
 * frames (its lists and a branch's arrays sliced whole, sig/base/chain None, txn 0). */
static PyObject *
copy_node(PyObject *node)
{
    PyTypeObject *tp = Py_TYPE(node);
    const Py_ssize_t *off = (PyObject *)tp == leaf_type ? leaf_off : branch_off;
    static const int leaf_lists[] = {F_KEYS, F_VALS, -1};
    static const int branch_lists[] = {F_KEYS, F_KIDS, F_COUNTS, F_SUMS, F_TXNS, -1};
    const int *lists = (PyObject *)tp == leaf_type ? leaf_lists : branch_lists;
    PyObject *copy = tp->tp_alloc(tp, 0);
    if (copy == NULL)
        return NULL;
    for (int j = 0; lists[j] >= 0; j++) {
        PyObject *v = SLOT(node, off[lists[j]]);
        int is_list = v != NULL && PyList_CheckExact(v);
        if (v == NULL || (!is_list && lists[j] < F_COUNTS)) {
            Py_DECREF(copy);
            PyErr_Format(PyExc_TypeError, "a node's %s is not a list", field_names[lists[j]]);
            return NULL;
        }
        /* (a branch's counts, sums and txns: arrays, which u64s_of checks where read) */
        PyObject *c = is_list ? PyList_GetSlice(v, 0, PyList_GET_SIZE(v))
                              : PySequence_GetSlice(v, 0, PY_SSIZE_T_MAX);
        if ((SLOT(copy, off[lists[j]]) = c) == NULL) {
            Py_DECREF(copy);
            return NULL;
        }
    }
    PyObject *size = SLOT(node, off[F_SIZE]);
    if (size == NULL) {
        Py_DECREF(copy);
        PyErr_SetString(PyExc_TypeError, "a node has no size");
        return NULL;
    }
    SLOT(copy, off[F_SIZE]) = Py_NewRef(size);
    if ((PyObject *)tp == leaf_type) {
        PyObject *big = SLOT(node, off[F_BIG]);
        SLOT(copy, off[F_BIG]) = Py_NewRef(big ? big : Py_False);
    }
    SLOT(copy, off[F_SIG]) = Py_NewRef(Py_None);
    SLOT(copy, off[F_TXN]) = Py_NewRef(zero);
    SLOT(copy, off[F_BASE]) = Py_NewRef(Py_None);
    SLOT(copy, off[F_CHAIN]) = Py_NewRef(Py_None);
    return copy;
}

/* bisect_right(keys, key) over a list of bytes. */
static Py_ssize_t
bisect_right(PyObject *keys, const char *q, Py_ssize_t ql)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(keys);
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        PyObject *k = PyList_GET_ITEM(keys, mid);
        Py_ssize_t kl = PyBytes_GET_SIZE(k);
        int c = memcmp(q, PyBytes_AS_STRING(k), ql < kl ? ql : kl);
        if (c < 0 || (c == 0 && ql < kl))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The dirty copy of a branch's i-th kid (copied now if it is a page). */
static PyObject *
own_kid(PyObject *branch, Py_ssize_t i, PyObject *nodes, int deltas)
{
    PyObject *kids = SLOT(branch, branch_off[F_KIDS]);
    PyObject *kid = PyList_GET_ITEM(kids, i);
    if (!PyLong_CheckExact(kid))
        return Py_NewRef(kid);
    /* its checksum and txn, as ints (the base tuple and a load take them so): one item
     * of each array, not their buffers */
    PyObject *sums = SLOT(branch, branch_off[F_SUMS]), *txns = SLOT(branch, branch_off[F_TXNS]);
    if (sums == NULL || txns == NULL) {
        PyErr_SetString(PyExc_TypeError, "own_path(): a branch's sums or txns are unset");
        return NULL;
    }
    PyObject *s = PySequence_GetItem(sums, i), *t = PySequence_GetItem(txns, i);
    PyObject *node = NULL, *copy = NULL;
    unsigned long long tv = 0;
    Py_INCREF(kid);
    if (s == NULL || t == NULL || !PyLong_Check(s) || !PyLong_Check(t) ||
            ((tv = PyLong_AsUnsignedLongLong(t)) == (unsigned long long)-1 && PyErr_Occurred())) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "own_path(): a branch's sums or txns are not "
                            "ints");
        goto done;
    }
    node = PyDict_GetItemWithError(nodes, kid);  /* borrowed */
    int hit = 0;
    if (node != NULL && (Py_TYPE(node) == (PyTypeObject *)leaf_type ||
                         Py_TYPE(node) == (PyTypeObject *)branch_type)) {
        PyObject *ntxn = SLOT(node, Py_TYPE(node) == (PyTypeObject *)leaf_type ?
                              leaf_off[F_TXN] : branch_off[F_TXN]);
        if (ntxn != NULL && PyLong_CheckExact(ntxn)) {
            unsigned long long nv = PyLong_AsUnsignedLongLong(ntxn);
            if (nv == (unsigned long long)-1 && PyErr_Occurred())
                PyErr_Clear();  /* (not a txn: not a hit) */
            else
                hit = nv == tv;
        }
    }
    else if (node == NULL && PyErr_Occurred())
        goto done;
    if (hit)
        Py_INCREF(node);
    else if ((node = PyObject_CallMethod(nodes, "load", "OOO", kid, s, t)) == NULL)
        goto done;
    if ((PyObject *)Py_TYPE(node) != leaf_type && (PyObject *)Py_TYPE(node) != branch_type) {
        PyErr_SetString(PyExc_TypeError, "own_path(): the node cache holds a non-node");
        Py_DECREF(node);
        goto done;
    }
    if ((copy = copy_node(node)) == NULL) {
        Py_DECREF(node);
        goto done;
    }
    if (deltas) {
        PyObject *base = PyTuple_Pack(4, node, kid, s, t);
        if (base == NULL) {
            Py_CLEAR(copy);
            Py_DECREF(node);
            goto done;
        }
        Py_ssize_t bo = Py_TYPE(copy) == (PyTypeObject *)leaf_type ? leaf_off[F_BASE]
                                                                    : branch_off[F_BASE];
        Py_SETREF(SLOT(copy, bo), base);
    }
    Py_DECREF(node);
    kids = SLOT(branch, branch_off[F_KIDS]);  /* (load ran Python: check again) */
    if (kids == NULL || !PyList_CheckExact(kids) || PyList_GET_SIZE(kids) <= i) {
        Py_CLEAR(copy);
        PyErr_SetString(PyExc_RuntimeError, "own_path(): a branch changed under it");
        goto done;
    }
    PyList_SetItem(kids, i, Py_NewRef(copy));
done:
    Py_DECREF(kid);
    Py_XDECREF(s);
    Py_XDECREF(t);
    return copy;
}

static PyObject *own_path_of(PyObject *tree, PyObject *key, int with_path);

static PyObject *
own_path(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "own_path(tree, key): key is bytes");
        return NULL;
    }
    if (leaf_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "own_path(): bind() was not called");
        return NULL;
    }
    return own_path_of(args[0], args[1], 1);
}

/* A Tree's attributes by their slots' offsets, as a node's (a put reads eight of them,
 * and PyObject_GetAttr on a slotted class is a type lookup each: ~2% of a commit's
 * instructions). The offsets are learnt for the first Tree type seen, and again if
 * another type comes (a subclass); an attribute that is not a slot is read by name. */
enum { T_FREES, T_DELTAS, T_DIRTY, T_ROOT, T_NODES, T_INLINE_MAX, T_PAGE_SIZE, T_MOD, T_COUNT,
       NT };
static PyObject **tree_names[NT] = {&s_frees, &s_deltas, &s__dirty, &s__root, &s_nodes,
                                    &s_inline_max, &s_page_size, &s_mod, &s_count};
static PyTypeObject *tree_type;   /* the type tree_off was learnt for (a strong reference) */
static Py_ssize_t tree_off[NT];

static void
learn_tree(PyTypeObject *tp)
{
    for (int a = 0; a < NT; a++) {
        PyObject *d = PyObject_GetAttr((PyObject *)tp, *tree_names[a]);  /* (the MRO's) */
        if (d == NULL)
            PyErr_Clear();  /* (an instance attribute, or none: read by name) */
        tree_off[a] = slot_offset(d);
        Py_XDECREF(d);
    }
    Py_XSETREF(tree_type, (PyTypeObject *)Py_NewRef(tp));
}

/* Attribute a of the tree (a new reference), or NULL with an error. */
static PyObject *
tree_attr(PyObject *tree, int a)
{
    if (Py_TYPE(tree) != tree_type)
        learn_tree(Py_TYPE(tree));
    if (tree_off[a] < 0)
        return PyObject_GetAttr(tree, *tree_names[a]);
    PyObject *v = SLOT(tree, tree_off[a]);
    if (v == NULL)
        PyErr_Format(PyExc_AttributeError, "the tree's %U is unset", *tree_names[a]);
    return Py_XNewRef(v);
}

static int
tree_set(PyObject *tree, int a, PyObject *v)
{
    if (Py_TYPE(tree) != tree_type)
        learn_tree(Py_TYPE(tree));
    if (tree_off[a] < 0)
        return PyObject_SetAttr(tree, *tree_names[a], v);
    Py_XSETREF(SLOT(tree, tree_off[a]), Py_NewRef(v));
    return 0;
}

/* An int attribute of the tree as a Py_ssize_t, or -1 with an error set. */
static Py_ssize_t
tree_int(PyObject *tree, int a)
{
    PyObject *v = tree_attr(tree, a);
    if (v == NULL)
        return -1;
    Py_ssize_t n = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    return n;
}

/* A bool attribute of the tree: 1, 0, or -1 with an error set. */
static int
tree_bool(PyObject *tree, int a)
{
    PyObject *v = tree_attr(tree, a);
    int b = v == NULL ? -1 : PyObject_IsTrue(v);
    Py_XDECREF(v);
    return b;
}

/* put_over(tree, key, val): Tree.put's common case in C, an inline value over an inline
 * value that leaves the leaf within its page: False (the key was there). None: not that
 * case (the path may be owned), Tree.put does the put. */
/* An int attribute of the tree (mod, count) plus one: a new reference, or NULL. */
static PyObject *
tree_plus_one(PyObject *tree, int a)
{
    PyObject *v = tree_attr(tree, a);
    PyObject *v1 = v == NULL ? NULL : PyNumber_Add(v, one);
    Py_XDECREF(v);
    return v1;
}

#define MAX_DEPTH 64   /* branch levels put_new counts on (a tree of 2**64 keys has < 64) */

/* The counts arrays of the path's branches from *held up to ``upto``, held writable in
 * views (each checked as long as its branch's keys); -1 with an error if one is not. */
static int
hold_counts(PyObject *path, Py_ssize_t upto, Py_buffer *views, Py_ssize_t *held)
{
    for (; *held < upto; (*held)++) {
        PyObject *b = PyTuple_GET_ITEM(PyList_GET_ITEM(path, *held), 0);
        if (u64s_of(b, F_COUNTS, &views[*held], PyList_GET_SIZE(SLOT(b, branch_off[F_KEYS])),
                    1) == NULL)
            return -1;
    }
    return 0;
}

/* One key more under each of the path's first ``upto`` steps (their counts held). */
static void
bump_counts(PyObject *path, Py_buffer *views, Py_ssize_t upto)
{
    for (Py_ssize_t j = 0; j < upto; j++) {   /* (0 <= index < len: own_path_of's bisect) */
        Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(PyList_GET_ITEM(path, j), 1));
        ((unsigned long long *)views[j].buf)[i] += 1;
    }
}

/* put_new's key into a full leaf: Tree.put's insert and _split_up for a leaf of inline
 * values whose parent has room for one more entry (a put loop splits a leaf every ~15
 * puts): the entries with the new one cut where _split cuts them (half the bytes, by
 * _cut's rule), the right half a new leaf after the left in the parent, the counts as
 * _insert_kid leaves them. None (nothing changed) for a root leaf or a full parent:
 * Tree.put's Python splits those (and splits up). Allocations run first; the parent's
 * inserts are undone if one fails. */
static PyObject *
put_split(PyObject *tree, PyObject *leaf, PyObject *key, PyObject *val, Py_ssize_t at,
          Py_ssize_t n, Py_ssize_t page_size, PyObject *path)
{
    Py_ssize_t depth = PyList_GET_SIZE(path);
    if (depth < 1)
        Py_RETURN_NONE;
    PyObject *keys = SLOT(leaf, leaf_off[F_KEYS]), *vals = SLOT(leaf, leaf_off[F_VALS]);
    Py_ssize_t nk = PyList_GET_SIZE(keys) + 1;   /* entries with the new one */
    PyObject *ek = PyList_GetSlice(keys, 0, nk - 1), *ev = PyList_GetSlice(vals, 0, nk - 1);
    PyObject *out = NULL, *lk = NULL, *lv = NULL, *rk = NULL, *rv = NULL, *right = NULL;
    PyObject *lsize = NULL, *psize = NULL, *count = NULL, *mod = NULL;
    Py_buffer views[MAX_DEPTH];
    Py_ssize_t held = 0;
    int inserted = 0;   /* the parent's lists and arrays changed so far */
    if (ek == NULL || ev == NULL || PyList_Insert(ek, at, key) < 0 ||
            PyList_Insert(ev, at, val) < 0)
        goto done;
    /* _cut: the leading entries that reach half the bytes without passing a page */
    Py_ssize_t target = (n - HEADER_SIZE) / 2, limit = page_size - HEADER_SIZE, acc = 0;
    Py_ssize_t m = nk - 1;
    for (Py_ssize_t j = 0; j < nk - 1; j++) {
        PyObject *k = PyList_GET_ITEM(ek, j), *v = PyList_GET_ITEM(ev, j);
        if (!PyBytes_CheckExact(k) || !PyBytes_CheckExact(v)) {
            out = Py_NewRef(Py_None);   /* (not big, yet not bytes: Python decides) */
            goto done;
        }
        Py_ssize_t size = LEAF_ENTRY + PyBytes_GET_SIZE(k) + PyBytes_GET_SIZE(v);
        if (j && acc + size > limit) {
            m = j;
            break;
        }
        acc += size;
        if (acc >= target) {
            m = j + 1;
            break;
        }
    }
    PyObject *step = PyList_GET_ITEM(path, depth - 1), *parent = PyTuple_GET_ITEM(step, 0);
    Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(step, 1));
    PyObject *sep = PyList_GET_ITEM(ek, m);
    PyObject *pkeys = SLOT(parent, branch_off[F_KEYS]), *pkids = SLOT(parent, branch_off[F_KIDS]);
    PyObject *parr[3] = {SLOT(parent, branch_off[F_COUNTS]), SLOT(parent, branch_off[F_SUMS]),
                         SLOT(parent, branch_off[F_TXNS])};
    Py_ssize_t ps = PyLong_AsSsize_t(SLOT(parent, branch_off[F_SIZE]));
    if (ps == -1 && PyErr_Occurred())
        goto done;
    ps += BRANCH_ENTRY + PyBytes_GET_SIZE(sep);
    if (ps > page_size) {
        out = Py_NewRef(Py_None);   /* the parent splits too: Python's _split_up */
        goto done;
    }
    /* every allocation and check before the first change */
    if ((lk = PyList_GetSlice(ek, 0, m)) == NULL || (lv = PyList_GetSlice(ev, 0, m)) == NULL ||
            (rk = PyList_GetSlice(ek, m, nk)) == NULL || (rv = PyList_GetSlice(ev, m, nk)) == NULL ||
            (right = PyObject_CallFunction(leaf_type, "OOnO", rk, rv, n - acc, Py_False)) == NULL ||
            (lsize = PyLong_FromSsize_t(HEADER_SIZE + acc)) == NULL ||
            (psize = PyLong_FromSsize_t(ps)) == NULL ||
            (count = tree_plus_one(tree, T_COUNT)) == NULL ||
            (mod = tree_plus_one(tree, T_MOD)) == NULL)
        goto done;
    if (hold_counts(path, depth, views, &held) < 0)
        goto done;
    for (int a = 0; a < 3; a++)
        if (parr[a] == NULL || !PyObject_HasAttr(parr[a], s_insert)) {
            PyErr_SetString(PyExc_TypeError, "put_over(): a branch's arrays cannot grow");
            goto done;
        }
    PyBuffer_Release(&views[--held]);   /* (an array with a view held cannot grow) */
    /* the parent: the separator and the right leaf after entry i, its count, sum 0, txn 0 */
    if (PyList_Insert(pkeys, i + 1, sep) < 0)
        goto done;
    inserted = 1;
    if (PyList_Insert(pkids, i + 1, right) < 0)
        goto done;
    inserted = 2;
    for (int a = 0; a < 3; a++) {
        PyObject *got = PyObject_CallMethod(parr[a], "insert", "nn", i + 1,
                                            a == 0 ? nk - m : (Py_ssize_t)0);
        if (got == NULL)
            goto done;
        Py_DECREF(got);
        inserted = 3 + a;
    }
    if (hold_counts(path, depth, views, &held) < 0)   /* (the parent's again, grown) */
        goto done;
    inserted = 0;   /* from here nothing fails */
    ((unsigned long long *)views[depth - 1].buf)[i] = (unsigned long long)m;
    bump_counts(path, views, depth - 1);
    Py_SETREF(SLOT(leaf, leaf_off[F_KEYS]), lk);
    Py_SETREF(SLOT(leaf, leaf_off[F_VALS]), lv);
    Py_SETREF(SLOT(leaf, leaf_off[F_SIZE]), lsize);
    Py_SETREF(SLOT(parent, branch_off[F_SIZE]), psize);
    lk = lv = lsize = psize = NULL;
    if (tree_set(tree, T_COUNT, count) < 0 || tree_set(tree, T_MOD, mod) < 0)
        goto done;   /* (slots: cannot fail for a Tree) */
    out = Py_NewRef(Py_True);
done:
    if (inserted) {   /* undo the parent's inserts, newest first */
        PyObject *et, *ev_, *tb;
        PyErr_Fetch(&et, &ev_, &tb);
        for (int a = inserted - 2; a-- > 0;) {   /* (inserted 3 + a: arrays 0..a done) */
            PyObject *got = PyObject_CallMethod(parr[a], "pop", "n", i + 1);
            Py_XDECREF(got);
        }
        if (inserted >= 2)
            PySequence_DelItem(pkids, i + 1);
        PySequence_DelItem(pkeys, i + 1);
        PyErr_Clear();
        PyErr_Restore(et, ev_, tb);
    }
    while (held > 0)
        PyBuffer_Release(&views[--held]);
    Py_XDECREF(ek);
    Py_XDECREF(ev);
    Py_XDECREF(lk);
    Py_XDECREF(lv);
    Py_XDECREF(rk);
    Py_XDECREF(rv);
    Py_XDECREF(right);
    Py_XDECREF(lsize);
    Py_XDECREF(psize);
    Py_XDECREF(count);
    Py_XDECREF(mod);
    return out;
}

/* put_over's new key: key and val inserted at entry ``at`` of the owned leaf, the leaf's
 * size, the counts of the branches above it, the tree's count and mod moved as Tree.put
 * moves them. A leaf that would outgrow its page splits in put_split. Everything that can
 * fail runs before the first change. */
static PyObject *
put_new(PyObject *tree, PyObject *leaf, PyObject *key, PyObject *val, Py_ssize_t at,
        Py_ssize_t page_size)
{
    Py_ssize_t n = PyLong_AsSsize_t(SLOT(leaf, leaf_off[F_SIZE]));
    if (n == -1 && PyErr_Occurred())
        return NULL;
    n += LEAF_ENTRY + PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(val);
    PyObject *big = SLOT(leaf, leaf_off[F_BIG]);
    if (n > page_size && (big == NULL || big != Py_False))
        Py_RETURN_NONE;   /* (a big leaf's split sizes its values by the inline rule) */
    /* the path again (owned by now: no copy), for the counts to move */
    PyObject *r = own_path_of(tree, key, 1), *out = NULL, *nsize = NULL, *count = NULL;
    PyObject *mod = NULL;
    if (r == NULL)
        return NULL;
    PyObject *path = PyTuple_GET_ITEM(r, 1);
    Py_ssize_t depth = PyList_GET_SIZE(path), held = 0;
    Py_buffer views[MAX_DEPTH];
    if (PyTuple_GET_ITEM(r, 0) != leaf || depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_RuntimeError, "put_over(): the path to the leaf changed");
        goto done;
    }
    if (n > page_size) {
        out = put_split(tree, leaf, key, val, at, n, page_size, path);
        goto done;
    }
    if (hold_counts(path, depth, views, &held) < 0)
        goto done;
    PyObject *keys = SLOT(leaf, leaf_off[F_KEYS]), *vals = SLOT(leaf, leaf_off[F_VALS]);
    if ((nsize = PyLong_FromSsize_t(n)) == NULL ||
            (count = tree_plus_one(tree, T_COUNT)) == NULL ||
            (mod = tree_plus_one(tree, T_MOD)) == NULL || PyList_Insert(keys, at, key) < 0)
        goto done;
    if (PyList_Insert(vals, at, val) < 0) {
        PySequence_DelItem(keys, at);
        goto done;
    }
    /* (a Tree's count and mod are slots: setting them cannot fail) */
    if (tree_set(tree, T_COUNT, count) < 0 || tree_set(tree, T_MOD, mod) < 0)
        goto done;
    Py_SETREF(SLOT(leaf, leaf_off[F_SIZE]), nsize);
    nsize = NULL;
    bump_counts(path, views, depth);
    out = Py_NewRef(Py_True);
done:
    while (held > 0)
        PyBuffer_Release(&views[--held]);
    Py_XDECREF(nsize);
    Py_XDECREF(count);
    Py_XDECREF(mod);
    Py_DECREF(r);
    return out;
}

static PyObject *
put_over(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_CheckExact(args[1]) || !PyBytes_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "put_over(tree, key, val): key and val are bytes");
        return NULL;
    }
    if (leaf_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "put_over(): bind() was not called");
        return NULL;
    }
    PyObject *tree = args[0], *key = args[1], *val = args[2];
    Py_ssize_t inline_max = tree_int(tree, T_INLINE_MAX), page_size = -1;
    if (inline_max == -1 && PyErr_Occurred())
        return NULL;
    if (PyBytes_GET_SIZE(val) > inline_max)
        Py_RETURN_NONE;
    if ((page_size = tree_int(tree, T_PAGE_SIZE)) == -1 && PyErr_Occurred())
        return NULL;
    PyObject *r = own_path_of(tree, key, 0);
    if (r == NULL)
        return NULL;
    PyObject *leaf = PyTuple_GET_ITEM(r, 0), *out = NULL;
    PyObject *keys = SLOT(leaf, leaf_off[F_KEYS]), *vals = SLOT(leaf, leaf_off[F_VALS]);
    PyObject *size = SLOT(leaf, leaf_off[F_SIZE]);
    if (keys == NULL || vals == NULL || size == NULL || !PyList_CheckExact(keys) ||
            !PyList_CheckExact(vals) || PyList_GET_SIZE(keys) != PyList_GET_SIZE(vals)) {
        PyErr_SetString(PyExc_TypeError, "put_over(): a leaf's keys and values do not match");
        goto done;
    }
    const char *q = PyBytes_AS_STRING(key);
    Py_ssize_t ql = PyBytes_GET_SIZE(key), lo = 0, hi = PyList_GET_SIZE(keys);
    while (lo < hi) {  /* bisect_left */
        Py_ssize_t mid = (lo + hi) / 2;
        PyObject *k = PyList_GET_ITEM(keys, mid);
        if (!PyBytes_CheckExact(k)) {
            PyErr_SetString(PyExc_TypeError, "put_over(): a key is not bytes");
            goto done;
        }
        Py_ssize_t kl = PyBytes_GET_SIZE(k);
        int c = memcmp(PyBytes_AS_STRING(k), q, kl < ql ? kl : ql);
        if (c < 0 || (c == 0 && kl < ql))
            lo = mid + 1;
        else
            hi = mid;
    }
    PyObject *k = lo < PyList_GET_SIZE(keys) ? PyList_GET_ITEM(keys, lo) : NULL;
    if (k == NULL || PyBytes_GET_SIZE(k) != ql || memcmp(PyBytes_AS_STRING(k), q, ql)) {
        out = put_new(tree, leaf, key, val, lo, page_size);
        goto done;
    }
    PyObject *old = PyList_GET_ITEM(vals, lo);
    if (!PyBytes_CheckExact(old) || PyBytes_GET_SIZE(old) > inline_max) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    Py_ssize_t n = PyLong_AsSsize_t(size);
    if (n == -1 && PyErr_Occurred())
        goto done;
    n += PyBytes_GET_SIZE(val) - PyBytes_GET_SIZE(old);
    if (n > page_size) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *mod = tree_attr(tree, T_MOD), *nsize = PyLong_FromSsize_t(n);
    PyObject *mod1 = mod == NULL ? NULL : PyNumber_Add(mod, one);
    Py_XDECREF(mod);
    if (mod1 == NULL || nsize == NULL || tree_set(tree, T_MOD, mod1) < 0) {
        Py_XDECREF(mod1);
        Py_XDECREF(nsize);
        goto done;
    }
    Py_DECREF(mod1);
    Py_SETREF(SLOT(leaf, leaf_off[F_SIZE]), nsize);
    PyList_SetItem(vals, lo, Py_NewRef(val));
    out = Py_NewRef(Py_False);
done:
    Py_DECREF(r);
    return out;
}

static PyObject *
own_path_of(PyObject *tree, PyObject *key, int with_path)
{
    PyObject *node = NULL, *path = NULL, *nodes = NULL, *out = NULL;
    int frees = tree_bool(tree, T_FREES), deltas = -1, dirty = -1;
    if (frees < 0 || (deltas = tree_bool(tree, T_DELTAS)) < 0 ||
            (dirty = tree_bool(tree, T_DIRTY)) < 0)
        return NULL;
    if (frees) {  /* a tree that frees what it replaces: Python's _descend */
        PyErr_SetString(PyExc_ValueError, "own_path(): a tree that frees is Python's");
        return NULL;
    }
    node = tree_attr(tree, T_ROOT);
    if (node == NULL)
        return NULL;
    if (node == Py_None || !dirty) {
        Py_SETREF(node, PyObject_CallMethodNoArgs(tree, s__own_root));
        if (node == NULL)
            return NULL;
    }
    if ((nodes = tree_attr(tree, T_NODES)) == NULL || !PyDict_Check(nodes) ||
            (with_path && (path = PyList_New(0)) == NULL)) {
        if (nodes != NULL && !PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "own_path(): the node cache is not a dict");
        goto done;
    }
    const char *q = PyBytes_AS_STRING(key);
    Py_ssize_t ql = PyBytes_GET_SIZE(key);
    while ((PyObject *)Py_TYPE(node) == branch_type) {
        PyObject *keys = SLOT(node, branch_off[F_KEYS]), *kids = SLOT(node, branch_off[F_KIDS]);
        if (keys == NULL || kids == NULL || !PyList_CheckExact(keys) ||
                !PyList_CheckExact(kids) || PyList_GET_SIZE(keys) != PyList_GET_SIZE(kids) ||
                PyList_GET_SIZE(keys) == 0) {
            PyErr_SetString(PyExc_TypeError, "own_path(): a branch's keys and kids do not match");
            goto done;
        }
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(keys); j++) {  /* (cheap next to a copy) */
            if (!PyBytes_CheckExact(PyList_GET_ITEM(keys, j))) {
                PyErr_SetString(PyExc_TypeError, "own_path(): a key is not bytes");
                goto done;
            }
        }
        Py_ssize_t i = bisect_right(keys, q, ql) - 1;
        if (i < 0)
            i = 0;  /* (key 0 of a branch is b"": never below it) */
        if (with_path) {
            PyObject *ix = PyLong_FromSsize_t(i);
            PyObject *step = ix == NULL ? NULL : PyTuple_Pack(2, node, ix);
            Py_XDECREF(ix);
            if (step == NULL || PyList_Append(path, step) < 0) {
                Py_XDECREF(step);
                goto done;
            }
            Py_DECREF(step);
        }
        PyObject *kid = own_kid(node, i, nodes, deltas);
        if (kid == NULL)
            goto done;
        Py_SETREF(node, kid);
    }
    if ((PyObject *)Py_TYPE(node) != leaf_type) {
        PyErr_SetString(PyExc_TypeError, "own_path(): not a tree node");
        goto done;
    }
    out = PyTuple_Pack(2, node, with_path ? path : Py_None);
done:
    Py_XDECREF(node);
    Py_XDECREF(path);
    Py_XDECREF(nodes);
    return out;
}

static PyObject *
bind(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 || !PyType_Check(args[0]) || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "bind(Leaf, Branch, LEAF, BRANCH, LEAF_DELTA, "
                        "BRANCH_DELTA, LEAF_CHAIN, BRANCH_CHAIN)");
        return NULL;
    }
    long lf = PyLong_AsLong(args[2]), bf = PyLong_AsLong(args[3]);
    long lk = PyLong_AsLong(args[4]), bk = PyLong_AsLong(args[5]);
    Py_ssize_t lc = PyLong_AsSsize_t(args[6]), bc = PyLong_AsSsize_t(args[7]);
    if (PyErr_Occurred())
        return NULL;
    if (lf < 0 || lf > 255 || bf < 0 || bf > 255 || lk < 0 || lk > 255 || bk < 0 || bk > 255 || lc < 1 || lc > 0xFFFF || bc < 1 ||
            bc > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "bind(): a kind or chain bound out of range");
        return NULL;
    }
    slot_offsets((PyTypeObject *)args[0], leaf_off);
    slot_offsets((PyTypeObject *)args[1], branch_off);
    static const int leaf_needs[] = {F_KEYS, F_VALS, F_SIZE, F_BIG, F_SIG, F_TXN, F_BASE,
                                     F_CHAIN, -1};
    static const int branch_needs[] = {F_KEYS, F_KIDS, F_COUNTS, F_SUMS, F_TXNS, F_SIZE, F_SIG,
                                       F_TXN, F_BASE, F_CHAIN, -1};
    for (int j = 0; leaf_needs[j] >= 0; j++)
        if (leaf_off[leaf_needs[j]] < 0)
            return PyErr_Format(PyExc_TypeError, "bind(): Leaf has no slot %s",
                                field_names[leaf_needs[j]]);
    for (int j = 0; branch_needs[j] >= 0; j++)
        if (branch_off[branch_needs[j]] < 0)
            return PyErr_Format(PyExc_TypeError, "bind(): Branch has no slot %s",
                                field_names[branch_needs[j]]);
    Py_XSETREF(leaf_type, Py_NewRef(args[0]));
    Py_XSETREF(branch_type, Py_NewRef(args[1]));
    leaf_full_kind = (int)lf;
    branch_full_kind = (int)bf;
    leaf_kind = (int)lk;
    branch_kind = (int)bk;
    leaf_chain = lc;
    branch_chain = bc;
    Py_RETURN_NONE;
}

/* settle(node): a clean node entering the node cache leaves the cyclic garbage collector,
 * with its lists and arrays. The cache holds up to 65,536 nodes, each with two lists (and
 * a branch with three arrays, which the collector tracks too): tracked,
 * they made every full collection walk ~250,000 objects (about 45% of a no-sync commit's
 * CPU at 100,000 keys, docs/benchmarks.md). Untracking is safe because no cycle can pass
 * through a node: a node holds bytes, ints, None, tuples of ints, lists of those and
 * arrays of u64, or
 * (while dirty) its kids, which never refer back up; an untracked container is only ever
 * missed by the collector as a member of a cycle. */
static PyObject *
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
static PyObject *
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

static PyObject *
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
static PyObject *
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

/* slices(data, n, at, width, first): node.py's py_slices. A node the write path has not
 * touched yet is decoded the first time a put reaches it, so at 1M keys a commit decodes
 * ~5 leaves for a long while after opening: slicing keys and values in list
 * comprehensions was ~10 µs a leaf (~8 a branch's keys), most of that commit's extra CPU
 * over 100k keys. */
static PyObject *
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
    PyObject *list = PyList_New(n), *out = NULL;
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t l = (Py_ssize_t)get_le(d + at + width * i, (int)width);
        if (pos > len || l > len - pos) {
            PyErr_SetString(PyExc_ValueError, "entries past the image's end");
            goto done;
        }
        PyObject *item = PyBytes_FromStringAndSize((const char *)d + pos, l);
        if (item == NULL)
            goto done;
        PyList_SET_ITEM(list, i, item);
        pos += l;
    }
    if (pos > len) {   /* (n == 0, first past the end) */
        PyErr_SetString(PyExc_ValueError, "entries past the image's end");
        goto done;
    }
    out = Py_BuildValue("(On)", list, pos);
done:
    Py_DECREF(list);
    return out;
}

static PyMethodDef methods[] = {
    {"sorted_items", (PyCFunction)(void (*)(void))sorted_items, METH_FASTCALL,
     "sorted_items(mapping, max_key): btree.py's py_sorted_items: a dict's pairs in key "
     "order when its keys are bytes of 1 to max_key bytes and its values bytes, else None."},
    {"leaves", (PyCFunction)(void (*)(void))leaves, METH_FASTCALL,
     "leaves(items, limit, inline_max): btree.py's py_leaves: a bulk load's (key, value) "
     "pairs cut into leaves of at most limit bytes: [(first key, Leaf), ...]."},
    {"slices", (PyCFunction)(void (*)(void))slices, METH_FASTCALL,
     "slices(data, n, at, width, first): node.py's py_slices: the n byte strings whose "
     "lengths (width bytes each) are at at, laid out from first: (list, end); None for an "
     "overflow reference."},
    {"drop", (PyCFunction)(void (*)(void))drop, METH_FASTCALL,
     "drop(nodes, bases): btree.py's NodeCache.drop (the superseded bases' nodes leave "
     "the cache where it still holds them; bases is emptied)."},
    {"rebase_image", (PyCFunction)(void (*)(void))rebase_image, METH_FASTCALL,
     "rebase_image(is_leaf, kind, node, image, fpage, txn): node.py's rebase_delta: node's "
     "image as a delta on the full image its base's chain starts from, or None"},
    {"put_over", (PyCFunction)(void (*)(void))put_over, METH_FASTCALL,
     "put_over(tree, key, val): btree.py's Tree.put for an inline value over an inline "
     "value in a tree that keeps what it replaces: False, or None (Tree.put does it)."},
    {"own_path", (PyCFunction)(void (*)(void))own_path, METH_FASTCALL,
     "own_path(tree, key): btree.py's Tree._descend for a tree that keeps what it "
     "replaces: (leaf, [(branch, index), ...]), the path owned (copied) down to key's leaf."},
    {"write_tree", (PyCFunction)(void (*)(void))write_tree, METH_FASTCALL,
     "write_tree(root, txn, store, nodes, encode, overflows, digest, superseded): btree.py's "
     "Tree._write_node in C; (page, checksum) of the root written."},
    {"bind", (PyCFunction)(void (*)(void))bind, METH_FASTCALL,
     "bind(Leaf, Branch, LEAF, BRANCH, LEAF_DELTA, BRANCH_DELTA, LEAF_CHAIN, BRANCH_CHAIN): "
     "what write_tree, own_path and full_image need of node.py."},
    {"full_image", (PyCFunction)(void (*)(void))full_image, METH_FASTCALL,
     "full_image(node, txn): node.py's encode_leaf / encode_branch, unsealed; "
     "NotImplemented for a leaf marked big (Python encodes it)."},
    {"delta_image", (PyCFunction)(void (*)(void))delta_image, METH_FASTCALL,
     "delta_image(is_leaf, kind, node, base, bpage, bsum, btxn, depth, txn): node.py's "
     "encode_delta for a node with its base's keys, unsealed; None (a full image is due) "
     "or NotImplemented (Python encodes it)."},
    {"settle", settle, METH_O,
     "settle(node): untrack a clean node and its lists from the cyclic garbage collector "
     "(no cycle passes through a node); anything else is left as it is. NodeCache.put "
     "calls it."},
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
    if (!(s__root = PyUnicode_InternFromString("_root")) ||
        !(s__dirty = PyUnicode_InternFromString("_dirty")) ||
        !(s_frees = PyUnicode_InternFromString("frees")) ||
        !(s_deltas = PyUnicode_InternFromString("deltas")) ||
        !(s_nodes = PyUnicode_InternFromString("nodes")) ||
        !(s__own_root = PyUnicode_InternFromString("_own_root")) ||
        !(zero = PyLong_FromLong(0)) ||
        !(s_inline_max = PyUnicode_InternFromString("inline_max")) ||
        !(s_page_size = PyUnicode_InternFromString("page_size")) ||
        !(s_mod = PyUnicode_InternFromString("mod")) ||
        !(s_count = PyUnicode_InternFromString("count")) ||
        !(s_insert = PyUnicode_InternFromString("insert")) ||
        !(s__run = PyUnicode_InternFromString("_run")) ||
        !(s_page_count = PyUnicode_InternFromString("page_count")) ||
        !(s_put = PyUnicode_InternFromString("put")) ||
        !(s_pages_written = PyUnicode_InternFromString("pages_written")) ||
        !(s_bytes_written = PyUnicode_InternFromString("bytes_written")) ||
        !(s_read = PyUnicode_InternFromString("read")) ||
        !(one = PyLong_FromLong(1)))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "API", API) < 0)
        Py_CLEAR(m);
    return m;
}
