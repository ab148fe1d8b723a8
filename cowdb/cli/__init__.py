"""The ``cowdb`` command line (click). ``main`` is the console-script entry point."""
from .app import cli, main

__all__ = ["cli", "main"]
