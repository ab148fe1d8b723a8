/* The put (one file of cowdb.tree._write_c, see _write_c.h): btree.py's Tree._descend
 * and Tree.put in C for a tree that keeps what it replaces: the path from the root to a
 * key's leaf owned (clean nodes copied), then the value put over an inline value, or
 * inserted as a new key, splitting a full leaf of inline values whose parent has room. */
#include "_write_c.h"

static PyObject *s__root, *s__dirty, *s_frees, *s_deltas, *s_nodes, *s__own_root;
static PyObject *s_inline_max, *s_page_size, *s_mod, *s_count, *s_insert, *s_stolen, *s__ref;
static PyObject *s_load;

int
put_init(void)
{
    return (s__root = PyUnicode_InternFromString("_root")) &&
        (s__dirty = PyUnicode_InternFromString("_dirty")) &&
        (s_frees = PyUnicode_InternFromString("frees")) &&
        (s_deltas = PyUnicode_InternFromString("deltas")) &&
        (s_nodes = PyUnicode_InternFromString("nodes")) &&
        (s__own_root = PyUnicode_InternFromString("_own_root")) &&
        (s_inline_max = PyUnicode_InternFromString("inline_max")) &&
        (s_page_size = PyUnicode_InternFromString("page_size")) &&
        (s_mod = PyUnicode_InternFromString("mod")) &&
        (s_count = PyUnicode_InternFromString("count")) &&
        (s_insert = PyUnicode_InternFromString("insert")) &&
        (s_stolen = PyUnicode_InternFromString("stolen")) &&
        (s__ref = PyUnicode_InternFromString("_ref")) &&
        (s_load = PyUnicode_InternFromString("load")) ? 0 : -1;
}

/* node.py's restore_base, called there (the rare paths: a change of keys, a fallback to
 * Python): the lists a dirty node took from its base given back; 0, or -1 with an error. */
int
restore(PyObject *node)
{
    PyObject *tp = (PyObject *)Py_TYPE(node);
    const Py_ssize_t *off = tp == leaf_type ? leaf_off : tp == branch_type ? branch_off : NULL;
    if (off == NULL || SLOT(node, off[F_UNDO]) == NULL || SLOT(node, off[F_UNDO]) == Py_None)
        return 0;
    PyObject *r = PyObject_CallOneArg(restore_fn, node);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* A node's lists (and a branch's arrays) that a copy copies, or takes: its keys first,
 * which a copy borrows instead (see own_keys) and never takes. */
static const int leaf_lists[] = {F_KEYS, F_VALS, -1};
static const int branch_lists[] = {F_KEYS, F_KIDS, F_COUNTS, F_SUMS, F_TXNS, -1};

/* Whether own_kid may take the lists of ``node``, a clean node just found in (or loaded
 * into) the cache ``nodes`` under ``page``, instead of copying them (see node.py's
 * restore_base): nothing holds it but the cache and the caller (a reader's cursor, a
 * snapshot's walk would hold a reference), nothing holds its lists but it, and it is a
 * leaf of inline values or a branch. */
static int
may_take(PyObject *node, PyObject *nodes, PyObject *page)
{
    if (Py_REFCNT(node) != 2 || PyDict_GetItemWithError(nodes, page) != node)
        return 0;   /* (an error from the lookup: the caller's next call reports it) */
    int is_leaf = (PyObject *)Py_TYPE(node) == leaf_type;
    const Py_ssize_t *off = is_leaf ? leaf_off : branch_off;
    if (is_leaf && SLOT(node, off[F_BIG]) != Py_False)
        return 0;
    for (const int *f = (is_leaf ? leaf_lists : branch_lists) + 1; *f >= 0; f++) {
        PyObject *v = SLOT(node, off[*f]);
        if (v == NULL || Py_REFCNT(v) != 1 || (*f <= F_KIDS && !PyList_CheckExact(v)))
            return 0;
    }
    return 1;
}

