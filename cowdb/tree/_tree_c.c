/* The optional C accelerator of cowdb.tree: the point-read descent of Tree.get.
 *
 * get(root, key, nodes) walks from a root node to the leaf that may hold `key`
 * and returns the leaf's value (bytes, or the Overflow object for Python to read),
 * or None.  It is the loop `py_get` in btree.py, line for line: in a branch the
 * child is kids[bisect_right(keys, key) - 1]; a clean child (an int page number)
 * is looked up in `nodes` (the NodeCache, a dict keyed by page number) and used
 * if the cached node's txn is the txn its parent recorded (txns[i]); else it is
 * loaded by calling nodes.load(page, sums[i], txns[i]);
 * a dirty child (a writer's node object) is taken as it is.
 *
 * Why C: at 1M keys a warm get spends ~4.5 us in that Python loop, against ~2 us
 * for lmdb's whole get; the loop is bisects and list/dict lookups, so C does the
 * same work with no interpreter in between (see docs/benchmarks.md, W2).
 *
 * Keys are compared with memcmp when both are exact bytes (always, for keys the
 * tree stores), else through Python's comparison.  No Python code runs during a
 * descent except nodes.load, after which nothing borrowed from before is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "_xxh3.h"

#define API 10 /* btree.API must match: bump both on any change of the module's
                  contract (9: branch_body moved to _write_c's full_image; 10: a
                  branch's sums and txns are arrays) */

static PyTypeObject *branch_type = NULL;   /* node.Branch, set by bind() */
static PyObject *s_keys, *s_kids, *s_sums, *s_txns, *s_txn, *s_vals, *s_load;
static PyObject *s_buf, *s_verified, *s_image, *s_unit, *s_made;

/* big-endian words at p: compared as numbers, they order as their bytes do */
static inline uint64_t
be64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
    v = __builtin_bswap64(v);
#elif !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_BIG_ENDIAN__
    v = ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
        ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
        ((uint64_t)p[6] << 8) | (uint64_t)p[7];
#endif
    return v;
}

/* compare key (k, kl) with the searched key (q, ql).  Keys are mostly short: up to 16
 * bytes are compared as two big-endian words (the second overlapping the first, whose
 * bytes were equal), which costs far less than memcmp's call and dispatch (callgrind: a
 * get at 100k keys of 15 bytes); longer keys go to memcmp. */
static inline int
kcmp(const unsigned char *k, Py_ssize_t kl, const char *q, Py_ssize_t ql)
{
    const unsigned char *b = (const unsigned char *)q;
    Py_ssize_t m = kl < ql ? kl : ql;
    if (m >= 8 && m <= 16) {
        uint64_t x = be64(k), y = be64(b);
        if (x == y) {
            x = be64(k + m - 8);
            y = be64(b + m - 8);
        }
        if (x != y)
            return x < y ? -1 : 1;
    }
    else if (m < 8) {
        for (Py_ssize_t i = 0; i < m; i++)
            if (k[i] != b[i])
                return k[i] < b[i] ? -1 : 1;
    }
    else {
        int c = memcmp(k, q, m);
        if (c)
            return c < 0 ? -1 : 1;
    }
    return kl < ql ? -1 : kl > ql;
}

/* the binary search of bisect_right (right = 1) or bisect_left (right = 0) over n keys,
 * CMP(mid) comparing key mid with the one searched (-1, 0, 1; -2 on error) */
#define BISECT(n, CMP, right)                                   \
    Py_ssize_t lo = 0, hi = (n);                                \
    while (lo < hi) {                                           \
        Py_ssize_t mid = lo + (hi - lo) / 2;                    \
        int c = CMP(mid);                                       \
        if (c == -2)                                            \
            return -1;                                          \
        if (c < 0 || ((right) && c == 0))                       \
            lo = mid + 1;                                       \
        else                                                    \
            hi = mid;                                           \
    }                                                           \
    return lo;

/* -1, 0, 1 as a <, ==, > b; -2 on error */
static int
compare(PyObject *a, PyObject *b)
{
    if (PyBytes_CheckExact(a) && PyBytes_CheckExact(b))
        return kcmp((const unsigned char *)PyBytes_AS_STRING(a), PyBytes_GET_SIZE(a),
                    PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
    int lt = PyObject_RichCompareBool(a, b, Py_LT);
    if (lt < 0)
        return -2;
    if (lt)
        return -1;
    int eq = PyObject_RichCompareBool(a, b, Py_EQ);
    return eq < 0 ? -2 : (eq ? 0 : 1);
}

/* bisect_right (right = 1) or bisect_left (right = 0) of key in a list; -1 on error */
static Py_ssize_t
bisect(PyObject *list, PyObject *key, int right)
{
#define LIST_CMP(mid) compare(PyList_GET_ITEM(list, mid), key)
    BISECT(PyList_GET_SIZE(list), LIST_CMP, right)
#undef LIST_CMP
}

static PyObject *
list_attr(PyObject *node, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(node, name);
    if (v != NULL && !PyList_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "a tree node's %U is not a list", name);
        Py_CLEAR(v);
    }
    return v;
}

/* node.<name>[i], a new reference; an error if that is not a list this long */
static PyObject *
list_item(PyObject *node, PyObject *name, Py_ssize_t i)
{
    PyObject *list = list_attr(node, name), *item = NULL;
    if (list == NULL)
        return NULL;
    if (i < PyList_GET_SIZE(list)) {
        item = PyList_GET_ITEM(list, i);
        Py_INCREF(item);
    }
    else {
        PyErr_Format(PyExc_ValueError, "a tree node's %U has no item %zd", name, i);
    }
    Py_DECREF(list);
    return item;
}

/* node.<name>[i] of a branch's counts, sums or txns (arrays of u64, see node.Branch),
 * a new reference */
static PyObject *
ref_item(PyObject *node, PyObject *name, Py_ssize_t i)
{
    PyObject *refs = PyObject_GetAttr(node, name);
    if (refs == NULL)
        return NULL;
    PyObject *item = PySequence_GetItem(refs, i);
    Py_DECREF(refs);
    return item;
}

/* the index of key in node.keys: bisect_right (right = 1) or bisect_left; -1 on error */
static Py_ssize_t
key_index(PyObject *node, PyObject *key, int right, int *found)
{
    PyObject *keys = list_attr(node, s_keys);
    if (keys == NULL)
        return -1;
    Py_ssize_t i = bisect(keys, key, right);
    if (found != NULL && i >= 0) {
        int c = i < PyList_GET_SIZE(keys) ? compare(PyList_GET_ITEM(keys, i), key) : 1;
        if (c == -2)
            i = -1;
        *found = c == 0;
    }
    Py_DECREF(keys);
    return i;
}

