"""The JSON API of `cowdb serve`, in process through httpx's ASGI transport: keys,
optimistic concurrency, history, refs, upkeep, accounts and roles, bad input."""
import base64
import logging
from datetime import datetime, timedelta, timezone

import pytest

from server_util import anyio_backend, client  # noqa: F401  (skips without the extra)

import cowdb
from cowdb.server import Refused, create_app
from cowdb.server.accounts import Accounts

pytestmark = pytest.mark.anyio


@pytest.fixture
def db():
    d = cowdb.open()
    yield d
    d.close()


@pytest.fixture
def app(db):
    return create_app(db)


async def put(c, key, value, etag="*", **params):
    r = await c.put(f"/api/v1/keys/{key}", params=params, json={"value": value},
                    headers={"If-Match": etag})
    assert r.status_code == 200, r.text
    return r.json()["version"]


# ---- keys and ETags ----------------------------------------------------------------
async def test_put_get_with_etags_and_conditional_get(app):
    async with client(app) as c:
        r = await c.get("/api/v1/keys/apple")
        assert r.status_code == 404 and r.headers["etag"] == '"0"'
        assert r.json()["error"]["status"] == 404
        r = await c.put("/api/v1/keys/apple", json={"value": "red", "message": "first"},
                        headers={"If-Match": '"0"'})
        assert r.status_code == 200 and r.json() == {"version": 1, "branch": "main",
                                                      "author": "local"}
        assert r.headers["etag"] == '"1"'
        r = await c.get("/api/v1/keys/apple")
        assert r.json() == {"key": "apple", "key_encoding": "utf8", "value": "red",
                            "value_encoding": "utf8", "version": 1}
        assert r.headers["etag"] == '"1"'
        r = await c.get("/api/v1/keys/apple", headers={"If-None-Match": '"1"'})
        assert r.status_code == 304 and r.content == b""
        await put(c, "pear", "green")
        r = await c.get("/api/v1/keys/apple", headers={"If-None-Match": '"1"'})
        assert r.status_code == 200 and r.headers["etag"] == '"2"'
        r = await c.get("/api/v1/keys/apple", params={"raw": "1"})
        assert r.content == b"red" and r.headers["content-type"] == "application/octet-stream"
        # an old version and a tag are their own immutable ETag
        r = await c.get("/api/v1/keys/apple", params={"ref": "1"})
        assert r.headers["etag"] == '"1"'


async def test_binary_keys_and_values_round_trip_as_base64(app, db):
    key, value = b"\x00\xffk", bytes(range(256))
    async with client(app) as c:
        r = await c.post("/api/v1/commits", headers={"If-Match": "*"}, json={
            "message": "bin", "puts": [
                {"key": base64.b64encode(key).decode(), "key_encoding": "base64",
                 "value": base64.b64encode(value).decode(), "value_encoding": "base64"},
                {"key": "text", "value": "héllo"}]})
        assert r.status_code == 201, r.text
        assert db.read()[key] == value and db.read()[b"text"] == "héllo".encode()
        path = base64.urlsafe_b64encode(key).decode()
        r = await c.get(f"/api/v1/keys/{path}", params={"key_encoding": "base64"})
        body = r.json()
        assert body["key_encoding"] == "base64" and body["value_encoding"] == "base64"
        assert base64.b64decode(body["key"]) == key
        assert base64.b64decode(body["value"]) == value
        r = await c.get("/api/v1/keys")
        kinds = {k["key_encoding"] for k in r.json()["keys"]}
        assert kinds == {"base64", "utf8"}


