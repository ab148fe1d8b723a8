"""`cowdb serve` on a database at a URL (issue 17): in process over memory:// and over
moto's S3 server, and a real `cowdb serve s3://bucket/prefix` process whose endpoint
and keys come from the usual AWS_* variables."""
import os
import uuid

import pytest

from server_util import ServeProcess, anyio_backend, client  # noqa: F401

import httpx  # noqa: E402

pytest.importorskip("obstore")

import cowdb                                           # noqa: E402
from cowdb.server import create_app                    # noqa: E402
from s3server import moto                              # noqa: E402,F401


def _aws(monkeypatch, srv):
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_ENDPOINT_URL", srv.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


async def _exercise(app):
    async with client(app) as c:
        r = await c.put("/api/v1/keys/apple", json={"value": "red"}, headers={"If-Match": "*"})
        assert r.status_code == 200, r.text
        v = r.json()["version"]
        r = await c.post("/api/v1/tags", json={"name": "t1"})
        assert r.status_code == 201, r.text
        r = await c.put("/api/v1/keys/apple", json={"value": "green"},
                        headers={"If-Match": f'"{v}"'})
        assert r.status_code == 200, r.text
        r = await c.put("/api/v1/keys/apple", json={"value": "stale"},
                        headers={"If-Match": f'"{v}"'})
        assert r.status_code == 412, r.text
        r = await c.get("/api/v1/keys/apple", params={"ref": "t1"})
        assert r.json()["value"] == "red"
        r = await c.get("/api/v1/log")
        assert [x["version"] for x in r.json()["commits"]][:2] == [v + 1, v]
        r = await c.get("/api/v1/diff", params={"a": "t1", "b": "main"})
        assert r.status_code == 200, r.text
        assert (await c.post("/api/v1/gc")).status_code == 200
        r = await c.get("/api/v1/check")
        assert r.json()["ok"] is True
        assert "apple" in (await c.get("/", headers={"accept": "text/html"})).text


@pytest.mark.anyio
async def test_serve_a_memory_url_in_process():
    url = f"memory://serve-{uuid.uuid4().hex}"
    app = create_app(url)
    assert app.state.server.name == url and app.state.server.open_mode
    await _exercise(app)


@pytest.mark.anyio
async def test_serve_an_s3_url_in_process_with_aws_variables(moto, monkeypatch):
    _aws(monkeypatch, moto)
    url = moto.url(moto.new_bucket(), "shop")
    app = create_app(url)
    await _exercise(app)
    with cowdb.open(url) as db:
        assert db.read()[b"apple"] == b"green" and db.tags() == {"t1": 1}


def test_cowdb_serve_s3_url_process_with_accounts(moto, monkeypatch, tmp_path):
    _aws(monkeypatch, moto)
    url = moto.url(moto.new_bucket(), "shop")
    accounts = str(tmp_path / "shop-accounts.json")
    monkeypatch.setenv("COWDB_ACCOUNTS", accounts)
    from click.testing import CliRunner
    from cowdb.cli import cli
    r = CliRunner().invoke(cli, ["--db", url, "init"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["--db", url, "user", "add", "ann", "--role", "admin"])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[0]
    monkeypatch.delenv("COWDB_ACCOUNTS")
    with ServeProcess(url, "--accounts", accounts) as srv:
        with httpx.Client(base_url=srv.url, timeout=20) as anon:
            assert anon.get("/api/v1/keys").status_code == 401
        with httpx.Client(base_url=srv.url, timeout=20,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.put("/api/v1/keys/apple", json={"value": "red"}, headers={"If-Match": "*"})
            assert r.status_code == 200 and r.json()["author"] == "ann", r.text
            assert c.get("/api/v1/keys/apple").json()["value"] == "red"
    with cowdb.open(url) as db:
        assert db.read()[b"apple"] == b"red"


def test_cowdb_user_on_a_url_needs_an_accounts_file(monkeypatch):
    monkeypatch.delenv("COWDB_ACCOUNTS", raising=False)
    from click.testing import CliRunner
    from cowdb.cli import cli
    r = CliRunner().invoke(cli, ["--db", "memory://x", "user", "list"])
    assert r.exit_code == 1 and "COWDB_ACCOUNTS" in r.output, r.output


def test_cowdb_serve_a_missing_bucket_says_so(moto, monkeypatch):
    _aws(monkeypatch, moto)
    with pytest.raises(RuntimeError, match="does not exist: create it"):
        ServeProcess("s3://no-such-bucket-here/shop").stop()
