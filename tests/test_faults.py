"""Fault injection: every fault kind at every operation of a scripted workload.

A scripted workload (commits of several sizes, overwrites, deletes, values
of 10+ KB, sync and no-sync commits, closes, tags, branches, restore,
retention and gc) runs over a ``FaultyIO`` (tests/faults.py). A dry run
counts its device operations; then, for every fault kind and every
operation where that kind can strike, the workload runs again with that one
fault and the driver checks:

* the operation that met the fault raised a ``cowdb.errors`` exception
  (``PowerLoss`` stops the run instead, like a dead process);
* after a write error, the open database is either closed or exactly at the
  last acknowledged state (never half-applied), and the workload goes on;
* after the run (or the crash), the disk image opens on a fresh device and is
  *exactly* one model state between the last durable one and the one in
  flight: no acknowledged durable change is lost, every kept version reads
  as the model says, dropped versions raise, refs match, ``check()`` is ok.

The model is a list of states, one per acknowledged change; ``floor`` is
the index of the newest state known to be durable (a sync commit returned,
close() returned, or open() made what it found durable).

To add an operation (merge, say): write a Step with ``expect`` (the model
state it produces, or None when its precondition does not hold) and
``apply`` (the call on the database), and put it in ``workload()``.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, replace

import pytest

import cowdb
from cowdb.errors import CowdbError, DatabaseClosed, ReadFailed, VersionNotFound, WriteFailed
from cowdb.pages.io import MemoryIO
from faults import (KINDS, POWER_KINDS, READ_KINDS, SYNC_KINDS, FaultyIO, PowerLoss,
                    fault_points)

LONG = bool(os.environ.get("COWDB_LONG"))
PAGE_SIZE = 1024


# ---- the model ---------------------------------------------------------------
@dataclass(frozen=True)
class State:
    """What the database holds after some acknowledged change."""
    contents: dict                      # version -> {key: value} (every version ever made)
    kept: frozenset                     # versions still readable
    last: int                           # newest version number
    branches: dict = field(default_factory=lambda: {"main": 0})
    tags: dict = field(default_factory=dict)
    keep_last: int | None = None
    parents: dict = field(default_factory=lambda: {0: ()})

    def head(self, branch="main") -> dict:
        return self.contents[self.branches[branch]]

    def with_version(self, content: dict, branch: str, parents=None) -> "State":
        v = self.last + 1
        parents = (self.branches[branch],) if parents is None else parents
        return replace(self, contents={**self.contents, v: content}, kept=self.kept | {v},
                       last=v, branches={**self.branches, branch: v},
                       parents={**self.parents, v: parents})

    def ancestors(self, v: int) -> set | None:
        """v and every version before it in the commit graph; None if gc dropped one."""
        out, todo = set(), [v]
        while todo:
            x = todo.pop()
            if x not in self.kept:
                return None
            if x not in out:
                out.add(x)
                todo.extend(self.parents[x])
        return out

    def describe(self) -> str:
        return (f"version {self.last}, branches {self.branches}, tags {self.tags}, "
                f"kept {sorted(self.kept)}")


INITIAL = State(contents={0: {}}, kept=frozenset({0}), last=0)


# ---- the steps -----------------------------------------------------------------
class Step:
    needs_db = True
    needs_api: str | None = None   # a Database attribute the step calls (skipped without it)
    durable = True                 # success makes the new state durable
    absorbs = False                # may absorb an I/O error in work after its change is
                                   # durable (a checkpoint, giving back the file's tail)
    uses_reserve = False           # frees space: on a full disk it writes into the
                                   # reserve it cannot renew (absorbs ENOSPC there)

    def expect(self, s: State) -> State | None:
        """The state after success; None: skip the step (its precondition fails)."""
        return s

    def apply(self, run: "Run") -> None:
        raise NotImplementedError


@dataclass
class Commit(Step):
    puts: dict
    deletes: list
    durability: str = "sync"
    branch: str = "main"
    message: str = "w"

    @property
    def durable(self):
        return self.durability == "sync"

    def expect(self, s):
        if self.branch not in s.branches:
            return None
        content = dict(s.head(self.branch))
        for k in self.deletes:
            content.pop(k, None)
        content.update(self.puts)
        return s.with_version(content, self.branch)

    def apply(self, run):
        with run.db.write(message=self.message, branch=self.branch, durability=self.durability,
                          allow_empty=True) as tx:  # a step is a version
            for k in self.deletes:
                tx.delete(k)
            tx.update(self.puts)

    def __repr__(self):
        return (f"Commit({len(self.puts)} puts, {len(self.deletes)} deletes, "
                f"{self.durability}, {self.branch})")


@dataclass
class NewRef(Step):
    """db.tag(name) or db.branch(name) at the head of main (one namespace for both)."""
    kind: str               # "tag" or "branch"
    name: str

    @property
    def needs_api(self):
        return self.kind

    def expect(self, s):
        if self.name in s.tags or self.name in s.branches:
            return None
        refs = "tags" if self.kind == "tag" else "branches"
        return replace(s, **{refs: {**getattr(s, refs), self.name: s.branches["main"]}})

    def apply(self, run):
        getattr(run.db, self.kind)(self.name)


@dataclass
class Restore(Step):
    back: int               # restore the version this many below the newest
    needs_api = "restore"

    def target(self, s):
        return s.last - self.back

    def expect(self, s):
        v = self.target(s)
        if v not in s.kept:
            return None
        return s.with_version(dict(s.contents[v]), "main")  # parent: the head of main

    def apply(self, run):
        run.db.restore(self.target(run.state))


@dataclass
class SetRetention(Step):
    keep_last: int
    needs_api = "set_retention"
    uses_reserve = True

    def expect(self, s):
        return replace(s, keep_last=self.keep_last)

    def apply(self, run):
        run.db.set_retention(keep_last=self.keep_last)


@dataclass
class Merge(Step):
    """Merge a branch into main, changes from the branch winning conflicts."""
    source: str
    needs_api = "merge"

    def expect(self, s):
        if self.source not in s.branches:
            return None
        src, dst = s.branches[self.source], s.branches["main"]
        a, b = s.ancestors(src), s.ancestors(dst)
        if a is None or b is None:
            return None  # gc rewired the graph; this model does not follow that
        base = max(a & b)
        self.durable = base != src
        if base == src:
            return s                                            # nothing new on the branch
        if base == dst:                                         # fast-forward
            return replace(s, branches={**s.branches, "main": src})
        content = dict(s.contents[dst])
        theirs, old = s.contents[src], s.contents[base]
        for k in old.keys() | theirs.keys():
            if theirs.get(k) != old.get(k):
                if k in theirs:
                    content[k] = theirs[k]
                else:
                    content.pop(k, None)
        return s.with_version(content, "main", (dst, src))

    def apply(self, run):
        run.db.merge(self.source, resolve="theirs")


@dataclass
class DeleteRef(Step):
    """db.delete_tag(name) or db.delete_branch(name)."""
    kind: str               # "tag" or "branch"
    name: str

    @property
    def needs_api(self):
        return f"delete_{self.kind}"

    def expect(self, s):
        refs = "tags" if self.kind == "tag" else "branches"
        if self.name not in getattr(s, refs):
            return None
        left = dict(getattr(s, refs))
        del left[self.name]
        return replace(s, **{refs: left})

    def apply(self, run):
        getattr(run.db, f"delete_{self.kind}")(self.name)


@dataclass
class Revert(Step):
    """Revert the version this many below the newest on main, the reverted values
    winning where a later commit changed the same keys."""
    back: int
    needs_api = "revert"

    def target(self, s):
        return s.last - self.back

    def expect(self, s):
        v = self.target(s)
        if v not in s.kept or any(p not in s.kept for p in s.parents[v][:1]):
            return None  # reclaimed, or its changes are no longer known
        before = s.contents[s.parents[v][0]] if s.parents[v] else {}
        content = dict(s.head("main"))
        for k in before.keys() | s.contents[v].keys():
            if before.get(k) != s.contents[v].get(k):
                if k in before:
                    content[k] = before[k]
                else:
                    content.pop(k, None)
        return s.with_version(content, "main")

    def apply(self, run):
        run.db.revert(self.target(run.state), resolve="theirs", allow_empty=True)


class Gc(Step):
    needs_api = "gc"
    absorbs = True
    durable = False  # a gc with nothing to drop publishes (and syncs) nothing

    def expect(self, s):
        if s.keep_last is None:
            return s
        newest = sorted(s.kept, reverse=True)[:s.keep_last]
        named = set(s.tags.values()) | set(s.branches.values())
        after = replace(s, kept=frozenset(newest) | (named & s.kept))
        self.durable = after.kept != s.kept
        return after

    def apply(self, run):
        run.db.gc()

    def __repr__(self):
        return "Gc()"


class Close(Step):
    """close(): syncs and records a checkpoint; the next step opens the device again."""
    absorbs = True

    def apply(self, run):
        db, run.db = run.db, None
        db.close()

    def __repr__(self):
        return "Close()"


def _value(rng: random.Random, big: bool = False) -> bytes:
    if big:
        return rng.randbytes(rng.randrange(10_000, 16_000))
    return rng.randbytes(rng.choice([3, 10, 40, 120, 300]))


def workload(seed: int = 1) -> list[Step]:
    """The scripted workload; the same seed gives the same steps."""
    rng = random.Random(seed)
    keys = [b"k%04d" % i for i in range(400)]

    def puts(n, big=0, lo=0, hi=400):
        d = {k: _value(rng) for k in rng.sample(keys[lo:hi], n)}
        d.update({keys[rng.randrange(lo, hi)]: _value(rng, True) for _ in range(big)})
        return d

    def dels(n, lo=0, hi=400):
        return rng.sample(keys[lo:hi], n)

    return [
        Commit(puts(150, hi=200), []),                          # the first tree: several levels
        Commit(puts(30, hi=200), [], "none"),                   # overwrites, not synced
        Commit(puts(5, big=1, hi=200), dels(10, hi=200)),       # a 10+ KB value
        Commit(puts(3), dels(40, hi=200), "none"),              # many deletes: merges
        Commit(puts(2, big=1, hi=200), [], "none"),             # overwrite the big value
        Close(),                                                # checkpoint after no-sync commits
        NewRef("tag", "t1"),
        NewRef("branch", "exp"),
        Commit(puts(10, hi=200), dels(5, hi=200), branch="exp"),
        Commit(puts(60, lo=200), []),                           # grows the tree to the right
        Merge("exp"),                                           # a three-way merge commit
        NewRef("branch", "ff"),
        Commit(puts(4, big=1), dels(3), "none", branch="ff"),
        Merge("ff"),                                            # a fast-forward
        Commit(puts(5, hi=200), dels(5, hi=200), branch="exp"),
        Commit(puts(5, hi=200), [], "none"),
        Merge("exp"),                                           # again, base = the last merge
        Commit({}, []),                                         # an empty commit
        Revert(2),                                              # undo a commit under later ones
        DeleteRef("tag", "t1"),
        DeleteRef("branch", "ff"),                              # merged into main already
        *[NewRef("tag", f"long-{i}-" + "x" * 180) for i in range(6)],  # the meta records
        DeleteRef("tag", "long-0-" + "x" * 180),                # carry refs until they outgrow it
        Commit(puts(1), dels(80, hi=300), "none"),
        Restore(3),
        SetRetention(4),
        Gc(),                                                   # frees pages, may truncate
        Commit(puts(40, big=1), [], "none"),                    # reuses freed pages
        Commit(puts(5), dels(20)),
        Close(),
        Commit(puts(2), [], "none"),                            # left for the final close
    ]


def catalog_workload(seed: int = 1) -> list[Step]:
    """Commits whose records fold into the catalog tree many times over: catalog leaves
    written as delta images on the ones they replace, chains consolidated
    (their images freed whole), leaves split after the commit records a fold appends;
    then gc, whose relocation writes a chain that reaches past its limit whole."""
    rng = random.Random(seed)
    steps: list[Step] = [NewRef("branch", "exp")]
    for i in range(70):
        steps.append(Commit({b"k%03d" % rng.randrange(60): _value(rng)}, [],
                            rng.choice(["sync", "none", "none"]),
                            "exp" if i % 9 == 4 else "main",
                            f"commit {i} " + "m" * rng.randrange(20, 70)))
        if i in (30, 55):
            steps.append(Close())
    return [*steps, SetRetention(8), Gc(), Commit({b"end": b"e"}, []), Close()]


# ---- running a workload over a device ---------------------------------------------
class Failure(AssertionError):
    pass


class Run:
    """One run of a workload over one FaultyIO, tracking the model."""

    def __init__(self, steps, image: bytes, kind=None, k=-1, seed=0):
        self.steps = steps
        self.io = FaultyIO(image, kind, k, seed)
        self.kind = kind
        self.db = None
        self.states = [INITIAL]
        self.floor = 0
        self.inflight: State | None = None
        self.errors: list[tuple[str, BaseException]] = []
        self.swallowed: list[str] = []
        self.crashed = False

    @property
    def state(self) -> State:
        return self.states[-1]

    def ctx(self, step) -> str:
        return f"[{self.kind} at op {self.io.k}: {self.io.fired}] during {step!r}"

    def execute(self) -> None:
        try:
            for step in self.steps:
                if step.needs_api and not hasattr(cowdb.Database, step.needs_api):
                    continue
                for _ in range(2):  # an open that meets the (single) fault is tried again
                    if step.needs_db and self.db is None and not self._step(_Open()):
                        return
                if not self._step(step):
                    return
            if self.db is not None:
                self._step(Close())
        except PowerLoss:
            self.crashed = True

    def _step(self, step: Step) -> bool:
        """Run one step; False when the run must stop (fsync failure)."""
        after = step.expect(self.state)
        if after is None:
            return True
        fired_before = self.io.fired
        try:
            step.apply(self)
        except PowerLoss:
            self.inflight = after if after is not self.state else None
            raise
        except CowdbError as e:
            if self.io.fired is None or fired_before is not None:
                raise Failure(f"{type(e).__name__} without an injected fault {self.ctx(step)}: "
                              f"{e}") from e
            want = ReadFailed if self.kind in READ_KINDS else WriteFailed
            if not isinstance(e, want):
                raise Failure(f"an I/O fault surfaced as {type(e).__name__}, not "
                              f"{want.__name__} {self.ctx(step)}: {e}") from e
            self.errors.append((repr(step), e))
            if self.kind in SYNC_KINDS:
                self.inflight = after if after is not self.state else None
                self._expect_closed(step)
                return False
            self._after_error(step)
            return True
        except Exception as e:
            raise Failure(f"{type(e).__name__} is not a cowdb.errors exception "
                          f"{self.ctx(step)}: {e!r}") from e
        if self.io.fired is not None and fired_before is None:
            self.swallowed.append(repr(step))
            if not (step.absorbs or step.uses_reserve and self.kind == "enospc"):
                raise Failure(f"the fault was swallowed {self.ctx(step)}")
            self.io.free_space()
        if isinstance(step, _Open):
            return True
        if after is not self.state:
            self.states.append(after)
        if step.durable:
            self.floor = len(self.states) - 1
        if self.kind in SYNC_KINDS and self.io.fired is not None:
            return False
        return True

    def _closed(self) -> bool:
        """Whether the database is gone (never opened, or it closed itself); forget it then."""
        if self.db is None:
            return True
        try:
            self.db.version
        except DatabaseClosed:
            self.db = None
            return True
        return False

    def _expect_closed(self, step) -> None:
        """After a failed fsync the database must refuse further use."""
        if not self._closed():
            raise Failure(f"the database stayed open after a failed fsync {self.ctx(step)}")

    def _after_error(self, step) -> None:
        """After an I/O error: closed, or usable and exactly at the last acknowledged state."""
        if self.kind == "enospc":
            self.io.free_space()
        if self._closed():
            return
        try:
            with self.io.unfaulted():
                verify(self.db, self.state)
        except Failure as e:
            raise Failure(f"after the error the open database is not at the last acknowledged "
                          f"state {self.ctx(step)}: {e}") from e

    def candidates(self) -> list[State]:
        """States a recovered image may hold: durable floor .. newest, then the one in flight."""
        out = self.states[self.floor:]
        return out + [self.inflight] if self.inflight is not None else out


class _Open(Step):
    """Open the device; what it finds must be a state the model allows."""
    durable = False

    def apply(self, run):
        run.db = cowdb.open(io=run.io, page_size=PAGE_SIZE)
        try:
            with run.io.unfaulted():
                found = reconcile(run.db, run.candidates())
        except Failure as e:
            raise Failure(f"reopening the live device: {e}") from e
        idx = next((i for i, s in enumerate(run.states) if s is found), None)
        if idx is None:  # the change in flight when an error struck was applied after all
            run.states.append(found)
        else:  # newer no-sync states were lost: the model goes on from what is there
            del run.states[idx + 1:]
        run.floor = len(run.states) - 1  # open() syncs what it adopted
        run.inflight = None

    def expect(self, s):
        return s

    def __repr__(self):
        return "Open()"


# ---- checking a database against the model ------------------------------------------
def verify(db, s: State) -> None:
    """Raise Failure unless db holds exactly state s."""
    try:
        _verify(db, s)
    except CowdbError as e:
        raise Failure(f"reading raised {type(e).__name__}: {e}") from e


def _verify(db, s: State) -> None:
    if db.version != s.last:
        raise Failure(f"newest version {db.version}, model {s.last}")
    if "branches" in dir(db):
        if db.branches() != s.branches:
            raise Failure(f"branches {db.branches()}, model {s.branches}")
        if db.tags() != s.tags:
            raise Failure(f"tags {db.tags()}, model {s.tags}")
    for v in range(s.last + 1):
        if v in s.kept:
            with db.at(v) as snap:
                got = dict(snap.items())
                n = len(snap)
            if got != s.contents[v] or n != len(got):
                diff = sorted(set(got.items()) ^ set(s.contents[v].items()))[:3]
                raise Failure(f"WRONG READ: version {v} has {len(got)} keys (len {n}), model "
                              f"{len(s.contents[v])}; differing items e.g. "
                              f"{[(k, len(x)) for k, x in diff]}")
        else:
            try:
                db.at(v).close()
            except VersionNotFound:
                continue
            raise Failure(f"version {v} is readable but the model dropped it")
    try:
        db.at(s.last + 1).close()
    except VersionNotFound:
        pass
    else:
        raise Failure(f"version {s.last + 1} is readable but the model has no such version")
    with db.read() as snap:
        if dict(snap.items()) != s.head():
            raise Failure("WRONG READ: the head of main differs from the model")
    report = db.check()
    if not report.ok:
        raise Failure(f"check() found problems: {report.errors[:3]}")
    if report.versions != len(s.kept):
        raise Failure(f"check() saw {report.versions} versions, model keeps {len(s.kept)}")


def reconcile(db, candidates: list[State]) -> State:
    """The candidate state db holds exactly (the newest if several); Failure if none."""
    problems = []
    for s in reversed(candidates):
        try:
            verify(db, s)
            return s
        except Failure as e:
            problems.append(f"not {s.describe()}: {e}")
    raise Failure("the database matches no allowed state; " + " | ".join(problems[:4]))


def check_image(image: bytes, run: Run, what: str) -> State:
    """Open a copy of a disk image on a fresh device and reconcile it with the run's model."""
    try:
        db = cowdb.open(io=MemoryIO(image), page_size=PAGE_SIZE)
    except CowdbError as e:
        raise Failure(f"{what} does not open after [{run.kind} at op {run.io.k}: "
                      f"{run.io.fired}]: {type(e).__name__}: {e}") from e
    try:
        return reconcile(db, run.candidates())
    except Failure as e:
        raise Failure(f"{what} after [{run.kind} at op {run.io.k}: {run.io.fired}]: {e}") from e
    finally:
        db.close()


