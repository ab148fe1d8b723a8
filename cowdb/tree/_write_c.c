/* cowdb.tree._write_c: the write path's node work in C (one concept per file, listed in
 * _write_c.h): node images encoded (full, delta,
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
 *     checksum.seal does; computed in C where it is xxhash's own, see _xxh3.h); each
 *     written node's base (the clean node it was copied from, as (node, page, checksum,
 *     txn)) is appended to the list superseded. Returns (page, checksum) of root's image.
 * own_path(tree, key)
 *     btree.py's Tree._descend for a tree that keeps what it replaces (not ``frees``):
 *     the path from the root to key's leaf owned (clean nodes copied, as Leaf.copy and
 *     Branch.copy do, with their bases), as (leaf, [(branch, index), ...]).
 * put_over(tree, key, val)
 *     btree.py's Tree.put of an inline value, in such a tree, over an inline value or as
 *     a new key (True: new, False: overwritten), splitting a full leaf of inline values
 *     whose parent has room; None (Tree.put does it) for a root leaf's split, a split
 *     that reaches the parent, a big leaf's, an overflow value, or a put over one.
 * put_method(cls, fallback, tree_cls)
 *     transaction.py's Transaction.__setitem__ as a method of cls (whose slots it reads):
 *     a bytes key of 1 to max_key bytes and a bytes value, no codec, put by put_over on
 *     the transaction's tree (of type tree_cls) with puts counted and the key touched;
 *     anything else, or what put_over leaves to Tree.put, by fallback(self, ...).
 * values_at(root, page, checksum, txn, key)
 *     compare.py's py_values_at: key's values (value, base value) in the dirty tree under
 *     root and in the tree at (page, checksum, txn) it was copied from, told by the undo
 *     record of key's leaf; None when that does not tell.
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
 * checked_leaf(data, checksum, txn, digest)
 *     btree.py's NodeCache.load past its read, for a leaf: the Leaf (txn set) that the bytes
 *     data decode to, when they are a full leaf image of inline values whose header
 *     carries the (checksum, txn) its parent recorded and whose checksum digest (called,
 *     or computed here where it is xxhash's) verifies; None for anything else (the
 *     Python then verifies and decodes, and raises Corruption naming what is wrong).
 * apply_chain(images)
 *     the full image (a bytearray, checksum left zero, txn the last image's) that a delta
 *     chain stands for: images are bytes, the chain's full image first, then each delta
 *     on the one before (read, verified and linked by the caller: btree.py's
 *     NodeCache.chain_images); None when they do not apply (the Python path then says
 *     why, as Corruption).
 */
#include "_write_c.h"

const char *field_names[NF] = {"keys", "vals", "kids", "counts", "sums", "txns", "size", "big",
                               "sig", "txn", "base", "chain", "undo"};
Py_ssize_t leaf_off[NF], branch_off[NF];
PyObject *leaf_type, *branch_type;
int leaf_kind, branch_kind;
int leaf_full_kind, branch_full_kind;
Py_ssize_t leaf_chain, branch_chain;
PyObject *zero, *one;
PyObject *restore_fn;

/* The offset of the slot a class attribute describes, or -1 when it is not an object
 * slot (or absent): what lets a node's and a Tree's fields be read without a lookup. */
Py_ssize_t
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

/* bind(Leaf, Branch, ...): what the module needs of node.py, found once (btree.py calls
 * it at import): the node classes' slot offsets and the image kinds and chain bounds. */
