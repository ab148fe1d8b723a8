"""The fault campaign at the object-store seam (issue 17).

The scripted workload of test_faults.py (commits, no-sync commits, big values,
tags, branches, merges, revert, restore, retention, gc, closes) runs over
memory:// and file:// stores through a ``FaultyClient`` that strikes at the
k-th request with one fault:

``put_lost``     the first put from k on fails (TransientError) and does not land
``put_timeout``  the first put from k on lands, then reports a timeout
``slowdown``     requests k..k+3 answer 503 SlowDown (nothing lands): retried
``get_fail``     the first GET from k on fails once: retried
``list_lag``     every LIST leaves out the newest key (a lagging listing)
``outage``       requests k..k+39 all fail: more than the retries; the operation fails
``crash``        the process dies at request k (nothing after it is sent)

and the driver checks: a fault the retries absorb is invisible (no error, the
model state); a fault that surfaces is a ``cowdb.errors`` exception and leaves
the database closed or at the last acknowledged state or the one in flight;
and a fresh handle on the store (after the run, or after the crash) holds
exactly the last acknowledged state or the one in flight: no acknowledged
commit lost, none applied twice (every version number and content is checked),
no torn version (``check()`` verifies every page).
"""
from __future__ import annotations

import os
import tempfile
import uuid

import pytest

pytest.importorskip("obstore")

from cowdb.errors import CowdbError, DatabaseClosed   # noqa: E402
from cowdb.objdb import ObjectDatabase                 # noqa: E402
from cowdb.pages.objclient import ObjectClient, TransientError, client_for_url  # noqa: E402
from test_faults import INITIAL, Close, Failure, reconcile, workload  # noqa: E402

LONG = bool(os.environ.get("COWDB_LONG"))
KINDS = ("put_lost", "put_timeout", "slowdown", "get_fail", "list_lag", "outage", "crash")
PUTS = ("put", "put_new")
GETS = ("get", "get_range")


class Crash(BaseException):
    """The process died: nothing more reaches the store."""


class FaultyClient(ObjectClient):
    def __init__(self, inner: ObjectClient, kind: str | None = None, k: int = -1):
        self.inner, self.kind, self.k = inner, kind, k
        self.n = 0                 # requests so far
        self.fired: str | None = None
        self.healed = False
        self.only: str | None = None   # strike only this kind of request
        self.before = None             # before(op): called before each request (tests)

    def heal(self) -> None:
        self.healed = True

    def _strike(self, op: str) -> str | None:
        """Which fault, if any, strikes this request."""
        i, self.n = self.n, self.n + 1
        if self.before is not None:
            self.before(op)
        kind = self.kind
        if kind is None or self.healed or i < self.k or self.only not in (None, op):
            return None
        if kind == "crash":
            self.fired = self.fired or f"crash at request {i} ({op})"
            raise Crash()
        if kind in ("slowdown", "outage"):
            span = 4 if kind == "slowdown" else 40
            if i < self.k + span:
                self.fired = self.fired or f"{kind} from request {i} ({op})"
                raise TransientError(f"503 SlowDown ({op})")
            return None
        if self.fired is None and ((kind in ("put_lost", "put_timeout") and op in PUTS) or
                                   (kind == "get_fail" and op in GETS)):
            self.fired = f"{kind} at request {i} ({op})"
            return kind
        return None

    def put(self, key, data):
        self._write("put", self.inner.put, key, data)

    def put_new(self, key, data):
        self._write("put_new", self.inner.put_new, key, data)

    def _write(self, op, fn, key, data):
        f = self._strike(op)
        if f == "put_lost":
            raise TransientError(f"connection reset ({op} {key})")
        fn(key, data)
        if f == "put_timeout":
            raise TransientError(f"timed out ({op} {key}) after it landed")

    def get(self, key):
        if self._strike("get"):
            raise TransientError("connection reset (get)")
        return self.inner.get(key)

    def get_range(self, key, start, end):
        if self._strike("get_range"):
            raise TransientError("connection reset (get_range)")
        return self.inner.get_range(key, start, end)

    def list_after(self, prefix, after):
        self._strike("list")
        keys = self.inner.list_after(prefix, after)
        if self.kind == "list_lag" and not self.healed and keys:
            self.fired = self.fired or "list_lag"
            return keys[:-1]
        return keys

    def delete(self, key):
        self._strike("delete")
        self.inner.delete(key)


def settle(db, candidates):
    """reconcile(), and the retention rule, which verify() does not read, decides between
    two states that differ only there."""
    got = reconcile(db, candidates)
    rule = db.retention.keep_last
    if got.keep_last != rule:
        same = [s for s in candidates if s.keep_last == rule and s.last == got.last]
        if not same:
            raise Failure(f"retention keep_last={rule}, no allowed state has it")
        got = same[-1]
    return got


def new_store(backend: str):
    url = (f"memory://faults-{uuid.uuid4().hex}" if backend == "memory"
           else f"file://{tempfile.mkdtemp()}/store")
    return client_for_url(url)[0], url


def open_db(client) -> ObjectDatabase:
    return ObjectDatabase(client=client, page_size=1024, lease=0, refresh_interval=0,
                          backoff=0.0002, checkpoint_every=8)


