"""cowdb.pds is generic: users' code gets element types from a type checker (issue 18)."""

import importlib.util
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

USER = Path(__file__).with_name("typing_user.py")
ROOT = Path(__file__).parents[2]


def test_user_code_runs():
    runpy.run_path(str(USER))


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_user_code_type_checks_strict():
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
                          "--no-incremental", "--cache-dir", os.devnull, str(USER)],
                         cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "MYPYPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
