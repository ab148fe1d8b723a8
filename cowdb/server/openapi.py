"""The OpenAPI 3.1 document of /api/v1 (served at /api/v1/openapi.json). Schemathesis
checks every answer against it in the tests."""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import NotRequired, TypedDict

#: A JSON Schema: built here, read only by clients (and schemathesis).
Schema = dict[str, object]
Content = dict[str, dict[str, Schema]]    # media type -> {"schema": ...}


class Response(TypedDict):
    description: str
    content: NotRequired[Content]
    headers: NotRequired[dict[str, Schema]]


Responses = dict[str, Response]           # status code -> answer


class RequestBody(TypedDict):
    required: bool
    content: Content


# "in" is a keyword, hence the functional form
Parameter = TypedDict("Parameter", {"name": str, "in": str, "required": bool,
                                    "schema": Schema, "description": NotRequired[str]})


class Operation(TypedDict):
    summary: str
    parameters: list[Parameter]
    responses: Responses
    requestBody: NotRequired[RequestBody]
    tags: NotRequired[list[str]]


class Spec(TypedDict):
    openapi: str
    info: dict[str, str]
    servers: list[dict[str, str]]
    security: list[dict[str, list[str]]]
    components: dict[str, object]
    paths: dict[str, dict[str, Operation]]     # path -> method -> operation


ENC: Schema = {"type": ["string", "null"], "enum": ["utf8", "base64", None]}
TEXT = {"type": "string"}
NTEXT = {"type": ["string", "null"]}
INT = {"type": "integer"}
NINT = {"type": ["integer", "null"]}
REF_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 200}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: Schema, required: list[str] | None = None, extra: bool = True) -> Schema:
    out: Schema = {"type": "object", "properties": props,
           "required": list(props) if required is None else required}
    if not extra:
        out["additionalProperties"] = False
    return out


def pair(prefix: str, nullable: bool = True) -> Schema:
    return {prefix: NTEXT if nullable else TEXT, f"{prefix}_encoding": ENC}


SCHEMAS: dict[str, Schema] = {
    "Error": obj({"error": obj({"status": INT, "message": TEXT})}, ["error"]),
    "Commit": obj({"version": INT, "time": TEXT, "message": TEXT, "author": TEXT,
                   "branch": TEXT, "parents": {"type": "array", "items": INT}, "keys": INT,
                   "keys_put": INT, "keys_deleted": INT}),
    "KeyValue": obj({**pair("key", False), **pair("value"), "version": INT}),
    "Change": obj({**pair("key", False), "kind": {"enum": ["added", "deleted", "changed"]},
                   **pair("old"), **pair("new")}, ["key", "kind"]),
    "Conflict": obj({**pair("key", False), **pair("base"), **pair("ours"), **pair("theirs")}),
    "Written": obj({"version": INT, "branch": TEXT, "author": TEXT}),
    "Page": {"type": ["string", "null"], "description": "pass back as cursor for more"},
}

KEY_IN = obj({"key": TEXT, "key_encoding": {"enum": ["utf8", "base64"]}}, ["key"])
PUT_IN = obj({"key": TEXT, "key_encoding": {"enum": ["utf8", "base64"]}, "value": TEXT,
              "value_encoding": {"enum": ["utf8", "base64"]}}, ["key", "value"])
RESOLVE: Schema = {"oneOf": [{"type": "null"}, {"enum": ["ours", "theirs"]},
                     {"type": "array", "items": obj({
                         "key": TEXT, "key_encoding": {"enum": ["utf8", "base64"]},
                         "value": NTEXT, "value_encoding": {"enum": ["utf8", "base64"]}},
                         ["key"])}]}


def q(name: str, schema: Schema | None = None, desc: str = "",
      required: bool = False) -> Parameter:
    return {"name": name, "in": "query", "required": required,
            "schema": schema or {"type": "string"}, "description": desc}


def p(name: str, schema: Schema | None = None) -> Parameter:
    return {"name": name, "in": "path", "required": True,
            "schema": schema or {"type": "string", "minLength": 1}}


def h(name: str, desc: str = "", required: bool = False) -> Parameter:
    return {"name": name, "in": "header", "required": required,
            "schema": {"type": "string"}, "description": desc}


READ = [q("ref", desc="branch, tag or version (default main)"),
        q("at", desc="ISO 8601 time: the newest version of main then")]
PAGE = [q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        q("cursor", desc="the next value of the previous page")]
KEY_ENC = q("key_encoding", {"enum": ["utf8", "base64"]}, "how the {key} path segment reads")
WRITE = [q("branch", desc="default main"), q("merge", {"enum": ["auto"]},
         "rebase onto a moved head (409 on a true conflict)"),
         h("If-Match", 'the ETag read, "N" (428 without, 412 stale), or *')]


