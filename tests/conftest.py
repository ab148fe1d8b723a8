"""Shared fixtures and hypothesis profiles.

Profiles: "ci" (default; bounded so the whole suite fits CI), "long"
(select with --hypothesis-profile=long or COWDB_LONG=1) for soak runs.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow])
LONG = bool(os.environ.get("COWDB_LONG"))
settings.load_profile("long" if LONG else "ci")


def model_settings(examples: int, steps: int) -> settings:
    """Settings of a stateful model test: ``examples`` runs of ``steps`` steps in CI
    (issue 5 asks for >= 10,000 model steps per CI run in all), 20 times more long."""
    scale = 20 if LONG else 1
    return settings(max_examples=examples * scale, stateful_step_count=steps, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def check_store_counters(db) -> None:
    """The page store's running count of pages freed since the last sync (which decides
    when a no-sync commit must sync) equals a scan of its free list."""
    store = db._store
    want = sum(n for t, runs in store.freelist.pending.items() if t > store.durable_txn
               for _, n in runs)
    assert store.unsynced_free_pages == want


@pytest.fixture
def path(tmp_path):
    """A fresh database path in a temporary folder."""
    return str(tmp_path / "test.cow")


# ---- where a model test's database lives --------------------------------------
# "memory" and "file" are the embedded kinds; "memory://" and "file://" put the same
# database on an object store (obstore's MemoryStore and LocalStore): every model test
# runs on all four when obstore is installed.
try:
    import obstore  # noqa: F401
    KINDS = ["memory", "file", "memory://", "file://"]
except ImportError:
    KINDS = ["memory", "file"]
if os.environ.get("COWDB_KINDS"):   # e.g. COWDB_KINDS=memory://,file:// to run only those
    KINDS = os.environ["COWDB_KINDS"].split(",")


def location(kind: str, folder: str) -> str | None:
    """The path or URL a model opens for ``kind`` (None: an in-memory database)."""
    import uuid
    if kind == "memory":
        return None
    if kind == "file":
        return folder + "/model.cow"
    if kind == "memory://":
        return f"memory://model-{uuid.uuid4().hex}"
    return f"file://{folder}/store"


def forget(url) -> None:
    """Drop a memory:// store from the process (models make hundreds)."""
    if isinstance(url, str) and url.startswith("memory://"):
        from cowdb.pages.objclient import _memory_stores
        _memory_stores.pop(url[len("memory://"):], None)