def base_image() -> bytes:
    """A new, empty database on a device (creation itself is not under test here)."""
    io = MemoryIO()
    cowdb.open(io=io, page_size=PAGE_SIZE).close()
    return bytes(io.buf)


# ---- the campaign -------------------------------------------------------------------
@dataclass
class Tally:
    faults: int = 0
    by_kind: dict = field(default_factory=dict)
    errors: int = 0
    swallowed: int = 0
    recovered_inflight: int = 0
    recovered_newest: int = 0
    recovered_older: int = 0


def run_one(steps, image, kind, k, seed, tally: Tally) -> None:
    run = Run(steps, image, kind, k, seed)
    run.execute()
    if run.io.fired is None:
        raise Failure(f"{kind} at op {k} never fired (the workload is not deterministic?)")
    tally.faults += 1
    tally.by_kind[kind] = tally.by_kind.get(kind, 0) + 1
    tally.errors += len(run.errors)
    tally.swallowed += len(run.swallowed)
    if kind in POWER_KINDS or kind in SYNC_KINDS:
        if kind in POWER_KINDS and not run.crashed:
            raise Failure(f"{kind} at op {k}: the power loss did not stop the run")
        got = check_image(run.io.crash_image(), run, "the disk image after the crash")
        if got is run.inflight:
            tally.recovered_inflight += 1
        elif got is run.state:
            tally.recovered_newest += 1
        else:
            tally.recovered_older += 1
        if kind in SYNC_KINDS:  # no crash: the file as the page cache holds it opens too
            check_image(bytes(run.io.live), run, "the live file after the failed fsync")
    else:
        # the run ended with a successful close: the disk holds exactly the newest state
        run.floor = len(run.states) - 1
        run.inflight = None
        check_image(bytes(run.io.durable), run, "the disk image after the final close")


