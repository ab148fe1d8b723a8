"""The -lock file under misuse (issue 13): deleted or replaced while in use, a reader
table with every slot taken, a full disk when it must be created."""
import errno
import fcntl
import os
import subprocess
import sys
import tempfile

import pytest

import cowdb
from cowdb import locks
from cowdb.errors import LockFileReplaced, ReadersFull, WriteFailed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, *args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, **kw)


CHILD_WRITES = ("import sys, cowdb\n"
                "with cowdb.open(sys.argv[1], timeout=0) as db:\n"
                "    with db.write() as tx: tx[b'child'] = b'1'\n")


def _content(path) -> dict:
    with cowdb.open(path, readonly=True) as db:
        assert db.check().ok
        return dict(db.read())


# ---- the lock file deleted or replaced ---------------------------------------------------

@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_lock_file_deleted_or_replaced_stops_this_process_writing(path, how):
    db = cowdb.open(path)
    with db.write() as tx:
        tx[b"a"] = b"1"
    lock = path + "-lock"
    if how == "deleted":
        os.remove(lock)
    else:
        with open(lock + ".new", "wb") as f:
            f.write(bytes(4096))
        os.replace(lock + ".new", lock)
    # another process opens now: it locks the new file, so it can write beside us
    done = _python(CHILD_WRITES, path)
    assert done.returncode == 0, done.stderr
    with pytest.raises(LockFileReplaced, match=how) as e:
        db.write()
    assert "open it again" in str(e.value)
    with pytest.raises(LockFileReplaced):
        db.tag("t")
    assert db.read()[b"a"] == b"1"      # reading what it had still works
    db.close()
    assert _content(path) == {b"a": b"1", b"child": b"1"}


def test_a_relative_path_keeps_working_after_chdir(tmp_path, monkeypatch):
    """The identity check stats the lock file by its absolute path: a chdir() after
    opening by a relative path is not a replaced lock file."""
    monkeypatch.chdir(tmp_path)
    db = cowdb.open("rel.cow")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with db.write() as tx:
        tx[b"k"] = b"v"
    db.close()


def test_a_lock_file_deleted_during_a_transaction_fails_its_commit(path):
    db = cowdb.open(path)
    with db.write() as tx:
        tx[b"a"] = b"1"
    tx = db.write()
    tx[b"mine"] = b"1"
    os.remove(path + "-lock")
    done = _python(CHILD_WRITES, path)   # takes the writer lock of the new file
    assert done.returncode == 0, done.stderr
    with pytest.raises(LockFileReplaced, match="nothing was written"):
        tx.commit()
    db.close()
    assert _content(path) == {b"a": b"1", b"child": b"1"}


# ---- the reader table full ---------------------------------------------------------------

HOLD_SLOTS = ("import fcntl, os, sys\n"
              "fd = os.open(sys.argv[1], os.O_RDWR)\n"
              "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, int(sys.argv[2]), 4096)\n"
              "print('held', flush=True)\n"
              "sys.stdin.read()\n")


def _hold_slots(path, n):
    p = subprocess.Popen([sys.executable, "-c", HOLD_SLOTS, path + "-lock", str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_process_past_the_reader_table_is_refused(path):
    """Every slot held by another live process (as 126 processes would): opening fails
    with ReadersFull, read-only too, and the file is unchanged; one slot free is enough."""
    cowdb.open(path).close()
    before = open(path, "rb").read()
    holder = _hold_slots(path, locks.SLOTS)
    try:
        for readonly in (False, True):
            with pytest.raises(ReadersFull, match=f"all {locks.SLOTS} reader slots"):
                cowdb.open(path, readonly=readonly)
    finally:
        holder.communicate("")
    assert open(path, "rb").read() == before
    holder = _hold_slots(path, locks.SLOTS - 1)
    try:
        with cowdb.open(path) as db:
            assert db._shared.slot == locks.SLOTS - 1
            with db.write() as tx:
                tx[b"k"] = b"v"
    finally:
        holder.communicate("")


def test_slots_of_ended_processes_are_free_again(path):
    cowdb.open(path).close()
    holder = _hold_slots(path, locks.SLOTS)
    holder.communicate("")               # it ends: the kernel drops its locks
    with cowdb.open(path) as db:
        assert db._shared.slot == 0


# ---- a full disk when the lock file is created ---------------------------------------------

@pytest.mark.parametrize("readonly", [False, True])
def test_no_space_for_the_lock_file_is_write_failed(path, monkeypatch, readonly):
    cowdb.open(path).close()
    os.remove(path + "-lock")
    before = open(path, "rb").read()

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(locks.os, "posix_fallocate", full)
    with pytest.raises(WriteFailed, match="free some space"):
        cowdb.open(path, readonly=readonly)
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    with cowdb.open(path, readonly=readonly) as db:   # with room again, it opens
        assert db.version == 0


OPEN_ON_FULL_DISK = ("import sys, cowdb\n"
                     "try:\n"
                     "    cowdb.open(sys.argv[1], readonly=sys.argv[2] == 'ro').close()\n"
                     "    print('opened')\n"
                     "except cowdb.errors.WriteFailed as e:\n"
                     "    print('WriteFailed', e)\n")


@pytest.fixture
def full_tmpfs():
    """A 256 KiB tmpfs (needs root and mount): yields its folder."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected-ENOSPC test covers the code")
    where = tempfile.mkdtemp()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", where],
                          capture_output=True, text=True)
    if done.returncode:
        os.rmdir(where)
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the injected-ENOSPC "
                    f"test covers the code")
    try:
        yield where
    finally:
        subprocess.run(["umount", where], check=True)
        os.rmdir(where)


def test_a_full_disk_when_creating_the_lock_file_raises_not_sigbus(full_tmpfs):
    """A real full file system: the lock file's page would be a hole in the map, and the
    first store into it (the reader slot) was SIGBUS."""
    path = os.path.join(full_tmpfs, "db.cow")
    cowdb.open(path).close()
    os.remove(path + "-lock")
    fd = os.open(os.path.join(full_tmpfs, "filler"), os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    for mode in ("ro", "rw"):
        done = _python(OPEN_ON_FULL_DISK, path, mode)
        assert done.returncode == 0, f"the child died: {done.returncode} {done.stderr}"
        assert done.stdout.startswith("WriteFailed") and "free some space" in done.stdout
