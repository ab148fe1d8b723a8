"""The stateful model test: random writes, commits, aborts, snapshots and reopenings
checked against a model that keeps one dict per version.
"""
import hypothesis.strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, initialize,
                                 invariant, precondition, rule)

import cowdb
from conftest import KINDS, check_store_counters, forget, location, model_settings
from cowdb.errors import TransactionClosed
from windows import in_window

# Few distinct keys so that updates and deletes hit existing ones; some values
# are big enough to go to overflow pages, some keys long enough to split fast.
keys = st.builds(lambda i, pad: b"k%03d" % i + b"x" * pad, st.integers(0, 60),
                 st.sampled_from([0, 0, 0, 40, 150]))
values = st.one_of(st.binary(max_size=12), st.binary(min_size=900, max_size=1200),
                   st.builds(lambda n: bytes([n % 256]) * (3000 + n), st.integers(0, 50)))


class DatabaseModel(RuleBasedStateMachine):
    """The model: versions[v] is the dict committed as version v."""

    snaps = Bundle("snaps")
    scans = Bundle("scans")

    def __init__(self):
        super().__init__()
        import tempfile
        self.dir = tempfile.mkdtemp()
        self.path = self.dir + "/model.cow"
        self.db = None
        self.tx = None
        self.live = {}     # the open transaction's view
        self.versions = {}
        self.open_snaps = []

    @initialize(kind=st.sampled_from(KINDS), page_size=st.sampled_from([1024, 4096]),
                cache_nodes=st.sampled_from([16, 65536]))
    def open_db(self, kind, page_size, cache_nodes):
        self.in_memory = kind == "memory"
        self.path = location(kind, self.dir)
        # one handle per object store here: lease=0 reuses pages at once, as a file does
        self.options = {"lease": 0} if "://" in kind else {}
        # a small node cache evicts often: threads below meet inside it
        self.db = cowdb.open(self.path, page_size=page_size, cache_nodes=cache_nodes,
                             **self.options)
        self.versions[0] = {}

    def teardown(self):
        if self.tx is not None:
            self.tx.abort()
        for s in self.open_snaps:
            s.close()
        if self.db is not None:
            self.db.close()
        forget(self.path)

    # ---- writing -------------------------------------------------------
    @precondition(lambda self: self.tx is None)
    @rule(durability=st.sampled_from(["sync", "none"]))
    def begin(self, durability):
        self.tx = self.db.write(message="m", durability=durability)
        self.live = dict(self.versions[self.db.version])

    @precondition(lambda self: self.tx is not None)
    @rule(k=keys, v=values)
    def put(self, k, v):
        self.tx[k] = v
        self.live[k] = v

    @precondition(lambda self: self.tx is not None)
    @rule(k=keys)
    def delete(self, k):
        assert self.tx.delete(k) == (k in self.live)
        self.live.pop(k, None)

    @precondition(lambda self: self.tx is not None)
    @rule(n=st.integers(1, 400), v=values)
    def put_many(self, n, v):
        batch = {b"bulk%05d" % i: v for i in range(0, n * 7, 7)}
        self.tx.update(batch)
        self.live.update(batch)

    @precondition(lambda self: self.tx is not None)
    @rule(n=st.integers(1, 400))
    def delete_many(self, n):
        for k in sorted(self.live)[:n]:
            del self.tx[k]
            del self.live[k]

    @precondition(lambda self: self.tx is not None)
    @rule()
    def commit(self):
        head = max(self.versions)
        v = self.tx.commit()
        if self.live == self.versions[head]:  # nothing changed: no new version
            assert self.tx.skipped and v == head
            self.tx = None
            return
        assert v == head + 1
        self.versions[v] = self.live
        self.tx = None
        assert self.db.version == v

    # a transaction that changes nothing publishes nothing (no window to read in)
    @precondition(lambda self: self.tx is not None and
                  self.live != self.versions[max(self.versions)])
    @rule(point=st.sampled_from(["flushed", "meta"]), data=st.data())
    def commit_while_another_thread_reads(self, point, data):
        """The commit runs in a thread; this one reads inside its publish window (issue
        13): the newest version, an older one, check(); all as published before it."""
        before = self.db.version
        old = data.draw(st.sampled_from(sorted(self.versions)))
        snap = data.draw(st.sampled_from(self.open_snaps)) if self.open_snaps else None

        def read():
            with self.db.read() as s:
                head = (s.version, dict(s.items()))
            with self.db.at(old) as s:
                older = dict(s.items())
            mine = None if snap is None or snap._tree is None else dict(snap.items())
            return head, older, mine, self.db.version, self.db.check().errors

        v, (head, older, mine, version, errors), fired = in_window(self.db, self.tx.commit,
                                                                   read, point)
        assert fired
        assert head == (before, self.versions[before])
        assert older == self.versions[old]
        assert mine is None or mine == self.versions[snap.version]
        assert version == before and errors == []
        assert v == before + 1
        self.versions[v] = self.live
        self.tx = None
        assert self.db.version == v

    @precondition(lambda self: self.tx is not None)
    @rule()
    def abort(self):
        self.tx.abort()
        self.tx = None

    # ---- reading -------------------------------------------------------
    @rule(target=snaps, data=st.data())
    def snapshot(self, data):
        v = data.draw(st.sampled_from(sorted(self.versions)))
        s = self.db.at(v)
        self.open_snaps.append(s)
        return (s, v)

    @rule(s=snaps)
    def check_snapshot(self, s):
        snap, v = s
        if snap._tree is None:
            return
        model = self.versions[v]
        assert len(snap) == len(model)
        assert list(snap.items()) == sorted(model.items())

    @rule(target=scans, s=snaps, n=st.integers(0, 30))
    def start_scan(self, s, n):
        """A scan begun and left open across what the rules do next (a writer's put takes
        only the lists of nodes nothing else holds: tree/node.py's restore_base)."""
        snap, v = s
        if snap._tree is None:
            return None
        scan = iter(snap.items())
        return scan, [pair for _, pair in zip(range(n), scan)], v

    @rule(sc=consumes(scans))
    def finish_scan(self, sc):
        if sc is None:
            return
        scan, seen, v = sc
        try:
            seen += scan
        except TransactionClosed:
            return  # (its snapshot closed meanwhile, or the database reopened)
        assert seen == sorted(self.versions[v].items())

    @rule(s=snaps, a=keys, b=keys, reverse=st.booleans())
    def check_range(self, s, a, b, reverse):
        snap, v = s
        if snap._tree is None:
            return
        model = sorted(self.versions[v].items())
        want = [(k, x) for k, x in model if a <= k < b]
        got = list(snap.items(a, b, reverse=reverse))
        assert got == (want[::-1] if reverse else want)
        assert snap.count(a, b) == len(want)
        p = a[:3]
        assert list(snap.keys(prefix=p)) == [k for k, _ in model if k.startswith(p)]

    @precondition(lambda self: self.tx is not None)
    @rule(a=keys)
    def tx_reads_own_writes(self, a):
        assert self.tx.get(a) == self.live.get(a)
        assert len(self.tx) == len(self.live)

    @precondition(lambda self: self.tx is None and not self.in_memory)
    @rule()
    def reopen(self):
        for s in self.open_snaps:
            s.close()
        self.open_snaps.clear()
        self.db.close()
        self.db = cowdb.open(self.path, **self.options)

    @rule(s=snaps)
    def close_snapshot(self, s):
        s[0].close()
        try:
            len(s[0])
        except TransactionClosed:
            return
        raise AssertionError("a closed snapshot must refuse reads")

    @invariant()
    def latest_matches(self):
        if self.db is None:
            return
        with self.db.read() as snap:
            model = self.versions[self.db.version]
            assert snap.version == self.db.version
            assert len(snap) == len(model)
            for k in list(model)[:5]:
                assert snap[k] == model[k]
        check_store_counters(self.db)


DatabaseModel.TestCase.settings = model_settings(120, 50)  # 6,000 steps
TestDatabaseModel = DatabaseModel.TestCase