async def test_list_keys_paginates_with_a_cursor_and_filters(app, db):
    with db.write() as tx:
        for i in range(25):
            tx[f"k{i:03d}".encode()] = b"v%d" % i
        tx[b"other"] = b"x"
    async with client(app) as c:
        seen, cursor = [], None
        while True:
            r = await c.get("/api/v1/keys", params={"prefix": "k", "limit": 10,
                                                    **({"cursor": cursor} if cursor else {})})
            body = r.json()
            seen += [k["key"] for k in body["keys"]]
            cursor = body["next"]
            if cursor is None:
                break
        assert seen == [f"k{i:03d}" for i in range(25)]
        r = await c.get("/api/v1/keys", params={"start": "k010", "stop": "k013",
                                                "values": "false"})
        assert [k["key"] for k in r.json()["keys"]] == ["k010", "k011", "k012"]
        assert r.json()["keys"][0]["size"] == 3


async def test_read_at_a_time_a_tag_and_a_version(app, db):
    with db.write() as tx:
        tx[b"a"] = b"1"
    t = datetime.now(timezone.utc)
    db.tag("one")
    with db.write() as tx:
        tx[b"a"] = b"2"
    async with client(app) as c:
        assert (await c.get("/api/v1/keys/a", params={"ref": "one"})).json()["value"] == "1"
        assert (await c.get("/api/v1/keys/a", params={"ref": "2"})).json()["value"] == "2"
        r = await c.get("/api/v1/keys/a", params={"at": t.isoformat()})
        assert r.json()["value"] == "1"
        r = await c.get("/api/v1/keys/a", params={"ref": "nope"})
        assert r.status_code == 404 and "nope" in r.json()["error"]["message"]


async def test_errors_point_at_the_api_not_at_python_calls(app, db):
    """The engine's messages name its Python API (db.tags(), db.branches()); an HTTP
    client is pointed at the endpoints that list them instead."""
    async with client(app) as c:
        for path, params in (("/api/v1/keys/a", {"ref": "nope"}),
                             ("/api/v1/log", {"branch": "nope"})):
            r = await c.get(path, params=params)
            msg = r.json()["error"]["message"]
            assert r.status_code == 404 and "nope" in msg, msg
            assert "db." not in msg and "/api/v1/branches" in msg, msg
        db.tag("t")
        r = await c.post("/api/v1/tags", json={"name": "t"})
        msg = r.json()["error"]["message"]
        assert r.status_code == 409 and "db." not in msg and "DELETE /api/v1/tags/" in msg, msg


# ---- optimistic concurrency -------------------------------------------------------------
async def test_writes_need_if_match_and_a_stale_one_is_412(app, db):
    async with client(app) as c:
        v1 = await put(c, "apple", "red")
        r = await c.put("/api/v1/keys/apple", json={"value": "x"})
        assert r.status_code == 428 and "If-Match" in r.json()["error"]["message"]
        v2 = await put(c, "apple", "green", etag=f'"{v1}"')
        r = await c.put("/api/v1/keys/apple", json={"value": "blue"},
                        headers={"If-Match": f'"{v1}"'})
        assert r.status_code == 412 and r.json()["head"] == v2
        assert db.read()[b"apple"] == b"green"
        r = await c.delete("/api/v1/keys/apple", headers={"If-Match": f'"{v1}"'})
        assert r.status_code == 412
        r = await c.delete("/api/v1/keys/apple", headers={"If-Match": f'"{v2}"'})
        assert r.status_code == 200 and b"apple" not in db.read()
        r = await c.put("/api/v1/keys/apple", json={"value": "x"},
                        headers={"If-Match": "garbage"})
        assert r.status_code == 400


