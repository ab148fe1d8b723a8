"""cowdb.documents: fractional keys, the word merge, saves and their merges, history,
diff, blame, undo, restore, revert-author (the issue's semantics, case by case),
hidden revisions, and the ``cowdb doc`` commands."""
import random
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

import cowdb
from cowdb.cli import cli
from cowdb.documents import (BlockNotFound, Document, InvalidName, NotARevision,
                             RevisionHidden, documents, merge_words)
from cowdb.documents import keys as fkeys
from cowdb.documents.merge import words

key_st = st.text(alphabet=fkeys.DIGITS, min_size=1, max_size=8).filter(fkeys.is_key)


# ---------------------------------------------------------------- keys
@given(st.lists(key_st, min_size=2, max_size=2, unique=True), st.integers(0, 2 ** 32))
def test_between_is_strictly_between(pair, seed):
    a, b = sorted(pair)
    rng = random.Random(seed)
    for lo, hi in ((a, b), (None, a), (b, None), (None, None)):
        k = fkeys.between(lo, hi, rng)
        assert fkeys.is_key(k)
        assert lo is None or lo < k
        assert hi is None or k < hi


def test_between_refuses_bad_order_and_keys():
    with pytest.raises(ValueError):
        fkeys.between("b", "a")
    with pytest.raises(ValueError):
        fkeys.between("a0", None)       # a key never ends in the smallest digit


def test_keys_stay_short_under_repeated_inserts():
    rng = random.Random(3)
    a = None
    for _ in range(1000):
        a = fkeys.between(a, None, rng)      # appending
    assert len(a) < 80
    b = None
    for _ in range(1000):
        b = fkeys.between(None, b, rng)      # prepending
    assert len(b) < 80
    ks = fkeys.spread(50_000, rng)
    assert ks == sorted(ks) and len(set(ks)) == len(ks) and max(map(len, ks)) <= 6


# ---------------------------------------------------------------- word merge
sentence = st.lists(st.sampled_from("a b c d e f g h".split()), min_size=3, max_size=12)


@given(sentence, st.data())
def test_merge_words_keeps_both_non_overlapping_edits(base, data):
    n = len(base)
    i = data.draw(st.integers(0, n - 3))
    j = data.draw(st.integers(i + 2, n - 1))       # a word apart at least
    ours, theirs = list(base), list(base)
    ours[i] = "X"
    theirs[j] = "Y"
    merged = merge_words(" ".join(base), " ".join(ours), " ".join(theirs))
    want = list(base)
    want[i], want[j] = "X", "Y"
    assert merged == " ".join(want)


def test_merge_words_conflicts_and_agreements():
    b = "the quick brown fox"
    assert merge_words(b, "the slow brown fox", "the fast brown fox") is None
    assert merge_words(b, "the slow brown fox", "the slow brown fox") == "the slow brown fox"
    assert merge_words(b, "a the quick brown fox", "b the quick brown fox") is None
    assert merge_words(b, "the quick brown fox jumps", "the very quick brown fox") == \
        "the very quick brown fox jumps"
    assert "".join(words("  two  words ")) == "  two  words "


# ---------------------------------------------------------------- saving
@pytest.fixture
def db():
    d = cowdb.open()
    yield d
    d.close()


def test_an_edit_writes_only_the_changed_block(db):
    doc = Document(db, "d")
    doc.save("\n\n".join(f"paragraph {i}" for i in range(100)), author="owner")
    r = doc.save_ops([("set", doc.blocks()[40].id, "changed")], author="ed")
    c = db.commit_info(r.revision)
    assert (c.stats.keys_put, c.stats.keys_deleted, c.author) == (1, 0, "ed")
    r = doc.save(doc.text().replace("paragraph 7\n", "seven\n"), author="ed")
    assert db.commit_info(r.revision).stats.keys_put == 1
    assert doc.paragraphs()[7] == "seven" and doc.paragraphs()[40] == "changed"


def test_concurrent_saves_merge(db):
    doc = Document(db, "d")
    base = doc.save("one two three\n\nfour five six\n\nseven", author="a").revision
    r1 = doc.save("one TWO three\n\nfour five six\n\nseven", base, author="b")
    r2 = doc.save("one two three\n\nfour five six\n\nseven eight", base, author="c")
    r3 = doc.save("one two THREE\n\nfour five six\n\nseven", base, author="d")
    assert not r1.merged and r2.merged and r3.merged and r3.ok
    assert doc.paragraphs() == ["one TWO THREE", "four five six", "seven eight"]
    r4 = doc.save("uno two three\n\nfour five six\n\nseven", base, author="e")
    assert r4.ok      # 'one' -> 'uno' does not touch what others changed
    r5 = doc.save("one deux three\n\nfour five six\n\nseven", base, author="f")
    assert r5.revision is None and not r5.ok
    (c,) = r5.conflicts
    assert (c.base, c.ours, c.theirs) == ("one two three", "one deux three", "uno TWO THREE")
    assert doc.paragraphs()[0] == "uno TWO THREE"     # not overwritten


