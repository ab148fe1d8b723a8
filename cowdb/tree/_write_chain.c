/* A delta chain applied (one file of cowdb.tree._write_c, see _write_c.h): the images of
 * a chain, its full image first and then each delta on the one before, made into the full
 * image the last one stands for, on the images' bytes. The mapped search reads a delta's
 * full image (PageMap.made); made through nodes (btree.py's NodeCache.full_image: each
 * image decoded, each delta applied to lists, the result encoded again) a first read of a
 * chain cost ~40 µs. Formats: node.py and docs/format.md. */
#include "_write_c.h"

/* One entry of a node, pointing into the image that holds it: a leaf's key and value
 * (vlen_field: the value length as written, OVERFLOW_FLAG marking a 32-byte overflow
 * reference), or a branch's key and its 32-byte (page, count, checksum, txn). */
typedef struct {
    const unsigned char *key, *val;
    unsigned long klen, vlen_field;
} Entry;

#define OVERFLOW_FLAG 0x80000000UL

/* The bytes a leaf value takes in its image, by its length field. */
static unsigned long
val_size(unsigned long vlen_field)
{
    return vlen_field & OVERFLOW_FLAG ? OVERFLOW_REF : vlen_field;
}

/* The m entries laid out from ``at`` in the image d of len bytes (a leaf's: m key
 * lengths, m value lengths, the keys, the values; a branch's: m key lengths, m 32-byte
 * references, the keys) into out; the offset past them, or -1 when they do not fit. */
static Py_ssize_t
read_entries(const unsigned char *d, Py_ssize_t len, Py_ssize_t at, Py_ssize_t m,
             int is_leaf, Entry *out)
{
    Py_ssize_t fixed = is_leaf ? LEAF_ENTRY : BRANCH_ENTRY;
    if (at < 0 || m < 0 || at + fixed * m > len)
        return -1;
    Py_ssize_t pos = at + fixed * m;
    for (Py_ssize_t i = 0; i < m; i++) {
        out[i].klen = (unsigned long)get_le(d + at + 2 * i, 2);
        out[i].key = d + pos;
        pos += (Py_ssize_t)out[i].klen;
        if (is_leaf)
            out[i].vlen_field = (unsigned long)get_le(d + at + 2 * m + 4 * i, 4);
        else
            out[i].val = d + at + 2 * m + 32 * i;
    }
    if (pos > len)
        return -1;
    if (is_leaf) {
        for (Py_ssize_t i = 0; i < m; i++) {
            out[i].val = d + pos;
            pos += (Py_ssize_t)val_size(out[i].vlen_field);
            if (pos > len)
                return -1;
        }
    }
    return pos;
}

/* A bytes object's buffer and the header fields a chain needs: kind, n, length (checked
 * against the bytes). 0, or -1 when the object is not bytes or too short. */
static int
header_of(PyObject *img, const unsigned char **d, int *kind, Py_ssize_t *n,
          Py_ssize_t *length)
{
    if (!PyBytes_CheckExact(img) || PyBytes_GET_SIZE(img) < HEADER_SIZE)
        return -1;
    *d = (const unsigned char *)PyBytes_AS_STRING(img);
    *kind = (*d)[8];
    *n = (Py_ssize_t)get_le(*d + 10, 2);
    *length = (Py_ssize_t)get_le(*d + 12, 4);
    return *length <= PyBytes_GET_SIZE(img) ? 0 : -1;
}

