"""HTTP plumbing shared by the API, the web UI and extensions: the error type every
handler raises, bounded JSON bodies, and the text/base64 encoding of keys and values."""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ParamSpec, TypedDict, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from cowdb.history.commits import Commit

ENCODINGS = ("utf8", "base64")
P = ParamSpec("P")
T = TypeVar("T")

#: A JSON object as it arrives (every value still to be checked).
Body = dict[str, object]
#: A JSON object as a handler answers it.
Answer = Mapping[str, object]
#: A route's endpoint.
Handler = Callable[[Request], Awaitable[Response]]


class KeyJSON(TypedDict):
    key: str
    key_encoding: str


class CommitJSON(TypedDict):
    version: int
    time: str
    message: str
    author: str
    branch: str
    parents: list[int]
    keys: int
    keys_put: int
    keys_deleted: int


class ApiError(Exception):
    """Raised by a handler: becomes a JSON error body (API) or an error page (UI).

    ``extra`` is merged into the JSON body (e.g. ``head`` on 412, ``conflicts`` on 409).
    """
    status: int
    message: str
    headers: dict[str, str] | None
    extra: dict[str, object]

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 **extra: object) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers, extra


class BodyTooLarge(Exception):
    """The request body is larger than the server accepts (413)."""


def error_body(status: int, message: str, **extra: object) -> dict[str, object]:
    return {"error": {"status": status, "message": message}, **extra}


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None,
               **extra: object) -> JSONResponse:
    return JSONResponse(error_body(status, message, **extra), status_code=status,
                        headers=headers)


async def run(fn: Callable[P, T], *args: P.args, **kw: P.kwargs) -> T:
    """Run a blocking cowdb call in the thread pool (the event loop never waits on I/O)."""
    return await run_in_threadpool(fn, *args, **kw)


async def read_json(request: Request, *, required: bool = True) -> Body:
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


def decode_bytes(text: object, encoding: object, what: str) -> bytes:
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


def key_json(key: bytes) -> KeyJSON:
    text, enc = encode_bytes(key)
    return {"key": text, "key_encoding": enc}


def value_json(value: bytes | None, prefix: str = "value") -> dict[str, str | None]:
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


def commit_json(c: Commit) -> CommitJSON:
    """A commit record as JSON."""
    return {"version": c.version, "time": iso(c.time), "message": c.message,
            "author": c.author, "branch": c.branch, "parents": list(c.parents),
            "keys": c.count, "keys_put": c.stats.keys_put,
            "keys_deleted": c.stats.keys_deleted}
