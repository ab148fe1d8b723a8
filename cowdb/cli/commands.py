"""The data and history commands: init, info, get, put, delete, scan, log, check."""
from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from itertools import islice
from typing import IO, TYPE_CHECKING, TypedDict, TypeVar

import click

from cowdb.checks import key_range

from . import engine, fmt
from .app import Env, cli, pass_env

if TYPE_CHECKING:
    from cowdb.db import Database
    from cowdb.history.commits import Commit

F = TypeVar("F", bound=Callable[..., None])   # a command function


class _Info(TypedDict):
    path: str
    file_size: int
    version: int
    head: int
    keys: int
    last_commit: str
    branches: dict[str, int]
    tags: dict[str, int]


def author_default() -> str:
    a = os.environ.get("COWDB_AUTHOR")
    if a is not None:
        return a
    try:
        return getpass.getuser()
    except Exception:
        return ""


def key_arg(s: str, escaped: bool, what: str = "KEY") -> bytes:
    """A key (or value, prefix...) typed on the command line as bytes; with --escaped, its
    backslash escapes read. ``what`` names the argument or option in an error."""
    if escaped:
        try:
            return fmt.unescape(s)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint=what) from e
    return s.encode("utf-8", "surrogateescape")


def _write_opts(f: F) -> F:
    f = click.option("--branch", "-b", default="main", show_default=True,
                     help="The branch to commit to.")(f)
    f = click.option("--author", default=None, help="The commit's author "
                     "(default: $COWDB_AUTHOR, else your login name).")(f)
    f = click.option("--message", "-m", default=None, help="The commit message.")(f)
    return f


_escaped = click.option("--escaped", "-e", is_flag=True,
                        help="Read backslash escapes (\\xNN, \\n, \\\\) in the keys given, as "
                             "scan prints them.")
_at = click.option("--at", "at", metavar="VERSION|TAG|BRANCH|TIME", default=None,
                   help="Read that version instead of the head of main (TIME: ISO 8601, "
                        "e.g. 2025-01-31T12:00, local time unless it has an offset).")


_allow_empty = click.option("--allow-empty", is_flag=True,
                            help="Make a new version even if nothing changed.")


def say_commit(branch: str, version: int | None, message: str, skipped: bool = False) -> None:
    if skipped:
        click.echo(f"nothing changed: no new version (the head of {fmt.safe(branch)} is still "
                   f"version {version}); --allow-empty commits anyway")
        return
    click.echo(f"[{fmt.safe(branch)} {version}] {fmt.safe(message)}")


# ---------------------------------------------------------------- init / info
@cli.command()
@click.argument("path", required=False)
@pass_env
def init(env: Env, path: str | None) -> None:
    """Create an empty database (version 0).

    PATH defaults to the --db path. Fails if a file is already there.

    \b
    Example:
      cowdb init shop.cow
      cowdb --db shop.cow init
    """
    path = path or env.path
    if engine.exists(path):
        raise click.ClickException(f"{path} already exists; delete it first or choose another "
                                   f"path")
    import cowdb
    cowdb.open(path).close()
    click.echo(f"created {fmt.safe(path)} (version 0, empty)")


@cli.command()
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_env
def info(env: Env, path: str | None, as_json: bool) -> None:
    """What the database holds: path, size, versions, keys, branches and tags.

    PATH defaults to the --db path.

    \b
    Example:
      cowdb info shop.cow
      cowdb --db shop.cow info --json
    """
    path = path or env.path
    with engine.open_db(path, timeout=env.timeout) as db, db.read() as snap:
        head = engine.commit(db, snap.version)
        d: _Info = {
            "path": path if engine.is_url(path) else os.path.abspath(path),
            "file_size": engine.store_bytes(db, path),
            "version": db.version,
            "head": snap.version,
            "keys": len(snap),
            "last_commit": fmt.iso(head.time),
            "branches": engine.branches(db),
            "tags": engine.tags(db),
        }
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"path:         {fmt.safe(d['path'])}")
    click.echo(f"file size:    {fmt.size(d['file_size'])}")
    click.echo(f"head of main: version {d['head']} ({d['keys']} keys, committed "
               f"{fmt.when(head.time)})")
    click.echo(f"newest:       version {d['version']}")
    br = ", ".join(f"{fmt.safe(k)} ({v})" for k, v in sorted(d["branches"].items()))
    click.echo(f"branches:     {br}")
    tg = ", ".join(f"{fmt.safe(k)} ({v})" for k, v in sorted(d["tags"].items())) or "none"
    click.echo(f"tags:         {tg}")


