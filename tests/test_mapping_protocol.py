"""Snapshots and transactions against CPython's own mapping tests (test.mapping_tests).

BasicTestMappingProtocol runs on snapshots (its read tests: a snapshot is a
read-only Mapping) and in full on transactions (a MutableMapping);
TestMappingProtocol runs on transactions, except what no cowdb mapping can
do: keys are bytes (or str, stored as UTF-8), so the tests that use int keys
or build a dict from its constructor or fromkeys()/copy() are left out.
Values go through the msgpack codec, so str, int and list values round-trip.
"""
import unittest

import pytest

import cowdb

mapping_tests = pytest.importorskip("test.mapping_tests")

REFERENCE = {b"1": "2", b"key1": "value1", b"key2": [1, 2, 3]}


class _Dbs:
    def setUp(self):
        self.dbs = []

    def tearDown(self):
        for db in self.dbs:
            db.close()

    def _db(self):
        db = cowdb.open(codec="msgpack")
        self.dbs.append(db)
        return db


class SnapshotMapping(_Dbs, mapping_tests.BasicTestMappingProtocol):
    def _reference(self):
        return dict(REFERENCE)

    def _empty_mapping(self):
        return self._db().read()

    def _full_mapping(self, data):
        db = self._db()
        with db.write() as tx:
            tx.update(data)
        return db.read()

    def test_write(self):
        raise unittest.SkipTest("a snapshot is read-only")

    test_pop = test_popitem = test_setdefault = test_update = test_write


class TransactionMapping(_Dbs, mapping_tests.BasicTestMappingProtocol):
    def _reference(self):
        return dict(REFERENCE)

    def _empty_mapping(self):
        return self._db().write()

    def _full_mapping(self, data):
        tx = self._db().write()
        for k, v in data.items():
            tx[k] = v
        return tx


def _str_keys(d):
    return {k if isinstance(k, (bytes, str)) else str(k): v for k, v in d.items()}


class TransactionFullMapping(TransactionMapping, mapping_tests.TestMappingProtocol):
    def _full_mapping(self, data):
        return TransactionMapping._full_mapping(self, _str_keys(data))

    def test_constructor(self):
        raise unittest.SkipTest("dict-only: a transaction is made by db.write(), not "
                                "from keywords")

    def test_fromkeys(self):
        raise unittest.SkipTest("dict-only: fromkeys()")

    def test_copy(self):
        raise unittest.SkipTest("dict-only: copy()")

    def test_popitem(self):
        raise unittest.SkipTest("dict-only: copy() (the test copies the mapping)")

    def test_items(self):
        raise unittest.SkipTest("keys are bytes: an int key (1) cannot be stored")

    test_update = test_items

    def test_setdefault(self):
        raise unittest.SkipTest("values are stored by value: a list from setdefault() "
                                "changed afterwards does not change what is stored")


def test_views_are_views():
    db = cowdb.open()
    with db.write() as tx:
        tx.update({b"a": b"1", b"b": b"2"})
    with db.read() as s:
        k, v, i = s.keys(), s.values(), s.items()
        assert len(k) == 2 and len(v) == 2 and len(i) == 2
        assert b"a" in k and b"a" in k and (b"b", b"2") in i and b"2" in v
        assert list(k) == list(k) == [b"a", b"b"]
        assert k & {b"a", b"z"} == {b"a"}
        assert list(s.keys(b"b")) == [b"b"]          # a range is still an iterator
        assert list(s.items(prefix=b"a")) == [(b"a", b"1")]


def test_update_with_keys_and_getitem_only():
    class KeysOnly:
        def keys(self):
            return [b"x", b"y"]

        def __getitem__(self, k):
            return k * 2
    db = cowdb.open()
    with db.write() as tx:
        tx.update(KeysOnly())
    assert dict(db.read().items()) == {b"x": b"xx", b"y": b"yy"}