/* A dirty copy of a clean node: node.py's Leaf.copy / Branch.copy without their Python
 * frames (its lists and a branch's arrays sliced whole, sig/chain None, txn 0); with
 * ``base`` (node's reference, a tuple; else NULL) as its base, its keys list borrowed
 * from node (see own_keys). ``take`` (with a base that may_take allowed): the lists and
 * arrays other than the keys are taken from node, not sliced, and the copy gets an empty
 * undo record (see node.py's restore_base); nothing is taken unless the copy is made. */
static PyObject *
copy_node(PyObject *node, PyObject *base, int take)
{
    PyTypeObject *tp = Py_TYPE(node);
    const Py_ssize_t *off = (PyObject *)tp == leaf_type ? leaf_off : branch_off;
    const int *lists = (PyObject *)tp == leaf_type ? leaf_lists : branch_lists;
    PyObject *copy = tp->tp_alloc(tp, 0);
    if (copy == NULL)
        return NULL;
    PyObject *undo = take ? PyDict_New() : Py_NewRef(Py_None);
    if (undo == NULL) {
        Py_DECREF(copy);
        return NULL;
    }
    SLOT(copy, off[F_UNDO]) = undo;
    for (int j = 0; lists[j] >= 0; j++) {
        PyObject *v = SLOT(node, off[lists[j]]);
        int is_list = v != NULL && PyList_CheckExact(v);
        if (v == NULL || (!is_list && lists[j] < F_COUNTS)) {
            Py_DECREF(copy);
            PyErr_Format(PyExc_TypeError, "a node's %s is not a list", field_names[lists[j]]);
            return NULL;
        }
        /* (a branch's counts, sums and txns: arrays, which u64s_of checks where read) */
        if (take && lists[j] != F_KEYS)
            continue;   /* (taken below, once nothing can fail) */
        PyObject *c = lists[j] == F_KEYS && base != NULL ? Py_NewRef(v)
                      : is_list ? PyList_GetSlice(v, 0, PyList_GET_SIZE(v))
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
    SLOT(copy, off[F_BASE]) = Py_NewRef(base != NULL ? base : Py_None);
    SLOT(copy, off[F_CHAIN]) = Py_NewRef(Py_None);
    for (int j = 0; take && lists[j] >= 0; j++) {
        if (lists[j] != F_KEYS) {   /* the reference moves: node holds None instead */
            SLOT(copy, off[lists[j]]) = SLOT(node, off[lists[j]]);
            SLOT(node, off[lists[j]]) = Py_NewRef(Py_None);
        }
    }
    return copy;
}

/* node.py's own_keys: the dirty node's keys list made its own before it changes (a copy
 * borrows the copied node's list while it has that node as its base); borrowed, or NULL. */
static PyObject *
own_keys(PyObject *node)
{
    const Py_ssize_t *off = (PyObject *)Py_TYPE(node) == leaf_type ? leaf_off : branch_off;
    if (restore(node) < 0)   /* (a change of keys moves the undo record's indexes) */
        return NULL;
    PyObject *keys = SLOT(node, off[F_KEYS]), *base = SLOT(node, off[F_BASE]);
    if (keys == NULL || !PyList_CheckExact(keys)) {
        PyErr_SetString(PyExc_TypeError, "a node's keys are not a list");
        return NULL;
    }
    if (base != NULL && PyTuple_CheckExact(base) && PyTuple_GET_SIZE(base) == 4) {
        PyObject *lender = PyTuple_GET_ITEM(base, 0);
        if (Py_TYPE(lender) == Py_TYPE(node) && SLOT(lender, off[F_KEYS]) == keys) {
            PyObject *own = PyList_GetSlice(keys, 0, PyList_GET_SIZE(keys));
            if (own == NULL)
                return NULL;
            Py_SETREF(SLOT(node, off[F_KEYS]), own);
            keys = own;
        }
    }
    return keys;
}

/* bisect_right(keys, key) over a list of bytes; -1 with TypeError if a key it compares is
 * not bytes (checked where compared: a check of every key would touch them all). */
static Py_ssize_t
bisect_right(PyObject *keys, const char *q, Py_ssize_t ql)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(keys);
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        PyObject *k = PyList_GET_ITEM(keys, mid);
        if (!PyBytes_CheckExact(k)) {
            PyErr_SetString(PyExc_TypeError, "own_path(): a key is not bytes");
            return -1;
        }
        Py_ssize_t kl = PyBytes_GET_SIZE(k);
        int c = memcmp(q, PyBytes_AS_STRING(k), ql < kl ? ql : kl);
        if (c < 0 || (c == 0 && ql < kl))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A branch's keys and kids (borrowed), lists of one length, not empty; -1 with TypeError
 * (naming the caller, who) otherwise. */
static int
branch_entries(PyObject *node, PyObject **keys, PyObject **kids, const char *who)
{
    *keys = SLOT(node, branch_off[F_KEYS]);
    *kids = SLOT(node, branch_off[F_KIDS]);
    if (*keys == NULL || *kids == NULL || !PyList_CheckExact(*keys) ||
            !PyList_CheckExact(*kids) || PyList_GET_SIZE(*keys) != PyList_GET_SIZE(*kids) ||
            PyList_GET_SIZE(*keys) == 0) {
        PyErr_Format(PyExc_TypeError, "%s(): a branch's keys and kids do not match", who);
        return -1;
    }
    return 0;
}

/* Record in a dirty branch's undo record (if it has one: it took its base's lists) the
 * i-th entry as it is, before its first change: (page, count, checksum, txn); 0, or -1
 * with an error. */
static int
record_kid(PyObject *branch, Py_ssize_t i, PyObject *kid, PyObject *s, PyObject *t)
{
    PyObject *undo = SLOT(branch, branch_off[F_UNDO]);
    if (undo == NULL || undo == Py_None)
        return 0;
    PyObject *at = PyLong_FromSsize_t(i), *count = NULL, *entry = NULL;
    int out = -1;
    if (at == NULL || !PyDict_CheckExact(undo))
        goto done;
    int has = PyDict_Contains(undo, at);
    if (has != 0) {
        out = has < 0 ? -1 : 0;
        goto done;
    }
    PyObject *counts = SLOT(branch, branch_off[F_COUNTS]);
    if (counts == NULL || (count = PySequence_GetItem(counts, i)) == NULL ||
            (entry = PyTuple_Pack(4, kid, count, s, t)) == NULL)
        goto done;
    out = PyDict_SetItem(undo, at, entry);
done:
    if (out < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "own_path(): a branch's undo record is not a dict");
    Py_XDECREF(at);
    Py_XDECREF(count);
    Py_XDECREF(entry);
    return out;
}

/* The dirty copy of a branch's i-th kid (copied now if it is a page). ``take``: the copy
 * may take the clean kid's lists (see may_take); *took is set when it did. */
static PyObject *
own_kid(PyObject *branch, Py_ssize_t i, PyObject *nodes, int deltas, int take, int *took)
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
    else if ((node = PyObject_CallMethodObjArgs(nodes, s_load, kid, s, t, NULL)) == NULL)
        goto done;
    if ((PyObject *)Py_TYPE(node) != leaf_type && (PyObject *)Py_TYPE(node) != branch_type) {
        PyErr_SetString(PyExc_TypeError, "own_path(): the node cache holds a non-node");
        Py_DECREF(node);
        goto done;
    }
    if (record_kid(branch, i, kid, s, t) < 0) {
        Py_DECREF(node);
        goto done;
    }
    /* taken: the node leaves the cache first (should the copy then fail, it is only
     * loaded again from its page) */
    take = take && deltas && may_take(node, nodes, kid);
    if (take && PyDict_DelItem(nodes, kid) < 0) {
        Py_DECREF(node);
        goto done;
    }
    PyObject *base = deltas ? PyTuple_Pack(4, node, kid, s, t) : NULL;
    if ((deltas && base == NULL) || (copy = copy_node(node, base, take)) == NULL) {
        Py_XDECREF(base);
        Py_DECREF(node);
        goto done;
    }
    *took |= take;
    Py_XDECREF(base);
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

#define MAX_DEPTH 64   /* branch levels a path holds (a tree of 2**64 keys has < 64) */

/* The branches from the root to a leaf and the child taken in each, as own_path_of
 * leaves them (a reference held on each branch): put_over descends once and its insert
 * and split move the counts on this, not on a second descent. */
typedef struct {
    PyObject *node[MAX_DEPTH];
    Py_ssize_t at[MAX_DEPTH];
    Py_ssize_t depth;
} Path;

static void
path_clear(Path *path)
{
    while (path->depth > 0)
        Py_DECREF(path->node[--path->depth]);
}

static PyObject *own_path_of(PyObject *tree, PyObject *key, Path *path, int take);

PyObject *
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
    Path path = {.depth = 0};
    PyObject *leaf = own_path_of(args[0], args[1], &path, 0), *steps = NULL, *out = NULL;
    if (leaf == NULL || (steps = PyList_New(path.depth)) == NULL)
        goto done;
    for (Py_ssize_t j = 0; j < path.depth; j++) {
        PyObject *step = Py_BuildValue("(On)", path.node[j], path.at[j]);
        if (step == NULL)
            goto done;
        PyList_SET_ITEM(steps, j, step);
    }
    out = PyTuple_Pack(2, leaf, steps);
done:
    path_clear(&path);
    Py_XDECREF(leaf);
    Py_XDECREF(steps);
    return out;
}