# ---------------------------------------------------------------- get / put / delete
@cli.command()
@click.argument("key")
@_at
@_escaped
@click.option("--raw", is_flag=True, help="Write the value's exact bytes, with no newline.")
@pass_env
def get(env: Env, key: str, at: str | None, escaped: bool, raw: bool) -> None:
    """Print the value of KEY (exit 1 if there is none).

    The value is shown as UTF-8 text, the same on a terminal and on a pipe:
    newlines and tabs as they are, other control characters escaped (\\x1b,
    \\r, \\x00) and bytes that are not UTF-8 as \\xNN, so no value can drive
    the terminal. For the exact bytes (a binary value, a copy), use --raw.

    \b
    Example:
      cowdb get apple
      cowdb get apple --at 3
      cowdb get photo --raw > photo.jpg
    """
    k = key_arg(key, escaped)
    with env.open() as db, engine.at(db, at) as snap:
        v = snap.get(k)
        if v is None:
            raise click.ClickException(f"no key '{fmt.inline(k)}' at version {snap.version}")
    if raw:
        out = sys.stdout.buffer
        out.write(v)
        out.flush()
    else:
        click.echo(fmt.text(v))


@cli.command()
@click.argument("key")
@click.argument("value", required=False)
@click.option("--file", "-f", "file", type=click.File("rb"), default=None,
              help="Read the value from this file ('-' for stdin).")
@_escaped
@_write_opts
@_allow_empty
@pass_env
def put(env: Env, key: str, value: str | None, file: IO[bytes] | None, escaped: bool,
        message: str | None, author: str | None, branch: str, allow_empty: bool) -> None:
    """Set KEY to VALUE in a new version.

    The value comes from the VALUE argument, from --file, or from standard
    input when VALUE is '-' or missing.

    \b
    Example:
      cowdb put apple red
      cowdb put apple red -m "apples are red"
      cowdb put photo --file photo.jpg
      echo -n green | cowdb put apple
    """
    k = key_arg(key, escaped)
    if file is not None and value is not None:
        raise click.UsageError("give the value as VALUE or with --file, not both")
    if file is not None:
        v = file.read()
    elif value is None or value == "-":
        stdin = sys.stdin.buffer
        if value is None and stdin.isatty():
            raise click.UsageError("give a VALUE, --file PATH, or pipe the value on stdin")
        v = stdin.read()
    else:
        v = key_arg(value, escaped, "VALUE")
    message = f"put {fmt.inline(k)}" if message is None else message
    with env.open(write=True) as db:
        with db.write(message=message, author=author_default() if author is None else author,
                      branch=branch, allow_empty=allow_empty) as tx:
            tx[k] = v
    say_commit(branch, tx.version, message, tx.skipped)


@cli.command()
@click.argument("keys", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Do not fail when a key is missing.")
@_escaped
@_write_opts
@pass_env
def delete(env: Env, keys: tuple[str, ...], force: bool, escaped: bool, message: str | None,
           author: str | None, branch: str) -> None:
    """Delete one or more KEYS in a new version.

    Fails, changing nothing, if a key is missing (unless --force).

    \b
    Example:
      cowdb delete apple
      cowdb delete apple banana -m "no more fruit"
    """
    ks = [key_arg(k, escaped) for k in keys]
    message = f"delete {' '.join(fmt.inline(k) for k in ks)}" if message is None else message
    with env.open(write=True) as db:
        tx = db.write(message=message, author=author_default() if author is None else author,
                      branch=branch)
        with tx:
            gone = [k for k in ks if not tx.delete(k)]
            if gone and not force:
                tx.abort()
                raise click.ClickException(
                    f"no key '{fmt.inline(gone[0])}' on {branch}; nothing was deleted "
                    f"(--force ignores missing keys)")
            if len(gone) == len(ks):
                tx.abort()
                click.echo("nothing to delete")
                return
    say_commit(branch, tx.version, message)


# ---------------------------------------------------------------- scan
@cli.command()
@click.option("--prefix", "-p", default=None, help="Only keys that start with this.")
@click.option("--start", default=None, help="Only keys >= START.")
@click.option("--stop", default=None, help="Only keys < STOP.")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=None,
              help="At most this many keys.")
@click.option("--reverse", "-r", is_flag=True, help="In descending key order.")
@click.option("--keys-only", "-k", is_flag=True, help="Print keys only.")
@click.option("--count", "-c", "count_only", is_flag=True,
              help="Print how many keys match, in O(log n).")
