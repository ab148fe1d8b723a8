"""Anything a user typed is data: the command line shows it escaped, never as terminal
control (an escape sequence, a carriage return, a forged line) and never as markup.

The runs pass color=True to CliRunner, as a terminal would: click then strips nothing, so a
raw escape sequence would reach the output (on a pipe click strips it, which changes the
text instead: both are wrong).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import unicodedata

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

import cowdb
from cowdb.cli import cli, fmt
from cowdb.cli.app import CowdbGroup
from cowdb.documents import Document

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = "\x1b[2Jx\x01y"    # what the user typed: a clear-screen sequence and a ^A in it


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # embeddings, overrides,
#                                                           isolates ("Trojan Source")


def controls(s, keep="\n\t"):
    """The characters of s that could drive a terminal, forge a line or reorder how a
    line reads (bidirectional overrides)."""
    return [c for c in s if c not in keep and
            (unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI)]


def cowdb_(*args, input=None, env=None):
    return CliRunner().invoke(cli, list(args), input=input, env=env, color=True)


def out(r):
    """stdout and stderr of a run, as text (they must be UTF-8)."""
    return r.stdout_bytes.decode("utf-8") + r.stderr_bytes.decode("utf-8")


def assert_escaped(r, *wanted):
    """No control character in r's output but newline, tab and the colors of click.style
    (the user's sequences in these tests are others: erase, \\x01, \\x07)."""
    text = out(r)
    assert controls(re.sub("\x1b\\[[0-9;]*m", "", text)) == [], text
    for w in wanted:
        assert w in text, text


@pytest.fixture
def db(path):
    with cowdb.open(path) as d, d.write(message="fruit", author="ann") as tx:
        tx[b"apple"] = b"red"
    return path


# ---------------------------------------------------------------- fmt.safe, fmt.text
@given(st.text(), st.sampled_from(["", "\n", "\n\t"]))
def test_safe_escapes_every_control_but_what_it_keeps_and_is_idempotent(s, keep):
    once = fmt.safe(s, keep=keep)
    assert controls(once, keep) == []
    assert fmt.safe(once, keep=keep) == once
    assert fmt.safe(once) == fmt.safe(s)     # keeping lines, then not: as not keeping them


_PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
                                   blacklist_characters=BIDI) | st.sampled_from("\n\t"))


def test_a_typed_path_that_is_not_utf8_shows_its_bytes():
    """Python decodes a command line's non-UTF-8 bytes as lone surrogates
    (surrogateescape): shown, each is the byte it stands for (\\xff), as values show."""
    import os
    typed = os.fsdecode(b"/tmp/caf\xe9.cow")
    assert fmt.safe(typed) == "/tmp/caf\\xe9.cow"
    assert fmt.safe("\ud800") == "\\ud800"          # a surrogate no byte stands for


@pytest.mark.parametrize("ch", BIDI)
def test_bidi_controls_are_shown_escaped(ch):
    """A name, message or key holding a right-to-left override would show its text
    reordered: every escaper shows the character as \\uNNNN instead."""
    s = f"user{ch}gnp.exe"
    assert fmt.safe(s) == f"user\\u{ord(ch):04x}gnp.exe"
    assert fmt.safe(s, keep="\n\t") == fmt.safe(s)
    assert fmt.text(s.encode()) == fmt.safe(s)
    shown = fmt.inline(s.encode())
    assert ch not in shown and fmt.unescape(shown) == s.encode()


@given(_PRINTABLE)
def test_text_of_printable_text_is_the_text(s):
    assert fmt.text(s.encode("utf-8")) == s


# ---------------------------------------------------------------- get
@pytest.fixture(scope="module")
def store():
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "values.cow")
        cowdb.open(p).close()
        yield p


def _get(store, value, *opts):
    with cowdb.open(store) as d, d.write(message="v") as tx:
        tx[b"k"] = value
    r = cowdb_("--db", store, "get", "k", *opts)
    assert r.exit_code == 0, r.stderr
    return r


@given(st.binary(max_size=60) | _PRINTABLE.map(lambda s: s.encode("utf-8")))
def test_get_shows_any_value_with_no_control_character(store, value):
    r = _get(store, value)
    text = r.stdout_bytes.decode("utf-8")       # UTF-8 text, whatever the value
    assert controls(text) == [] and text.endswith("\n")
    assert text == cowdb_("--db", store, "get", "k").stdout   # the same without color