/* A Tree's attributes by their slots' offsets, as a node's (a put reads eight of them,
 * and PyObject_GetAttr on a slotted class is a type lookup each: ~2% of a commit's
 * instructions). The offsets are learnt for the first Tree type seen, and again if
 * another type comes (a subclass); an attribute that is not a slot is read by name. */
enum { T_FREES, T_DELTAS, T_DIRTY, T_ROOT, T_NODES, T_INLINE_MAX, T_PAGE_SIZE, T_MOD, T_COUNT,
       T_STOLEN, T_REF, NT };
static PyObject **tree_names[NT] = {&s_frees, &s_deltas, &s__dirty, &s__root, &s_nodes,
                                    &s_inline_max, &s_page_size, &s_mod, &s_count, &s_stolen,
                                    &s__ref};
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

/* The counts arrays of the path's branches from *held up to ``upto``, held writable in
 * views (each checked as long as its branch's keys); -1 with an error if one is not. */
static int
hold_counts(const Path *path, Py_ssize_t upto, Py_buffer *views, Py_ssize_t *held)
{
    for (; *held < upto; (*held)++) {
        PyObject *b = path->node[*held];
        if (u64s_of(b, F_COUNTS, &views[*held], PyList_GET_SIZE(SLOT(b, branch_off[F_KEYS])),
                    1) == NULL)
            return -1;
    }
    return 0;
}

