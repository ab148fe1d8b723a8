"""Value codecs: what ``cowdb.open(path, codec=...)`` stores values as.

A codec turns a Python value into bytes (``encode``) and back (``decode``).
Keys are never encoded: they stay bytes (or UTF-8 str) so that their byte
order is the database's order. The default ``"bytes"`` codec is no codec at
all: values go in and come out as they are, with no call on the hot path.
"""
import json

import msgpack

from .errors import CodecError


class JsonCodec:
    """Values are anything ``json`` can write: dict, list, str, int, float, bool, None."""
    name = "json"

    @staticmethod
    def encode(value) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise CodecError(f"the json codec cannot store {type(value).__name__}: {e}") from e

    @staticmethod
    def decode(data: bytes):
        try:
            return json.loads(data)
        except ValueError as e:
            raise CodecError(f"a stored value is not JSON ({e}); was it written with "
                             f"another codec?") from e


class MsgpackCodec:
    """Values are anything msgpack can write; bytes and str stay distinct."""
    name = "msgpack"

    @staticmethod
    def encode(value) -> bytes:
        try:
            return msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as e:
            raise CodecError(f"the msgpack codec cannot store {type(value).__name__}: "
                             f"{e}") from e

    @staticmethod
    def decode(data: bytes):
        try:
            return msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
            raise CodecError(f"a stored value is not msgpack ({e}); was it written with "
                             f"another codec?") from e


BUILTIN = {"json": JsonCodec, "msgpack": MsgpackCodec}


def get_codec(spec):
    """None for raw bytes, else an object with encode/decode."""
    if spec is None or spec == "bytes":
        return None
    if isinstance(spec, str):
        try:
            return BUILTIN[spec]
        except KeyError:
            raise ValueError(f"unknown codec {spec!r}: use 'bytes', 'json', 'msgpack' or an "
                             f"object with encode() and decode()") from None
    if callable(getattr(spec, "encode", None)) and callable(getattr(spec, "decode", None)):
        return spec
    raise ValueError("a codec is 'bytes', 'json', 'msgpack' or an object with encode(value) "
                     "-> bytes and decode(bytes) -> value")
