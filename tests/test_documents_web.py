"""The documents' pages through Starlette's test client: roles, escaping, merged and
conflicting saves from the editor, hidden revisions, revert-author preview/confirm."""
import re
import warnings
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cowdb
from cowdb.documents import Document

pytest.importorskip("starlette")
pytest.importorskip("jinja2")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")     # starlette's note about httpx
    from starlette.testclient import TestClient  # noqa: E402

from cowdb.server.accounts import Accounts  # noqa: E402
from cowdb.server.app import create_app  # noqa: E402
from cowdb.server.http import iso  # noqa: E402

HTML = {"accept": "text/html"}


@pytest.fixture
def site():
    db = cowdb.open()
    accounts = Accounts()
    tokens = {n: accounts.add(n, r) for n, r in (("boss", "admin"), ("ed", "writer"),
                                                  ("vic", "writer"), ("rita", "reader"))}
    app = create_app(db, accounts=accounts)

    def client(name):
        c = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
        page = c.get("/login", headers=HTML).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        r = c.post("/login", data={"name": name, "token": tokens[name], "csrf": csrf,
                                   "next": "/documents"})
        assert r.status_code == 303, r.text
        return c
    yield db, client
    db.close()


def csrf_of(c, path):
    page = c.get(path, headers=HTML).text
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def post(c, path, data, form_page=None):
    data = dict(data, csrf=csrf_of(c, form_page or "/documents"))
    return c.post(path, data=data, headers=HTML)


def test_roles_escaping_and_editor_merges(site):
    db, client = site
    ed, vic, rita = client("ed"), client("vic"), client("rita")
    r = post(ed, "/documents", {"name": "hb", "text": "one two three\n\nfour <b>five</b>"})
    assert r.status_code == 303
    assert Document(db, "hb").paragraphs() == ["one two three", "four <b>five</b>"]
    r = post(ed, "/documents", {"name": "hb", "text": "overwritten"})
    assert r.status_code == 409 and len(Document(db, "hb").revisions()) == 1
    page = rita.get("/documents/hb", headers=HTML).text
    assert "four &lt;b&gt;five&lt;/b&gt;" in page and "<b>five" not in page
    # a reader may not edit, a writer may not revert an author or hide
    assert rita.get("/documents/hb/edit", headers=HTML).status_code == 403
    assert ed.get("/documents/hb/revert", headers=HTML).status_code == 403
    assert post(ed, "/documents/hb/hide", {"revision": "1"}).status_code == 403
    # ... nor change retention or run gc through the server's API
    h = {"X-CSRF-Token": csrf_of(ed, "/documents")}
    assert ed.put("/api/v1/retention", json={"keep_last": 1}, headers=h).status_code == 403
    assert ed.post("/api/v1/gc", headers=h).status_code == 403

    # two editors from the same base: different words of one block merge
    edit_page = ed.get("/documents/hb/edit", headers=HTML).text
    base = re.search(r'name="base" value="(\d+)"', edit_page).group(1)
    r1 = post(ed, "/documents/hb/edit", {"text": "ONE two three\n\nfour <b>five</b>",
                                         "base": base}, "/documents/hb/edit")
    r2 = post(vic, "/documents/hb/edit", {"text": "one two THREE\n\nfour <b>five</b>",
                                          "base": base}, "/documents/hb/edit")
    assert r1.status_code == r2.status_code == 303 and "merged" in r2.headers["location"]
    assert Document(db, "hb").paragraphs()[0] == "ONE two THREE"
    # the same words: a conflict, shown with both versions, nothing overwritten
    r3 = post(vic, "/documents/hb/edit", {"text": "uno two three\n\nfour <b>five</b>",
                                          "base": base}, "/documents/hb/edit")
    assert r3.status_code == 409 and "uno two three" in r3.text and "ONE two THREE" in r3.text
    assert Document(db, "hb").paragraphs()[0] == "ONE two THREE"


