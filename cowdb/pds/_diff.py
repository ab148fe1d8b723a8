"""diff(a, b): what changed between two versions of a map."""

from collections.abc import Iterator, Mapping
from typing import Any

from cowdb.pds import _champ
from cowdb.pds.pmap import PMap
from cowdb.pds.psortedmap import PSortedMap, _diff


def diff(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> Iterator[tuple[Any, Any, Any]]:
    """Yield ``(key, old, new)`` for every key bound differently in ``a`` and ``b``.

    A side where the key is absent reads MISSING.  Two PMaps, or two
    PSortedMaps (whose changes come in key order), are compared node by
    node and subtrees they share are skipped, so versions a few updates
    apart cost a few paths, not a scan.  Other mappings are compared by
    lookups (O(n)).
    """
    if isinstance(a, PMap) and isinstance(b, PMap):
        return _champ.diff(a._root, b._root)
    if isinstance(a, PSortedMap) and isinstance(b, PSortedMap):
        return _diff(a, b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return _champ.diff_dicts(a, b)
    raise TypeError(f"diff() needs two mappings, got {type(a).__name__} and {type(b).__name__}")