def campaign(seed: int, kinds=KINDS, stride: int = 1,
             steps: list[Step] | None = None) -> tuple[Tally, list[str]]:
    """Every kind at every operation (every ``stride``-th) of ``steps`` (default: the
    workload of ``seed``); returns the tally and failures."""
    steps = workload(seed) if steps is None else steps
    image = base_image()
    dry = Run(steps, image)
    dry.execute()
    assert dry.io.fired is None and not dry.errors
    check_image(bytes(dry.io.durable), dry, "the dry run's image")
    tally, failures = Tally(), []
    for kind in kinds:
        points = fault_points(dry.io.ops, kind, dry.io.reads)
        for i, k in enumerate(points):
            if i % stride == (seed + KINDS.index(kind)) % stride:
                try:
                    run_one(steps, image, kind, k, seed * 100_003 + k, tally)
                except Failure as e:
                    failures.append(f"seed {seed}: {e}")
    return tally, failures


# ---- the tests ------------------------------------------------------------------------
def test_faultyio_models_the_disk():
    """The device itself: sync makes live durable; a power loss keeps only the durable image."""
    io = FaultyIO(b"", "power", k=2)
    io.pwrite(b"a" * 10, 0)
    io.sync()
    with pytest.raises(PowerLoss):
        io.pwrite(b"b" * 10, 0)
    assert io.crash_image() == b"a" * 10
    with pytest.raises(PowerLoss):
        io.sync()
    io = FaultyIO(b"x" * 1024, "power_torn", k=0, seed=3)
    with pytest.raises(PowerLoss):
        io.pwrite(b"y" * 1024, 0)
    img = io.crash_image()
    cut = img.count(b"y")
    assert img == b"y" * cut + b"x" * (1024 - cut) and cut < 1024
    io = FaultyIO(b"", "enospc", k=1)
    io.pwrite(b"a", 0)
    with pytest.raises(OSError):
        io.pwrite(b"b", 1)
    io.pwrite(b"c", 0)  # inside the file: fine
    io.free_space()
    io.pwrite(b"d", 1)
    assert bytes(io.live) == b"cd"


