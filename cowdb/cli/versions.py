"""The version commands: show, diff, history, tag, branch, restore, merge, revert
(retention, gc, stats and compact are in upkeep.py)."""
from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal, TypeVar

import click

from cowdb.errors import MergeConflict, RefExists

from . import engine, fmt
from .app import Env, cli, pass_env
from .commands import _allow_empty, _commit_json, _escaped, author_default, key_arg, say_commit

if TYPE_CHECKING:
    from cowdb.db import Database

_author = click.option("--author", default=None, help="The commit's author "
                       "(default: $COWDB_AUTHOR, else your login name).")


def _who(author: str | None) -> str:
    return author_default() if author is None else author

F = TypeVar("F", bound=Callable[..., None])   # a command function
Side = Literal["ours", "theirs"] | None        # what --resolve settles conflicts with


def _change_list(json_help: str) -> Callable[[F], F]:
    """The options of the commands that list changes (show, diff): --stat, --limit, --json."""
    def add(f: F) -> F:
        f = click.option("--json", "as_json", is_flag=True, help=json_help)(f)
        f = click.option("--limit", "-n", type=click.IntRange(min=0), default=None,
                         help="List at most this many changes.")(f)
        return click.option("--stat", is_flag=True, help="Only count the changes.")(f)
    return add


# ---------------------------------------------------------------- change lists
def _change_json(k: bytes, old: bytes | None, new: bytes | None) -> dict[str, object]:
    return {"key": fmt.jvalue(k), "old": fmt.jvalue(old), "new": fmt.jvalue(new)}


def _echo_change(k: bytes, old: bytes | None, new: bytes | None) -> None:
    key = fmt.inline(k)
    if old is None:
        assert new is not None   # a key absent on both sides is no change
        click.echo(click.style(f"A {key}\t{fmt.inline(new)}", fg="green"))
    elif new is None:
        click.echo(click.style(f"D {key}\t{fmt.inline(old)}", fg="red"))
    else:
        click.echo(click.style("M ", fg="yellow") + f"{key}\t" +
                   click.style(fmt.inline(old), fg="red") + " -> " +
                   click.style(fmt.inline(new), fg="green"))


def _stat_line(added: int, deleted: int, modified: int) -> str:
    n = added + deleted + modified
    return (f"{n} key{'s' if n != 1 else ''} changed: {added} added, {deleted} deleted, "
            f"{modified} modified")


def _print_changes(changes: Iterable[engine.Change], stat: bool,
                   limit: int | None) -> tuple[int, int, int]:
    counts = [0, 0, 0]
    shown = 0
    for k, old, new in changes:
        counts[0 if old is None else 1 if new is None else 2] += 1
        if not stat and (limit is None or shown < limit):
            _echo_change(k, old, new)
            shown += 1
    total = sum(counts)
    if not stat and limit is not None and total > shown:
        click.echo(click.style(f"... and {total - shown} more (see --limit)", dim=True))
    return counts[0], counts[1], counts[2]


