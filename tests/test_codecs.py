"""Value codecs: typed round trips for each built-in and a custom codec, through
writes, reads, ranges, diff, history and merge resolution."""
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import cowdb
from cowdb.codecs import MsgpackCodec
from cowdb.errors import CodecError, InvalidType

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12)
msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=20)
    | st.binary(max_size=20) | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12)


@settings(max_examples=40, deadline=None)
@given(values=st.dictionaries(st.binary(min_size=1, max_size=8), json_values, max_size=20))
def test_json_round_trip(values):
    db = cowdb.open(codec="json")
    with db.write() as tx:
        tx.update(values)
    snap = db.read()
    assert dict(snap.items()) == values
    for k, v in values.items():
        assert snap[k] == v and snap.get(k) == v and k in snap


@settings(max_examples=40, deadline=None)
@given(values=st.dictionaries(st.binary(min_size=1, max_size=8), msgpack_values, max_size=20))
def test_msgpack_round_trip(values, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("m") / "m.cow")
    with cowdb.open(path, codec="msgpack") as db:
        with db.write() as tx:
            for k, v in values.items():
                tx[k] = v
    with cowdb.open(path, codec="msgpack") as db:
        assert dict(db.read().items()) == values


class Upper:
    """A custom codec: str values stored upper-cased bytes, read back lower-cased."""
    def encode(self, v):
        return v.upper().encode()

    def decode(self, b):
        return b.decode().lower()


def test_custom_codec_everywhere():
    db = cowdb.open(codec=Upper())
    with db.write() as tx:
        tx[b"a"] = "one"
        tx.update({b"b": "two"})
        assert tx[b"a"] == "one"
    with db.write() as tx:
        tx[b"a"] = "uno"
    assert [tuple(c) for c in db.diff(1, 2)] == [(b"a", "one", "uno")]
    assert [v for _, _, v in db.history(b"a")] == ["uno", "one"]
    assert list(db.read().values()) == ["uno", "two"]
    db.branch("side", at=1)
    with db.write(branch="side") as tx:
        tx[b"a"] = "eins"
    seen = []

    def pick(key, base, ours, theirs):
        seen.append((base, ours, theirs))
        return ours + "+" + theirs
    db.merge("side", resolve=pick)
    assert seen == [("one", "uno", "eins")]
    assert db.read()[b"a"] == "uno+eins"


def test_json_null_is_a_value_not_a_missing_key():
    db = cowdb.open(codec="json")
    with db.write() as tx:
        tx[b"k"] = None
    snap = db.read()
    assert b"k" in snap and snap[b"k"] is None and snap.get(b"k", 5) is None
    assert snap.get(b"missing", 5) == 5


def test_codec_errors():
    db = cowdb.open(codec="json")
    with pytest.raises(CodecError):
        with db.write() as tx:
            tx[b"k"] = {1, 2}
    assert db.version == 0  # the failed transaction was aborted
    raw = cowdb.open()
    with pytest.raises(InvalidType):
        with raw.write() as tx:
            tx[b"k"] = "str needs a codec"
    with pytest.raises(ValueError):
        cowdb.open(codec="yaml")
    with pytest.raises(ValueError):
        cowdb.open(codec=object())


def test_decoding_a_value_written_by_another_codec_says_so(tmp_path):
    path = str(tmp_path / "x.cow")
    with cowdb.open(path) as db:
        with db.write() as tx:
            tx[b"k"] = b"\xff\x00not json"
    with pytest.raises(CodecError, match="codec 'bytes'"):  # the file records its codec
        cowdb.open(path, codec="json")
    with cowdb.open(path) as db:  # a file from before the record: nothing says which
        with db._writer():
            db._update(lambda cat, txn: cat.tree.delete(b"ocodec"))
    with cowdb.open(path, codec="json") as db:
        with pytest.raises(CodecError, match="another codec"):
            db.read()[b"k"]


def test_msgpack_codec_errors(tmp_path):
    """Error paths branch coverage found untested (issue 18)."""
    db = cowdb.open(codec="msgpack")
    with pytest.raises(CodecError, match="msgpack codec cannot store object"):
        with db.write() as tx:
            tx[b"k"] = object()
    with pytest.raises(CodecError, match="not msgpack"):
        MsgpackCodec.decode(b"\xc1")
    db.close()
    path = str(tmp_path / "custom.cow")
    cowdb.open(path, codec=Upper()).close()
    with pytest.raises(CodecError, match="custom codec"):
        cowdb.open(path)
