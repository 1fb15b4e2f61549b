"""The lineage graph in the control-plane store: ingest events, read frontiers, queue delivery.

Everything :meth:`LineageStore.ingest` writes (the event, its nodes and edges, its outbox
entries) goes into the caller's transaction, so an event is stored and queued for every
destination together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, text
from sqlalchemy.engine import Connection
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
class Received:
    """A validated event as received: its parsed model, its JSON body, domain and sender."""

    event: RunEventModel
    payload: dict[str, Any]
    domain: str
    received_by: str


@dataclass(frozen=True)
class Ingested:
    """The outcome of one ingest: the stored event's id, or that it was already there."""

    event_id: int | None
    duplicate: bool


_EVENTS = cast(Table, LineageEvent.__table__)
_NODES = cast(Table, LineageNode.__table__)
_EDGES = cast(Table, LineageEdge.__table__)
_OUTBOX = cast(Table, LineageOutbox.__table__)


def _upsert(table: Table, conflict: str, action: str = "NOTHING", returning: str = "") -> Any:
    """``INSERT ... ON CONFLICT`` as SQL text, spelled alike in SQLite and PostgreSQL.

    Text rather than the dialects' ``insert()``, which are not cacheable: compiling an upsert
    for every event costs more than running it.
    """
    columns = [c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)]
    # Identifiers come from the models; every value is a bound parameter.
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join(':' + c for c in columns)}) ON CONFLICT ({conflict}) DO {action}"
        + (f" RETURNING {returning}" if returning else "")
    )
    return text(sql).bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns))


def _newer(column: str) -> str:
    return (
        f"{column} = CASE WHEN excluded.last_seen > lineage_edges.last_seen "
        f"THEN excluded.{column} ELSE lineage_edges.{column} END"
    )


_INSERT_EVENT = _upsert(_EVENTS, "run_id, event_type, event_time", returning="id")
_INSERT_NODES = _upsert(_NODES, "id")
_UPSERT_EDGES = _upsert(
    _EDGES,
    "key",
    "UPDATE SET first_seen = CASE WHEN excluded.first_seen < lineage_edges.first_seen "
    "THEN excluded.first_seen ELSE lineage_edges.first_seen END, "
    + ", ".join(_newer(c) for c in ("run_id", "facets", "last_seen")),
)
_INSERT_OUTBOX = _upsert(_OUTBOX, "event_id, destination")


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
        (stored,) = self.ingest_many(session, [Received(event, payload, domain, received_by)])
        return stored

    def ingest_many(self, session: Session, received: Sequence[Received]) -> list[Ingested]:
        """Store events as :meth:`ingest` would one after the other, in a few statements.

        Each event is inserted on its own (to tell duplicates apart); the nodes, edges and
        outbox entries of all new events are then written together, with the same result as
        event by event: a node keeps the domain of its first event, its facets are merged in
        event order and its first time is the earliest.

        Raises:
            InvalidEventError: an event asserts a node or column lineage the graph refuses.
        """
        connection = session.connection()
        now = utcnow()
        results: list[Ingested] = []
        added: list[tuple[int, GraphDelta, str]] = []
        for item in received:
            event = item.event
            at = parse_event_time(event.eventTime)
            delta = graph_delta(event, at)
            inserted = connection.execute(
                _INSERT_EVENT,
                {
                    "run_id": event.run.runId.lower(),
                    "event_type": event.eventType or "",
                    "event_time": at,
                    "job_namespace": event.job.namespace,
                    "job_name": event.job.name,
                    "domain": item.domain,
                    "payload": item.payload,
                    "received_by": item.received_by,
                    "received_at": now,
                },
            ).scalar()
            results.append(Ingested(inserted, duplicate=inserted is None))
            if inserted is not None:
                added.append((inserted, delta, item.domain))
        if added:
            _merge_nodes(connection, [(delta, domain) for _, delta, domain in added], now)
            _upsert_edges(connection, [delta for _, delta, _ in added])
            self._queue(connection, [event_id for event_id, _, _ in added], now)
        return results

    def _queue(self, connection: Connection, event_ids: list[int], now: datetime) -> None:
        rows = [
            {
                "event_id": event_id,
                "destination": name,
                "attempts": 0,
                "next_attempt_at": now,
                "lease_until": None,
                "last_error": None,
                "delivered_at": None,
            }
            for event_id in event_ids
            for name in self.destinations
        ]
        for chunk in _chunks(rows):
            connection.execute(_INSERT_OUTBOX, list(chunk))


