"""Every exception a cowdb user can catch.

Each names what happened and what to do about it. All derive from
:class:`CowdbError`; the ones that mirror a Python built-in also derive from
it (``KeyTooLarge`` is a ``ValueError``, ``ReadOnly`` a ``PermissionError``...)
so generic handlers keep working.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tree.merge import Conflict


class CowdbError(Exception):
    """Base class of every cowdb error."""


class NotACowdbFile(CowdbError, ValueError):
    """The file exists but is not a cowdb database (or is from an unknown format version)."""


class Corruption(CowdbError):
    """A page or meta record failed its checksum or does not decode.

    ``page`` is the page number that failed (None for a meta record). ``what`` is the
    damage alone; the message adds ``advice`` (what to do) when it was given: a report
    that gives its own (``check()``, recovery) shows ``what``.
    """

    def __init__(self, message: str, page: int | None = None, advice: str = ""):
        super().__init__(f"{message}; {advice}" if advice else message)
        self.page = page
        self.what = message


def damage_of(e: BaseException) -> str:
    """What an exception says was damaged or failed, without the advice a Corruption
    carries (for reports that say what to do themselves)."""
    return e.what if isinstance(e, Corruption) else str(e)


class VersionNotFound(CowdbError, KeyError):
    """The version, tag, branch or time names no commit."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class VersionReclaimed(VersionNotFound):
    """The version existed but retention dropped it and gc() reclaimed it."""


class ReadOnly(CowdbError, PermissionError):
    """A write was attempted on a read-only database or a snapshot."""


class TransactionClosed(CowdbError, RuntimeError):
    """The transaction or snapshot was already committed, aborted or closed."""


class DatabaseClosed(TransactionClosed):
    """The database was closed."""


class Locked(CowdbError, TimeoutError):
    """Another process holds the writer lock and did not release it within the timeout."""


class KeyTooLarge(CowdbError, ValueError):
    """A key is longer than the database allows."""


class InvalidKey(CowdbError, ValueError):
    """A key is empty or otherwise unusable."""


class InvalidRefName(InvalidKey):
    """A branch or tag name the command line could not tell from a version, a time or an
    option, or that git's ref-name rules refuse (see cowdb.checks.check_ref_name)."""


class NestedTransaction(CowdbError, RuntimeError):
    """A thread opened a write transaction while it already holds one."""


class RefExists(CowdbError, ValueError):
    """A tag or branch with that name already exists."""


class RefNotFound(VersionNotFound):
    """No tag or branch has that name."""


class MergeConflict(CowdbError):
    """A merge or revert changed the same key differently on both sides.

    ``conflicts`` lists each one (key, base, ours, theirs).
    """

    def __init__(self, message: str, conflicts: list["Conflict"]):
        super().__init__(message)
        self.conflicts = conflicts


class WriteFailed(CowdbError, OSError):
    """An I/O error stopped a commit; nothing of it is visible and the database is unchanged.

    ``uncertain``: the failure came after the commit's meta record was written (a failed
    fsync), so whether the commit survives is unknown: the database closes itself."""
    uncertain = False


class InvalidValue(CowdbError, ValueError):
    """An argument of the right type whose value cowdb cannot use (a naive datetime, a
    negative timeout, a name that cannot be a branch...)."""


class InvalidType(CowdbError, TypeError):
    """A key or value is of a type cowdb does not store (keys: bytes or str; values: bytes)."""


class DatabaseNotFound(CowdbError, FileNotFoundError):
    """The path names no database and it could not (or must not) be created."""


class InvalidMerge(CowdbError, ValueError):
    """A merge that cannot be done as asked (a branch into itself)."""


class ProtectedBranch(CowdbError, ValueError):
    """Branch "main" cannot be deleted."""


class CodecError(CowdbError, ValueError):
    """A value could not be encoded by the database's codec, or a stored value not decoded."""


class ReadFailed(CowdbError, OSError):
    """The operating system could not read a page (an I/O error): the disk or the file
    system failed, not the data; retry, then check the device."""

    def __init__(self, message: str, page: int | None = None):
        super().__init__(message)
        self.page = page


class LockFileReplaced(CowdbError, RuntimeError):
    """The database's ``-lock`` file was deleted or replaced while this process had it
    open: other processes no longer see this process's writer lock or readers, so it
    refuses to write. Close the database in every process and open it again."""


class ReadersFull(CowdbError, RuntimeError):
    """Every slot of the reader table in the ``-lock`` file is held by a live process
    (LMDB's MDB_READERS_FULL): this process could not read safely, so it may not open."""


class AccessDenied(CowdbError, PermissionError):
    """An object store refused the credentials, or none were found (an object-store URL):
    the message names the variables or options to set."""


class StoreNotFound(DatabaseNotFound):
    """The bucket (or container) of an object-store URL does not exist: create it, or
    check the URL and the endpoint."""
