"""A database at a URL from the outside (issue 17): bad input raises a specific
cowdb.errors exception that says what to do, the whole API works on memory://, and
the command line takes a URL (in process, and as a real `cowdb` process on moto's S3
server with the endpoint and keys in the usual AWS_* variables)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

pytest.importorskip("obstore")

import cowdb                                                   # noqa: E402
from cowdb.errors import (AccessDenied, DatabaseNotFound, InvalidValue,  # noqa: E402
                          MergeConflict, StoreNotFound)
from s3server import moto                                      # noqa: E402,F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def aws_env(srv) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=srv.endpoint, AWS_ACCESS_KEY_ID="test",
               AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


# ---- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("url, words", [
    ("s3://", "names no bucket"),
    ("s3:///prefix", "names no bucket"),
    ("gs://", "names no bucket"),
    ("ftp://host/db", "unsupported URL scheme"),
    ("file://", "names no folder"),
])
def test_a_bad_url_says_what_is_wrong(url, words):
    with pytest.raises(InvalidValue, match=words):
        cowdb.open(url)


def test_bad_options_say_what_is_wrong(moto):
    url = moto.url(moto.new_bucket())
    with pytest.raises(InvalidValue, match="not one the store knows"):
        cowdb.open(url, options=dict(moto.options(), bogus="1"))
    with pytest.raises(InvalidValue, match="options must be a dict"):
        cowdb.open(url, options="endpoint=x")
    with pytest.raises(InvalidValue, match="recover=True applies to a file"):
        cowdb.open(url, options=moto.options(), recover=True)
    with pytest.raises(TypeError, match="object-store URLs only"):
        cowdb.open(None, lease=3)


def test_a_missing_bucket_is_store_not_found(moto):
    for readonly in (False, True):
        with pytest.raises(StoreNotFound, match="does not exist: create it"):
            cowdb.open("s3://no-such-bucket-here/db", options=moto.options(),
                       readonly=readonly)
    assert issubclass(StoreNotFound, DatabaseNotFound)


def test_an_empty_prefix_read_only_is_database_not_found(moto):
    url = moto.url(moto.new_bucket())
    with pytest.raises(DatabaseNotFound, match="without readonly=True to create one"):
        cowdb.open(url, options=moto.options(), readonly=True)


def test_no_credentials_is_access_denied_and_names_the_variables(monkeypatch):
    for k in list(os.environ):
        if k.startswith(("AWS_", "AZURE_")):
            monkeypatch.delenv(k)
    # no keys anywhere: the store asks the instance metadata service (here a closed port)
    opts = {"endpoint": "http://127.0.0.1:9", "region": "us-east-1",
            "metadata_endpoint": "http://127.0.0.1:9", "retry_config": {"max_retries": 0}}
    with pytest.raises(AccessDenied, match="AWS_ACCESS_KEY_ID"):
        cowdb.open("s3://bucket/db", options=opts)
    with pytest.raises(AccessDenied, match="AZURE_STORAGE_ACCOUNT_NAME"):
        cowdb.open("az://container/db")


def test_an_unwritable_folder_is_database_not_found():
    with pytest.raises(DatabaseNotFound, match="cannot create the folder"):
        cowdb.open("file:///proc/no/such/folder")


# ---- the whole API on memory:// --------------------------------------------------------
def test_every_operation_on_memory_url(tmp_path):
    url = f"memory://api-{uuid.uuid4().hex}"
    with cowdb.open(url) as db:
        with db.write("one") as tx:
            tx.update({b"a": b"1", b"b": b"2"})
        db.tag("v1")
        db.branch("dev")
        with db.write("dev", branch="dev") as tx:
            tx[b"a"] = b"dev"
        with db.write("main") as tx:
            tx[b"a"] = b"main"
        with pytest.raises(MergeConflict):
            db.merge("dev")
        db.merge("dev", resolve="theirs")
        assert db.read()[b"a"] == b"dev"
        assert {c.key for c in db.diff("v1", "main")} == {b"a"}
        db.revert(db.head())
        assert db.read()[b"a"] == b"main"
        db.restore("v1")
        assert dict(db.read()) == {b"a": b"1", b"b": b"2"}
        assert [h[0] for h in db.history(b"a")][:1] == [db.head()]
        db.delete_tag("v1")
        db.delete_branch("dev")
        db.set_retention(keep_last=2)
        report = db.gc()
        assert report.versions_dropped > 0 and db.check().ok
        assert db.tags() == {} and set(db.branches()) == {"main"}
        db.compact(str(tmp_path / "copy.cow"))
    with cowdb.open(str(tmp_path / "copy.cow")) as copy:
        assert dict(copy.read()) == {b"a": b"1", b"b": b"2"}


# ---- the command line ------------------------------------------------------------------
def test_the_command_line_on_memory_url():
    from click.testing import CliRunner
    from cowdb.cli import cli
    r = CliRunner().invoke(cli, ["--db", f"memory://cli-{uuid.uuid4().hex}", "log"])
    assert r.exit_code == 0 and "create" in r.output, r.output
    r = CliRunner().invoke(cli, ["--db", "ftp://nowhere/db", "init"])
    assert r.exit_code == 1 and "unsupported URL scheme" in r.output


def _cowdb(env, *args):
    return subprocess.run([sys.executable, "-m", "cowdb", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_command_line_on_s3_with_aws_variables(moto, tmp_path):
    env = aws_env(moto)
    url = moto.url(moto.new_bucket(), "shop")
    r = _cowdb(env, "--db", url, "log")
    assert r.returncode == 1 and f"cowdb --db {url} init" in r.stderr, r.stderr
    for args in (["init"], ["put", "apple", "red"], ["put", "pear", "green"],
                 ["tag", "t1"], ["branch", "dev"], ["put", "fig", "1", "--branch", "dev"],
                 ["merge", "dev"], ["retention", "--keep-last", "3"], ["gc"], ["check"]):
        r = _cowdb(env, "--db", url, *args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert "objects:" in r.stdout or args == ["check"]
    r = _cowdb(env, "--db", url, "log")
    assert r.returncode == 0 and "(dev, main)" in r.stdout and "t1" in r.stdout, r.stdout
    r = _cowdb(env, "--db", url, "get", "fig")
    assert r.returncode == 0 and r.stdout.strip() == "1"
    r = _cowdb(env, "--db", url, "info")
    assert r.returncode == 0 and url in r.stdout
    r = _cowdb(env, "--db", url, "init")
    assert r.returncode == 1 and "already exists" in r.stderr
    r = _cowdb(env, "--db", "s3://no-such-bucket-here/shop", "log")
    assert r.returncode == 1 and "does not exist: create it" in r.stderr, r.stderr
    with cowdb.open(url, options=moto.options()) as db:
        assert db.read()[b"fig"] == b"1" and db.tags() == {"t1": 2}
