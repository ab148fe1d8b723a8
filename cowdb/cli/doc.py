"""``cowdb doc``: the documents of cowdb.documents from the command line.

    cowdb doc log NAME                  the revisions, newest first
    cowdb doc show NAME --at REV        the text at a revision (number, tag, time)
    cowdb doc diff NAME REV [REV2]      what a revision changed, or REV -> REV2
    cowdb doc blame NAME                each paragraph with the revision that last changed it
    cowdb doc revert-author NAME ACCOUNT --since TIME [--apply]
"""
from __future__ import annotations

import getpass
import json
from datetime import datetime

import click

from cowdb.documents import Document
from cowdb.documents.revert import span_back

from . import fmt
from .app import Env, cli, pass_env


def _since(ctx: click.Context, param: click.Parameter, s: str | None) -> datetime | None:
    """An option's callback: an ISO time, or a span back from now: 30m, 2h, 7d. Click
    names the option in the error of a bad one."""
    if s is None:
        return None
    t = span_back(s) or fmt.parse_time(s)
    if t is None:
        raise click.BadParameter(f"{s!r} is not a time: give an ISO time "
                                 f"(2026-12-05T09:00Z) or a span like 2h or 7d")
    return t


def _text(text: str) -> str:
    """A document's text as text: newlines and tabs kept, other controls escaped."""
    return fmt.safe(text, keep="\n\t")


def _rev(s: str | None) -> int | datetime | str | None:
    if s is None:
        return None
    r = fmt.ref(s)
    return r


def _short(text: str | None, n: int = 70) -> str:
    """One line of at most n characters, control characters escaped."""
    if text is None:
        return "-"
    t = fmt.safe(" ".join(text.split()))
    return t if len(t) <= n else t[:n - 1] + "…"


@cli.group()
def doc() -> None:
    """Shared documents: revisions, blame, revert an author (see docs/documents.md).

    \b
    Example:
      cowdb doc log handbook
      cowdb doc blame handbook
      cowdb doc revert-author handbook mallory --since 2h          # the preview
      cowdb doc revert-author handbook mallory --since 2h --apply  # do it
    """


