"""How the command line shows bytes, versions and times, and parses them back.

Keys and values are bytes. On the command line they are UTF-8 text:

- ``text(b)``: for showing one value on its own: UTF-8 text where it decodes
  (bytes that are not UTF-8 as ``\\xff``), control characters escaped as
  ``safe`` does except newline and tab, which stay: a multi-line value reads as
  text, and no value can drive the terminal. ``get --raw`` has the exact bytes.
- ``inline(b)``: always one line and reversible: control characters, bytes
  that are not UTF-8 and the backslash itself are escaped (``\\n``,
  ``\\xff``, ``\\\\``). ``unescape()`` turns that back into the bytes, so a
  key printed by ``scan`` can be passed back with ``--escaped``.
- ``jvalue(b)``: for JSON: a string when the bytes are UTF-8, else
  ``{"base64": "..."}``; ``from_jvalue()`` reads either back.
"""
from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta

_ESC = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def text(b: bytes) -> str:
    """The bytes as text to show: UTF-8 where it decodes, every byte that does not as
    \\xNN, and control characters escaped (\\x1b, \\r) except newline and tab."""
    return safe(b.decode("utf-8", "backslashreplace"), keep="\n\t")


def _bidi(o: int) -> bool:
    """Whether code point o is a bidirectional embedding, override or isolate: shown as
    is, it reorders how the rest of the line reads ("Trojan Source")."""
    return 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069


_PLAIN_ASCII = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")
_NEEDS_ESCAPE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                           "\udc80-\udcff]")


def inline(b: bytes) -> str:
    """One line, reversible with ``unescape``: escape \\, control characters and non-UTF-8."""
    if _PLAIN_ASCII.fullmatch(b):
        return b.decode("ascii")
    s = b.decode("utf-8", "surrogateescape")
    if not _NEEDS_ESCAPE.search(s):
        return s
    out = []
    for ch in s:
        o = ord(ch)
        if ch in _ESC:
            out.append(_ESC[ch])
        elif 0xDC80 <= o <= 0xDCFF:          # a byte that is not UTF-8
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0 or o in (0x2028, 0x2029) or _bidi(o):
            out.append(f"\\x{o:02x}" if o < 0x80 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")



def safe(s: str, keep: str = "") -> str:
    """User text (a message, an author, a ref name) made safe for a terminal: control
    characters (escape sequences, newlines), lone surrogates, line separators and
    bidirectional overrides are shown escaped (\\x1b, \\n, \\u202e), so text can neither
    drive the terminal, forge a line nor reorder one. Everything else (any printable
    Unicode) stays as it is. The characters in ``keep`` stay too: ``keep="\\n"`` for a
    message of several lines. The backslash is not escaped, so ``safe`` of its own output
    changes nothing."""
    if not _CONTROL.search(s):
        return s
    out = []
    for ch in s:
        o = ord(ch)
        if ch in keep:
            out.append(ch)
        elif ch in _ESC and ch != "\\":
            out.append(_ESC[ch])
        elif o < 0x80 and (o < 0x20 or o == 0x7F):
            out.append(f"\\x{o:02x}")
        elif 0xDC80 <= o <= 0xDCFF:  # a byte that is not UTF-8 (a typed path's, decoded
            out.append(f"\\x{o - 0xDC00:02x}")  # with surrogateescape): the byte
        elif 0x80 <= o < 0xA0 or o in (0x2028, 0x2029) or 0xD800 <= o <= 0xDFFF or _bidi(o):
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


_UNESC = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[\\nrt0])")


def unescape(s: str) -> bytes:
    """The bytes that ``inline`` showed as ``s`` (\\xNN is one raw byte)."""
    out = bytearray()
    pos = 0
    for m in _UNESC.finditer(s):
        out += s[pos:m.start()].encode("utf-8")
        e = m.group(1)
        if e[0] == "x":
            out.append(int(e[1:], 16))
        elif e[0] == "u":
            out += chr(int(e[1:], 16)).encode("utf-8")
        else:
            out += {"\\": b"\\", "n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0"}[e]
        pos = m.end()
    rest = s[pos:]
    if "\\" in rest:
        raise ValueError(f"unknown escape in '{safe(s)}': use \\\\, \\n, \\r, \\t, \\0, \\xNN "
                         f"or \\uNNNN")
    out += rest.encode("utf-8")
    return bytes(out)


_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def json_text(obj: object, indent: int | None = None) -> str:
    """JSON with non-ASCII text as it is (ensure_ascii=False), except what json leaves raw but
    a terminal or a line splitter acts on: DEL, the C1 controls (\\u009b starts an
    escape sequence), the line separators U+2028/2029 and the bidirectional overrides,
    written \\uNNNN. The same
    value to any JSON reader."""
    s = json.dumps(obj, indent=indent, ensure_ascii=False)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", s)


def jvalue(b: bytes | None) -> str | dict[str, str] | None:
    """JSON form of bytes: the string when UTF-8, else {"base64": ...}; None stays null."""
    if b is None:
        return None
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(b).decode("ascii")}


def from_jvalue(v: object) -> bytes | None:
    """Inverse of ``jvalue``."""
    if v is None:
        return None
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, dict) and set(v) == {"base64"} and isinstance(v["base64"], str):
        return base64.b64decode(v["base64"], validate=True)
    raise ValueError(f'expected a string or {{"base64": "..."}}, not {v!r}')


def when(t: datetime) -> str:
    """A commit time for people: local time, to the second."""
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def iso(t: datetime) -> str:
    """A commit time for machines: ISO 8601 in UTC with microseconds."""
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(s: str) -> datetime | None:
    """An ISO 8601 date or date-time; naive means local time. None when s is not one."""
    s2 = s.strip()
    if not re.match(r"^\d{4}-\d{2}-\d{2}", s2):
        return None
    if s2.endswith("Z"):
        s2 = s2[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(s2)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.astimezone()   # local time
    if t.microsecond:
        # A time with microseconds was most likely copied from `log --json`, which
        # rounds commit times (nanoseconds) to the microsecond: include that commit.
        t += timedelta(microseconds=1)
    return t


def ref(s: str) -> int | datetime | str:
    """What ``--at`` names: an int version, a datetime, or a tag/branch name (str)."""
    s = s.strip()
    if s.isascii() and s.isdigit():
        return int(s)
    t = parse_time(s)
    return t if t is not None else s


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
