"""Readable diffs of one key's two values, as data for the templates (which escape it):
text by line with the changed words marked, JSON by structure (path: old -> new),
anything else by size and hex."""
from __future__ import annotations

import base64
import difflib
import json
import re
from collections.abc import Mapping
from typing import Literal, NotRequired, TypedDict
from urllib.parse import quote

Segment = tuple[bool, str]                  # (changed?, text)
# (kind: same/del/add/gap, old line number or "", new line number or "", segments)
LineRow = tuple[str, int | str, int | str, list[Segment]]
JsonRow = tuple[str, str, str | None, str | None]    # (path, kind, old, new)


class ChangeView(TypedDict):
    """What the change template shows for one key (``mode`` says which fields are set)."""
    key: str
    q: dict[str, str]
    kind: str
    old_size: int | None
    new_size: int | None
    mode: NotRequired[Literal["binary", "large", "json", "text"]]
    old_hex: NotRequired[str | None]     # binary
    new_hex: NotRequired[str | None]
    rows: NotRequired[list[JsonRow] | list[LineRow]]   # json, text


MAX_TEXT = 200_000     # beyond this a text value is shown by size, not diffed
MAX_HEX = 256


def as_text(b: bytes | None) -> str | None:
    if b is None:
        return ""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in s[:4096]):
        return None
    return s


def key_label(k: bytes) -> str:
    """How a key is shown: its text, or 0x-hex when it is not UTF-8."""
    try:
        return k.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + k.hex()


def key_query(k: bytes) -> dict[str, str]:
    """Query parameters naming a key in the UI's URLs: k=text or kb=base64url."""
    try:
        return {"k": k.decode("utf-8")}
    except UnicodeDecodeError:
        return {"kb": base64.urlsafe_b64encode(k).decode().rstrip("=")}


def api_key_path(prefix: str, k: bytes) -> tuple[str, dict[str, str]]:
    """(path, query) of a key in the API's URLs (``prefix`` + the key): its text
    percent-encoded as one path segment, or base64url with key_encoding=base64 when it is
    not UTF-8 or a browser would resolve part of it as a dot segment ("." or "..")."""
    try:
        text = k.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or {".", ".."} & set(text.split("/")):
        return (prefix + base64.urlsafe_b64encode(k).decode().rstrip("="),
                {"key_encoding": "base64"})
    return prefix + quote(text, safe=""), {}


def key_from_query(params: Mapping[str, str]) -> bytes | None:
    if params.get("kb"):
        raw = params["kb"]
        try:
            return base64.urlsafe_b64decode(raw.encode("ascii") + b"=" * (-len(raw) % 4))
        except ValueError:
            return None
    k = params.get("k")
    return None if not k else k.encode("utf-8", "surrogatepass")


def hexdump(b: bytes) -> str:
    lines = []
    for i in range(0, min(len(b), MAX_HEX), 16):
        chunk = b[i:i + 16]
        asc = "".join(chr(c) if 32 <= c < 127 else "." for c in chunk)
        lines.append(f"{i:08x}  {chunk.hex(' '):<47}  {asc}")
    if len(b) > MAX_HEX:
        lines.append(f"… {len(b) - MAX_HEX} more bytes")
    return "\n".join(lines)


def _json(s: str) -> tuple[object, bool]:
    if s is None or s == "":
        return None, True
    try:
        v = json.loads(s)
    except ValueError:
        return None, False
    return v, isinstance(v, (dict, list))


def json_changes(a: object, b: object, path: str = "$", out: list[JsonRow] | None = None,
                 limit: int = 500) -> list[JsonRow]:
    """(path, kind, old, new) for each leaf that differs between two JSON values."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)) \
                else f"{path}[{json.dumps(k)}]"
            if k not in a:
                out.append((p, "added", None, _short(b[k])))
            elif k not in b:
                out.append((p, "deleted", _short(a[k]), None))
            elif a[k] != b[k]:
                json_changes(a[k], b[k], p, out, limit)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            p = f"{path}[{i}]"
            if i >= len(a):
                out.append((p, "added", None, _short(b[i])))
            elif i >= len(b):
                out.append((p, "deleted", _short(a[i]), None))
            elif a[i] != b[i]:
                json_changes(a[i], b[i], p, out, limit)
    elif a != b:
        out.append((path, "changed", _short(a), _short(b)))
    return out


def _short(v: object) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 300 else s[:300] + "…"


_WORD = re.compile(r"\s+|\w+|[^\w\s]")


def words(a: str, b: str) -> tuple[list[Segment], list[Segment]]:
    """Two lists of (changed?, text) segments: the words that differ, marked."""
    wa, wb = _WORD.findall(a), _WORD.findall(b)
    sa: list[Segment] = []
    sb: list[Segment] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False) \
            .get_opcodes():
        if op == "equal":
            sa.append((False, "".join(wa[i1:i2])))
            sb.append((False, "".join(wb[j1:j2])))
        else:
            if i2 > i1:
                sa.append((True, "".join(wa[i1:i2])))
            if j2 > j1:
                sb.append((True, "".join(wb[j1:j2])))
    return sa, sb


def line_rows(a: str, b: str, context: int = 3) -> list[LineRow]:
    """Rows (kind, old line no, new line no, segments) of a unified line diff."""
    la, lb = a.splitlines(), b.splitlines()
    rows: list[LineRow] = []
    for group in difflib.SequenceMatcher(None, la, lb, autojunk=False) \
            .get_grouped_opcodes(context):
        if rows:
            rows.append(("gap", "", "", [(False, "…")]))
        for op, i1, i2, j1, j2 in group:
            if op == "equal":
                for k in range(i2 - i1):
                    rows.append(("same", i1 + k + 1, j1 + k + 1, [(False, la[i1 + k])]))
                continue
            if op == "replace" and i2 - i1 == j2 - j1:
                for k in range(i2 - i1):
                    sa, sb = words(la[i1 + k], lb[j1 + k])
                    rows.append(("del", i1 + k + 1, "", sa))
                    rows.append(("add", "", j1 + k + 1, sb))
                continue
            for k in range(i1, i2):
                rows.append(("del", k + 1, "", [(True, la[k])]))
            for k in range(j1, j2):
                rows.append(("add", "", k + 1, [(True, lb[k])]))
    return rows


def view(key: bytes, old: bytes | None, new: bytes | None) -> ChangeView:
    """Everything the change template shows for one key."""
    kind = "added" if old is None else "deleted" if new is None else "changed"
    out: ChangeView = {"key": key_label(key), "q": key_query(key), "kind": kind,
                       "old_size": None if old is None else len(old),
                       "new_size": None if new is None else len(new)}
    ta, tb = as_text(old), as_text(new)
    if ta is None or tb is None:
        out.update({"mode": "binary", "old_hex": None if old is None else hexdump(old),
                    "new_hex": None if new is None else hexdump(new)})
        return out
    if len(ta) + len(tb) > MAX_TEXT:
        out["mode"] = "large"
        return out
    ja, oka = _json(ta)
    jb, okb = _json(tb)
    if oka and okb and (ja is not None or jb is not None):
        out.update({"mode": "json", "rows": json_changes(
            {} if ja is None and old is None else ja, {} if jb is None and new is None else jb)})
        return out
    out.update({"mode": "text", "rows": line_rows(ta, tb)})
    return out
