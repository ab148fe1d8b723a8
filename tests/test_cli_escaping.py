"""Anything a user typed is data: the command line shows it escaped, never as terminal
control (an escape sequence, a carriage return, a forged line) and never as markup.

The runs pass color=True to CliRunner, as a terminal would: click then strips nothing, so a
raw escape sequence would reach the output (on a pipe click strips it, which changes the
text instead: both are wrong).
"""
import os
import subprocess
import sys
import tempfile
import unicodedata

import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

import cowdb
from cowdb.cli import cli, fmt
from cowdb.documents import Document

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = "\x1b[31mx\x01y"          # an escape sequence and a ^A in what the user typed


def controls(s, keep="\n\t"):
    """The characters of s that could drive a terminal or forge a line."""
    return [c for c in s if c not in keep and
            (unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp"))]


def cowdb_(*args, input=None, env=None):
    return CliRunner().invoke(cli, list(args), input=input, env=env, color=True)


def out(r):
    """stdout and stderr of a run, as text (they must be UTF-8)."""
    return r.stdout_bytes.decode("utf-8") + r.stderr_bytes.decode("utf-8")


def assert_escaped(r, *wanted):
    text = out(r)
    assert controls(text) == [], text
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


_PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
                     | st.sampled_from("\n\t"))


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
