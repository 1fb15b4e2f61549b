"""Group commit: concurrent requests share transactions, and a bad one fails alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from control_plane.lineage import Ingested, LineageStore, LineageWriter, Received
from control_plane.store import Database
from control_plane.store.models import LineageEdge, LineageEvent, LineageNode, LineageOutbox
from lineage import InvalidEventError, validate_run_event
from tests.lineage.events import at, run_event


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def test_concurrent_writers_all_commit_and_a_bad_request_fails_alone(db: Database) -> None:
    # Given 40 threads writing one event each, one of them naming a node id that is too long
    writer = LineageWriter(db, LineageStore(), max_events=7)
    results: dict[int, list[Ingested] | BaseException] = {}
    start = threading.Barrier(40)

    def send(index: int) -> None:
        name = "é" * 1000 if index == 13 else f"out{index}"
        event: dict[str, Any] = run_event(f"job{index}", ["raw"], [name], time=at(index))
        start.wait()
        try:
            results[index] = writer.write([(validate_run_event(event), event)], "*", "test")
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then every good request got its own event stored, and only the bad one failed
    assert isinstance(results.pop(13), InvalidEventError)
    assert all(isinstance(r, list) and not r[0].duplicate for r in results.values())
    ids = [r[0].event_id for r in results.values() if isinstance(r, list)]
    assert len(set(ids)) == 39
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(LineageEvent)) == 39


def _graph_rows(db: Database) -> tuple[list[Any], ...]:
    with db.session() as session:
        nodes = session.execute(
            select(
                LineageNode.id, LineageNode.domain, LineageNode.facets, LineageNode.first_seen
            ).order_by(LineageNode.id)
        ).all()
        edges = session.execute(
            select(
                LineageEdge.key,
                LineageEdge.run_id,
                LineageEdge.facets,
                LineageEdge.first_seen,
                LineageEdge.last_seen,
            ).order_by(LineageEdge.key)
        ).all()
        events = session.execute(
            select(LineageEvent.run_id, LineageEvent.event_type, LineageEvent.domain).order_by(
                LineageEvent.id
            )
        ).all()
        queued = session.scalar(select(func.count()).select_from(LineageOutbox))
    return (
        [tuple(n) for n in nodes],
        [tuple(e) for e in edges],
        [tuple(e) for e in events],
        [queued],
    )


def _clear(db: Database) -> None:
    with db.session(write=True) as session:
        for table in (LineageOutbox, LineageEdge, LineageNode, LineageEvent):
            session.execute(delete(table))


def test_a_group_stores_exactly_what_its_events_store_one_by_one(db: Database) -> None:
    # Given events that share nodes and edges, arrive out of time order, set and then delete a
    # facet, come from two domains, and include a duplicate
    schema = {
        "_producer": "https://example.org/test-producer",
        "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
        "fields": [{"name": "id", "type": "BIGINT"}],
    }
    first = run_event("load", ["raw"], ["clean"], time=at(5))
    first["outputs"][0]["facets"]["schema"] = schema
    earlier = run_event("load", ["raw", "extra"], ["clean"], time=at(1))
    dropped = run_event("load", ["raw"], ["clean"], time=at(9))
    dropped["outputs"][0]["facets"]["schema"] = {**schema, "_deleted": True}
    columns = run_event(
        "report", ["clean"], ["summary"], time=at(7), columns={"n": [("clean", "id")]}
    )
    events = [first, earlier, dropped, columns, first]
    domains = ["retail", "finance", "retail", "retail", "retail"]
    received = [
        Received(validate_run_event(e), e, domain, "test")
        for e, domain in zip(events, domains, strict=True)
    ]
    store = LineageStore(["memory"])
    # When they are stored one by one, and then (on an empty graph) all in one group
    with db.session(write=True) as session:
        one_by_one = [
            store.ingest(session, r.event, r.payload, r.domain, r.received_by) for r in received
        ]
    expected = _graph_rows(db)
    _clear(db)
    with db.session(write=True) as session:
        grouped = store.ingest_many(session, received)
    # Then both store the same nodes, edges, events and outbox entries, and see one duplicate
    assert _graph_rows(db) == expected
    assert [r.duplicate for r in grouped] == [r.duplicate for r in one_by_one]
    assert [r.duplicate for r in grouped] == [False, False, False, False, True]
    nodes = {row[0]: row for row in expected[0]}
    assert nodes["dataset:warehouse:clean"][1] == "retail"  # the first event's domain
    assert "schema" not in nodes["dataset:warehouse:clean"][2]  # set, then deleted
    assert nodes["dataset:warehouse:clean"][3] == at(1)  # the earliest event
