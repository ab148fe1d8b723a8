"""The command line: through click's CliRunner, and a few real subprocesses for exit codes."""
import json
import re
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

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


@given(st.binary(max_size=40) | st.text(max_size=20).map(lambda t: t.encode("utf-8")))
def test_inline_round_trips_any_bytes(b):
    s = fmt.inline(b)
    assert fmt.unescape(s) == b
    assert not any(c in s for c in "\n\r\t\x00\u2028")
    assert fmt.from_jvalue(json.loads(json.dumps(fmt.jvalue(b)))) == b


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
    # every step shows its code (>>>) before what it prints, the output indented under it
    steps = {s.split("\n")[0]: s.split("\n")[1:] for s in re.split(r"\n\d+\. ", r.output)}
    reopen = next(lines for title, lines in steps.items() if title.startswith("Close, reopen"))
    row = next(i for i, line in enumerate(reopen) if "stock the bowl" in line)
    assert reopen[row].startswith("   "), reopen
    assert any(line.startswith("   >>> for v in") for line in reopen[:row]), reopen
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
    assert run(db, "get", "-e", "bin\\xff").output == "\\x00\\xfe\n"   # NUL escaped too
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
    assert CliRunner().invoke(cli, ["info", db]).output == out
    d = json.loads(run(db, "info", "--json").output)
    assert d["version"] == 3 and d["keys"] == 3 and d["branches"] == {"main": 3}


def test_check_ok_and_corrupt(db):
    assert run(db, "check").output.startswith("ok: 4 versions")
    assert CliRunner().invoke(cli, ["check", db]).output.startswith("ok: 4 versions")
    with cowdb.open(db, readonly=True) as d:
        first_version_page = d.check().pages_used[1][0]   # after the catalog's root
        unit = d._store.unit
    with open(db, "r+b") as f:
        f.seek(first_version_page * unit + 40)
        f.write(b"\xa5" * 16)
    r = run(db, "check", ok=False)
    assert r.exit_code == 1
    assert r.stdout.startswith("damaged: 4 versions")
    assert "problem: version" in r.stdout and f"page {first_version_page}" in r.stdout
    assert r.stderr.startswith("Error: ") and "Traceback" not in r.output


def test_check_of_a_smashed_file(db):
    with open(db, "r+b") as f:           # every page after the meta slots
        size = f.seek(0, 2)
        f.seek(2 * 4096)
        f.write(b"\xa5" * (size - 2 * 4096))
    r = run(db, "check", ok=False)
    assert r.exit_code == 1 and "Traceback" not in r.output


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


# ---------------------------------------------------------------- show / diff / history
def test_show(db):
    out = run(db, "show", "2").output
    assert out.startswith("version 2\nParent:  1\n")
    assert "Author:  bob" in out and "    ripen" in out
    assert "D banana\tyellow" in out and "M apple\tred -> green" in out
    out = run(db, "show", "1", "--stat").output
    assert out.rstrip().endswith("3 keys changed: 3 added, 0 deleted, 0 modified")
    assert "no parent" in run(db, "show", "0").output
    d = json.loads(run(db, "show", "2", "--json").output)
    assert d["version"] == 2 and d["parents"] == [1] and d["branch"] == "main"
    assert d["changes"] == [{"key": "apple", "old": "red", "new": "green"},
                            {"key": "banana", "old": "yellow", "new": None}]


def test_diff_lines_and_stat(db):
    assert run(db, "diff", "1", "3").output == (
        "M apple\tred -> green\nD banana\tyellow\nA bin\\xff\t\\x00\\xfe\n")
    assert run(db, "diff", "1", "3", "--stat").output == \
        "3 keys changed: 1 added, 1 deleted, 1 modified\n"
    assert run(db, "diff", "3", "3").output == ""
    assert run(db, "diff", "1", "--prefix", "b").output == "D banana\tyellow\nA bin\\xff\t\\x00\\xfe\n"
    out = run(db, "diff", "1", "3", "-n", "1").output.splitlines()
    assert out[0].startswith("M apple") and "2 more" in out[1]


def test_diff_json_is_the_contract(db):
    """diff --json: an array of {key, old, new}; UTF-8 as strings, other bytes as base64."""
    out = run(db, "diff", "0", "3", "--json").output
    assert out == (
        '[\n'
        '  {"key": "apple", "old": null, "new": "green"},\n'
        '  {"key": {"base64": "Ymlu/w=="}, "old": null, "new": {"base64": "AP4="}},\n'
        '  {"key": "cherry", "old": null, "new": "dark red"}\n'
        ']\n')
    assert json.loads(run(db, "diff", "2", "2", "--json").output) == []
    changes = json.loads(run(db, "diff", "2", "3", "--json").output)
    assert [fmt.from_jvalue(c["new"]) for c in changes] == [b"\x00\xfe"]


