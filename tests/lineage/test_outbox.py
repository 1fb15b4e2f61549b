"""The outbox: events are queued with the write that stores them, retried, and never lost."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openlineage.client.serde import Serde
from openlineage.client.transport.transport import Transport
from sqlalchemy import func, select

from control_plane.app import create_app
from control_plane.lineage import LineageDeliverer, LineageStore
from control_plane.settings import Settings
from control_plane.store import Database, utcnow
from control_plane.store.models import LineageOutbox
from lineage import build_transport, validate_run_event
from tests.lineage.events import at, run_event


class FlakyTransport(Transport):
    """An in-memory OpenLineage transport that fails its first ``failures`` sends."""

    kind = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.received: list[dict[str, Any]] = []

    def emit(self, event: Any) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError(f"backend down (attempt {self.attempts})")
        self.received.append(Serde.to_dict(event))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _queue(db: Database, count: int) -> list[dict[str, Any]]:
    store = LineageStore(["memory"])
    events = [run_event(f"job{i}", ["raw"], [f"out{i}"], time=at(i)) for i in range(count)]
    for event in events:
        with db.session(write=True) as session:
            store.ingest(session, validate_run_event(event), event, "retail", "test")
    return events


def _drain(deliverer: LineageDeliverer, rounds: int) -> None:
    for _ in range(rounds):
        deliverer.deliver_due()
        time.sleep(0.02)


def test_failed_deliveries_are_retried_until_every_event_arrives_once(db: Database) -> None:
    # Given 5 queued events and a destination that fails its first 7 sends
    events = _queue(db, 5)
    transport = FlakyTransport(failures=7)
    deliverer = LineageDeliverer(db, {"memory": transport}, retry_base_seconds=0.001)
    # When the deliverer runs a few rounds
    _drain(deliverer, 20)
    # Then every event arrived exactly once, byte for byte what was stored
    assert sorted(e["run"]["runId"] for e in transport.received) == sorted(
        e["run"]["runId"] for e in events
    )
    by_run = {e["run"]["runId"]: e for e in transport.received}
    for event in events:
        assert json.dumps(by_run[event["run"]["runId"]], sort_keys=True) == json.dumps(
            event, sort_keys=True
        )
    with db.session() as session:
        rows = session.scalars(select(LineageOutbox)).all()
    assert all(row.delivered_at is not None for row in rows)
    assert sum(row.attempts for row in rows) == 5 + 7
    assert all(row.last_error is None for row in rows)


def test_a_destination_that_stays_down_keeps_every_event_with_its_error(db: Database) -> None:
    _queue(db, 3)
    transport = FlakyTransport(failures=10**9)
    deliverer = LineageDeliverer(db, {"memory": transport}, retry_base_seconds=0.001)
    _drain(deliverer, 5)
    with db.session() as session:
        rows = session.scalars(select(LineageOutbox)).all()
    assert len(rows) == 3
    assert all(row.delivered_at is None for row in rows)
    assert all(row.attempts >= 2 for row in rows)
    assert all(row.last_error and "backend down" in row.last_error for row in rows)
    assert transport.received == []


def test_backoff_waits_before_the_next_attempt(db: Database) -> None:
    _queue(db, 1)
    transport = FlakyTransport(failures=1)
    deliverer = LineageDeliverer(db, {"memory": transport}, retry_base_seconds=60)
    assert deliverer.deliver_due() == 0
    # The retry is not due yet: a second round sends nothing
    assert deliverer.deliver_due() == 0
    assert transport.attempts == 1
    with db.session() as session:
        (row,) = session.scalars(select(LineageOutbox)).all()
        # a first retry waits between half and all of the base delay
        wait = (row.next_attempt_at - utcnow()).total_seconds()
        assert 25 < wait <= 60
        assert row.attempts == 1
        assert row.lease_until is None


def test_a_governed_run_is_forwarded_through_a_configured_file_transport(
    settings: Settings, admin_token: str, tmp_path: Path
) -> None:
    # Given a control plane forwarding lineage to an OpenLineage file transport
    out = tmp_path / "lineage.jsonl"
    configured = settings.model_copy(
        update={
            "lineage_destinations": {
                "archive": {"type": "file", "log_file_path": str(out), "append": True}
            }
        }
    )
    app = create_app(configured)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        event = run_event("clean", ["raw"], ["clean"])
        # When an event is posted, it is queued in the same transaction that stores it
        assert client.post("/api/v1/lineage", json=event).status_code == 201
        services = client.app.state.services  # type: ignore[attr-defined]
        with services.db.session() as session:
            assert session.scalar(select(func.count()).select_from(LineageOutbox)) == 1
        # and the deliverer writes it to the file
        assert services.lineage_deliverer.deliver_due() == 1
    lines = out.read_text().splitlines()
    assert [json.loads(line)["run"]["runId"] for line in lines] == [event["run"]["runId"]]


def test_an_unknown_transport_type_is_refused_at_start(
    settings: Settings, admin_token: str
) -> None:
    # Given an initialized control plane (admin_token runs init), configured with a bad type
    configured = settings.model_copy(
        update={"lineage_destinations": {"x": {"type": "carrier-pigeon"}}}
    )
    with pytest.raises(ValueError, match="known: console, datahub-file, datahub-rest, file"):
        create_app(configured)


def test_a_kafka_destination_without_a_broker_keeps_the_event(db: Database) -> None:
    # Given a real Kafka producer (confluent-kafka) pointed at a port where no broker listens
    _queue(db, 1)
    kafka = build_transport(
        {
            "type": "kafka",
            "topic": "lineage",
            "config": {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": "1000"},
        }
    )
    deliverer = LineageDeliverer(db, {"memory": kafka}, retry_base_seconds=0.001)
    # When the deliverer tries, the failed delivery is noticed (not only logged) and kept
    assert deliverer.deliver_due() == 0
    kafka.close(0)
    with db.session() as session:
        (row,) = session.scalars(select(LineageOutbox)).all()
    assert row.delivered_at is None
    assert row.last_error is not None
    assert row.last_error.startswith("DeliveryError: kafka topic lineage")
