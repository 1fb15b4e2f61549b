"""The lineage outbox deliverer: forwards stored lineage events to every configured destination."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openlineage.client.transport.transport import Transport
from sqlalchemy import Select, select

from control_plane.store import Database
from control_plane.store.models import LineageEvent, LineageOutbox
from control_plane.store.outbox import OutboxDeliverer
from lineage import event_from_dict


class LineageDeliverer(OutboxDeliverer):
    """Sends due lineage outbox entries through their destination's transport.

    Args:
        db: the store holding the outbox.
        transports: destination name -> transport.
        poll_seconds, batch, retry_base_seconds: as for :class:`OutboxDeliverer`.
    """

    table = LineageOutbox
    name = "lineage-deliverer"

    def __init__(
        self,
        db: Database,
        transports: Mapping[str, Transport],
        poll_seconds: float = 1.0,
        batch: int = 100,
        retry_base_seconds: float = 1.0,
    ) -> None:
        super().__init__(db, poll_seconds, batch, retry_base_seconds)
        self._transports = dict(transports)

    def _messages(self) -> Select[tuple[int, str, Any]]:
        return select(LineageOutbox.id, LineageOutbox.destination, LineageEvent.payload).join(
            LineageEvent, LineageEvent.id == LineageOutbox.event_id
        )

    def _send(self, destination: str, payload: Any) -> None:
        transport = self._transports.get(destination)
        if transport is None:
            raise LookupError(f"destination {destination!r} is not configured")
        transport.emit(event_from_dict(payload))

    def _close(self, timeout: float) -> None:
        for transport in self._transports.values():
            transport.close(timeout)