@_at
@_escaped
@pass_env
def scan(env: Env, prefix: str | None, start: str | None, stop: str | None, limit: int | None,
         reverse: bool, keys_only: bool, count_only: bool, at: str | None,
         escaped: bool) -> None:
    """List keys and values in key order, one 'KEY<TAB>VALUE' line each.

    Keys and values are printed on one line each: a backslash, control
    characters and bytes that are not UTF-8 are escaped (\\\\, \\n, \\t, \\xNN);
    pass such a key back with --escaped.

    \b
    Example:
      cowdb scan
      cowdb scan --prefix user: --limit 10
      cowdb scan --start a --stop c --reverse
      cowdb scan --at v1.0 --keys-only
    """
    def conv(s: str | None, what: str) -> bytes | None:
        return None if s is None else key_arg(s, escaped, what)
    p, lo, hi = conv(prefix, "'--prefix'"), conv(start, "'--start'"), conv(stop, "'--stop'")
    if p == b"":
        p = None
    with env.open() as db, engine.at(db, at) as snap:
        if count_only:
            lo, hi = key_range(lo, hi, p)  # the prefix as a range: O(log n) too
            n = 0 if lo is not None and hi is not None and lo >= hi else snap.count(lo, hi)
            click.echo(n if limit is None else min(n, limit))
            return
        write = sys.stdout.write
        items = snap.items(lo, hi, prefix=p, reverse=reverse)
        for k, v in items if limit is None else islice(items, limit):
            write(f"{fmt.inline(k)}\n" if keys_only else f"{fmt.inline(k)}\t{fmt.inline(v)}\n")


# ---------------------------------------------------------------- log
def _commit_json(c: Commit) -> dict[str, object]:
    return {"version": c.version, "time": fmt.iso(c.time), "message": c.message,
            "author": c.author, "parents": list(c.parents)}


def _decorations(db: Database) -> dict[int, list[str]]:
    deco: dict[int, list[str]] = {}
    for name, v in sorted(engine.branches(db).items()):
        deco.setdefault(v, []).append(fmt.safe(name))
    for name, v in sorted(engine.tags(db).items()):
        deco.setdefault(v, []).append(f"tag: {fmt.safe(name)}")
    return deco


@cli.command()
@click.option("--limit", "-n", type=click.IntRange(min=0), default=None,
              help="Show at most this many versions.")
@click.option("--branch", "-b", default="main", show_default=True,
              help="Follow this branch's history.")
@click.option("--all", "-a", "all_", is_flag=True,
              help="Every version of every branch, newest first.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of commits (version, time, message, author, parents).")
@pass_env
def log(env: Env, limit: int | None, branch: str, all_: bool, as_json: bool) -> None:
    """One line per version, newest first, like `git log --oneline`.

    Each line: version, commit time (local), message, author, and the
    branches and tags that point at it.

    \b
    Example:
      cowdb log
      cowdb log -n 5 --branch feature
      cowdb log --all
      cowdb log --json | jq '.[0].version'
    """
    with env.open() as db:
        if all_:
            commits = engine.log_all(db, limit)
        else:
            commits = engine.log(db, limit=limit, branch=branch)
        if as_json:
            click.echo(fmt.json_text([_commit_json(c) for c in commits], indent=2))
            return
        deco = _decorations(db)
        for c in commits:
            line = click.style(f"{c.version:>4}", fg="yellow") + f"  {fmt.when(c.time)}  "
            line += fmt.safe(c.message) or click.style("(no message)", dim=True)
            if c.author:
                line += click.style(f"  <{fmt.safe(c.author)}>", dim=True)
            if c.version in deco:
                line += " " + click.style(f"({', '.join(deco[c.version])})", fg="cyan")
            click.echo(line)


# ---------------------------------------------------------------- check
@cli.command()
@click.argument("path", required=False)
@pass_env
def check(env: Env, path: str | None) -> None:
    """Verify every page of every kept version; exit 1 if anything is wrong.

    PATH defaults to the --db path. Prints a summary, and one line per
    problem.

    \b
    Example:
      cowdb check shop.cow && echo healthy
    """
    path = path or env.path
    with engine.open_db(path, timeout=env.timeout) as db:
        r = db.check()
    summary = (f"{r.versions} versions, {r.pages} pages in use, {r.free_pages} free, "
               f"{r.page_count} in the file")
    if r.ok:
        click.echo(f"ok: {summary}")
        return
    click.echo(f"damaged: {summary}")
    for e in r.errors:
        click.echo(f"problem: {fmt.safe(str(e))}")
    raise click.ClickException(f"{len(r.errors)} problem(s) found in {path}")
