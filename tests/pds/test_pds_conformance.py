"""Run immutables' own Map test suite against PMap (peer conformance).

The suite is vendored in immutables_suite/ (Apache 2.0, see the files there);
it needs the immutables package for its test helpers.  Tests that check
immutables' internals rather than Map behaviour are skipped with the reason;
docs/pds.md lists them.
"""

import importlib.util
import pathlib
import unittest

import pytest

from cowdb.pds import PMap

pytest.importorskip("immutables")

_SUITE = pathlib.Path(__file__).parent / "immutables_suite"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"immutables_suite_{name}", _SUITE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_map_suite = _load("immutables_test_map")
_match_suite = _load("immutables_test_pattern_matching")

_REPR = "repr() names the class so it round-trips, PMap({...}), not immutables.Map({...})"


class TestImmutablesMapSuite(_map_suite.BaseMapTest, unittest.TestCase):
    Map = PMap

    test_repr_1 = unittest.skip(_REPR)(_map_suite.BaseMapTest.test_repr_1)
    test_repr_3 = unittest.skip(_REPR)(_map_suite.BaseMapTest.test_repr_3)
    test_map_mut_3 = unittest.skip(_REPR)(_map_suite.BaseMapTest.test_map_mut_3)
    test_hash_2 = unittest.skip(
        "the hash is kept up to date as pairs are set, so hash(m) never calls a value's "
        "__hash__ again and cannot fail the way this test expects"
    )(_map_suite.BaseMapTest.test_hash_2)

    def test_pmap_repr_round_trips(self):
        """What test_repr_1 checks, in PMap's format."""
        h = PMap().set(1, 2).set(2, 3).set(3, 4)
        self.assertEqual(repr(PMap()), "PMap({})")
        self.assertEqual(eval(repr(h)), h)

    def test_pmap_repr_recursive(self):
        """What test_repr_3 checks: a map inside its own key prints as {...}."""

        class Key:
            val = None

            def __hash__(self):
                return 123

            def __repr__(self):
                return repr(self.val)

        k = Key()
        h = PMap().set(k, 1)
        k.val = h
        self.assertEqual(repr(h), "PMap({{...}: 1})")

    def test_pmap_mutation_repr_and_hash(self):
        """What test_map_mut_3 checks, in PMap's format."""
        hm = PMap(a=1).mutate()
        self.assertEqual(repr(hm), "PMapMutation({'a': 1})")
        with self.assertRaisesRegex(TypeError, "unhashable type"):
            hash(hm)

    def test_pmap_unhashable_value_fails_at_hash(self):
        """What test_hash_2 is after: a value that cannot hash makes hash(m) raise."""
        m = PMap({1: 2, 2: []})
        with self.assertRaises(TypeError):
            hash(m)
        self.assertEqual(hash(m.set(2, 3)), hash(frozenset({(1, 2), (2, 3)})))


class TestImmutablesPatternMatching(_match_suite.BaseMapTest, unittest.TestCase):
    Map = PMap


