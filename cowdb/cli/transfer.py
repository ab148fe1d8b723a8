"""import and export: JSON Lines and CSV, streamed, with a progress bar on long runs."""
from __future__ import annotations

import csv
import io
import json
import os
import secrets
import stat
import sys
import time
from collections.abc import Iterator
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, cast

import click

from cowdb.errors import CowdbError

from . import engine, fmt
from .app import Env, cli, pass_env
from .commands import _allow_empty, _at, _escaped, author_default, key_arg, say_commit

if TYPE_CHECKING:
    from cowdb.transaction import Transaction

FORMATS = ("jsonl", "csv")
Record = tuple[int, bytes, bytes | None]   # (line number, key, value: None deletes)


def _guess_format(name: str | None, given: str | None) -> str:
    if given:
        return given
    if name and name != "-":
        ext = os.path.splitext(name)[1].lower()
        if ext == ".csv":
            return "csv"
        if ext in (".jsonl", ".ndjson", ".json"):
            return "jsonl"
    return "jsonl"


class Progress:
    """A rich progress bar on stderr that appears only once a run has taken a second,
    and only on a terminal (COWDB_PROGRESS=1 forces it, =0 hides it)."""
    description: str
    total: int | None
    unit: str
    done: int
    started: float
    enabled: bool
    delay: float
    task: Any

    def __init__(self, description: str, total: int | None, unit: str = ""):
        self.description, self.total, self.unit = description, total, unit
        self.done = 0
        self.started = time.monotonic()
        self.bar: Any = None   # a rich progress bar, made once the load is slow
        force = os.environ.get("COWDB_PROGRESS")
        if force is not None:
            self.enabled = force not in ("", "0")
            self.delay = 0.0
        else:
            self.enabled = sys.stderr.isatty()
            self.delay = 1.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.started < self.delay:
                return
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar
            cols = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    MofNCompleteColumn() if self.unit != "bytes" else TextColumn(""),
                    TimeRemainingColumn()]
            self.bar = Bar(*cols, console=Console(stderr=True), transient=True)
            self.bar.start()
            from rich.markup import escape  # a file name is no markup: "[/]" would fail
            self.task = self.bar.add_task(escape(fmt.safe(self.description)),
                                          total=self.total)
        self.bar.update(self.task, completed=self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None
                 ) -> None:
        self.close()


# ---------------------------------------------------------------- export
@cli.command()
@click.option("--output", "-o", default="-", metavar="FILE",
              help="Write here instead of standard output (written whole, then renamed).")
@click.option("--format", "-F", "form", type=click.Choice(FORMATS), default=None,
              help="jsonl (default, or from the .jsonl/.csv name of --output) or csv.")
@click.option("--prefix", "-p", default=None, help="Only keys that start with this.")
@_at
@_escaped
@pass_env
def export(env: Env, output: str, form: str | None, prefix: str | None, at: str | None,
           escaped: bool) -> None:
    """Write every key and value of a version as JSON Lines or CSV.

    JSON Lines: one {"key": K, "value": V} per line, in key order; a key or
    value that is not UTF-8 is written as {"base64": "..."}. CSV: a header
    'key,value', then one row per key; CSV holds text only, so a value that
    is not UTF-8 stops the export (use JSON Lines for binary data).

    \b
    Example:
      cowdb export -o backup.jsonl
      cowdb export --at v1.0 --format csv > v1.csv
      cowdb export --prefix user: | gzip > users.jsonl.gz
    """
    form = _guess_format(output, form)
    p = None if prefix is None else key_arg(prefix, escaped, "'--prefix'")
    tmp = None
    if output == "-":
        out = sys.stdout
    else:
        if os.path.isdir(output):
            raise click.ClickException(f"{output} is a folder; give the path of a file")
        folder = os.path.dirname(os.path.abspath(output))
        tmp = os.path.join(folder, f".cowdb-export-{os.getpid()}-{secrets.token_hex(4)}")
        try:  # the mode a plain write gives: 0666 less the umask (mkstemp's is 0600), or
            # the mode of the file it replaces
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except OSError as e:   # (the temporary file's name would mean nothing to the user)
            tmp = None
            raise click.ClickException(f"cannot create {output}: {_why(folder, e)}") from e
        try:
            os.chmod(fd, stat.S_IMODE(os.stat(output).st_mode))
        except OSError:  # no file there yet (or none we may read): the new file's mode
            pass
        out = open(fd, "w", encoding="utf-8", newline="")
    n = 0
    try:
        with env.open() as db, engine.at(db, at) as snap:
            total = len(snap) if p is None else None
            with Progress(f"export {snap.version}", total) as bar:
                if form == "jsonl":
                    for k, v in snap.items(prefix=p):
                        out.write(fmt.json_text({"key": fmt.jvalue(k),
                                                 "value": fmt.jvalue(v)}) + "\n")
                        n += 1
                        bar.advance()
                else:
                    w = csv.writer(out, lineterminator="\n")
                    w.writerow(["key", "value"])
                    for k, v in snap.items(prefix=p):
                        w.writerow([_csv_text(k, "key", k), _csv_text(v, "value of", k)])
                        n += 1
                        bar.advance()
            out.flush()
            version = snap.version
        if tmp is not None:
            out.close()
            os.replace(tmp, output)
            tmp = None
    finally:
        if tmp is not None:
            out.close()
            os.unlink(tmp)
    if output != "-":
        click.echo(f"exported {n} keys of version {version} to {fmt.safe(output)}", err=True)