def test_diff_unknown_version(db):
    r = run(db, "diff", "1", "42", ok=False)
    assert r.exit_code == 1 and "42" in r.stderr


def test_history_of_a_key(db):
    lines = run(db, "history", "banana").output.splitlines()
    assert [ln.split()[0] for ln in lines] == ["2", "1"]
    assert lines[0].endswith("(deleted)") and lines[1].endswith("yellow")
    assert run(db, "history", "nope").output == ""


# ---------------------------------------------------------------- tags and branches
def test_tags(db):
    assert run(db, "tag").output == ""
    assert run(db, "tag", "v1", "--at", "1").output.strip() == "created tag 'v1' at version 1"
    run(db, "tag", "head")
    assert json.loads(run(db, "tag", "--json").output) == {"head": 3, "v1": 1}
    assert run(db, "get", "banana", "--at", "v1").output == "yellow\n"
    r = run(db, "tag", "v1", ok=False)
    assert r.exit_code == 1 and "v1" in r.stderr
    run(db, "tag", "-d", "v1")
    assert json.loads(run(db, "tag", "--json").output) == {"head": 3}
    r = run(db, "tag", "-d", "v1", ok=False)
    assert r.exit_code == 1 and "cowdb tag" in r.stderr       # the CLI's hint, not db.tags()
    assert run(db, "tag", "-d", ok=False).exit_code == 2


def test_branches_commit_and_merge(db):
    assert run(db, "branch").output == "* main  3\n"
    run(db, "branch", "feat", "--at", "2")
    assert json.loads(run(db, "branch", "--json").output) == {"feat": 2, "main": 3}
    assert run(db, "put", "kiwi", "green", "-b", "feat").output.startswith("[feat 4]")
    assert run(db, "get", "kiwi", ok=False).exit_code == 1          # not on main
    assert run(db, "get", "kiwi", "--at", "feat").output == "green\n"
    assert [ln.split()[0] for ln in run(db, "log", "-b", "feat").output.splitlines()] == \
        ["4", "2", "1", "0"]
    out = run(db, "merge", "feat", "--into", "main").output
    assert out.startswith("[main 5] merge feat into main")
    assert run(db, "get", "kiwi").output == "green\n"
    assert run(db, "merge", "feat").output.startswith("already up to date")
    assert json.loads(run(db, "show", "5", "--json").output)["parents"] == [3, 4]
    run(db, "branch", "-d", "feat")
    assert json.loads(run(db, "branch", "--json").output) == {"main": 5}
    assert run(db, "branch", "-d", "main", ok=False).exit_code == 1


def test_merge_fast_forward(db):
    run(db, "branch", "ff")
    run(db, "put", "x", "1", "-b", "ff")
    assert run(db, "merge", "ff").output.strip() == "fast-forward: main is now at version 4"


def test_merge_conflict_lists_keys_and_fails(db):
    run(db, "branch", "other")
    run(db, "put", "apple", "ours")
    run(db, "put", "apple", "theirs", "-b", "other")
    r = run(db, "merge", "other", ok=False)
    assert r.exit_code == 1
    assert "conflict: apple\tbase=green ours=ours theirs=theirs" in r.stderr
    assert run(db, "get", "apple").output == "ours\n"                # nothing committed
    run(db, "merge", "other", "--resolve", "theirs")
    assert run(db, "get", "apple").output == "theirs\n"


# ---------------------------------------------------------------- restore / revert
def test_restore(db):
    assert run(db, "restore", "1").output.strip() == "[main 4] restore version 1"
    assert run(db, "scan", "-k").output.splitlines() == ["apple", "banana", "cherry"]
    assert run(db, "get", "apple", "--at", "3").output == "green\n"    # history kept


def test_revert(db):
    assert run(db, "revert", "2").output.startswith("[main 4]")
    assert run(db, "get", "banana").output == "yellow\n"
    assert run(db, "get", "apple").output == "red\n"
    assert run(db, "get", "-e", "bin\\xff").output == "\\x00\\xfe\n"   # version 3 stays
    run(db, "put", "apple", "blue")
    r = run(db, "revert", "2", ok=False)                    # apple changed again since
    assert r.exit_code == 1 and "conflict: apple" in r.stderr


