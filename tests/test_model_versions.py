"""Stateful model test of versions and timelines.

The model keeps a dict per version, the parents of each version, branch
heads, tags and the retention rule. Random commits on branches, tags,
restores, diffs, merges (every resolve mode), reverts, branch deletion,
gc(), reopening, and going on in a compact() or backup() copy are checked
against it: every kept version matches its dict and its parents (as gc
rewires them), reclaimed ones raise VersionReclaimed, open snapshots never
change.
"""
import os
import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import event
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import cowdb
from conftest import KINDS, check_store_counters, forget, location, model_settings
from cowdb.errors import MergeConflict, RefExists, VersionReclaimed
from windows import in_window

KEYS = [b"k%02d" % i for i in range(40)]
keys = st.sampled_from(KEYS)
values = st.one_of(st.sampled_from([b"a", b"b", b"c"]), st.binary(max_size=30),
                   st.binary(min_size=300, max_size=400))
ops = st.lists(st.tuples(keys, st.one_of(st.none(), values)), min_size=1, max_size=25)
names = st.sampled_from(["b1", "b2", "b3"])
resolves = st.sampled_from([None, "ours", "theirs", "fn"])


def fn_resolve(key, base, ours, theirs):
    return None if ours is None else ours + b"!"


def write_changes(tx, content: dict, changes) -> None:
    """Apply (key, value or None to delete) pairs to a transaction and its model dict."""
    for k, v in changes:
        if v is None:
            tx.delete(k)
            content.pop(k, None)
        else:
            tx[k] = v
            content[k] = v


def model_merge(base, ours, theirs, resolve):
    """Three-way merge of dicts: (result, conflicts)."""
    result, conflicts = dict(ours), []
    for k in set(base) | set(theirs):
        b, t, o = base.get(k), theirs.get(k), ours.get(k)
        if b == t or o == t:
            continue
        if o == b:
            value = t
        elif resolve is None:
            conflicts.append(k)
            continue
        else:
            value = {"ours": o, "theirs": t}.get(resolve) if resolve != "fn" else \
                fn_resolve(k, b, o, t)
        if value is None:
            result.pop(k, None)
        else:
            result[k] = value
    return result, conflicts


class VersionsModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.path = tempfile.mkdtemp() + "/v.cow"
        self.db = self.reader = None
        self.copies = 0  # files go_on_in_a_copy made

    @initialize(kind=st.sampled_from(KINDS))
    def open_db(self, kind):
        self.in_memory = kind == "memory"
        self.kind = kind
        self.path = location(kind, os.path.dirname(self.path))
        self.db = cowdb.open(self.path, page_size=1024)
        # a second handle on the file: it adopts every change (pending ref changes in the
        # meta record included) the way another process does
        self.reader = None if self.in_memory else cowdb.open(
            self.path, readonly=True, **({"refresh_interval": 0} if "://" in kind else {}))
        self.content = {0: {}}
        self.parents = {0: ()}
        self.heads = {"main": 0}
        self.tags = {}
        self.reclaimed = set()
        self.keep_last = None
        self.snaps = []

    def teardown(self):
        for s, _ in self.snaps:
            s.close()
        for db in (self.db, self.reader):
            if db is not None:
                db.close()
        forget(self.path)

    def _new_version(self, branch, content, parents):
        v = max(self.content) + 1
        self.content[v] = content
        self.parents[v] = parents
        self.heads[branch] = v
        return v

    def _existing(self):
        return sorted(set(self.content) - self.reclaimed)

    # ---- writes ----------------------------------------------------------
    @rule(data=st.data(), changes=ops, durability=st.sampled_from(["sync", "none"]))
    def commit(self, data, changes, durability):
        branch = data.draw(st.sampled_from(sorted(self.heads)))
        content = dict(self.content[self.heads[branch]])
        with self.db.write(branch=branch, message="c", durability=durability) as tx:
            write_changes(tx, content, changes)
        if content == self.content[self.heads[branch]]:  # changes nothing: no version
            assert tx.skipped and tx.version == self.heads[branch]
        else:
            assert tx.version == self._new_version(branch, content, (self.heads[branch],))
        assert self.db.branches() == self.heads

    @rule(name=names, data=st.data())
    def branch(self, name, data):
        at = data.draw(st.sampled_from(self._existing()))
        if name in self.heads:
            try:
                self.db.branch(name, at=at)
            except RefExists:
                return
            raise AssertionError("branching onto an existing name must raise RefExists")
        assert self.db.branch(name, at=at) == at
        self.heads[name] = at

    @precondition(lambda self: len(self.heads) > 1)
    @rule(data=st.data())
    def delete_branch(self, data):
        name = data.draw(st.sampled_from(sorted(set(self.heads) - {"main"})))
        self.db.delete_branch(name)
        del self.heads[name]

    @rule(name=st.sampled_from(["t1", "t2"]), data=st.data())
    def tag(self, name, data):
        v = data.draw(st.sampled_from(self._existing()))
        if name in self.tags:
            try:
                self.db.tag(name, v)
            except RefExists:
                return
            raise AssertionError("re-tagging must raise RefExists")
        assert self.db.tag(name, v) == v
        self.tags[name] = v

    @precondition(lambda self: self.tags)
    @rule(data=st.data())
    def delete_tag(self, data):
        name = data.draw(st.sampled_from(sorted(self.tags)))
        self.db.delete_tag(name)
        del self.tags[name]

    @rule(data=st.data())
    def restore(self, data):
        v = data.draw(st.sampled_from(self._existing()))
        got = self.db.restore(v)
        assert got == self._new_version("main", dict(self.content[v]), (self.heads["main"],))

    def _merge_base(self, a, b):
        def ancestors(v):
            seen, todo = set(), [v]
            while todo:
                x = todo.pop()
                if x not in seen:
                    seen.add(x)
                    todo.extend(self.parents[x])
            return seen
        common = (ancestors(a) & ancestors(b)) - self.reclaimed
        return max(common) if common else None

    @precondition(lambda self: len(self.heads) > 1)
    @rule(data=st.data(), resolve=resolves)
    def merge(self, data, resolve):
        src = data.draw(st.sampled_from(sorted(self.heads)))
        into = data.draw(st.sampled_from(sorted(set(self.heads) - {src})))
        s, d = self.heads[src], self.heads[into]
        base = self._merge_base(d, s)
        if base is None:
            try:
                self.db.merge(src, into=into)
            except VersionReclaimed:
                return
            raise AssertionError("a merge without a kept common ancestor must fail")
        r = fn_resolve if resolve == "fn" else resolve
        if base == s:
            assert self.db.merge(src, into=into, resolve=r) == d
            return
        if base == d:
            assert self.db.merge(src, into=into, resolve=r) == s
            self.heads[into] = s
            return
        want, conflicts = model_merge(self.content[base], self.content[d], self.content[s],
                                      resolve)
        event(f"merge: {len(conflicts)} conflicts, resolve={resolve}")
        if conflicts:
            try:
                self.db.merge(src, into=into, resolve=r)
            except MergeConflict as e:
                assert sorted(c.key for c in e.conflicts) == sorted(conflicts)
                for c in e.conflicts:
                    assert (c.base, c.ours, c.theirs) == (self.content[base].get(c.key),
                                                          self.content[d].get(c.key),
                                                          self.content[s].get(c.key))
                return
            raise AssertionError("conflicting merge without resolve must raise")
        got = self.db.merge(src, into=into, resolve=r)
        assert got == self._new_version(into, want, (d, s))

    @rule(data=st.data(), resolve=resolves)
    def revert(self, data, resolve):
        v = data.draw(st.sampled_from(self._existing()))
        ps = self.parents[v]
        if any(p in self.reclaimed for p in ps):  # the inverse of v needs its parents
            try:
                self.db.revert(v)
            except VersionReclaimed:
                return
            raise AssertionError("reverting a version whose parent was reclaimed must raise")
        before = self.content[ps[0]] if ps else {}
        head = self.heads["main"]
        want, conflicts = model_merge(self.content[v], self.content[head], before, resolve)
        r = fn_resolve if resolve == "fn" else resolve
        if conflicts:
            try:
                self.db.revert(v, resolve=r)
            except MergeConflict as e:
                assert sorted(c.key for c in e.conflicts) == sorted(conflicts)
                return
            raise AssertionError("conflicting revert without resolve must raise")
        if want == self.content[head]:  # already undone: no version
            assert self.db.revert(v, resolve=r) == head
            return
        assert self.db.revert(v, resolve=r) == self._new_version("main", want, (head,))

    @rule(n=st.one_of(st.none(), st.integers(1, 6)))
    def set_retention(self, n):
        self.db.set_retention(keep_last=n)
        self.keep_last = n

    @rule()
    def gc(self):
        self.db.gc()
        self.gc_model()

    def gc_model(self):
        if self.keep_last is None:
            return
        existing = self._existing()
        keep = set(existing[-self.keep_last:]) | set(self.heads.values()) | set(
            self.tags.values()) | {existing[-1]}
        self.reclaimed |= set(existing) - keep
        event(f"gc reclaimed {len(set(existing) - keep)}")
        assert self.db.check().ok

    @rule(data=st.data(), changes=ops, point=st.sampled_from(["flushed", "meta"]),
          gc=st.booleans())
    def write_while_another_thread_reads(self, data, changes, point, gc):
        """A commit on a branch, or gc(), runs in a thread; this one reads inside its
        publish window (issue 13) through both handles: kept versions, open snapshots,
        refs, check(), all as published before it. gc frees pages those reads use."""
        before = self._existing()
        recent = before[-4:]
        if gc:
            write = self.db.gc
        else:
            branch = data.draw(st.sampled_from(sorted(self.heads)))
            content = dict(self.content[self.heads[branch]])

            def write():
                with self.db.write(branch=branch, message="t", allow_empty=True) as tx:
                    write_changes(tx, content, changes)
                return tx.version

        heads_after = dict(self.heads)
        if not gc:
            heads_after[branch] = max(self.content) + 1

        def read():
            out = []
            for v in recent:  # this handle: the state published before the write
                with self.db.at(v) as snap:
                    out.append(dict(snap.items()) == self.content[v])
            out.append(self.db.branches() == self.heads and self.db.tags() == self.tags)
            out += [dict(s.items()) == want for s, want in self.snaps]
            if self.reader is not None:  # another handle, as another process: it may see
                for v in recent:         # the meta record already, so old or new
                    try:
                        with self.reader.at(v) as snap:
                            out.append(dict(snap.items()) == self.content[v])
                    except VersionReclaimed:
                        out.append(gc and point == "meta")
                out.append(self.reader.branches() in (self.heads, heads_after))
            out.append(self.db.check().errors)
            return out

        result, got, fired = in_window(self.db, write, read, point)
        if fired or not gc:  # gc with nothing to drop writes no txn
            assert got[:-1] == [True] * (len(got) - 1) and got[-1] == []
        if gc:
            self.gc_model()
        else:
            assert result == self._new_version(branch, content, (self.heads[branch],))

    # ---- reads -----------------------------------------------------------
    @rule(data=st.data())
    def diff(self, data):
        vs = self._existing()
        a, b = data.draw(st.sampled_from(vs)), data.draw(st.sampled_from(vs))
        ma, mb = self.content[a], self.content[b]
        want = [(k, ma.get(k), mb.get(k)) for k in sorted(set(ma) | set(mb))
                if ma.get(k) != mb.get(k)]
        d = self.db.diff(a, b)
        assert [tuple(c) for c in d] == want
        lo = data.draw(keys)
        assert [tuple(c) for c in self.db.diff(a, b, start=lo)] == [w for w in want
                                                                    if w[0] >= lo]

    @rule(data=st.data())
    def reclaimed_raise(self, data):
        if not self.reclaimed:
            return
        v = data.draw(st.sampled_from(sorted(self.reclaimed)))
        try:
            self.db.at(v)
        except VersionReclaimed:
            return
        raise AssertionError(f"version {v} was reclaimed and must raise VersionReclaimed")

    @rule(data=st.data())
    def open_snapshot(self, data):
        v = data.draw(st.sampled_from(self._existing()))
        self.snaps.append((self.db.at(v), dict(self.content[v])))

    @precondition(lambda self: not self.in_memory)
    @rule()
    def reopen(self):
        for s, _ in self.snaps:
            s.close()
        self.snaps.clear()
        self.db.close()
        self.db = cowdb.open(self.path)

    @precondition(lambda self: self.kind == "file")
    @rule()
    def open_a_copy_as_a_crash_leaves_it(self):
        """The file as a kill -9 now would leave it (the page cache has every write that
        returned): every acknowledged change is there."""
        copy = self.path + ".crash"
        shutil.copyfile(self.path, copy)
        try:
            with cowdb.open(copy) as db:
                assert db.branches() == self.heads and db.tags() == self.tags
                assert db.version == max(self.content)
        finally:
            os.unlink(copy)
            if os.path.exists(copy + "-lock"):
                os.unlink(copy + "-lock")

    @precondition(lambda self: self.kind == "file")
    @rule(how=st.sampled_from(["compact", "backup"]))
    def go_on_in_a_copy(self, how):
        """compact() or backup() into a new file, then go on in the copy: it holds every
        version the model keeps (compact drops what gc would, backup nothing), their
        parents, the branches, tags and retention rule, and takes commits, merges and gc
        as its source did (its nodes are deltas on copied bases: tree/copy.py)."""
        old = self.path
        self.copies += 1  # (a name per copy: one grown by each copy passed 255 bytes)
        self.path = os.path.join(os.path.dirname(old), f"{how}-{self.copies}.cow")
        getattr(self.db, how)(self.path)
        for s, _ in self.snaps:
            s.close()
        self.snaps.clear()
        for db in (self.db, self.reader):
            db.close()
        for name in (old, old + "-lock"):
            if os.path.exists(name):
                os.unlink(name)
        self.db = cowdb.open(self.path)
        self.reader = cowdb.open(self.path, readonly=True)
        if how == "compact":
            self.gc_model()  # (which checks the copy)
        else:
            assert self.db.check().ok
        for v in self._existing():
            with self.db.at(v) as snap:
                assert dict(snap.items()) == self.content[v]
            assert self.db.commit_info(v).parents == self._kept_parents(v)

    def _kept_parents(self, v):
        """v's parents as gc leaves them: each reclaimed one replaced by its nearest kept
        ancestors, in order, each once."""
        out = []
        for p in self.parents[v]:
            for a in (self._kept_parents(p) if p in self.reclaimed else (p,)):
                if a not in out:
                    out.append(a)
        return tuple(out)

    @invariant()
    def everything_matches(self):
        if self.db is None:
            return
        for s, want in self.snaps:
            assert dict(s.items()) == want
        for v in self._existing()[-4:]:
            with self.db.at(v) as snap:
                assert dict(snap.items()) == self.content[v]
            assert self.db.commit_info(v).parents == self._kept_parents(v)
        for name, v in self.heads.items():
            with self.db.read(branch=name) as snap:
                assert snap.version == v
        assert self.db.tags() == self.tags and self.db.branches() == self.heads
        if self.reader is not None:
            assert self.reader.tags() == self.tags and self.reader.branches() == self.heads
        for name, v in self.tags.items():
            assert self.db.at(name).version == v
        check_store_counters(self.db)


VersionsModel.TestCase.settings = model_settings(100, 60)  # 6,000 steps
TestVersionsModel = VersionsModel.TestCase


def test_the_model_goes_on_through_many_copies():
    """A run of copies one after another (hypothesis found 25): each copy's file name
    stays short (it once grew with every copy, past the 255 bytes a name may have)."""
    m = VersionsModel()
    m.open_db("file")
    try:
        for i in range(30):
            m.go_on_in_a_copy("compact" if i % 3 else "backup")
        assert len(os.path.basename(m.path)) < 40
    finally:
        m.teardown()
