"""Documents (issue 16): what a revision costs on disk, and how fast saves and reads are.

    python bench/bench_documents.py               # the full run
    python bench/bench_documents.py --quick       # 200 revisions and a 2 MB document
    python bench/bench_documents.py --at HEAD     # cowdb as committed, not as edited
    python bench/bench_documents.py --breakdown   # and where a revision's bytes go
    python bench/bench_documents.py --sync        # the revisions saved durably

Storage: a 500-paragraph document (~100 KB of seeded words), then 1,000 revisions,
each replacing ~3 words of one random paragraph, by 5 authors in turn. The same
revisions go to
  cowdb      cowdb.documents on a file (one key per paragraph; a save writes one
             block): growth of the file per revision;
  git loose  one text file in a git repository, one commit per revision: growth of
             .git/objects per revision, loose objects as git writes them;
  git packed the same repository after `git gc --aggressive`: .git/objects / revisions;
  gzip       gzip -6 of the whole text of each revision (MediaWiki's model): mean size.
Then reading: the text of a random old revision vs the head's (best of rounds, ms).
With --breakdown, every image the revisions' commits queue, by kind, as
bench_version_cost.py counts them (its saves are then timed with the counting on).
The revisions are saved with durability="none" (no fsync; pages freed are reusable
only after a sync, which comes when 4 MiB of them wait), with --sync durably.

Speed: a 10 MB document (50,000 paragraphs of ~200 B). A one-paragraph edit saved
as a block operation (durable, and with durability="none"), ms, median of 50; reading
the head's text vs reading the same text from a file (open().read().decode()).

Targets (issue 16): <= 1 KiB/revision on disk (after the write-path issue); reading
any revision <= 2x the head; a one-paragraph save <= 5 ms; the head <= 2x a file.
"""
from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from _common import fresh_dir, median, timed  # noqa: E402

WORDS = ("time person year way day thing man world life hand part child eye woman place "
         "work week case point government company number group problem fact be have do "
         "say get make go know take see come think look want give use find tell ask seem "
         "feel try leave call good new first last long great little own other old right "
         "big high different small large next early young important few public bad same "
         "able to of in for on with at by from up about into over after").split()
AUTHORS = ["ann", "bob", "cho", "dev", "eve"]


def paragraph(rng, size=200) -> str:
    out, n = [], 0
    while n < size:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out).capitalize() + "."


def edit(rng, text: str) -> str:
    """Replace ~3 consecutive words of a paragraph."""
    ws = text.split(" ")
    i = rng.randrange(0, max(1, len(ws) - 3))
    ws[i:i + 3] = [rng.choice(WORDS) for _ in range(3)]
    return " ".join(ws)


def du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def git(repo, *args, env=None):
    subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, env=env)