# ---------------------------------------------------------------- retention / gc / stats
def test_retention_gc_stats(db):
    assert run(db, "retention").output.strip() == "keep every version"
    before = json.loads(run(db, "stats", "--json").output)
    assert sorted(before) == ["file_bytes", "free_bytes", "header_bytes", "kept_versions",
                              "live_bytes", "pinned", "reclaimable_bytes", "reserve_bytes",
                              "versions"]
    assert before["versions"] == 4 and before["reclaimable_bytes"] == 0
    assert before["file_bytes"] == sum(before[k] for k in (
        "header_bytes", "live_bytes", "reclaimable_bytes", "free_bytes", "reserve_bytes"))
    text = run(db, "stats").output
    assert "reserve:" in text and "gc can run on a full disk" in text and "header:" in text
    run(db, "retention", "--keep-last", "1")
    assert "newest 1 versions" in run(db, "retention").output
    s = json.loads(run(db, "stats", "--json").output)
    assert s["kept_versions"] == 1 and s["reclaimable_bytes"] > 0
    out = run(db, "gc").output
    assert out.startswith("dropped 3 version(s)")
    assert run(db, "get", "apple", "--at", "1", ok=False).exit_code == 1
    assert json.loads(run(db, "stats", "--json").output)["versions"] == 1
    run(db, "retention", "--keep-within", "7d")
    assert "younger than 1w" in run(db, "retention").output
    assert run(db, "retention", "--keep-within", "soon", ok=False).exit_code == 2
    run(db, "retention", "--keep-all")
    assert "file:" in run(db, "stats").output
    assert run(db, "check").exit_code == 0


def test_compact(db, tmp_path):
    dest = str(tmp_path / "small.cow")
    assert run(db, "compact", dest).output.startswith(f"wrote {dest}")
    assert run(dest, "scan").output == run(db, "scan").output
    assert run(db, "compact", dest, ok=False).exit_code == 1          # exists


# ---------------------------------------------------------------- import / export
def test_export_import_round_trip_is_diff_free(db, tmp_path):
    dump = str(tmp_path / "dump.jsonl")
    run(db, "export", "-o", dump)
    fresh = str(tmp_path / "fresh.cow")
    out = run(fresh, "import", dump).output                          # creates the database
    assert out.startswith("[main 1] import dump.jsonl (3 puts")
    with cowdb.open(db, readonly=True) as a, cowdb.open(fresh, readonly=True) as b:
        with a.read() as sa, b.read() as sb:
            assert dict(sa.items()) == dict(sb.items())
    for ref in ("1", "2"):
        again = str(tmp_path / f"again{ref}.cow")
        run(again, "import", "-", input=run(db, "export", "--at", ref).stdout_bytes)
        with cowdb.open(db, readonly=True) as a, cowdb.open(again, readonly=True) as b:
            assert dict(a.at(int(ref)).items()) == dict(b.read().items())


def test_export_formats(db):
    lines = run(db, "export").output.splitlines()
    assert lines == ['{"key": "apple", "value": "green"}',
                     '{"key": {"base64": "Ymlu/w=="}, "value": {"base64": "AP4="}}',
                     '{"key": "cherry", "value": "dark red"}']
    assert run(db, "export", "-F", "csv", "--at", "1").output == \
        "key,value\napple,red\nbanana,yellow\ncherry,dark red\n"
    r = run(db, "export", "-F", "csv", ok=False)                      # not UTF-8: refused
    assert r.exit_code == 1 and "JSON Lines" in r.stderr


def test_export_to_file_is_all_or_nothing(db, tmp_path):
    out = tmp_path / "x.csv"
    assert run(db, "export", "-o", str(out), ok=False).exit_code == 1   # csv by name
    assert not out.exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".cowdb-export")]


