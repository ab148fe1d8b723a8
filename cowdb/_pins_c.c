/* The optional C accelerator of cowdb/locks.py: a process's reader pins.
 *
 * Pins is the twin of locks.py's PyPins: for each txn that open snapshots pin, how
 * many pin it, and the oldest of them published in this process's slot of the lock
 * file (a u64 in the mapped lock file, read by writers of every process).  Why C:
 * a snapshot's open + close is a pin and an unpin, and the Python twin spends most
 * of the ~1.5 us it used to take in them (a threading.Lock, a dict, two calls).  Here
 * every method runs under the GIL with no Python code inside, so they are atomic
 * with respect to each other without a lock: no pin is lost between a txn's last
 * unpin and a concurrent pin of the same txn.
 *
 * hold(txn) pins txn and returns a Pin whose release() (or deallocation, whichever
 * comes first) unpins it once: a Snapshot keeps its Pin, so closing it, or dropping it
 * unclosed, unpins with no __del__ in Python.
 *
 * used_slots and file_identity are the twins of locks.py's py_used_slots and
 * py_file_identity, the two checks a writer makes of the lock file at every commit: the
 * oldest txn other processes read, and that the lock file is still the one it locks.
 * In Python they were ~5% of a no-sync commit's instructions (a tuple of the 126 slots'
 * txns, and an os.stat_result built to read two of its fields).
 *
 * SnapshotBase is the twin of snapshot.py's _SnapshotBase: a snapshot's fields, its
 * construction and its close (__enter__, __exit__, close), which are all a snapshot's
 * open + close runs (W5), with no Python frame.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <structmember.h>
#include <sys/stat.h>

#define API 3  /* locks.py's PINS_API must match */

typedef struct {
    unsigned long long txn;
    Py_ssize_t count;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *entries;               /* the pinned txns, unordered; few (one per version read) */
    Py_ssize_t n, cap;
    unsigned long long slot_txn;  /* what the slot holds: the oldest pin, 0 for none */
    int frozen;                   /* between freeze() and thaw(): the slot only falls */
    Py_buffer slot;               /* the lock file's map while attached (slot.obj != NULL) */
    Py_ssize_t index;             /* the slot's u64 in it */
} Pins;

typedef struct {
    PyObject_HEAD
    Pins *pins;                   /* NULL once released */
    unsigned long long txn;
} Pin;

static PyTypeObject PinsType, PinType;

/* txn, or the slot's txn while frozen if that is older (0 is "none", the newest) */
static inline unsigned long long
floored(Pins *p, unsigned long long txn)
{
    return p->frozen && p->slot_txn && (!txn || p->slot_txn < txn) ? p->slot_txn : txn;
}

static void
set_slot(Pins *p, unsigned long long txn)
{
    txn = floored(p, txn);
    p->slot_txn = txn;
    if (p->slot.obj != NULL)
        __atomic_store_n((uint64_t *)p->slot.buf + p->index, (uint64_t)txn, __ATOMIC_RELEASE);
}

static unsigned long long
oldest(Pins *p)
{
    unsigned long long o = 0;
    for (Py_ssize_t j = 0; j < p->n; j++) {
        if (!o || p->entries[j].txn < o)
            o = p->entries[j].txn;
    }
    return o;
}