static PyObject *
tree_get(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "get(root, key, nodes) takes 3 arguments");
        return NULL;
    }
    PyObject *key = args[1], *nodes = args[2];
    if (branch_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cowdb.tree._tree_c.bind(Branch) was not called");
        return NULL;
    }
    if (!PyDict_Check(nodes)) {
        PyErr_SetString(PyExc_TypeError, "nodes must be the NodeCache (a dict)");
        return NULL;
    }
    PyObject *node = args[0], *child;
    Py_INCREF(node);
    while (Py_TYPE(node) == branch_type) {
        Py_ssize_t i = key_index(node, key, 1, NULL) - 1;
        if (i < -1)
            goto fail;
        if (i < 0)
            i = 0;  /* key 0 of a branch is b"", below every key: never taken */
        PyObject *kid = list_item(node, s_kids, i);
        if (kid == NULL)
            goto fail;
        if (PyLong_CheckExact(kid)) {  /* clean: cached by (page, txn), or loaded */
            PyObject *txn = ref_item(node, s_txns, i);
            if (txn == NULL) {
                Py_DECREF(kid);
                goto fail;
            }
            child = PyDict_GetItemWithError(nodes, kid);
            if (child != NULL) {
                Py_INCREF(child);
                PyObject *ctxn = PyObject_GetAttr(child, s_txn);
                int same = ctxn == NULL ? -1 : PyObject_RichCompareBool(ctxn, txn, Py_EQ);
                Py_XDECREF(ctxn);
                if (same < 0)
                    Py_CLEAR(child);
                else if (!same) {  /* the page was rewritten since: not this image */
                    Py_CLEAR(child);
                    PyObject *sum = ref_item(node, s_sums, i);
                    if (sum != NULL)
                        child = PyObject_CallMethodObjArgs(nodes, s_load, kid, sum, txn, NULL);
                    Py_XDECREF(sum);
                }
            }
            else if (!PyErr_Occurred()) {
                PyObject *sum = ref_item(node, s_sums, i);
                if (sum != NULL)
                    child = PyObject_CallMethodObjArgs(nodes, s_load, kid, sum, txn, NULL);
                Py_XDECREF(sum);
            }
            Py_DECREF(txn);
            Py_DECREF(kid);
        }
        else {  /* a writer's dirty child */
            child = kid;
        }
        if (child == NULL)
            goto fail;
        Py_SETREF(node, child);
    }
    int found = 0;
    Py_ssize_t i = key_index(node, key, 0, &found);
    if (i < 0)
        goto fail;
    PyObject *result = found ? list_item(node, s_vals, i) : Py_NewRef(Py_None);
    Py_DECREF(node);
    return result;
fail:
    Py_DECREF(node);
    return NULL;
}


/* ---- the mapped descent: tree/mapped.py's py_map_get in C ----------------------
 *
 * map_get(pagemap, page, checksum, txn, key) searches page images (docs/format.md)
 * in place: pagemap.buf is the read-only map of the file, pagemap.verified the
 * pages (page -> txn) whose images were verified in this process, pagemap.image
 * (page, checksum, txn) the one source of an image not verified yet (it verifies
 * it, and returns a buffer holding it).  Every offset is checked against the image's
 * length, so a damaged image that passed its checksum raises Corruption (through
 * the `corrupt` callable bound below), never reads outside it.
 */
static PyObject *corrupt = NULL;  /* errors.Corruption, set by bind_map() */

static inline unsigned long long
le64(const unsigned char *p)
{
    unsigned long long v;
    memcpy(&v, p, 8);
    return v;
}

static inline unsigned
le16(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#else
    return (unsigned)p[0] | ((unsigned)p[1] << 8);
#endif
}

static inline unsigned
le32(const unsigned char *p)
{
    unsigned v;
    memcpy(&v, p, 4);
    return v;
}

static PyObject *
damaged(unsigned long long page, const char *what)
{
    PyObject *e = PyObject_CallFunction(corrupt, "NK", PyUnicode_FromFormat(
        "page %llu does not decode as a tree node: %s", page, what), page);
    if (e != NULL) {
        PyErr_SetObject(corrupt, e);
        Py_DECREF(e);
    }
    return NULL;
}


/* SIGBUS guard: the file truncated under the map (by another process) makes reading a
 * mapped page raise SIGBUS.  While map_get reads mapped bytes (and only then: no Python
 * code runs inside), in_map is set and the handler jumps back, so the get raises
 * Corruption instead of killing the interpreter. */
static volatile sig_atomic_t in_map = 0;  /* map_get holds the GIL: one thread at a time */

/* set in_map with compiler barriers on both sides: a read of the map must not be moved
 * out of (or a guarded read's result used before) the guarded stretch */
#if defined(__GNUC__)
#define BARRIER() __asm__ __volatile__("" ::: "memory")
#else
#define BARRIER() ((void)0)
#endif
#define GUARD(on) do { BARRIER(); in_map = (on); BARRIER(); } while (0)
static sigjmp_buf map_jump;
static struct sigaction old_bus;

