"""Stateful model test of cowdb.documents against a plain model.

The model keeps, for every revision, the document as {block id: text}; the
document's text is the texts in id order, as a plain list of strings. Random
saves by three authors from stale bases (block operations, and whole-text saves),
undo, restore and revert-author are checked against it after every step, and every
kept revision still reads as it was. A merge must keep every non-conflicting edit
of both sides exactly; a conflict leaves the block as the other side left it and
hands ours back.
"""
import random

import hypothesis.strategies as st
from conftest import model_settings
from hypothesis import given
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import cowdb
from cowdb.documents import Document, merge_words

AUTHORS = ["ann", "bob", "eve"]
WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)


def model_merge(b, o, h):
    """merge_block, restated on the model: (value, conflict)."""
    if o == h or h == b:
        return o, False
    if o == b:
        return h, False
    if b is None or o is None or h is None:
        return h, True
    m = merge_words(b, o, h)
    return (h, True) if m is None else (m, False)


def listing(state: dict) -> list[str]:
    return [state[k] for k in sorted(state)]


class DocumentMachine(RuleBasedStateMachine):
    @initialize(paras=st.lists(texts, min_size=0, max_size=6))
    def start(self, paras):
        self.db = cowdb.open()
        self.doc = Document(self.db, "doc", rng=random.Random(0))
        self.revs = {0: {}}          # version -> {id: text}
        self.info = {0: (None, None, None)}   # version -> (author, time, parent)
        self.order = [0]
        if paras:
            r = self.doc.save("\n\n".join(paras), author="ann")
            self._record(r.revision, "ann", dict(zip(
                [b.id for b in self.doc.blocks()], paras)))

    def _record(self, v, author, state):
        c = self.db.commit_info(v)
        assert c.author == author
        self.info[v] = (author, c.time, self.order[-1])
        self.order.append(v)
        self.revs[v] = dict(state)

    @property
    def head(self):
        return self.revs[self.order[-1]]

    def _apply(self, result, author, intents):
        """Check a result against intents {id: (base, ours)} merged onto the model head."""
        new = dict(self.head)
        want_conflicts = set()
        for bid, (b, o) in intents.items():
            h = new.get(bid)
            v, conflict = model_merge(b, o, h)
            if conflict:
                want_conflicts.add(bid)
                continue
            if v is None:
                new.pop(bid, None)
            else:
                new[bid] = v
        assert {c.block for c in result.conflicts} == want_conflicts
        for c in result.conflicts:
            assert c.theirs == self.head.get(c.block) and c.ours == intents[c.block][1]
        if new == self.head:
            assert result.revision is None
        else:
            assert result.revision is not None
            self._record(result.revision, author, new)

    @rule(data=st.data(), author=st.sampled_from(AUTHORS))
    def save_ops(self, data, author):
        base = data.draw(st.sampled_from(self.order[-4:]), label="base")
        state = self.revs[base]
        ids = sorted(state)
        ops, intents, pending = [], {}, []
        for _ in range(data.draw(st.integers(1, 4), label="nops")):
            kind = data.draw(st.sampled_from(["set", "insert", "delete"]))
            live = [i for i in ids if intents.get(i, (0, state[i]))[1] is not None]
            if kind in ("set", "delete") and live:
                bid = data.draw(st.sampled_from(live))
                if kind == "set":
                    t = data.draw(st.one_of(texts, st.just(state[bid] + " omega"),
                                            st.just("omega " + state[bid])))
                    ops.append(("set", bid, t))
                else:
                    ops.append(("delete", bid))
                    t = None
                intents[bid] = (state[bid], t)
            else:
                anchors = [None] + ids + pending
                after = data.draw(st.sampled_from(anchors))
                ops.append(("insert", after, data.draw(texts)))
                pending.append(("op", len(ops) - 1, after))
        ops2 = [(o[0], o[1] if not (o[0] == "insert" and isinstance(o[1], tuple))
                 else ("op", o[1][1])) + tuple(o[2:]) for o in ops]
        # anchors that are pending inserts are ("op", i, ...) tuples: pass ("op", i)
        ops2 = [(k, ("op", a[1]) if isinstance(a, tuple) else a, *rest)
                for k, a, *rest in ops2]
        result = self.doc.save_ops(ops2, base, author=author)
        inserted = iter(result.inserted)
        made = {}
        for i, o in enumerate(ops2):
            if o[0] == "insert":
                bid = next(inserted)
                made[i] = bid
                after = made[o[1][1]] if isinstance(o[1], tuple) else o[1]
                # the new id sorts right after its anchor, before the anchor's next block
                later = [k for k in ids + list(made.values()) if k != bid and
                         (after is None or k > after)]
                assert after is None or bid > after
                if later:
                    assert bid < min(later)
                intents[bid] = (None, o[2])
        assert result.base == base and result.head == self.order[-1]
        self._apply(result, author, intents)

    @rule(data=st.data(), author=st.sampled_from(AUTHORS))
    def save_text(self, data, author):
        paras = listing(self.head)
        for _ in range(data.draw(st.integers(1, 3))):
            kind = data.draw(st.sampled_from(["edit", "insert", "delete"]))
            if kind == "edit" and paras:
                i = data.draw(st.integers(0, len(paras) - 1))
                paras[i] = data.draw(texts)
            elif kind == "delete" and paras:
                del paras[data.draw(st.integers(0, len(paras) - 1))]
            else:
                paras.insert(data.draw(st.integers(0, len(paras))), data.draw(texts))
        result = self.doc.save("\n\n".join(paras), author=author)
        assert not result.conflicts
        assert self.doc.paragraphs() == paras
        if result.revision is None:
            assert paras == listing(self.head)
        else:
            self._record(result.revision, author, {b.id: b.text for b in self.doc.blocks()})

    @rule(data=st.data(), author=st.sampled_from(AUTHORS))
    def undo(self, data, author):
        if len(self.order) < 2:
            return
        v = data.draw(st.sampled_from(self.order[1:]))
        before, after = self.revs[self.info[v][2]], self.revs[v]
        intents = {k: (after.get(k), before.get(k)) for k in set(before) | set(after)
                   if before.get(k) != after.get(k)}
        self._apply(self.doc.undo(v, author=author), author, intents)

    @rule(data=st.data(), author=st.sampled_from(AUTHORS))
    def restore(self, data, author):
        v = data.draw(st.sampled_from(self.order))
        result = self.doc.restore(v, author=author)
        assert not result.conflicts
        if self.revs[v] == self.head:
            assert result.revision is None
        else:
            self._record(result.revision, author, self.revs[v])

    @rule(data=st.data(), author=st.sampled_from(AUTHORS), account=st.sampled_from(AUTHORS))
    def revert_author(self, data, author, account):
        if len(self.order) < 2:
            return
        since_v = data.draw(st.sampled_from(self.order[1:]))
        since = self.info[since_v][1]
        later = [v for v in self.order[1:] if v >= since_v]
        until_v = data.draw(st.one_of(st.none(), st.sampled_from(later)), label="until")
        until = None if until_v is None else self.info[until_v][1]
        window = [v for v in self.order[1:] if self.info[v][1] >= since]

        def mine(v):
            return self.info[v][0] == account and (until is None or self.info[v][1] <= until)
        # the model's reading of the rule, over whole states
        events = {}
        for v in window:
            before, after = self.revs[self.info[v][2]], self.revs[v]
            for k in set(before) | set(after):
                if before.get(k) != after.get(k):
                    events.setdefault(k, []).append((mine(v), before.get(k)))
        target = dict(self.head)
        kept = set()
        for k, ev in events.items():
            if not any(m for m, _ in ev):
                continue
            j = len(ev)
            while j and ev[j - 1][0]:
                j -= 1
            if j == len(ev):
                kept.add(k)
                continue
            if ev[j][1] is None:
                target.pop(k, None)
            else:
                target[k] = ev[j][1]
        plan = self.doc.revert_author(account, since, until)
        assert {k.block for k in plan.kept} == kept
        assert plan.revisions == [v for v in window if mine(v)]
        result = plan.apply(author=author)
        assert not result.conflicts
        if target == self.head:
            assert result.revision is None
        else:
            self._record(result.revision, author, target)

    @rule(data=st.data())
    def blame(self, data):
        lines = self.doc.blame()
        assert [b.text for b in lines] == listing(self.head)
        for b in lines:
            # the newest revision that changed this block, by the model
            for v in reversed(self.order[1:]):
                if self.revs[self.info[v][2]].get(b.block) != self.revs[v].get(b.block):
                    break
            assert b.revision == v and b.author == self.info[v][0]

    @invariant()
    def matches(self):
        if not hasattr(self, "doc"):
            return
        assert self.doc.paragraphs() == listing(self.head)
        assert self.doc.text() == "\n\n".join(listing(self.head))
        v = self.order[len(self.order) // 2]
        assert self.doc.paragraphs(v) == listing(self.revs[v])

    def teardown(self):
        if hasattr(self, "db"):
            assert [r.number for r in self.doc.revisions()] == list(reversed(self.order[1:]))
            self.db.close()


TestDocuments = DocumentMachine.TestCase
TestDocuments.settings = model_settings(examples=60, steps=30)


def _middle_by_bytes(a: bytes, b: bytes) -> int:
    """What a revision's bytes_changed counts for an edit, one byte at a time."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    j = 0
    while j < n - i and a[-1 - j] == b[-1 - j]:
        j += 1
    return max(len(a) - i - j, len(b) - i - j)


@given(st.binary(max_size=40), st.binary(max_size=40), st.binary(max_size=40),
       st.binary(max_size=40))
def test_changed_middle_matches_a_byte_walk(pre, a, b, post):
    from cowdb.documents.history import _middle
    old, new = pre + a + post, pre + b + post
    assert _middle(old, new) == _middle_by_bytes(old, new)
    assert _middle(new, old) == _middle_by_bytes(new, old)
