"""Geometry of the dashboard's server-made SVG pictures: the lineage graph and bar charts.

Only coordinates and labels are computed here; the templates draw them (and escape the labels).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lineage.graph import Edge, Node

COLUMN_WIDTH = 260
ROW_HEIGHT = 70
NODE_WIDTH = 220
NODE_HEIGHT = 44
MARGIN = 20
BAR_WIDTH = 360


@dataclass(frozen=True)
class PlacedNode:
    id: str
    type: str
    label: str
    x: int
    y: int
    root: bool


@dataclass(frozen=True)
class PlacedEdge:
    kind: str
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    nodes: Sequence[PlacedNode]
    edges: Sequence[PlacedEdge]


def _layers(root: str, ids: set[str], edges: Sequence[Edge]) -> dict[str, int]:
    """Each node's column: upstream of the root to the left, downstream to the right."""
    neighbours: dict[str, list[tuple[str, int]]] = {node: [] for node in ids}
    for edge in edges:
        neighbours[edge.source].append((edge.target, 1))
        neighbours[edge.target].append((edge.source, -1))
    layer = {root: 0}
    queue = deque([root])
    while queue:
        current = queue.popleft()
        for other, step in neighbours[current]:
            if other not in layer:
                layer[other] = layer[current] + step
                queue.append(other)
    return layer


def lineage_picture(root: str, nodes: Iterable[Node], edges: Iterable[Edge]) -> Picture:
    """Place the visible nodes in columns by distance from ``root`` along the edges."""
    shown = {node.ref.id: node for node in nodes}
    kept = [e for e in edges if e.source in shown and e.target in shown and e.kind != "column"]
    layer = _layers(root, set(shown), kept) if root in shown else {}
    low = min(layer.values(), default=0)
    columns: dict[int, list[str]] = {}
    for node_id in sorted(layer, key=lambda n: (layer[n], n)):
        columns.setdefault(layer[node_id] - low, []).append(node_id)
    places: dict[str, tuple[int, int]] = {}
    for column, members in columns.items():
        for row, node_id in enumerate(members):
            places[node_id] = (MARGIN + column * COLUMN_WIDTH, MARGIN + row * ROW_HEIGHT)
    placed = [
        PlacedNode(
            node_id,
            str(shown[node_id].ref.type),
            shown[node_id].ref.name,
            x,
            y,
            node_id == root,
        )
        for node_id, (x, y) in places.items()
    ]
    lines = [
        PlacedEdge(
            str(e.kind),
            places[e.source][0] + NODE_WIDTH,
            places[e.source][1] + NODE_HEIGHT // 2,
            places[e.target][0],
            places[e.target][1] + NODE_HEIGHT // 2,
        )
        for e in kept
        if e.source in places and e.target in places
    ]
    width = MARGIN * 2 + max(len(columns), 1) * COLUMN_WIDTH
    height = MARGIN * 2 + max((len(m) for m in columns.values()), default=1) * ROW_HEIGHT
    return Picture(width, height, placed, lines)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    of: float
    width: int


def bars(rows: Iterable[tuple[str, float, float]]) -> list[Bar]:
    """Horizontal bars of ``value`` out of ``of``, scaled to :data:`BAR_WIDTH`."""
    return [
        Bar(label, value, of, round(BAR_WIDTH * min(value / of, 1.0)) if of > 0 else 0)
        for label, value, of in rows
    ]