static void
on_sigbus(int sig, siginfo_t *info, void *ctx)
{
    if (in_map) {
        GUARD(0);
        siglongjmp(map_jump, 1);
    }
    if (old_bus.sa_flags & SA_SIGINFO && old_bus.sa_sigaction != NULL)
        old_bus.sa_sigaction(sig, info, ctx);
    else if (old_bus.sa_handler != SIG_DFL && old_bus.sa_handler != SIG_IGN)
        old_bus.sa_handler(sig);
    else {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

#define SMALLN 1024  /* offsets of up to this many keys live on the stack */

/* offsets of an image's n keys: off[j] .. off[j + 1]; the end of the keys, or -1 */
static Py_ssize_t
key_offsets(const unsigned char *d, unsigned n, Py_ssize_t base, uint32_t *off)
{
    Py_ssize_t o = base;
    for (unsigned j = 0; j < n; j++) {
        off[j] = (uint32_t)o;
        o += le16(d + 24 + 2 * j);
    }
    off[n] = (uint32_t)o;
    return o;
}

/* bisect over the keys: right = 1 bisect_right, else bisect_left */
static Py_ssize_t
key_bisect(const unsigned char *d, const uint32_t *off, unsigned n, const char *q,
           Py_ssize_t ql, int right)
{
#define IMAGE_CMP(mid) kcmp(d + off[mid], off[mid + 1] - off[mid], q, ql)
    BISECT(n, IMAGE_CMP, right)
#undef IMAGE_CMP
}

/* Whether the n lengths of w bytes each at p are all equal but the first: then *first
 * is the first and *rest every other (one memcmp of the array against itself shifted by
 * one entry).  Such nodes are the common case (keys of one length, formatted ids or
 * fixed-size hashes; a branch's first key is empty): an entry's offset is then
 * arithmetic, ENTRY_AT, and a search bisects without first summing every length. */
static int
one_length(const unsigned char *p, unsigned n, unsigned w, Py_ssize_t *first,
           Py_ssize_t *rest)
{
    if (n > 2 && memcmp(p + w, p + 2 * w, (size_t)w * (n - 2)) != 0)
        return 0;
    *first = n == 0 ? 0 : w == 2 ? (Py_ssize_t)le16(p) : (Py_ssize_t)le32(p);
    *rest = n < 2 ? 0 : w == 2 ? (Py_ssize_t)le16(p + w) : (Py_ssize_t)le32(p + w);
    return 1;
}

/* where entry j starts, after the entries before it (see one_length) */
#define ENTRY_AT(j, first, rest) ((j) ? (first) + ((Py_ssize_t)(j) - 1) * (rest) : 0)

/* key_bisect over n keys laid out as one_length found them, the first at k */
static inline Py_ssize_t
fixed_bisect(const unsigned char *k, Py_ssize_t first, Py_ssize_t rest, unsigned n,
             const char *q, Py_ssize_t ql, int right)
{
#define FIXED_CMP(mid) kcmp(k + ENTRY_AT(mid, first, rest), (mid) ? rest : first, q, ql)
    BISECT(n, FIXED_CMP, right)
#undef FIXED_CMP
}

/* PageMap's buf, verified and unit: read through the slots' offsets when pm is a PageMap
 * (bind_map gave its class), else by name */
static PyTypeObject *pagemap_type = NULL;
static Py_ssize_t off_buf = -1, off_verified = -1, off_unit = -1, off_made = -1;

static PyObject *
pm_field(PyObject *pm, Py_ssize_t offset, PyObject *name)
{
    if (Py_TYPE(pm) == pagemap_type && offset >= 0) {
        PyObject *v = *(PyObject **)((char *)pm + offset);
        if (v == NULL)
            PyErr_Format(PyExc_AttributeError, "the page map has no %U yet", name);
        return Py_XNewRef(v);
    }
    return PyObject_GetAttr(pm, name);
}

/* branch pages a Root found verified (page + 1 and txn, by page modulo SEEN; 0: empty):
 * the upper levels of its tree are then not looked up in pagemap.verified on every read
 * (leaves are not kept: a get reads one of thousands, and each pushed a branch out).
 * Sound while the Root lives: its pages are pinned, and forget_txn only drops txns
 * newer than any committed one; a closed page map has an empty map, so nothing is read
 * in place whatever this says. For a delta, which is never read in place, ``made`` holds
 * (a reference to) the full image pagemap.made gave for it: (page, txn) names one image
 * for the file's life, so its materialised bytes stay right, and the upper levels of a
 * tree written by many versions (mostly deltas) are not looked up in two dicts and
 * fetched on every read either. */
#define SEEN 64
typedef struct {
    unsigned long long page[SEEN], txn[SEEN];
    PyObject *made[SEEN];   /* a delta's full image (bytes), or NULL */
} Seen;

/* A leaf or branch image copied out of the map, checked as PageMap.image checks one:
 * its header names the checksum and txn its parent recorded and the checksum (digest,
 * bound by bind_map) is right; then page -> txn goes into verified, as image() would
 * do.  1 if so, 0 if not (image() then says what is wrong, or reads what is not a whole
 * image at its page), -1 on error. */
static PyObject *digest = NULL;
static int digest_xxh3 = 0;  /* digest is xxhash's XXH3-64: computed here (_xxh3.h) */

static int
checked(PyObject *copied, unsigned long long sum, unsigned long long txn, PyObject *verified,
        PyObject *pk)
{
    const unsigned char *c = (const unsigned char *)PyBytes_AS_STRING(copied);
    Py_ssize_t len = PyBytes_GET_SIZE(copied);
    if (digest == NULL || len < 24 || (c[8] != 1 && c[8] != 2) || le64(c) != sum ||
            le64(c + 16) != txn || (Py_ssize_t)le32(c + 12) != len)
        return 0;
    unsigned long long hv;
    if (image_digest(digest, digest_xxh3, c, len, &hv) < 0)
        return -1;
    if (hv != sum)
        return 0;
    PyObject *to = PyLong_FromUnsignedLongLong(txn);
    int r = to == NULL ? -1 : PyDict_SetItem(verified, pk, to);
    Py_XDECREF(to);
    return r < 0 ? -1 : 1;
}

/* the verified image (page, sum, txn) of pagemap pm, as bytes (a new reference): a
 * delta's full image from pagemap.made; else a copy of the map at that page, checked
 * (unless pagemap.verified holds (page, txn) already: then only its header is); else
 * pagemap.image's answer (a delta materialised, or a damaged page raising). *is_made
 * (if not NULL) tells whether the answer is pagemap.made's image of a delta. */
static PyObject *
fetch(PyObject *pm, unsigned long long page_, unsigned long long sum, unsigned long long txn,
      int *is_made)
{
    volatile unsigned long long page = page_;  /* set before sigsetjmp, read after */
    PyObject *pso = NULL, *bufobj = NULL, *verified = NULL, *made = NULL, *pk = NULL;
    PyObject *volatile copied = NULL;
    PyObject *result = NULL;
    Py_buffer map = {0};
    Py_ssize_t psz;
    /* a delta's full image first: a get on a file of many versions finds most leaves
     * there, and needs nothing else of the page map */
    if ((made = pm_field(pm, off_made, s_made)) == NULL ||
        (pk = PyLong_FromUnsignedLongLong(page)) == NULL)
        goto done;
    if (!PyDict_Check(made)) {
        PyErr_SetString(PyExc_TypeError, "pagemap.made is not a dict");
        goto done;
    }
    PyObject *mi = PyDict_GetItemWithError(made, pk);
    if (mi != NULL && PyBytes_CheckExact(mi) && PyBytes_GET_SIZE(mi) >= 24 &&
            le64((const unsigned char *)PyBytes_AS_STRING(mi)) == sum &&
            le64((const unsigned char *)PyBytes_AS_STRING(mi) + 16) == txn) {
        result = Py_NewRef(mi);
        if (is_made != NULL)
            *is_made = 1;
        goto done;
    }
    if (PyErr_Occurred() ||
        (pso = pm_field(pm, off_unit, s_unit)) == NULL ||
        (psz = PyLong_AsSsize_t(pso)) <= 0 ||
        (bufobj = pm_field(pm, off_buf, s_buf)) == NULL ||
        PyObject_GetBuffer(bufobj, &map, PyBUF_SIMPLE) < 0 ||
        (verified = pm_field(pm, off_verified, s_verified)) == NULL)
        goto done;
    if (!PyDict_Check(verified)) {
        PyErr_SetString(PyExc_TypeError, "pagemap.verified is not a dict");
        goto done;
    }
    if (page < (unsigned long long)(PY_SSIZE_T_MAX / psz) &&
            (Py_ssize_t)page * psz + 24 <= map.len) {
        Py_ssize_t at = (Py_ssize_t)page * psz;
        if (sigsetjmp(map_jump, 0)) {
            Py_CLEAR(copied);
            damaged(page, "the file was truncated under its map (by another process?)");
            goto done;
        }
        GUARD(1);
        Py_ssize_t len = le32((const unsigned char *)map.buf + at + 12);
        GUARD(0);
        if (len >= 24 && len <= map.len - at) {
            if ((copied = PyBytes_FromStringAndSize(NULL, len)) == NULL)
                goto done;
            GUARD(1);
            memcpy(PyBytes_AS_STRING(copied), (const char *)map.buf + at, len);
            GUARD(0);
        }
    }
    if (copied != NULL) {
        const unsigned char *c = (const unsigned char *)PyBytes_AS_STRING(copied);
        PyObject *vt = PyDict_GetItemWithError(verified, pk);
        if (vt != NULL && PyLong_AsUnsignedLongLong(vt) == txn && (c[8] == 1 || c[8] == 2) &&
                le64(c) == sum && le64(c + 16) == txn) {
            result = copied;
            copied = NULL;
            goto done;
        }
        if (PyErr_Occurred())
            goto done;
        int ok = checked(copied, sum, txn, verified, pk);
        if (ok < 0)
            goto done;
        if (ok) {
            result = copied;
            copied = NULL;
            goto done;
        }
    }
    PyObject *so = PyLong_FromUnsignedLongLong(sum), *to = PyLong_FromUnsignedLongLong(txn);
    if (so != NULL && to != NULL)
        result = PyObject_CallMethodObjArgs(pm, s_image, pk, so, to,
                                            copied != NULL ? copied : Py_None, NULL);
    Py_XDECREF(so);
    Py_XDECREF(to);
    if (result != NULL && !PyBytes_CheckExact(result))
        Py_SETREF(result, PyBytes_FromObject(result));
    if (result != NULL && is_made != NULL) {   /* a delta image() materialised just now */
        mi = PyDict_GetItemWithError(made, pk);
        *is_made = mi == result;
        if (mi == NULL && PyErr_Occurred())
            Py_CLEAR(result);
    }
done:
    GUARD(0);
    Py_XDECREF(copied);
    if (map.obj != NULL)
        PyBuffer_Release(&map);
    Py_XDECREF(pk);
    Py_XDECREF(verified);
    Py_XDECREF(made);
    Py_XDECREF(bufobj);
    Py_XDECREF(pso);
    return result;
}

/* the value under the key (q, ql) below the image (page, sum, txn) of pagemap pm: bytes,
 * an overflow reference (page, length, checksum, txn) as a tuple, or None.  With rank
 * (counting from *rank), how many keys sort before the key instead (an int): the
 * counts the branches on the way record of the entries before the one followed, and
 * the leaf's keys before the key. */
static PyObject *
search(PyObject *pm, unsigned long long page_, unsigned long long sum,
       unsigned long long txn, const char *q, Py_ssize_t ql, Seen *seen,
       unsigned long long *rank)
{
    /* volatile: set after sigsetjmp and read after a jump back */
    volatile unsigned long long page = page_;
    PyObject *bufobj = NULL, *verified = NULL, *pso = NULL;
    PyObject *volatile result = NULL;
    PyObject *volatile held = NULL;  /* an image pagemap.image returned, for this step */
    Py_buffer map = {0}, img = {0};
    uint32_t small[SMALLN + 1], *volatile off = small;
    Py_ssize_t psz;
    if ((pso = pm_field(pm, off_unit, s_unit)) == NULL ||
        (psz = PyLong_AsSsize_t(pso)) <= 0 ||
        (bufobj = pm_field(pm, off_buf, s_buf)) == NULL ||
        PyObject_GetBuffer(bufobj, &map, PyBUF_SIMPLE) < 0 ||
        (verified = pm_field(pm, off_verified, s_verified)) == NULL)
        goto done;
    if (!PyDict_Check(verified)) {
        PyErr_SetString(PyExc_TypeError, "pagemap.verified is not a dict");
        goto done;
    }
    if (sigsetjmp(map_jump, 0)) {
        damaged(page, "the file was truncated under its map (by another process?)");
        goto done;
    }
    for (;;) {
        GUARD(0);
        const unsigned char *d = NULL;
        Py_ssize_t dl = 0;
        PyObject *pk = NULL;
        int ok = 0;  /* verified in this process: seen by this root, or in pagemap.verified */
        int learn = 0;  /* verified by pagemap.verified: the seen slot takes it if a branch */
        if (page < (unsigned long long)(PY_SSIZE_T_MAX / psz)) {
            unsigned slot = (unsigned)(page % SEEN);
            if (seen != NULL && seen->page[slot] == page + 1 && seen->txn[slot] == txn) {
                if (seen->made[slot] == NULL)
                    ok = 1;
                else if (map.len > 0) {   /* a delta's full image, held by the Root (a
                                           * closed map is empty: fetch() then raises) */
                    if (held != NULL) {
                        PyBuffer_Release(&img);
                        Py_CLEAR(held);
                    }
                    held = Py_NewRef(seen->made[slot]);
                    if (PyObject_GetBuffer(held, &img, PyBUF_SIMPLE) < 0) {
                        Py_CLEAR(held);
                        goto done;
                    }
                    d = img.buf;
                    dl = img.len;
                }
            }
            else {
                if ((pk = PyLong_FromUnsignedLongLong(page)) == NULL)
                    goto done;
                PyObject *vt = PyDict_GetItemWithError(verified, pk);
                ok = vt != NULL && PyLong_AsUnsignedLongLong(vt) == txn;
                learn = ok && seen != NULL;   /* (remembered below if a branch) */
            }
        }
        /* verified and inside the map held: read it in place */
        if (ok) {
            Py_ssize_t start = (Py_ssize_t)page * psz;
            if (start + 24 <= map.len) {
                const unsigned char *h = (const unsigned char *)map.buf + start;
                GUARD(1);
                Py_ssize_t len = le32(h + 12);
                if (len >= 24 && len <= map.len - start) {
                    d = h;
                    dl = len;
                }
                else
                    GUARD(0);
            }
        }
        if (d == NULL) {
            if (PyErr_Occurred()) {
                Py_XDECREF(pk);
                goto done;
            }
            if (held != NULL) {
                PyBuffer_Release(&img);
                Py_CLEAR(held);
            }
            /* not verified yet (or not whole in the map): fetch() copies, verifies and
             * remembers it, or has pagemap.image say what is wrong.  It set the SIGBUS
             * guard's jump to itself: set it back here */
            int is_made = 0;
            held = fetch(pm, page, sum, txn, &is_made);
            if (held != NULL && PyObject_GetBuffer(held, &img, PyBUF_SIMPLE) < 0)
                Py_CLEAR(held);
            if (held == NULL) {
                Py_XDECREF(pk);
                goto done;
            }
            if (is_made && seen != NULL && img.len >= 24 &&
                    ((const unsigned char *)img.buf)[8] == 2) {
                /* a delta branch's full image: the Root holds it from now on (not a
                 * leaf's: a get reads one leaf of thousands, which would only push the
                 * branches out) */
                unsigned slot = (unsigned)(page % SEEN);
                Py_XSETREF(seen->made[slot], Py_NewRef(held));
                seen->page[slot] = page + 1;
                seen->txn[slot] = txn;
            }
            if (sigsetjmp(map_jump, 0)) {
                damaged(page, "the file was truncated under its map (by another process?)");
                goto done;
            }
            d = img.buf;
            dl = img.len;
        }
        Py_XDECREF(pk);
        GUARD(1);  /* d may be the map (or a view of it): guarded from here */
        if (dl < 24) {
            GUARD(0);
            damaged(page, "shorter than its header");
            goto done;
        }
        unsigned kind = d[8], n = le16(d + 10);
        Py_ssize_t length = le32(d + 12);
        if (length > dl) {
            GUARD(0);
            damaged(page, "its length is past its image");
            goto done;
        }
        if (n > SMALLN && off == small) {
            GUARD(0);
            off = PyMem_Malloc(sizeof(uint32_t) * 65537);
            if (off == NULL) {
                off = small;
                PyErr_NoMemory();
                goto done;
            }
        }
        GUARD(1);
        if (kind == 2 && n) {   /* a branch */
            if (learn) {   /* (not a leaf: a get reads one of thousands, each would push a
                            * branch out of its slot) */
                unsigned slot = (unsigned)(page % SEEN);
                seen->page[slot] = page + 1;
                seen->txn[slot] = txn;
                Py_CLEAR(seen->made[slot]);
            }
            Py_ssize_t base = 24 + 34 * (Py_ssize_t)n, k0, kl;
            int fixed = one_length(d + 24, n, 2, &k0, &kl);
            if (base > length || (fixed ? base + ENTRY_AT(n, k0, kl)
                                        : key_offsets(d, n, base, off)) > length) {
                GUARD(0);
                damaged(page, "entries past its end");
                goto done;
            }
            Py_ssize_t i = (fixed ? fixed_bisect(d + base, k0, kl, n, q, ql, 1)
                                  : key_bisect(d, off, n, q, ql, 1)) - 1;
            i = i > 0 ? i : 0;
            const unsigned char *e = d + 24 + 2 * (Py_ssize_t)n + 32 * i;
            if (rank != NULL) {  /* the keys of the entries before i: their counts */
                for (Py_ssize_t j = 0; j < i; j++)
                    *rank += le64(d + 24 + 2 * (Py_ssize_t)n + 32 * j + 8);
            }
            page = le64(e);
            sum = le64(e + 16);
            txn = le64(e + 24);
            continue;
        }
        if (kind != 1) {
            GUARD(0);
            damaged(page, "not a leaf or a branch");
            goto done;
        }
        Py_ssize_t base = 24 + 6 * (Py_ssize_t)n, pos, k0, kl;
        int fixed = one_length(d + 24, n, 2, &k0, &kl);
        if (base > length || (pos = fixed ? base + ENTRY_AT(n, k0, kl)
                                          : key_offsets(d, n, base, off)) > length) {
            GUARD(0);
            damaged(page, "entries past its end");
            goto done;
        }
        Py_ssize_t i = fixed ? fixed_bisect(d + base, k0, kl, n, q, ql, 0)
                             : key_bisect(d, off, n, q, ql, 0);
        if (rank != NULL) {  /* rank mode: how many keys sort before the key */
            GUARD(0);
            result = PyLong_FromUnsignedLongLong(*rank + (unsigned long long)i);
            goto done;
        }
        if (i == n || (fixed ? kcmp(d + base + ENTRY_AT(i, k0, kl), i ? kl : k0, q, ql)
                             : kcmp(d + off[i], off[i + 1] - off[i], q, ql)) != 0) {
            GUARD(0);
            result = Py_NewRef(Py_None);
            goto done;
        }
        const unsigned char *vl = d + 24 + 2 * (Py_ssize_t)n;
        Py_ssize_t v0, vn;  /* values of one length: no sum either */
        if (one_length(vl, n, 4, &v0, &vn))
            pos += ENTRY_AT(i, (v0 & 0x80000000) ? 32 : v0, (vn & 0x80000000) ? 32 : vn);
        else {
            for (Py_ssize_t j = 0; j < i; j++) {
                unsigned v = le32(vl + 4 * j);
                pos += (v & 0x80000000u) ? 32 : v;
            }
        }
        unsigned v = le32(vl + 4 * i);
        Py_ssize_t size = (v & 0x80000000u) ? 32 : v;
        if (pos + size > length) {
            GUARD(0);
            damaged(page, "values past its end");
            goto done;
        }
        if (v & 0x80000000u) {
            unsigned long long r[4];
            memcpy(r, d + pos, 32);
            GUARD(0);
            result = Py_BuildValue("(KKKK)", r[0], r[1], r[2], r[3]);
        }
        else {
            GUARD(0);
            result = PyBytes_FromStringAndSize(NULL, size);
            if (result != NULL) {
                GUARD(1);
                memcpy(PyBytes_AS_STRING(result), d + pos, size);
                GUARD(0);
            }
        }
        goto done;
    }
done:
    GUARD(0);
    if (held != NULL) {
        PyBuffer_Release(&img);
        Py_DECREF(held);
    }
    if (off != small)
        PyMem_Free(off);
    if (map.obj != NULL)
        PyBuffer_Release(&map);
    Py_XDECREF(verified);
    Py_XDECREF(bufobj);
    Py_XDECREF(pso);
    return result;
}

/* map_get (rank NULL) and map_rank: search() below (pagemap, page, checksum, txn) */
static PyObject *
mapped(PyObject *const *args, Py_ssize_t nargs, unsigned long long *rank)
{
    if (nargs != 5 || !PyBytes_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, rank == NULL
                        ? "map_get(pagemap, page, checksum, txn, key: bytes)"
                        : "map_rank(pagemap, page, checksum, txn, key: bytes)");
        return NULL;
    }
    if (corrupt == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cowdb.tree._tree_c.bind_map() was not called");
        return NULL;
    }
    unsigned long long page = PyLong_AsUnsignedLongLong(args[1]);
    unsigned long long sum = PyLong_AsUnsignedLongLong(args[2]);
    unsigned long long txn = PyLong_AsUnsignedLongLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    return search(args[0], page, sum, txn, PyBytes_AS_STRING(args[4]),
                  PyBytes_GET_SIZE(args[4]), NULL, rank);
}

static PyObject *
map_get(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    return mapped(args, nargs, NULL);
}

static PyObject *
map_rank(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long rank = 0;
    return mapped(args, nargs, &rank);
}

/* ---- Walk: the entries of a mapped tree in key order, no node built ------------
 *
 * Walk(pagemap, page, checksum, txn, start, stop, reverse, part, overflow) iterates the
 * entries with start <= key < stop (bytes, or None for no bound) below the root image
 * (page, checksum, txn), in key order or reversed: (key, value) pairs (part 0), keys
 * (part 1) or values (part 2); an overflow value is overflow(page, length, checksum,
 * txn)'s answer.  It is cursor.runs over page images: the path from the root to the
 * current leaf is kept as private copies of its branch images, each image (fetch()) is
 * copied out of the map under the SIGBUS guard and verified the first time its (page,
 * txn) is met in this process (checked(); a delta's full image comes from pagemap.made,
 * and anything else from pagemap.image, as in search()), then read from the copy, with
 * every offset checked against the image's length.  Nothing runs until the first next():
 * a damaged page raises Corruption there, as the Python cursor would.
 */
#define WALK_DEPTH 48  /* deeper than any tree of 64 KiB keys and 2^64 entries */

typedef struct {
    PyObject *img;      /* a branch image (bytes) on the path */
    Py_ssize_t i, n;    /* the entry followed, of its n */
} Level;

typedef struct {
    PyObject_HEAD
    PyObject *pm, *start, *stop, *overflow;
    PyObject *pair;            /* the last (key, value) handed out, reused when unshared */
    unsigned long long page, sum, txn;  /* the root */
    int reverse, part, state;  /* state: 0 not started, 1 walking, 2 at the last leaf,
                                  3 done */
    int busy;
    int depth;
    Level path[WALK_DEPTH];
    PyObject *leaf;            /* the current leaf image (bytes), or NULL */
    Py_ssize_t n, j, end;      /* its entries; the next one; forward: up to end (not
                                  included), reversed: down to end (included) */
    uint32_t *off, *voff;      /* its keys' and values' offsets (n + 1 each) */
    Py_ssize_t cap;            /* room in off and voff */
} Walk;

static PyTypeObject WalkType;

static int
walk_room(Walk *w, Py_ssize_t n)
{
    if (n + 1 <= w->cap)
        return 0;
    Py_ssize_t cap = n + 1 < 256 ? 256 : n + 1;
    uint32_t *off = PyMem_Realloc(w->off, sizeof(uint32_t) * cap);
    if (off != NULL)
        w->off = off;
    uint32_t *voff = off != NULL ? PyMem_Realloc(w->voff, sizeof(uint32_t) * cap) : NULL;
    if (voff == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->voff = voff;
    w->cap = cap;
    return 0;
}

/* make the leaf image img (a reference taken over) the current leaf: its offsets,
 * checked to fill the image exactly; 0, or -1 with Corruption set */
static int
walk_leaf(Walk *w, PyObject *img, unsigned long long page)
{
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(img);
    Py_ssize_t n = le16(d + 10), length = le32(d + 12);
    Py_ssize_t base = 24 + 6 * n;
    if (walk_room(w, n) < 0) {
        Py_DECREF(img);
        return -1;
    }
    const char *bad = base > length ? "entries past its end" : NULL;
    Py_ssize_t o = base;
    for (Py_ssize_t j = 0; j < n && bad == NULL; j++) {
        w->off[j] = (uint32_t)o;
        o += le16(d + 24 + 2 * j);
    }
    if (bad == NULL && o > length)
        bad = "keys past its end";
    w->off[n] = (uint32_t)o;
    const unsigned char *vl = d + 24 + 2 * n;
    for (Py_ssize_t j = 0; j < n && bad == NULL; j++) {
        w->voff[j] = (uint32_t)o;
        unsigned v = le32(vl + 4 * j);
        o += (v & 0x80000000u) ? 32 : v;
        if (o > length)
            bad = "values past its end";
    }
    if (bad == NULL && o != length)
        bad = "entries do not fill the image";
    if (bad != NULL) {
        Py_DECREF(img);
        damaged(page, bad);
        return -1;
    }
    w->voff[n] = (uint32_t)o;
    Py_XSETREF(w->leaf, img);
    w->n = n;
    return 0;
}

/* from the image (page, sum, txn) down to a leaf, the branches on the way pushed on the
 * path: in each, the entry bisect_right(key) - 1 (at least 0) if key is given, else the
 * first (the last, reversed); 0, or -1 with an error set */
static int
walk_down(Walk *w, unsigned long long page, unsigned long long sum, unsigned long long txn,
          PyObject *key)
{
    for (;;) {
        PyObject *img = fetch(w->pm, page, sum, txn, NULL);
        if (img == NULL)
            return -1;
        const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(img);
        Py_ssize_t dl = PyBytes_GET_SIZE(img);
        const char *bad = NULL;
        Py_ssize_t n = dl >= 24 ? le16(d + 10) : 0, length = dl >= 24 ? le32(d + 12) : 0;
        if (dl < 24)
            bad = "shorter than its header";
        else if (length > dl || length < 24)
            bad = "its length is past its image";
        else if (d[8] == 1)
            return walk_leaf(w, img, page);
        else if (d[8] != 2 || n == 0)
            bad = "not a leaf or a branch";
        else if (24 + 34 * n > length)
            bad = "entries past its end";
        else if (w->depth == WALK_DEPTH)
            bad = "deeper than any tree";
        Py_ssize_t i = w->reverse ? n - 1 : 0;
        if (bad == NULL && key != NULL) {
            if (walk_room(w, n) < 0) {
                Py_DECREF(img);
                return -1;
            }
            if (key_offsets(d, (unsigned)n, 24 + 34 * n, w->off) > length)
                bad = "entries past its end";
            else {
                i = key_bisect(d, w->off, (unsigned)n, PyBytes_AS_STRING(key),
                               PyBytes_GET_SIZE(key), 1) - 1;
                i = i > 0 ? i : 0;
            }
        }
        if (bad != NULL) {
            Py_DECREF(img);
            damaged(page, bad);
            return -1;
        }
        w->path[w->depth++] = (Level){img, i, n};
        const unsigned char *e = d + 24 + 2 * n + 32 * i;
        page = le64(e);
        sum = le64(e + 16);
        txn = le64(e + 24);
    }
}

/* the entries of the new current leaf to hand out: all of them but those outside
 * [start, stop) (start only bounds the first leaf forward, stop the first reversed) */
static void
walk_bounds(Walk *w, int first)
{
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(w->leaf);
    Py_ssize_t n = w->n, lo = 0, hi = n;
    if (w->start != Py_None && (first || w->reverse))
        lo = key_bisect(d, w->off, (unsigned)n, PyBytes_AS_STRING(w->start),
                        PyBytes_GET_SIZE(w->start), 0);
    if (w->stop != Py_None && (first || !w->reverse))
        hi = key_bisect(d, w->off, (unsigned)n, PyBytes_AS_STRING(w->stop),
                        PyBytes_GET_SIZE(w->stop), 0);
    if (w->reverse) {
        w->j = hi - 1;
        w->end = lo;
        w->state = lo > 0 ? 2 : 1;
    }
    else {
        w->j = lo;
        w->end = hi;
        w->state = hi < n ? 2 : 1;
    }
}

/* to the next leaf (the previous, reversed): 1, 0 past the last, -1 on error */
static int
walk_step(Walk *w)
{
    Py_CLEAR(w->leaf);
    while (w->depth > 0) {
        Level *top = &w->path[w->depth - 1];
        top->i += w->reverse ? -1 : 1;
        if (top->i >= 0 && top->i < top->n) {
            const unsigned char *e = (const unsigned char *)PyBytes_AS_STRING(top->img) +
                24 + 2 * top->n + 32 * top->i;
            return walk_down(w, le64(e), le64(e + 16), le64(e + 24), NULL) < 0 ? -1 : 1;
        }
        Py_CLEAR(top->img);
        w->depth--;
    }
    return 0;
}

/* entry j of the current leaf, as the part asked for */
static PyObject *
walk_item(Walk *w, Py_ssize_t j)
{
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(w->leaf);
    PyObject *k = NULL, *v = NULL;
    if (w->part != 2) {
        k = PyBytes_FromStringAndSize((const char *)d + w->off[j], w->off[j + 1] - w->off[j]);
        if (k == NULL || w->part == 1)
            return k;
    }
    const unsigned char *p = d + w->voff[j];
    if (le32(d + 24 + 2 * w->n + 4 * j) & 0x80000000u) {
        PyObject *leaf = Py_NewRef(w->leaf);  /* (the call runs Python code) */
        v = PyObject_CallFunction(w->overflow, "KKKK", le64(p), le64(p + 8), le64(p + 16),
                                  le64(p + 24));
        Py_DECREF(leaf);
    }
    else
        v = PyBytes_FromStringAndSize((const char *)p, w->voff[j + 1] - w->voff[j]);
    if (v == NULL || w->part == 2) {
        Py_XDECREF(k);
        return v;
    }
    PyObject *t = w->pair;
    if (t != NULL && Py_REFCNT(t) == 1) {  /* handed out and dropped: reuse it */
        PyObject *k0 = PyTuple_GET_ITEM(t, 0), *v0 = PyTuple_GET_ITEM(t, 1);
        PyTuple_SET_ITEM(t, 0, k);
        PyTuple_SET_ITEM(t, 1, v);
        Py_DECREF(k0);
        Py_DECREF(v0);
        if (!PyObject_GC_IsTracked(t))
            PyObject_GC_Track(t);
        return Py_NewRef(t);
    }
    t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(k);
        Py_DECREF(v);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, k);
    PyTuple_SET_ITEM(t, 1, v);
    Py_XSETREF(w->pair, Py_NewRef(t));
    return t;
}

static void
walk_release(Walk *w)
{
    Py_CLEAR(w->leaf);
    while (w->depth > 0) {  /* (Py_CLEAR names its argument twice) */
        w->depth--;
        Py_CLEAR(w->path[w->depth].img);
    }
}

/* the index in the current leaf of the next entry to hand out (the walk moved past it),
 * -1 past the last, -2 on error */
static Py_ssize_t
walk_advance(Walk *w)
{
    if (w->state == 0) {
        w->state = 1;
        PyObject *key = w->reverse ? w->stop : w->start;
        if (walk_down(w, w->page, w->sum, w->txn, key == Py_None ? NULL : key) < 0)
            return -2;
        walk_bounds(w, 1);
    }
    for (;;) {
        if (w->leaf != NULL && (w->reverse ? w->j >= w->end : w->j < w->end)) {
            Py_ssize_t j = w->j;
            w->j += w->reverse ? -1 : 1;
            return j;
        }
        if (w->state != 1)
            return -1;
        int r = walk_step(w);
        if (r <= 0)
            return r - 1;
        walk_bounds(w, 0);
    }
}

static PyObject *
walk_next_entry(Walk *w)
{
    Py_ssize_t j = walk_advance(w);
    return j < 0 ? NULL : walk_item(w, j);
}

static PyObject *
walk_next(Walk *w)
{
    if (w->busy) {
        PyErr_SetString(PyExc_ValueError, "a Walk is already running");
        return NULL;
    }
    if (w->state == 3)
        return NULL;
    w->busy = 1;
    PyObject *r = walk_next_entry(w);
    w->busy = 0;
    if (r == NULL) {  /* the end, or an error: nothing more comes */
        w->state = 3;
        walk_release(w);
    }
    return r;
}

/* walk.join(sep): the values still to come, joined by sep into one bytes object, with
 * no object made per value (a values walk only) */
static PyObject *
walk_join(Walk *w, PyObject *sep)
{
    if (!PyBytes_CheckExact(sep) || w->part != 2) {
        PyErr_SetString(PyExc_TypeError, "join(sep: bytes) joins a values walk");
        return NULL;
    }
    if (w->busy) {
        PyErr_SetString(PyExc_ValueError, "a Walk is already running");
        return NULL;
    }
    Py_ssize_t cap = 4096, used = 0, sl = PyBytes_GET_SIZE(sep);
    PyObject *out = PyBytes_FromStringAndSize(NULL, cap);
    if (out == NULL || w->state == 3)
        goto end;
    w->busy = 1;
    for (int first = 1;; first = 0) {
        Py_ssize_t j = walk_advance(w);
        if (j < 0) {
            if (j == -2)
                Py_CLEAR(out);
            break;
        }
        const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(w->leaf);
        PyObject *big = NULL;  /* an overflow value, read by the callback */
        const char *v = (const char *)d + w->voff[j];
        Py_ssize_t vl = w->voff[j + 1] - w->voff[j];
        if (le32(d + 24 + 2 * w->n + 4 * j) & 0x80000000u) {
            big = walk_item(w, j);
            if (big != NULL && !PyBytes_Check(big)) {
                PyErr_SetString(PyExc_TypeError, "an overflow value is not bytes");
                Py_CLEAR(big);
            }
            if (big == NULL) {
                Py_CLEAR(out);
                break;
            }
            v = PyBytes_AS_STRING(big);
            vl = PyBytes_GET_SIZE(big);
        }
        Py_ssize_t need = used + (first ? 0 : sl) + vl;
        if (need > cap) {
            cap = need > 2 * cap ? need : 2 * cap;
            if (_PyBytes_Resize(&out, cap) < 0) {
                Py_XDECREF(big);
                break;
            }
        }
        char *o = PyBytes_AS_STRING(out);
        if (!first) {
            memcpy(o + used, PyBytes_AS_STRING(sep), sl);
            used += sl;
        }
        memcpy(o + used, v, vl);
        used += vl;
        Py_XDECREF(big);
    }
    w->busy = 0;
end:
    w->state = 3;  /* consumed (or failed): nothing more comes */
    walk_release(w);
    if (out != NULL && _PyBytes_Resize(&out, used) < 0)
        return NULL;
    return out;
}

static PyMethodDef walk_methods[] = {
    {"join", (PyCFunction)walk_join, METH_O,
     "join(sep): the values still to come joined by sep (bytes), as sep.join(walk) "
     "but with no object made per value."},
    {NULL, NULL, 0, NULL},
};

static PyObject *
walk_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *pm, *start, *stop, *overflow;
    unsigned long long page, sum, txn;
    int reverse, part;
    if (kw != NULL && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "Walk() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OKKKOOpiO:Walk", &pm, &page, &sum, &txn, &start, &stop,
                          &reverse, &part, &overflow))
        return NULL;
    if ((start != Py_None && !PyBytes_CheckExact(start)) ||
            (stop != Py_None && !PyBytes_CheckExact(stop)) || part < 0 || part > 2) {
        PyErr_SetString(PyExc_TypeError, "Walk(pagemap, page, checksum, txn, start, stop: "
                        "bytes or None, reverse, part: 0 items 1 keys 2 values, overflow)");
        return NULL;
    }
    if (corrupt == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cowdb.tree._tree_c.bind_map() was not called");
        return NULL;
    }
    Walk *w = PyObject_GC_New(Walk, type);
    if (w == NULL)
        return NULL;
    w->pm = Py_NewRef(pm);
    w->start = Py_NewRef(start);
    w->stop = Py_NewRef(stop);
    w->overflow = Py_NewRef(overflow);
    w->pair = w->leaf = NULL;
    w->page = page;
    w->sum = sum;
    w->txn = txn;
    w->reverse = reverse;
    w->part = part;
    w->state = w->busy = w->depth = 0;
    w->n = w->j = w->end = 0;
    w->off = w->voff = NULL;
    w->cap = 0;
    PyObject_GC_Track(w);
    return (PyObject *)w;
}