# ---------------------------------------------------------------- show
@cli.command()
@click.argument("ref", metavar="[VERSION]", default="main")
@_change_list("Print a JSON object: the commit and its changes.")
@pass_env
def show(env: Env, ref: str, stat: bool, limit: int | None, as_json: bool) -> None:
    """A version's commit record and its changes against its first parent.

    VERSION is a version number, tag, branch or time (default: main).

    \b
    Example:
      cowdb show 3
      cowdb show v1.0 --stat
      cowdb show 3 --json
    """
    with env.open() as db:
        c = engine.commit(db, fmt.ref(ref))
        parent = c.parents[0] if c.parents else None
        if parent is None:
            changes_cm = None
        else:
            changes_cm = engine.diff(db, parent, c.version)
        if as_json:
            d = _commit_json(c)
            d["branch"] = c.branch
            if changes_cm is None:
                d["changes"] = []
            else:
                with changes_cm as ch:
                    d["changes"] = [_change_json(*x) for x in ch]
            click.echo(fmt.json_text(d, indent=2))
            return
        deco = [fmt.safe(n) for n, v in engine.branches(db).items() if v == c.version]
        deco += [f"tag: {fmt.safe(n)}" for n, v in engine.tags(db).items() if v == c.version]
        title = click.style(f"version {c.version}", fg="yellow")
        if deco:
            title += " " + click.style(f"({', '.join(sorted(deco))})", fg="cyan")
        click.echo(title)
        if len(c.parents) > 1:
            click.echo(f"Merge:   {' '.join(map(str, c.parents))}")
        elif c.parents:
            click.echo(f"Parent:  {c.parents[0]}")
        click.echo(f"Branch:  {fmt.safe(c.branch)}")
        if c.author:
            click.echo(f"Author:  {fmt.safe(c.author)}")
        click.echo(f"Date:    {fmt.when(c.time)} ({fmt.iso(c.time)})")
        st = c.stats
        click.echo(f"Wrote:   {st.keys_put} puts, {st.keys_deleted} deletes, "
                   f"{st.pages_written} pages ({fmt.size(st.bytes_written)})")
        click.echo()
        click.echo(f"    {fmt.safe(c.message) or '(no message)'}")
        click.echo()
        if changes_cm is None:
            click.echo("(the first version: no parent to compare with)")
            return
        with changes_cm as ch:
            counts = _print_changes(ch, stat, limit)
        if stat or sum(counts) == 0 or limit is not None:
            click.echo(_stat_line(*counts))


# ---------------------------------------------------------------- diff
@cli.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="[B]", default="main")
@click.option("--prefix", "-p", default=None, help="Only keys that start with this.")
@_change_list('Print a JSON array of {"key", "old", "new"} (null: absent).')
@_escaped
@pass_env
def diff(env: Env, a: str, b: str, prefix: str | None, stat: bool, limit: int | None,
         as_json: bool, escaped: bool) -> None:
    """The keys whose values differ from version A to version B (default: main).

    One line per key, in key order: 'A KEY<TAB>VALUE' added, 'D KEY<TAB>VALUE'
    deleted, 'M KEY<TAB>OLD -> NEW' modified. A and B are version numbers,
    tags, branches or times. Only the pages that differ are read.

    \b
    Example:
      cowdb diff 3 5
      cowdb diff v1.0 main --stat
      cowdb diff main feature --json
    """
    p = None if prefix is None else key_arg(prefix, escaped, "'--prefix'")
    with env.open() as db:
        with engine.diff(db, fmt.ref(a), fmt.ref(b), prefix=p) as changes:
            if as_json:
                out = sys.stdout
                out.write("[")
                n = 0
                for ch in changes:
                    if limit is not None and n >= limit:
                        break
                    out.write(("," if n else "") + "\n  " +
                              fmt.json_text(_change_json(*ch)))
                    n += 1
                out.write("\n]\n" if n else "]\n")
                return
            counts = _print_changes(changes, stat, limit)
    if stat:
        click.echo(_stat_line(*counts))


# ---------------------------------------------------------------- history
@cli.command()
@click.argument("key")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=None,
              help="Show at most this many changes.")
@click.option("--branch", "-b", default="main", show_default=True)
@_escaped
@pass_env
def history(env: Env, key: str, limit: int | None, branch: str, escaped: bool) -> None:
    """The versions where KEY changed, newest first, with the value it got.

    '(deleted)' marks a version that removed it.

    \b
    Example:
      cowdb history apple
      cowdb history user:42 -n 5
    """
    k = key_arg(key, escaped)
    with env.open() as db:
        for v, t, value in db.history(k, limit=limit, branch=branch):
            shown = click.style("(deleted)", fg="red") if value is None else fmt.inline(value)
            click.echo(click.style(f"{v:>4}", fg="yellow") + f"  {fmt.when(t)}  {shown}")


