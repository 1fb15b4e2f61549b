"""The lineage graph: what an event adds to it, and bounded traversals over it.

Edges point the way data flows: ``dataset -> job`` (an input), ``job -> dataset`` (an output),
and ``dataset -> dataset`` with the two column names for column-level lineage. Traversals are
breadth-first over a :class:`GraphReader`, one frontier query per level, with a depth cap and a
node cap, so cycles end (each node is visited once) and a huge graph cannot exhaust memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from lineage.nodes import MAX_NODE_ID_BYTES, NodeRef, dataset_node, job_node
from lineage.validation import InvalidEventError, Name, Namespace, RunEventModel

MAX_DEPTH = 50


class Direction(StrEnum):
    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"
    BOTH = "both"


class EdgeKind(StrEnum):
    INPUT = "input"
    OUTPUT = "output"
    COLUMN = "column"


@dataclass(frozen=True)
class Node:
    """A vertex: its reference and its latest facets."""

    ref: NodeRef
    facets: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Edge:
    """A directed edge; column edges also name the source and target columns."""

    source: str
    target: str
    kind: EdgeKind
    source_field: str = ""
    target_field: str = ""
    run_id: str = ""
    facets: Mapping[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """What makes two edges the same: endpoints, kind and columns."""
        return (self.source, self.target, self.kind, self.source_field, self.target_field)

    @property
    def key(self) -> str:
        """A fixed-size identity of the edge, for storage."""
        return hashlib.sha256("\x1f".join(self.identity).encode()).hexdigest()


@dataclass(frozen=True)
class GraphDelta:
    """The nodes and edges one event asserts, at the event's time."""

    at: datetime
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


class _InputField(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    namespace: Namespace
    name: Name
    field: Name


class _ColumnFields(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    inputFields: list[_InputField]  # noqa: N815


class _ColumnLineage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    fields: dict[Name, _ColumnFields]


def graph_delta(event: RunEventModel, at: datetime) -> GraphDelta:
    """The nodes and edges ``event`` asserts.

    Raises:
        InvalidEventError: a node id is too long, or a ``columnLineage`` facet is malformed.
    """
    job = job_node(event.job.namespace, event.job.name)
    run_facets = {
        name: facet.model_dump(by_alias=True)
        for name, facet in event.run.facets.items()
        if name.startswith("govplane_")
    }
    run_id = event.run.runId
    nodes: dict[str, Node] = {
        job.id: Node(job, _facets(event.job.facets)),
    }
    edges: list[Edge] = []
    for index, dataset in enumerate(event.inputs):
        ref = _checked(dataset_node(dataset.namespace, dataset.name), ["inputs", index])
        nodes[ref.id] = Node(ref, _facets(dataset.facets))
        edges.append(Edge(ref.id, job.id, EdgeKind.INPUT, run_id=run_id, facets=run_facets))
    for index, output in enumerate(event.outputs):
        ref = _checked(dataset_node(output.namespace, output.name), ["outputs", index])
        nodes[ref.id] = Node(ref, _facets(output.facets))
        edges.append(Edge(job.id, ref.id, EdgeKind.OUTPUT, run_id=run_id, facets=run_facets))
        column_lineage = output.facets.get("columnLineage")
        if column_lineage is None:
            continue
        loc = ["outputs", index, "facets", "columnLineage"]
        try:
            parsed = _ColumnLineage.model_validate(column_lineage.model_dump(by_alias=True))
        except ValidationError as exc:
            raise InvalidEventError(
                [
                    {"loc": loc + list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors(include_url=False, include_input=False)
                ]
            ) from None
        for column, derived in parsed.fields.items():
            for source in derived.inputFields:
                origin = _checked(dataset_node(source.namespace, source.name), loc)
                nodes.setdefault(origin.id, Node(origin))
                edges.append(
                    Edge(
                        origin.id,
                        ref.id,
                        EdgeKind.COLUMN,
                        source_field=source.field,
                        target_field=column,
                        run_id=run_id,
                    )
                )
    return GraphDelta(at, tuple(nodes.values()), tuple(edges))


def _facets(facets: Mapping[str, BaseModel]) -> dict[str, Any]:
    return {
        name: facet.model_dump(by_alias=True, exclude_none=True) for name, facet in facets.items()
    }


def _checked(ref: NodeRef, loc: list[Any]) -> NodeRef:
    if len(ref.id.encode()) > MAX_NODE_ID_BYTES:
        raise InvalidEventError(
            [
                {
                    "loc": loc,
                    "msg": f"namespace and name make a node id over {MAX_NODE_ID_BYTES} bytes",
                    "type": "too_long",
                }
            ]
        )
    return ref


class GraphReader(Protocol):
    """Reads the stored graph one frontier at a time."""

    def edges_of(
        self, nodes: Sequence[str], upstream: bool, as_of: datetime | None, limit: int
    ) -> list[Edge]:
        """Edges into ``nodes`` (upstream) or out of them, at most ``limit``, as of a time."""
        ...

    def nodes(self, ids: Sequence[str], as_of: datetime | None) -> list[Node]:
        """The stored nodes among ``ids`` that existed as of a time."""
        ...


@dataclass(frozen=True)
class Subgraph:
    """The answer to a traversal: nodes and edges, and whether a cap cut it short."""

    root: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    truncated: bool


def traverse(
    reader: GraphReader,
    root: str,
    direction: Direction,
    depth: int,
    max_nodes: int,
    as_of: datetime | None = None,
) -> Subgraph:
    """The nodes within ``depth`` hops of ``root`` in ``direction``, with the edges among them.

    Args:
        reader: the stored graph.
        root: the node id to start from.
        direction: upstream (where it comes from), downstream (what it feeds), or both.
        depth: hops to follow, 1 to :data:`MAX_DEPTH`.
        max_nodes: stop adding nodes past this many (``truncated`` is then true).
        as_of: see the graph as it was at this time (edges first seen later are ignored).

    Raises:
        ValueError: depth or max_nodes out of range.
        LookupError: ``root`` is not in the graph (as of ``as_of``).
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be between 1 and {MAX_DEPTH}")
    if max_nodes < 1:
        raise ValueError("max_nodes must be at least 1")
    if not reader.nodes([root], as_of):
        raise LookupError(f"no lineage node {root}")
    found: dict[str, None] = {root: None}
    edges: dict[tuple[str, ...], Edge] = {}
    truncated = False
    ways = {
        Direction.UPSTREAM: (True,),
        Direction.DOWNSTREAM: (False,),
        Direction.BOTH: (True, False),
    }[direction]
    for upstream in ways:
        visited = {root}
        frontier = [root]
        for _ in range(depth):
            if not frontier:
                break
            level = reader.edges_of(frontier, upstream, as_of, limit=4 * max_nodes + 1)
            truncated |= len(level) > 4 * max_nodes
            frontier = []
            for edge in level:
                other = edge.source if upstream else edge.target
                if other not in visited:
                    if other not in found and len(found) >= max_nodes:
                        truncated = True
                        continue
                    visited.add(other)
                    found[other] = None
                    frontier.append(other)
                edges.setdefault(edge.identity, edge)
    nodes = {node.ref.id: node for node in reader.nodes(list(found), as_of)}
    kept = tuple(e for e in edges.values() if e.source in nodes and e.target in nodes)
    return Subgraph(root, tuple(nodes[i] for i in found if i in nodes), kept, truncated)