def test_insert_between_and_concurrent_inserts_both_kept(db):
    doc = Document(db, "d")
    base = doc.save("a\n\nb", author="x").revision
    doc.save("a\n\nfrom y\n\nb", base, author="y")
    doc.save("a\n\nfrom z\n\nb", base, author="z")
    p = doc.paragraphs()
    assert p[0] == "a" and p[-1] == "b" and sorted(p[1:3]) == ["from y", "from z"]
    r = doc.save_ops([("insert", None, "top"), ("insert", ("op", 0), "second")], author="x")
    assert doc.paragraphs()[:2] == ["top", "second"] and len(r.inserted) == 2


def test_delete_against_edit_is_a_conflict(db):
    doc = Document(db, "d")
    base = doc.save("a\n\nb", author="x").revision
    bid = doc.blocks()[1].id
    doc.save_ops([("set", bid, "b edited")], base, author="y")
    r = doc.save_ops([("delete", bid)], base, author="z")
    assert r.conflicts[0].ours is None and doc.paragraphs() == ["a", "b edited"]


def test_bad_operations(db):
    doc = Document(db, "d")
    doc.save("a", author="x")
    with pytest.raises(BlockNotFound):
        doc.save_ops([("set", "zzzz", "t")], author="x")
    with pytest.raises(BlockNotFound):
        doc.save_ops([("set", "../x", "t")], author="x")
    with pytest.raises(ValueError):
        doc.save_ops([("move", "a")], author="x")
    with pytest.raises(ValueError):
        doc.save("b", author="")
    with pytest.raises(InvalidName):
        Document(db, "../etc")
    with pytest.raises(ValueError):
        Document(cowdb.open(codec="json"), "d")
    assert doc.paragraphs() == ["a"] and len(doc.revisions()) == 1


# ---------------------------------------------------------------- reading history
def test_read_by_number_tag_and_time(db):
    doc = Document(db, "d")
    r1 = doc.save("first", author="a").revision
    time.sleep(0.002)
    t = datetime.now(timezone.utc)
    time.sleep(0.002)
    doc.tag("v1", r1)
    doc.save("second", author="b")
    assert doc.text(r1) == doc.text("v1") == doc.text(t) == doc.text(str(r1)) == "first"
    assert doc.text(t.isoformat()) == "first" and doc.text() == "second"
    assert doc.tags() == {"v1": r1}
    other = Document(db, "other")
    other.save("x", author="a")
    assert documents(db) == ["d", "other"]
    revs = doc.revisions()
    assert [(r.number, r.author) for r in revs] == [(2, "b"), (1, "a")]
    assert revs[0].bytes_changed == len("second") and revs[0].blocks_changed == 1
    assert (revs[1].blocks_added, revs[1].blocks_deleted) == (1, 0)


def test_diff_and_blame(db):
    doc = Document(db, "d")
    r1 = doc.save("the cat sat\n\non the mat\n\nend", author="a").revision
    r2 = doc.save("the dog sat\n\non the mat\n\nend", author="b").revision
    r3 = doc.save("the dog sat\n\nend\n\nadded", author="c").revision
    (c,) = doc.diff(r2)
    assert c.kind == "modified" and ("-", "cat ") in c.segments and ("+", "dog ") in c.segments
    kinds = sorted(c.kind for c in doc.diff(r1, r3))
    assert kinds == ["added", "deleted", "modified"]
    assert [(b.text, b.author, b.revision) for b in doc.blame()] == [
        ("the dog sat", "b", r2), ("end", "a", r1), ("added", "c", r3)]


def test_undo_one_revision_in_the_middle(db):
    doc = Document(db, "d")
    doc.save("a\n\nb\n\nc", author="x")
    bad = doc.save("a\n\nB!\n\nc\n\nspam", author="v").revision
    doc.save("A\n\nB!\n\nc\n\nspam", author="y")
    r = doc.undo(bad, author="x")
    assert r.ok and doc.paragraphs() == ["A", "b", "c"]
    with pytest.raises(NotARevision):
        Document(db, "other").undo(bad, author="x")


def test_restore(db):
    doc = Document(db, "d")
    r1 = doc.save("a\n\nb", author="x").revision
    doc.save("c", author="y")
    r = doc.restore(r1, author="x")
    assert doc.paragraphs() == ["a", "b"] and doc.revisions()[0].op == "restore"
    assert doc.text(r.revision - 1) == "c"        # history is kept


