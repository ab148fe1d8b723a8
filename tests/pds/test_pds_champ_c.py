"""The C accelerator of the CHAMP trie (_champ_c.c) beside the Python one.

The rest of tests/pds runs on whichever implementation _champ picked at
import: C when it is built, pure Python with COWDB_PURE_PYTHON=1 (CI runs
the suite both ways).  This module checks, in one process, what that
cannot: both build the very same nodes, a trie built by either is read and
edited by the other (also halfway through a mutation), both raise what a
key's __eq__ or __hash__ raises and leave the map as it was, and the C code
stays memory-safe, and leaks no reference, when such a method edits the
mutation being walked.

The tests that compare or mix the two choose each implementation
explicitly, so they do not depend on the default; in the COWDB_PURE_PYTHON=1
run they would repeat the default run exactly, and are skipped there.
"""

import contextlib
import gc
import os
import random
import subprocess
import sys

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import rule
from test_pds_hash_trie import Collide, Interrupt, PMapMachine, PSetMachine, Value, shape

from cowdb.pds import PMap, PSet, _champ, pmap, pset
from cowdb.pds._champ import M64

try:
    from cowdb.pds import _champ_c
except ImportError:
    _champ_c = None

IMPLS = {"c": "c", "py": "python"} if _champ_c is not None else {"py": "python"}
DEFAULT = _champ.implementation()

needs_c = pytest.mark.skipif(_champ_c is None, reason="C accelerator not built: python setup.py build_ext --inplace")
repeated = pytest.mark.skipif(
    os.environ.get("COWDB_PURE_PYTHON") == "1",
    reason="chooses each implementation itself: the same as in the default run",
)


def both_ways(test):
    """For the tests that run the C code: skipped when it is not built, and
    in the pure-Python run, which would repeat them exactly."""
    return needs_c(repeated(test))


def use(impl):
    """Make ``impl`` ("c" or "py") the trie PMap and PSet run on, in this process."""
    _champ.select(IMPLS[impl])


def restore():
    _champ.select(DEFAULT)


@contextlib.contextmanager
def using(impl):
    use(impl)
    try:
        yield
    finally:
        restore()


