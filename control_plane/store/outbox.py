"""The outbox pattern: messages queued in the transaction of the change they announce, sent later.

An outbox table holds one row per message and destination (lineage events, webhooks). A
deliverer leases due rows with a compare-and-set (like run claims), so several replicas can drain
one outbox without sending a row twice at once; a failed send is retried with exponential
backoff and kept until a send succeeds (at least once: a send that timed out may arrive twice).
"""

from __future__ import annotations

import abc
import logging
import threading
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Select, or_, select, update

from control_plane.store.db import Database, utcnow
from control_plane.store.models import LineageOutbox, WebhookOutbox
from lineage import retry_delay

_log = logging.getLogger(__name__)
_LEASE = timedelta(seconds=60)


class OutboxDeliverer(abc.ABC):
    """Sends the due rows of one outbox table from a background thread.

    Args:
        db: the store holding the outbox.
        poll_seconds: how often the background thread looks for due rows.
        batch: rows leased per round.
        retry_base_seconds: the first retry's delay; each further failure doubles it.
    """

    table: ClassVar[type[LineageOutbox] | type[WebhookOutbox]]
    name: ClassVar[str]

    def __init__(
        self,
        db: Database,
        poll_seconds: float = 1.0,
        batch: int = 100,
        retry_base_seconds: float = 1.0,
    ) -> None:
        self._db = db
        self._poll_seconds = poll_seconds
        self._batch = batch
        self._retry_base = retry_base_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    @abc.abstractmethod
    def _messages(self) -> Select[tuple[int, str, Any]]:
        """The (row id, destination, payload) of the table's rows."""

    @abc.abstractmethod
    def _send(self, destination: str, payload: Any) -> None:
        """Send one message; raising keeps it for a retry."""

    @abc.abstractmethod
    def _close(self, timeout: float) -> None:
        """Release what sending holds, once the thread has stopped."""

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._close(timeout)

    def deliver_due(self) -> int:
        """Send every message due now once; returns how many were delivered."""
        delivered = 0
        for entry_id, destination, payload in self._lease():
            error = None
            try:
                self._send(destination, payload)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                _log.warning("%s: delivery to %s failed: %s", self.name, destination, error)
            self._settle(entry_id, error)
            delivered += error is None
        return delivered

    def _lease(self) -> list[tuple[int, str, Any]]:
        table = self.table
        now = utcnow()
        leased = []
        with self._db.session(write=True) as session:
            due = session.execute(
                self._messages()
                .where(table.delivered_at.is_(None))
                .where(table.next_attempt_at <= now)
                .where(_unleased(table, now))
                .order_by(table.id)
                .limit(self._batch)
            ).all()
            for entry_id, destination, payload in due:
                taken = session.execute(
                    update(table)
                    .where(table.id == entry_id)
                    .where(_unleased(table, now))
                    .values(lease_until=now + _LEASE)
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    leased.append((entry_id, destination, payload))
        return leased

    def _settle(self, entry_id: int, error: str | None) -> None:
        table = self.table
        with self._db.session(write=True) as session:
            attempts = session.scalars(select(table.attempts).where(table.id == entry_id)).one() + 1
            settled: dict[str, Any] = {"attempts": attempts, "lease_until": None}
            if error is None:
                settled.update(delivered_at=utcnow(), last_error=None)
            else:
                settled.update(
                    last_error=error[:4000],
                    next_attempt_at=utcnow() + retry_delay(attempts, self._retry_base),
                )
            session.execute(update(table).where(table.id == entry_id).values(**settled))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self.deliver_due() and not self._stop.is_set():
                    pass
            except Exception:
                _log.exception("%s failed; retrying", self.name)
            self._stop.wait(self._poll_seconds)


def _unleased(table: type[LineageOutbox] | type[WebhookOutbox], now: datetime) -> Any:
    return or_(table.lease_until.is_(None), table.lease_until < now)
