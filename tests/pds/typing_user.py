"""Users' code over cowdb.pds, with the types a checker must infer (assert_type).

test_pds_typing runs it (assert_type does nothing at run time) and type-checks it with
mypy --strict: the collections are generic, so these types follow from the arguments.
"""

from typing import Any, assert_type

from cowdb.pds import MISSING, PMap, PMapMutation, PSet, PSortedMap, PVector, diff

m = PMap({"a": 1})
assert_type(m, PMap[str, int])
m2 = m.set("b", 2)
assert_type(m2["b"], int)
assert_type(m.get("a"), int | None)
assert_type(m.get("z", 0), int)
assert_type(m.mutate(), PMapMutation[str, int])
mm = m.mutate()
mm["c"] = 3
assert_type(mm.finish(), PMap[str, int])
assert_type(PMap(a=1), PMap[str, int])
assert_type(PMap([(1, b"x")]), PMap[int, bytes])
assert_type(list(m.items()), list[tuple[str, int]])

s = PSet([1, 2])
assert_type(s.add(3), PSet[int])
assert_type(s | PSet([4]), PSet[int])
assert_type(list(s), list[int])

v = PVector(["x"])
assert_type(v.append("y")[0], str)
assert_type(v[0:1], PVector[str])
e = v.evolver()
e.append("z")
assert_type(e.finish(), PVector[str])

sm = PSortedMap({1: "a"})
assert_type(sm.peekitem(), tuple[int, str])
assert_type(list(sm.irange(0, 5)), list[int])
assert_type(sm.delete(1), PSortedMap[int, str])

assert_type(list(diff(m, m2)), list[tuple[Any, Any, Any]])
assert list(diff(m, m2)) == [("b", MISSING, 2)]