static int
walk_traverse(Walk *w, visitproc visit, void *arg)
{
    Py_VISIT(w->pm);
    Py_VISIT(w->overflow);
    Py_VISIT(w->pair);
    return 0;
}

static int
walk_clear(Walk *w)
{
    w->state = 3;  /* (nothing more comes) */
    Py_CLEAR(w->pm);
    Py_CLEAR(w->overflow);
    Py_CLEAR(w->pair);
    return 0;
}

static void
walk_dealloc(Walk *w)
{
    PyObject_GC_UnTrack(w);
    walk_clear(w);
    walk_release(w);
    Py_CLEAR(w->start);
    Py_CLEAR(w->stop);
    PyMem_Free(w->off);
    PyMem_Free(w->voff);
    PyObject_GC_Del(w);
}

static PyTypeObject WalkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb.tree._tree_c.Walk",
    .tp_basicsize = sizeof(Walk),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Walk(pagemap, page, checksum, txn, start, stop, reverse, part, overflow): "
              "the entries of a mapped tree in key order (see _tree_c.c).",
    .tp_new = walk_new,
    .tp_dealloc = (destructor)walk_dealloc,
    .tp_traverse = (traverseproc)walk_traverse,
    .tp_clear = (inquiry)walk_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)walk_next,
    .tp_methods = walk_methods,
};


