"""The seam between cowdb and an object store: six calls, three errors.

Everything the object-store layer (``objectio.py``) asks of a bucket goes
through an ``ObjectClient``: put an object, put one only if absent (the
commit point), get all or a byte range of one, list keys after a key (or all
keys with their times, for gc), and delete. ``ObstoreClient`` implements it over
obstore (S3, GCS, Azure, local
folders, memory); the fault tests slip a faulty client in between.

Errors a client raises, whatever the backend:

- ``ObjectNotFound``: no object at that key;
- ``ObjectExists``: ``put_new`` found the key taken (another writer won);
- ``TransientError``: a request failed in a way that may heal (5xx, SlowDown,
  a timeout, a reset connection). The request **may have succeeded**: a put
  that times out can still land, so callers resolve it by reading back.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

T = TypeVar("T")


class ObjectNotFound(KeyError):
    pass


class ObjectExists(Exception):
    pass


class TransientError(OSError):
    """A request that may be retried; it may also have taken effect."""


class Refused(PermissionError):
    """The store refused the credentials, or none were found (not retried)."""


class NoBucket(FileNotFoundError):
    """The bucket or container does not exist (not retried)."""


CREDENTIAL_HINTS = {
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or pass "
          "options={'access_key_id': ..., 'secret_access_key': ...}",
    "gs": "set GOOGLE_SERVICE_ACCOUNT (a key file) or GOOGLE_APPLICATION_CREDENTIALS, or pass "
          "options={'service_account_path': ...}",
    "az": "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or a SAS token), or "
          "pass options={'account_name': ..., 'account_key': ...}",
}


class ObjectClient:
    """The contract. Keys are '/'-separated strings below the database's prefix."""

    def put(self, key: str, data: bytes) -> None: raise NotImplementedError
    def put_new(self, key: str, data: bytes) -> None: raise NotImplementedError
    def get(self, key: str) -> bytes: raise NotImplementedError
    def get_range(self, key: str, start: int, end: int) -> bytes: raise NotImplementedError
    def list_after(self, prefix: str, after: str | None) -> list[str]: raise NotImplementedError

    def list_info(self, prefix: str) -> list[tuple[str, float | None]]:
        """(key, last-modified time in seconds or None if unknown) of every key."""
        return [(k, None) for k in self.list_after(prefix, None)]

    def delete(self, key: str) -> None: raise NotImplementedError
    def close(self) -> None: pass


class CountingClient(ObjectClient):
    """Counts requests and bytes by kind (for stats and the benchmark)."""
    counts: dict[str, int]
    bytes_up: int
    bytes_down: int

    def __init__(self, inner: ObjectClient) -> None:
        self.inner = inner
        self.counts = {"put": 0, "put_new": 0, "get": 0, "get_range": 0, "list": 0,
                       "delete": 0}
        self.bytes_up = self.bytes_down = 0

    def put(self, key: str, data: bytes) -> None:
        self.counts["put"] += 1
        self.bytes_up += len(data)
        self.inner.put(key, data)

    def put_new(self, key: str, data: bytes) -> None:
        self.counts["put_new"] += 1
        self.bytes_up += len(data)
        self.inner.put_new(key, data)

    def get(self, key: str) -> bytes:
        self.counts["get"] += 1
        data = self.inner.get(key)
        self.bytes_down += len(data)
        return data

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self.counts["get_range"] += 1
        data = self.inner.get_range(key, start, end)
        self.bytes_down += len(data)
        return data

    def list_after(self, prefix: str, after: str | None) -> list[str]:
        self.counts["list"] += 1
        return self.inner.list_after(prefix, after)

    def list_info(self, prefix: str) -> list[tuple[str, float | None]]:
        self.counts["list"] += 1
        return self.inner.list_info(prefix)

    def delete(self, key: str) -> None:
        self.counts["delete"] += 1
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


def _is_transient(e: Exception) -> bool:
    text = str(e).lower()
    return any(w in text for w in ("timeout", "timed out", "503", "500", "502", "504",
                                   "slowdown", "slow down", "connection", "reset",
                                   "temporarily", "internalerror", "throttl"))


