"""Coverage-guided fuzzing of cowdb's decoders with atheris (issue 18; see tests/fuzz/README.md).

    python3 tests/fuzz/run.py TARGET [libFuzzer options, e.g. -max_total_time=25]

TARGET is one of harnesses.TARGETS. The corpus starts from real images (seeds below) and
is kept in a temporary directory. A failing input is written to crash-* / timeout-* in
the working directory: copy it to tests/fuzz/regressions/TARGET-NAME so that
tests/test_fuzz_regressions.py replays it, then fix the decoder.
"""
import os
import sys
import tempfile
from array import array

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports(include=["cowdb", "harnesses"]):
    import harnesses

from cowdb.history.commits import Commit, CommitStats  # noqa: E402
from cowdb.pages import meta  # noqa: E402
from cowdb.pages.freelist import FreeList  # noqa: E402
from cowdb.tree import node  # noqa: E402


def seeds(target: str) -> list[bytes]:
    """Real images of what the target decodes."""
    leaf = node.Leaf([b"a", b"bc", b"d"], [b"1", b"", b"xyz"], 0)
    big = node.Leaf([b"k"], [node.Overflow(9, 5000, 77, 3)], 0, big=True)
    branch = node.Branch([b"", b"m"], [4, 5], *(array(node.U64, f) for f in
                                                 ([3, 2], [11, 12], [1, 2])), 0)
    fl = FreeList()
    fl.free(3, 10, 4)
    fl.free(4, 20)
    fl.release(3)
    m = meta.Meta(5, 4, 4096, meta.RootRef(7, 8, 5), meta.RootRef(9, 10, 5), 48, 12,
                  pending=b"\x92\xc4\x02bm\xc4\x08" + bytes(8))
    commit = Commit(1, 123, meta.RootRef(7, 8, 1), 3, (), "m", "a", "main", 1,
                    CommitStats(1, 0, 2, 100), False)
    return {"node": [bytes(node.encode_leaf(leaf, 1)), bytes(node.encode_leaf(big, 2)),
                     bytes(node.encode_branch(branch, 3))],
            "tree_c": [bytes(node.encode_leaf(leaf, 1)), bytes(node.encode_branch(branch, 3))],
            "meta": [m.encode(), m._replace(pending=b"").encode()],
            "catalog": [commit.encode(), m.pending],
            "freelist": [fl.encode(), fl.encode_delta((2, 3, 4, 5))],
            "chain": harnesses.chain_seeds()}[target]


def main() -> None:
    target = sys.argv[1]
    test = harnesses.TARGETS[target]
    corpus = tempfile.mkdtemp(prefix=f"cowdb-fuzz-{target}-")
    for i, seed in enumerate(seeds(target)):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
            f.write(seed)
    atheris.Setup([sys.argv[0], *sys.argv[2:], corpus], test)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
