"""The ``cowdb`` command: a click group, its global options, and error handling.

Every command opens the database named by ``--db``, then ``COWDB_PATH``,
then ``./cowdb.db``. Errors print one line (``Error: ...``) to stderr and
exit 1; usage errors exit 2; ``--debug`` (or ``COWDB_DEBUG=1``) shows the
traceback instead. Every error is shown with its control characters escaped
(``\\x1b``): what the user typed is data, never terminal control.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import click

from cowdb.errors import CowdbError

from . import engine

if TYPE_CHECKING:
    from cowdb.db import Database

CONTEXT: dict[str, object] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Env:
    """What every command gets: the database path and the global flags."""
    path: str
    debug: bool
    timeout: float | None

    def __init__(self, db: str, debug: bool, timeout: float | None) -> None:
        self.path, self.debug, self.timeout = db, debug, timeout

    def open(self, write: bool = False, create: bool = False) -> Database:
        return engine.open_db(self.path, write=write, create=create, timeout=self.timeout)


P = ParamSpec("P")
R = TypeVar("R")


def pass_env(f: Callable[Concatenate[Env, P], R]) -> Callable[P, R]:
    """``click.pass_obj`` for the commands: ``f`` is called with the Env first."""
    return click.pass_obj(f)


# The engine's messages point Python users at its API; point CLI users at commands.
_HINTS = (("see db.tags() and db.branches()", "see `cowdb tag` and `cowdb branch`"),
          ("see db.branches()", "see `cowdb branch`"),
          ("see db.tags()", "see `cowdb tag`"),
          ("open it with readonly=True to read it", "only commands that read will work"),
          ("pass resolve='ours', 'theirs' or a function", "--resolve ours|theirs settles it"),
          ("pass a larger timeout=", "pass a larger --timeout"),
          ("; check the path, or open a new file", "; check the path"))


def _one_line(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename and e.strerror:
        msg = f"{e.filename}: {e.strerror}"
    for api, cli_hint in _HINTS:
        msg = msg.replace(api, cli_hint)
    from .fmt import safe  # names and messages in errors reach the terminal too
    return safe(" ".join(msg.split()))


def _escape(e: click.ClickException) -> None:
    """Show ``e`` with control characters escaped and its lines kept: a click error's
    message holds what the user typed (a path, a name, an option's value), in ours and
    in click's own (UsageError, BadParameter, FileError), and on a terminal an escape
    sequence in it would drive the terminal (on a pipe click would strip it, and the
    message would name another file). ``fmt.safe`` leaves its own output as it is, so
    escaping twice changes nothing."""
    if "format_message" in vars(e):
        return
    from .fmt import safe
    message = e.format_message

    def escaped() -> str:
        return safe(message(), keep="\n")
    e.format_message = escaped  # type: ignore[method-assign]  # (what show() prints)


SECTIONS = (("Start", ("tour", "init", "info")),
            ("Keys and values", ("get", "put", "delete", "scan", "import", "export")),
            ("Versions", ("log", "show", "diff", "history", "restore", "revert")),
            ("Branches and tags", ("branch", "tag", "merge")),
            ("Upkeep", ("check", "stats", "retention", "gc", "compact", "upgrade", "backup",
                        "recover", "salvage")),
            ("Server", ("serve", "user", "protect", "unprotect")),
            ("Documents", ("doc",)))


class CowdbGroup(click.Group):
    """A group that turns any exception into one line on stderr (unless --debug), shows
    every error with control characters escaped, and lists its commands by topic."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        placed = set()
        for title, names in SECTIONS + (("Other", tuple(self.list_commands(ctx))),):
            rows = []
            for name in names:
                cmd = self.get_command(ctx, name)
                if cmd is None or cmd.hidden or name in placed:
                    continue
                placed.add(name)
                rows.append((name, cmd.get_short_help_str(formatter.width - 14)))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:   # the group's own options and arguments are parsed here, outside invoke
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as e:
            _escape(e)
            raise

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.ClickException as e:
            _escape(e)
            raise
        except (click.exceptions.Exit, click.Abort):
            raise
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as e:
            debug = ctx.params.get("debug") or os.environ.get("COWDB_DEBUG", "") not in ("", "0")
            if debug:
                raise
            if isinstance(e, (CowdbError, OSError, ValueError, KeyError, TypeError)):
                raise click.ClickException(_one_line(e)) from e
            raise click.ClickException(
                f"internal error: {type(e).__name__}: {_one_line(e)} (run with --debug for the "
                f"traceback, and please report it)") from e


@click.group(cls=CowdbGroup, context_settings=CONTEXT)
@click.option("--db", "db", envvar="COWDB_PATH", default="cowdb.db", show_default=True,
              show_envvar=True, metavar="PATH", help="The database file.")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="How long a write waits for another writer (default 5).")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(package_name="cowdb", prog_name="cowdb")
@click.pass_context
def cli(ctx: click.Context, db: str, timeout: float | None, debug: bool) -> None:
    """cowdb: a copy-on-write, versioned key-value store.

    Every commit is a version you can read, tag, diff and restore.

    \b
    Example:
      cowdb tour /tmp/tour.cow            # a narrated tour on a real file
      cowdb --db shop.cow init
      cowdb --db shop.cow put apple red
      export COWDB_PATH=shop.cow
      cowdb scan --prefix a
      cowdb log
    """
    if os.environ.get("NO_COLOR"):
        ctx.color = False
    ctx.obj = Env(db, debug, timeout)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cowdb`` script and ``python -m cowdb``."""
    cli.main(args=argv, prog_name="cowdb")


# importing the modules registers their commands
from . import (  # noqa: E402,F401
    commands,
    doc,
    repair,
    serve,
    tour,
    transfer,
    upkeep,
    versions,
)