@given(_PRINTABLE)
def test_get_shows_printable_text_exactly(store, s):
    assert _get(store, s.encode("utf-8")).stdout == s + "\n"


@given(st.binary(max_size=60))
def test_get_raw_writes_the_exact_bytes(store, value):
    assert _get(store, value, "--raw").stdout_bytes == value


def test_get_escapes_the_value_on_a_pipe_too(db):
    with cowdb.open(db) as d, d.write() as tx:
        tx[b"\x1b[31mred"] = b"val\x1b[2J\r\x00\xc2\x85 \xe2\x80\xa8\xff\nline 2\tend"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "cowdb", "--db", db, "get", "\x1b[31mred"],
                       capture_output=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"val\\x1b[2J\\r\\x00\\u0085 \\u2028\\xff\nline 2\tend\n"


def test_get_help_says_how_the_value_is_shown():
    h = cowdb_("get", "--help").output
    assert "--raw" in h and "control characters escaped" in h and "exact bytes" in h


# ---------------------------------------------------------------- messages
def test_errors_escape_what_the_user_typed(db, tmp_path):
    bad = str(tmp_path / BAD)
    assert_escaped(cowdb_("--db", bad, "log"), "no database at", "\\x1b[2Jx\\x01y")
    assert_escaped(cowdb_("--db", db, "import", bad), "cannot read", "\\x1b[2Jx\\x01y")
    r = cowdb_("--db", db, "put", "x", "--file", bad)          # click's own file error
    assert r.exit_code == 2
    assert_escaped(r, "\\x1b[2Jx\\x01y")
    r = cowdb_("--db", db, "get", "k", "--at", BAD)
    assert r.exit_code == 1
    assert_escaped(r, "\\x1b[2Jx\\x01y")


def test_usage_errors_escape_what_the_user_typed(db):
    r = cowdb_("--db", db, "--bogus" + BAD, "log")                # the group's own options
    assert r.exit_code == 2
    assert_escaped(r, "\\x1b[2Jx\\x01y")
    r = cowdb_("--db", db, BAD)                                     # no such command
    assert r.exit_code == 2
    assert_escaped(r, "\\x1b[2Jx\\x01y")
    r = cowdb_("--db", db, "scan", "--limit", BAD)                  # a subcommand's option
    assert r.exit_code == 2
    assert_escaped(r, "\\x1b[2Jx\\x01y")
    r = cowdb_("--db", db, "doc", "log")                            # a nested group
    assert r.exit_code == 2 and "NAME" in r.stderr


def test_errors_of_the_groups_own_parsing_are_escaped(monkeypatch):
    def bad(self, ctx, args):
        raise click.UsageError("bad " + BAD, ctx)
    monkeypatch.setattr(CowdbGroup, "parse_args", bad)
    r = cowdb_("log")
    assert r.exit_code == 2
    assert_escaped(r, "Error: bad \\x1b[2Jx\\x01y")


def test_success_lines_escape_paths(db, tmp_path):
    bad = str(tmp_path / BAD)
    assert_escaped(cowdb_("init", bad + "-new.cow"), "created", "\\x1b[2Jx\\x01y-new.cow")
    assert_escaped(cowdb_("--db", db, "compact", bad + "-c.cow"), "wrote", "\\x01y-c.cow")
    assert_escaped(cowdb_("backup", db, bad + "-b.cow"), "backed up", "\\x01y-b.cow")
    assert_escaped(cowdb_("salvage", db, bad + "-s.cow"), "salvaged", "\\x01y-s.cow")
    assert_escaped(cowdb_("recover", bad + "-b.cow"), "not damaged", "\\x01y-b.cow")
    assert_escaped(cowdb_("upgrade", bad + "-b.cow"), "already", "\\x01y-b.cow")
    r = cowdb_("--db", db, "export", "-o", bad + ".jsonl")
    assert r.exit_code == 0
    assert_escaped(r, "exported", "\\x01y.jsonl")
    r = cowdb_("--db", bad + "-imported.cow", "import", bad + ".jsonl")
    assert r.exit_code == 0
    assert_escaped(r, "\\x01y.jsonl")
    assert_escaped(cowdb_("--db", db, "protect", "x" + BAD), "\\x01y' is protected")


def test_tour_escapes_its_path_and_takes_it_as_no_markup(tmp_path):
    (tmp_path / "d[").mkdir()
    p = str(tmp_path / "d[" / ("]" + BAD + ".cow"))               # '[/]' closes rich markup
    r = cowdb_("tour", p)
    assert r.exit_code == 0, r.output
    assert_escaped(r, "d[/]\\x1b[2Jx\\x01y.cow")


