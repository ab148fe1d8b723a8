"""The server commands: serve, user add/list/remove, protect, unprotect."""
from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from . import fmt
from .app import Env, cli, pass_env

if TYPE_CHECKING:
    from cowdb.server.accounts import Accounts

T = TypeVar("T")


def _need_server() -> None:
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise click.ClickException(f"the server needs its extra ({e.name} is missing): "
                                   f"python3 -m pip install 'cowdb[server]'") from None


def _accounts(env: Env) -> Accounts:
    from cowdb.server.accounts import Accounts, accounts_path

    from . import engine
    if engine.is_url(env.path):
        # a bucket is no place for secrets: a database at a URL keeps its accounts in a
        # local file named by COWDB_ACCOUNTS (the same file `cowdb serve --accounts` reads)
        path = os.environ.get("COWDB_ACCOUNTS")
        if not path:
            raise click.ClickException(
                f"{env.path} is a URL: its accounts live in a local file; set COWDB_ACCOUNTS="
                f"FILE here, and serve with `cowdb serve {shlex.quote(env.path)} --accounts FILE`")
        return Accounts(path)
    if not os.path.exists(env.path):
        raise engine.no_database(env.path)
    return Accounts(accounts_path(env.path))


def _change(env: Env, change: Callable[[Accounts], T]) -> T:
    """``change(accounts)``; an AccountError (no such account, a bad name...) becomes the
    command's one-line error."""
    from cowdb.server.accounts import AccountError
    try:
        return change(_accounts(env))
    except AccountError as e:
        raise click.ClickException(str(e)) from None


@cli.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to bind. Any address but loopback needs accounts.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-body", default=16 * 1024 * 1024, show_default=True, type=int,
              help="The largest request body accepted, in bytes (larger: 413).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--accounts", "accounts_file", envvar="COWDB_ACCOUNTS", default=None,
              type=click.Path(dir_okay=False), metavar="FILE",
              help="The accounts file (default: PATH-accounts.json beside a database file; "
                   "none for a URL, which then serves open on loopback only).")
@pass_env
def serve(env: Env, path: str | None, host: str, port: int, max_body: int, log_level: str,
          accounts_file: str | None) -> None:
    """Serve the database over HTTP: a JSON API under /api/v1 and a web UI.

    PATH defaults to --db. With no account (see `cowdb user add`) the server
    runs open for the local user, and only on 127.0.0.1.

    \b
    Example:
      cowdb serve shop.cow                   # http://127.0.0.1:8000
      cowdb --db shop.cow user add ann --role admin
      cowdb serve shop.cow --host 0.0.0.0 --port 8080
      cowdb serve s3://bucket/shop --accounts shop-accounts.json   # AWS_* variables
    """
    _need_server()
    import logging

    import uvicorn

    from cowdb.server.accounts import Accounts
    from cowdb.server.app import Refused, create_app

    from . import engine
    path = path or env.path
    if not engine.is_url(path) and not os.path.exists(path):
        import cowdb
        cowdb.open(path).close()
        click.echo(f"created {fmt.safe(path)}", err=True)
    try:
        app = create_app(path, host=host, max_body=max_body,
                         timeout=30.0 if env.timeout is None else env.timeout,
                         accounts=Accounts(accounts_file) if accounts_file else None)
    except Refused as e:
        raise click.ClickException(str(e)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = app.state.server
    mode = "open (no accounts: everyone on this machine is the local admin)" \
        if server.open_mode else f"{len(server.accounts.list())} accounts"
    click.echo(f"cowdb serving {fmt.safe(path)} on http://{fmt.safe(host)}:{port}  [{mode}]",
               err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=2)


@cli.group()
def user() -> None:
    """Accounts of `cowdb serve`: add (prints the token once), list, remove.

    Kept hashed in PATH-accounts.json beside the database, never in its keys.

    \b
    Example:
      cowdb --db shop.cow user add ann --role admin
      cowdb --db shop.cow user list
      cowdb --db shop.cow user remove ann
    """


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["reader", "writer", "admin"]), default="reader",
              show_default=True, help="reader reads; writer writes unprotected branches; "
                                      "admin also protected ones, merges, gc, users.")
@pass_env
def user_add(env: Env, name: str, role: str) -> None:
    """Add an account and print its token (shown this once; only a hash is kept)."""
    token = _change(env, lambda accounts: accounts.add(name, role))
    click.echo(token)
    click.echo(f"account '{fmt.safe(name)}' ({role}) added; the token above is shown only now",
               err=True)


@user.command("list")
@pass_env
def user_list(env: Env) -> None:
    """List the accounts and their roles."""
    for a in _accounts(env).list():
        click.echo(f"{fmt.safe(a.name)}\t{a.role}")


@user.command("remove")
@click.argument("name")
@pass_env
def user_remove(env: Env, name: str) -> None:
    """Remove an account: its token stops working at once."""
    _change(env, lambda accounts: accounts.remove(name))
    click.echo(f"account '{fmt.safe(name)}' removed")


@cli.command()
@click.argument("branch")
@pass_env
def protect(env: Env, branch: str) -> None:
    """Protect a branch: only admins may write it or merge into it over HTTP.

    \b
    Example:
      cowdb --db shop.cow protect main
    """
    _accounts(env).protect(branch)
    click.echo(f"branch '{fmt.safe(branch)}' is protected")


@cli.command()
@click.argument("branch")
@pass_env
def unprotect(env: Env, branch: str) -> None:
    """Let writers write to a branch again.

    \b
    Example:
      cowdb --db shop.cow unprotect main
    """
    _change(env, lambda accounts: accounts.unprotect(branch))
    click.echo(f"branch '{fmt.safe(branch)}' is no longer protected")