async def test_merge_auto_rebases_and_409_only_on_a_true_conflict(app, db):
    async with client(app) as c:
        base = await put(c, "apple", "red")
        await put(c, "pear", "green", etag=f'"{base}"')   # someone else moved main
        # another key: rebased onto the new head
        r = await c.put("/api/v1/keys/plum?merge=auto", json={"value": "blue"},
                        headers={"If-Match": f'"{base}"'})
        assert r.status_code == 200, r.text
        snap = db.read()
        assert snap[b"plum"] == b"blue" and snap[b"pear"] == b"green"
        # the same key changed differently since base: 409, nothing written
        head = db.head()
        r = await c.put("/api/v1/keys/pear?merge=auto", json={"value": "brown"},
                        headers={"If-Match": f'"{base}"'})
        assert r.status_code == 409
        body = r.json()
        assert body["conflicts"] == [{
            "key": "pear", "key_encoding": "utf8", "base": None, "base_encoding": None,
            "ours": "green", "ours_encoding": "utf8", "theirs": "brown",
            "theirs_encoding": "utf8"}]
        assert db.head() == head
        # writing the value the head already has is no conflict
        r = await c.put("/api/v1/keys/pear?merge=auto", json={"value": "green"},
                        headers={"If-Match": f'"{base}"'})
        assert r.status_code == 200


async def test_commit_of_many_keys_has_the_account_as_author(tmp_path):
    path = str(tmp_path / "a.cow")
    accounts = Accounts(str(tmp_path / "a.cow-accounts.json"))
    tok = accounts.add("ann", "writer")
    app = create_app(path, accounts=accounts)
    async with client(app, tok) as c:
        r = await c.post("/api/v1/commits", headers={"If-Match": "*"}, json={
            "message": "restock", "author": "mallory",
            "puts": [{"key": f"k{i}", "value": str(i)} for i in range(10)],
            "deletes": []})
        assert r.status_code == 201 and r.json()["author"] == "ann"
        r = await c.post("/api/v1/commits", headers={"If-Match": "*"}, json={
            "deletes": [{"key": "k1"}], "puts": [{"key": "k1", "value": "x"}]})
        assert r.status_code == 400
        log = (await c.get("/api/v1/log")).json()["commits"]
        assert log[0]["author"] == "ann" and log[0]["message"] == "restock"
        assert log[0]["keys_put"] == 10
    app.state.server.db.close()


# ---- history ------------------------------------------------------------------------------
async def test_log_filters_and_pages(app, db):
    for i, (who, key) in enumerate([("ann", "a/1"), ("bob", "b/1"), ("ann", "b/2"),
                                    ("bob", "a/2"), ("ann", "a/3")]):
        with db.write(f"c{i}", author=who) as tx:
            tx[key] = b"x"
    async with client(app) as c:
        r = await c.get("/api/v1/log", params={"author": "ann"})
        assert [x["message"] for x in r.json()["commits"]] == ["c4", "c2", "c0"]
        r = await c.get("/api/v1/log", params={"prefix": "a/"})
        assert [x["message"] for x in r.json()["commits"]] == ["c4", "c3", "c0"]
        r = await c.get("/api/v1/log", params={"limit": 2})
        body = r.json()
        assert [x["message"] for x in body["commits"]] == ["c4", "c3"]
        r = await c.get("/api/v1/log", params={"limit": 2, "cursor": body["next"]})
        assert [x["message"] for x in r.json()["commits"]] == ["c2", "c1"]
        future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
        r = await c.get("/api/v1/log", params={"since": future})
        assert r.json()["commits"] == []
        r = await c.get("/api/v1/log", params={"until": "2000-01-01T00:00:00Z"})
        assert r.json()["commits"] == []
        r = await c.get("/api/v1/log", params={"since": "yesterday"})
        assert r.status_code == 400 and "since" in r.json()["error"]["message"]
        r = await c.get("/api/v1/log", params={"branch": "nope"})
        assert r.status_code == 404


