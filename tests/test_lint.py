"""ruff over cowdb/ with the rule set in pyproject.toml ([tool.ruff]: E, F, I, B, UP)."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ruff() -> list[str] | None:
    """How to run ruff: its module (pip install ruff) or a ruff on PATH; None if neither."""
    try:
        import ruff  # noqa: F401
        return [sys.executable, "-m", "ruff"]
    except ImportError:
        exe = shutil.which("ruff")
        return None if exe is None else [exe]


def test_ruff_finds_nothing_in_cowdb():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    r = subprocess.run([*ruff, "check", "--no-cache", "cowdb"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
