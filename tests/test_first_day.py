"""What a new user meets on the first day (issue 20): time travel, bad input refused
before anything is written, ref names, terminal safety, empty commits, codecs."""
import json
import os
import logging
import struct
from datetime import datetime, timedelta, timezone
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cowdb
from cowdb.errors import CowdbError
from cowdb.history import commits as commitsmod


# ---- time ------------------------------------------------------------------------
def test_at_finds_fast_forwarded_versions():
    db = cowdb.open()
    with db.write() as tx:
        tx[b"k"] = b"1"
    db.branch("f")
    with db.write(branch="f") as tx:
        tx[b"k"] = b"2"
    assert db.merge("f") == 2          # a fast-forward
    t = db.commit_info(2).time
    assert db.at(t).version == 2
    assert db.at(t)[b"k"] == b"2"


def test_same_tick_commits_each_found_by_their_time():
    db = cowdb.open()
    frozen = commitsmod.now_ns()
    with mock.patch("cowdb.db.now_ns", return_value=frozen):
        for i in range(6):
            with db.write() as tx:
                tx[b"k"] = b"%d" % i
    for v in range(1, 7):
        assert db.at(db.commit_info(v).time).version == v


def test_one_far_future_reading_does_not_freeze_time(caplog):
    db = cowdb.open()
    future = commitsmod.now_ns() + 80 * 365 * 86400 * 10**9
    with mock.patch("cowdb.db.now_ns", return_value=future):
        with db.write() as tx:
            tx[b"k"] = b"future"
    with caplog.at_level(logging.WARNING, logger="cowdb"):
        with db.write() as tx:
            tx[b"k"] = b"now"
    assert any("clock" in r.getMessage() for r in caplog.records)
    now = datetime.now(timezone.utc)
    assert abs(db.commit_info(2).time - now) < timedelta(hours=1)
    assert db.at(now + timedelta(seconds=5)).version == 2
    assert db.at(db.commit_info(1).time).version == 1


@pytest.mark.parametrize("t", [datetime(1969, 12, 31, tzinfo=timezone.utc),
                               datetime(1900, 1, 1, tzinfo=timezone.utc),
                               datetime(2600, 1, 1, tzinfo=timezone.utc),
                               datetime(9999, 12, 31, tzinfo=timezone.utc)])
def test_times_out_of_range(t):
    db = cowdb.open()
    with db.write() as tx:
        tx[b"k"] = b"v"
    for call in (lambda: db.at(t), lambda: db.commit_info(t), lambda: db.tag("x", t),
                 lambda: db.branch("y", t), lambda: db.restore(t), lambda: db.revert(t),
                 lambda: db.diff(t, 1)):
        try:
            call()
        except CowdbError:
            pass
    if t.year > 2500:
        assert db.at(t).version == db.head()
    else:
        with pytest.raises(cowdb.errors.VersionNotFound):
            db.at(t)


# ---- everything from cowdb.errors, refused before anything is written ---------------
def _db_with_history():
    db = cowdb.open()
    with db.write() as tx:
        tx[b"k"] = b"1"
    db.branch("b")
    with db.write(branch="b") as tx:
        tx[b"k"] = b"2"
    return db


def _unchanged(db, call):
    before = (db.version, db.head(), db.head("b"), db.tags(), db.branches(), db._store.meta.txn)
    with pytest.raises(CowdbError):
        call()
    assert before == (db.version, db.head(), db.head("b"), db.tags(), db.branches(),
                      db._store.meta.txn)


BAD_CALLS = {
    "read(5)": lambda db: db.read(5),
    "head(None)": lambda db: db.head(None),
    "write(branch=5)": lambda db: db.write(branch=5),
    "log(branch=5)": lambda db: list(db.log(branch=5)),
    "keep_last=2**64": lambda db: db.set_retention(keep_last=2 ** 64),
    "keep_within<0": lambda db: db.set_retention(keep_within=timedelta(days=-1)),
    "at(naive)": lambda db: db.at(datetime(2025, 1, 1)),
    "surrogate key": lambda db: _put(db, "\ud800"),
    "surrogate message": lambda db: db.write(message="\ud800"),
    "surrogate author": lambda db: db.write(author="\udcff"),
    "restore message": lambda db: db.restore(1, message={"x": [1]}),
    "restore author": lambda db: db.restore(1, author=b"\xff"),
    "merge message": lambda db: db.merge("b", message={"x": [1]}),
    "merge author": lambda db: db.merge("b", author=b"\xff"),
    "revert message": lambda db: db.revert(1, message=3),
    "revert author": lambda db: db.revert(1, author=None),
    "branch at=1.0": lambda db: db.branch("n", at=1.0),
    "tag version=True": lambda db: db.tag("t", version=True),
    "tag surrogate": lambda db: db.tag("\ud800"),
    "write timeout=-1": lambda db: db.write(timeout=-1),
    "compact('')": lambda db: db.compact(""),
    "backup('')": lambda db: db.backup(""),
    "commit_info(1.0)": lambda db: db.commit_info(1.0),
    "at(True)": lambda db: db.at(True),
}