static PyObject *
bind(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 || !PyType_Check(args[0]) || !PyType_Check(args[1]) ||
            !PyCallable_Check(args[8])) {
        PyErr_SetString(PyExc_TypeError, "bind(Leaf, Branch, LEAF, BRANCH, LEAF_DELTA, "
                        "BRANCH_DELTA, LEAF_CHAIN, BRANCH_CHAIN, restore_base)");
        return NULL;
    }
    long lf = PyLong_AsLong(args[2]), bf = PyLong_AsLong(args[3]);
    long lk = PyLong_AsLong(args[4]), bk = PyLong_AsLong(args[5]);
    Py_ssize_t lc = PyLong_AsSsize_t(args[6]), bc = PyLong_AsSsize_t(args[7]);
    if (PyErr_Occurred())
        return NULL;
    if (lf < 0 || lf > 255 || bf < 0 || bf > 255 || lk < 0 || lk > 255 || bk < 0 || bk > 255 ||
            lc < 1 || lc > 0xFFFF || bc < 1 || bc > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "bind(): a kind or chain bound out of range");
        return NULL;
    }
    slot_offsets((PyTypeObject *)args[0], leaf_off);
    slot_offsets((PyTypeObject *)args[1], branch_off);
    static const int leaf_needs[] = {F_KEYS, F_VALS, F_SIZE, F_BIG, F_SIG, F_TXN, F_BASE,
                                     F_CHAIN, F_UNDO, -1};
    static const int branch_needs[] = {F_KEYS, F_KIDS, F_COUNTS, F_SUMS, F_TXNS, F_SIZE, F_SIG,
                                       F_TXN, F_BASE, F_CHAIN, F_UNDO, -1};
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
    Py_XSETREF(restore_fn, Py_NewRef(args[8]));
    leaf_full_kind = (int)lf;
    branch_full_kind = (int)bf;
    leaf_kind = (int)lk;
    branch_kind = (int)bk;
    leaf_chain = lc;
    branch_chain = bc;
    Py_RETURN_NONE;
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
    {"checked_leaf", (PyCFunction)(void (*)(void))checked_leaf, METH_FASTCALL,
     "checked_leaf(data, checksum, txn, digest): the Leaf a full image of inline values "
     "decodes to, when its header carries (checksum, txn) and its checksum verifies; else "
     "None."},
    {"drop", (PyCFunction)(void (*)(void))drop, METH_FASTCALL,
     "drop(nodes, bases): btree.py's NodeCache.drop (the superseded bases' nodes leave "
     "the cache where it still holds them; bases is emptied)."},
    {"rebase_image", (PyCFunction)(void (*)(void))rebase_image, METH_FASTCALL,
     "rebase_image(is_leaf, kind, node, image, fpage, txn): node.py's rebase_delta: node's "
     "image as a delta on the full image its base's chain starts from, or None"},
    {"put_over", (PyCFunction)(void (*)(void))put_over, METH_FASTCALL,
     "put_over(tree, key, val): btree.py's Tree.put for an inline value over an inline "
     "value in a tree that keeps what it replaces: False, or None (Tree.put does it)."},
    {"put_method", (PyCFunction)(void (*)(void))put_method, METH_FASTCALL,
     "put_method(cls, fallback, tree_cls): transaction.py's Transaction.__setitem__ as a "
     "method of cls: its common case in C, anything else by fallback(self, ...)."},
    {"values_at", (PyCFunction)(void (*)(void))values_at, METH_FASTCALL,
     "values_at(root, page, checksum, txn, key): compare.py's py_values_at: key's (value, "
     "base value) told by its leaf's undo record, or None."},
    {"own_path", (PyCFunction)(void (*)(void))own_path, METH_FASTCALL,
     "own_path(tree, key): btree.py's Tree._descend for a tree that keeps what it "
     "replaces: (leaf, [(branch, index), ...]), the path owned (copied) down to key's leaf."},
    {"write_tree", (PyCFunction)(void (*)(void))write_tree, METH_FASTCALL,
     "write_tree(root, txn, store, nodes, encode, overflows, digest, superseded): btree.py's "
     "Tree._write_node in C; (page, checksum) of the root written."},
    {"bind", (PyCFunction)(void (*)(void))bind, METH_FASTCALL,
     "bind(Leaf, Branch, LEAF, BRANCH, LEAF_DELTA, BRANCH_DELTA, LEAF_CHAIN, BRANCH_CHAIN, "
     "restore_base): what write_tree, own_path and full_image need of node.py."},
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
    {"apply_chain", apply_chain, METH_O,
     "apply_chain(images): the full image a delta chain stands for (its full image "
     "first, then each delta), checksum zero; None when the images do not apply."},
    {"dirty_kids", dirty_kids, METH_O,
     "dirty_kids(kids): the indexes of a branch's kids that are not ints."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_write_c", "The write path's node work in C (see _write_c.h for its files).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__write_c(void)
{
    if (!(zero = PyLong_FromLong(0)) || !(one = PyLong_FromLong(1)) || pass_init() < 0 ||
            put_init() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "API", API) < 0)
        Py_CLEAR(m);
    return m;
}

