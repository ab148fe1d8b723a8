"""The command line: through click's CliRunner, and a few real subprocesses for exit codes."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import cowdb
from cowdb.cli import cli
from cowdb.cli import fmt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(path, *args, input=None, ok=True, env=None):
    r = CliRunner().invoke(cli, ["--db", path, *args], input=input, env=env,
                           catch_exceptions=False)
    if ok:
        assert r.exit_code == 0, (r.output, r.stderr)
    return r


@pytest.fixture
def db(path):
    """A database with three versions after the empty one."""
    with cowdb.open(path) as d:
        with d.write(message="fruit", author="ann") as tx:
            tx.update({b"apple": b"red", b"banana": b"yellow", b"cherry": b"dark red"})
        with d.write(message="ripen", author="bob") as tx:
            tx[b"apple"] = b"green"
            del tx[b"banana"]
        with d.write(message="binary") as tx:
            tx[b"bin\xff"] = b"\x00\xfe"
    return path


# ---------------------------------------------------------------- formatting
@pytest.mark.parametrize("b", [b"plain", b"tab\there", b"back\\slash", b"\xff\x00bytes",
                               "ünïcode".encode(), b"\n\r", b"\x7f\xc2\x85"])
def test_inline_is_one_line_and_reversible(b):
    s = fmt.inline(b)
    assert "\n" not in s and "\t" not in s and "\r" not in s
    assert fmt.unescape(s) == b


def test_text_and_json_values():
    assert fmt.text("é".encode()) == "é"
    assert fmt.text(b"a\xffb") == "a\\xffb"
    assert fmt.jvalue(b"abc") == "abc"
    assert fmt.jvalue(b"\xff") == {"base64": "/w=="}
    assert fmt.from_jvalue({"base64": "/w=="}) == b"\xff"
    assert fmt.from_jvalue("abc") == b"abc"
    with pytest.raises(ValueError):
        fmt.from_jvalue(3)


def test_ref_parsing():
    assert fmt.ref("12") == 12
    assert fmt.ref("v1.0") == "v1.0"
    t = fmt.ref("2025-01-31T12:00Z")
    assert t.year == 2025 and t.utcoffset().total_seconds() == 0
    assert fmt.ref("2025-01-31").tzinfo is not None      # naive: local time, made aware


# ---------------------------------------------------------------- tour
def test_tour_from_fresh_and_again(tmp_path):
    p = str(tmp_path / "tour.cow")
    r = CliRunner().invoke(cli, ["tour", p], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "Starting fresh" not in r.output
    with cowdb.open(p, readonly=True) as d:
        v = d.version
        assert v >= 2 and d.check().ok
        with d.at(1) as s:
            assert s[b"apple"] == b"red"
    r = CliRunner().invoke(cli, ["tour", p], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "Starting fresh: deleted" in r.output
    with cowdb.open(p, readonly=True) as d:
        assert d.version == v      # the same tour again, not appended to the old file


# ---------------------------------------------------------------- init / put / get / delete
def test_init_put_get(path):
    r = run(path, "init")
    assert "created" in r.output
    assert run(path, "init", ok=False).exit_code == 1
    r = run(path, "put", "apple", "red", "-m", "first")
    assert r.output.strip() == "[main 1] first"
    assert run(path, "get", "apple").output == "red\n"
    run(path, "put", "apple", "-", input="from stdin")
    assert run(path, "get", "apple").output == "from stdin\n"
    assert run(path, "get", "apple", "--at", "1").output == "red\n"


def test_put_from_file_and_raw_get(path, tmp_path):
    run(path, "init")
    blob = bytes(range(256)) * 10
    f = tmp_path / "blob"
    f.write_bytes(blob)
    run(path, "put", "blob", "--file", str(f))
    r = CliRunner().invoke(cli, ["--db", path, "get", "blob", "--raw"])
    assert r.stdout_bytes == blob
    r = run(path, "get", "blob")
    assert "\\xff" in r.output        # not UTF-8: escaped, one value


def test_put_value_and_file_conflict(path, tmp_path):
    run(path, "init")
    f = tmp_path / "v"
    f.write_bytes(b"x")
    r = run(path, "put", "k", "v", "--file", str(f), ok=False)
    assert r.exit_code == 2


def test_write_needs_an_existing_database(path):
    r = run(path, "put", "k", "v", ok=False)
    assert r.exit_code == 1
    assert "no database at" in r.stderr and "init" in r.stderr
    assert not os.path.exists(path)


def test_get_missing_key_fails(db):
    r = run(db, "get", "nope", ok=False)
    assert r.exit_code == 1 and "no key 'nope'" in r.stderr and r.stdout == ""


def test_delete(db):
    r = run(db, "delete", "apple", "nope", ok=False)
    assert r.exit_code == 1
    with cowdb.open(db, readonly=True) as d:
        assert d.version == 3              # nothing committed
    r = run(db, "delete", "apple", "nope", "--force")
    assert r.output.startswith("[main 4]")
    assert run(db, "get", "apple", ok=False).exit_code == 1
    assert run(db, "delete", "nope", "-f").output.strip() == "nothing to delete"


def test_escaped_keys_round_trip(db):
    keys = run(db, "scan", "--keys-only").output.splitlines()
    assert keys == ["apple", "bin\\xff", "cherry"]
    assert run(db, "get", "-e", "bin\\xff").output == "\x00\\xfe\n"   # text: NUL is UTF-8
    run(db, "delete", "-e", "bin\\xff")
    assert run(db, "scan", "-k").output.splitlines() == ["apple", "cherry"]


def test_author_and_branch_options(db):
    run(db, "put", "k", "v", "--author", "zed", "-m", "hello")
    with cowdb.open(db, readonly=True) as d:
        c = d.commit_info(d.version)
        assert (c.author, c.message) == ("zed", "hello")
    r = run(db, "put", "k", "v", "--branch", "nosuch", ok=False)
    assert r.exit_code == 1 and "nosuch" in r.stderr


# ---------------------------------------------------------------- scan
def test_scan_options(db):
    assert run(db, "scan").output == "apple\tgreen\nbin\\xff\t\\x00\\xfe\ncherry\tdark red\n"
    assert run(db, "scan", "-k", "--reverse", "-n", "2").output == "cherry\nbin\\xff\n"
    assert run(db, "scan", "-k", "--start", "b", "--stop", "c").output == "bin\\xff\n"
    assert run(db, "scan", "-k", "--prefix", "ch").output == "cherry\n"
    assert run(db, "scan", "--count").output == "3\n"
    assert run(db, "scan", "--count", "--start", "b").output == "2\n"
    assert run(db, "scan", "--count", "--prefix", "a").output == "1\n"
    assert run(db, "scan", "-k", "--at", "1").output == "apple\nbanana\ncherry\n"
    assert run(db, "scan", "--at", "0").output == ""


def test_scan_at_unknown(db):
    r = run(db, "scan", "--at", "99", ok=False)
    assert r.exit_code == 1 and "99" in r.stderr and "Traceback" not in r.output
    r = run(db, "scan", "--at", "nosuch", ok=False)
    assert r.exit_code == 1 and "nosuch" in r.stderr


# ---------------------------------------------------------------- log / info / check
def test_log_oneline(db):
    lines = run(db, "log").output.splitlines()
    assert len(lines) == 4
    assert lines[0].split()[0] == "3" and "binary" in lines[0] and "(main)" in lines[0]
    assert lines[1].split()[0] == "2" and "ripen" in lines[1] and "<bob>" in lines[1]
    assert lines[3].split()[0] == "0"
    assert len(run(db, "log", "-n", "2").output.splitlines()) == 2


def test_log_json_is_the_contract(db):
    out = json.loads(run(db, "log", "--json", "--limit", "2").output)
    assert [sorted(c) for c in out] == [["author", "message", "parents", "time", "version"]] * 2
    assert [(c["version"], c["message"], c["author"], c["parents"]) for c in out] == \
        [(3, "binary", "", [2]), (2, "ripen", "bob", [1])]
    assert out[0]["time"].endswith("+00:00")


def test_info(db):
    out = run(db, "info").output
    assert "head of main: version 3 (3 keys" in out
    d = json.loads(run(db, "info", "--json").output)
    assert d["version"] == 3 and d["keys"] == 3 and d["branches"] == {"main": 3}


def test_check_ok_and_corrupt(db):
    assert run(db, "check").output.startswith("ok: 4 versions")
    with open(db, "r+b") as f:           # smash every page after the meta slots
        size = f.seek(0, 2)
        f.seek(2 * 4096)
        f.write(b"\xa5" * (size - 2 * 4096))
    r = run(db, "check", ok=False)
    assert r.exit_code == 1
    assert "Traceback" not in r.output


# ---------------------------------------------------------------- errors
def test_not_a_database(tmp_path):
    p = tmp_path / "junk"
    p.write_bytes(b"hello" * 2000)
    r = run(str(p), "scan", ok=False)
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and len(r.stderr.splitlines()) == 1


def test_db_path_from_env(db, tmp_path):
    r = CliRunner().invoke(cli, ["get", "apple"], env={"COWDB_PATH": db})
    assert r.exit_code == 0 and r.output == "green\n"


def test_every_command_has_help_with_an_example():
    for name, cmd in cli.commands.items():
        r = CliRunner().invoke(cli, [name, "--help"])
        assert r.exit_code == 0, name
        assert "Example" in r.output, name


# ---------------------------------------------------------------- real processes
def _proc(*args, input=None, env_extra=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cowdb", *args], input=input,
                          capture_output=True, env=env, timeout=60)


def test_subprocess_exit_codes(db):
    r = _proc("--db", db, "get", "cherry")
    assert (r.returncode, r.stdout) == (0, b"dark red\n")
    r = _proc("--db", db, "get", "nope")
    assert r.returncode == 1 and b"Traceback" not in r.stderr
    assert r.stderr.decode().count("\n") == 1
    r = _proc("--db", db, "frobnicate")
    assert r.returncode == 2
    r = _proc("--db", db, "--debug", "get", "x", "--at", "nosuch")
    assert r.returncode == 1 and b"Traceback" in r.stderr


def test_subprocess_put_from_stdin(db):
    r = _proc("--db", db, "put", "piped", input=b"\xffraw\n")
    assert r.returncode == 0, r.stderr
    with cowdb.open(db, readonly=True) as d, d.read() as s:
        assert s[b"piped"] == b"\xffraw\n"