/* One key more under each of the path's first ``upto`` steps (their counts held). */
static void
bump_counts(const Path *path, Py_buffer *views, Py_ssize_t upto)
{
    for (Py_ssize_t j = 0; j < upto; j++)   /* (0 <= at < len: own_path_of's bisect) */
        ((unsigned long long *)views[j].buf)[path->at[j]] += 1;
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
          Py_ssize_t n, Py_ssize_t page_size, const Path *path)
{
    Py_ssize_t depth = path->depth;
    if (depth < 1)
        Py_RETURN_NONE;
    if (restore(leaf) < 0)   /* (its lists are replaced below, not changed through own_keys) */
        return NULL;
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
    PyObject *parent = path->node[depth - 1];
    Py_ssize_t i = path->at[depth - 1];
    PyObject *sep = PyList_GET_ITEM(ek, m);
    PyObject *pkeys = NULL, *pkids = SLOT(parent, branch_off[F_KIDS]);
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
            (mod = tree_plus_one(tree, T_MOD)) == NULL || (pkeys = own_keys(parent)) == NULL)
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
        Py_ssize_t page_size, const Path *path)
{
    Py_ssize_t n = PyLong_AsSsize_t(SLOT(leaf, leaf_off[F_SIZE]));
    if (n == -1 && PyErr_Occurred())
        return NULL;
    n += LEAF_ENTRY + PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(val);
    PyObject *big = SLOT(leaf, leaf_off[F_BIG]);
    if (n > page_size && (big == NULL || big != Py_False))
        Py_RETURN_NONE;   /* (a big leaf's split sizes its values by the inline rule) */
    PyObject *out = NULL, *nsize = NULL, *count = NULL, *mod = NULL;
    Py_ssize_t depth = path->depth, held = 0;
    Py_buffer views[MAX_DEPTH];
    if (n > page_size) {
        out = put_split(tree, leaf, key, val, at, n, page_size, path);
        goto done;
    }
    if (hold_counts(path, depth, views, &held) < 0)
        goto done;
    PyObject *keys = own_keys(leaf), *vals = SLOT(leaf, leaf_off[F_VALS]);
    if (keys == NULL || (nsize = PyLong_FromSsize_t(n)) == NULL ||
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
    return out;
}

static PyObject *put_over_of(PyObject *tree, PyObject *key, PyObject *val);

PyObject *
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
    return put_over_of(args[0], args[1], args[2]);
}

