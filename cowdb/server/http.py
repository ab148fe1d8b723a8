"""HTTP plumbing shared by the API, the web UI and extensions: the error type every
handler raises, bounded JSON bodies, and the text/base64 encoding of keys and values."""
from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

ENCODINGS = ("utf8", "base64")


class ApiError(Exception):
    """Raised by a handler: becomes a JSON error body (API) or an error page (UI).

    ``extra`` is merged into the JSON body (e.g. ``head`` on 412, ``conflicts`` on 409).
    """

    def __init__(self, status: int, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers, extra


class BodyTooLarge(Exception):
    """The request body is larger than the server accepts (413)."""


def error_body(status: int, message: str, **extra) -> dict:
    return {"error": {"status": status, "message": message}, **extra}


def json_error(status: int, message: str, headers=None, **extra) -> JSONResponse:
    return JSONResponse(error_body(status, message, **extra), status_code=status,
                        headers=headers)


async def run(fn, *args, **kw):
    """Run a blocking cowdb call in the thread pool (the event loop never waits on I/O)."""
    return await run_in_threadpool(fn, *args, **kw)


async def read_json(request: Request, *, required: bool = True):
    """The request's JSON body: 415 unless Content-Type is JSON, 400 naming the problem
    if it does not parse or is not an object. Size is bounded by the server (413)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if not body and not required:
        return {}
    if ctype != "application/json":
        raise ApiError(415, "send the body as JSON with Content-Type: application/json")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


# ---- keys and values ------------------------------------------------------
def encode_bytes(b: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 text stays readable, anything else is base64."""
    try:
        return b.decode("utf-8"), "utf8"
    except UnicodeDecodeError:
        return base64.b64encode(b).decode("ascii"), "base64"


def decode_bytes(text, encoding, what: str) -> bytes:
    """The bytes a JSON field and its encoding name (400 if they do not decode)."""
    if encoding is None:
        encoding = "utf8"
    if encoding not in ENCODINGS:
        raise ApiError(400, f"{what}_encoding must be 'utf8' or 'base64', not {encoding!r}")
    if not isinstance(text, str):
        raise ApiError(400, f"{what} must be a string")
    if encoding == "utf8":
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{what} is not valid UTF-8 text") from None
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ApiError(400, f"{what} is not valid base64") from None


def key_json(key: bytes) -> dict:
    text, enc = encode_bytes(key)
    return {"key": text, "key_encoding": enc}


def value_json(value: bytes | None, prefix: str = "value") -> dict:
    if value is None:
        return {prefix: None, f"{prefix}_encoding": None}
    text, enc = encode_bytes(value)
    return {prefix: text, f"{prefix}_encoding": enc}


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(s: str, what: str) -> datetime:
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ApiError(400, f"{what} must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z") \
            from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def commit_json(c) -> dict:
    """A commit record as JSON."""
    return {"version": c.version, "time": iso(c.time), "message": c.message,
            "author": c.author, "branch": c.branch, "parents": list(c.parents),
            "keys": c.count, "keys_put": c.stats.keys_put,
            "keys_deleted": c.stats.keys_deleted}
