"""The outbox deliverer: forwards stored lineage events to every configured destination.

Entries are leased with a compare-and-set (like run claims), so several replicas can drain one
outbox without sending an entry twice at once; a failed send is retried with exponential backoff
and kept until a send succeeds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import timedelta

from openlineage.client.transport.transport import Transport
from sqlalchemy import or_, select, update

from control_plane.store import Database, utcnow
from control_plane.store.models import LineageEvent, LineageOutbox
from lineage import event_from_dict, retry_delay

_log = logging.getLogger(__name__)
_LEASE = timedelta(seconds=60)


class LineageDeliverer:
    """Sends due outbox entries through their destination's transport.

    Args:
        db: the store holding the outbox.
        transports: destination name -> transport.
        poll_seconds: how often the background thread looks for due entries.
        batch: entries leased per round.
        retry_base_seconds: the first retry's delay; each further failure doubles it.
    """

    def __init__(
        self,
        db: Database,
        transports: Mapping[str, Transport],
        poll_seconds: float = 1.0,
        batch: int = 100,
        retry_base_seconds: float = 1.0,
    ) -> None:
        self._db = db
        self._transports = dict(transports)
        self._poll_seconds = poll_seconds
        self._batch = batch
        self._retry_base = retry_base_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lineage-deliverer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        for transport in self._transports.values():
            transport.close(timeout)

    def deliver_due(self) -> int:
        """Send every entry due now once; returns how many were delivered."""
        delivered = 0
        for entry_id, destination, payload in self._lease():
            error = None
            try:
                transport = self._transports.get(destination)
                if transport is None:
                    raise LookupError(f"destination {destination!r} is not configured")
                transport.emit(event_from_dict(payload))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                _log.warning("lineage delivery to %s failed: %s", destination, error)
            self._settle(entry_id, error)
            delivered += error is None
        return delivered

    def _lease(self) -> list[tuple[int, str, dict[str, object]]]:
        now = utcnow()
        leased = []
        with self._db.session(write=True) as session:
            due = session.execute(
                select(LineageOutbox.id, LineageOutbox.destination, LineageEvent.payload)
                .join(LineageEvent, LineageEvent.id == LineageOutbox.event_id)
                .where(LineageOutbox.delivered_at.is_(None))
                .where(LineageOutbox.next_attempt_at <= now)
                .where(or_(LineageOutbox.lease_until.is_(None), LineageOutbox.lease_until < now))
                .order_by(LineageOutbox.id)
                .limit(self._batch)
            ).all()
            for entry_id, destination, payload in due:
                taken = session.execute(
                    update(LineageOutbox)
                    .where(LineageOutbox.id == entry_id)
                    .where(
                        or_(LineageOutbox.lease_until.is_(None), LineageOutbox.lease_until < now)
                    )
                    .values(lease_until=now + _LEASE)
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    leased.append((entry_id, destination, payload))
        return leased

    def _settle(self, entry_id: int, error: str | None) -> None:
        with self._db.session(write=True) as session:
            entry = session.get_one(LineageOutbox, entry_id)
            entry.attempts += 1
            entry.lease_until = None
            if error is None:
                entry.delivered_at = utcnow()
                entry.last_error = None
            else:
                entry.last_error = error[:4000]
                entry.next_attempt_at = utcnow() + retry_delay(entry.attempts, self._retry_base)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self.deliver_due() and not self._stop.is_set():
                    pass
            except Exception:
                _log.exception("lineage deliverer failed; retrying")
            self._stop.wait(self._poll_seconds)
