"""Group commit for received lineage events: concurrent requests share one transaction.

One POST per event is how OpenLineage producers send (as Marquez takes them); a transaction per
event makes concurrent requests queue on the store's write lock. Here the first request to
arrive writes everything waiting, its own events included, in one transaction, while the
others wait for that commit; whoever is waiting when it ends writes the next group. Every
request still answers only after its events are committed, and a request whose events fail is
retried alone so that it cannot take the others of its group down with it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from control_plane.lineage.store import Ingested, LineageStore, Received
from control_plane.store import Database
from lineage import RunEventModel


@dataclass
class _Request:
    events: Sequence[tuple[RunEventModel, dict[str, Any]]]
    domain: str
    received_by: str
    stored: list[Ingested] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


class LineageWriter:
    """Stores received events with group commit.

    Args:
        db: the store.
        store: what each event writes.
        max_events: most events one transaction takes.
    """

    def __init__(self, db: Database, store: LineageStore, max_events: int = 1000) -> None:
        self._db = db
        self._store = store
        self._max_events = max_events
        self._condition = threading.Condition()
        self._pending: list[_Request] = []
        self._writing = False

    def write(
        self,
        events: Sequence[tuple[RunEventModel, dict[str, Any]]],
        domain: str,
        received_by: str,
    ) -> list[Ingested]:
        """Store ``events`` (all or none) and return what became of each, once committed.

        Raises:
            InvalidEventError: an event asserts a node or column lineage the graph refuses.
        """
        request = _Request(events, domain, received_by)
        with self._condition:
            self._pending.append(request)
            while self._writing and not request.done:
                self._condition.wait()
            if not request.done:
                self._writing = True
        while not request.done:
            group = self._take()
            try:
                self._commit(group)
            finally:
                with self._condition:
                    self._writing = bool(self._pending) and not request.done
                    self._condition.notify_all()
        if request.error is not None:
            raise request.error
        return request.stored

    def _take(self) -> list[_Request]:
        with self._condition:
            group: list[_Request] = []
            size = 0
            while self._pending and (
                not group or size + len(self._pending[0].events) <= self._max_events
            ):
                size += len(self._pending[0].events)
                group.append(self._pending.pop(0))
            return group

    def _commit(self, group: list[_Request]) -> None:
        try:
            with self._db.session(write=True) as session:
                stored = self._store.ingest_many(
                    session,
                    [
                        Received(event, payload, r.domain, r.received_by)
                        for r in group
                        for event, payload in r.events
                    ],
                )
        except BaseException as exc:
            if len(group) > 1 and isinstance(exc, Exception):
                for request in group:
                    self._commit([request])
                return
            for request in group:
                request.error = exc
                request.done = True
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for request in group:
            request.stored = stored[start : start + len(request.events)]
            request.done = True
            start += len(request.events)
