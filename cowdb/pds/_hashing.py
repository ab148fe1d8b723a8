"""The order-independent hash shared by PSet and the maps.

It is CPython's frozenset hash (Objects/setobject.c), split so it can be
kept up to date one element at a time: a set keeps the XOR of
``shuffle(hash(e))`` over its elements and ``finish`` mixes in the size in
O(1).  So ``hash(PSet(x)) == hash(frozenset(x))``, as equality with
frozenset requires, and a map, whose elements are its ``(key, value)``
pairs, hashes like ``frozenset(m.items())``.
"""

from collections.abc import Iterable

M64 = (1 << 64) - 1


def shuffle(h: int) -> int:
    """Spread an element's hash (``hash(e) & M64``) before XOR-ing it in."""
    return (h ^ 89869747 ^ (h << 16)) * 3644798167 & M64


def finish(acc: int, n: int) -> int:
    """The hash of ``n`` elements whose shuffled hashes XOR to ``acc``."""
    h = acc ^ ((n + 1) * 1927868237 & M64)
    h ^= (h >> 11) ^ (h >> 25)
    h = (h * 69069 + 907133923) & M64
    if h == M64:  # -1 is reserved for errors in C
        h = 590923713
    return h - (1 << 64) if h >> 63 else h


def accumulate(elements: Iterable[object]) -> int:
    """The XOR of the shuffled hashes of distinct ``elements``, from scratch."""
    acc = 0
    for e in elements:
        acc ^= shuffle(hash(e) & M64)
    return acc
