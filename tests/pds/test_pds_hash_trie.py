"""PMap and PSet (both on the CHAMP trie) against dict and set.

The state machines keep every version they made and check after each step
that none of them changed: that is the promise of a persistent structure.
"""

import pickle

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from cowdb.pds import MISSING, PMap, PSet, diff


class Collide:
    """A key whose hash we choose, to force deep paths and full collisions."""

    def __init__(self, h, name):
        self.h = h
        self.name = name

    def __hash__(self):
        return self.h

    def __eq__(self, other):
        return isinstance(other, Collide) and (self.h, self.name) == (other.h, other.name)

    def __repr__(self):
        return f"Collide({self.h}, {self.name})"


# Hashes that share long prefixes of 5-bit chunks, and equal 64-bit hashes.
_HASHES = [0, 1, 1 << 35, (1 << 35) | 1, -1 - (1 << 62), 2**61 - 7, 7 << 60]
KEYS = st.one_of(
    st.integers(0, 40),
    st.builds(Collide, st.sampled_from(_HASHES), st.integers(0, 2)),
)
VALUES = st.one_of(st.integers(0, 3), st.lists(st.integers(), max_size=1))


def shape(node):
    """The trie's shape: bitmaps and child shapes, collision nodes by size."""
    n = len(node) - node[1].bit_count()
    if not (node[0] or node[1]):
        return ("collision", (len(node) - 3) // 2)
    return (node[0], node[1], tuple(shape(c) for c in node[n:]))


class PMapMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.model = {}
        self.m = PMap()
        self.versions = [(self.m, {})]

    def _commit(self, m):
        self.m = m
        self.versions.append((m, dict(self.model)))

    @rule(k=KEYS, v=VALUES)
    def set(self, k, v):
        self.model[k] = v
        self._commit(self.m.set(k, v))

    @rule(k=KEYS)
    def delete(self, k):
        if k in self.model:
            del self.model[k]
            self._commit(self.m.delete(k))
        else:
            try:
                self.m.delete(k)
            except KeyError as e:
                assert e.args[0] is k
            else:
                raise AssertionError("delete of an absent key did not raise")

    @rule(ops=st.lists(st.tuples(KEYS, st.one_of(st.none(), VALUES)), max_size=20))
    def batch(self, ops):
        with self.m.mutate() as mm:
            for k, v in ops:
                if v is None:
                    assert mm.pop(k, "absent") == self.model.pop(k, "absent")
                else:
                    mm[k] = v
                    self.model[k] = v
                assert len(mm) == len(self.model)
        self._commit(mm.finish())

    @rule(pairs=st.dictionaries(KEYS, VALUES, max_size=10))
    def update(self, pairs):
        self.model.update(pairs)
        self._commit(self.m.update(pairs))

    @invariant()
    def matches_model(self):
        m = self.m
        assert len(m) == len(self.model)
        assert dict(m.items()) == self.model
        for k, v in self.model.items():
            assert m[k] == v and k in m
        assert m == self.model and m == PMap(self.model)

    @invariant()
    def old_versions_unchanged(self):
        for m, model in self.versions:
            assert dict(m.items()) == model and len(m) == len(model)

    @invariant()
    def shape_is_canonical(self):
        rebuilt = PMap(sorted(self.model.items(), key=repr))
        assert shape(self.m._root) == shape(rebuilt._root)

    @invariant()
    def diff_matches_model(self):
        old, old_model = self.versions[len(self.versions) // 2]
        got = {k: (o, n) for k, o, n in diff(old, self.m)}
        want = {}
        for k in old_model.keys() | self.model.keys():
            o, n = old_model.get(k, MISSING), self.model.get(k, MISSING)
            if o is MISSING or n is MISSING or o != n:
                want[k] = (o, n)
        assert got == want
        assert (old == self.m) == (not want)

    @invariant()
    def hash_is_frozenset_hash(self):
        if all(not isinstance(v, list) for v in self.model.values()):
            assert hash(self.m) == hash(frozenset(self.model.items()))


TestPMap = PMapMachine.TestCase
TestPMap.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


class PSetMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.model = set()
        self.s = PSet()
        self.versions = [(self.s, frozenset())]

    def _commit(self, s, model):
        self.s, self.model = s, set(model)
        self.versions.append((s, frozenset(model)))

    @rule(e=KEYS)
    def add(self, e):
        self._commit(self.s.add(e), self.model | {e})

    @rule(e=KEYS)
    def discard(self, e):
        self._commit(self.s.discard(e), self.model - {e})

    @rule(e=KEYS)
    def remove(self, e):
        if e in self.model:
            self._commit(self.s.remove(e), self.model - {e})
        else:
            try:
                self.s.remove(e)
            except KeyError:
                pass
            else:
                raise AssertionError("remove of an absent element did not raise")

    @rule(ops=st.lists(st.tuples(KEYS, st.booleans()), max_size=20))
    def batch(self, ops):
        model = set(self.model)
        with self.s.mutate() as mm:
            for e, add in ops:
                if add:
                    mm.add(e)
                    model.add(e)
                else:
                    assert mm.discard(e) == (e in model)
                    model.discard(e)
                assert len(mm) == len(model)
        self._commit(mm.finish(), model)

    @rule(other=st.frozensets(KEYS, max_size=8), op=st.sampled_from(["|", "&", "-", "^"]))
    def algebra(self, other, op):
        ops = {"|": lambda a, b: a | b, "&": lambda a, b: a & b, "-": lambda a, b: a - b, "^": lambda a, b: a ^ b}
        result = ops[op](self.s, other)
        assert isinstance(result, PSet)
        self._commit(result, ops[op](self.model, other))

    @rule(other=st.frozensets(KEYS, max_size=8))
    def comparisons(self, other):
        s, m = self.s, self.model
        assert (s <= other, s < other, s >= other, s > other) == (m <= other, m < other, m >= other, m > other)
        assert s.isdisjoint(other) == m.isdisjoint(other)
        assert s.issubset(other) == m.issubset(other) and s.issuperset(other) == m.issuperset(other)
        assert (s == other) == (m == other) and (s == PSet(other)) == (m == other)

    @invariant()
    def matches_model(self):
        assert len(self.s) == len(self.model) and set(self.s) == self.model
        assert all(e in self.s for e in self.model)
        assert self.s == self.model and self.s == frozenset(self.model)

    @invariant()
    def old_versions_unchanged(self):
        for s, model in self.versions:
            assert set(s) == model and len(s) == len(model)

    @invariant()
    def hash_and_shape(self):
        assert hash(self.s) == hash(frozenset(self.model))
        assert shape(self.s._root) == shape(PSet(sorted(self.model, key=repr))._root)


TestPSet = PSetMachine.TestCase
TestPSet.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_pset_basics():
    s = PSet("abc")
    assert s.add("a") is s and s.discard("z") is s
    assert repr(s.remove("a").remove("b")) == "PSet({'c'})" and repr(PSet()) == "PSet()"
    assert pickle.loads(pickle.dumps(s)) == s
    assert {1} | PSet([2]) == {1, 2} and isinstance(PSet([2]) | {1}, PSet)
    assert s.union("d", "e") == set("abcde") and s.intersection("ab", "bc") == {"b"}
    assert s.difference("a", "b") == {"c"} and s.symmetric_difference("cd") == set("abd")
    assert {s: 1}[PSet("cab")] == 1 and {frozenset("abc"): 1}[s] == 1


def test_set_same_value_returns_same_map():
    m = PMap(a=[])
    assert m.set("a", m["a"]) is m


def test_mutation_refuses_use_after_finish_and_finish_is_idempotent():
    mm = PMap(a=1).mutate()
    mm["b"] = 2
    m = mm.finish()
    assert mm.finish() is m
    for edit in (lambda: mm.set("c", 3), lambda: mm.pop("a"), lambda: mm.update(c=3)):
        try:
            edit()
        except ValueError as e:
            assert "finished" in str(e)
        else:
            raise AssertionError("edit after finish() did not raise")
    assert m == {"a": 1, "b": 2}


def test_mutation_does_not_touch_source_or_sibling():
    base = PMap((i, i) for i in range(2000))
    mm1, mm2 = base.mutate(), base.mutate()
    for i in range(0, 2000, 3):
        mm1[i] = -i
        del mm2[i]
    a, b = mm1.finish(), mm2.finish()
    assert dict(base.items()) == {i: i for i in range(2000)}
    assert a == {i: (-i if i % 3 == 0 else i) for i in range(2000)}
    assert b == {i: i for i in range(2000) if i % 3}


def test_deletes_shrink_back_to_empty_root():
    m = PMap((i, i) for i in range(5000))
    for i in range(5000):
        m = m.delete(i)
    assert list(m._root) == [0, 0, None] and m == PMap()


def test_equality_rules():
    m = PMap(a=1)
    assert m == {"a": 1} and {"a": 1} == m
    assert m != {"a": 2} and m != [("a", 1)] and m != 1
    assert hash(m) == hash(PMap({"a": 1}))


def test_diff_of_versions_one_path_apart():
    a = PMap((i, str(i)) for i in range(10000))
    b = a.set(5, "five").delete(7).set(-1, "new")
    assert sorted(diff(a, b), key=repr) == sorted([(5, "5", "five"), (7, "7", MISSING), (-1, MISSING, "new")], key=repr)
    assert list(diff(a, a)) == []


def test_pickle_views_and_typing():
    m = PMap({1: "a", 2: "b"})
    assert pickle.loads(pickle.dumps(m)) == m
    assert set(m.keys()) == {1, 2} and sorted(m.values()) == ["a", "b"]
    assert (1, "a") in m.items() and m.keys() & {2, 3} == {2}
    assert PMap[int, str].__origin__ is PMap
    match m:
        case {1: first}:
            assert first == "a"
        case _:
            raise AssertionError("PMap did not match a mapping pattern")


# The hot methods (get, [], in, len, iteration, set, delete, and the
# mutation's []=, set, del, pop) live in PMap's base: C (_champ_c.MapBase)
# or Python (pmap._PyMap), as the import chose.  These run on either.

class Interrupt(BaseException):
    """Not an Exception: must propagate out of the hash accumulator."""


class Value:
    """A value whose __hash__ can be made to raise."""

    def __init__(self, raises=None):
        self.raises = raises

    def __hash__(self):
        if self.raises is not None:
            raise self.raises("hash")
        return 7


def test_missing_keys_raise_key_error_holding_the_key():
    m = PMap({(1, 2): "t", 3: 4})
    mm = m.mutate()
    for op in (lambda: m[(5, 6)], lambda: m.delete((5, 6)), lambda: mm[(5, 6)], lambda: mm.pop((5, 6))):
        try:
            op()
        except KeyError as e:
            assert e.args == ((5, 6),)
        else:
            raise AssertionError("no KeyError")
    try:
        del mm[(5, 6)]
    except KeyError as e:
        assert e.args == ((5, 6),)
    assert m.get((5, 6)) is None and m.get((5, 6), "d") == "d" and mm.get((5, 6), 0) == 0
    assert mm.pop((5, 6), None) is None and mm.pop((1, 2)) == "t" and mm.finish() == {3: 4}
    assert (1, 2) in m and (5, 6) not in m and len(m) == 2 and m[(1, 2)] == "t"


def test_unhashable_keys_raise_type_error_and_change_nothing():
    m = PMap(a=1)
    mm = m.mutate()
    for op in (lambda: m.get([]), lambda: m.set([], 1), lambda: m.delete([]), lambda: [] in m,
               lambda: mm.set([], 1), lambda: mm.pop([], 0)):
        try:
            op()
        except TypeError:
            pass
        else:
            raise AssertionError("an unhashable key did not raise TypeError")
    assert mm.finish() == m == {"a": 1}


def test_finished_mutation_checks_the_key_first():
    """As in the Python reference: hash(key) is computed before the token is
    checked, so an unhashable key on a finished mutation is a TypeError."""
    mm = PMap().mutate()
    mm.finish()
    for op, exc in ((lambda: mm.set([], 1), TypeError), (lambda: mm.set(1, 1), ValueError),
                    (lambda: mm.pop(1, None), ValueError)):
        try:
            op()
        except exc as e:
            assert exc is TypeError or str(e) == "this PMapMutation has been finished; start another with mutate()"
        else:
            raise AssertionError(f"no {exc.__name__}")


def test_unhashable_values_make_the_hash_unknown_not_the_update_fail():
    m = PMap(a=1, b=2).set("c", [1])
    assert m._hacc is None and m["c"] == [1]
    try:
        hash(m)
    except TypeError:
        pass
    else:
        raise AssertionError("hash() of a map holding a list did not raise")
    m2 = m.set("c", 3)
    assert hash(m2) == hash(frozenset({"a": 1, "b": 2, "c": 3}.items()))
    with m.mutate() as mm:
        mm["d"] = {}
        del mm["d"]
        mm["c"] = 4
    assert hash(mm.finish()) == hash(frozenset({"a": 1, "b": 2, "c": 4}.items()))
    assert m.delete("c") == {"a": 1, "b": 2} and hash(m.delete("c")) == hash(PMap(a=1, b=2))


def test_a_value_hash_that_raises_exception_or_base_exception():
    """An Exception from a value's __hash__ makes the hash unknown; anything
    else propagates: the persistent update then makes no map, the mutation
    keeps its edit (with the hash unknown)."""
    m = PMap((i, i) for i in range(100))
    bad = Value(ValueError)
    assert m.set(1, bad)[1] is bad and m.set(1, bad)._hacc is None
    stop = Value(Interrupt)
    for op in (lambda: m.set(1, stop), lambda: m.set(1000, stop)):
        try:
            op()
        except Interrupt:
            pass
        else:
            raise AssertionError("the BaseException was swallowed")
    assert m == {i: i for i in range(100)} and hash(m) == hash(frozenset((i, i) for i in range(100)))
    mm = m.mutate()
    try:
        mm[1] = stop
    except Interrupt:
        pass
    assert mm[1] is stop and mm._hacc is None
    stop.raises = None
    mm[1] = 1
    result = mm.finish()
    assert result == m and hash(result) == hash(m)


def test_iteration_gives_distinct_item_tuples_and_matching_views():
    m = PMap((i, -i) for i in range(3000)).set(Collide(5, "a"), 1).set(Collide(5, "b"), 2)
    items = list(m.items())
    assert len({id(t) for t in items}) == len(items) == len(m)
    assert dict(items) == dict(zip(m.keys(), m.values())) == dict(zip(iter(m), m.values()))
    assert list(m) == list(m.keys()) == [k for k, _ in items]
    for k, v in m.items():  # the loop drops each tuple: it may be reused
        assert m[k] is v
    assert list(PMap().items()) == [] and list(PMap()) == []


def test_subclasses_weakrefs_and_cycles():
    import gc
    import weakref

    class Sub(PMap):
        pass

    s = Sub(a=1)
    assert type(s.set("b", 2)) is Sub and type(s.delete("a")) is Sub
    assert repr(s) == "Sub({'a': 1})"
    box = []
    m = PMap(x=box)
    box.append(m)
    ref = weakref.ref(m)
    del m, box
    gc.collect()
    assert ref() is None


def test_old_versions_never_change_under_any_update():
    keys = [Collide(h, n) for h in (0, 1, 1 << 35, 7 << 60) for n in range(3)] + list(range(50))
    versions = [(PMap(), {})]
    m, model = PMap(), {}
    for step, k in enumerate(keys * 3):
        if step % 3 == 2 and k in model:
            m = m.delete(k)
            del model[k]
        else:
            m = m.set(k, step)
            model[k] = step
        versions.append((m, dict(model)))
        if step % 17 == 0:
            with m.mutate() as mm:
                for j in keys[:10]:
                    mm[j] = -step
                mm.pop(keys[20], None)
            versions.append((mm.finish(), {**model, **dict.fromkeys(keys[:10], -step)}))
            versions[-1][1].pop(keys[20], None)
    for v, want in versions:
        assert dict(v.items()) == want and len(v) == len(want) and all(v[k] == x for k, x in want.items())
        assert hash(v) == hash(frozenset(want.items()))