def test_dry_run_matches_the_model():
    steps = workload(1)
    run = Run(steps, base_image())
    run.execute()
    assert not run.errors and run.io.fired is None
    ops = run.io.ops
    assert sum(1 for w, _ in ops if w == "sync") >= 10
    assert len(fault_points(ops, "eio")) >= 100
    run.floor = len(run.states) - 1
    assert check_image(bytes(run.io.durable), run, "the dry run's image") is run.state


def test_the_checker_catches_wrong_data():
    """Flip a value on the device: verify() must call it a wrong read or a corruption."""
    steps = workload(1)[:3]
    run = Run(steps, base_image())
    run.execute()
    img = bytearray(run.io.durable)
    db = cowdb.open(io=MemoryIO(bytes(img)), page_size=PAGE_SIZE)
    s = run.state
    bad = replace(s, contents={**s.contents, 1: {**s.contents[1], b"k0000": b"nope"}})
    with pytest.raises(Failure):
        verify(db, bad)
    verify(db, s)


@pytest.mark.parametrize("kind", KINDS)
def test_fault_at_every_operation(kind):
    """Each kind of fault at every operation of the workload where it can strike."""
    seeds = range(1, 9) if LONG else [1]
    faults, failures = 0, []
    for seed in seeds:
        tally, fails = campaign(seed, kinds=(kind,))
        faults += tally.faults
        failures += fails
    assert not failures, f"{len(failures)} of {faults} {kind} faults failed:\n" + \
        "\n".join(failures[:5])
    # enospc strikes only writes that grow the file; packed images (64-byte units) grow
    # it in fewer reserve renewals: 12 such points at seed 1 (pages: 17), and delta
    # images (format 4) in fewer still: 9
    assert faults >= (8 if kind == "enospc" else 14)