# ---------------------------------------------------------------- revert-author
def test_revert_author_semantics(db):
    """The example of docs/documents.md."""
    doc = Document(db, "d")
    doc.save("\n\n".join(["p1", "p2", "p3", "p4", "p5"]), author="owner")
    ids = [b.id for b in doc.blocks()]
    doc.save_ops([("set", ids[0], "p1 by editor")], author="editor")
    since = datetime.now(timezone.utc)
    # the vandal deletes p2, defaces p3 and p4, inserts spam after p5
    doc.save_ops([("delete", ids[1]), ("set", ids[2], "SPAM"), ("set", ids[3], "SPAM too"),
                  ("insert", ids[4], "<script>alert(1)</script>")], author="vandal")
    # the editor fixes p4 by hand afterwards, and edits p5
    doc.save_ops([("set", ids[3], "p4 fixed by editor"), ("set", ids[4], "p5 by editor")],
                 author="editor")
    plan = doc.revert_author("vandal", since)
    assert len(plan.revisions) == 1
    kinds = {c.block: c.kind for c in plan.changes}
    assert kinds[ids[1]] == "restored" and kinds[ids[2]] == "reverted"
    assert sorted(kinds.values()) == ["removed", "restored", "reverted"]
    (kept,) = plan.kept
    assert kept.block == ids[3] and kept.later[0][1] == "editor"
    assert doc.text() != "preview changes nothing" and len(doc.revisions()) == 4
    r = plan.apply(author="owner")
    assert r.ok
    assert doc.paragraphs() == ["p1 by editor", "p2", "p3", "p4 fixed by editor", "p5 by editor"]
    assert [b.id for b in doc.blocks()] == ids          # p2 came back in its place
    assert doc.revisions()[0].op == "revert-author"


def test_revert_author_takes_back_only_the_trailing_run_and_respects_until(db):
    doc = Document(db, "d")
    doc.save("x", author="owner")
    (bid,) = [b.id for b in doc.blocks()]
    t0 = datetime.now(timezone.utc)
    doc.save_ops([("set", bid, "v1")], author="vandal")
    doc.save_ops([("set", bid, "fixed")], author="editor")
    doc.save_ops([("set", bid, "v2")], author="vandal")
    doc.save_ops([("set", bid, "v3")], author="vandal")
    plan = doc.revert_author("vandal", t0)
    assert [c.target for c in plan.changes] == ["fixed"]
    until = db.commit_info(plan.revisions[1]).time      # only up to "v2"
    plan2 = doc.revert_author("vandal", t0, until)
    assert plan2.changes == [] and plan2.kept[0].later[0][1] == "vandal"
    plan.apply(author="owner")
    assert doc.text() == "fixed"


def test_revert_author_merges_onto_a_moved_head(db):
    doc = Document(db, "d")
    doc.save("a b c\n\nd", author="owner")
    t0 = datetime.now(timezone.utc)
    doc.save("a b c\n\nd SPAM", author="vandal")
    plan = doc.revert_author("vandal", t0)
    doc.save("a b c\n\nchanged d SPAM", author="editor")    # after the preview
    r = plan.apply(author="owner")
    assert r.merged and r.ok and doc.paragraphs() == ["a b c", "changed d"]


# ---------------------------------------------------------------- hiding
def test_hidden_revision(db):
    doc = Document(db, "d")
    doc.save("fine", author="owner")
    leak = doc.save("fine\n\npassword=hunter2", author="ed").revision
    fixed = doc.save("fine", author="ed").revision
    doc.hide(leak, by="admin", reason="leaked secret")
    assert doc.text(leak) == "fine\n\npassword=hunter2"          # admins read it
    with pytest.raises(RevisionHidden):
        doc.text(leak, admin=False)
    with pytest.raises(RevisionHidden):
        doc.diff(leak, admin=False)
    with pytest.raises(RevisionHidden):
        doc.diff(fixed, admin=False)      # its parent is the hidden content
    assert doc.text(admin=False) == "fine"
    assert [r.hidden for r in doc.revisions()] == [False, True, False]
    assert [r.number for r in doc.revisions()] == [fixed, leak, leak - 1]  # history intact
    doc.unhide(leak, by="admin")
    assert doc.text(leak, admin=False).endswith("hunter2")


# ---------------------------------------------------------------- CLI
def run(path, *args, ok=True):
    r = CliRunner().invoke(cli, ["--db", path, *args])
    assert (r.exit_code == 0) == ok, r.output
    return r.output