async def test_commit_and_diff_changes_paginate(app, db):
    with db.write("many") as tx:
        for i in range(30):
            tx[f"k{i:02d}".encode()] = b"v"
    v = db.head()
    async with client(app) as c:
        keys, cursor = [], None
        while True:
            r = await c.get(f"/api/v1/commits/{v}", params={
                "limit": 7, **({"cursor": cursor} if cursor else {})})
            body = r.json()
            assert body["commit"]["message"] == "many"
            keys += [x["key"] for x in body["changes"]]
            cursor = body["next"]
            if not cursor:
                break
        assert keys == [f"k{i:02d}" for i in range(30)]
        with db.write() as tx:
            tx[b"k05"] = b"w"
            del tx[b"k06"]
        r = await c.get("/api/v1/diff", params={"a": str(v), "b": "main"})
        ch = r.json()["changes"]
        assert [(x["key"], x["kind"], x["old"], x["new"]) for x in ch] == [
            ("k05", "changed", "v", "w"), ("k06", "deleted", "v", None)]
        r = await c.get("/api/v1/diff", params={"a": "1", "b": "999"})
        assert r.status_code == 404
        r = await c.get("/api/v1/commits/999")
        assert r.status_code == 404


async def test_key_history_names_who_changed_it(app, db):
    for who, val in [("ann", b"1"), ("bob", b"2")]:
        with db.write(author=who) as tx:
            tx[b"k"] = val
    with db.write(author="cy") as tx:
        tx[b"other"] = b"x"
    async with client(app) as c:
        r = await c.get("/api/v1/history/k")
        assert [(x["author"], x["value"]) for x in r.json()["versions"]] == [
            ("bob", "2"), ("ann", "1")]


# ---- refs, merge, revert, restore -------------------------------------------------------------
async def test_branches_tags_merge_revert_restore(app, db):
    async with client(app) as c:
        v1 = await put(c, "apple", "red")
        r = await c.post("/api/v1/branches", json={"name": "what-if"})
        assert r.status_code == 201 and r.json()["head"] == v1
        assert (await c.post("/api/v1/branches", json={"name": "what-if"})).status_code == 409
        await put(c, "apple", "green", branch="what-if")
        await put(c, "pear", "yellow")
        r = await c.get("/api/v1/branches")
        assert [b["name"] for b in r.json()["branches"]] == ["main", "what-if"]
        r = await c.post("/api/v1/merge", json={"source": "what-if"})
        assert r.status_code == 428
        head = db.head()
        r = await c.post("/api/v1/merge", json={"source": "what-if", "into": "main"},
                         headers={"If-Match": f'"{head}"'})
        assert r.status_code == 200, r.text
        merged = r.json()["version"]
        assert db.read()[b"apple"] == b"green" and db.read()[b"pear"] == b"yellow"
        r = await c.post("/api/v1/tags", json={"name": "v1", "at": merged})
        assert r.status_code == 201
        assert (await c.get("/api/v1/tags")).json()["tags"] == [{"name": "v1",
                                                                "version": merged}]
        r = await c.post("/api/v1/revert", json={"version": merged},
                         headers={"If-Match": "*"})
        assert r.status_code == 200 and db.read()[b"apple"] == b"red"
        r = await c.post("/api/v1/restore", json={"version": "v1"}, headers={"If-Match": "*"})
        assert r.status_code == 200 and db.read()[b"apple"] == b"green"
        assert (await c.delete("/api/v1/tags/v1")).status_code == 200
        assert (await c.delete("/api/v1/branches/what-if")).status_code == 200
        assert (await c.delete("/api/v1/branches/what-if")).status_code == 404
        assert (await c.delete("/api/v1/branches/main")).status_code == 403


async def test_merge_conflict_409_then_resolved(app, db):
    async with client(app) as c:
        await put(c, "k", "base")
        await c.post("/api/v1/branches", json={"name": "b"})
        await put(c, "k", "ours")
        await put(c, "k", "theirs", branch="b")
        r = await c.post("/api/v1/merge", json={"source": "b"}, headers={"If-Match": "*"})
        assert r.status_code == 409
        (conf,) = r.json()["conflicts"]
        assert (conf["base"], conf["ours"], conf["theirs"]) == ("base", "ours", "theirs")
        r = await c.post("/api/v1/merge", headers={"If-Match": "*"}, json={
            "source": "b", "resolve": [{"key": "k", "value": "both"}]})
        assert r.status_code == 200 and db.read()[b"k"] == b"both"


