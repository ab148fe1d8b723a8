"""The web UI in a real browser: Playwright for Python driving Debian's Chromium
against a real `cowdb serve` process. Clicks through login, the timeline, a commit,
compare, a merge with a conflict resolved in the form, a revert; sees a new commit
appear live; and plants script payloads in every field a user controls to check
that none runs. Screenshots go to the test's temporary folder (and to
$COWDB_SCREENSHOTS when set)."""
import os
import shutil

import pytest

from server_util import ServeProcess

import httpx  # noqa: E402

import cowdb
from cowdb.server.accounts import Accounts, accounts_path

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("COWDB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

XSS = ['<script>window.__xss = "script"</script>',
       '<img src=x onerror="window.__xss = \'img\'">',
       '"><svg onload="window.__xss = \'svg\'">']


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium); browser tests "
                    f"skipped")
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    except Exception as e:  # noqa: BLE001
        pw.stop()
        pytest.skip(f"Chromium at {CHROMIUM} did not start ({str(e).splitlines()[0]}); "
                    f"browser tests skipped")
    yield b
    b.close()
    pw.stop()


class Shots:
    def __init__(self, folder):
        self.folder = folder
        self.extra = os.environ.get("COWDB_SCREENSHOTS")

    def __call__(self, page, name):
        path = os.path.join(self.folder, f"{name}.png")
        page.screenshot(path=path, full_page=True)
        if self.extra:
            os.makedirs(self.extra, exist_ok=True)
            shutil.copy(path, os.path.join(self.extra, f"server-{name}.png"))
        return path


def login(page, url, name, token):
    page.goto(url + "/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=token]", token)
    page.click("button.primary")
    page.wait_for_url(url + "/")


@pytest.fixture
def shop(tmp_path):
    """A database with two branches, a tag and a conflict waiting, served."""
    path = str(tmp_path / "shop.cow")
    with cowdb.open(path) as db:
        with db.write("stock the shelves", author="ann") as tx:
            tx[b"fruit/apple"] = b"red\ncrisp\nfrom the north orchard"
            tx[b"fruit/pear"] = b'{"colour": "green", "stock": 12, "tags": ["ripe"]}'
            tx[b"bin/\x00\x01"] = bytes(range(40))
        db.tag("opening")
        db.branch("autumn")
        with db.write("autumn colours", author="bob", branch="autumn") as tx:
            tx[b"fruit/apple"] = b"red\nsoft\nfrom the north orchard"
            tx[b"fruit/plum"] = b"purple"
        with db.write("restock pears", author="ann") as tx:
            tx[b"fruit/pear"] = b'{"colour": "yellow", "stock": 30, "tags": ["ripe", "sweet"]}'
            tx[b"fruit/apple"] = b"red\ncrunchy\nfrom the north orchard"
        with db.write("price list", author="cy") as tx:
            tx[b"price/apple"] = b"1.20"
    accounts = Accounts(accounts_path(path))
    admin = accounts.add("ann", "admin")
    with ServeProcess(path) as srv:
        yield srv, path, admin


def test_click_through_timeline_commit_compare_merge_revert(browser, shop, tmp_path):
    srv, path, token = shop
    shot = Shots(str(tmp_path))
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(srv.url + "/")
    assert "/login" in page.url                     # closed server: log in first
    shot(page, "login")
    login(page, srv.url, "ann", token)
    assert page.locator(".timeline .row").count() == 5
    assert page.locator("svg.lanes circle").count() == 5
    assert page.locator(".badge.branch", has_text="autumn").count() >= 1
    assert page.locator(".badge.tag", has_text="opening").count() == 1
    shot(page, "timeline")
    # a commit page: line diff with the changed word marked
    page.click(".row[data-version='3'] a.v")
    page.wait_for_url(srv.url + "/commit/3")
    assert page.locator("text=restock pears").count() == 1
    assert page.locator("del", has_text="soft").count() + page.locator(
        "del", has_text="crisp").count() == 1
    assert page.locator("ins", has_text="crunchy").count() == 1
    assert page.locator("td.n", has_text="$.colour").count() == 1      # JSON by structure
    shot(page, "commit")
    # compare two versions: binary shown by size and hex
    page.goto(srv.url + "/compare?a=0&b=opening")
    assert page.locator("pre.hex").count() == 1 and "40 bytes" in page.inner_text("main")
    page.goto(srv.url + "/compare?a=opening&b=autumn")
    shot(page, "compare")
    # merge autumn into main: a conflict on fruit/apple, resolved in the form
    page.goto(srv.url + "/branches")
    page.click("a.merge-link")
    page.click("#confirm-merge")
    assert page.locator(".conflict").count() == 1
    assert "fruit/apple" in page.inner_text(".conflict")
    shot(page, "merge-conflict")
    page.check("#theirs0")
    page.click("#resolve-merge")
    page.wait_for_url(srv.url + "/commit/*")
    merged = int(page.url.rsplit("/", 1)[1])
    with cowdb.open(path, readonly=True) as db:
        assert db.read()[b"fruit/apple"] == b"red\nsoft\nfrom the north orchard"
        assert db.read()[b"fruit/plum"] == b"purple"
        assert db.commit_info(merged).author == "ann"
        assert len(db.commit_info(merged).parents) == 2
    # revert the merge, behind a confirmation
    page.click("#revert")
    assert page.locator("#confirm").count() == 1
    shot(page, "revert-confirm")
    page.click("#confirm")
    page.wait_for_url(srv.url + "/commit/*")
    with cowdb.open(path, readonly=True) as db:
        assert b"fruit/plum" not in db.read()
    page.goto(srv.url + "/")
    shot(page, "timeline-after-merge")
    page.goto(srv.url + "/history?k=fruit/apple")
    assert page.locator("td.author", has_text="bob").count() == 0   # bob wrote on autumn
    assert page.locator("tr").count() >= 3
    shot(page, "history")
    assert errors == []