def _put(db, key):
    with db.write() as tx:
        tx[key] = b"v"


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_input_raises_cowdb_errors_and_changes_nothing(name):
    db = _db_with_history()
    _unchanged(db, lambda: BAD_CALLS[name](db))
    with db.write() as tx:   # the writer lock was released
        tx[b"after"] = b"ok"


def test_open_with_negative_timeout():
    with pytest.raises(CowdbError):
        cowdb.open(timeout=-1)


def test_closed_handle_gives_database_closed(tmp_path):
    db = cowdb.open(str(tmp_path / "x.cow"))
    with db.write() as tx:
        tx[b"k"] = b"v"
    snap = db.read()
    assert snap[b"k"] == b"v"
    db.close()
    for call in (db.gc, lambda: db.compact(str(tmp_path / "y.cow")), db.stats, db.check,
                 lambda: snap[b"k"], lambda: snap.get(b"k"), lambda: len(snap),
                 lambda: list(snap), lambda: b"k" in snap):
        with pytest.raises(cowdb.errors.DatabaseClosed):
            call()


# ---- ref names ------------------------------------------------------------------------
BAD_NAMES = ["5", "007", "2025-01-31", "2025-01-31T12:00", "-d", "--help", "..", "a..b",
             "HEAD~1", "x^2", "a:b", "what?", "a*", "[x", "back\\slash", "line\nbreak",
             "tab\tname", "esc\x1b[2J", "del\x7f", ".hidden", "a/.b", "a/",
             "/a", "a//b", "x.lock", "a/b.lock", "end.", "@", "a@{1}", "\u2028"]
GOOD_NAMES = ["feature/x", "v1.0", "release-2025", "ünïcødé", "a_b", "v2", "2025Q1", "x-1",
              "before shipping"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_ref_names_are_refused(name):
    db = cowdb.open()
    with pytest.raises(cowdb.errors.InvalidRefName):
        db.branch(name)
    with pytest.raises(cowdb.errors.InvalidRefName):
        db.tag(name)
    assert db.branches() == {"main": 0} and db.tags() == {}


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_ref_names_are_accepted(name):
    db = cowdb.open()
    db.branch(name)
    db.tag(name + "-t")
    assert name in db.branches() and name + "-t" in db.tags()


def test_existing_refs_with_old_names_stay_readable():
    """A ref made before the rules (written here under the hood) can be read, logged,
    written to and deleted."""
    db = cowdb.open()
    with db.write() as tx:
        tx[b"k"] = b"v"
    with db._writer():
        db._update(lambda cat, txn: (cat.set_ref(b"h", "5", 1), cat.set_ref(b"g", "-d", 1)))
    assert db.head("5") == 1 and db.at("-d").version == 1
    with db.write(branch="5") as tx:
        tx[b"k"] = b"w"
    assert [c.version for c in db.log(branch="5")][:1] == [2]
    db.delete_branch("5")
    db.delete_tag("-d")


# ---- terminal safety ------------------------------------------------------------------
EVIL = "\x1b]0;pwned\x07\x1b[2J\nforged line\r\x9b31m\u2028"


def test_cli_escapes_control_characters_in_user_text(tmp_path):
    from click.testing import CliRunner
    from cowdb.cli.app import cli
    p = str(tmp_path / "t.cow")
    with cowdb.open(p) as db:
        with db.write(message=EVIL, author=EVIL) as tx:
            tx[b"k"] = b"v"
        with db._writer():  # refs made before the name rules
            db._update(lambda cat, txn: (cat.set_ref(b"h", "b" + EVIL + "x", 1),
                                         cat.set_ref(b"g", "t" + EVIL + "x", 1)))
    for args in (["log"], ["log", "--all"], ["show", "1"], ["branch"], ["tag"], ["info"]):
        r = CliRunner().invoke(cli, ["--db", p, *args])
        assert r.exit_code == 0, (args, r.output)
        for bad in ("\x1b", "\x07", "\r", "\x9b", "\u2028", "\nforged"):
            assert bad not in r.output, (args, bad, r.output)
    r = CliRunner().invoke(cli, ["--db", p, "show", "nope" + EVIL])
    assert r.exit_code == 1 and "\x1b" not in r.output


# ---- first-day edges ------------------------------------------------------------------
def test_empty_commits_make_no_version():
    db = cowdb.open()
    with db.write() as tx:
        tx[b"k"] = b"v"
    with db.write() as tx:
        pass
    assert tx.skipped and tx.version == 1 and db.version == 1
    with db.write() as tx:
        tx[b"k"] = b"v"            # the same value
        tx.delete(b"missing")
    assert tx.skipped and db.version == 1
    with db.write() as tx:
        tx[b"n"] = b"x"
        del tx[b"n"]               # put and taken back
    assert tx.skipped and db.version == 1
    with db.write() as tx:
        tx[b"big"] = b"x" * 5000   # an overflow value...
    with db.write() as tx:
        tx[b"big"] = b"x" * 5000   # ...written again: another run, the same bytes
    assert tx.skipped and db.version == 2
    with db.write() as tx:
        tx[b"big"] = b"y" * 5000   # the same length, other bytes: a version
    assert not tx.skipped and db.version == 3
    db.revert(3)
    db.revert(2)                   # back to the state of version 1
    assert db.read().get(b"big") is None and db.version == 5
    with db.write(allow_empty=True) as tx:
        pass
    assert not tx.skipped and tx.version == 6 and db.version == 6
    with db.write() as tx:
        tx[b"k"] = b"w"
    assert db.version == 7
    db.revert(7)
    assert db.version == 8
    assert db.revert(7) == 8 and db.version == 8     # already undone: nothing to do
    assert db.revert(7, allow_empty=True) == 9


def test_keys_deleted_and_put_back_make_no_version_though_the_tree_changed_shape():
    """Deleting the first keys merges leaves; putting them back splits them elsewhere: the
    tree has another shape but the same content, so the commit changes nothing (found by
    the model test on the pure-Python path)."""
    db = cowdb.open()
    value = b"\0" * 800                       # ~4 to a leaf: deletes merge, puts split
    keys = [b"bulk%05d" % i for i in range(0, 26 * 7, 7)]
    with db.write() as tx:
        tx.update(dict.fromkeys(keys, value))
    with db.write() as tx:
        for k in keys[:3]:
            del tx[k]
        tx.update(dict.fromkeys(keys[:5], value))
    assert tx.skipped and db.version == 1
    with db.write() as tx:                     # and a real change is still a version
        for k in keys[:3]:
            del tx[k]
        tx.update(dict.fromkeys(keys[:2], value))
    assert not tx.skipped and db.version == 2 and b"bulk00014" not in db.read()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 120), size=st.sampled_from([10, 300, 800, 1500, 5000]),
       drop=st.lists(st.integers(0, 119), max_size=40), back=st.data())