def test_cli(tmp_path):
    path = str(tmp_path / "d.cow")
    with cowdb.open(path) as db:
        doc = Document(db, "hb")
        doc.save("one\n\ntwo\n\nthree", author="owner")
        doc.tag("first")
        since = datetime.now(timezone.utc) - timedelta(seconds=1)
        doc.save("one\n\nTWO SPAM\n\nthree\n\nfour", author="vandal")
    out = run(path, "doc", "log", "hb")
    assert "vandal" in out and "owner" in out
    assert '"author": "vandal"' in run(path, "doc", "log", "hb", "--json")
    assert run(path, "doc", "show", "hb", "--at", "first") == "one\n\ntwo\n\nthree\n"
    assert "vandal" in run(path, "doc", "blame", "hb")
    assert "{+TWO SPAM+}" in run(path, "doc", "diff", "hb", "2")
    out = run(path, "doc", "revert-author", "hb", "vandal", "--since", since.isoformat())
    assert "1 edited back" in out and "preview only" in out
    run(path, "doc", "revert-author", "hb", "vandal", "--since", "1h", "--apply",
        "--author", "owner")
    assert run(path, "doc", "show", "hb") == "one\n\ntwo\n\nthree\n"
    assert "Error" in run(path, "doc", "show", "hb", "--at", "nope", ok=False)


def test_a_pasted_run_of_paragraphs_gets_short_keys(db):
    doc = Document(db, "d")
    doc.save("\n\n".join(f"p{i}" for i in range(20_000)), author="x")
    doc.save(doc.text().replace("p5\n\n", "p5\n\n" + "\n\n".join(f"new{i}" for i in range(3000))
                                + "\n\n"), author="y")
    ids = [b.id for b in doc.blocks()]
    assert len(ids) == 23_000 and max(map(len, ids)) < 20
    assert doc.paragraphs()[6:9] == ["new0", "new1", "new2"]


def test_hiding_is_read_from_trusted_authors_only(db):
    doc = Document(db, "d")
    doc.save("ok", author="owner")
    leak = doc.save("ok\n\nsecret", author="ed").revision
    Document(db, "d").hide(leak, by="admin")
    Document(db, "d").unhide(leak, by="ed")           # a writer tries to show it again
    Document(db, "d").hide(1, by="ed")                # ... and to hide the owner's work
    trusted = Document(db, "d", trust=lambda author: author == "admin")
    assert set(trusted.hidden()) == {leak}
    with pytest.raises(RevisionHidden):
        trusted.text(leak, admin=False)
    assert trusted.text(1, admin=False) == "ok"
    assert set(Document(db, "d").hidden()) == {1}     # without trust: the keys as they are


def test_raw_writes_under_the_prefix_do_not_break_reading(db):
    doc = Document(db, "d")
    doc.save("a\n\nb", author="owner")
    bid = doc.blocks()[0].id
    with db.write(author="vandal") as tx:          # not through cowdb.documents
        tx[b"doc/d/b/" + bid.encode()] = b"\xff\xfe bad"
        tx[b"doc/d/m/hidden/garbage"] = b"\x00"
    assert doc.paragraphs()[0] == "\ufffd\ufffd bad" and doc.hidden() == {}
    assert doc.revisions()[0].op == "commit" and doc.blame()[0].author == "vandal"
    plan = doc.revert_author("vandal", doc.revisions()[1].time)
    plan.apply(author="owner")
    assert doc.paragraphs() == ["a", "b"]


def test_text_saves_pair_paragraphs_by_likeness():
    from cowdb.documents.model import text_ops
    old = [("A", "one fish"), ("B", "two fish"), ("C", "red fish blue fish")]
    # B deleted and C edited: not "B becomes C's text, C becomes the new paragraph"
    assert text_ops(old, ["one fish", "red fish, blue fish!", "new"]) == [
        ("delete", "B"), ("set", "C", "red fish, blue fish!"), ("insert", "C", "new")]
    # rewritten wholesale, as many paragraphs: edits in place
    assert text_ops(old, ["one fish", "SPAM", "SPAM"]) == [("set", "B", "SPAM"),
                                                           ("set", "C", "SPAM")]
    assert text_ops(old, ["x", "one fish", "two fish"]) == [
        ("insert", None, "x"), ("delete", "C")]


def test_saves_from_threads_on_one_handle_all_land(db):
    import threading
    doc = Document(db, "d")
    doc.save("\n\n".join(f"p{i}" for i in range(40)), author="owner")
    base = doc.head()
    ids = [b.id for b in doc.blocks()]
    errors = []

    def work(t):
        try:
            for i in range(t, 40, 4):
                r = Document(db, "d").save_ops([("set", ids[i], f"p{i} by t{t}")], base,
                                               author=f"t{t}")
                assert r.ok and r.revision is not None
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert doc.paragraphs() == [f"p{i} by t{i % 4}" for i in range(40)]
    assert len(doc.revisions()) == 41