def test_hidden_revision_and_revert_author_pages(site):
    db, client = site
    boss, vic, rita = client("boss"), client("vic"), client("rita")
    doc = Document(db, "hb")
    doc.save("a\n\nb\n\nc", author="boss")
    since = datetime.now(timezone.utc)
    bad = doc.save("a\n\nb <script>alert(1)</script>\n\nsecret=1", author="vic").revision
    assert post(boss, "/documents/hb/hide", {"revision": str(bad)}).status_code == 303
    assert rita.get(f"/documents/hb?at={bad}", headers=HTML).status_code == 403
    assert rita.get(f"/documents/hb/diff?a={bad}", headers=HTML).status_code == 403
    assert "hid this revision" in rita.get(f"/documents/hb/scrub?at={bad}").text
    assert boss.get(f"/documents/hb?at={bad}", headers=HTML).status_code == 200
    hist = rita.get("/documents/hb/history", headers=HTML).text
    assert "content hidden" in hist and "<script>alert" not in hist
    # a writer cannot undo the hiding through the raw key API, nor hide a revision
    key = f"doc/hb/m/hidden/{bad:012d}"
    etag = vic.get(f"/api/v1/keys/{key}").headers["etag"]
    h = {"X-CSRF-Token": csrf_of(vic, "/documents"), "If-Match": etag}
    assert vic.delete(f"/api/v1/keys/{key}", headers=h).status_code == 200
    h["If-Match"] = f'"{db.head()}"'
    r = vic.put("/api/v1/keys/doc/hb/m/hidden/000000000001", json={"value": "{}"}, headers=h)
    assert r.status_code == 200, r.text
    assert rita.get(f"/documents/hb?at={bad}", headers=HTML).status_code == 403
    assert rita.get("/documents/hb?at=1", headers=HTML).status_code == 200
    # preview, then confirm
    q = f"/documents/hb/revert?account=vic&since={since.isoformat()}"
    prev = boss.get(q.replace("+", "%2B"), headers=HTML)
    assert prev.status_code == 200 and "1 edited back, 1 restored, 1 removed" in prev.text
    assert "&lt;script&gt;" in prev.text and "<script>alert" not in prev.text
    assert doc.paragraphs()[1].startswith("b <script>")          # the preview wrote nothing
    # a span back from now, as the command line takes it, previews the same plan
    prev = boss.get("/documents/hb/revert?account=vic&since=1h", headers=HTML)
    assert prev.status_code == 200 and "1 edited back, 1 restored, 1 removed" in prev.text
    assert boss.get("/documents/hb/revert?account=vic&since=1x", headers=HTML).status_code == 400
    r = post(boss, "/documents/hb/revert", {"account": "vic", "since": since.isoformat()},
             "/documents/hb/revert")
    assert r.status_code == 303
    assert doc.paragraphs() == ["a", "b", "c"]
    assert doc.revisions()[0].author == "boss" and doc.revisions()[0].op == "revert-author"
    # undo (a writer may) the revert
    post(vic, "/documents/hb/undo", {"revision": str(doc.head())}, "/documents/hb/history")
    assert doc.paragraphs()[2] == "secret=1"
    post(vic, "/documents/hb/restore", {"revision": "1"}, "/documents/hb/history")
    assert doc.paragraphs() == ["a", "b", "c"] and doc.revisions()[0].op == "restore"


def test_block_operations_as_json(site):
    db, client = site
    ed, rita = client("ed"), client("rita")
    Document(db, "big").save("\n\n".join(f"p{i}" for i in range(1000)), author="ed")
    got = rita.get("/documents/big/blocks.json").json()
    base, blocks = got["revision"], got["blocks"]
    assert len(blocks) == 1000
    h = {"X-CSRF-Token": csrf_of(ed, "/documents")}
    ops = {"base": base, "ops": [["set", blocks[5]["id"], "five"],
                                 ["insert", blocks[5]["id"], "after five"],
                                 ["insert", ["op", 1], "after that"]]}
    r = ed.post("/documents/big/ops.json", json=ops, headers=h)
    assert r.status_code == 200 and r.json()["written"] == 3, r.text
    assert db.commit_info(r.json()["revision"]).stats.keys_put == 3
    assert Document(db, "big").paragraphs()[5:9] == ["five", "after five", "after that", "p6"]
    # the same base again: the same block, other words -> a conflict, as data
    r = ed.post("/documents/big/ops.json", headers=h, json={
        "base": base, "ops": [["set", blocks[5]["id"], "FIVE"]]})
    assert r.status_code == 409 and r.json()["conflicts"][0]["theirs"] == "five"
    assert rita.post("/documents/big/ops.json", json=ops, headers=h).status_code == 403
    assert ed.post("/documents/big/ops.json", json=ops).status_code == 403     # no CSRF
    assert ed.post("/documents/big/ops.json", headers=h,
                   json={"base": base, "ops": [["move", "x"]]}).status_code == 400


