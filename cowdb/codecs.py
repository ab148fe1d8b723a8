"""Value codecs: what ``cowdb.open(path, codec=...)`` stores values as.

A codec turns a Python value into bytes (``encode``) and back (``decode``).
Keys are never encoded: they stay bytes (or UTF-8 str) so that their byte
order is the database's order. The default ``"bytes"`` codec is no codec at
all: values go in and come out as they are, with no call on the hot path.
"""
import json
from typing import Any

import msgpack

from .errors import CodecError


class JsonCodec:
    """Values are anything ``json`` can write: dict, list, str, int, float, bool, None."""
    name = "json"

    @staticmethod
    def encode(value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise CodecError(f"the json codec cannot store {type(value).__name__}: {e}") from e

    @staticmethod
    def decode(data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError as e:
            raise CodecError(f"a stored value is not JSON ({e}); was it written with "
                             f"another codec?") from e


class MsgpackCodec:
    """Values are anything msgpack can write; bytes and str stay distinct."""
    name = "msgpack"

    @staticmethod
    def encode(value: Any) -> bytes:
        try:
            return msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as e:
            raise CodecError(f"the msgpack codec cannot store {type(value).__name__}: "
                             f"{e}") from e

    @staticmethod
    def decode(data: bytes) -> Any:
        try:
            return msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
            raise CodecError(f"a stored value is not msgpack ({e}); was it written with "
                             f"another codec?") from e


BUILTIN: dict[str, type[JsonCodec | MsgpackCodec]] = {"json": JsonCodec, "msgpack": MsgpackCodec}


def get_codec(spec: Any) -> Any:
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


def codec_name(codec: Any) -> str:
    """What the catalog records for a codec (see docs/format.md, "The catalog")."""
    if codec is None:
        return "bytes"
    if codec in BUILTIN.values():
        name: str = codec.name
        return name
    return "custom:" + str(getattr(codec, "name", None) or type(codec).__qualname__)


def settle_codec(spec: Any, recorded: str | None) -> Any:
    """The codec to open with: ``spec`` as given to open() (None: the recorded one) and
    ``recorded``, the name the file records (None: a file from before the record, which
    opens with whatever is given, "bytes" by default). A mismatch raises CodecError."""
    if recorded is None:
        return get_codec("bytes" if spec is None else spec)
    if spec is None:
        if recorded.startswith("custom:"):
            raise CodecError(f"this database stores values with a custom codec "
                             f"({recorded[7:]}); open it with codec= that codec")
        return get_codec(recorded)
    codec = get_codec(spec)
    if codec_name(codec) != recorded:
        raise CodecError(f"this database stores values with codec {recorded!r}, not "
                         f"{codec_name(codec)!r}; open it with codec={recorded!r} (or without "
                         f"codec=)" if not recorded.startswith("custom:") else
                         f"this database stores values with the custom codec "
                         f"{recorded[7:]!r}, not {codec_name(codec)!r}")
    return codec