def _merge_nodes(
    connection: Connection, deltas: Sequence[tuple[GraphDelta, str]], now: datetime
) -> None:
    """Add new nodes; merge facets into existing ones and move their first time back.

    The deltas are applied in order, as if each were merged on its own.
    """
    rows = []
    updates: dict[str, list[tuple[Mapping[str, Any], datetime]]] = {}
    for delta, domain in deltas:
        for node in {node.ref.id: node for node in delta.nodes}.values():
            rows.append(
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
            )
            updates.setdefault(node.ref.id, []).append((node.facets, delta.at))
    for chunk in _chunks(rows):
        connection.execute(_INSERT_NODES, list(chunk))
    changed = []
    for chunk in _chunks(list(updates)):
        stored = connection.execute(
            select(_NODES.c.id, _NODES.c.facets, _NODES.c.first_seen)
            .where(_NODES.c.id.in_(chunk))
            .with_for_update()
        )
        for node_id, facets, first_seen in stored:
            merged, earliest = facets, first_seen
            for update, at in updates[node_id]:
                merged = _live({**merged, **update}, deleted=update)
                earliest = min(earliest, at)
            if merged != facets or earliest != first_seen:
                changed.append(
                    {
                        "node_id": node_id,
                        "facets": merged,
                        "first_seen": earliest,
                        "updated_at": now,
                    }
                )
    if changed:
        connection.execute(
            _NODES.update()
            .where(_NODES.c.id == bindparam("node_id"))
            .values(
                facets=bindparam("facets"),
                first_seen=bindparam("first_seen"),
                updated_at=bindparam("updated_at"),
            ),
            changed,
        )


def _live(facets: Any, deleted: Any = None) -> dict[str, Any]:
    """Facets without those an event marks ``_deleted``."""
    marks = deleted if deleted is not None else facets
    return {
        name: value
        for name, value in facets.items()
        if not (isinstance(marks.get(name), dict) and marks[name].get("_deleted") is True)
    }


def _upsert_edges(connection: Connection, deltas: Sequence[GraphDelta]) -> None:
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
        for delta in deltas
        for key, edge in {edge.key: edge for edge in delta.edges}.items()
    ]
    for chunk in _chunks(rows):
        connection.execute(_UPSERT_EDGES, list(chunk))


_EDGE_COLUMNS = [
    _EDGES.c[c]
    for c in ("source", "target", "kind", "source_field", "target_field", "run_id", "facets")
]
_NODE_COLUMNS = [_NODES.c[c] for c in ("id", "type", "namespace", "name", "facets", "domain")]


class StoredGraph:
    """A :class:`lineage.GraphReader` over the store, within one session."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._domains: dict[str, str] = {}
        """The domains of the nodes read so far, so that :meth:`domains` need not read again."""

    def edges_of(
        self, nodes: Sequence[str], upstream: bool, as_of: datetime | None, limit: int
    ) -> list[Edge]:
        column = _EDGES.c.target if upstream else _EDGES.c.source
        found: list[Edge] = []
        connection = self._session.connection()
        for chunk in _chunks(list(nodes)):
            statement = select(*_EDGE_COLUMNS).where(column.in_(chunk))
            if as_of is not None:
                statement = statement.where(_EDGES.c.first_seen <= as_of)
            rows = connection.execute(statement.limit(limit - len(found)))
            found += [
                Edge(source, target, EdgeKind(kind), source_field, target_field, run_id, facets)
                for source, target, kind, source_field, target_field, run_id, facets in rows
            ]
            if len(found) >= limit:
                break
        return found

    def nodes(self, ids: Sequence[str], as_of: datetime | None) -> list[Node]:
        found: list[Node] = []
        connection = self._session.connection()
        for chunk in _chunks(list(ids)):
            statement = select(*_NODE_COLUMNS).where(_NODES.c.id.in_(chunk))
            if as_of is not None:
                statement = statement.where(_NODES.c.first_seen <= as_of)
            for node_id, kind, namespace, name, facets, domain in connection.execute(statement):
                found.append(Node(NodeRef(node_id, NodeType(kind), namespace, name), facets))
                self._domains[node_id] = domain
        return found

    def domains(self, ids: Sequence[str]) -> dict[str, str]:
        """The domain each stored node was first recorded in."""
        found = {node_id: self._domains[node_id] for node_id in ids if node_id in self._domains}
        for chunk in _chunks([node_id for node_id in ids if node_id not in found]):
            rows = self._session.execute(
                select(LineageNode.id, LineageNode.domain).where(LineageNode.id.in_(chunk))
            )
            found.update((node_id, domain) for node_id, domain in rows)
        return found