# ---------------------------------------------------------------- refs
def _list_refs(refs: dict[str, int], as_json: bool, current: str | None = None) -> None:
    if as_json:
        click.echo(fmt.json_text(dict(sorted(refs.items())), indent=2))
        return
    width = max((len(n) for n in refs), default=0)
    for name, v in sorted(refs.items()):
        mark = "* " if name == current else "  " if current is not None else ""
        click.echo(f"{mark}{fmt.safe(name):<{width}}  {v}")


def _ref_command(env: Env, kind: str, name: str | None, at: str | None, delete: bool,
                 as_json: bool) -> None:
    """List, create or delete a branch or a tag (kind)."""
    if name is None:
        if delete or at:
            raise click.UsageError(f"give the NAME of the {kind}")
        with env.open() as db:
            refs = engine.branches(db) if kind == "branch" else engine.tags(db)
            _list_refs(refs, as_json, current="main" if kind == "branch" else None)
        return
    if delete and at:
        raise click.UsageError("--at and --delete do not go together")
    with env.open(write=True) as db:
        if delete:
            refs = engine.branches(db) if kind == "branch" else engine.tags(db)
            (db.delete_branch if kind == "branch" else db.delete_tag)(name)
            click.echo(f"deleted {kind} '{fmt.safe(name)}' (was at version {refs.get(name)})")
        else:
            try:
                v = (db.branch if kind == "branch" else db.tag)(name, None if at is None
                                                                else fmt.ref(at))
            except RefExists as e:
                raise click.ClickException(_taken(db, kind, name)) from e
            click.echo(f"created {kind} '{fmt.safe(name)}' at version {v}")


def _taken(db: Database, kind: str, name: str) -> str:
    """Why NAME cannot name a new ``kind`` (tag or branch), and what to do instead. (The
    engine's message says "tags never move" for a branch too, and names db.tags().)"""
    other = "tag" if name in engine.tags(db) else "branch"
    why = ("tags and branches share one namespace" if other != kind else
           "tags never move" if kind == "tag" else "")
    said = f"a {other} named '{fmt.safe(name)}' exists" + (f" ({why})" if why else "")
    if other == "branch" and name == "main":
        return f"{said}; choose another name (main cannot be deleted)"
    it = "it" if other == kind else f"the {other}"
    return (f"{said}; choose another name, or delete {it} first with "
            f"`cowdb {other} -d {shlex.quote(name)}`")


def _ref_command_of(kind: str,
                    at_help: str) -> Callable[[Callable[..., None]], click.Command]:
    """The command line of ``cowdb branch`` and ``cowdb tag``: [NAME] [--at] [-d] [--json]."""
    def command(f: Callable[..., None]) -> click.Command:
        g = pass_env(f)
        g = click.option("--json", "as_json", is_flag=True,
                         help="List as a JSON object name -> version.")(g)
        g = click.option("--delete", "-d", "delete", is_flag=True,
                         help=f"Delete {kind} NAME.")(g)
        g = click.option("--at", "at", metavar="VERSION|TAG|BRANCH|TIME", default=None,
                         help=at_help)(g)
        g = click.argument("name", required=False)(g)
        return cli.command()(g)
    return command


@_ref_command_of("branch", "Where the new branch starts (default: the head of main).")
def branch(env: Env, name: str | None, at: str | None, delete: bool, as_json: bool) -> None:
    """List branches, or create or delete branch NAME.

    Without NAME: one line per branch and the version at its head. With
    NAME: start the branch at the head of main (or --at). Branching is O(1).

    \b
    Example:
      cowdb branch                      # list
      cowdb branch feature              # create at the head of main
      cowdb branch hotfix --at v1.0
      cowdb branch -d feature
      cowdb put k v --branch feature    # commit to it
    """
    _ref_command(env, "branch", name, at, delete, as_json)


@_ref_command_of("tag", "The version to tag (default: the head of main).")
def tag(env: Env, name: str | None, at: str | None, delete: bool, as_json: bool) -> None:
    """List tags, or create or delete tag NAME.

    A tag names one version for good: it never moves, and gc keeps the
    version it names.

    \b
    Example:
      cowdb tag                         # list
      cowdb tag v1.0                    # tag the head of main
      cowdb tag before-import --at 41
      cowdb tag -d v1.0
    """
    _ref_command(env, "tag", name, at, delete, as_json)


