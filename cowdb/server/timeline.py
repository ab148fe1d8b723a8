"""The timeline's SVG lanes: one lane per branch, placed by the branch list alone
(main first, then the other branches by name), so a branch keeps its lane and
colour on every page and after every reload. Commits of deleted branches share
the last lane."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cowdb.history.commits import Commit

ROW = 36      # px per commit row (the rows beside the SVG use the same height)
LANE = 22     # px between lanes
PAD = 14
COLOURS = 8   # lane0..lane7 in cowdb.css


@dataclass
class Layout:
    width: int
    height: int
    lanes: list[str]
    dots: list[tuple[int, int, int, int, bool]] = field(default_factory=list)
    #     (x, y, lane, version, is_merge)
    paths: list[tuple[str, int]] = field(default_factory=list)    # (d, lane)


def lanes_for(branches: dict[str, int]) -> list[str]:
    return ["main"] + sorted(b for b in branches if b != "main")


def layout(commits: Sequence[Commit], branches: dict[str, int],
           parent_branch: Callable[[int], str | None]) -> Layout:
    """``commits``: this page, newest first; ``parent_branch(v)``: the branch a commit
    not on this page was made on (or None)."""
    lanes = lanes_for(branches)
    index = {b: i for i, b in enumerate(lanes)}
    other = len(lanes)

    def lane(branch: str) -> int:
        return index.get(branch, other)

    n_lanes = other + (1 if any(c.branch not in index for c in commits) else 0)
    height = max(1, len(commits)) * ROW
    out = Layout(width=PAD * 2 + LANE * max(0, n_lanes - 1) + 4, height=height, lanes=lanes)
    pos: dict[int, tuple[int, int, int]] = {}   # version -> (x, y, lane)
    for i, c in enumerate(commits):
        pos[c.version] = (PAD + LANE * lane(c.branch), i * ROW + ROW // 2, lane(c.branch))

    def x_of(ln: int) -> int:
        return PAD + LANE * ln

    # a lane whose branch goes on above this page starts at the top
    first_in_lane: dict[int, Commit] = {}
    for c in commits:
        first_in_lane.setdefault(pos[c.version][2], c)
    for ln, c in first_in_lane.items():
        head = branches.get(lanes[ln]) if ln < len(lanes) else None
        if head is not None and head > c.version:
            x, y, _ = pos[c.version]
            out.paths.append((f"M{x} 0 L{x} {y}", ln))
    for c in commits:
        x, y, ln = pos[c.version]
        for p in c.parents:
            if p in pos:
                px, py, pln = pos[p]
            else:
                pb = parent_branch(p)
                pln = lane(pb) if pb is not None else ln
                px, py = x_of(pln), height + ROW // 2
            colour = ln if pln == ln or p != c.parents[0] else pln
            if px == x:
                d = f"M{x} {y} L{px} {py}"
            else:  # leave the commit, bend into the parent's lane one row down
                mid = y + ROW
                d = f"M{x} {y} C{x} {mid - ROW // 3} {px} {y + ROW // 3} {px} {mid} L{px} {py}"
                colour = ln if p == c.parents[0] else pln
            out.paths.append((d, colour))
        out.dots.append((x, y, ln, c.version, len(c.parents) > 1))
    out.paths = [(d, ln % COLOURS) for d, ln in out.paths]
    out.dots = [(x, y, ln % COLOURS, v, m) for x, y, ln, v, m in out.dots]
    return out
