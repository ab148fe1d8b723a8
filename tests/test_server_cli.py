"""`cowdb user`, `cowdb protect` and a real `cowdb serve` process on a free loopback
port."""
import json
import os
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner

from server_util import ROOT, ServeProcess, free_port

import httpx  # noqa: E402  (server_util skipped the module if it is missing)

from cowdb.cli import cli


def run(db, *args, ok=True):
    r = CliRunner().invoke(cli, ["--db", db, *args])
    if ok:
        assert r.exit_code == 0, r.output
    return r


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "shop.cow")
    run(path, "init")
    return path


def test_user_add_prints_a_token_once_and_keeps_only_its_hash(db):
    r = run(db, "user", "add", "ann", "--role", "admin")
    token = r.stdout.strip().splitlines()[0]
    assert token.startswith("cdb_")
    f = db + "-accounts.json"
    text = open(f).read()
    assert token not in text and token[len("cdb_0123456789ab_"):] not in text
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    users = json.loads(text)["users"]
    assert users["ann"]["role"] == "admin" and len(users["ann"]["scrypt"]) == 64
    assert run(db, "user", "list").stdout == "ann\tadmin\n"
    assert run(db, "user", "add", "ann", ok=False).exit_code == 1
    assert run(db, "user", "add", "x", "--role", "root", ok=False).exit_code == 2
    run(db, "user", "remove", "ann")
    assert run(db, "user", "list").stdout == ""
    assert run(db, "user", "remove", "ann", ok=False).exit_code == 1
    with pytest.raises(KeyError):   # nothing entered the data keyspace
        import cowdb
        with cowdb.open(db) as d, d.read() as s:
            s[b"ann"]


def test_protect_and_unprotect(db):
    run(db, "protect", "main")
    assert json.load(open(db + "-accounts.json"))["protected"] == ["main"]
    run(db, "unprotect", "main")
    assert run(db, "unprotect", "main", ok=False).exit_code == 1


def _serve(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "cowdb", "serve", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_serve_refuses_a_public_bind_without_accounts(db):
    r = _serve(db, "--host", "0.0.0.0", "--port", str(free_port()))
    assert r.returncode == 1
    assert "no accounts are configured" in r.stderr and "Traceback" not in r.stderr


def test_a_real_server_process(db, tmp_path):
    token = run(db, "user", "add", "ann", "--role", "writer").stdout.split()[0]
    with ServeProcess(db) as srv:
        with httpx.Client(base_url=srv.url, timeout=10) as anon:
            assert anon.get("/api/v1/keys").status_code == 401
            r = anon.get("/", headers={"accept": "text/html"}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login")
            assert "<form" in anon.get("/login").text
        with httpx.Client(base_url=srv.url, timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.get("/api/v1/keys/apple")
            assert r.status_code == 404
            r = c.put("/api/v1/keys/apple", json={"value": "red"},
                      headers={"If-Match": r.headers["etag"]})
            assert r.status_code == 200 and r.json()["author"] == "ann"
            assert c.get("/api/v1/keys/apple").json()["value"] == "red"
            # another process writes the same file meanwhile: the server sees it
            run(db, "put", "pear", "green")
            assert c.get("/api/v1/keys/pear").json()["value"] == "green"
    assert srv.proc.returncode is not None
    with __import__("cowdb").open(db, readonly=True) as d:
        assert [c.author for c in d.log(limit=2)][1] == "ann"