class ObstoreClient(ObjectClient):
    """An ObjectClient over an obstore store (imported only when used)."""
    url: str
    kind: str

    def __init__(self, store: Any, url: str = "the object store", kind: str = "") -> None:
        import obstore
        from obstore import exceptions
        self.store = store
        self.url, self.kind = url, kind
        self._ob = obstore
        self._exc = exceptions

    def _map(self, e: Exception, key: str) -> Exception:
        exc = self._exc
        text = str(e)
        first = text.strip().splitlines()[0][:300] if text.strip() else type(e).__name__
        if "NoSuchBucket" in text or "ContainerNotFound" in text or (
                "bucket" in text.lower() and "does not exist" in text.lower()):
            return NoBucket(f"the bucket of {self.url} does not exist: create it, or check the "
                            f"URL and the endpoint (AWS_ENDPOINT_URL, options={{'endpoint': "
                            f"...}})")
        if isinstance(e, (exc.PermissionDeniedError, exc.UnauthenticatedError)) or any(
                w in text for w in ("169.254.169.254", "latest/api/token", "computeMetadata",
                                    "metadata/identity", "InvalidAccessKeyId", "AccessDenied",
                                    "SignatureDoesNotMatch", "403 Forbidden",
                                    "Unauthenticated", "credential")):
            hint = CREDENTIAL_HINTS.get(self.kind, "check its credentials")
            return Refused(f"{self.url} refused the request for {key!r}, or no credentials "
                           f"were found ({first}): {hint}")
        if isinstance(e, (FileNotFoundError, exc.NotFoundError)):
            return ObjectNotFound(key)
        if isinstance(e, (exc.AlreadyExistsError, exc.PreconditionError)):
            return ObjectExists(key)
        if isinstance(e, (exc.NotSupportedError, exc.InvalidPathError,
                          exc.UnknownConfigurationKeyError)):
            return OSError(f"object store refused {key!r}: {e}")
        if _is_transient(e) or isinstance(e, (TimeoutError, ConnectionError)):
            return TransientError(f"object store request for {key!r} failed: {e}")
        return OSError(f"object store request for {key!r} failed: {e}")

    def put(self, key: str, data: bytes) -> None:
        try:
            self._ob.put(self.store, key, data, use_multipart=False)
        except Exception as e:
            raise self._map(e, key) from e

    def put_new(self, key: str, data: bytes) -> None:
        try:
            self._ob.put(self.store, key, data, mode="create", use_multipart=False)
        except Exception as e:
            raise self._map(e, key) from e

    def get(self, key: str) -> bytes:
        try:
            return bytes(self._ob.get(self.store, key).bytes())
        except Exception as e:
            raise self._map(e, key) from e

    def get_range(self, key: str, start: int, end: int) -> bytes:
        try:
            return bytes(self._ob.get_range(self.store, key, start=start, end=end))
        except Exception as e:
            err = self._map(e, key)
            if isinstance(err, OSError) and "range" in str(e).lower():
                return b""   # a range wholly past the end of the object
            raise err from e

    def list_after(self, prefix: str, after: str | None) -> list[str]:
        try:
            out: list[str] = []
            for batch in self._ob.list(self.store, prefix=prefix, offset=after,
                                       chunk_size=1000):
                out.extend(m["path"] for m in batch)
            return sorted(k for k in out if after is None or k > after)
        except Exception as e:
            raise self._map(e, prefix) from e

    def list_info(self, prefix: str) -> list[tuple[str, float | None]]:
        try:
            out: list[tuple[str, float | None]] = []
            for batch in self._ob.list(self.store, prefix=prefix, chunk_size=1000):
                out.extend((m["path"], m["last_modified"].timestamp()) for m in batch)
            return sorted(out)
        except Exception as e:
            raise self._map(e, prefix) from e

    def delete(self, key: str) -> None:
        try:
            self._ob.delete(self.store, key)
        except Exception as e:
            err = self._map(e, key)
            if not isinstance(err, ObjectNotFound):
                raise err from e


_memory_stores: dict[str, Any] = {}