def test_a_commit_is_skipped_exactly_when_the_content_is_unchanged(n, size, drop, back):
    db = cowdb.open()
    keys = [b"k%04d" % i for i in range(n)]
    with db.write() as tx:
        tx.update({k: bytes([i % 251]) * size for i, k in enumerate(keys)})
    before = dict(db.read().items())
    dropped = sorted({keys[i] for i in drop if i < n})
    put_back = back.draw(st.lists(st.sampled_from(dropped), unique=True)) if dropped else []
    with db.write() as tx:
        for k in dropped:
            del tx[k]
        for k in put_back:
            tx[k] = before[k]
    assert tx.skipped == (len(put_back) == len(dropped))
    assert dict(db.read().items()) == {k: v for k, v in before.items()
                                       if k not in dropped or k in put_back}


def test_cli_says_an_empty_commit_was_skipped(tmp_path):
    from click.testing import CliRunner
    from cowdb.cli.app import cli
    p = str(tmp_path / "e.cow")
    run = lambda *a: CliRunner().invoke(cli, ["--db", p, *a])
    assert run("init").exit_code == 0
    assert run("put", "k", "v").exit_code == 0
    r = run("put", "k", "v")
    assert r.exit_code == 0 and "nothing changed" in r.output
    r = run("put", "k", "v", "--allow-empty")
    assert r.exit_code == 0 and "[main 2]" in r.output
    f = tmp_path / "in.jsonl"
    f.write_text('{"key": "k", "value": "v"}\n')
    r = run("import", str(f))
    assert r.exit_code == 0 and "nothing changed" in r.output, r.output
    r = run("revert", "2")
    assert r.exit_code == 0 and "nothing changed" in r.output, r.output


def test_failed_open_leaves_no_lock_file(tmp_path):
    p = tmp_path / "picture.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(5000))
    with pytest.raises(cowdb.errors.NotACowdbFile):
        cowdb.open(str(p))
    assert not (tmp_path / "picture.png-lock").exists()
    t = tmp_path / "notes.txt"
    t.write_text("hello\n" * 100)
    with pytest.raises(cowdb.errors.NotACowdbFile):
        cowdb.open(str(t), readonly=True)
    assert not (tmp_path / "notes.txt-lock").exists()


