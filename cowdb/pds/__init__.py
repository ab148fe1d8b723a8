"""Persistent in-memory collections: PMap, PSet, PVector, PSortedMap.

Each update returns a new collection that shares everything but the
changed path with the old one, so keeping old versions is cheap.  This
layer is independent of the on-disk engine and imports nothing from it.
"""

from cowdb.pds._diff import diff
from cowdb.pds._missing import MISSING
from cowdb.pds.pmap import PMap, PMapMutation
from cowdb.pds.pset import PSet, PSetMutation
from cowdb.pds.psortedmap import PSortedMap, PSortedMapMutation
from cowdb.pds.pvector import PVector, PVectorMutation

__all__ = ["MISSING", "diff", "PMap", "PMapMutation", "PSet", "PSetMutation", "PSortedMap",
           "PSortedMapMutation", "PVector", "PVectorMutation"]
