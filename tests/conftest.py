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
settings.load_profile("long" if os.environ.get("COWDB_LONG") else "ci")


@pytest.fixture
def path(tmp_path):
    """A fresh database path in a temporary folder."""
    return str(tmp_path / "test.cow")