def test_every_page_has_a_json_twin(site):
    """Each read page of a document has a JSON twin that says what the page shows, under
    the same roles (a hidden revision's content is a 403 for a reader there too), and the
    page links to it."""
    db, client = site
    boss, rita = client("boss"), client("rita")
    doc = Document(db, "hb")
    doc.save("one\n\ntwo <b>2</b>", author="ed", summary="start")
    doc.save("one more\n\ntwo <b>2</b>\n\nthree", author="vic")
    bad = doc.save("one more\n\nspam\n\nthree", author="vic").revision
    doc.hide(bad, by="boss", reason="spam")
    Document(db, "other").save("x", author="ed")

    assert rita.get("/documents.json").json() == {"documents": ["hb", "other"]}
    hist = rita.get("/documents/hb/history.json").json()
    revs = doc.revisions()
    assert hist["document"] == "hb"
    assert [r["revision"] for r in hist["revisions"]] == [r.number for r in revs]
    assert [(r["author"], r["op"], r["hidden"]) for r in hist["revisions"]] == \
        [(r.author, r.op, r.hidden) for r in revs]
    assert hist["revisions"][-1]["summary"] == "start"
    assert datetime.fromisoformat(hist["revisions"][0]["time"].replace("Z", "+00:00")) == \
        revs[0].time

    second = revs[1].number
    d = rita.get(f"/documents/hb/diff.json?a={second}").json()
    assert d["a"] == str(second) and d["b"] is None
    assert [(c["kind"], c["old"], c["new"]) for c in d["changes"]] == \
        [(c.kind, c.old, c.new) for c in doc.diff(second)]
    assert [c["segments"] for c in d["changes"]] == \
        [[list(s) for s in c.segments] for c in doc.diff(second)]
    assert any(op == "+" and "more" in text for op, text in d["changes"][0]["segments"])
    # a hidden revision: a reader gets 403 as on the page, with a JSON body; an admin reads it
    r = rita.get(f"/documents/hb/diff.json?a={bad}")
    assert r.status_code == 403 and "hidden" in r.json()["error"]["message"]
    assert boss.get(f"/documents/hb/diff.json?a={bad}").status_code == 200
    assert rita.get(f"/documents/hb/blame.json?at={bad}").status_code == 403

    blame = rita.get(f"/documents/hb/blame.json?at={second}").json()
    assert [(b["text"], b["author"], b["revision"]) for b in blame["lines"]] == \
        [(b.text, b.author, b.revision) for b in doc.blame(second)]
    assert blame["lines"][1]["text"] == "two <b>2</b>"     # data, not markup

    # bad input: the right status and a JSON body saying what to do
    r = rita.get("/documents/hb/diff.json")
    assert r.status_code == 400 and "?a=" in r.json()["error"]["message"]
    assert rita.get("/documents/hb/blame.json?at=999").status_code == 404
    assert rita.get("/documents/-bad-/history.json").status_code == 404
    assert rita.get("/documents/nobody/history.json").status_code == 404

    # every page links its twin
    for page, twin in (("/documents", "/documents.json"),
                       (f"/documents/hb?at={second}", f"/documents/hb/blocks.json?at={second}"),
                       ("/documents/hb/history", "/documents/hb/history.json"),
                       (f"/documents/hb/diff?a={second}", f"/documents/hb/diff.json?a={second}"),
                       (f"/documents/hb/blame?at={second}",
                        f"/documents/hb/blame.json?at={second}")):
        r = rita.get(page, headers=HTML)
        assert r.status_code == 200 and f'href="{twin}"' in r.text, page
    assert 'href="/documents/hb/blocks.json"' in boss.get("/documents/hb", headers=HTML).text


paragraph = st.text(st.sampled_from("ab <>&\"'é"), min_size=1, max_size=8).map(str.strip) \
    .filter(bool)


@settings(max_examples=25, deadline=None)
@given(saves=st.lists(st.tuples(st.sampled_from(["ann", "bob", "<i>eve</i>"]),
                                st.lists(paragraph, min_size=1, max_size=5)),
                      min_size=1, max_size=6))
def test_the_twins_say_what_the_model_says(saves):
    """For any history: history.json is the model's revisions, blame.json its paragraphs
    with their authors, diff.json of each revision the model's diff of it."""
    db = cowdb.open()
    try:
        doc = Document(db, "d")
        for author, paras in saves:
            doc.save("\n\n".join(paras), author=author)
        c = TestClient(create_app(db), base_url="http://127.0.0.1")
        revs = doc.revisions()
        assert c.get("/documents/d/history.json").json()["revisions"] == \
            [r.as_json(iso) for r in revs]
        lines = c.get("/documents/d/blame.json").json()["lines"]
        assert [b["text"] for b in lines] == doc.paragraphs()
        assert [(b["author"], b["revision"]) for b in lines] == \
            [(b.author, b.revision) for b in doc.blame()]
        for r in revs:
            got = c.get(f"/documents/d/diff.json?a={r.number}").json()["changes"]
            assert got == [ch.as_json() for ch in doc.diff(r.number)]
    finally:
        db.close()