def test_the_catalog_workload_writes_catalog_deltas_and_consolidates_them(monkeypatch):
    """What test_fault_in_catalog_folds strikes: folds that write catalog delta images,
    and full catalog images written over chains (which frees them whole)."""
    from cowdb.pages.checksum import BRANCH, BRANCH_DELTA, LEAF, LEAF_DELTA
    from cowdb.pages.store import PageStore
    from cowdb.tree.btree import Tree
    written: list[tuple[int, int]] = []  # (type, depth of the node's chain before it)
    catalog = [False]
    real_write, real_tree_write = PageStore.write, Tree.write

    def tree_write(tree, txn):
        catalog[0] = tree.frees
        try:
            return real_tree_write(tree, txn)
        finally:
            catalog[0] = False

    def write(store, page, image):
        if catalog[0]:
            written.append(image[8])
        return real_write(store, page, image)
    monkeypatch.setattr(Tree, "write", tree_write)
    monkeypatch.setattr(PageStore, "write", write)
    run = Run(catalog_workload(), base_image())
    run.execute()
    assert not run.errors
    assert {LEAF, BRANCH, LEAF_DELTA} <= set(written)
    assert BRANCH_DELTA not in written  # a catalog branch is written whole
    # a leaf written full after deltas of it: a consolidation (or a split)
    assert any(k == LEAF and LEAF_DELTA in written[:i] for i, k in enumerate(written))


