"""PSortedMap against a dict plus a sorted list of its keys."""

import bisect
import pickle

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cowdb.pds import MISSING, PMap, PSortedMap, diff
from cowdb.pds import _btree

KEYS = st.integers(0, 300)
BOUND = st.none() | st.integers(-5, 305)


def check_tree(node, height, lo=None, hi=None):
    """B+tree invariants: sorted keys within separators, counts, node sizes."""
    keys = node[0]
    assert keys == sorted(keys) and all((lo is None or lo <= k) and (hi is None or k < hi) for k in keys)
    if not height:
        assert len(keys) == len(node[1]) <= _btree.MAX
        return len(keys)
    children = node[1]
    assert len(keys) == len(children) - 1 and len(children) <= _btree.MAX
    bounds = [lo, *keys, hi]
    sizes = [check_tree(c, height - 1, bounds[i], bounds[i + 1]) for i, c in enumerate(children)]
    assert sizes == node[2]
    for c in children:  # a non-root node is at least MIN full
        assert len(c[1]) >= _btree.MIN
    return sum(sizes)


class PSortedMapMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.model = {}
        self.m = PSortedMap()
        self.versions = [(self.m, {})]

    def _commit(self, m, model):
        self.m, self.model = m, model
        self.versions.append((m, dict(model)))

    @rule(k=KEYS, v=st.integers())
    def set(self, k, v):
        self._commit(self.m.set(k, v), {**self.model, k: v})

    @rule(ks=st.lists(KEYS, max_size=150))
    def set_many(self, ks):
        m = self.m
        for k in ks:
            m = m.set(k, -k)
        self._commit(m, {**self.model, **{k: -k for k in ks}})

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_many(self, data):
        ks = data.draw(st.lists(st.sampled_from(sorted(self.model)), unique=True, max_size=150))
        m = self.m
        model = dict(self.model)
        for k in ks:
            m = m.delete(k)
            del model[k]
        self._commit(m, model)

    @rule(ops=st.lists(st.tuples(KEYS, st.one_of(st.none(), st.integers())), max_size=200))
    def batch(self, ops):
        model = dict(self.model)
        with self.m.mutate() as mm:
            for k, v in ops:
                if v is None:
                    assert mm.pop(k, "absent") == model.pop(k, "absent")
                else:
                    mm[k] = v
                    model[k] = v
                assert len(mm) == len(model)
        self._commit(mm.finish(), model)

    @rule(n=st.integers(0, 2000))
    def rebuild(self, n):
        model = {i: i for i in range(0, 2 * n, 2)}
        self._commit(PSortedMap(model), model)

    @rule(lo=BOUND, hi=BOUND, inc=st.tuples(st.booleans(), st.booleans()), rev=st.booleans())
    def irange(self, lo, hi, inc, rev):
        want = [k for k in sorted(self.model)
                if (lo is None or lo < k or (inc[0] and lo == k)) and (hi is None or k < hi or (inc[1] and k == hi))]
        assert list(self.m.irange(lo, hi, inc, rev)) == (want[::-1] if rev else want)

    @rule(k=st.integers(-5, 305), data=st.data())
    def positions(self, k, data):
        keys = sorted(self.model)
        assert self.m.bisect_left(k) == bisect.bisect_left(keys, k)
        assert self.m.bisect_right(k) == bisect.bisect_right(keys, k)
        if keys:
            i = data.draw(st.integers(-len(keys), len(keys) - 1))
            assert self.m.peekitem(i) == (keys[i], self.model[keys[i]])
            assert self.m.index(keys[i]) == i % len(keys)

    @invariant()
    def matches_model(self):
        m = self.m
        assert len(m) == len(self.model)
        assert list(m.items()) == sorted(self.model.items())
        assert list(m.values()) == [v for _, v in sorted(self.model.items())]
        assert list(reversed(m)) == sorted(self.model, reverse=True)
        assert check_tree(m._root, m._height) == len(self.model)
        assert m == self.model and m == PMap(self.model)
        assert hash(m) == hash(PMap(self.model))

    @invariant()
    def old_versions_unchanged(self):
        for m, model in self.versions:
            assert list(m.items()) == sorted(model.items())

    @invariant()
    def diff_matches_model(self):
        old, old_model = self.versions[len(self.versions) // 2]
        want = []
        for k in sorted(old_model.keys() | self.model.keys()):
            o, n = old_model.get(k, MISSING), self.model.get(k, MISSING)
            if o is MISSING or n is MISSING or o != n:
                want.append((k, o, n))
        assert list(diff(old, self.m)) == want
        assert (old == self.m) == (not want)


TestPSortedMap = PSortedMapMachine.TestCase
TestPSortedMap.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)


def test_errors_and_protocols():
    m = PSortedMap({"b": 2, "a": 1}, c=3)
    assert repr(m) == "PSortedMap({'a': 1, 'b': 2, 'c': 3})" and eval(repr(m)) == m
    assert pickle.loads(pickle.dumps(m)) == m and PSortedMap[str, int].__origin__ is PSortedMap
    assert m.delete("a") == {"b": 2, "c": 3} and m.set("a", 1) is m
    for bad, exc in ((lambda: m.delete("z"), KeyError), (lambda: m.peekitem(3), IndexError),
                     (lambda: m.index("z"), ValueError), (lambda: PSortedMap({1: 1, "a": 2}), TypeError)):
        try:
            bad()
        except exc:
            pass
        else:
            raise AssertionError(f"{bad} did not raise {exc.__name__}")
    match m:
        case {"c": c}:
            assert c == 3
        case _:
            raise AssertionError("PSortedMap did not match a mapping pattern")


def test_diff_of_large_versions_is_in_key_order():
    a = PSortedMap((i, i) for i in range(20000))
    b = a.set(5, -5).delete(19999).set(20000, 0)
    assert list(diff(a, b)) == [(5, 5, -5), (19999, 19999, MISSING), (20000, MISSING, 0)]