class Run:
    def __init__(self, steps, inner, kind=None, k=-1):
        self.steps, self.inner = steps, inner
        self.client = FaultyClient(inner, kind, k)
        self.db = None
        self.states = [INITIAL]
        self.inflight = None
        self.errors: list[str] = []
        self.crashed = False

    @property
    def state(self):
        return self.states[-1]

    def execute(self) -> None:
        try:
            for step in self.steps:
                after = step.expect(self.state)
                if after is None:
                    continue
                if self.db is None and not self._open():
                    continue
                self._step(step, after)
            if self.db is not None:
                self._step(Close(), self.state)
        except Crash:
            self.crashed = True

    def _open(self) -> bool:
        try:
            self.db = open_db(self.client)
        except CowdbError as e:
            self.errors.append(f"open: {e!r}")
            self.client.heal()
            return False
        self.client.heal() if self.client.kind == "outage" and self.client.fired else None
        return True

    def _step(self, step, after) -> None:
        try:
            step.apply(self)
        except Crash:
            self.inflight = after if after is not self.state else None
            raise
        except CowdbError as e:
            if self.client.fired is None:
                raise Failure(f"{type(e).__name__} without a fault during {step!r}: {e}") from e
            self.errors.append(f"{step!r}: {e!r}")
            self.client.heal()
            self._after_error(step, after)
            return
        except Exception as e:
            raise Failure(f"{type(e).__name__} is not a cowdb.errors exception during "
                          f"{step!r}: {e!r}") from e
        if after is not self.state:
            self.states.append(after)

    def _after_error(self, step, after) -> None:
        """Closed, or exactly the last acknowledged state or (it landed) the one in flight."""
        if self.db is not None:
            try:
                self.db.version
            except DatabaseClosed:
                self.db = None
        candidates = [self.state] + ([after] if after is not self.state else [])
        if self.db is None:  # learn what landed from a fresh handle
            with open_db(self.inner) as db:
                got = settle(db, candidates)
        else:
            try:
                got = settle(self.db, candidates)
            except Failure as e:
                raise Failure(f"after the error during {step!r} the open database is not "
                              f"at an allowed state: {e}") from e
        if got is after and after is not self.state:
            self.states.append(after)


def run_one(steps, backend, kind, k) -> Run:
    inner, url = new_store(backend)
    run = Run(steps, inner, kind, k)
    run.execute()
    candidates = [run.state] + ([run.inflight] if run.inflight is not None else [])
    with open_db(inner) as db:  # a fresh process: what the store holds
        try:
            settle(db, candidates)
        except Failure as e:
            raise Failure(f"[{kind} at request {k}: {run.client.fired}] the store after the "
                          f"run: {e}; errors {run.errors[:2]}") from e
    if kind in ("put_lost", "put_timeout", "slowdown", "get_fail", "list_lag") and run.errors:
        raise Failure(f"[{kind} at {k}: {run.client.fired}] a fault the retries absorb "
                      f"surfaced: {run.errors[:2]}")
    if url.startswith("memory://"):
        from conftest import forget
        forget(url)
    return run


@pytest.fixture(scope="module")
def steps():
    return workload(1)


@pytest.fixture(scope="module")
def requests_in_dry_run(steps):
    counts = {}
    for backend in ("memory", "file"):
        run = run_one(steps, backend, None, -1)
        assert not run.errors and run.state is not INITIAL
        verify_final = run.state
        counts[backend] = run.client.n
        assert verify_final.last >= 10
    return counts


@pytest.mark.parametrize("backend", ["memory", "file"])
@pytest.mark.parametrize("kind", KINDS)
def test_fault_at_the_object_store_seam(steps, requests_in_dry_run, backend, kind):
    total = requests_in_dry_run[backend]
    points = 40 if LONG else (10 if backend == "memory" else 4)
    ks = sorted({round(i * (total - 1) / (points - 1)) for i in range(points)})
    if kind == "list_lag":
        ks = [0]
    fired = 0
    for k in ks:
        run = run_one(steps, backend, kind, k)
        fired += run.client.fired is not None
    assert fired >= len(ks) // 2, f"only {fired} of {len(ks)} {kind} faults fired"


def test_an_ambiguous_manifest_put_commits_once():
    """The manifest put lands but reports a timeout: the commit is acknowledged once, and
    the next commit builds on it."""
    inner, _ = new_store("memory")
    client = FaultyClient(inner)
    db = open_db(client)
    client.kind, client.k, client.only = "put_timeout", client.n, "put_new"
    with db.write() as tx:
        tx[b"a"] = b"1"
    assert client.fired and "put_new" in client.fired
    with db.write() as tx:
        tx[b"b"] = b"2"
    with open_db(inner) as fresh:
        assert [c.version for c in fresh.log()] == [2, 1, 0]
        assert dict(fresh.read()) == {b"a": b"1", b"b": b"2"}
    db.close()


def test_a_listing_that_misses_the_newest_manifest():
    inner, _ = new_store("memory")
    db = open_db(inner)
    for i in range(5):
        with db.write() as tx:
            tx[b"k%d" % i] = b"v"
    lagging = FaultyClient(inner, "list_lag", 0)
    with open_db(lagging) as other:
        assert other.version == 5 and len(other.read()) == 5
    assert lagging.fired
    db.close()