def test_import_progress_takes_the_file_name_as_no_markup(db, tmp_path):
    (tmp_path / "d[").mkdir()
    f = tmp_path / "d[" / "]x.jsonl"
    f.write_text('{"key": "a", "value": "b"}\n')
    r = cowdb_("--db", db, "import", str(f), env={"COWDB_PROGRESS": "1"})
    assert r.exit_code == 0, r.output


def test_doc_commands_escape_authors_and_text(db):
    with cowdb.open(db) as d:
        doc = Document(d, "handbook")
        doc.save("one\x1b[2J para\n\nsecond \x01para", author="mal\x1b[2Kory",
                 summary="sum\x1bx")
        doc.save("one\x1b[2J para changed\n\nsecond \x01para", author="ann\x07")
    for args in (["show"], ["show", "--blocks"], ["diff", "3"], ["diff", "2", "3"],
                 ["blame"]):
        r = cowdb_("--db", db, "doc", args[0], "handbook", *args[1:])
        assert r.exit_code == 0, (args, r.output)
        assert_escaped(r, "one\\x1b[2J ")
    r = cowdb_("--db", db, "doc", "log", "handbook")
    assert_escaped(r, "mal\\x1b[2Kory", "ann\\x07", "sum\\x1bx")
    assert cowdb_("--db", db, "doc", "show", "handbook").stdout == \
        "one\\x1b[2J para changed\n\nsecond \\x01para\n"
    r = cowdb_("--db", db, "doc", "revert-author", "handbook", "mal\x1b[2Kory", "--since",
               "1h", "--apply", "--author", "me\x01")
    assert r.exit_code == 0, r.output
    assert_escaped(r, "mal\\x1b[2Kory")


def test_commit_lines_and_log_escape_messages_and_authors(db):
    r = cowdb_("--db", db, "put", BAD, "v", "-m", "msg" + BAD, "--author", "au" + BAD)
    assert_escaped(r, "msg\\x1b[2Jx\\x01y")
    assert_escaped(cowdb_("--db", db, "log"), "msg\\x1b[2Jx", "au\\x1b[2Jx")
    assert_escaped(cowdb_("--db", db, "show"), "msg\\x1b[2Jx", "au\\x1b[2Jx")
    assert_escaped(cowdb_("--db", db, "scan"), "\\x1b[2Jx\\x01y\tv")


# ---------------------------------------------------------------- small messages
def test_missing_key_is_escaped_once_and_quoted(db):
    r = cowdb_("--db", db, "get", "\x1b[32mnokey")
    assert r.exit_code == 1
    assert r.stderr == "Error: no key '\\x1b[32mnokey' at version 1\n"
    r = cowdb_("--db", db, "delete", "\x1b[32mnokey")
    assert r.stderr.startswith("Error: no key '\\x1b[32mnokey' on main;")


def test_an_existing_branch_is_not_described_as_a_tag(db):
    r = cowdb_("--db", db, "branch", "main")
    assert r.exit_code == 1
    assert "tag" not in r.stderr and "branch named 'main' exists" in r.stderr
    assert "choose another name" in r.stderr
    cowdb_("--db", db, "branch", "feat")
    r = cowdb_("--db", db, "branch", "feat")
    assert "tag" not in r.stderr and "cowdb branch -d feat" in r.stderr
    cowdb_("--db", db, "tag", "v1")
    r = cowdb_("--db", db, "branch", "v1")
    assert "a tag named 'v1' exists" in r.stderr and "share one namespace" in r.stderr
    r = cowdb_("--db", db, "tag", "v1")
    assert "a tag named 'v1' exists (tags never move)" in r.stderr
    assert "cowdb tag -d v1" in r.stderr
    r = cowdb_("--db", db, "tag", "feat")
    assert "a branch named 'feat' exists" in r.stderr and "never move" not in r.stderr


def test_export_to_a_missing_folder_names_the_folder(db, tmp_path):
    r = cowdb_("--db", db, "export", "-o", "/nodir/f.jsonl")
    assert r.exit_code == 1
    assert r.stderr == "Error: cannot create /nodir/f.jsonl: folder /nodir does not exist\n"
    (tmp_path / "afile").write_text("")
    r = cowdb_("--db", db, "export", "-o", str(tmp_path / "afile" / "f.jsonl"))
    assert r.exit_code == 1 and f"{tmp_path / 'afile'} is not a folder" in r.stderr
    assert ".cowdb-export" not in r.stderr
    r = cowdb_("--db", db, "export", "-o", str(tmp_path))
    assert r.stderr == f"Error: {tmp_path} is a folder; give the path of a file\n"


