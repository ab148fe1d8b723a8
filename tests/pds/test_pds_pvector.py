"""PVector against list, keeping every version and checking none changes."""

import pickle

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cowdb.pds import PVector

# Lengths around the 32-element tail and the 1024-element first trie level.
SIZES = st.sampled_from([0, 1, 31, 32, 33, 64, 1023, 1024, 1025, 1057, 33 * 32 + 1])


class PVectorMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.model = []
        self.v = PVector()
        self.versions = [(self.v, [])]

    def _commit(self, v, model):
        self.v, self.model = v, model
        self.versions.append((v, list(model)))

    @rule(n=SIZES)
    def rebuild(self, n):
        self._commit(PVector(range(n)), list(range(n)))

    @rule(x=st.integers())
    def append(self, x):
        self._commit(self.v.append(x), self.model + [x])

    @rule(xs=st.lists(st.integers(), max_size=70))
    def extend(self, xs):
        self._commit(self.v + xs, self.model + xs)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), x=st.integers())
    def set(self, data, x):
        i = data.draw(st.integers(-len(self.model), len(self.model) - 1))
        model = list(self.model)
        model[i] = x
        self._commit(self.v.set(i, x), model)

    @precondition(lambda self: self.model)
    @rule(k=st.integers(1, 40))
    def pop(self, k):
        k = min(k, len(self.model))
        v = self.v
        for _ in range(k):
            v = v.pop()
        self._commit(v, self.model[:-k])

    @rule(ops=st.lists(st.tuples(st.sampled_from(["append", "set", "pop"]), st.integers()), max_size=60))
    def evolve(self, ops):
        model = list(self.model)
        with self.v.evolver() as e:
            for op, x in ops:
                if op == "append":
                    e.append(x)
                    model.append(x)
                elif op == "set" and model:
                    e[x % len(model)] = x
                    model[x % len(model)] = x
                elif op == "pop" and model:
                    assert e.pop() == model.pop()
                assert len(e) == len(model)
        self._commit(e.finish(), model)

    @rule(data=st.data())
    def read(self, data):
        n = len(self.model)
        i = data.draw(st.integers(-n - 2, n + 1))
        if -n <= i < n:
            assert self.v[i] == self.model[i]
        else:
            try:
                self.v[i]
            except IndexError:
                pass
            else:
                raise AssertionError("out-of-range index did not raise")
        sl = slice(*data.draw(st.tuples(st.none() | st.integers(-n - 1, n + 1), st.none() | st.integers(-n - 1, n + 1), st.sampled_from([None, 1, 3, -1]))))
        assert list(self.v[sl]) == self.model[sl]

    @invariant()
    def matches_model(self):
        assert len(self.v) == len(self.model) and list(self.v) == self.model
        assert self.v == self.model and self.v == tuple(self.model) and self.v == PVector(self.model)
        assert hash(self.v) == hash(tuple(self.model))

    @invariant()
    def old_versions_unchanged(self):
        for v, model in self.versions:
            assert list(v) == model


TestPVector = PVectorMachine.TestCase
TestPVector.settings = settings(max_examples=50, stateful_step_count=25, deadline=None)


def test_sequence_methods_and_protocols():
    v = PVector("abcab")
    assert v.index("b") == 1 and v.index("b", 2) == 4 and v.count("a") == 2
    assert v != PVector("abca") and v != "abcab" and (v == 1) is False
    assert repr(v[:2]) == "PVector(['a', 'b'])" and pickle.loads(pickle.dumps(v)) == v
    assert PVector[int].__origin__ is PVector and list(reversed(v)) == list("bacba")
    match PVector([1, 2, 3]):
        case [first, *rest]:
            assert (first, rest) == (1, [2, 3])
        case _:
            raise AssertionError("PVector did not match a sequence pattern")
    try:
        v.index("z")
    except ValueError:
        pass
    else:
        raise AssertionError("index of a missing element did not raise")


def test_evolver_refuses_use_after_finish():
    e = PVector([1]).evolver()
    e.append(2)
    assert e.persistent() == [1, 2] and e.finish() is e.finish()
    try:
        e.append(3)
    except ValueError:
        pass
    else:
        raise AssertionError("append after finish() did not raise")


def test_equal_versions_compare_by_shared_leaves():
    a = PVector(range(50000))
    b = a.set(100, -1).set(100, 100)
    assert a == b and a.set(40000, 0) != b