def errors(*codes: int) -> Responses:
    return {str(c): {"description": "error", "content": {"application/json": {
        "schema": ref("Error")}}} for c in codes}


def ok(schema: Schema, code: str = "200", desc: str = "ok", etag: bool = False,
       raw: bool = False) -> Responses:
    """A JSON answer (``raw``: or the value's bytes, application/octet-stream)."""
    content: Content = {"application/json": {"schema": schema}}
    if raw:
        content["application/octet-stream"] = {"schema": {"type": "string",
                                                          "format": "binary"}}
    r: Response = {"description": desc, "content": content}
    if etag:
        r["headers"] = {"ETag": {"schema": {"type": "string"},
                                 "description": "the branch head version"}}
    return {code: r}


def body(schema: Schema, required: bool = True) -> RequestBody:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


COMMON = (400, 401, 403, 404, 405, 413, 415, 429, 503)
NOT_MODIFIED: Responses = {"304": {"description": "the branch has not moved (If-None-Match)"}}


def op(summary: str, responses: Responses, params: Iterable[Parameter] = (),
       request: RequestBody | None = None, tags: Iterable[str] = ()) -> Operation:
    o: Operation = {"summary": summary, "parameters": list(params),
         "responses": {**responses, **errors(*COMMON)}}
    if request is not None:
        o["requestBody"] = request
    if tags:
        o["tags"] = list(tags)
    return o


def written(code: str = "200") -> Responses:
    return {**ok(ref("Written"), code, etag=True), **errors(409, 412, 428)}


def listing(name: str, item: Schema) -> Schema:
    return obj({name: {"type": "array", "items": item}})