/* put_over's work, for it and for the transaction's put (bytes key and val). */
static PyObject *
put_over_of(PyObject *tree, PyObject *key, PyObject *val)
{
    Py_ssize_t inline_max = tree_int(tree, T_INLINE_MAX), page_size = -1;
    if (inline_max == -1 && PyErr_Occurred())
        return NULL;
    if (PyBytes_GET_SIZE(val) > inline_max)
        Py_RETURN_NONE;
    if ((page_size = tree_int(tree, T_PAGE_SIZE)) == -1 && PyErr_Occurred())
        return NULL;
    Path path = {.depth = 0};
    PyObject *leaf = own_path_of(tree, key, &path, 1), *out = NULL;
    if (leaf == NULL) {
        path_clear(&path);
        return NULL;
    }
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
        out = put_new(tree, leaf, key, val, lo, page_size, &path);
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
    PyObject *undo = SLOT(leaf, leaf_off[F_UNDO]);
    if (undo != NULL && undo != Py_None) {   /* the value as the base has it, at its first change */
        PyObject *at = PyLong_FromSsize_t(lo);
        PyObject *kept = at == NULL || !PyDict_CheckExact(undo) ? NULL
                         : PyDict_SetDefault(undo, at, old);
        Py_XDECREF(at);
        if (kept == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "put_over(): a leaf's undo record is not a dict");
            goto done;
        }
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
    path_clear(&path);
    Py_DECREF(leaf);
    return out;
}

/* btree.py's Tree._own_root for a clean tree that keeps what it replaces: its root
 * copied (as Leaf.copy and Branch.copy do; nothing taken, as there), with its base (root,
 * page, checksum, txn of the tree's ref) if deltas, becomes the tree's dirty root. Steals
 * the reference to root; returns the copy (a new reference), or NULL with an error.
 * (In Python this was ~1.7% of a no-sync commit's instructions: it ran at every commit's
 * first put.) A clean tree has no taken lists, so there is nothing to restore first. */