static int
do_pin(Pins *p, unsigned long long txn)
{
    Py_ssize_t i;
    for (i = 0; i < p->n; i++) {
        if (p->entries[i].txn == txn) {
            p->entries[i].count++;
            return 0;
        }
    }
    if (p->n == p->cap) {
        Py_ssize_t cap = p->cap ? 2 * p->cap : 8;
        Entry *e = PyMem_Realloc(p->entries, cap * sizeof(Entry));
        if (e == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        p->entries = e;
        p->cap = cap;
    }
    p->entries[p->n].txn = txn;
    p->entries[p->n].count = 1;
    p->n++;
    if (!p->slot_txn || txn < p->slot_txn)
        set_slot(p, txn);
    return 0;
}

static int
do_unpin(Pins *p, unsigned long long txn)
{
    for (Py_ssize_t i = 0; i < p->n; i++) {
        if (p->entries[i].txn != txn)
            continue;
        if (--p->entries[i].count)
            return 0;
        p->entries[i] = p->entries[--p->n];
        if (txn == p->slot_txn)
            set_slot(p, oldest(p));
        return 0;
    }
    PyObject *k = PyLong_FromUnsignedLongLong(txn);
    if (k != NULL) {
        PyErr_SetObject(PyExc_KeyError, k);
        Py_DECREF(k);
    }
    return -1;
}

static int
txn_arg(PyObject *o, unsigned long long *txn)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "a txn is an int, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    *txn = PyLong_AsUnsignedLongLong(o);
    return (*txn == (unsigned long long)-1 && PyErr_Occurred()) ? -1 : 0;
}

/* change(p, txn) for the txn o names */
static PyObject *
apply(Pins *p, PyObject *o, int (*change)(Pins *, unsigned long long))
{
    unsigned long long txn;
    if (txn_arg(o, &txn) < 0 || change(p, txn) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
pins_pin(Pins *p, PyObject *o)
{
    return apply(p, o, do_pin);
}

static PyObject *
pins_unpin(Pins *p, PyObject *o)
{
    return apply(p, o, do_unpin);
}

static PyObject *
pins_hold(Pins *p, PyObject *o)
{
    unsigned long long txn;
    if (txn_arg(o, &txn) < 0)
        return NULL;
    Pin *t = PyObject_New(Pin, &PinType);
    if (t == NULL)
        return NULL;
    if (do_pin(p, txn) < 0) {
        t->pins = NULL;
        Py_DECREF(t);
        return NULL;
    }
    Py_INCREF(p);
    t->pins = p;
    t->txn = txn;
    return (PyObject *)t;
}

static PyObject *
pins_oldest(Pins *p, PyObject *Py_UNUSED(ignored))
{
    unsigned long long o = floored(p, oldest(p));
    if (!o)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(o);
}

/* fork: from freeze() in the parent until thaw() (once the child has published its
 * own slot), the slot and oldest() only fall: a pin the child inherits stays covered
 * by the parent's slot even if the parent drops it meanwhile */
static PyObject *
pins_freeze(Pins *p, PyObject *Py_UNUSED(ignored))
{
    p->frozen = 1;
    Py_RETURN_NONE;
}

static PyObject *
pins_thaw(Pins *p, PyObject *Py_UNUSED(ignored))
{
    p->frozen = 0;
    set_slot(p, oldest(p));
    Py_RETURN_NONE;
}

static PyObject *
pins_counts(Pins *p, PyObject *Py_UNUSED(ignored))
{
    PyObject *d = PyDict_New();
    for (Py_ssize_t j = 0; d != NULL && j < p->n; j++) {
        PyObject *k = PyLong_FromUnsignedLongLong(p->entries[j].txn);
        PyObject *v = PyLong_FromSsize_t(p->entries[j].count);
        if (k == NULL || v == NULL || PyDict_SetItem(d, k, v) < 0)
            Py_CLEAR(d);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    return d;
}

static PyObject *
pins_detach(Pins *p, PyObject *Py_UNUSED(ignored))
{
    if (p->slot.obj != NULL)
        PyBuffer_Release(&p->slot);
    Py_RETURN_NONE;
}

static PyObject *
pins_attach(Pins *p, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "attach(lock file map, slot index)");
        return NULL;
    }
    Py_ssize_t index = PyLong_AsSsize_t(args[1]);
    if (index == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(args[0], &b, PyBUF_WRITABLE) < 0)
        return NULL;
    if (index < 0 || (size_t)index >= (size_t)b.len / 8 || ((uintptr_t)b.buf & 7)) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "attach(): the slot is outside the map");
        return NULL;
    }
    if (p->slot.obj != NULL)
        PyBuffer_Release(&p->slot);
    p->slot = b;
    p->index = index;
    set_slot(p, p->slot_txn);
    Py_RETURN_NONE;
}