def test_a_new_commit_appears_without_a_reload(browser, shop):
    srv, path, token = shop
    page = browser.new_page()
    login(page, srv.url, "ann", token)
    page.evaluate("window.__same_page = true")
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.put("/api/v1/keys/live", json={"value": "1", "message": "arrives live"},
                  headers={"If-Match": "*"})
        v = r.json()["version"]
    page.wait_for_selector(f".row[data-version='{v}']", timeout=15000)
    assert "arrives live" in page.inner_text(".timeline")
    assert page.evaluate("window.__same_page") is True          # no reload happened


def test_no_planted_payload_runs_anywhere(browser, tmp_path):
    path = str(tmp_path / "xss.cow")
    accounts = Accounts(accounts_path(path))
    evil = XSS[1]
    token = accounts.add(evil, "admin")     # the account name is a payload too
    with cowdb.open(path) as db:
        with db.write(XSS[0], author=evil) as tx:
            for i, p in enumerate(XSS):
                tx[p.encode()] = p.encode()
                tx[f"json{i}".encode()] = ('{"k": "%s"}' % p.replace('"', '\\"')).encode()
        for i, p in enumerate(XSS):
            db.tag(f"t{i}{p}")
            db.branch(f"b{i}{p}")
            with db.write(p, author=evil, branch=f"b{i}{p}") as tx:
                tx[XSS[0].encode()] = ("theirs " + p).encode()
        with db.write(XSS[2], author=evil) as tx:
            tx[XSS[0].encode()] = ("ours " + XSS[2]).encode()
    pages = ["/", "/branches", "/browse", "/compare?a=0&b=main",
             "/compare?a=" + XSS[1] + "&b=main",            # an error page echoing input
             "/key?k=" + XSS[0].replace("#", "%23"), "/history?k=" + XSS[1],
             "/commit/1", "/commit/2", "/login?next=" + XSS[0]]
    with ServeProcess(path) as srv:
        page = browser.new_page()
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        login(page, srv.url, evil, token)
        from urllib.parse import quote
        for b in range(len(XSS)):
            pages.append(f"/merge?source={quote(f'b{b}{XSS[b]}')}&into=main")
        for p in pages:
            page.goto(srv.url + p if "?" not in p else srv.url + p.split("?")[0] + "?" +
                      "&".join(f"{kv.split('=', 1)[0]}={quote(kv.split('=', 1)[1])}"
                               for kv in p.split("?", 1)[1].split("&")))
            _assert_inert(page, p)
        # the merge conflict form shows both sides' payloads
        page.goto(srv.url + f"/merge?source={quote('b0' + XSS[0])}&into=main")
        page.click("#confirm-merge")
        assert page.locator(".conflict").count() == 1
        _assert_inert(page, "merge conflict form")
        assert "theirs " + XSS[0] in page.inner_text(".conflict")
        page.goto(srv.url + "/")
        text = page.inner_text("body")
        assert XSS[0] in text and evil in text          # shown as text, verbatim
        Shots(str(tmp_path))(page, "xss-timeline")
    assert dialogs == []


def _assert_inert(page, where):
    assert page.evaluate("window.__xss") is None, where
    assert page.locator("img[src=x]").count() == 0, where
    assert page.locator("svg[onload]").count() == 0, where
    srcs = page.eval_on_selector_all("script", "els => els.map(e => e.getAttribute('src'))")
    assert all(s == "/static/cowdb.js" for s in srcs), (where, srcs)