/* ---- Root: a version's root bound for point reads; GetMethod: a reader's get ----
 *
 * Root(pagemap, page, checksum, txn, max_key, decode) is map_get bound to one root:
 * root(key) is the value under key (decoded by decode unless that is None), None when
 * absent, or NotImplemented for what it leaves to Python (a key that is not bytes of
 * 1..max_key bytes, an overflow value).
 *
 * GetMethod(member, fallback) is a method for a class whose slot `member` (its member
 * descriptor) holds a Root or None: obj.get(key, default=None) asks the Root and returns
 * its answer (default for None), and calls fallback(obj, key, default) for the rest.
 * A Snapshot's get is one: one C call per point read, no Python frame.
 */
typedef struct {
    PyObject_HEAD
    PyObject *pm, *decode;
    unsigned long long page, sum, txn;
    Py_ssize_t max_key;
    vectorcallfunc vectorcall;
    Seen seen;
} Root;

static PyTypeObject RootType;

static PyObject *
root_search(Root *r, PyObject *key)
{
    if (!PyBytes_CheckExact(key) || PyBytes_GET_SIZE(key) < 1 ||
            PyBytes_GET_SIZE(key) > r->max_key)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *v = search(r->pm, r->page, r->sum, r->txn, PyBytes_AS_STRING(key),
                         PyBytes_GET_SIZE(key), &r->seen, NULL);
    if (v == NULL || v == Py_None)
        return v;
    if (!PyBytes_CheckExact(v)) {  /* an overflow value: Python reads it */
        Py_DECREF(v);
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (r->decode != Py_None)
        Py_SETREF(v, PyObject_CallOneArg(r->decode, v));
    return v;
}

static PyObject *
root_call(Root *r, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "a Root takes one key");
        return NULL;
    }
    return root_search(r, args[0]);
}