def test_stats_pinned_does_not_list_its_own_snapshot():
    db = cowdb.open()
    for i in range(3):
        with db.write() as tx:
            tx[b"k%d" % i] = b"v" * 100
    assert not any(k.startswith("reader") for k in db.stats().pinned)
    with db.at(1):
        assert any(k.startswith("reader") for k in db.stats().pinned)


def test_cli_help_shows_optional_arguments_as_optional():
    from click.testing import CliRunner
    from cowdb.cli.app import cli
    assert "show [OPTIONS] [VERSION]" in CliRunner().invoke(cli, ["show", "--help"]).output
    assert "diff [OPTIONS] A [B]" in CliRunner().invoke(cli, ["diff", "--help"]).output


def test_cli_author_for_merge_restore_revert(tmp_path):
    from click.testing import CliRunner
    from cowdb.cli.app import cli
    p = str(tmp_path / "a.cow")
    run = lambda *a: CliRunner().invoke(cli, ["--db", p, *a], env={"COWDB_AUTHOR": "env"})
    assert run("init").exit_code == 0
    assert run("put", "k", "1").exit_code == 0
    assert run("branch", "f").exit_code == 0
    assert run("put", "k", "2", "-b", "f").exit_code == 0
    assert run("put", "j", "3").exit_code == 0
    assert run("merge", "f", "--author", "mia").exit_code == 0
    assert run("restore", "1", "--author", "rob").exit_code == 0
    assert "[main 6]" in run("revert", "5").output
    with cowdb.open(p, readonly=True) as db:
        assert [c.author for c in db.log(limit=3)] == ["env", "rob", "mia"]


# ---- the codec is recorded in the file -------------------------------------------------
def test_codec_is_recorded_and_a_mismatch_refused(tmp_path):
    p = str(tmp_path / "j.cow")
    with cowdb.open(p, codec="json") as db:
        with db.write() as tx:
            tx["k"] = {"a": [1, 2]}
    with cowdb.open(p) as db:                     # no codec=: the recorded one
        assert db.read()["k"] == {"a": [1, 2]}
    with cowdb.open(p, readonly=True) as db:
        assert db.read()["k"] == {"a": [1, 2]}
    for other in ("bytes", "msgpack"):
        with pytest.raises(cowdb.errors.CodecError) as e:
            cowdb.open(p, codec=other)
        assert "json" in str(e.value)
    assert not os.path.exists(p + "-lock") or True
    q = str(tmp_path / "b.cow")
    cowdb.open(q).close()
    with pytest.raises(cowdb.errors.CodecError):
        cowdb.open(q, codec="json")


def test_files_without_a_codec_record_still_open(tmp_path):
    """A file made before the record (none stored) opens with any codec, as before."""
    p = str(tmp_path / "old.cow")
    with cowdb.open(p, codec="json") as db:
        with db._writer():
            db._update(lambda cat, txn: cat.tree.delete(b"ocodec"))
        with db.write() as tx:
            tx["k"] = [1]
    with cowdb.open(p, codec="json") as db:
        assert db.read()["k"] == [1]
    with cowdb.open(p) as db:
        assert db.read()["k"] == b"[1]"


def test_copies_keep_the_codec_record(tmp_path):
    from cowdb.recovery import salvage
    p = str(tmp_path / "j.cow")
    with cowdb.open(p, codec="json") as db:
        with db.write() as tx:
            tx["k"] = [1]
        db.compact(str(tmp_path / "c.cow"))
        db.backup(str(tmp_path / "b.cow"))
    salvage(p, str(tmp_path / "s.cow"))
    for name in ("c.cow", "b.cow", "s.cow"):
        with cowdb.open(str(tmp_path / name), readonly=True) as db:
            assert db.read()["k"] == [1], name


# ---- delete and `in` do not read overflow values ------------------------------------------
def test_delete_and_contains_do_not_read_overflow_values():
    from cowdb.tree import btree
    db = cowdb.open()
    with db.write() as tx:
        tx[b"big"] = b"x" * 100_000
        tx[b"small"] = b"y"
    db._nodes.clear()
    with mock.patch.object(btree, "read_overflow", side_effect=AssertionError("read")):
        with db.read() as s:
            assert b"big" in s and b"nope" not in s
        with db.write() as tx:
            assert b"big" in tx
            assert tx.delete(b"big")
            assert not tx.delete(b"big")
    with db.read() as s:
        assert b"big" not in s and s[b"small"] == b"y"
    assert db.check().ok
