"""Replays every input saved in tests/fuzz/regressions/ through the fuzz target it names
(TARGET-anything): the inputs the atheris runs found, kept
so the bug stays fixed without atheris installed (see tests/fuzz/README.md)."""
import os
import sys

import pytest

FUZZ = os.path.join(os.path.dirname(__file__), "fuzz")
sys.path.insert(0, FUZZ)
from harnesses import TARGETS  # noqa: E402

REGRESSIONS = os.path.join(FUZZ, "regressions")


@pytest.mark.parametrize("name", sorted(os.listdir(REGRESSIONS)))
def test_saved_input(name):
    target = name.split("-", 1)[0]
    with open(os.path.join(REGRESSIONS, name), "rb") as f:
        TARGETS[target](f.read())