static PyObject *
own_root(PyObject *tree, PyObject *root, int deltas)
{
    PyObject *base = NULL, *copy = NULL, *ref = NULL;
    if ((PyObject *)Py_TYPE(root) != leaf_type && (PyObject *)Py_TYPE(root) != branch_type) {
        PyErr_SetString(PyExc_TypeError, "own_path(): the tree's root is not a node");
        goto done;
    }
    if (deltas) {
        if ((ref = tree_attr(tree, T_REF)) == NULL)
            goto done;
        if (!PyTuple_Check(ref) || PyTuple_GET_SIZE(ref) != 3) {
            PyErr_SetString(PyExc_TypeError, "own_path(): the tree's ref is not (page, "
                            "checksum, txn)");
            goto done;
        }
        base = PyTuple_Pack(4, root, PyTuple_GET_ITEM(ref, 0), PyTuple_GET_ITEM(ref, 1),
                            PyTuple_GET_ITEM(ref, 2));
        if (base == NULL)
            goto done;
    }
    if ((copy = copy_node(root, base, 0)) == NULL)
        goto done;
    if (tree_set(tree, T_ROOT, copy) < 0 || tree_set(tree, T_DIRTY, Py_True) < 0)
        Py_CLEAR(copy);
done:
    Py_DECREF(root);
    Py_XDECREF(ref);
    Py_XDECREF(base);
    return copy;
}

/* Own the path from the tree's root to key's leaf (clean nodes copied): the leaf (a new
 * reference), with each branch on the way and the child taken in ``path`` (a reference
 * held on each: path_clear drops them, on error too); NULL with an error set. ``take``:
 * a copy may take its clean node's lists (put_over's puts only: Python changes what
 * own_path gives it without keeping an undo record); the tree's ``stolen`` is then set. */
static PyObject *
own_path_of(PyObject *tree, PyObject *key, Path *path, int take)
{
    PyObject *node = NULL, *nodes = NULL, *out = NULL;
    int took = 0;
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
    if (node == Py_None) {  /* an empty tree: Python's _own_root makes its first leaf */
        Py_SETREF(node, PyObject_CallMethodNoArgs(tree, s__own_root));
        if (node == NULL)
            return NULL;
    }
    else if (!dirty && (node = own_root(tree, node, deltas)) == NULL)
        return NULL;
    if ((nodes = tree_attr(tree, T_NODES)) == NULL || !PyDict_Check(nodes)) {
        if (nodes != NULL)
            PyErr_SetString(PyExc_TypeError, "own_path(): the node cache is not a dict");
        goto done;
    }
    const char *q = PyBytes_AS_STRING(key);
    Py_ssize_t ql = PyBytes_GET_SIZE(key);
    while ((PyObject *)Py_TYPE(node) == branch_type) {
        PyObject *keys, *kids;
        if (branch_entries(node, &keys, &kids, "own_path") < 0)
            goto done;
        if (path->depth == MAX_DEPTH) {
            PyErr_SetString(PyExc_RuntimeError, "own_path(): the tree is deeper than 64 levels");
            goto done;
        }
        Py_ssize_t i = bisect_right(keys, q, ql) - 1;
        if (i < -1)
            goto done;
        if (i < 0)
            i = 0;  /* (key 0 of a branch is b"": never below it) */
        path->node[path->depth] = Py_NewRef(node);
        path->at[path->depth++] = i;
        PyObject *kid = own_kid(node, i, nodes, deltas, take, &took);
        if (kid == NULL)
            goto done;
        Py_SETREF(node, kid);
    }
    if ((PyObject *)Py_TYPE(node) != leaf_type) {
        PyErr_SetString(PyExc_TypeError, "own_path(): not a tree node");
        goto done;
    }
    out = Py_NewRef(node);
done:
    if (took && tree_set(tree, T_STOLEN, Py_True) < 0)   /* (a slot: cannot fail for a Tree) */
        Py_CLEAR(out);
    Py_XDECREF(node);
    Py_XDECREF(nodes);
    return out;
}


