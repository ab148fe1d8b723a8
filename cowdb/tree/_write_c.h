/* _write_c.h: what the files of cowdb.tree._write_c share. The module is one concept per
 * file, in bbolt's manner (_write_c.c says what each entry point does):
 *
 *   _write_c.c      the module: its entry points' table, bind() (what it needs of
 *                   node.py: the node classes' slots, the image kinds, the chain bounds)
 *   _write_image.c  node images: full, delta and rebased images encoded; a node's keys
 *                   and values sliced back out of one (decode); a leaf's image checked
 *                   and decoded whole, for the node cache (checked_leaf)
 *   _write_pass.c   the commit's write pass: every dirty node written bottom-up, placed
 *                   in the store's run and cached
 *   _write_put.c    the put: descent, path copy, overwrite, insert, a leaf's split
 *   _write_cache.c  the node cache's entries: settled out of the cyclic collector,
 *                   dropped when superseded
 *   _write_load.c   a bulk load: a dict's pairs checked and sorted, cut into leaves
 *   _write_chain.c  a delta chain's images applied into the full image it stands for
 *
 * Everything here is internal to the one extension module (hidden from other shared
 * objects); only PyInit__write_c is exported. */
#ifndef COWDB_WRITE_C_H
#define COWDB_WRITE_C_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define INTERNAL __attribute__((visibility("hidden")))
#else
#define INTERNAL
#endif

#define API 27                /* node.py's WRITE_API: bump with any change of behaviour */
#define HEADER_SIZE 24        /* <QBBHIQ: checksum, type, flags, n, length, txn */
#define DELTA_HEAD 28         /* <QQQHH: base page, checksum, txn; depth; run count */
#define LEAF_ENTRY 6          /* a leaf entry's lengths: u16 key, u32 value */
#define OVERFLOW_REF 32       /* an overflow value's reference in its leaf: 4 x u64 */
#define BRANCH_ENTRY 34       /* a branch entry's key length and (page, count, sum, txn) */

/* A node's fields by their slots' offsets (bind() finds them): the commit reads a dozen
 * per node, and PyObject_GetAttr's lookups were ~8% of its instructions. */
enum { F_KEYS, F_VALS, F_KIDS, F_COUNTS, F_SUMS, F_TXNS, F_SIZE, F_BIG, F_SIG, F_TXN, F_BASE,
       F_CHAIN, F_UNDO, NF };
INTERNAL extern const char *field_names[NF];
INTERNAL extern Py_ssize_t leaf_off[NF], branch_off[NF];   /* slot offsets, -1: not a slot */
INTERNAL extern PyObject *leaf_type, *branch_type;         /* set by bind() */
INTERNAL extern int leaf_kind, branch_kind;                /* the delta kinds (bind) */
INTERNAL extern int leaf_full_kind, branch_full_kind;      /* the full-image kinds (bind) */
INTERNAL extern Py_ssize_t leaf_chain, branch_chain;       /* deltas in a chain (bind) */
INTERNAL extern PyObject *zero, *one;                      /* the ints 0 and 1 */
INTERNAL extern PyObject *restore_fn;                     /* node.py's restore_base (bind) */

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* Field f of a node (a new reference), by its slot when node is a bound Leaf or Branch,
 * else by name; NULL with AttributeError when it is unset. */
static inline PyObject *
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
static inline int
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
static inline PyObject *
list_of(PyObject *node, int f)
{
    PyObject *v = field(node, f);
    if (v != NULL && !PyList_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "a node's %s is not a list", field_names[f]);
        Py_CLEAR(v);
    }
    return v;
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
static inline unsigned long long *
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
static inline int
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

static inline void
release_refs(Py_buffer views[3])
{
    for (int j = 0; j < 3; j++)
        PyBuffer_Release(&views[j]);
}


/* _write_image.c */
INTERNAL PyObject *full_core(PyObject *node, int is_leaf, unsigned long long txn);
INTERNAL PyObject *delta_core(int is_leaf, int kind, PyObject *node, PyObject *base,
                              unsigned long long bpage, unsigned long long bsum,
                              unsigned long long btxn, unsigned depth, unsigned long long txn);
INTERNAL PyObject *rebase_core(int is_leaf, int kind, PyObject *node, const unsigned char *img,
                               Py_ssize_t len, unsigned long long fpage,
                               unsigned long long txn);
INTERNAL PyObject *delta_image(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
INTERNAL PyObject *rebase_image(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
INTERNAL PyObject *full_image(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
INTERNAL PyObject *dirty_kids(PyObject *self, PyObject *kids);
INTERNAL PyObject *slices(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
INTERNAL PyObject *checked_leaf(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* _write_chain.c */
INTERNAL PyObject *apply_chain(PyObject *self, PyObject *images);

/* _write_pass.c */
INTERNAL int pass_init(void);
INTERNAL PyObject *write_tree(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* _write_put.c */
INTERNAL int put_init(void);
INTERNAL int restore(PyObject *node);
INTERNAL PyObject *own_path(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
INTERNAL PyObject *put_over(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
INTERNAL PyObject *put_method(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
INTERNAL PyObject *values_at(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* _write_cache.c */
INTERNAL PyObject *settle(PyObject *self, PyObject *node);
INTERNAL PyObject *drop(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* _write_load.c */
INTERNAL PyObject *sorted_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
INTERNAL PyObject *leaves(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* _write_c.c */
INTERNAL Py_ssize_t slot_offset(PyObject *descr);

#endif