@pytest.mark.parametrize("kind", KINDS)
def test_fault_in_catalog_folds(kind):
    """Each kind of fault at every operation (every third, every one under COWDB_LONG) of
    the catalog workload: catalog deltas, their consolidations, gc's relocation."""
    stride = 1 if LONG else 3
    tally, failures = campaign(1, kinds=(kind,), stride=stride, steps=catalog_workload())
    assert not failures, f"{len(failures)} of {tally.faults} {kind} faults failed:\n" + \
        "\n".join(failures[:5])
    assert tally.faults >= (1 if kind == "enospc" else 10)


def test_a_no_sync_branch_is_made_durable_by_the_next_durable_commit():
    """docs/concepts/durability.md: on a durability="none" handle a branch is visible at
    once but reaches the disk with the next durable commit; a power loss before that loses
    the branch (and nothing else), one after it keeps it."""
    io = FaultyIO(base_image())
    db = cowdb.open(io=io, page_size=PAGE_SIZE, durability="none")
    with db.write(durability="sync") as tx:
        tx[b"k"] = b"v"
    db.branch("dev")
    assert "dev" in db.branches()

    def after_power_loss():
        crashed = cowdb.open(io=MemoryIO(io.crash_image()), page_size=PAGE_SIZE)
        try:
            return crashed.branches(), crashed.version
        finally:
            crashed.close()

    assert after_power_loss() == ({"main": 1}, 1)
    with db.write(branch="dev", durability="sync") as tx:  # a durable commit on it
        tx[b"k"] = b"w"
    assert after_power_loss() == ({"main": 1, "dev": 2}, 2)
    db.branch("fix")                     # and a durable commit anywhere else carries it too
    assert after_power_loss() == ({"main": 1, "dev": 2}, 2)
    with db.write(durability="sync") as tx:
        tx[b"k"] = b"x"
    assert after_power_loss() == ({"main": 3, "dev": 2, "fix": 1}, 3)
    db.close()