def test_env_var_selects_the_implementation():
    """COWDB_PURE_PYTHON=1 at import means pure Python everywhere; else C if built."""
    code = (
        "from cowdb.pds import _champ, pmap, pset\n"
        "print(_champ.implementation(), pmap.assoc is _champ.assoc is pset.assoc,"
        " pmap.lookup is _champ.py_lookup, pmap.PMap.__mro__[1].__name__,"
        " pmap.PMapMutation.__mro__[1].__name__, pset.PSet.__mro__[1].__name__)"
    )
    env = dict(os.environ, COWDB_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["python", "True", "True", "_PyMap", "_PyMutation", "_PySet"]
    env.pop("COWDB_PURE_PYTHON")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    built = _champ_c is not None
    assert out.stdout.split() == ["c" if built else "python", "True", str(not built)] + (
        ["MapBase", "MutationBase", "SetBase"] if built else ["_PyMap", "_PyMutation", "_PySet"])


def test_a_stale_accelerator_falls_back_to_python():
    """A compiled module from an older checkout (not rebuilt after a pull) must not
    break the import or half-apply: pure Python, with a warning saying how to rebuild."""
    code = (
        "import sys, types, warnings\n"
        "stale = types.ModuleType('cowdb.pds._champ_c')\n"
        "stale.lookup = stale.assoc = lambda *a: None\n"
        "sys.modules['cowdb.pds._champ_c'] = stale\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from cowdb.pds import _champ, pmap, PMap\n"
        "print(_champ.implementation(), pmap.PMap.__mro__[1].__name__, PMap({1: 2})[1],"
        " 'build_ext' in str(caught[0].message))"
    )
    env = {k: v for k, v in os.environ.items() if k != "COWDB_PURE_PYTHON"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["python", "_PyMap", "2", "True"]


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_select_reaches_every_binding(impl):
    """After select(), no cowdb.pds module may still hold the other
    implementation's functions, or a test believed to run on one would run
    on the other."""
    chosen = _champ.IMPLEMENTATIONS[IMPLS[impl]]
    others = [fn for name, fns in _champ.IMPLEMENTATIONS.items() if name != IMPLS[impl] for fn in fns]
    with using(impl):
        assert (pmap.lookup, pmap.assoc, pmap.dissoc) == (pset.lookup, pset.assoc, pset.dissoc) == chosen[:3]
        assert tuple(getattr(_champ, name) for name in _champ._NAMES) == chosen
        for modname, mod in list(sys.modules.items()):
            if modname.startswith("cowdb.pds") and mod not in (None, _champ_c):
                for name, value in vars(mod).items():
                    if not name.startswith("py_"):
                        assert not any(value is fn for fn in others), f"{modname}.{name} was not switched"


# Keys: small ints (shallow), Collide keys sharing long hash prefixes or whole hashes.
_HASHES = [0, 1, 1 << 35, (1 << 35) | 1, -1 - (1 << 62), 2**61 - 7, 7 << 60, 33, 1 << 60]


def _random_key(rnd):
    if rnd.random() < 0.5:
        return rnd.randrange(200)
    return Collide(rnd.choice(_HASHES), rnd.randrange(3))


def _random_ops(seed, n):
    rnd = random.Random(seed)
    ops = []
    for _ in range(n):
        r = rnd.random()
        kind = "set" if r < 0.55 else "del" if r < 0.85 else "get"
        ops.append((kind, _random_key(rnd), rnd.randrange(4), rnd.random() < 0.3))
    return ops


def _replay(impl, ops, root, owners):
    """Apply ``ops`` with the raw trie functions of ``impl``; every result.

    Each run of in-place ("transient") operations has its own owner token
    from ``owners``, as a mutation has: the nodes a token owns are then
    always a subtree holding the root, which is where the two tries make
    the same nodes (C never resizes a node in place: it makes a new one and
    rebinds the parent, which the Python trie would have edited in place)."""
    trace = []
    run = 0
    with using(impl):
        for kind, key, val, transient in ops:
            h = hash(key) & M64
            run += not transient
            who = owners[run] if transient else None
            box = []
            if kind == "set":
                root = _champ.assoc(root, h, key, val, who, 0, box)
            elif kind == "del":
                root = _champ.dissoc(root, h, key, who, 0, box)
            else:
                box.append(_champ.lookup(root, key, h, "absent"))
            trace.append((kind, box, _snapshot(root)))
    return root, trace


def _is_node(x):
    return type(x) is list or (_champ_c is not None and type(x) is _champ_c.Node)


def _snapshot(node):
    """A deep copy of a trie as lists, to compare later (owners included: a
    C node's reads as None from Python, its ``owner`` attribute has it)."""
    copy = [_snapshot(x) if _is_node(x) else x for x in node]
    if type(node) is not list:
        copy[2] = node.owner
    return copy


@both_ways
@pytest.mark.parametrize("seed", range(8))
def test_both_build_the_same_nodes(seed):
    """Same operations, same owner tokens: identical nodes and boxes at every step."""
    ops = _random_ops(seed, 400)
    base = PMap((i, -i) for i in range(0, 400, 3))._root
    owners = [object() for _ in range(len(ops) + 1)]
    root_c, trace_c = _replay("c", ops, base, owners)
    root_py, trace_py = _replay("py", ops, base, owners)
    assert trace_c == trace_py
    assert _snapshot(root_c) == _snapshot(root_py)


def _all_nodes(node):
    yield node
    for child in node[len(node) - node[1].bit_count():]:
        yield from _all_nodes(child)


@both_ways
@pytest.mark.parametrize("seed", range(8))
def test_mixed_updates_match_a_dict(seed):
    """Each operation on a random implementation, persistent and in a mutation."""
    rnd = random.Random(seed)
    model = {}
    m = PMap()
    versions = []
    try:
        for step in range(300):
            if step % 100 == 99:  # rebuilt by either build_dict()
                use(rnd.choice(["c", "py"]))
                m = PMap(dict(m.items()))
            use(rnd.choice(["c", "py"]))
            if step % 50 == 49:  # a mutation that switches implementation between edits
                mm = m.mutate()
                for _ in range(30):
                    use(rnd.choice(["c", "py"]))
                    k = _random_key(rnd)
                    if rnd.random() < 0.6:
                        mm[k] = model[k] = rnd.randrange(5)
                    else:
                        assert mm.pop(k, "absent") == model.pop(k, "absent")
                    assert len(mm) == len(model) and all(mm[k] == v for k, v in model.items())
                m = mm.finish()
            else:
                k = _random_key(rnd)
                if rnd.random() < 0.6:
                    model[k] = step
                    m = m.set(k, step)
                elif k in model:
                    del model[k]
                    m = m.delete(k)
            versions.append((m, dict(model)))
            use(rnd.choice(["c", "py"]))
            assert dict(m.items()) == model and all(m[k] == v for k, v in model.items())
        for impl in IMPLS:
            use(impl)
            for old, old_model in versions:
                assert dict(old.items()) == old_model and len(old) == len(old_model)
                assert all(old.get(k) == v for k, v in old_model.items())
            assert shape(m._root) == shape(PMap(sorted(model.items(), key=repr))._root)
    finally:
        restore()


class Switching:
    """A state machine step that switches the implementation (mixed in)."""

    @rule(impl=st.sampled_from(sorted(IMPLS)))
    def switch(self, impl):
        use(impl)

    def teardown(self):
        restore()


class MixedPMap(Switching, PMapMachine):
    """test_pds_hash_trie's machines, switching implementation as a step."""


class MixedPSet(Switching, PSetMachine):
    pass


TestMixedPMap = both_ways(MixedPMap.TestCase)
TestMixedPMap.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
TestMixedPSet = both_ways(MixedPSet.TestCase)
TestMixedPSet.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)


# User code in __eq__ and __hash__.

class Boom(Exception):
    pass


class Key:
    """A key with a chosen hash whose __eq__/__hash__ can raise or run a hook."""

    def __init__(self, h, name):
        self.h = h
        self.name = name
        self.hash_raises = False
        self.on_eq = None

    def __hash__(self):
        if self.hash_raises:
            raise Boom("hash")
        return self.h

    def __eq__(self, other):
        if not isinstance(other, Key):
            return NotImplemented
        for k in (self, other):
            if k.on_eq is not None:
                hook, k.on_eq = k.on_eq, None
                hook()
        if self.name == "boom" or other.name == "boom":
            raise Boom("eq")
        return (self.h, self.name) == (other.h, other.name)

    def __repr__(self):
        return f"Key({self.h}, {self.name!r})"


def _same_slot_maps():
    """Maps where the probe Key(h, 'boom') meets a stored key: in a node's
    slot (h=5), and in a collision node (h=7, three keys with that hash)."""
    pairs = {Key(5, "a"): 1, Key(7, "b"): 2, Key(7, "c"): 3, Key(7, "d"): 4}
    pairs.update((i, i) for i in range(64))
    return pairs


@both_ways
@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("h", [5, 7])
def test_eq_that_raises_propagates_and_changes_nothing(impl, h):
    pairs = _same_slot_maps()
    with using(impl):
        m = PMap(pairs)
        before = _snapshot(m._root)
        bad = Key(h, "boom")
        for op in (lambda: m.get(bad), lambda: bad in m, lambda: m.set(bad, 0), lambda: m.delete(bad)):
            with pytest.raises(Boom):
                op()
        mm = m.mutate()
        mm[Key(99, "z")] = 0  # the mutation owns its root now: edits in place
        for op in (lambda: mm.set(bad, 0), lambda: mm.pop(bad), lambda: mm.get(bad)):
            with pytest.raises(Boom):
                op()
        assert _snapshot(m._root) == before
        assert dict(mm.finish().items()) == {**pairs, Key(99, "z"): 0}


@both_ways
@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_hash_that_raises_while_splitting_a_slot_propagates(impl):
    """Setting a key whose slot holds another key rehashes the stored one."""
    a = Key(5, "a")
    with using(impl):
        m = PMap({a: 1, 1: 1})
        mm = m.mutate()
        mm[2] = 2
        a.hash_raises = True
        newcomer = Key(5 + (1 << 5), "n")  # same first 5 bits as a
        with pytest.raises(Boom):
            m.set(newcomer, 0)
        with pytest.raises(Boom):
            mm[newcomer] = 0
        a.hash_raises = False
        assert dict(m.items()) == {a: 1, 1: 1}
        assert dict(mm.finish().items()) == {a: 1, 1: 1, 2: 2}


def _mutation_with(stored, added):
    """A mutation holding ``stored`` and ``added`` keys (value 1 each) whose
    nodes on the paths to the ``added`` keys it owns (edits in place)."""
    mm = PMap(dict.fromkeys(stored, 1)).mutate()
    for k in added + [Key(30, "owner")]:
        mm[k] = 1
    return mm


# What the C code does when a key's __eq__ removes another key from the node
# being walked: a C node is replaced (a node never changes size), so a walk
# that only reads goes on over the node it holds and answers for the trie as
# it was (the probe is absent: None, KeyError), and a write finds the path
# moved and raises; a list node (the Python trie's) shrinks in place, and
# the C walk raises as soon as it sees that.
_NESTED_EDIT_OUTCOME = {
    ("c", "slot", "set"): RuntimeError, ("c", "slot", "pop"): RuntimeError, ("c", "slot", "get"): None,
    ("c", "collision", "set"): RuntimeError, ("c", "collision", "pop"): KeyError, ("c", "collision", "get"): None,
    ("py", "slot", "set"): RuntimeError, ("py", "slot", "pop"): RuntimeError, ("py", "slot", "get"): None,
    ("py", "collision", "set"): RuntimeError, ("py", "collision", "pop"): RuntimeError,
    ("py", "collision", "get"): RuntimeError,
}


@both_ways
@pytest.mark.parametrize("nodes", ["c", "py"])
@pytest.mark.parametrize("where", ["slot", "collision"])
@pytest.mark.parametrize("op", ["set", "pop", "get"])
def test_eq_that_edits_the_mutation_is_caught(nodes, where, op):
    """A stored key's __eq__ removes another key from the node being walked
    by the C code, on C nodes or on the Python trie's list nodes (the hook
    then edits with the Python trie, in place).

    The C code never reads or writes stale positions: it raises
    RuntimeError where they went stale, or answers from the unchanged node
    it holds, and the mutation keeps what the hook did and nothing else.
    (The Python version edits the stale slots; a lookup that found its slot
    holds another key answers without looking further, so it is right
    either way.)
    """
    h = 5 if where == "slot" else 7
    a, victim = Key(h, "a"), Key(6 if where == "slot" else 7, "v")
    added = [Key(7, "c")] if where == "collision" else []
    with using(nodes):
        mm = _mutation_with([a, victim], added)

    def hook():
        with using(nodes):
            mm.pop(victim)
        use("c")

    with using("c"):
        a.on_eq = hook
        probe = Key(h, "probe")
        run = {"set": lambda: mm.set(probe, 2), "pop": lambda: mm.pop(probe), "get": lambda: mm.get(probe)}[op]
        outcome = _NESTED_EDIT_OUTCOME[nodes, where, op]
        if outcome is None:
            assert run() is None
        else:
            with pytest.raises(outcome, match="changed during" if outcome is RuntimeError else None):
                run()
        assert a.on_eq is None  # the hook ran
        result = mm.finish()
        assert dict(result.items()) == dict.fromkeys([a, Key(30, "owner")] + added, 1)
        assert shape(result._root) == shape(PMap(dict(result.items()))._root)


@both_ways
def test_eq_that_rebinds_in_place_is_harmless():
    """A hook that only rebinds a value leaves the node's shape: no error."""
    a, b = Key(5, "a"), Key(6, "b")
    with using("c"):
        mm = _mutation_with([a, b], [])
        a.on_eq = lambda: mm.set(b, 42)
        mm[Key(5, "probe")] = 2
        assert dict(mm.finish().items()) == {a: 1, b: 42, Key(5, "probe"): 2, Key(30, "owner"): 1}


@both_ways
def test_no_reference_is_leaked_or_lost():
    """Refcounts of keys and values are back where they were after many
    lookups, updates and failed updates, persistent and in place."""
    keys = [Key(i % 40 + (i // 40) * (1 << 40), str(i)) for i in range(200)] + list(range(10**6, 10**6 + 50))
    vals = [object() for _ in keys]
    bad = Key(5, "boom")
    with using("c"):
        m = PMap(zip(keys, vals))
        before = [sys.getrefcount(x) for x in keys + vals + [bad]]
        for _ in range(20):
            m2 = m
            for k, v in zip(keys, vals):
                m2 = m2.delete(k).set(k, v)
                assert m2.get(k) is v
            with pytest.raises(Boom):
                m.set(bad, vals[0])
            with pytest.raises(Boom):
                m.get(bad)
            mm = m.mutate()
            for k, v in zip(keys, vals):
                mm[k] = vals[0]
                del mm[k]
                mm[k] = v
            with pytest.raises(Boom):
                mm.pop(bad)
            mm.finish()
            del m2, mm, k, v  # the loops' last ones
        after = [sys.getrefcount(x) for x in keys + vals + [bad]]
    assert after == before


@both_ways
def test_not_a_node_raises_instead_of_crashing():
    c = _champ_c
    bad_nodes = (
        [], [0, 0], ["x", 0, None], [1, 0, None], [0, 1, None, "not a node"],
        [1, 1, None, 1, 2, []], [2**40, 0, None], [0, 0, None, 1],
    )
    for bad in bad_nodes:
        with pytest.raises((TypeError, ValueError)):
            c.lookup(bad, 0, 0, None)
        with pytest.raises((TypeError, ValueError)):
            c.assoc(bad, 0, 0, 0, None, 0, [])
        with pytest.raises((TypeError, ValueError)):
            c.dissoc(bad, 0, 0, None, 0, [])
    with pytest.raises(OverflowError):
        c.lookup([0, 0, None], 1, -1, None)
    with pytest.raises(TypeError):
        c.assoc([0, 0, None], 1, 1, 1, None, 0)


# The C bases of PMap and PMapMutation (MapBase, MutationBase), the C
# iterators and the C hash accumulator.

HOT_MAP_METHODS = {"__len__", "__getitem__", "get", "__contains__", "__iter__", "set", "delete"}
HOT_MUTATION_METHODS = {"__len__", "__getitem__", "get", "__contains__", "__setitem__", "set", "__delitem__", "pop"}
HOT_SET_METHODS = {"__len__", "__contains__", "__iter__", "add", "discard", "remove"}


@both_ways
def test_select_switches_the_methods_of_pmap():
    """PMap's base is C for good; select("python") puts the reference
    methods of pmap._PyMap on the class, select("c") takes them off."""
    assert PMap.__mro__[1] is _champ_c.MapBase and pmap.PMapMutation.__mro__[1] is _champ_c.MutationBase
    assert PSet.__mro__[1] is _champ_c.SetBase and pset.PSetMutation.__mro__[1] is _champ_c.SetMutationBase
    with using("py"):
        for cls, ref, names in ((PMap, pmap._PyMap, HOT_MAP_METHODS),
                                (pmap.PMapMutation, pmap._PyMutation, HOT_MUTATION_METHODS)):
            for name in names:
                assert vars(cls)[name] is getattr(ref, name)
        for cls, ref in ((PSet, pset._PySet), (pset.PSetMutation, pset._PySetMutation)):
            for name in HOT_SET_METHODS:
                if hasattr(ref, name):
                    assert vars(cls)[name] is getattr(ref, name)
    with using("c"):
        assert not (HOT_MAP_METHODS & set(vars(PMap))) and not (HOT_MUTATION_METHODS & set(vars(pmap.PMapMutation)))
        assert not (HOT_SET_METHODS & set(vars(PSet))) and not ((HOT_SET_METHODS - {"__iter__"}) & set(vars(pset.PSetMutation)))
        assert PMap.get is _champ_c.MapBase.get and PSet.add is _champ_c.SetBase.add


def _deep_trie():
    """Every kind of node: inline pairs, children, deep chains, collisions."""
    pairs = {Key(h, n): (h, n) for h in [0, 1, 1 << 35, (1 << 35) | 1, 7 << 60, -1, 2**63 - 1] for n in "abc"}
    pairs.update((i, -i) for i in range(2000))
    return pairs


@both_ways
def test_c_iterators_walk_like_the_python_ones():
    pairs = _deep_trie()
    for build in ("c", "py"):
        with using(build):
            root = PMap(pairs)._root
        for name in ("iter_keys", "iter_values", "iter_items"):
            c_fn, py_fn = getattr(_champ_c, name), getattr(_champ, "py_" + name)
            assert list(c_fn(root)) == list(py_fn(root))
        assert dict(_champ_c.iter_items(root)) == pairs
    assert list(_champ_c.iter_items([0, 0, None])) == []


@both_ways
def test_c_iterator_of_a_node_edited_during_iteration():
    """A list node (Python's) that a live mutation resizes in place under a
    C iterator: the iterator raises RuntimeError instead of reading stale
    positions.  A C node never changes size: the mutation replaces it, and
    the iterator goes on over the node it holds."""
    with using("py"):
        mm = PMap((i, i) for i in range(40)).mutate()
        mm[100] = 100  # the mutation owns its root: edits it in place
        it = _champ_c.iter_items(mm._root)
        next(it)
        del mm[100]
        mm[200] = 200
        del mm[0]
        with pytest.raises(RuntimeError, match="changed during iteration"):
            list(it)
    with using("c"):
        mm = PMap((i, i) for i in range(40)).mutate()
        mm[100] = 100
        it = _champ_c.iter_items(mm._root)
        first = next(it)
        del mm[100]     # below the root: the root rebinds that child in place
        mm[200] = 200   # splits a slot of the root: a new root
        del mm[0]
        assert dict([first] + list(it)) == {i: i for i in range(40)}
        assert dict(mm.finish().items()) == {**{i: i for i in range(1, 40)}, 200: 200}


@both_ways
def test_c_iterators_refuse_what_is_not_a_trie():
    for bad in ([], [0, 0], [1, 0, None], [0, 1, None, "not a node"], [0, 1, None, [2**40, 0, None]], 5):
        with pytest.raises((TypeError, ValueError)):
            list(_champ_c.iter_keys(bad))
    too_deep = [0, 0, None]
    for _ in range(20):
        too_deep = [0, 1, None, too_deep]
    with pytest.raises(ValueError, match="deeper"):
        list(_champ_c.iter_items(too_deep))


@both_ways
def test_c_hash_accumulator_matches_python():
    """Pairs are hashed from the key's hash without building the tuple; the
    formula is the interpreter's tuple hash (checked at import)."""
    assert _champ_c.PAIR_HASH_FROM_TUPLE == 0
    rnd = random.Random(3)
    keys = [rnd.randrange(-(2**70), 2**70) for _ in range(300)] + [-1, -2, 0, "s", None, (1, "x"), 2.5, Collide(-1, 0)]
    values = [rnd.choice([None, -1, 0, 1.5, "v", (), (None,), 2**64, -(2**63)]) for _ in keys]
    pairs = dict(zip(keys, values))
    assert _champ_c.accumulate(pairs.items()) == _champ.py_accumulate(pairs.items())
    with pytest.raises(TypeError):
        _champ_c.accumulate([[1]])
    m = PMap()
    for k, v in pairs.items():
        m = m.set(k, v)
    assert hash(m) == hash(frozenset(pairs.items())) == hash(PMap(pairs))
    for k in keys[::2]:
        m = m.delete(k)
        del pairs[k]
    assert hash(m) == hash(frozenset(pairs.items()))


@both_ways
def test_c_base_fields_are_checked():
    m = PMap(a=1)
    with pytest.raises(OverflowError):
        m._hacc = -1
    with pytest.raises(AttributeError):
        del m._root
    with pytest.raises(TypeError):
        _champ_c.make(dict, [0, 0, None], 0, 0)
    m2 = _champ_c.make(PMap, m._root, 1, None)
    assert type(m2) is PMap and m2._hacc is None and hash(m2) == hash(m) and m2._hacc == m._hacc
    m2._root = [0, 0, None, 1]  # a broken node: errors, never a crash
    for op in (lambda: m2.get(1), lambda: m2.set(1, 2), lambda: m2.delete(1), lambda: list(m2)):
        with pytest.raises((TypeError, ValueError)):
            op()
    assert type(_champ_c.MapBase()) is _champ_c.MapBase and len(_champ_c.MapBase()) == 0


@both_ways
def test_c_base_balances_references():
    """The C methods' own paths: iteration (with the reused item tuple),
    values whose hash fails, pop with a default, the finished check."""
    keys = [Key(i % 40 + (i // 40) * (1 << 40), str(i)) for i in range(200)] + list(range(10**6, 10**6 + 50))
    vals = [object() for _ in keys]
    unhashable, dflt = [], object()
    stop = Value(Interrupt)
    with using("c"):
        m = PMap(zip(keys, vals))
        objs = keys + vals + [unhashable, dflt, stop]
        before = [sys.getrefcount(x) for x in objs]
        for _ in range(10):
            for k, v in m.items():
                assert m[k] is v
            assert list(m.values()) == [m[k] for k in m]
            m2 = m.set(keys[0], unhashable).delete(keys[1])
            assert m2._hacc is None and m2.get(keys[2], dflt) is vals[2]
            with pytest.raises(Interrupt):
                m.set(keys[3], stop)
            mm = m2.mutate()
            assert mm.pop(-5, dflt) is dflt and mm.pop(keys[0]) is unhashable
            mm.finish()
            mm = m.mutate()  # its hash is known: the value gets hashed
            with pytest.raises(Interrupt):
                mm[keys[4]] = stop
            mm[keys[4]] = vals[4]
            mm.finish()
            with pytest.raises(ValueError):
                mm[keys[5]] = vals[5]
            del m2, mm, k, v
        after = [sys.getrefcount(x) for x in objs]
    assert after == before


class Meddler:
    """A key whose __eq__ and __hash__ edit the live mutation at random
    (and whose __eq__ sometimes raises), while ``armed``."""

    armed = None  # (mutation, random.Random) while a mutation runs

    def __init__(self, h, n):
        self.h, self.n = h, n

    def _meddle(self):
        if Meddler.armed is None:
            return
        mm, rnd = Meddler.armed
        if rnd.random() < 0.2:
            k = _meddler_key(rnd)
            try:
                r = rnd.random()
                if r < 0.4:
                    mm[k] = rnd.randrange(3)
                elif r < 0.8:
                    mm.pop(k, None)
                else:
                    mm.get(k)
            except (RuntimeError, ValueError):
                pass

    def __hash__(self):
        self._meddle()
        return self.h

    def __eq__(self, other):
        self._meddle()
        if Meddler.armed is not None and Meddler.armed[1].random() < 0.02:
            raise ValueError("eq")
        return isinstance(other, Meddler) and (self.h, self.n) == (other.h, other.n)

    def __repr__(self):
        return f"Meddler({self.h}, {self.n})"


_MEDDLER_HASHES = [0, 1, 32, 33, 1 << 35, (1 << 35) | 1, -1, 7 << 60, 5, 37]


def _meddler_key(rnd):
    return Meddler(rnd.choice(_MEDDLER_HASHES), rnd.randrange(3)) if rnd.random() < 0.7 else rnd.randrange(100)


def _count(root):
    return sum(1 for _ in _champ.py_iter_keys(root))


@repeated
@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("seed", range(4))
def test_key_code_editing_the_mutation_keeps_it_consistent(impl, seed):
    """Nested edits from keys' own code: every update either happens whole
    or raises, so the count always matches the trie, the trie stays
    canonical, and finished versions never change.  (Found by this test:
    in C, an edit written into a node that a nested edit had detached; in
    Python, an edit going on with positions a nested edit made stale.)"""
    rnd = random.Random(seed)
    m, versions = PMap(), []
    with using(impl):
        for step in range(400):
            mm = m.mutate()
            Meddler.armed = (mm, rnd)
            try:
                for _ in range(rnd.randrange(1, 8)):
                    k = _meddler_key(rnd)
                    try:
                        if rnd.random() < 0.6:
                            mm[k] = step
                        else:
                            mm.pop(k, None)
                    except (RuntimeError, ValueError):
                        pass
                    assert len(mm) == _count(mm._root)
            finally:
                Meddler.armed = None
            m = mm.finish()
            versions.append((m, dict(m.items())))
        assert shape(m._root) == shape(PMap(sorted(m.items(), key=repr))._root)
        for v, items in versions:
            assert len(v) == len(items) == _count(v._root) and dict(v.items()) == items


@both_ways
def test_c_set_base_balances_references_and_keeps_versions():
    elems = [Key(i % 40 + (i // 40) * (1 << 40), str(i)) for i in range(200)] + list(range(10**6, 10**6 + 50))
    bad = Key(5, "boom")
    with using("c"):
        s = PSet(elems)
        before = [sys.getrefcount(x) for x in elems + [bad]]
        for _ in range(10):
            s2 = s
            for e in elems:
                s2 = s2.remove(e)
                assert e not in s2 and s2.discard(e) is s2
                s2 = s2.add(e)
                assert e in s2 and s2.add(e) is s2
            assert s2 == s and hash(s2) == hash(s) == hash(frozenset(elems))
            with pytest.raises(Boom):
                s.add(bad)
            with pytest.raises(KeyError):
                s.remove(bad.__class__(12345, "absent"))
            mm = s.mutate()
            for e in elems:
                assert mm.discard(e) is True and mm.discard(e) is False
                mm.add(e)
                mm.add(e)
            with pytest.raises(KeyError):
                mm.remove(-1)
            with pytest.raises(Boom):
                mm.discard(bad)
            assert mm.finish() == s and len(mm) == len(elems)
            with pytest.raises(ValueError, match="PSetMutation has been finished"):
                mm.add(1)
            assert list(s) == list(_champ.py_iter_keys(s._root))
            del s2, mm, e
        after = [sys.getrefcount(x) for x in elems + [bad]]
    assert after == before and s == set(elems)


@repeated
@pytest.mark.parametrize("kind", ["map", "set"])
def test_python_mutations_refuse_edits_from_keys_code(kind):
    """The Python trie has no checks of the path it walks, so its mutations refuse
    any edit made from a key's __eq__ or __hash__ during an edit: RuntimeError,
    and the mutation is as it was before the outer edit."""
    a, b = Key(5, "a"), Key(6, "b")
    probe = Key(5, "probe")     # meets a in the same slot: a.__eq__ runs
    with using("py"):
        if kind == "map":
            mm = PMap({a: 1, b: 2}).mutate()
            a.on_eq = lambda: mm.pop(b)
            with pytest.raises(RuntimeError, match="while an edit of it was running"):
                mm[probe] = 3
            assert dict(mm.finish().items()) == {a: 1, b: 2}
        else:
            ms = PSet([a, b]).mutate()
            a.on_eq = lambda: ms.discard(b)
            with pytest.raises(RuntimeError, match="while an edit of it was running"):
                ms.add(probe)
            assert set(ms.finish()) == {a, b}
        assert a.on_eq is None  # the hook ran
        probe.hash_raises = True
        mm = PMap({a: 1}).mutate()
        with pytest.raises(Boom):   # an edit that raised leaves no mark behind
            mm[probe] = 1
        probe.hash_raises = False
        mm[probe] = 1
        assert len(mm) == 2


# The C node type (_champ_c.Node): what Python code sees of it, and tries
# mixing C nodes and Python's list nodes.

_SLICES = [slice(None), slice(3, None), slice(3, -1, 2), slice(4, None, 2), slice(None, None, -1),
           slice(-2, 1, -3), slice(4, 2), slice(-3, None), slice(1, 100, 3), slice(-100, 2), slice(3, 3)]


@both_ways
def test_a_node_reads_as_the_list_layout():
    """len, indexing (negative too; the bitmaps as ints, the owner as None),
    slices (lists) and iteration give what the list node would."""
    pairs = _deep_trie()
    with using("py"):
        want = PMap(pairs)._root
    with using("c"):
        root = PMap(pairs)._root
    assert type(root) is _champ_c.Node and type(want) is list
    assert _snapshot(root) == _snapshot(want)
    nodes = list(_all_nodes(root))
    assert any(not (n[0] or n[1]) and len(n) > 3 for n in nodes)   # collision nodes too
    assert root[0] | root[1] == 2**32 - 1   # bitmaps past 2**31 are ints too
    for node in nodes:
        lst = list(node)
        n = len(lst)
        assert len(node) == n and n >= 3 and lst[2] is None and node.owner is None
        assert type(node[0]) is int and type(node[1]) is int
        assert [node[i] for i in range(n)] == lst == [node[i] for i in range(-n, 0)]
        assert node[~0] is lst[-1] and all(node[i] is lst[i] for i in range(3, n))
        for s in _SLICES:
            got = node[s]
            assert type(got) is list and got == lst[s]
        for bad in (n, -n - 1, 2**70):
            with pytest.raises(IndexError):
                node[bad]
        with pytest.raises(TypeError):
            node["x"]
        with pytest.raises(TypeError):
            node[0] = 1
    with pytest.raises(TypeError):
        _champ_c.Node()
    assert repr(PMap({1: 2})._root) == "Node([2, 0, None, 1, 2])"
    empty = PMap()._root
    assert type(empty) is _champ_c.Node and list(empty) == [0, 0, None] and empty[3:] == []


@both_ways
def test_python_copies_the_nodes_a_c_mutation_owns():
    """node[2] reads None, so the Python trie copies a C node (into a list)
    even when its mutation owns it, and never edits one in place; the C trie
    copies Python's list nodes into C nodes (a list is never its to edit)."""
    model = {i: i for i in range(100)}
    with using("c"):
        mm = PMap(model).mutate()
        mm[1000] = model[1000] = 0  # the mutation owns its root now
        root = mm._root
        assert type(root) is _champ_c.Node and root.owner is mm._owner and root[2] is None
        before = _snapshot(root)
    with using("py"):
        for k in range(0, 100, 7):
            mm[k] = model[k] = -k
        del mm[1000], model[1000]
        mm[2000] = model[2000] = 1
        assert type(mm._root) is list and mm._root[2] is mm._owner
    assert _snapshot(root) == before
    py_root = mm._root
    py_before = _snapshot(py_root)
    with using("c"):
        mm[3000] = model[3000] = 3
        mm[5] = model[5] = 55
        assert type(mm._root) is _champ_c.Node and mm._root.owner is mm._owner
        assert _snapshot(py_root) == py_before
        m = mm.finish()
        assert dict(m.items()) == model
    with using("py"):
        assert dict(m.items()) == model and all(m[k] == v for k, v in model.items())


@both_ways
@pytest.mark.parametrize("built, edited", [("c", "py"), ("py", "c")])
def test_trie_built_by_one_is_edited_by_the_other(built, edited):
    """Persistent updates and a mutation on a trie the other side built:
    the result matches a dict, is canonical, and the original is unchanged."""
    rnd = random.Random(built)
    pairs = {_random_key(rnd): i for i in range(300)}
    pairs.update((rnd.randrange(10**9), i) for i in range(3000))
    with using(built):
        m0 = PMap(pairs)
    before = _snapshot(m0._root)
    model = dict(pairs)
    with using(edited):
        m = m0
        for step in range(400):
            k = _random_key(rnd) if rnd.random() < 0.7 else rnd.choice(list(pairs))
            if rnd.random() < 0.6:
                m = m.set(k, step)
                model[k] = step
            elif k in model:
                m = m.delete(k)
                del model[k]
        mm = m.mutate()
        for step in range(400):
            k = _random_key(rnd) if rnd.random() < 0.7 else rnd.choice(list(pairs))
            if rnd.random() < 0.6:
                mm[k] = model[k] = -step
            else:
                assert mm.pop(k, "absent") == model.pop(k, "absent")
        m = mm.finish()
    kinds = {type(node) for node in _all_nodes(m._root)}
    assert kinds == {list, _champ_c.Node}   # both kinds of node in one trie
    for impl in IMPLS:
        with using(impl):
            assert len(m) == len(model) and dict(m.items()) == model
            assert all(m[k] == v for k, v in model.items())
            assert m == PMap(model) and m0 == pairs and hash(m) == hash(PMap(model))
            assert shape(m._root) == shape(PMap(sorted(model.items(), key=repr))._root)
            assert dict((k, n) for k, o, n in _champ.diff(m0._root, m._root)) == {
                k: model.get(k, pmap.MISSING) for k in pairs.keys() | model.keys() if pairs.get(k, pmap.MISSING) != model.get(k, pmap.MISSING)}
    assert _snapshot(m0._root) == before


def _live_nodes():
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is _champ_c.Node)


@both_ways
def test_nodes_are_freed_and_balance_references():
    """Every C node made by build_dict, set, delete, a mutation (in place and
    resized), a fold, a copy of a Python list node, or a cycle through a
    value is freed again; keys, values and owner tokens get their
    references back, also after Python reads nodes (indexing, slices)."""
    import weakref

    keys = [Key(i % 40 + (i // 40) * (1 << 40), str(i)) for i in range(200)] + list(range(10**6, 10**6 + 50))
    vals = [object() for _ in keys]
    with using("c"):
        base = _live_nodes()
        before = [sys.getrefcount(x) for x in keys + vals]
        for _ in range(3):
            m = PMap(zip(keys, vals))
            m2 = m
            for k, v in zip(keys, vals):
                m2 = m2.delete(k).set(k, v)
            mm = m.mutate()
            token = mm._owner
            for k, v in zip(keys, vals):
                mm[k] = vals[0]
                del mm[k]
                mm[k] = v
            m3 = mm.finish()
            assert m3 == m2 == m and not list(_champ.diff(m._root, m3._root))
            for node in _all_nodes(m3._root):
                node[3:], node[-1], node[0], list(node), node[::-2]
            with using("py"):
                m4 = PMap(zip(keys, vals))
            m4 = m4.set(keys[0], 1).delete(keys[1])   # C copies the path into C nodes
            del m, m2, m3, m4, mm, node, k, v
            assert sys.getrefcount(token) == 2
            del token
        value = [None]
        cyc = PMap({1: value, 2: 2})
        value[0] = cyc
        ref = weakref.ref(cyc)
        del value, cyc
        assert _live_nodes() == base and ref() is None
        after = [sys.getrefcount(x) for x in keys + vals]
    assert after == before


@both_ways
def test_a_growing_mutation_never_empties_a_node_held_elsewhere():
    """An insertion that resizes a node its mutation owns hands the node's
    items to the new node when nothing else holds the old one (left empty,
    then freed); a node held from Python or by an iterator is copied
    instead, and keeps its shape and its keys (a same-size edit of a node
    the mutation owns is in place, as ever), and the mutation ends up right
    either way."""
    vals = [object() for _ in range(400)]
    model = {i: vals[i] for i in range(0, 64, 2)}

    def look(node):
        return len(node), node[0], node[1], set(_champ.py_iter_keys(node))

    with using("c"):
        mm = PMap(model).mutate()
        mm[1] = model[1] = vals[1]       # the mutation owns its root now
        held_root = mm._root
        root_before = look(held_root)
        it = _champ_c.iter_items(mm._root)
        seen = [next(it)]
        for i in range(64, 400, 3):      # splits slots of the root, then grows the children
            mm[i] = model[i] = vals[i]
            if i == 127:
                leaf = mm._root[-1]      # a child the mutation owns, held from here
                leaf_before = look(leaf)
        for before, node in ((root_before, held_root), (leaf_before, leaf)):
            now = look(node)
            assert now[:3] == before[:3] and before[3] <= now[3]
        seen += list(it)
        assert all(model[k] is v for k, v in seen) and root_before[3] <= {k for k, _ in seen}
        m = mm.finish()
        assert dict(m.items()) == model and len(m) == len(model)
    with using("py"):
        assert dict(m.items()) == model
    del held_root, leaf, it, seen, m, mm, node, before, now
    assert [sys.getrefcount(v) for v in vals] == [3 + (i in model) for i in range(len(vals))]  # vals, v, the argument


@both_ways
@pytest.mark.parametrize("n", [0, 1, 2, 3, 40, 3000])
@pytest.mark.parametrize("pairs", [True, False])
def test_both_build_the_same_trie_from_a_dict(n, pairs):
    """build_dict(d, pairs): build()'s trie of d's items and the hash accumulator of its
    pairs (a map's) or keys (a set's), in one pass; the same from both."""
    rnd = random.Random(n)
    keys = list(dict.fromkeys(_random_key(rnd) for _ in range(n)))
    keys += [rnd.randrange(10**12) for _ in range(n)] + [Collide(-1, 0), Collide(-1, 1)] * (n > 1)
    d = {k: (rnd.randrange(3) if pairs else None) for k in keys}
    c_build, py_build = _champ_c.build_dict, _champ.py_build_dict
    with using("py"):
        want_root, want_n, want_acc = py_build(d, pairs)
    root, count, acc = c_build(d, pairs)
    assert _snapshot(root) == want_root and count == want_n == len(d) and acc == want_acc
    assert acc == _champ.py_accumulate(d.items() if pairs else d)
    assert all(type(node) is _champ_c.Node for node in _all_nodes(root))
    assert all(gc.is_tracked(node) for node in _all_nodes(root))


@both_ways
def test_build_dict_hash_errors_and_references():
    """A key that cannot be hashed fails the build; a value that cannot be hashed only
    leaves the map's hash unknown (None), as build() + accumulate() do. Neither leaks
    or loses a reference."""
    keys = [Key(i, str(i)) for i in range(50)] + list(range(10**6, 10**6 + 50))
    vals = [object() for _ in keys] + [[1]]
    d = dict(zip(keys, vals))
    d[10**7] = vals[-1]                         # an unhashable value
    bad = Key(5, "bad")
    with_bad = {**d, bad: vals[0]}
    bad.hash_raises = True                      # from now on
    before = [sys.getrefcount(x) for x in keys + vals + [bad]]
    for build in (_champ_c.build_dict, _champ.py_build_dict):
        root, count, acc = build(d)
        assert acc is None and len(list(_champ.py_iter_items(root))) == count == len(d)
        with pytest.raises(Boom):
            build(with_bad)                     # a key whose __hash__ raises
        with pytest.raises((TypeError, AttributeError)):
            build([(1, 2)])                     # not a dict
        del root
    assert [sys.getrefcount(x) for x in keys + vals + [bad]] == before
    with using("c"):
        m = PMap(d)
        with pytest.raises(TypeError):
            hash(m)
        assert PMap(m.items()) == m and PSet(keys) == set(keys)


@both_ways
def test_build_dict_with_keys_that_edit_the_dict():
    """Keys whose __hash__ empties or refills the dict being built from: the C build
    holds what it read first, so nothing is freed under it and the map it returns is a
    consistent map of those items."""
    class Meddling:
        armed = False

        def __init__(self, d, i):
            self.d, self.i = d, i

        def __hash__(self):
            if Meddling.armed:
                self.d.clear()
                self.d.update({j: j for j in range(100)})
            return self.i

        def __eq__(self, other):
            return self is other

    d = {}
    items = [(Meddling(d, i), i) for i in range(20)] + [(i + 1000, i) for i in range(200)]
    d.update(items)
    Meddling.armed = True
    root, count, acc = _champ_c.build_dict(d)
    Meddling.armed = False
    got = list(_champ.py_iter_items(root))
    assert sorted(v for _, v in got) == sorted(v for _, v in items) and count == len(items)
    m = _champ_c.make(PMap, root, count, acc)
    for k, v in items:
        assert m[k] == v


@both_ways
def test_a_new_pset_hashes_each_element_as_often_on_both():
    """PSet(iterable): the set's hash accumulator comes from the hashes the build took,
    not from calling each element's __hash__ once more (the Python reference did)."""
    calls = []

    class Counted:
        def __init__(self, i):
            self.i = i

        def __hash__(self):
            calls.append(self.i)
            return self.i

    elems = [Counted(i) for i in range(50)]
    counts = {}
    for impl in sorted(IMPLS):
        with using(impl):
            calls.clear()
            s = PSet(elems)
            counts[impl] = len(calls)
            assert hash(s) == hash(frozenset(elems))
    assert set(counts.values()) == {2 * len(elems)}   # dict.fromkeys, then the build