def spec() -> Spec:
    paths: dict[str, dict[str, Operation]] = {
        "/keys": {"get": op("List keys in order, paginated", {**ok(obj({
            "version": INT, "keys": {"type": "array", "items": obj(
                {**pair("key", False)}, ["key", "key_encoding"])},
            "next": ref("Page")}), etag=True), **NOT_MODIFIED},
            READ + PAGE + [q("prefix"), q("start"), q("stop"), q("prefix_encoding"),
                           q("start_encoding"), q("stop_encoding"),
                           q("values", {"type": "boolean"})])},
        "/keys/{key}": {
            "get": op("Read one key", {**ok(ref("KeyValue"), etag=True, raw=True),
                                       **NOT_MODIFIED},
                      [p("key"), KEY_ENC, *READ, q("raw", {"type": "boolean"}),
                       h("If-None-Match")]),
            "put": op("Put one key (one commit)", written(),
                      [p("key"), KEY_ENC, *WRITE],
                      body(obj({"value": TEXT, "value_encoding": {"enum": ["utf8", "base64"]},
                                "message": TEXT}, ["value"]))),
            "delete": op("Delete one key (one commit)", written(),
                         [p("key"), KEY_ENC, *WRITE, q("message")]),
        },
        "/commits": {"post": op("Commit many puts and deletes", written("201"), WRITE, body(
            obj({"message": TEXT, "puts": {"type": "array", "items": PUT_IN},
                 "deletes": {"type": "array", "items": KEY_IN}}, [])))},
        "/commits/{version}": {"get": op("One commit and its changes, paginated", ok(obj({
            "commit": ref("Commit"), "changes": {"type": "array", "items": ref("Change")},
            "next": ref("Page")})), [p("version", {"type": "integer", "minimum": 0}), *PAGE])},
        "/log": {"get": op("Commits of a branch, newest first, filtered", {**ok(obj({
            "branch": TEXT, "head": INT, "commits": {"type": "array", "items": ref("Commit")},
            "next": ref("Page")}), etag=True), **NOT_MODIFIED},
            [q("branch"), q("author"), q("since", desc="ISO time"), q("until"),
             q("prefix", desc="only commits that changed a key with this prefix"),
             q("prefix_encoding"), *PAGE])},
        "/diff": {"get": op("Changes between two refs, paginated", ok(obj({
            "changes": {"type": "array", "items": ref("Change")}, "next": ref("Page"),
            "a": INT, "b": INT}, ["changes", "next"])),
            [q("a", required=True), q("b", required=True), q("prefix"), q("prefix_encoding"),
             *PAGE])},
        "/history/{key}": {"get": op("Every version of a branch that changed a key", ok(obj({
            **pair("key", False), "branch": TEXT, "versions": {"type": "array", "items": {
                "allOf": [ref("Commit"), obj(pair("value"))]}}})),
            [p("key"), KEY_ENC, q("branch"), q("limit", {"type": "integer", "minimum": 1,
                                                         "maximum": 1000})])},
        "/branches": {
            "get": op("Branches", ok(listing("branches", obj({
                "name": TEXT, "head": INT, "protected": {"type": "boolean"}})))),
            "post": op("Create a branch", {**ok(obj({"name": TEXT, "head": INT}), "201"),
                                           **errors(409)},
                       request=body(obj({"name": REF_NAME, "at": {"type": ["string", "integer",
                                                                           "null"]}},
                                        ["name"])))},
        "/branches/{name}": {"delete": op("Delete a branch", ok(obj({"deleted": TEXT})),
                                          [p("name")])},
        "/tags": {
            "get": op("Tags", ok(listing("tags", obj({"name": TEXT, "version": INT})))),
            "post": op("Tag a version", {**ok(obj({"name": TEXT, "version": INT}), "201"),
                                         **errors(409)},
                       request=body(obj({"name": REF_NAME, "at": {"type": ["string", "integer",
                                                                           "null"]}},
                                        ["name"])))},
        "/tags/{name}": {"delete": op("Delete a tag", ok(obj({"deleted": TEXT})),
                                      [p("name")])},
        "/merge": {"post": op("Three-way merge of a branch into another",
                              {**written(), **errors(409)}, [WRITE[2]],
                              body(obj({"source": REF_NAME, "into": REF_NAME,
                                        "message": TEXT, "resolve": RESOLVE}, ["source"])))},
        "/revert": {"post": op("Commit the inverse of one version's changes", written(),
                               [WRITE[2]], body(obj({
                                   "version": {"type": ["integer", "string"]},
                                   "branch": REF_NAME, "message": TEXT, "resolve": RESOLVE},
                                   ["version"])))},
        "/restore": {"post": op("Commit a version equal to an older one", written(),
                                [WRITE[2]], body(obj({
                                    "version": {"type": ["integer", "string"]},
                                    "branch": REF_NAME, "message": TEXT}, ["version"])))},
        "/retention": {
            "get": op("The retention rule", ok(obj({"keep_last": NINT, "keep_within_seconds": {
                "type": ["number", "null"]}}))),
            "put": op("Change the retention rule (admin)", ok(obj({
                "keep_last": NINT, "keep_within_seconds": {"type": ["number", "null"]}})),
                request=body(obj({"keep_last": {"type": ["integer", "null"], "minimum": 1},
                                  "keep_within_seconds": {"type": ["number", "null"],
                                                          "exclusiveMinimum": 0}}, [])))},
        "/gc": {"post": op("Drop the versions retention does not keep (admin)", ok(obj({
            "versions_dropped": INT, "pages_freed": INT, "bytes_freed": INT,
            "file_bytes_before": INT, "file_bytes_after": INT})))},
        "/stats": {"get": op("Where the bytes are", ok(obj({
            "file_bytes": INT, "live_bytes": INT, "reclaimable_bytes": INT, "free_bytes": INT,
            "header_bytes": INT, "reserve_bytes": INT, "versions": INT, "kept_versions": INT,
            "head": INT, "newest_version": INT,
            "branches": INT, "tags": INT, "pinned": {"type": "object",
                                                      "additionalProperties": INT}})))},
        "/check": {"get": op("Verify every page (admin)", ok(obj({
            "ok": {"type": "boolean"}, "errors": {"type": "array", "items": TEXT},
            "versions": INT, "pages": INT, "free_pages": INT, "page_count": INT})))},
        "/me": {"get": op("Who am I", ok(obj({"name": TEXT, "role": TEXT,
                                              "open_mode": {"type": "boolean"}})))},
        "/users": {
            "get": op("Accounts (admin)", ok(listing("users", obj({"name": TEXT,
                                                                     "role": TEXT})))),
            "post": op("Add an account (admin); the token is shown once", {
                **ok(obj({"name": TEXT, "role": TEXT, "token": TEXT}), "201"),
                **errors(409)}, request=body(obj({"name": TEXT, "role": {
                    "enum": ["reader", "writer", "admin"]}}, ["name"])))},
        "/users/{name}": {"delete": op("Remove an account (admin)", ok(obj({"deleted": TEXT})),
                                       [p("name")])},
        "/protected": {"get": op("Protected branches", ok(obj({"protected": {
            "type": "array", "items": TEXT}})))},
        "/protected/{name}": {
            "put": op("Protect a branch (admin)", ok(obj({"protected": {
                "type": "array", "items": TEXT}})), [p("name")]),
            "delete": op("Unprotect a branch (admin)", ok(obj({"protected": {
                "type": "array", "items": TEXT}})), [p("name")])},
        "/events": {"get": op("Server-Sent Events: one `commit` event per new version", {
            "200": {"description": "text/event-stream; each event's data is a Commit",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
            [q("since", desc="replay versions after this one"), h("Last-Event-ID")])},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "cowdb", "version": "1",
                 "description": "A copy-on-write, versioned, branching key-value store. Every "
                                "read answers ETag = the branch head version; every write "
                                "sends If-Match."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {"schemas": copy.deepcopy(SCHEMAS), "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
