"""The upkeep commands: retention, gc, stats, compact, upgrade."""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import timedelta

import click

from . import engine, fmt
from .app import Env, cli, pass_env

# ---------------------------------------------------------------- retention / gc / stats
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(s: str) -> timedelta:
    m = _DURATION.match(s)
    if not m:
        raise click.BadParameter(f"{s!r} is not a duration; use a number and s, m, h, d or w "
                                 f"(e.g. 90m, 7d)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def _positive_duration(ctx: click.Context, param: click.Parameter,
                       value: str | None) -> timedelta | None:
    """An option's callback: a positive duration (90m, 12h, 7d, 2w). Click names the
    option in the error of a bad one."""
    if value is None:
        return None
    t = parse_duration(value)
    if t <= timedelta(0):
        raise click.BadParameter(f"{value!r} is not a positive duration (e.g. 90m, 7d)")
    return t


def _show_duration(t: timedelta) -> str:
    s = t.total_seconds()
    for u in ("w", "d", "h", "m"):
        if s >= _UNITS[u] and s % _UNITS[u] == 0:
            return f"{int(s // _UNITS[u])}{u}"
    return f"{s:g}s"


@cli.command()
@click.option("--keep-last", type=click.IntRange(min=1), default=None,
              help="Keep the newest N versions.")
@click.option("--keep-within", callback=_positive_duration, default=None, metavar="DURATION",
              help="Keep versions younger than this (90m, 12h, 7d, 2w).")
@click.option("--keep-all", is_flag=True, help="Keep every version (the default rule).")
@pass_env
def retention(env: Env, keep_last: int | None, keep_within: timedelta | None,
              keep_all: bool) -> None:
    """Show or set which versions gc keeps.

    Tags and branch heads are always kept. Without options: show the rule.

    \b
    Example:
      cowdb retention
      cowdb retention --keep-last 100 --keep-within 7d
      cowdb retention --keep-all
    """
    if keep_all and (keep_last is not None or keep_within is not None):
        raise click.UsageError("--keep-all does not go with --keep-last or --keep-within")
    if not keep_all and keep_last is None and keep_within is None:
        with env.open() as db:
            r = db.retention
        if r.keeps_everything:
            click.echo("keep every version")
        else:
            rules = []
            if r.keep_last is not None:
                rules.append(f"the newest {r.keep_last} versions")
            if r.keep_within is not None:
                rules.append(f"versions younger than {_show_duration(r.keep_within)}")
            click.echo(f"keep {' and '.join(rules)}, and every tag and branch head")
        return
    with env.open(write=True) as db:
        db.set_retention(keep_last=keep_last, keep_within=keep_within)
    click.echo("retention set; `cowdb gc` applies it")


@cli.command()
@pass_env
def gc(env: Env) -> None:
    """Drop the versions retention does not keep and reclaim their pages.

    \b
    Example:
      cowdb retention --keep-last 10
      cowdb gc
    """
    with env.open(write=True) as db:
        r = db.gc()
    click.echo(f"dropped {r.versions_dropped} version(s), freed {fmt.size(r.bytes_freed)}; "
               f"file {fmt.size(r.file_bytes_before)} -> "
               f"{fmt.size(r.file_bytes_after)}")
    from cowdb.objdb import ObjectGcReport
    if isinstance(r, ObjectGcReport):   # a database at a URL: its objects too
        click.echo(f"objects: {r.objects_compacted} compacted, {r.objects_deleted} deleted, "
                   f"{r.objects_marked} waiting for the grace period")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_env
def stats(env: Env, as_json: bool) -> None:
    """Where the bytes are: live, reclaimable by gc, free, reserved, and what pins them.

    \b
    Example:
      cowdb stats
      cowdb stats --json | jq .reclaimable_bytes
    """
    with env.open() as db:
        s = db.stats()
    if as_json:
        click.echo(json.dumps(asdict(s), indent=2))
        return
    click.echo(f"file:         {fmt.size(s.file_bytes)}, of which")
    click.echo(f"live:         {fmt.size(s.live_bytes)}")
    click.echo(f"reclaimable:  {fmt.size(s.reclaimable_bytes)} (by `cowdb gc`)")
    click.echo(f"free:         {fmt.size(s.free_bytes)} (reused before the file grows)")
    click.echo(f"reserve:      {fmt.size(s.reserve_bytes)} (kept so that gc can run on a full "
               f"disk)")
    click.echo(f"header:       {fmt.size(s.header_bytes)} (the meta pages)")
    click.echo(f"versions:     {s.versions} ({s.kept_versions} kept by retention)")
    if s.pinned:
        click.echo("pinned (bytes held beyond the branch heads):")
        for what, n in s.pinned.items():
            click.echo(f"  {fmt.safe(what):<20} {fmt.size(n)}")


@cli.command()
@click.argument("dest", type=click.Path(dir_okay=False))
@pass_env
def compact(env: Env, dest: str) -> None:
    """Write a compacted copy of the database to DEST (a new file).

    Every kept version, tag, branch and the retention rule are copied, with
    shared pages still shared.

    \b
    Example:
      cowdb compact shop-compact.cow && mv shop-compact.cow shop.cow
    """
    import os
    with env.open() as db:
        db.compact(dest)
    was = "" if engine.is_url(env.path) else f", was {fmt.size(os.path.getsize(env.path))}"
    click.echo(f"wrote {fmt.safe(dest)} ({fmt.size(os.path.getsize(dest))}{was})")


@cli.command()
@click.argument("path", required=False)
@pass_env
def upgrade(env: Env, path: str | None) -> None:
    """Rewrite an older file's meta records in the current format version, in place.

    cowdb reads files of every older format version and upgrades one on its
    first write; this does it without a write. Crash-safe: each of the two
    meta records is rewritten by its own durable txn, so the file opens
    whenever it stops. A file already current is left as it is. Its data stays
    where it is (an old file keeps whole-page units): `cowdb compact` writes a
    packed copy. PATH defaults to the --db path.

    \b
    Example:
      cowdb upgrade shop.cow
    """
    from cowdb.pages.meta import FORMAT_VERSION
    path = path or env.path
    with engine.open_db(path, write=True, timeout=env.timeout) as db:
        was = db._upgrade()
    if was is None:
        click.echo(f"ok: {fmt.safe(path)} is already at format version {FORMAT_VERSION}; "
                   f"nothing to do")
    else:
        click.echo(f"upgraded {fmt.safe(path)} from format version {was} to {FORMAT_VERSION}")