# ---------------------------------------------------------------- restore / merge / revert
@cli.command()
@click.argument("ref", metavar="VERSION")
@click.option("--branch", "-b", default="main", show_default=True,
              help="The branch that gets the restored content.")
@click.option("--message", "-m", default=None, help="The commit message.")
@_author
@pass_env
def restore(env: Env, ref: str, branch: str, message: str | None, author: str | None) -> None:
    """Commit a new version whose content is exactly VERSION's.

    History is kept: the versions in between stay readable. O(1): the new
    version shares VERSION's pages.

    \b
    Example:
      cowdb restore 3
      cowdb restore before-import -m "undo the import"
    """
    with env.open(write=True) as db:
        v = db.restore(fmt.ref(ref), message=message, branch=branch, author=_who(author))
        msg = engine.commit(db, v).message
    say_commit(branch, v, msg)


def _conflicts(e: MergeConflict) -> None:
    for c in e.conflicts:
        click.echo(f"conflict: {fmt.inline(c.key)}\tbase={_opt(c.base)} ours={_opt(c.ours)} "
                   f"theirs={_opt(c.theirs)}", err=True)
    raise click.ClickException(
        f"{len(e.conflicts)} conflicting key(s); nothing was committed (--resolve ours|theirs "
        f"settles them)")


def _opt(b: bytes | None) -> str:
    return "(absent)" if b is None else fmt.inline(b)


_resolve = click.option("--resolve", type=click.Choice(["ours", "theirs"]), default=None,
                        help="Settle conflicting keys with our side or theirs.")


@cli.command()
@click.argument("source", metavar="SRC")
@click.option("--into", "into", default="main", show_default=True, metavar="DST",
              help="The branch that receives the changes.")
@_resolve
@click.option("--message", "-m", default=None, help="The merge commit's message.")
@_author
@pass_env
def merge(env: Env, source: str, into: str, resolve: Side, message: str | None,
          author: str | None) -> None:
    """Three-way merge of branch SRC into branch DST.

    Conflicts (a key changed differently on both sides) are listed on
    stderr and nothing is committed (exit 1), unless --resolve.

    \b
    Example:
      cowdb merge feature --into main
      cowdb merge feature --resolve theirs
    """
    with env.open(write=True) as db:
        before = engine.branches(db).get(into)
        try:
            v = db.merge(source, into=into, resolve=resolve, message=message,
                         author=_who(author))
        except MergeConflict as e:
            _conflicts(e)
        c = engine.commit(db, v)
    if v == before:
        click.echo(f"already up to date: {fmt.safe(into)} has every change of "
                   f"{fmt.safe(source)}")
    elif len(c.parents) < 2:
        click.echo(f"fast-forward: {fmt.safe(into)} is now at version {v}")
    else:
        say_commit(into, v, c.message)


@cli.command()
@click.argument("ref", metavar="VERSION")
@click.option("--branch", "-b", default="main", show_default=True,
              help="The branch that gets the revert commit.")
@_resolve
@click.option("--message", "-m", default=None, help="The commit message.")
@_author
@_allow_empty
@pass_env
def revert(env: Env, ref: str, branch: str, resolve: Side, message: str | None,
           author: str | None, allow_empty: bool) -> None:
    """Commit the inverse of exactly VERSION's changes.

    A key that a later commit changed again is a conflict: listed, nothing
    committed, exit 1 (unless --resolve).

    \b
    Example:
      cowdb revert 7
      cowdb revert 7 --resolve theirs
    """
    with env.open(write=True) as db:
        before = db.head(branch)
        try:
            v = db.revert(fmt.ref(ref), branch=branch, resolve=resolve, message=message,
                          author=_who(author), allow_empty=allow_empty)
        except MergeConflict as e:
            _conflicts(e)
        msg = engine.commit(db, v).message
    say_commit(branch, v, msg, skipped=v == before)