async def test_an_unknown_query_parameter_is_a_400(app, db):
    async with client(app) as c:
        await put(c, "k", "v")
        r = await c.get("/api/v1/keys", params={"prefx": "k"})
        assert r.status_code == 400
        msg = r.json()["error"]["message"]
        assert "'prefx'" in msg and "prefix" in msg
        assert (await c.get("/api/v1/keys", params={"prefix": "k"})).status_code == 200


async def test_retention_gc_stats_check(app, db):
    async with client(app) as c:
        for i in range(5):
            await put(c, "k", str(i))
        r = await c.put("/api/v1/retention", json={"keep_last": 2})
        assert r.json() == {"keep_last": 2, "keep_within_seconds": None}
        r = await c.put("/api/v1/retention", json={"keep_last": 0})
        assert r.status_code == 400
        # positive, but under a microsecond: the engine's InvalidValue is a 400, not a 500
        r = await c.put("/api/v1/retention", json={"keep_within_seconds": 1e-9})
        assert r.status_code == 400 and "positive" in r.json()["error"]["message"]
        r = await c.post("/api/v1/gc")
        assert r.status_code == 200 and r.json()["versions_dropped"] >= 3
        r = await c.get("/api/v1/stats")
        assert r.json()["kept_versions"] == 2
        r = await c.get("/api/v1/check")
        assert r.json()["ok"] is True


# ---- accounts and roles ---------------------------------------------------------------------
@pytest.fixture
def closed(tmp_path):
    accounts = Accounts(str(tmp_path / "db-accounts.json"))
    toks = {role: accounts.add(role, role) for role in ("reader", "writer", "admin")}
    d = cowdb.open(str(tmp_path / "db.cow"))
    yield create_app(d, accounts=accounts, host="0.0.0.0"), toks, accounts
    d.close()


async def test_roles_tokens_and_protected_branches(closed):
    app, toks, accounts = closed
    async with client(app) as anon:
        r = await anon.get("/api/v1/keys")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = await anon.get("/api/v1/keys", headers={"Authorization": "Bearer cdb_nope"})
        assert r.status_code == 401
    async with client(app, toks["reader"]) as c:
        assert (await c.get("/api/v1/keys")).status_code == 200
        r = await c.put("/api/v1/keys/a", json={"value": "1"}, headers={"If-Match": "*"})
        assert r.status_code == 403 and "reader" in r.json()["error"]["message"]
    async with client(app, toks["writer"]) as c:
        r = await c.put("/api/v1/keys/a", json={"value": "1"}, headers={"If-Match": "*"})
        assert r.status_code == 200 and r.json()["author"] == "writer"
        assert (await c.post("/api/v1/gc")).status_code == 403
        assert (await c.get("/api/v1/users")).status_code == 403
        accounts.protect("main")
        r = await c.put("/api/v1/keys/a", json={"value": "2"}, headers={"If-Match": "*"})
        assert r.status_code == 403 and "protected" in r.json()["error"]["message"]
        assert (await c.post("/api/v1/branches", json={"name": "mine"})).status_code == 201
        r = await c.put("/api/v1/keys/a?branch=mine", json={"value": "2"},
                        headers={"If-Match": "*"})
        assert r.status_code == 200
        r = await c.post("/api/v1/merge", json={"source": "mine"}, headers={"If-Match": "*"})
        assert r.status_code == 403
    async with client(app, toks["admin"]) as c:
        r = await c.post("/api/v1/merge", json={"source": "mine"}, headers={"If-Match": "*"})
        assert r.status_code == 200 and r.json()["author"] == "admin"
        r = await c.post("/api/v1/users", json={"name": "dan", "role": "reader"})
        assert r.status_code == 201 and r.json()["token"].startswith("cdb_")
        dan = r.json()["token"]
        assert (await c.delete("/api/v1/users/dan")).status_code == 200
        assert (await c.get("/api/v1/me")).json() == {"name": "admin", "role": "admin",
                                                      "open_mode": False}
    async with client(app, dan) as c:
        assert (await c.get("/api/v1/keys")).status_code == 401


