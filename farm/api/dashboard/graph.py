"""The pipeline graph's layout, computed on the server: stages as columns, ``needs`` as edges.

Not a layout engine: every job sits on a grid (its stage's column, its place in the
stage's row order), so the positions are known without search, and each ``needs`` edge is
one cubic curve from the right side of the upstream box to the left side of the
downstream one.  The page draws the boxes as positioned HTML links and the edges as one
SVG underneath, so the graph needs no JavaScript (JS only re-fetches it while a build runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from farm.api.schemas import JobOut

BOX_W = 220  # px: a job's box
BOX_H = 64
COL_GAP = 90  # room for the edges between two columns
ROW_GAP = 18
HEAD_H = 34  # the stage's name above its column
PAD = 12


@dataclass(frozen=True)
class Box:
    """One job placed on the grid."""

    job: JobOut
    column: int
    row: int
    x: int
    y: int


@dataclass(frozen=True)
class Column:
    """One stage: its name, where its heading goes, and its jobs' boxes top to bottom."""

    stage: str
    x: int
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class Edge:
    """A ``needs`` edge as an SVG path, from ``source`` to ``target`` (job names)."""

    source: str
    target: str
    path: str


@dataclass(frozen=True)
class Graph:
    """The whole layout: columns, edges and the drawing's size in px."""

    columns: tuple[Column, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int
    box_w: int = BOX_W
    box_h: int = BOX_H

    @property
    def boxes(self) -> list[Box]:
        """Every box, column by column."""
        return [b for c in self.columns for b in c.boxes]


def _upstreams(need: str, boxes: dict[str, Box]) -> list[Box]:
    """The boxes a ``needs`` entry names: the job itself, or every copy of a parallel job
    (GitLab names them ``name 1/3`` and ``name: [a, b]``, and ``needs: [name]`` means all)."""
    if need in boxes:
        return [boxes[need]]
    return [b for n, b in boxes.items() if n.startswith((need + " ", need + ":"))]


def _curve(a: Box, b: Box) -> str:
    """A smooth path from box ``a`` to box ``b`` that leaves and enters horizontally."""
    if a.column < b.column:
        x1, y1 = a.x + BOX_W, a.y + BOX_H // 2
        x2, y2 = b.x, b.y + BOX_H // 2
        bend = max(30, (x2 - x1) // 2)
        return f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
    # Same column (a need inside one stage) or backwards: loop out to the right and back
    # in, so the edge never runs under the boxes.
    x1, y1 = a.x + BOX_W, a.y + BOX_H // 2
    x2, y2 = b.x + BOX_W, b.y + BOX_H // 2
    out = x1 + COL_GAP // 2
    return f"M{x1},{y1} C{out},{y1} {out},{y2} {x2},{y2}"


def layout(stages: Sequence[str], jobs: Sequence[JobOut]) -> Graph:
    """Place ``jobs`` in their stages' columns (stages without jobs are left out) and route
    one edge per ``needs`` entry; jobs keep the order the build document lists them in."""
    by_stage: dict[str, list[JobOut]] = {}
    for job in jobs:
        by_stage.setdefault(job.stage, []).append(job)
    # Declared order first; a stage the build does not declare (older rows) goes last.
    order = [s for s in stages if s in by_stage] + [s for s in by_stage if s not in stages]
    columns: list[Column] = []
    named: dict[str, Box] = {}
    for col, stage in enumerate(order):
        x = PAD + col * (BOX_W + COL_GAP)
        boxes = []
        for row, job in enumerate(by_stage[stage]):
            box = Box(job, col, row, x, PAD + HEAD_H + row * (BOX_H + ROW_GAP))
            boxes.append(box)
            named[job.name] = box
        columns.append(Column(stage, x, tuple(boxes)))
    edges = [
        Edge(up.job.name, box.job.name, _curve(up, box))
        for box in named.values()
        for need in box.job.needs or ()
        for up in _upstreams(need, named)
        if up is not box
    ]
    rows = max((len(c.boxes) for c in columns), default=0)
    width = PAD * 2 + max(len(columns), 1) * (BOX_W + COL_GAP) - COL_GAP + COL_GAP // 2
    height = PAD * 2 + HEAD_H + max(rows, 1) * (BOX_H + ROW_GAP) - ROW_GAP
    return Graph(tuple(columns), tuple(edges), width, height)
