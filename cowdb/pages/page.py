"""A page image's header and its types: the layout every page in the file starts with
(docs/format.md). The checksum over it is in checksum.py."""
from struct import Struct

HEADER = Struct("<QBBHIQ")  # checksum, type, flags, n, length, txn
HEADER_SIZE = HEADER.size  # 24

# Page types.
LEAF = 1
BRANCH = 2
OVERFLOW = 3
FREELIST = 4
LEAF_DELTA = 5     # format 4: a leaf written as its base's reference and the changed entries
BRANCH_DELTA = 6   # format 4: the same for a branch (docs/format.md, "Delta images")
LAST_TYPE = BRANCH_DELTA