static PyObject *
root_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *pm, *decode;
    unsigned long long page, sum, txn;
    Py_ssize_t max_key;
    if (kw != NULL && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "Root() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OKKKnO:Root", &pm, &page, &sum, &txn, &max_key, &decode))
        return NULL;
    if (corrupt == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cowdb.tree._tree_c.bind_map() was not called");
        return NULL;
    }
    Root *r = (Root *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    r->pm = Py_NewRef(pm);
    r->decode = Py_NewRef(decode);
    r->page = page;
    r->sum = sum;
    r->txn = txn;
    r->max_key = max_key;
    r->vectorcall = (vectorcallfunc)root_call;
    memset(&r->seen, 0, sizeof r->seen);
    return (PyObject *)r;
}

static void
root_dealloc(Root *r)
{
    for (int i = 0; i < SEEN; i++)
        Py_XDECREF(r->seen.made[i]);
    Py_DECREF(r->pm);
    Py_DECREF(r->decode);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *
root_txn(Root *r, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(r->txn);
}

static PyGetSetDef root_getset[] = {
    {"txn", (getter)root_txn, NULL, "the txn of the root image", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

typedef struct {
    PyObject_HEAD
    PyTypeObject *owner;   /* the class whose slot holds the Root */
    Py_ssize_t offset;     /* that slot's offset in its instances */
    PyObject *fallback;
    vectorcallfunc vectorcall;
} GetMethod;

static PyTypeObject GetMethodType;

static PyObject *
getmethod_call(GetMethod *g, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && (nargs == 2 || nargs == 3) && PyObject_TypeCheck(args[0], g->owner)) {
        PyObject *root = *(PyObject **)((char *)args[0] + g->offset);
        if (root != NULL && Py_TYPE(root) == &RootType) {
            Py_INCREF(root);
            PyObject *v = root_search((Root *)root, args[1]);
            Py_DECREF(root);
            if (v == Py_None) {
                Py_DECREF(v);
                return Py_NewRef(nargs == 3 ? args[2] : Py_None);
            }
            if (v != Py_NotImplemented)
                return v;
            Py_DECREF(v);
        }
    }
    return PyObject_Vectorcall(g->fallback, args, nargsf, kwnames);
}

static PyObject *
getmethod_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *member, *fallback;
    if ((kw != NULL && PyDict_GET_SIZE(kw)) ||
            !PyArg_ParseTuple(args, "OO:GetMethod", &member, &fallback))
        return NULL;
    if (Py_TYPE(member) != &PyMemberDescr_Type ||
            ((PyMemberDescrObject *)member)->d_member->type != T_OBJECT_EX) {
        PyErr_SetString(PyExc_TypeError, "GetMethod() takes a __slots__ member descriptor");
        return NULL;
    }
    GetMethod *g = (GetMethod *)type->tp_alloc(type, 0);
    if (g == NULL)
        return NULL;
    g->owner = (PyTypeObject *)Py_NewRef(((PyDescrObject *)member)->d_type);
    g->offset = ((PyMemberDescrObject *)member)->d_member->offset;
    g->fallback = Py_NewRef(fallback);
    g->vectorcall = (vectorcallfunc)getmethod_call;
    return (PyObject *)g;
}

static PyObject *
getmethod_get(PyObject *self, PyObject *obj, PyObject *Py_UNUSED(type))
{
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static void
getmethod_dealloc(GetMethod *g)
{
    Py_DECREF(g->owner);
    Py_DECREF(g->fallback);
    Py_TYPE(g)->tp_free((PyObject *)g);
}

static PyTypeObject RootType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb.tree._tree_c.Root",
    .tp_basicsize = sizeof(Root),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Root(pagemap, page, checksum, txn, max_key, decode): map_get bound to a root.",
    .tp_new = root_new,
    .tp_dealloc = (destructor)root_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Root, vectorcall),
    .tp_getset = root_getset,
};

