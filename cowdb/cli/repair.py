"""The repair and copy commands: recover, salvage, backup."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

import cowdb
from cowdb.recovery import salvage as salvage_file

from . import engine, fmt
from .app import Env, cli, pass_env

if TYPE_CHECKING:
    from cowdb.recovery import RecoveryReport



def _say_report(rep: RecoveryReport) -> None:
    for line in rep.lines():
        click.echo(fmt.safe(line))


@contextmanager
def _report_said_here() -> Iterator[None]:
    """The library logs its recovery report, for programs that do not show it; `cowdb
    recover` prints it: without a handler, Python's last resort printed it again."""
    log = logging.getLogger("cowdb")
    here = logging.NullHandler()
    log.addHandler(here)
    try:
        yield
    finally:
        log.removeHandler(here)


@cli.command()
@click.argument("path", required=False)
@pass_env
def recover(env: Env, path: str | None) -> None:
    """Open a damaged database at its newest intact version, in place.

    Every version whose whole tree still verifies is kept; branch heads of
    lost versions move back to their newest intact ancestor; tags of lost
    versions are dropped; the free list is rebuilt. Prints what was lost.
    PATH defaults to the --db path. To keep the damaged file as it is, use
    `cowdb salvage` instead.

    \b
    Example:
      cowdb recover shop.cow
    """
    path = path or env.path
    if not os.path.exists(path):
        raise click.ClickException(f"no database at {path}")
    kw: dict[str, Any] = {} if env.timeout is None else {"timeout": env.timeout}
    with engine.about(path), _report_said_here(), cowdb.open(path, recover=True, **kw) as db:
        rep = db.recovery
        assert rep is not None  # open(recover=True) reports
        if not rep.rewritten:
            click.echo(f"ok: {fmt.safe(path)} is not damaged; nothing to recover (head of main: "
                       f"version {db.head()})")
            return
        _say_report(rep)


@cli.command()
@click.argument("src")
@click.argument("dest")
@click.option("--partial", is_flag=True,
              help="Also copy what still reads of each branch head that does not verify.")
def salvage(src: str, dest: str, partial: bool) -> None:
    """Copy every version, branch and tag of SRC that still verifies into DEST.

    SRC is only read. DEST must not exist. Prints what could not be read.
    With --partial, each branch whose head does not verify gets one more
    version in DEST holding every key of that head whose pages still verify,
    and the key ranges that did not read are printed. Run it before `cowdb
    recover`, which frees the pages of the versions it drops.

    \b
    Example:
      cowdb salvage damaged.cow rescued.cow
      cowdb salvage --partial damaged.cow rescued.cow
    """
    if not os.path.exists(src):
        raise click.ClickException(f"no database at {src}")
    with engine.about(src):
        rep = salvage_file(src, dest, partial=partial)
    _say_report(rep)
    click.echo(f"salvaged {len(rep.kept)} versions into {fmt.safe(dest)} (head of main: version "
               f"{rep.head})")


@cli.command()
@click.argument("src")
@click.argument("dest")
@pass_env
def backup(env: Env, src: str, dest: str) -> None:
    """Copy a database, even while it is being written, to DEST (a new file).

    The copy is consistent: the newest state with every version, branch and
    tag. Never copy a live database with cp.

    \b
    Example:
      cowdb backup shop.cow shop-backup.cow
    """
    if not os.path.exists(src):
        raise click.ClickException(f"no database at {src}")
    with engine.about(src), cowdb.open(src, readonly=True) as db:
        v = db.backup(dest)
    click.echo(f"backed up {fmt.safe(src)} to {fmt.safe(dest)} (newest version {v})")
