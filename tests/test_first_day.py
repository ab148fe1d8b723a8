"""What a new user meets on the first day (issue 20): time travel, bad input refused
before anything is written, ref names, terminal safety, empty commits, codecs."""
import json
import logging
import struct
from datetime import datetime, timedelta, timezone
from unittest import mock

import pytest

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