static PyTypeObject GetMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb.tree._tree_c.GetMethod",
    .tp_basicsize = sizeof(GetMethod),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "GetMethod(member, fallback): a get method reading the Root in a slot.",
    .tp_new = getmethod_new,
    .tp_dealloc = (destructor)getmethod_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(GetMethod, vectorcall),
    .tp_descr_get = getmethod_get,
};

/* the offset of cls's __slots__ member `name`, or -1 */
static Py_ssize_t
slot_offset(PyTypeObject *cls, PyObject *name)
{
    PyObject *d = PyDict_GetItemWithError(cls->tp_dict, name);
    if (d == NULL || Py_TYPE(d) != &PyMemberDescr_Type ||
            ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX)
        return -1;
    return ((PyMemberDescrObject *)d)->d_member->offset;
}

static PyObject *
bind_map(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[0]) || !PyType_Check(args[1]) ||
            !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "bind_map(Corruption, PageMap, digest)");
        return NULL;
    }
    Py_INCREF(args[2]);
    Py_XSETREF(digest, args[2]);
    digest_xxh3 = is_xxh3(digest);
    PyObject *cls = args[0];
    PyTypeObject *pmt = (PyTypeObject *)args[1];
    off_buf = slot_offset(pmt, s_buf);
    off_verified = slot_offset(pmt, s_verified);
    off_unit = slot_offset(pmt, s_unit);
    off_made = slot_offset(pmt, s_made);
    if (PyErr_Occurred())
        return NULL;
    Py_INCREF(pmt);
    Py_XSETREF(pagemap_type, pmt);
    Py_INCREF(cls);
    Py_XSETREF(corrupt, cls);
    static int installed = 0;
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &old_bus) < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        installed = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *
bind(PyObject *Py_UNUSED(self), PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "bind() takes the Branch class");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(branch_type, (PyTypeObject *)cls);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"get", (PyCFunction)(void (*)(void))tree_get, METH_FASTCALL,
     "get(root, key, nodes): the value stored under key below root (bytes or an "
     "Overflow), or None; the descent of btree.py's py_get."},
    {"map_get", (PyCFunction)(void (*)(void))map_get, METH_FASTCALL,
     "map_get(pagemap, page, checksum, txn, key): mapped.py's py_map_get in C."},
    {"map_rank", (PyCFunction)(void (*)(void))map_rank, METH_FASTCALL,
     "map_rank(pagemap, page, checksum, txn, key): how many keys below the root sort "
     "before key; Tree.rank over the mapped images."},
    {"bind_map", (PyCFunction)(void (*)(void))bind_map, METH_FASTCALL,
     "bind_map(Corruption, PageMap, digest): the error a damaged image raises, the page "
     "map's class, the checksum function of an image's bytes after its first 8."},
    {"bind", bind, METH_O, "bind(Branch): the class whose instances are branch nodes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tree_c", "The C descent of cowdb.tree's point reads.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__tree_c(void)
{
    if (!(s_keys = PyUnicode_InternFromString("keys")) ||
        !(s_kids = PyUnicode_InternFromString("kids")) ||
        !(s_sums = PyUnicode_InternFromString("sums")) ||
        !(s_txns = PyUnicode_InternFromString("txns")) ||
        !(s_txn = PyUnicode_InternFromString("txn")) ||
        !(s_vals = PyUnicode_InternFromString("vals")) ||
        !(s_load = PyUnicode_InternFromString("load")) ||
        !(s_buf = PyUnicode_InternFromString("buf")) ||
        !(s_verified = PyUnicode_InternFromString("verified")) ||
        !(s_image = PyUnicode_InternFromString("image")) ||
        !(s_made = PyUnicode_InternFromString("made")) ||
        !(s_unit = PyUnicode_InternFromString("unit")))
        return NULL;
    if (PyType_Ready(&RootType) < 0 || PyType_Ready(&GetMethodType) < 0 ||
            PyType_Ready(&WalkType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "API", API) < 0 ||
            PyModule_AddObjectRef(m, "Root", (PyObject *)&RootType) < 0 ||
            PyModule_AddObjectRef(m, "GetMethod", (PyObject *)&GetMethodType) < 0 ||
            PyModule_AddObjectRef(m, "Walk", (PyObject *)&WalkType) < 0))
        Py_CLEAR(m);
    return m;
}