@doc.command("log")
@click.argument("name")
@click.option("-n", "--limit", type=int, default=None, help="Show at most N revisions.")
@click.option("--author", default=None, help="Only this account's revisions.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_env
def doc_log(env: Env, name: str, limit: int | None, author: str | None,
            as_json: bool) -> None:
    """The revisions of document NAME, newest first: number, time, author, size, summary.

    \b
    Example:
      cowdb doc log handbook -n 20 --author mallory
    """
    with env.open() as db:
        revs = Document(db, name).revisions(limit=limit, author=author)
    if as_json:
        click.echo(json.dumps([r.as_json(fmt.iso) for r in revs], indent=2))
        return
    if not revs:
        click.echo(f"document {name!r} has no revisions")
    for r in revs:
        mark = " [hidden]" if r.hidden else ""
        merged = f" (merged onto {r.parent}, based on {r.base})" if r.merged else ""
        click.echo(f"{r.number:>6}  {fmt.when(r.time)}  {fmt.safe(r.author):<12} "
                   f"{r.bytes_changed:>6} B  {fmt.safe(r.op)}: {fmt.safe(r.summary)}{merged}"
                   f"{mark}")


@doc.command("show")
@click.argument("name")
@click.option("--at", "at", default=None, metavar="REV",
              help="A revision number, a tag of the document, or a time (default: head).")
@click.option("--blocks", is_flag=True, help="Prefix each paragraph with its block id.")
@pass_env
def doc_show(env: Env, name: str, at: str | None, blocks: bool) -> None:
    """Print document NAME's text at a revision.

    \b
    Example:
      cowdb doc show handbook --at 41
      cowdb doc show handbook --at 2026-12-05T09:00Z --blocks
    """
    with env.open() as db:
        d = Document(db, name)
        if blocks:
            for b in d.blocks(_rev(at)):
                click.echo(f"[{fmt.safe(b.id)}] {_text(b.text)}")
        else:
            click.echo(_text(d.text(_rev(at))))


@doc.command("diff")
@click.argument("name")
@click.argument("rev")
@click.argument("rev2", required=False)
@pass_env
def doc_diff(env: Env, name: str, rev: str, rev2: str | None) -> None:
    """What revision REV changed, or the changes from REV to REV2, word by word.

    \b
    Example:
      cowdb doc diff handbook 42        # what revision 42 changed
      cowdb doc diff handbook 12 42
    """
    with env.open() as db:
        changes = Document(db, name).diff(_rev(rev), _rev(rev2) if rev2 else None)
    for c in changes:
        head = {"added": "A", "deleted": "D", "modified": "M"}[c.kind]
        out = []
        for op, t in c.segments:
            t = _text(t)
            if op == "=":
                out.append(t)
            elif op == "-":
                out.append(click.style(f"[-{t}-]", fg="red"))
            else:
                out.append(click.style(f"{{+{t}+}}", fg="green"))
        click.echo(f"{head} {fmt.safe(c.block)}  " + "".join(out))


@doc.command("blame")
@click.argument("name")
@click.option("--at", "at", default=None, metavar="REV", help="Blame this revision.")
@pass_env
def doc_blame(env: Env, name: str, at: str | None) -> None:
    """Each paragraph with the revision and author that last changed it.

    \b
    Example:
      cowdb doc blame handbook | grep mallory
    """
    with env.open() as db:
        lines = Document(db, name).blame(_rev(at))
    for b in lines:
        click.echo(f"{b.revision:>6} {fmt.safe(b.author):<12} {fmt.when(b.time)}  "
                   f"{_short(b.text)}")


@doc.command("revert-author")
@click.argument("name")
@click.argument("account")
@click.option("--since", "since", callback=_since, required=True, metavar="TIME",
              help="Revert ACCOUNT's revisions at or after this time (ISO, or 2h, 7d).")
@click.option("--until", "until", callback=_since, default=None, metavar="TIME",
              help="... and at or before this.")
@click.option("--apply", "apply_", is_flag=True,
              help="Write the revert (without it: only the preview).")
@click.option("--author", default=None, help="Who reverts (default: the login name).")
@pass_env
def doc_revert_author(env: Env, name: str, account: str, since: datetime,
                      until: datetime | None, apply_: bool, author: str | None) -> None:
    """Undo everything ACCOUNT changed in NAME since TIME, keeping everyone else's work.

    \b
    Blocks ACCOUNT edited go back; blocks ACCOUNT deleted come back in place; blocks
    ACCOUNT inserted go away; a block someone else changed later keeps that change and
    is listed. Prints the preview; --apply writes it as one revision.

    \b
    Example:
      cowdb doc revert-author handbook mallory --since 2026-12-05T08:00Z
      cowdb doc revert-author handbook mallory --since 2026-12-05T08:00Z --apply
    """
    with env.open(write=apply_) as db:
        d = Document(db, name)
        plan = d.revert_author(account, since, until)
        click.echo(fmt.safe(plan.summary()))
        sign = {"reverted": "M", "restored": "+", "removed": "-"}
        for c in plan.changes:
            click.echo(f"  {sign[c.kind]} {fmt.safe(c.block)}  {_short(c.current, 35)} -> "
                       f"{_short(c.target, 35)}")
        for k in plan.kept:
            who = ", ".join(f"{fmt.safe(a)} in {r}" for r, a in k.later)
            click.echo(f"  = {fmt.safe(k.block)}  kept: changed later by {who}")
        if not apply_:
            if plan.changes:
                click.echo("preview only: add --apply to write it")
            return
        r = plan.apply(author=author or getpass.getuser())
        if r.revision is None:
            click.echo("nothing to revert")
        else:
            click.echo(f"[doc {name} {r.revision}] reverted {r.written} block(s)" +
                       (f", {len(r.conflicts)} conflict(s) left as they are"
                        if r.conflicts else ""))
