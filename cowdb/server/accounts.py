"""Accounts, roles, tokens and protected branches of ``cowdb serve``.

They live in one JSON file beside the database (``data.cow`` ->
``data.cow-accounts.json``, mode 0600), never in the data keyspace. A token
is shown once, when the account is made; the file keeps only its scrypt hash
and salt. A token reads ``cdb_<id>_<secret>``: the id finds the account, so a
check costs one scrypt, and a token that verified once is remembered (by its
SHA-256, in memory only) until the file changes.
"""
from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from typing import TypedDict

ROLES = ("reader", "writer", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


class _User(TypedDict):
    role: str
    id: str        # the token's id part: finds the account
    salt: str      # hex
    scrypt: str    # hex: the scrypt hash of the whole token


class _File(TypedDict):
    users: dict[str, _User]
    protected: list[str]


_Stamp = tuple[int, int, int]   # (mtime_ns, size, inode) of the accounts file


class AccountError(ValueError):
    """A bad account name, an unknown account, a duplicate."""


@dataclass(frozen=True, slots=True)
class Account:
    """Who a request is: a name and a role (reader < writer < admin)."""
    name: str
    role: str

    def can(self, role: str) -> bool:
        """True if this account's role is at least ``role``."""
        return _RANK[self.role] >= _RANK[role]


LOCAL = Account("local", "admin")   # who the open mode (127.0.0.1, no accounts) serves


def check_name(name: object) -> str:
    """``name`` if it may name an account, else AccountError."""
    if not isinstance(name, str) or not _NAME.match(name) or name != name.strip():
        raise AccountError("an account name is 1 to 64 characters, no control characters, "
                           "no leading or trailing spaces")
    return name


def accounts_path(db_path: str) -> str:
    return os.fspath(db_path) + "-accounts.json"


def _hash(token: str, salt: bytes) -> bytes:
    return hashlib.scrypt(token.encode(), salt=salt, **_SCRYPT)


class Accounts:
    """The accounts file (``path`` None: in memory, for tests and in-memory databases)."""

    def __init__(self, path: str | None = None):
        self.path = path
        self._lock = threading.Lock()
        self._data: _File = {"users": {}, "protected": []}
        self._stamp: _Stamp | None = None
        self._verified: dict[bytes, str] = {}   # sha256(token) -> account name
        self._load()

    # ---- the file --------------------------------------------------------
    @staticmethod
    def _file_stamp(path: str) -> _Stamp | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> None:
        """Reread the file if it changed (another process ran `cowdb user`)."""
        if self.path is None:
            return
        stamp = self._file_stamp(self.path)
        if stamp == self._stamp:
            return
        data: _File
        if stamp is None:
            data = {"users": {}, "protected": []}
        else:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            data.setdefault("users", {})
            data.setdefault("protected", [])
        self._data, self._stamp = data, stamp
        self._verified.clear()

    def _save(self) -> None:
        self._verified.clear()
        if self.path is None:
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".accounts-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._stamp = self._file_stamp(self.path)

    # ---- accounts ----------------------------------------------------------
    def __bool__(self) -> bool:
        """True if any account exists (otherwise the server may run open on loopback)."""
        with self._lock:
            self._load()
            return bool(self._data["users"])

    def list(self) -> list[Account]:
        with self._lock:
            self._load()
            return [Account(n, u["role"]) for n, u in sorted(self._data["users"].items())]

    def get(self, name: str) -> Account | None:
        with self._lock:
            self._load()
            u = self._data["users"].get(name)
            return None if u is None else Account(name, u["role"])

    def add(self, name: str, role: str) -> str:
        """Make an account; returns its token (shown once, never stored)."""
        check_name(name)
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        tid = secrets.token_hex(6)
        token = f"cdb_{tid}_{secrets.token_urlsafe(24)}"
        salt = secrets.token_bytes(16)
        digest = _hash(token, salt)
        with self._lock:
            self._load()
            if name in self._data["users"]:
                raise AccountError(f"an account named {name!r} exists; remove it first")
            self._data["users"][name] = {"role": role, "id": tid, "salt": salt.hex(),
                                         "scrypt": digest.hex()}
            self._save()
        return token

    def remove(self, name: str) -> None:
        with self._lock:
            self._load()
            if self._data["users"].pop(name, None) is None:
                raise AccountError(f"no account named {name!r}")
            self._save()

    def verify(self, token: str) -> Account | None:
        """The account a token belongs to, or None."""
        if not isinstance(token, str) or len(token) > 200:
            return None
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            self._load()
            name = self._verified.get(key)
            if name is not None:
                u = self._data["users"].get(name)
                return None if u is None else Account(name, u["role"])
            m = re.fullmatch(r"cdb_([0-9a-f]{12})_[A-Za-z0-9_-]{10,100}", token)
            if m is None:
                return None
            found = [(n, u) for n, u in self._data["users"].items() if u["id"] == m.group(1)]
        if not found:
            return None
        name, u = found[0]
        if not hmac.compare_digest(_hash(token, bytes.fromhex(u["salt"])),
                                   bytes.fromhex(u["scrypt"])):
            return None
        with self._lock:
            self._verified[key] = name
        return Account(name, u["role"])

    # ---- protected branches ---------------------------------------------
    def protected(self) -> builtins.list[str]:  # (the method list() shadows the type)
        with self._lock:
            self._load()
            return sorted(self._data["protected"])

    def is_protected(self, branch: str) -> bool:
        with self._lock:
            self._load()
            return branch in self._data["protected"]

    def protect(self, branch: str) -> None:
        with self._lock:
            self._load()
            if branch not in self._data["protected"]:
                self._data["protected"].append(branch)
                self._save()

    def unprotect(self, branch: str) -> None:
        with self._lock:
            self._load()
            if branch not in self._data["protected"]:
                raise AccountError(f"branch {branch!r} is not protected")
            self._data["protected"].remove(branch)
            self._save()
