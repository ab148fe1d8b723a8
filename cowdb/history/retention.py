"""Which versions to keep: the retention rule, stored in the catalog.

A version is kept if it is among the newest ``keep_last`` versions, or was
committed within ``keep_within`` of now, or a tag or a branch head names it.
With neither rule set, every version is kept (the default).
"""
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .commits import Commit


@dataclass(frozen=True, slots=True)
class Retention:
    keep_last: int | None = None
    keep_within: timedelta | None = None

    @property
    def keeps_everything(self) -> bool:
        return self.keep_last is None and self.keep_within is None

    def encode(self) -> list[int | float | None]:
        return [self.keep_last,
                None if self.keep_within is None else self.keep_within.total_seconds()]

    @classmethod
    def decode(cls, value: Sequence[Any] | None) -> "Retention":  # as encode() made it
        if not value:
            return cls()
        last, within = value
        return cls(last, None if within is None else timedelta(seconds=within))

    def kept(self, commits: Sequence["Commit"], now_ns: int, named: set[int]) -> set[int]:
        """The versions to keep among ``commits`` (newest first), plus every named one."""
        if self.keeps_everything:
            return {c.version for c in commits}
        keep = set(named)
        cutoff = None if self.keep_within is None else now_ns - int(
            self.keep_within.total_seconds() * 1e9)
        for i, c in enumerate(commits):
            if i == 0 or (self.keep_last is not None and i < self.keep_last) or (
                    cutoff is not None and c.time_ns >= cutoff):
                keep.add(c.version)
        return keep