def storage(cowdb, Document, revisions: int, workdir: str, breakdown: bool = False,
            durability: str = "none") -> dict:
    rng = random.Random(16)
    paras = [paragraph(rng) for _ in range(500)]
    # cowdb
    path = os.path.join(workdir, "doc.cow")
    db = cowdb.open(path, durability="none")
    doc = Document(db, "handbook", rng=random.Random(1))
    doc.save("\n\n".join(paras), author="owner")
    db.close()
    db = cowdb.open(path, durability=durability)
    doc = Document(db, "handbook", rng=random.Random(1))
    ids = [b.id for b in doc.blocks()]
    size0 = os.path.getsize(path)
    if breakdown:
        from bench_version_cost import ImageLog
        images = ImageLog(db)
    # git
    repo = os.path.join(workdir, "git")
    os.makedirs(repo)
    git(repo, "init", "-q")
    textfile = os.path.join(repo, "doc.txt")
    with open(textfile, "w") as f:
        f.write("\n\n".join(paras))
    env = dict(os.environ, GIT_AUTHOR_NAME="owner", GIT_AUTHOR_EMAIL="o@x",
               GIT_COMMITTER_NAME="owner", GIT_COMMITTER_EMAIL="o@x")
    git(repo, "add", "doc.txt", env=env)
    git(repo, "commit", "-q", "-m", "start", env=env)
    git0 = du(os.path.join(repo, ".git", "objects"))
    gz = []
    save_s = []
    for i in range(revisions):
        author = AUTHORS[i % len(AUTHORS)]
        j = rng.randrange(len(paras))
        paras[j] = edit(rng, paras[j])
        t0 = time.perf_counter()
        doc.save_ops([("set", ids[j], paras[j])], author=author, summary="edit")
        save_s.append(time.perf_counter() - t0)
        text = "\n\n".join(paras)
        with open(textfile, "w") as f:
            f.write(text)
        genv = dict(env, GIT_AUTHOR_NAME=author, GIT_AUTHOR_EMAIL=f"{author}@x")
        git(repo, "commit", "-q", "-a", "-m", "edit", env=genv)
        gz.append(len(gzip.compress(text.encode(), 6)))
    assert doc.text() == text
    if breakdown:
        images.close()
    db.close()
    cow = (os.path.getsize(path) - size0) / revisions
    loose = (du(os.path.join(repo, ".git", "objects")) - git0) / revisions
    git(repo, "gc", "-q", "--aggressive", "--prune=now")
    packed = du(os.path.join(repo, ".git", "objects")) / (revisions + 1)
    # reading any revision vs the head
    db = cowdb.open(path, readonly=True)
    doc = Document(db, "handbook")
    head = doc.head()
    old = [head - revisions + rng.randrange(revisions) for _ in range(20)]
    t_head = min(timed(doc.text, head)[0] for _ in range(20))
    t_old = min(timed(doc.text, v)[0] for v in old)
    t_old_med = median([timed(doc.text, v)[0] for v in old])
    t_revs = timed(doc.revisions)[0]
    t_blame = timed(doc.blame)[0]
    db.close()
    return {"bytes": len(text.encode()), "cowdb": cow, "git_loose": loose,
            "git_packed": packed, "gzip": sum(gz) / len(gz),
            "save_ms_median": median(save_s) * 1e3, "read_head_ms": t_head * 1e3,
            "read_old_ms": t_old * 1e3, "read_old_ms_median": t_old_med * 1e3,
            "revisions_list_ms": t_revs * 1e3, "blame_ms": t_blame * 1e3,
            "revisions": revisions, "images": images if breakdown else None}