/* values_at(root, page, checksum, txn, key): compare.py's py_values_at, the common case of
 * a commit's proof that it changed something (differs_at: ~17 Python lines a commit).
 * key's values (value, base value) in the dirty tree under root and in the tree at (page,
 * checksum, txn) that root was copied from, told by the undo record of the leaf that
 * holds key; None when that does not tell (another root, a clean child on the way, a
 * leaf with no record, the key not there). */
PyObject *
values_at(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyBytes_CheckExact(args[4]) || leaf_type == NULL) {
        PyErr_SetString(PyExc_TypeError, "values_at(root, page, checksum, txn, key): a node "
                        "or None, three ints and bytes, after bind()");
        return NULL;
    }
    PyObject *node = args[0], *key = args[4];
    PyTypeObject *tp = Py_TYPE(node);
    if ((PyObject *)tp != leaf_type && (PyObject *)tp != branch_type)
        Py_RETURN_NONE;   /* (an empty tree: None) */
    PyObject *base = SLOT(node, ((PyObject *)tp == leaf_type ? leaf_off : branch_off)[F_BASE]);
    if (base == NULL || !PyTuple_CheckExact(base) || PyTuple_GET_SIZE(base) != 4)
        Py_RETURN_NONE;
    for (int j = 1; j < 4; j++) {
        int eq = PyObject_RichCompareBool(PyTuple_GET_ITEM(base, j), args[j], Py_EQ);
        if (eq < 0)
            return NULL;
        if (!eq)
            Py_RETURN_NONE;
    }
    const char *q = PyBytes_AS_STRING(key);
    Py_ssize_t ql = PyBytes_GET_SIZE(key);
    while ((PyObject *)Py_TYPE(node) == branch_type) {
        PyObject *keys, *kids;
        if (branch_entries(node, &keys, &kids, "values_at") < 0)
            return NULL;
        Py_ssize_t i = bisect_right(keys, q, ql) - 1;
        if (i < -1)
            return NULL;
        node = PyList_GET_ITEM(kids, i < 0 ? 0 : i);
        if ((PyObject *)Py_TYPE(node) != leaf_type && (PyObject *)Py_TYPE(node) != branch_type)
            Py_RETURN_NONE;   /* (a clean child, a page: no put went there) */
    }
    PyObject *undo = SLOT(node, leaf_off[F_UNDO]), *keys = SLOT(node, leaf_off[F_KEYS]);
    PyObject *vals = SLOT(node, leaf_off[F_VALS]);
    if (undo == NULL || !PyDict_CheckExact(undo) || keys == NULL || vals == NULL ||
            !PyList_CheckExact(keys) || !PyList_CheckExact(vals) ||
            PyList_GET_SIZE(keys) != PyList_GET_SIZE(vals))
        Py_RETURN_NONE;   /* (no record: a leaf that took nothing) */
    Py_ssize_t i = bisect_right(keys, q, ql) - 1;
    if (i < -1)
        return NULL;
    if (i < 0)
        Py_RETURN_NONE;
    PyObject *k = PyList_GET_ITEM(keys, i);
    if (PyBytes_GET_SIZE(k) != ql || memcmp(PyBytes_AS_STRING(k), q, (size_t)ql) != 0)
        Py_RETURN_NONE;
    PyObject *value = PyList_GET_ITEM(vals, i), *ix = PyLong_FromSsize_t(i);
    if (ix == NULL)
        return NULL;
    PyObject *was = PyDict_GetItemWithError(undo, ix);   /* borrowed */
    Py_DECREF(ix);
    if (was == NULL && PyErr_Occurred())
        return NULL;
    return PyTuple_Pack(2, value, was != NULL ? was : value);
}

/* The transaction's put: Transaction.__setitem__ (transaction.py) in its common case, a
 * bytes key of 1 to max_key bytes and a bytes value with no codec, done by put_over_of
 * on the transaction's tree, without the two Python frames the put went through (~70 of
 * a 10-put commit's ~4,000 opcodes each). Anything else (a closed transaction, another
 * type, a codec, a put put_over leaves to Tree.put) calls the Python method, which checks
 * and does it all. put_method(cls, fallback, tree_cls) binds it to cls's slots. */