def test_export_to_file_has_the_mode_a_new_file_gets_or_keeps_the_old_one(db, tmp_path):
    """The export is written to a temporary file (mkstemp: mode 0600) and renamed: the
    result must not be private where a plain write would not be."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "x.jsonl"
        run(db, "export", "-o", str(out))
        assert out.stat().st_mode & 0o777 == 0o644
        out.chmod(0o640)
        run(db, "export", "-o", str(out))
        assert out.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_import_csv_replace_and_deletes(db, tmp_path):
    f = tmp_path / "in.csv"
    f.write_text('value,key\n"a,b",x\n1,apple\n')
    run(db, "import", str(f), "--replace", "-m", "load csv")
    assert run(db, "scan").output == "apple\t1\nx\ta,b\n"
    j = tmp_path / "del.jsonl"
    j.write_text('{"key": "x", "value": null}\n\n{"key": "y", "value": "2"}\n')
    run(db, "import", str(j))
    assert run(db, "scan", "-k").output == "apple\ny\n"


@pytest.mark.parametrize("content,fmt_,msg", [
    ('{"key": "a", "value": "1"}\nnot json\n', "jsonl", "line 2"),
    ('{"key": "a"}\n', "jsonl", "line 1"),
    ('{"key": "a", "value": {"base64": "!!"}}\n', "jsonl", "line 1"),
    ("k,v\n1,2\n", "csv", "header"),
    ('{"key": "a", "value": "1"}\n{"key": "", "value": "1"}\n', "jsonl", "line 2: the empty key"),
    ("key,value\n\xff,1\n", "csv", "not UTF-8"),
])
def test_import_bad_input_commits_nothing(db, tmp_path, content, fmt_, msg):
    f = tmp_path / f"bad.{fmt_}"
    f.write_bytes(content.encode("latin-1") if "\xff" in content else content.encode())
    r = run(db, "import", str(f), ok=False)
    assert r.exit_code == 1 and msg in r.stderr and "nothing was imported" in r.stderr
    with cowdb.open(db, readonly=True) as d:
        assert d.version == 3


def test_progress_bar_on_request(db, tmp_path):
    r = run(db, "export", "-o", str(tmp_path / "p.jsonl"), env={"COWDB_PROGRESS": "1"})
    assert "exported 3 keys of version 3" in r.stderr


# ---------------------------------------------------------------- more edges
def test_at_time(db):
    with cowdb.open(db, readonly=True) as d:
        t2 = d.commit_info(2).time
    assert run(db, "get", "apple", "--at", fmt.iso(t2)).output == "green\n"
    r = run(db, "scan", "--at", "1999-01-01T00:00Z", ok=False)
    assert r.exit_code == 1 and "1999" in r.stderr


def test_subprocess_locked_writer_and_concurrent_reader(db):
    with cowdb.open(db) as d:
        tx = d.write()
        try:
            r = _proc("--db", db, "--timeout", "0.1", "put", "k", "v")
            assert r.returncode == 1
            assert b"--timeout" in r.stderr and b"Traceback" not in r.stderr
            r = _proc("--db", db, "get", "apple")      # readers never wait for the writer
            assert (r.returncode, r.stdout) == (0, b"green\n")
        finally:
            tx.abort()


def test_subprocess_non_utf8_argument(db):
    r = _proc("--db", db, "put", os.fsdecode(b"k\xff"), "v")
    assert r.returncode == 0, r.stderr
    with cowdb.open(db, readonly=True) as d, d.read() as s:
        assert s[b"k\xff"] == b"v"
    r = _proc("--db", db, "scan", "-k", "--prefix", "k")
    assert r.stdout == b"k\\xff\n"


def test_subprocess_tour_and_help(tmp_path):
    r = _proc("tour", str(tmp_path / "t.cow"))
    assert r.returncode == 0, r.stderr
    assert b"Close, reopen the file" in r.stdout
    assert _proc("--help").returncode == 0


def test_help_lists_every_command_by_topic():
    out = CliRunner().invoke(cli, ["--help"]).output
    assert "Other:" not in out                    # a new command needs a place in SECTIONS
    for name in cli.commands:
        assert f"\n  {name} " in out, name


@pytest.mark.parametrize("opts", [[], ["--prefix", "b"], ["--prefix", "b", "--start", "bb"],
                                  ["--prefix", "c", "--stop", "b"], ["--prefix", "zz"],
                                  ["--start", "b", "--stop", "d"], ["--prefix", "a", "-n", "0"]])
@pytest.mark.parametrize("at", ["1", "3"])
def test_count_agrees_with_the_listing(db, opts, at):
    listed = run(db, "scan", "-k", "--at", at, *opts).output.splitlines()
    assert run(db, "scan", "--count", "--at", at, *opts).output == f"{len(listed)}\n"


def test_unexpected_error_is_one_line_unless_debug(db, monkeypatch):
    def boom(self, *a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(cowdb.Database, "read", boom)
    r = CliRunner().invoke(cli, ["--db", db, "get", "apple"])
    assert r.exit_code == 1
    assert r.stderr == "Error: internal error: RuntimeError: boom (run with --debug for the " \
                       "traceback, and please report it)\n"
    r = CliRunner().invoke(cli, ["--db", db, "--debug", "get", "apple"])
    assert isinstance(r.exception, RuntimeError)
    r = CliRunner().invoke(cli, ["--db", db, "get", "apple"], env={"COWDB_DEBUG": "1"})
    assert isinstance(r.exception, RuntimeError)


def test_log_all_branches(db):
    run(db, "branch", "side", "--at", "1")
    run(db, "put", "s", "1", "-b", "side")
    assert [ln.split()[0] for ln in run(db, "log").output.splitlines()] == ["3", "2", "1", "0"]
    lines = run(db, "log", "--all").output.splitlines()
    assert [ln.split()[0] for ln in lines] == ["4", "3", "2", "1", "0"]
    assert "(side)" in lines[0] and "(main)" in lines[1]
    assert len(run(db, "log", "--all", "-n", "2").output.splitlines()) == 2


def test_failed_import_leaves_no_new_database(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text("nope\n")
    p = str(tmp_path / "new.cow")
    assert run(p, "import", str(f), ok=False).exit_code == 1
    assert not os.path.exists(p) and not os.path.exists(p + "-lock")