async def test_failed_logins_are_rate_limited(closed):
    app, toks, _ = closed
    async with client(app) as c:
        codes = [(await c.get("/api/v1/keys", headers={
            "Authorization": f"Bearer cdb_000000000000_wrongwrongwrong{i}"})).status_code
            for i in range(12)]
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
        r = await c.get("/api/v1/keys", headers={"Authorization": f"Bearer {toks['admin']}"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


async def test_open_mode_only_on_loopback(tmp_path):
    d = cowdb.open()
    try:
        with pytest.raises(Refused, match="no accounts"):
            create_app(d, host="0.0.0.0")
        app = create_app(d, host="127.0.0.1")
        async with client(app) as c:
            assert (await c.get("/api/v1/me")).json()["open_mode"] is True
            r = await c.get("/api/v1/me", headers={"Host": "evil.example"})
            assert r.status_code == 421
        # an account appears: open mode ends
        app.state.server.accounts.add("ann", "admin")
        async with client(app) as c:
            assert (await c.get("/api/v1/me")).status_code == 401
    finally:
        d.close()


# ---- bad input ------------------------------------------------------------------------------------
async def test_bad_input_gets_json_errors(db):
    app = create_app(db, max_body=1000)
    async with client(app) as c:
        r = await c.put("/api/v1/keys/a", content=b'{"value": "' + b"x" * 2000 + b'"}',
                        headers={"If-Match": "*", "Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["status"] == 413
        r = await c.put("/api/v1/keys/a", content=b'{"value": ',
                        headers={"If-Match": "*", "Content-Type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
        r = await c.put("/api/v1/keys/a", content=b"[1]",
                        headers={"If-Match": "*", "Content-Type": "application/json"})
        assert r.status_code == 400
        r = await c.put("/api/v1/keys/a", content=b'{"value": "x"}', headers={"If-Match": "*"})
        assert r.status_code == 415
        r = await c.put("/api/v1/keys/a", json={"value": "@@", "value_encoding": "base64"},
                        headers={"If-Match": "*"})
        assert r.status_code == 400 and "base64" in r.json()["error"]["message"]
        r = await c.patch("/api/v1/keys/a")
        assert r.status_code == 405 and r.json()["error"]["status"] == 405
        r = await c.get("/api/v1/nothing")
        assert r.status_code == 404 and r.json()["error"]["status"] == 404
        r = await c.get("/api/v1/keys", params={"limit": "lots"})
        assert r.status_code == 400
        r = await c.put("/api/v1/keys/" + "k" * 5000, json={"value": "x"},
                        headers={"If-Match": "*"})
        assert r.status_code == 400 and "key" in r.json()["error"]["message"]


async def test_a_crash_is_a_500_with_an_id_and_no_traceback(app, monkeypatch, caplog):
    from cowdb.server import ops

    def boom(db):
        raise RuntimeError("secret detail")
    monkeypatch.setattr(ops, "stats", boom)
    with caplog.at_level(logging.ERROR, logger="cowdb.server"):
        async with client(app) as c:
            r = await c.get("/api/v1/stats")
    assert r.status_code == 500
    body = r.json()
    assert "internal error" in body["error"]["message"]
    assert "secret" not in r.text and "Traceback" not in r.text
    assert body["id"] in caplog.text and "secret detail" in caplog.text


async def test_openapi_document_names_every_route(app):
    async with client(app) as c:
        doc = (await c.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path in ("/keys", "/keys/{key}", "/commits", "/commits/{version}", "/log", "/diff",
                 "/branches", "/tags", "/merge", "/revert", "/restore", "/retention", "/gc",
                 "/stats", "/check", "/events"):
        assert path in doc["paths"], path