static PyObject *
pins_after_fork(Pins *p, PyObject *Py_UNUSED(ignored))
{
    p->frozen = 0;  /* the child's slot, once attached, covers its pins; no lock to re-create */
    p->slot_txn = oldest(p);
    Py_RETURN_NONE;
}

static PyObject *
pins_slot_txn(Pins *p, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(p->slot_txn);
}

static PyObject *
pins_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) || (kw != NULL && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "Pins() takes no arguments");
        return NULL;
    }
    Pins *p = (Pins *)type->tp_alloc(type, 0);
    if (p != NULL) {
        p->entries = NULL;
        p->n = p->cap = 0;
        p->slot_txn = 0;
        p->frozen = 0;
        p->slot.obj = NULL;
        p->index = 0;
    }
    return (PyObject *)p;
}

static void
pins_dealloc(Pins *p)
{
    if (p->slot.obj != NULL)
        PyBuffer_Release(&p->slot);
    PyMem_Free(p->entries);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int
release_pin(Pin *t)
{
    Pins *p = t->pins;
    if (p == NULL)
        return 0;
    t->pins = NULL;
    int r = do_unpin(p, t->txn);
    Py_DECREF(p);
    return r;
}

static PyObject *
pin_release(Pin *t, PyObject *Py_UNUSED(ignored))
{
    if (release_pin(t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static void
pin_dealloc(Pin *t)
{
    if (t->pins != NULL) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        if (release_pin(t) < 0)
            PyErr_WriteUnraisable((PyObject *)t);
        PyErr_Restore(et, ev, tb);
    }
    PyObject_Free(t);
}

static PyObject *
pin_txn(Pin *t, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(t->txn);
}

static PyMethodDef pins_methods[] = {
    {"pin", (PyCFunction)pins_pin, METH_O, "pin(txn): one more reader of txn."},
    {"unpin", (PyCFunction)pins_unpin, METH_O, "unpin(txn): one reader of txn fewer."},
    {"hold", (PyCFunction)pins_hold, METH_O,
     "hold(txn): pin txn; the Pin returned unpins it when released or deallocated."},
    {"oldest", (PyCFunction)pins_oldest, METH_NOARGS, "The oldest pinned txn, or None."},
    {"counts", (PyCFunction)pins_counts, METH_NOARGS, "{txn: how many pins}."},
    {"attach", (PyCFunction)(void (*)(void))pins_attach, METH_FASTCALL,
     "attach(map, index): publish the oldest pin in u64 number index of map."},
    {"detach", (PyCFunction)pins_detach, METH_NOARGS, "Let go of the map (before closing it)."},
    {"freeze", (PyCFunction)pins_freeze, METH_NOARGS,
     "Before fork: the slot and oldest() rise no higher until thaw()."},
    {"thaw", (PyCFunction)pins_thaw, METH_NOARGS, "After fork, in the parent: end freeze()."},
    {"after_fork", (PyCFunction)pins_after_fork, METH_NOARGS,
     "In a forked child: end the parent's freeze()."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pins_getset[] = {
    {"slot_txn", (getter)pins_slot_txn, NULL, "the txn published in the slot (0: none)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef pin_methods[] = {
    {"release", (PyCFunction)pin_release, METH_NOARGS, "Unpin (once; later calls do nothing)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pin_getset[] = {
    {"txn", (getter)pin_txn, NULL, "the pinned txn", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PinsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb._pins_c.Pins",
    .tp_basicsize = sizeof(Pins),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The reader pins of one lock file in this process.",
    .tp_new = pins_new,
    .tp_dealloc = (destructor)pins_dealloc,
    .tp_methods = pins_methods,
    .tp_getset = pins_getset,
};

static PyTypeObject PinType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb._pins_c.Pin",
    .tp_basicsize = sizeof(Pin),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One pin of a txn, released by release() or when deallocated.",
    .tp_dealloc = (destructor)pin_dealloc,
    .tp_methods = pin_methods,
    .tp_getset = pin_getset,
};

/* ---- SnapshotBase ------------------------------------------------------------ */
static PyObject *unopened = NULL;  /* _tree before the first read (UNOPENED) */

typedef struct {
    PyObject_HEAD
    PyObject *db, *commit, *pin, *tree, *mget, *max_key, *codec;
    PyObject *weakrefs;
} SnapshotBase;

static int
base_init(SnapshotBase *s, PyObject *args, PyObject *kw)
{
    PyObject *db, *commit, *pin;
    if ((kw != NULL && PyDict_GET_SIZE(kw)) || PyTuple_GET_SIZE(args) != 3) {
        PyErr_SetString(PyExc_TypeError, "Snapshot(db, commit, pin) takes 3 arguments");
        return -1;
    }
    db = PyTuple_GET_ITEM(args, 0);
    commit = PyTuple_GET_ITEM(args, 1);
    pin = PyTuple_GET_ITEM(args, 2);
    Py_XSETREF(s->db, Py_NewRef(db));
    Py_XSETREF(s->commit, Py_NewRef(commit));
    Py_XSETREF(s->pin, Py_NewRef(pin));
    Py_XSETREF(s->tree, Py_NewRef(unopened));
    Py_XSETREF(s->mget, Py_NewRef(Py_None));
    return 0;
}

/* close: forget the tree and the bound root, release the pin (once) */
static PyObject *
base_close(SnapshotBase *s, PyObject *Py_UNUSED(ignored))
{
    Py_XSETREF(s->tree, Py_NewRef(Py_None));
    Py_XSETREF(s->mget, Py_NewRef(Py_None));
    PyObject *pin = s->pin;
    if (pin == NULL)
        Py_RETURN_NONE;
    if (Py_TYPE(pin) == &PinType) {
        if (release_pin((Pin *)pin) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    return PyObject_CallMethod(pin, "release", NULL);
}

static PyObject *
base_enter(PyObject *s, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(s);
}

static PyObject *
base_exit(SnapshotBase *s, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return base_close(s, NULL);
}

static int
base_traverse(SnapshotBase *s, visitproc visit, void *arg)
{
    Py_VISIT(s->db);
    Py_VISIT(s->commit);
    Py_VISIT(s->pin);
    Py_VISIT(s->tree);
    Py_VISIT(s->mget);
    Py_VISIT(s->max_key);
    Py_VISIT(s->codec);
    return 0;
}

static int
base_clear(SnapshotBase *s)
{
    Py_CLEAR(s->db);
    Py_CLEAR(s->commit);
    Py_CLEAR(s->pin);  /* a Pin unpins as it goes */
    Py_CLEAR(s->tree);
    Py_CLEAR(s->mget);
    Py_CLEAR(s->max_key);
    Py_CLEAR(s->codec);
    return 0;
}

/* (a subclass's type is released by subtype_dealloc, which calls this) */
static void
base_dealloc(SnapshotBase *s)
{
    PyObject_GC_UnTrack(s);
    if (s->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)s);
    base_clear(s);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMemberDef base_members[] = {
    {"_db", T_OBJECT_EX, offsetof(SnapshotBase, db), 0, NULL},
    {"_commit", T_OBJECT_EX, offsetof(SnapshotBase, commit), 0, NULL},
    {"_pin", T_OBJECT_EX, offsetof(SnapshotBase, pin), 0, NULL},
    {"_tree", T_OBJECT_EX, offsetof(SnapshotBase, tree), 0, NULL},
    {"_mget", T_OBJECT_EX, offsetof(SnapshotBase, mget), 0, NULL},
    {"_max_key", T_OBJECT_EX, offsetof(SnapshotBase, max_key), 0, NULL},
    {"_codec", T_OBJECT_EX, offsetof(SnapshotBase, codec), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef base_methods[] = {
    {"close", (PyCFunction)base_close, METH_NOARGS,
     "Close the snapshot: its pin is released (once), its pages may be reused."},
    {"__enter__", base_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))base_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SnapshotBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cowdb._pins_c.SnapshotBase",
    .tp_basicsize = sizeof(SnapshotBase),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A snapshot's fields, construction and close (snapshot.py's _SnapshotBase).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)base_init,
    .tp_dealloc = (destructor)base_dealloc,
    .tp_traverse = (traverseproc)base_traverse,
    .tp_clear = (inquiry)base_clear,
    .tp_members = base_members,
    .tp_methods = base_methods,
    .tp_weaklistoffset = offsetof(SnapshotBase, weakrefs),
};

/* used_slots(map, first, stride, count, own): [(i, txn)] for each slot i < count but own
 * whose u64 at byte first + stride * i of map is not 0 (read as Pins writes it) */
static PyObject *
used_slots(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t first, stride, count, own;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "used_slots(map, first, stride, count, own)");
        return NULL;
    }
    if ((first = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred())
        return NULL;
    if ((stride = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred())
        return NULL;
    if ((count = PyLong_AsSsize_t(args[3])) == -1 && PyErr_Occurred())
        return NULL;
    if ((own = PyLong_AsSsize_t(args[4])) == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *found = NULL;
    if (first < 0 || first % 8 || stride < 8 || stride % 8 || count < 0 ||
            (count && (first > view.len - 8 || count - 1 > (view.len - 8 - first) / stride))) {
        /* (aligned u64s inside the map; divided, not multiplied, so no size overflows) */
        PyErr_SetString(PyExc_ValueError, "used_slots(): the slots do not fit the map");
        goto done;
    }
    if ((found = PyList_New(0)) == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint64_t txn = __atomic_load_n((uint64_t *)((char *)view.buf + first + stride * i),
                                       __ATOMIC_ACQUIRE);
        if (!txn || i == own)
            continue;
        PyObject *pair = Py_BuildValue("(nK)", i, (unsigned long long)txn);
        if (pair == NULL || PyList_Append(found, pair) < 0) {
            Py_XDECREF(pair);
            Py_CLEAR(found);
            goto done;
        }
        Py_DECREF(pair);
    }
done:
    PyBuffer_Release(&view);
    return found;
}

/* file_identity(path): (st_dev, st_ino) of the file the bytes path names, or None where
 * stat() fails */
static PyObject *
file_identity(PyObject *Py_UNUSED(self), PyObject *path)
{
    if (!PyBytes_Check(path)) {
        PyErr_SetString(PyExc_TypeError, "file_identity(path): path is bytes");
        return NULL;
    }
    struct stat st;
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = stat(PyBytes_AS_STRING(path), &st);
    Py_END_ALLOW_THREADS
    if (r != 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(KK)", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
}

static PyMethodDef module_methods[] = {
    {"used_slots", (PyCFunction)(void (*)(void))used_slots, METH_FASTCALL,
     "used_slots(map, first, stride, count, own): [(slot, txn)] of the slots but own "
     "whose txn is not 0."},
    {"file_identity", (PyCFunction)file_identity, METH_O,
     "file_identity(path): (st_dev, st_ino) of the file path (bytes) names, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pins_c", "A process's reader pins (cowdb/locks.py).", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__pins_c(void)
{
    if (PyType_Ready(&PinsType) < 0 || PyType_Ready(&PinType) < 0 ||
            PyType_Ready(&SnapshotBaseType) < 0)
        return NULL;
    if (unopened == NULL && (unopened = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "API", API) < 0 ||
            PyModule_AddObjectRef(m, "Pins", (PyObject *)&PinsType) < 0 ||
            PyModule_AddObjectRef(m, "Pin", (PyObject *)&PinType) < 0 ||
            PyModule_AddObjectRef(m, "SnapshotBase", (PyObject *)&SnapshotBaseType) < 0 ||
            PyModule_AddObjectRef(m, "UNOPENED", unopened) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
