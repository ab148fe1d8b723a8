"""``cowdb tour``: a short narrated tour of cowdb on a real file."""
from __future__ import annotations

import os
import shlex
import tempfile

import click

import cowdb

from . import engine, fmt
from .app import cli


class _Narrator:
    def __init__(self) -> None:
        from rich.console import Console
        self.c = Console(highlight=False, soft_wrap=True)
        self.n = 0

    def step(self, title: str) -> None:
        self.n += 1
        self.c.print()
        self.c.print(f"[bold cyan]{self.n}. {title}[/]")

    def say(self, text: str) -> None:
        self.c.print(text)

    def code(self, text: str) -> None:
        from rich.markup import escape
        for line in text.splitlines():
            self.c.print(f"   [green]>>>[/] {escape(line)}")

    def out(self, text: str) -> None:
        self.c.print(f"   {text}", markup=False)


def _plain(text: str) -> str:
    """User text (a path) inside rich markup: control characters escaped, and its
    brackets shown as they are, never read as markup ("[/]" would even fail)."""
    from rich.markup import escape
    return escape(fmt.safe(text))


def _show(v: bytes | None) -> str:
    return "-" if v is None else repr(v)


@cli.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def tour(path: str | None) -> None:
    """A short narrated tour of cowdb on a real file.

    Shows transactions, O(1) snapshots, time travel by version, reopening
    the file with every version in it, tags, the log, diff, restore,
    branches and merge. PATH (default: cowdb-tour.cow in
    the temporary folder) is deleted first, with its "-lock" file, so the
    tour always starts fresh.

    \b
    Example:
      cowdb tour /tmp/tour.cow
      cowdb --db /tmp/tour.cow log     # then look around
    """
    path = path or os.path.join(tempfile.gettempdir(), "cowdb-tour.cow")
    t = _Narrator()
    t.c.print(f"[bold]A tour of cowdb {cowdb.__version__}[/] on [bold]{_plain(path)}[/]")
    removed = [p for p in (path, path + "-lock") if os.path.exists(p)]
    if os.path.isdir(path):
        raise click.ClickException(f"{path} is a folder; give the path of a file")
    for p in removed:
        os.remove(p)
    if removed:
        t.say(f"Starting fresh: deleted {_plain(' and '.join(removed))} left by an earlier "
              f"run.")

    # 1. create and write
    t.step("Open (or create) a database file")
    db = cowdb.open(path)
    t.code(f"db = cowdb.open({path!r})")
    t.say(f"A new database holds one version, [bold]{db.version}[/], the empty one.")

    t.step("Write in a transaction: all of it becomes one new version, or none of it")
    t.code('with db.write(message="stock the bowl") as tx:\n'
           '    tx[b"apple"] = b"red"\n'
           '    tx[b"banana"] = b"yellow"\n'
           '    tx[b"cherry"] = b"dark red"')
    with db.write(message="stock the bowl", author="tour") as tx:
        tx[b"apple"] = b"red"
        tx[b"banana"] = b"yellow"
        tx[b"cherry"] = b"dark red"
    v1 = tx.version
    assert v1 is not None   # the block committed
    t.say(f"Committed as version [bold]{v1}[/] (tx.version), durable when the block ends.")

    # 2. snapshot isolation
    t.step("Snapshots are O(1) and do not see later writes")
    snap = db.read()
    t.code("snap = db.read()")
    t.code('with db.write(message="the apple ripens") as tx:\n'
           '    tx[b"apple"] = b"green"; del tx[b"banana"]; tx[b"date"] = b"brown"')
    with db.write(message="the apple ripens", author="tour") as tx:
        tx[b"apple"] = b"green"
        del tx[b"banana"]
        tx[b"date"] = b"brown"
    v2 = tx.version
    assert v2 is not None
    t.code('snap[b"apple"], b"banana" in snap, snap.version')
    t.out(f"{snap[b'apple']!r}, {b'banana' in snap}, {snap.version}")
    t.code('db.read()[b"apple"], b"banana" in db.read(), db.version')
    with db.read() as now:
        t.out(f"{now[b'apple']!r}, {b'banana' in now}, {db.version}")
    t.say(f"The snapshot taken at version {v1} still reads it, although version {v2} has "
          f"been committed since: a snapshot is a root page and a pin, no copy.")
    snap.close()

    t.step("A transaction that fails changes nothing")
    t.code('with db.write() as tx:\n    tx[b"apple"] = b"rotten"\n    raise ValueError')
    try:
        with db.write(message="spoil", author="tour") as tx:
            tx[b"apple"] = b"rotten"
            raise ValueError("oops")
    except ValueError:
        pass
    with db.read() as now:
        t.out(f"aborted; apple is still {now[b'apple']!r} and the version still {db.version}")

    # 3. time travel
    t.step("Time travel: read any earlier version with db.at(v)")
    t.code(f"db.at({v1})[b\"apple\"], db.at({v2})[b\"apple\"]")
    with db.at(v1) as a, db.at(v2) as b:
        t.out(f"{a[b'apple']!r}, {b[b'apple']!r}")
    t.code(f'list(db.at({v1}).keys(start=b"b", stop=b"d"))')
    with db.at(v1) as a:
        t.out(repr(list(a.keys(start=b"b", stop=b"d"))))
    db.close()

    # 4. reopen
    t.step("Close, reopen the file: every version is still there")
    t.code(f"db = cowdb.open({path!r})")
    db = cowdb.open(path)
    t.code("for v in range(db.version + 1):\n"
           "    s = db.at(v); print(v, db.commit_info(v).message, s.get(b\"apple\"), ...)")
    from rich.padding import Padding
    from rich.table import Table
    table = Table(show_edge=False, pad_edge=False)
    for col in ("version", "message", "apple", "banana", "cherry", "date"):
        table.add_column(col)
    for v in range(db.version + 1):
        c = engine.commit(db, v)
        with db.at(v) as s:
            table.add_row(str(v), c.message, *(_show(s.get(k)) for k in
                                               (b"apple", b"banana", b"cherry", b"date")))
    t.c.print(Padding(table, (0, 0, 0, 3), expand=False))  # indented as any output

    # 5. history: tags, log, diff, restore, branches and merge
    t.step("Tags name versions")
    t.code(f'db.tag("first-stock", {v1}); db.at("first-stock")[b"apple"]')
    db.tag("first-stock", v1)
    with db.at("first-stock") as s:
        t.out(repr(s[b"apple"]))

    t.step("The log: one commit per version, newest first")
    t.code("for c in db.log(): print(c.version, c.time, c.message)")
    for c in db.log():
        t.out(f"{c.version}  {fmt.when(c.time)}  {c.message or '(no message)'}")

    t.step("Diff: what changed between two versions (shared pages are skipped unread)")
    t.code(f"for key, old, new in db.diff({v1}, {v2}): ...")
    for k, old, new in db.diff(v1, v2):
        t.out(f"{k!r}: {_show(old)} -> {_show(new)}")

    t.step("Restore: make an old version the newest again (history is kept)")
    t.code(f"db.restore({v1})")
    v = db.restore(v1)
    with db.read() as s:
        t.out(f"version {v}: apple={s[b'apple']!r}, banana={s.get(b'banana')!r}")

    t.step("Branches: an O(1) line of versions of its own, merged back with three-way merge")
    t.code('db.branch("experiment")\nwith db.write(branch="experiment") as tx:\n'
           '    tx[b"elderberry"] = b"black"')
    db.branch("experiment")
    with db.write(message="try elderberries", author="tour", branch="experiment") as tx:
        tx[b"elderberry"] = b"black"
    with db.read() as s:
        t.out(f"experiment is at version {tx.version}; main has no elderberry: "
              f"{b'elderberry' not in s}")
    with db.write(message="a fig for main", author="tour") as tx:
        tx[b"fig"] = b"purple"
    t.code('with db.write() as tx: tx[b"fig"] = b"purple"      # main moves on too')
    t.code('db.merge("experiment", into="main")')
    v = db.merge("experiment", into="main")
    with db.read() as s:
        t.out(f"merge commit {v} (parents {db.commit_info(v).parents}): "
              f"{sorted(k.decode() for k in s.keys())}")

    r = db.check()
    t.step("Check the file")
    t.code("db.check().ok")
    t.out(f"{r.ok}: {r.versions} versions in {r.page_count} pages "
          f"({fmt.size(os.path.getsize(path))})")
    db.close()

    t.c.print()
    t.c.print("[bold]Look around yourself:[/]")
    for cmd in ("log", "scan", f"scan --at {v1}", f"diff {v1} {v2}", "branch", "info"):
        t.c.print(f"   cowdb --db {fmt.safe(shlex.quote(path))} {cmd}", markup=False)