def speed(cowdb, Document, megabytes: float, workdir: str) -> dict:
    rng = random.Random(10)
    n = int(megabytes * 1e6 / 201)
    paras0 = [paragraph(rng) for _ in range(n)]
    text = "\n\n".join(paras0)
    tfile = os.path.join(workdir, "doc.txt")
    with open(tfile, "w") as f:
        f.write(text)
    out = {"paragraphs": n, "bytes": len(text.encode())}
    for durability in ("sync", "none"):
        path = os.path.join(workdir, f"big-{durability}.cow")
        db = cowdb.open(path, durability=durability)
        doc = Document(db, "big", rng=random.Random(2))
        paras = list(paras0)
        t0 = time.perf_counter()
        doc.save(text, author="owner")
        out[f"load_s_{durability}"] = time.perf_counter() - t0
        ids = [b.id for b in doc.blocks()]
        ts = []
        for i in range(50):
            j = rng.randrange(n)
            new = edit(rng, paras[j])
            paras[j] = new
            t0 = time.perf_counter()
            doc.save_ops([("set", ids[j], new)], author=AUTHORS[i % 5])
            ts.append(time.perf_counter() - t0)
        out[f"save_ms_{durability}"] = median(ts) * 1e3
        out[f"save_ms_{durability}_max"] = max(ts) * 1e3
        if durability == "none":
            text = "\n\n".join(paras)
            with open(tfile, "w") as f:
                f.write(text)
            assert doc.text() == text

            def from_file():
                with open(tfile, encoding="utf-8") as f:
                    return f.read()
            def scan():     # the engine's part of doc.text(): the blocks joined, as bytes
                with db.read() as snap:
                    return snap.join_values(b"\n\n", prefix=doc.bprefix)
            # interleaved, best of 15 each: the machine's load moves both alike
            runs: dict[str, list[float]] = {"head": [], "file": [], "scan": []}
            for _ in range(15):
                for k, fn in (("head", doc.text), ("file", from_file), ("scan", scan)):
                    runs[k].append(timed(fn)[0])
            out["read_head_ms"] = min(runs["head"]) * 1e3
            out["read_file_ms"] = min(runs["file"]) * 1e3
            out["read_scan_ms"] = min(runs["scan"]) * 1e3
            out["read_blocks_ms"] = min(timed(doc.blocks)[0] for _ in range(3)) * 1e3
        db.close()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--at", default=None, help="measure cowdb as of this commit")
    ap.add_argument("--breakdown", action="store_true",
                    help="count a revision's images by kind (bench_version_cost.py's table)")
    ap.add_argument("--sync", action="store_true", help="save the 1,000 revisions durably")
    args = ap.parse_args(argv)
    where = _common.use_cowdb(args.at)
    import cowdb
    from cowdb.documents import Document
    work = fresh_dir("bench-documents-")
    try:
        revisions = 200 if args.quick else 1000
        mb = 2 if args.quick else 10
        print(f"cowdb from {where}; {_common.machine()}")
        s = storage(cowdb, Document, revisions, work, args.breakdown,
                    "sync" if args.sync else "none")
        print(f"\nstorage: {s['bytes']:,} B document, {s['revisions']} revisions of ~3 words"
              f"{', saved durably' if args.sync else ''}")
        kib = 1024
        for k, label in (("cowdb", "cowdb (file growth)"), ("git_loose", "git, loose objects"),
                         ("git_packed", "git after gc --aggressive"),
                         ("gzip", "gzip of the full text")):
            print(f"  {label:<28} {s[k]:>10,.0f} B/revision  ({s[k] / kib:.2f} KiB)")
        print(f"  target <= 1 KiB/revision: {'met' if s['cowdb'] <= kib else 'not met'}")
        if s["images"] is not None:
            print(f"\n  the images a revision's commit queues (mean per revision, "
                  f"unit {s['images'].unit} B):")
            s["images"].report(revisions, per="revision", scale=1)
            print()
        print(f"  save (one block, no fsync), median: {s['save_ms_median']:.3f} ms")
        ratio = s["read_old_ms"] / s["read_head_ms"]
        print(f"  read the head {s['read_head_ms']:.3f} ms; a random old revision "
              f"{s['read_old_ms']:.3f} ms best, {s['read_old_ms_median']:.3f} median: "
              f"{ratio:.2f}x (target <= 2x)")
        print(f"  revision list of {revisions}: {s['revisions_list_ms']:.0f} ms; blame "
              f"{s['blame_ms']:.0f} ms")
        p = speed(cowdb, Document, mb, work)
        print(f"\nspeed: {p['bytes'] / 1e6:.1f} MB document, {p['paragraphs']:,} paragraphs "
              f"(loaded in {p['load_s_sync']:.1f} s)")
        print(f"  one-paragraph save as a block op, durable: {p['save_ms_sync']:.3f} ms median "
              f"(max {p['save_ms_sync_max']:.2f}); without fsync: {p['save_ms_none']:.3f} ms "
              f"(target <= 5 ms)")
        print(f"  read the head's text: {p['read_head_ms']:.2f} ms; the same text from a "
              f"file: {p['read_file_ms']:.2f} ms: {p['read_head_ms'] / p['read_file_ms']:.2f}x "
              f"(target <= 2x); as Block objects {p['read_blocks_ms']:.1f} ms")
        print(f"  of the head's time, the engine's part (the blocks' range joined as bytes, "
              f"join_values): {p['read_scan_ms']:.2f} ms "
              f"({p['read_scan_ms'] / p['read_file_ms']:.2f}x the file read); the rest decodes "
              f"UTF-8, as the file read does")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