/* apply_chain(images): see _write_c.c. */
PyObject *
apply_chain(PyObject *Py_UNUSED(self), PyObject *images)
{
    if (!PyList_CheckExact(images) || PyList_GET_SIZE(images) < 1) {
        PyErr_SetString(PyExc_TypeError, "apply_chain(images): a list of bytes, the full "
                        "image first");
        return NULL;
    }
    const unsigned char *d;
    Py_ssize_t n, length;
    int kind;
    if (header_of(PyList_GET_ITEM(images, 0), &d, &kind, &n, &length) < 0 ||
            (kind != leaf_full_kind && kind != branch_full_kind))
        Py_RETURN_NONE;
    int is_leaf = kind == leaf_full_kind;
    Entry *cur = PyMem_Malloc(sizeof(Entry) * (size_t)(n ? n : 1)), *next = NULL, *put = NULL;
    PyObject *out = NULL;
    if (cur == NULL)
        return PyErr_NoMemory();
    if ((!is_leaf && n == 0) || read_entries(d, length, HEADER_SIZE, n, is_leaf, cur) != length)
        goto none;   /* (a full branch has entries: node.py's decode) */
    for (Py_ssize_t i = 1; i < PyList_GET_SIZE(images); i++) {
        Py_ssize_t n2, length2;
        if (header_of(PyList_GET_ITEM(images, i), &d, &kind, &n2, &length2) < 0 ||
                kind != (is_leaf ? leaf_kind : branch_kind) ||
                length2 < HEADER_SIZE + DELTA_HEAD)
            goto none;
        Py_ssize_t runs = (Py_ssize_t)get_le(d + HEADER_SIZE + 26, 2);
        Py_ssize_t at = HEADER_SIZE + DELTA_HEAD, m = 0;
        if (at + 6 * runs > length2)
            goto none;
        for (Py_ssize_t r = 0; r < runs; r++)
            m += (Py_ssize_t)get_le(d + at + 6 * r + 4, 2);
        PyMem_Free(put);
        PyMem_Free(next);
        put = PyMem_Malloc(sizeof(Entry) * (size_t)(m ? m : 1));
        next = PyMem_Malloc(sizeof(Entry) * (size_t)(n2 ? n2 : 1));
        if (put == NULL || next == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        if (read_entries(d, length2, at + 6 * runs, m, is_leaf, put) != length2)
            goto none;
        /* each run replaces the base's entries [at, at + cut) with its put entries; runs
         * come in order and do not overlap (node.py's apply_delta) */
        Py_ssize_t prev = 0, taken = 0, w = 0;
        for (Py_ssize_t r = 0; r < runs; r++) {
            Py_ssize_t ra = (Py_ssize_t)get_le(d + at + 6 * r, 2);
            Py_ssize_t cut = (Py_ssize_t)get_le(d + at + 6 * r + 2, 2);
            Py_ssize_t np = (Py_ssize_t)get_le(d + at + 6 * r + 4, 2);
            if (ra < prev || ra + cut > n || w + (ra - prev) + np > n2)
                goto none;
            memcpy(next + w, cur + prev, sizeof(Entry) * (size_t)(ra - prev));
            w += ra - prev;
            memcpy(next + w, put + taken, sizeof(Entry) * (size_t)np);
            w += np;
            taken += np;
            prev = ra + cut;
        }
        if (w + (n - prev) != n2)
            goto none;
        memcpy(next + w, cur + prev, sizeof(Entry) * (size_t)(n - prev));
        if (!is_leaf && (n2 == 0 || next[0].klen != 0))
            goto none;   /* every branch's first separator is empty (node.py's apply_delta) */
        Entry *t = cur;
        cur = next;
        next = t;
        n = n2;
    }
    /* the full image: header, lengths, references or values' lengths, keys, values */
    Py_ssize_t size = HEADER_SIZE + (is_leaf ? LEAF_ENTRY : BRANCH_ENTRY) * n;
    int overflow = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        size += (Py_ssize_t)cur[i].klen + (is_leaf ? (Py_ssize_t)val_size(cur[i].vlen_field)
                                                   : 0);
        overflow |= is_leaf && (cur[i].vlen_field & OVERFLOW_FLAG) != 0;
    }
    if (size > 0xFFFFFFFFLL || n > 0xFFFF)
        goto none;
    if ((out = PyByteArray_FromStringAndSize(NULL, size)) == NULL)
        goto fail;
    unsigned char *p = (unsigned char *)PyByteArray_AS_STRING(out);
    unsigned long long txn = get_le(d + 16, 8);   /* the last image's: the chain's head */
    p = put64(p, 0);
    *p++ = (unsigned char)(is_leaf ? leaf_full_kind : branch_full_kind);
    *p++ = (unsigned char)overflow;   /* node.py's HAS_OVERFLOW is 1 */
    p = put16(p, (unsigned)n);
    p = put32(p, (unsigned long)size);
    p = put64(p, txn);
    for (Py_ssize_t i = 0; i < n; i++)
        p = put16(p, (unsigned)cur[i].klen);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (is_leaf)   /* (an overflow reference's length as node.py writes it) */
            p = put32(p, cur[i].vlen_field & OVERFLOW_FLAG ? OVERFLOW_FLAG | OVERFLOW_REF
                                                           : cur[i].vlen_field);
        else {
            memcpy(p, cur[i].val, 32);
            p += 32;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        memcpy(p, cur[i].key, cur[i].klen);
        p += cur[i].klen;
    }
    if (is_leaf)
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned long vs = val_size(cur[i].vlen_field);
            memcpy(p, cur[i].val, vs);
            p += vs;
        }
    goto done;
none:
    out = Py_NewRef(Py_None);
    goto done;
fail:
    Py_CLEAR(out);
done:
    PyMem_Free(cur);
    PyMem_Free(next);
    PyMem_Free(put);
    return out;
}
