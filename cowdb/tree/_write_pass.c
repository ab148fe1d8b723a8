/* The commit's write pass (one file of cowdb.tree._write_c, see _write_c.h): btree.py's
 * Tree._write_node in C. Every dirty node below the root is written bottom-up, each as a
 * delta on its base where it can be, at its chain's bound as a delta on the chain's full
 * image, else in full; placed in the store's current run as PageStore.place does and
 * cached as NodeCache.put does. */
#include "_write_c.h"
#include "_xxh3.h"

#ifndef _WIN32
#include <unistd.h>   /* pread: a rebase reads its full image straight from the file */
#endif

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
    int xxh3;                   /* digest is xxhash's XXH3-64: computed here (_xxh3.h) */
    int fd;                     /* the store's file (io.fd), -1: read by store.read; */
    int fd_known;               /* ... looked up at the first rebase */
    Py_ssize_t page_size;
} Writer;

static PyObject *s__run, *s_page_count, *s_put, *s_pages_written,
    *s_bytes_written, *s_read, *s_allocate;

int
pass_init(void)
{
    return (s__run = PyUnicode_InternFromString("_run")) &&
        (s_page_count = PyUnicode_InternFromString("page_count")) &&
        (s_put = PyUnicode_InternFromString("put")) &&
        (s_pages_written = PyUnicode_InternFromString("pages_written")) &&
        (s_bytes_written = PyUnicode_InternFromString("bytes_written")) &&
        (s_read = PyUnicode_InternFromString("read")) &&
        (s_allocate = PyUnicode_InternFromString("allocate")) ? 0 : -1;
}

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
            PyObject *units = run_back(w) < 0 ? NULL : PyLong_FromSsize_t(n);
            page = units == NULL ? NULL : PyObject_CallMethodOneArg(w->store, s_allocate,
                                                                    units);
            Py_XDECREF(units);
            if (page == NULL)
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
        if (image_digest(w->digest, w->xxh3, p, PyByteArray_GET_SIZE(image), &v) < 0)
            return -1;
        put64(p, v);
    }
    *sum = get_le(p, 8);
    return 0;
}

/* Write a branch's dirty children (bottom-up), their pages, checksums and txn into its
 * kids, sums and txns; the new list of their indexes, or NULL. A branch with an undo
 * record (it took its base's lists: node.py's restore_base) has its dirty children among
 * the record's indexes, and only those are looked at: the test of every child's type
 * touched every child's int, cold in a large tree. */
static PyObject *write_node(Writer *w, PyObject *node, unsigned long long *sum);

static PyObject *
write_kids(Writer *w, PyObject *node)
{
    PyObject *kids = list_of(node, F_KIDS), *dirty = NULL, *undo = NULL, *changed = NULL;
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
    if ((undo = field(node, F_UNDO)) == NULL)
        goto fail;
    if (undo != Py_None && (!PyDict_CheckExact(undo) || (changed = PyDict_Keys(undo)) == NULL ||
                            PyList_Sort(changed) < 0)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "write_tree(): a branch's undo record is not a "
                            "dict");
        goto fail;
    }
    Py_ssize_t tries = changed != NULL ? PyList_GET_SIZE(changed) : n;
    for (Py_ssize_t t = 0; t < tries; t++) {
        Py_ssize_t i = changed != NULL ? PyLong_AsSsize_t(PyList_GET_ITEM(changed, t)) : t;
        if (i == -1 && PyErr_Occurred())
            goto fail;
        if (i < 0 || i >= PyList_GET_SIZE(kids) || i >= n) {
            PyErr_SetString(PyExc_ValueError, "write_tree(): a branch's undo record is past "
                            "its children");
            goto fail;
        }
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
    Py_DECREF(undo);
    Py_XDECREF(changed);
    return dirty;
fail:
    for (Py_ssize_t j = 0; j < m; j++)
        Py_DECREF(pages[j]);
    PyMem_Free(at);
    PyMem_Free(sums);
    PyMem_Free(pages);
    Py_XDECREF(kids);
    Py_XDECREF(dirty);
    Py_XDECREF(undo);
    Py_XDECREF(changed);
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
    int ok = image_digest(w->digest, w->xxh3, buf, n, &sum) == 0 && sum == get_le(buf, 8);
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
                    image = NULL;
                    if (restore(node) < 0)   /* (Python compares with the base's lists) */
                        goto done;
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
    if (set_field(node, F_TXN, w->txn) < 0 || set_field(node, F_UNDO, Py_None) < 0)
        goto done;   /* (written, the node is clean: the undo record has served) */
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

PyObject *
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
    w.xxh3 = is_xxh3(w.digest);
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