def test_not_a_database_names_the_file(tmp_path):
    p = tmp_path / ("junk" + BAD)
    p.write_bytes(b"hello" * 2000)
    for cmd in (["log"], ["info"], ["put", "a", "b"], ["recover", str(p)],
                ["backup", str(p), str(tmp_path / "b.cow")],
                ["salvage", str(p), str(tmp_path / "s.cow")]):
        r = cowdb_("--db", str(p), *cmd)
        assert r.exit_code == 1
        assert_escaped(r, f"Error: {tmp_path}/junk\\x1b[2Jx\\x01y", "not a cowdb database")
        assert "this file" not in r.stderr


def test_a_bad_duration_or_time_names_its_option(db):
    r = cowdb_("--db", db, "retention", "--keep-within", "3x")
    assert r.exit_code == 2 and "'--keep-within'" in r.stderr and "'3x'" in r.stderr
    r = cowdb_("--db", db, "doc", "revert-author", "handbook", "mallory", "--since", "3x")
    assert r.exit_code == 2 and "'--since'" in r.stderr
    r = cowdb_("--db", db, "doc", "revert-author", "handbook", "mallory", "--since", "1h",
               "--until", "3x")
    assert r.exit_code == 2 and "'--until'" in r.stderr
    r = cowdb_("--db", db, "scan", "-e", "--prefix", "a\\q")
    assert r.exit_code == 2 and "'--prefix'" in r.stderr
    r = cowdb_("--db", db, "get", "-e", "a\\q")
    assert r.exit_code == 2 and "Invalid value for KEY: unknown escape in 'a\\q'" in r.stderr
    r = cowdb_("--db", db, "retention", "--keep-within", "0s")    # not taken as "no rule"
    assert r.exit_code == 2 and "'--keep-within'" in r.stderr and "positive" in r.stderr


def test_ref_names_are_quoted(db):
    r = cowdb_("--db", db, "branch", "bad name")
    assert r.stdout == "created branch 'bad name' at version 1\n"
    r = cowdb_("--db", db, "tag", "good")
    assert r.stdout == "created tag 'good' at version 1\n"
    r = cowdb_("--db", db, "branch", "-d", "bad name")
    assert r.stdout == "deleted branch 'bad name' (was at version 1)\n"


# ---------------------------------------------------------------- JSON output
@given(st.text())
def test_log_json_shows_any_message_with_no_control_character(store, message):
    with cowdb.open(store) as d, d.write(message=message, author=message, allow_empty=True):
        pass
    r = cowdb_("--db", store, "log", "--json", "-n", "1")
    assert r.exit_code == 0, r.stderr
    assert controls(r.stdout, keep="\n") == []            # C1 controls, U+2028 too
    (c,) = json.loads(r.stdout)
    assert (c["message"], c["author"]) == (message, message)


def test_json_outputs_escape_c1_controls_and_line_separators(db, tmp_path):
    value = "a\x85b\x9b2J\u2028c\x7f"
    with cowdb.open(db) as d, d.write() as tx:
        tx["k\u2029".encode()] = value.encode()
    for args in (["show", "--json"], ["diff", "1", "--json"], ["export"]):
        r = cowdb_("--db", db, *args)
        assert r.exit_code == 0, r.stderr
        assert controls(r.stdout, keep="\n") == [], r.stdout
        assert "a\\u0085b\\u009b2J\\u2028c\\u007f" in r.stdout
    lines = cowdb_("--db", db, "export").stdout.splitlines()    # splitlines splits on U+2028
    assert [json.loads(ln) for ln in lines] == [{"key": "apple", "value": "red"},
                                                 {"key": "k\u2029", "value": value}]


def test_the_init_hint_is_a_command_that_pastes(tmp_path):
    """"create one with `cowdb --db PATH init`": the path shell-quoted, so a path with a
    space gives a command that runs as shown."""
    import shlex
    path = str(tmp_path / "my shop.cow")
    for args in (("--db", path, "log"), ("--db", path, "put", "k", "v"),
                 ("--db", path, "user", "list")):
        r = cowdb_(*args)
        assert r.exit_code == 1, r.stderr
        assert f"`cowdb --db {shlex.quote(path)} init`" in r.stderr, r.stderr