enum { X_TREE, X_MAX_KEY, X_CODEC, X_PUTS, X_TOUCHED, NX };
static const char *tx_names[NX] = {"_tree", "_max_key", "_codec", "puts", "_touched"};
static Py_ssize_t tx_off[NX];
static PyObject *tx_fallback, *tx_tree_type;

static PyObject *
tx_put(PyObject *tx, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 2 && kwnames == NULL && PyBytes_CheckExact(args[0]) &&
            PyBytes_CheckExact(args[1])) {
        PyObject *tree = SLOT(tx, tx_off[X_TREE]), *mk = SLOT(tx, tx_off[X_MAX_KEY]);
        PyObject *codec = SLOT(tx, tx_off[X_CODEC]), *puts = SLOT(tx, tx_off[X_PUTS]);
        Py_ssize_t kl = PyBytes_GET_SIZE(args[0]), max_key = -1;
        if (mk != NULL && PyLong_CheckExact(mk) && (max_key = PyLong_AsSsize_t(mk)) == -1)
            PyErr_Clear();  /* (not a size: the Python method says what is wrong) */
        if (tree != NULL && (PyObject *)Py_TYPE(tree) == tx_tree_type && codec == Py_None &&
                puts != NULL && PyLong_CheckExact(puts) && 0 < kl && kl <= max_key) {
            int frees = tree_bool(tree, T_FREES);
            if (frees < 0)
                return NULL;
            PyObject *done = frees ? Py_NewRef(Py_None) : put_over_of(tree, args[0], args[1]);
            if (done == NULL)
                return NULL;
            if (done != Py_None) {
                Py_DECREF(done);
                PyObject *puts1 = PyNumber_Add(puts, one);
                if (puts1 == NULL)
                    return NULL;
                Py_SETREF(SLOT(tx, tx_off[X_PUTS]), puts1);
                Py_XSETREF(SLOT(tx, tx_off[X_TOUCHED]), Py_NewRef(args[0]));
                Py_RETURN_NONE;
            }
            Py_DECREF(done);
        }
    }
    /* the Python method: (tx, *args) with the keywords' values after them */
    Py_ssize_t n = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    PyObject *small[8], **all = n < 8 ? small : PyMem_New(PyObject *, n + 1);
    if (all == NULL)
        return PyErr_NoMemory();
    all[0] = tx;
    for (Py_ssize_t i = 0; i < n; i++)
        all[i + 1] = args[i];
    PyObject *out = PyObject_Vectorcall(tx_fallback, all, nargs + 1, kwnames);
    if (all != small)
        PyMem_Free(all);
    return out;
}

static PyMethodDef tx_put_def = {
    "__setitem__", (PyCFunction)(void (*)(void))tx_put, METH_FASTCALL | METH_KEYWORDS,
    "Set key to value (transaction.py's Transaction.__setitem__, its common case in C)."};

PyObject *
put_method(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[0]) || !PyCallable_Check(args[1]) ||
            !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "put_method(cls, fallback, tree_cls)");
        return NULL;
    }
    Py_ssize_t off[NX];
    for (int a = 0; a < NX; a++) {
        PyObject *d = PyObject_GetAttrString(args[0], tx_names[a]);
        off[a] = slot_offset(d);
        Py_XDECREF(d);
        if (off[a] < 0) {
            PyErr_Clear();
            return PyErr_Format(PyExc_TypeError, "put_method(): %R has no slot %s", args[0],
                                tx_names[a]);
        }
    }
    memcpy(tx_off, off, sizeof off);
    Py_XSETREF(tx_fallback, Py_NewRef(args[1]));
    Py_XSETREF(tx_tree_type, Py_NewRef(args[2]));
    return PyDescr_NewMethod((PyTypeObject *)args[0], &tx_put_def);
}
