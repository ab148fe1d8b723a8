"""The web UI in process: login sets an HttpOnly SameSite=Strict session cookie, every
form needs its CSRF token, pages escape what users typed, errors are pages."""
import re

import pytest

from server_util import anyio_backend, client  # noqa: F401

import cowdb
from cowdb.server import create_app
from cowdb.server.accounts import Accounts

pytestmark = pytest.mark.anyio


@pytest.fixture
def setup():
    db = cowdb.open()
    accounts = Accounts()
    tok = accounts.add("ann", "writer")
    reader = accounts.add("rob", "reader")
    yield create_app(db, accounts=accounts), db, tok, reader
    db.close()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


async def login(c, name, token):
    page = await c.get("/login")
    r = await c.post("/login", data={"name": name, "token": token,
                                     "csrf": csrf_of(page.text), "next": "/branches"})
    return r


async def test_login_sets_a_strict_httponly_session_and_forms_need_csrf(setup):
    app, db, tok, _ = setup
    async with client(app, follow_redirects=False) as c:
        r = await c.get("/", headers={"accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"
        r = await login(c, "ann", "wrong")
        assert r.status_code == 401 and "wrong account name or token" in r.text
        r = await login(c, "ann", tok)
        assert r.status_code == 303 and r.headers["location"] == "/branches"
        cookie = [h for h in r.headers.get_list("set-cookie") if "cowdb_session" in h][0]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        page = await c.get("/branches")
        assert page.status_code == 200 and "ann" in page.text
        r = await c.post("/create/branch", data={"name": "b1"})
        assert r.status_code == 403 and "b1" not in db.branches()
        r = await c.post("/create/branch", data={"name": "b1", "csrf": "0" * 64})
        assert r.status_code == 403
        confirm = await c.get("/create/branch", params={"name": "b1"})
        assert "Create the branch &#39;b1&#39; at version 0" in confirm.text
        assert "b1" not in db.branches()                     # not until confirmed
        r = await c.post("/create/branch", data={"name": "b1", "csrf": csrf_of(confirm.text)})
        assert r.status_code == 303 and "b1" in db.branches()
        # an API write through the session cookie needs the token in a header
        r = await c.put("/api/v1/keys/k", json={"value": "v"}, headers={"If-Match": "*"})
        assert r.status_code == 403
        r = await c.put("/api/v1/keys/k", json={"value": "v"}, headers={
            "If-Match": "*", "X-CSRF-Token": csrf_of(page.text)})
        assert r.status_code == 200 and r.json()["author"] == "ann"
        await c.post("/logout", data={"csrf": csrf_of(page.text)})
        r = await c.get("/branches", headers={"accept": "text/html"})
        assert r.status_code == 303


async def test_a_reader_sees_no_write_forms_and_cannot_post(setup):
    app, db, _, reader = setup
    async with client(app, follow_redirects=False) as c:
        await login(c, "rob", reader)
        page = await c.get("/branches")
        assert "Create branch" not in page.text
        r = await c.get("/create/branch?name=x", headers={"accept": "text/html"})
        assert r.status_code == 403
        r = await c.post("/create/branch", data={"name": "x", "csrf": csrf_of(page.text)},
                         headers={"accept": "text/html"})
        assert r.status_code == 403 and "reader" in r.text


async def test_pages_escape_user_text_and_errors_are_pages(setup):
    app, db, tok, _ = setup
    evil = '<script>alert(1)</script>"\'&'
    with db.write(evil, author=evil) as tx:
        tx[evil.encode()] = evil.encode()
    db.branch("b" + evil)
    async with client(app, tok) as c:
        for path in ("/", "/commit/1", "/browse", "/branches", "/compare?a=0&b=1",
                     "/history?k=" + evil.replace("&", "%26").replace("'", "%27")):
            r = await c.get(path)
            assert r.status_code == 200, path
            assert "<script>alert" not in r.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (await c.get("/")).text
        r = await c.get("/commit/99", headers={"accept": "text/html"})
        assert r.status_code == 404 and "<h1>404</h1>" in r.text
        r = await c.get("/nowhere", headers={"accept": "text/html"})
        assert r.status_code == 404 and "text/html" in r.headers["content-type"]
        r = await c.get("/")
        assert "script-src 'self'" in r.headers["content-security-policy"]


async def test_the_timeline_marks_versions_that_gc_will_drop(setup):
    app, db, tok, _ = setup
    for i in range(5):
        with db.write(f"c{i}") as tx:
            tx[b"k"] = b"%d" % i
    db.set_retention(keep_last=2)
    async with client(app, tok) as c:
        html = (await c.get("/")).text
    rows = re.findall(r'<div class="row( dropping)?" data-version="(\d+)"', html)
    dropping = sorted(int(v) for d, v in rows if d)
    assert dropping and html.count("gc drops") == len(dropping)
    assert db.gc().versions_dropped == len(dropping)     # exactly what gc then drops
    for v in dropping:
        with pytest.raises(cowdb.errors.VersionNotFound):
            db.commit_info(v)


async def test_a_branch_keeps_its_lane_from_page_to_page(setup):
    app, db, tok, _ = setup
    for name in ("zeta", "alpha"):
        db.branch(name)
    for i in range(60):
        branch = ("main", "zeta", "alpha")[i % 3]
        with db.write(f"c{i}", branch=branch) as tx:
            tx[b"k"] = b"%d" % i
    x_of = {}
    async with client(app, tok) as c:
        first = (await c.get("/")).text
        older = re.search(r'href="/\?before=(\d+)" id="older"', first).group(1)
        second = (await c.get(f"/?before={older}")).text
    for html in (first, second):
        for v, x in re.findall(r'<circle data-v="(\d+)" cx="(\d+)"', html):
            branch = db.commit_info(int(v)).branch
            x_of.setdefault(branch, set()).add(int(x))
    # main first, then the others by name: the same x on both pages
    assert {b: len(xs) for b, xs in x_of.items()} == {"main": 1, "alpha": 1, "zeta": 1}
    assert min(x_of["main"]) < min(x_of["alpha"]) < min(x_of["zeta"])


@pytest.mark.parametrize("key", [b"plain", b"a/b c?d#e&f", b"..", b"x/../y", "caf\u00e9".encode(),
                                 b"\xff\x00bin"])
async def test_key_and_history_pages_link_their_json_twins(setup, key):
    """Every page links its JSON twin (docs/server.md): the key page links the key's API
    read at the same ref, the history page the key's history on the same branch. The link
    names the key whatever its bytes: a path segment for text, base64url otherwise (and
    for text a browser would read as a dot segment)."""
    import base64
    app, db, tok, _ = setup
    with db.write() as tx:
        tx[key] = b"one"
    db.branch("side")
    with db.write(branch="side") as tx:
        tx[key] = b"two"
    try:
        q = {"k": key.decode()}
    except UnicodeDecodeError:
        q = {"kb": base64.urlsafe_b64encode(key).decode().rstrip("=")}
    async with client(app, tok) as c:
        page = await c.get("/key", params={**q, "ref": "side"})
        assert page.status_code == 200
        twin = re.search(r'JSON twin: <a href="([^"]+)"', page.text)
        assert twin, "the key page links its JSON twin"
        href = twin.group(1).replace("&amp;", "&")
        assert "/./" not in href + "/" and "/../" not in href + "/"
        r = await c.get(href)
        assert r.status_code == 200, href
        body = r.json()
        assert body["version"] == db.branches()["side"]
        assert (body["value"], body["value_encoding"]) == ("two", "utf8"), body
        page = await c.get("/history", params={**q, "branch": "side"})
        twin = re.search(r'JSON twin: <a href="([^"]+)"', page.text)
        assert twin, "the history page links its JSON twin"
        r = await c.get(twin.group(1).replace("&amp;", "&"))
        assert r.status_code == 200
        assert [e["version"] for e in r.json()["versions"]] == [
            v for v, _, _ in db.history(key, branch="side")]
