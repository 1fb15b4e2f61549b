"""The lineage graph in the control-plane store: ingest events, read frontiers, queue delivery.

Everything :meth:`LineageStore.ingest` writes (the event, its nodes and edges, its outbox
entries) goes into the caller's transaction, so an event is stored and queued for every
destination together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from control_plane.store import utcnow
from control_plane.store.models import LineageEdge, LineageEvent, LineageNode, LineageOutbox
from lineage import (
    Edge,
    EdgeKind,
    GraphDelta,
    Node,
    NodeRef,
    NodeType,
    RunEventModel,
    graph_delta,
    parse_event_time,
)

_CHUNK = 500


@dataclass(frozen=True)
class Ingested:
    """The outcome of one ingest: the stored event's id, or that it was already there."""

    event_id: int | None
    duplicate: bool


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class LineageStore:
    """Stores lineage events and the graph they build, and queues them for delivery.

    Args:
        destinations: names of the outbound destinations each new event is queued for.
    """

    def __init__(self, destinations: Sequence[str] = ()) -> None:
        self.destinations = tuple(destinations)

    def ingest(
        self,
        session: Session,
        event: RunEventModel,
        payload: dict[str, Any],
        domain: str,
        received_by: str,
    ) -> Ingested:
        """Store a validated event once per (runId, eventType, eventTime), with its graph.

        Raises:
            InvalidEventError: the event asserts a node or column lineage the graph refuses.
        """
        at = parse_event_time(event.eventTime)
        delta = graph_delta(event, at)
        inserted = session.execute(
            _insert(session, LineageEvent)
            .values(
                run_id=event.run.runId.lower(),
                event_type=event.eventType or "",
                event_time=at,
                job_namespace=event.job.namespace,
                job_name=event.job.name,
                domain=domain,
                payload=payload,
                received_by=received_by,
                received_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["run_id", "event_type", "event_time"])
            .returning(LineageEvent.id)
        ).scalar()
        if inserted is None:
            return Ingested(None, duplicate=True)
        _merge_nodes(session, delta, domain)
        _upsert_edges(session, delta)
        if self.destinations:
            session.execute(
                _insert(session, LineageOutbox),
                [
                    {
                        "event_id": inserted,
                        "destination": name,
                        "attempts": 0,
                        "next_attempt_at": utcnow(),
                    }
                    for name in self.destinations
                ],
            )
        return Ingested(inserted, duplicate=False)


def _merge_nodes(session: Session, delta: GraphDelta, domain: str) -> None:
    now = utcnow()
    rows = [
        {
            "id": node.ref.id,
            "type": node.ref.type.value,
            "namespace": node.ref.namespace,
            "name": node.ref.name,
            "domain": domain,
            "facets": _live(node.facets),
            "first_seen": delta.at,
            "updated_at": now,
        }
        for node in delta.nodes
    ]
    for chunk in _chunks(rows):
        session.execute(_insert(session, LineageNode).on_conflict_do_nothing(), list(chunk))
    by_id = {node.ref.id: node for node in delta.nodes}
    for chunk in _chunks(list(by_id)):
        stored = session.scalars(
            select(LineageNode).where(LineageNode.id.in_(chunk)).with_for_update()
        )
        for row in stored:
            facets = by_id[row.id].facets
            merged = _live({**row.facets, **facets}, deleted=facets)
            if merged != row.facets:
                row.facets = merged
                row.updated_at = now
            if delta.at < row.first_seen:
                row.first_seen = delta.at


def _live(facets: Any, deleted: Any = None) -> dict[str, Any]:
    """Facets without those an event marks ``_deleted``."""
    marks = deleted if deleted is not None else facets
    return {
        name: value
        for name, value in facets.items()
        if not (isinstance(marks.get(name), dict) and marks[name].get("_deleted") is True)
    }


def _upsert_edges(session: Session, delta: GraphDelta) -> None:
    unique = {edge.key: edge for edge in delta.edges}
    rows = [
        {
            "key": key,
            "source": edge.source,
            "target": edge.target,
            "kind": edge.kind.value,
            "source_field": edge.source_field,
            "target_field": edge.target_field,
            "run_id": edge.run_id.lower(),
            "facets": dict(edge.facets),
            "first_seen": delta.at,
            "last_seen": delta.at,
        }
        for key, edge in unique.items()
    ]
    for chunk in _chunks(rows):
        statement = _insert(session, LineageEdge)
        new = statement.excluded
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["key"],
                set_={
                    "first_seen": case(
                        (new.first_seen < LineageEdge.first_seen, new.first_seen),
                        else_=LineageEdge.first_seen,
                    ),
                    "last_seen": case(
                        (new.last_seen > LineageEdge.last_seen, new.last_seen),
                        else_=LineageEdge.last_seen,
                    ),
                    "run_id": case(
                        (new.last_seen > LineageEdge.last_seen, new.run_id),
                        else_=LineageEdge.run_id,
                    ),
                    "facets": case(
                        (new.last_seen > LineageEdge.last_seen, new.facets),
                        else_=LineageEdge.facets,
                    ),
                },
            ),
            list(chunk),
        )


class StoredGraph:
    """A :class:`lineage.GraphReader` over the store, within one session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def edges_of(
        self, nodes: Sequence[str], upstream: bool, as_of: datetime | None, limit: int
    ) -> list[Edge]:
        column = LineageEdge.target if upstream else LineageEdge.source
        found: list[Edge] = []
        for chunk in _chunks(list(nodes)):
            statement = select(LineageEdge).where(column.in_(chunk))
            if as_of is not None:
                statement = statement.where(LineageEdge.first_seen <= as_of)
            for row in self._session.scalars(statement.limit(limit - len(found))):
                found.append(
                    Edge(
                        row.source,
                        row.target,
                        EdgeKind(row.kind),
                        row.source_field,
                        row.target_field,
                        row.run_id,
                        row.facets,
                    )
                )
            if len(found) >= limit:
                break
        return found

    def nodes(self, ids: Sequence[str], as_of: datetime | None) -> list[Node]:
        found: list[Node] = []
        for chunk in _chunks(list(ids)):
            statement = select(LineageNode).where(LineageNode.id.in_(chunk))
            if as_of is not None:
                statement = statement.where(LineageNode.first_seen <= as_of)
            found += [
                Node(NodeRef(r.id, NodeType(r.type), r.namespace, r.name), r.facets)
                for r in self._session.scalars(statement)
            ]
        return found

    def domains(self, ids: Sequence[str]) -> dict[str, str]:
        """The domain each stored node was first recorded in."""
        found: dict[str, str] = {}
        for chunk in _chunks(list(ids)):
            rows = self._session.execute(
                select(LineageNode.id, LineageNode.domain).where(LineageNode.id.in_(chunk))
            )
            found.update((node_id, domain) for node_id, domain in rows)
        return found