def _why(folder: str, e: OSError) -> str:
    """Why no file can be made in folder, as init and backup say it."""
    if isinstance(e, FileNotFoundError):
        return f"folder {folder} does not exist"
    if isinstance(e, NotADirectoryError):
        return f"{folder} is not a folder"
    if isinstance(e, PermissionError):
        return f"folder {folder} is not writable"
    return e.strerror or type(e).__name__


def _csv_text(b: bytes, what: str, key: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise click.ClickException(
            f"the {what} '{fmt.inline(key)}' is not UTF-8 text, which CSV cannot hold; export "
            f"as JSON Lines (--format jsonl), which keeps bytes as base64") from None


# ---------------------------------------------------------------- import
def _jsonl_records(f: IO[str]) -> Iterator[Record]:
    for lineno, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "key" not in rec or "value" not in rec:
                raise ValueError('expected an object {"key": ..., "value": ...}')
            k = fmt.from_jvalue(rec["key"])
            if k is None:
                raise ValueError("the key is null")
            yield lineno, k, fmt.from_jvalue(rec["value"])
        except ValueError as e:
            raise click.ClickException(f"line {lineno}: {e}; nothing was imported") from e


def _csv_records(f: IO[str]) -> Iterator[Record]:
    r = csv.reader(f)
    header = next(r, None)
    if header is None:
        return
    cols = [h.strip().lower() for h in header]
    if "key" not in cols or "value" not in cols:
        raise click.ClickException("line 1: a CSV import needs a header row with the columns "
                                   "key and value; nothing was imported")
    ki, vi = cols.index("key"), cols.index("value")
    for row in r:
        if not row:
            continue
        if len(row) <= max(ki, vi):
            raise click.ClickException(f"line {r.line_num}: expected {len(cols)} columns, got "
                                       f"{len(row)}; nothing was imported")
        yield r.line_num, row[ki].encode("utf-8"), row[vi].encode("utf-8")


class _Counting(io.RawIOBase):
    """Counts the bytes read through it, for the progress bar."""

    def __init__(self, raw: io.BufferedIOBase, bar: Progress) -> None:
        self.raw, self.bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int | None:   # (a writable buffer)
        n = self.raw.readinto(b)
        if n:
            self.bar.advance(n)
        return n


@cli.command(name="import")
@click.argument("file", metavar="FILE")
@click.option("--format", "-F", "form", type=click.Choice(FORMATS), default=None,
              help="jsonl or csv (default: from the file name; jsonl for stdin).")
@click.option("--replace", is_flag=True,
              help="Delete every key that is not in FILE, so the version equals FILE.")
@click.option("--message", "-m", default=None, help="The commit message.")
@click.option("--author", default=None, help="The commit's author.")
@click.option("--branch", "-b", default="main", show_default=True)
@_allow_empty
@pass_env
def import_(env: Env, file: str, form: str | None, replace: bool, message: str | None,
            author: str | None, branch: str,
            allow_empty: bool) -> None:
    """Load keys and values from JSON Lines or CSV as one new version.

    The format is the one `cowdb export` writes; in JSON Lines a null value
    deletes the key. Creates the database if there is none. All or nothing:
    on a bad line nothing is committed.

    \b
    Example:
      cowdb import backup.jsonl
      cowdb --db fresh.cow import backup.jsonl
      cowdb import prices.csv -m "April prices" --replace
      cat data.jsonl | cowdb import -
    """
    form = _guess_format(file, form)
    if file == "-":
        # (typeshed says BinaryIO; it is a BufferedReader, or a BytesIO under CliRunner)
        raw, total = cast(io.BufferedIOBase, sys.stdin.buffer), None
    else:
        try:
            raw = open(file, "rb")
        except OSError as e:
            raise click.ClickException(f"cannot read {file}: {e.strerror}") from e
        total = os.fstat(raw.fileno()).st_size
    if message is None:
        message = f"import {os.path.basename(file) if file != '-' else 'stdin'}"
    created = not os.path.exists(env.path)
    try:
        with Progress(f"import {file}", total, unit="bytes") as bar, \
                env.open(write=True, create=True) as db:
            text = io.TextIOWrapper(io.BufferedReader(_Counting(raw, bar)), encoding="utf-8",
                                    newline="" if form == "csv" else None)
            records = _jsonl_records(text) if form == "jsonl" else _csv_records(text)
            with db.write(message=message, branch=branch, allow_empty=allow_empty,
                          author=author_default() if author is None else author) as tx:
                puts, deletes = _load(tx, records, replace, file)
    except BaseException:
        if created:   # leave no empty database behind a failed import
            for p in (env.path, env.path + "-lock"):
                if os.path.exists(p):
                    os.remove(p)
        raise
    finally:
        if file != "-":
            raw.close()
    say_commit(branch, tx.version, f"{message} ({puts} puts, {deletes} deletes)", tx.skipped)


def _load(tx: Transaction, records: Iterator[Record], replace: bool,
          file: str) -> tuple[int, int]:
    """Apply the records to the transaction; (puts, deletes)."""
    puts = deletes = 0
    seen: set[bytes] | None = set() if replace else None
    lineno = 0
    try:
        for lineno, k, v in records:  # noqa: B007 (lineno: named by the error below)
            if v is None:
                deletes += tx.delete(k)
            else:
                tx[k] = v
                puts += 1
            if seen is not None:
                seen.add(k)
    except UnicodeDecodeError as e:
        raise click.ClickException(f"{file} is not UTF-8 text ({e.reason}); nothing was "
                                   f"imported") from e
    except CowdbError as e:
        raise click.ClickException(f"line {lineno}: {e}; "
                                   f"nothing was imported") from e
    if seen is not None:  # replace
        gone = [k for k in tx.keys() if k not in seen]
        for k in gone:
            tx.delete(k)
        deletes += len(gone)
    return puts, deletes
