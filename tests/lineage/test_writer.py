"""Group commit: concurrent requests share transactions, and a bad one fails alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from control_plane.lineage import Ingested, LineageStore, LineageWriter
from control_plane.store import Database
from control_plane.store.models import LineageEvent
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