# ---- a fault while another thread reads inside the publish window (issue 13) ----------
WINDOW_FAULTS = {"eio": "flushed", "torn": "flushed", "power": "flushed",
                 "power_torn": "flushed", "fsync": "meta"}


@pytest.mark.parametrize("what", ["commit", "gc"])
@pytest.mark.parametrize("kind", sorted(WINDOW_FAULTS))
def test_a_fault_in_the_publish_window_while_a_thread_reads(kind, what):
    """A commit (or gc) runs in a thread; at its window point another thread reads every
    version and check()s, then the very next device operation of the writer fails (the
    meta record's pwrite, or the fsync after it). The reader saw the published state; the
    handle stays at it (or is closed, after a failed fsync); the disk opens as the state
    before the change or, where the change may have landed, the one after."""
    from windows import in_window
    io = FaultyIO(base_image())
    db = cowdb.open(io=io, page_size=PAGE_SIZE)
    contents = {0: {}}
    for v in range(1, 6):
        with db.write() as tx:
            tx.update({b"k%03d" % i: b"%d" % v * (v * 20) for i in range(0, 120, v)})
        contents[v] = dict(db.read())
    if what == "gc":
        db.set_retention(keep_last=2)
    after = {v: c for v, c in contents.items() if v >= 4} if what == "gc" else \
        {**contents, 6: {**contents[5], b"new": b"1"}}

    def write():
        if what == "gc":
            return db.gc()
        with db.write() as tx:
            tx[b"new"] = b"1"

    seen = []

    def read_then_arm():
        seen.append(({v: dict(db.at(v)) for v in contents}, db.check().errors))
        io.kind, io.k = kind, len(io.ops)   # the writer's next device operation fails

    with pytest.raises((WriteFailed, PowerLoss)):
        in_window(db, write, read_then_arm, WINDOW_FAULTS[kind])
    assert io.fired, "the fault never struck"
    assert seen == [(contents, [])]       # the reader saw the published state, whole

    def holds(d, want) -> bool:
        for v in range(0, 8):
            try:
                got = dict(d.at(v))
            except VersionNotFound:
                got = None
            if got != want.get(v):
                return False
        return d.check().ok

    if kind in ("eio", "torn"):        # the change was not applied: the handle says so
        assert holds(db, contents)
        db.close()
    elif kind == "fsync":
        with pytest.raises(DatabaseClosed):
            db.read()                    # closed: whether the change landed is unknown
    images = [io.crash_image()] + ([bytes(io.live)] if kind == "fsync" else [])
    for image in images:
        d = cowdb.open(io=MemoryIO(image), page_size=PAGE_SIZE)
        try:
            allowed = [contents] + ([after] if kind == "fsync" else [])
            assert any(holds(d, want) for want in allowed)
        finally:
            d.close()


@pytest.mark.parametrize("most", [1, 7, 4096])
def test_a_file_written_a_few_bytes_per_system_call_still_gets_every_byte(tmp_path,
                                                                          monkeypatch, most):
    """pwrite(2) may write less than asked (a signal, a nearly full quota): OsFileIO
    writes the rest, so a commit's pages and meta record land whole."""
    real = os.pwrite
    calls = []

    def short(fd, data, offset):
        calls.append(len(data))
        return real(fd, bytes(data)[:most], offset)

    path = str(tmp_path / "db")
    db = cowdb.open(path)
    monkeypatch.setattr(os, "pwrite", short)
    with db.write() as tx:
        tx.update({b"k%03d" % i: b"v" * 300 for i in range(40)})
    monkeypatch.setattr(os, "pwrite", real)
    db.close()
    assert any(n > most for n in calls)  # (it was cut short)
    with cowdb.open(path) as db:
        assert dict(db.read().items()) == {b"k%03d" % i: b"v" * 300 for i in range(40)}
