"""The exceptions of cowdb.documents; each is a cowdb.errors.CowdbError."""
from cowdb.errors import CowdbError, InvalidKey, VersionNotFound


class DocumentError(CowdbError):
    """Base of the documents errors."""


class InvalidName(DocumentError, InvalidKey):
    """A document name outside [A-Za-z0-9._-], 1 to 100 characters."""


class BlockNotFound(DocumentError, KeyError):
    """An operation named a block id that the base revision does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such block"


class NotARevision(DocumentError, VersionNotFound):
    """A version that did not change this document."""


class RevisionHidden(DocumentError, PermissionError):
    """An admin hid this revision's content; only admins may read it."""