def client_for_url(url: object, options: dict[str, Any] | None = None
                   ) -> tuple[ObjectClient, str]:
    """An ObstoreClient for ``s3://bucket/prefix``, ``gs://``, ``az://``, ``file:///path``
    or ``memory://name``, and a display name. Credentials and endpoints come from the
    usual environment variables (AWS_*, GOOGLE_*, AZURE_*) or ``options``; query
    parameters of the URL are options too (``s3://b/p?endpoint=http://127.0.0.1:9000``).

    A URL that cannot name a store raises InvalidValue; options the store does not know,
    InvalidValue; a store that cannot find credentials when it is built, AccessDenied
    (the errors of the first request are mapped by ObjectIO.refresh)."""
    from ..errors import AccessDenied, DatabaseNotFound, InvalidValue
    if not isinstance(url, str):
        raise InvalidValue(f"an object-store URL is a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise InvalidValue(f"{url!r} is not a valid URL ({e})") from None
    scheme = parts.scheme.lower()
    opts: dict[str, Any] = dict(parse_qsl(parts.query))
    if options is not None and not isinstance(options, dict):
        raise InvalidValue(f"options must be a dict, not {type(options).__name__}")
    opts.update(options or {})
    base = url.split("?", 1)[0]
    try:
        from obstore import store as obs
    except ImportError as e:
        raise ImportError("object storage needs obstore: pip install 'cowdb[s3]'") from e
    if scheme == "memory":
        # one store per name and process, so two handles of memory://x share it
        name = parts.netloc + parts.path
        st = _memory_stores.get(name)
        if st is None:
            st = _memory_stores[name] = obs.MemoryStore()
        return ObstoreClient(st, base, "memory"), base
    if scheme == "file":
        path = parts.path if not parts.netloc else "/" + parts.netloc + parts.path
        if not path or path == "/":
            raise InvalidValue(f"{url!r} names no folder: use file:///absolute/folder")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise DatabaseNotFound(f"cannot create the folder of {url}: {e.strerror or e}; "
                                   f"choose a folder you can write") from None
        return ObstoreClient(obs.LocalStore(path), base, "file"), base
    if scheme not in ("s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss"):
        raise InvalidValue(f"unsupported URL scheme {scheme!r} in {url!r}: use s3://, gs://, "
                           f"az://, file:// or memory://")
    kind = {"s3a": "s3", "gcs": "gs", "azure": "az", "abfs": "az", "abfss": "az"}.get(
        scheme, scheme)
    if not parts.netloc:
        raise InvalidValue(f"{url!r} names no bucket: use {scheme}://BUCKET/PREFIX")
    try:
        if kind == "s3":
            client_options = opts.pop("client_options", None) or {}
            endpoint = opts.get("endpoint") or os.environ.get(
                "AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT")
            if endpoint and endpoint.startswith("http://"):
                client_options.setdefault("allow_http", True)
            retry = opts.pop("retry_config", None)
            kw: dict[str, Any] = {"client_options": client_options} if client_options else {}
            if retry is not None:
                kw["retry_config"] = retry
            prefix = parts.path.strip("/") or None
            st = obs.S3Store(parts.netloc, prefix=prefix, **opts, **kw)
        else:
            st = obs.from_url(base, **opts)
    except Exception as e:
        text = " ".join(str(e).split())[:300]
        if type(e).__name__ == "UnknownConfigurationKeyError" or isinstance(e, TypeError):
            raise InvalidValue(f"an option for {base} is not one the store knows ({text}): "
                               f"see docs/object-store.md, Configuration") from None
        if "must be specified" in text or "credential" in text.lower():
            raise AccessDenied(f"{base} has no credentials ({text}): "
                               f"{CREDENTIAL_HINTS[kind]}") from None
        raise InvalidValue(f"cannot make a store for {base}: {text}") from None
    return ObstoreClient(st, base, kind), base


def retry(fn: Callable[..., T], *args: Any, attempts: int = 6, delay: float = 0.02,
          what: str = "request") -> T:
    """Call ``fn(*args)``, retrying TransientError with exponential backoff."""
    for i in range(attempts):
        try:
            return fn(*args)
        except TransientError:
            if i == attempts - 1:
                raise
            time.sleep(delay * (2 ** i))
    from ..errors import InvalidValue
    raise InvalidValue(f"attempts must be at least 1, not {attempts}")
