"""Webhook notifications of approvals: queued in the outbox, delivered signed, retried.

Each notification is a JSON POST ``{"id", "event", "occurred_at", "data"}`` with the headers

- ``X-Govplane-Event``: the event (``approval.requested``, ``approval.decided``,
  ``approval.expired``, ``approval.revoked``);
- ``X-Govplane-Delivery``: the notification's id (the same on every retry: deduplicate on it);
- ``X-Govplane-Signature``: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` under the
  shared secret (``GOVPLANE_WEBHOOK_SECRET_FILE``). A receiver recomputes it over the raw body,
  compares in constant time and refuses old timestamps (:func:`verify_signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from control_plane.runs import RunState
from control_plane.settings import Settings
from control_plane.store import Database, new_id, utcnow
from control_plane.store.models import Approval, Run, RunTransition, WebhookOutbox
from control_plane.store.outbox import OutboxDeliverer

SIGNATURE_HEADER = "X-Govplane-Signature"
EVENT_HEADER = "X-Govplane-Event"
DELIVERY_HEADER = "X-Govplane-Delivery"


def ensure_webhook_secret(settings: Settings) -> None:
    """Create the webhook signing secret if it is missing (never replaced: receivers hold it)."""
    path = settings.webhook_secret_path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=False)
        path.write_text(secrets.token_hex(32) + "\n")


def load_webhook_secret(path: Path) -> bytes:
    """The shared secret (hex in ``path``).

    Raises:
        ValueError: the file is missing, empty or not hex.
    """
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise ValueError(f"webhook secret {path} cannot be read as hex: {exc}") from exc
    if len(secret) < 16:
        raise ValueError(f"webhook secret {path} is shorter than 16 bytes")
    return secret


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Govplane-Signature`` header value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: bytes, header: str, body: bytes, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` within ``tolerance_seconds`` of now."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def approval_facts(approval: Approval) -> dict[str, Any]:
    """What notifications and audit records say about an approval."""
    return {
        "approval_id": approval.id,
        "run_id": approval.run_id,
        "domain": approval.domain,
        "target": approval.target,
        "status": approval.status,
        "requested_by": approval.requested_by,
        "requirement": dict(approval.requirement),
    }


class WebhookNotifier:
    """Queues one outbox row per configured URL, in the caller's transaction."""

    def __init__(self, urls: Sequence[object]) -> None:
        self._urls = tuple(str(url) for url in urls)

    def notify(self, session: Session, event: str, payload: Mapping[str, Any]) -> None:
        if not self._urls:
            return
        now = utcnow()
        body = {
            "id": new_id(),
            "event": event,
            "occurred_at": now.isoformat(),
            "data": dict(payload),
        }
        for url in self._urls:
            session.add(
                WebhookOutbox(url=url, event=event, payload=body, next_attempt_at=now, attempts=0)
            )


class ApprovalRequestNotifier:
    """A run transition recorder: announces the approval a run starts waiting for."""

    def __init__(self, notifier: WebhookNotifier) -> None:
        self._notifier = notifier

    def record(self, session: Session, run: Run, transition: RunTransition) -> None:
        if transition.to_state != RunState.AWAITING_APPROVAL:
            return
        approval = session.scalars(select(Approval).where(Approval.run_id == run.id)).one()
        self._notifier.notify(session, "approval.requested", approval_facts(approval))


class WebhookDeliverer(OutboxDeliverer):
    """POSTs due webhook notifications, signed with the shared secret."""

    table = WebhookOutbox
    name = "webhook-deliverer"

    def __init__(
        self,
        db: Database,
        secret: bytes,
        poll_seconds: float = 1.0,
        retry_base_seconds: float = 1.0,
        timeout_seconds: float = 10.0,
    ) -> None:
        super().__init__(db, poll_seconds, retry_base_seconds=retry_base_seconds)
        self._secret = secret
        self._client = httpx.Client(timeout=timeout_seconds, follow_redirects=False)

    def _messages(self) -> Select[tuple[int, str, Any]]:
        return select(WebhookOutbox.id, WebhookOutbox.url, WebhookOutbox.payload)

    def _send(self, destination: str, payload: Any) -> None:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        response = self._client.post(
            destination,
            content=body,
            headers={
                "Content-Type": "application/json",
                EVENT_HEADER: payload["event"],
                DELIVERY_HEADER: payload["id"],
                SIGNATURE_HEADER: sign(self._secret, int(time.time()), body),
            },
        )
        response.raise_for_status()

    def _close(self, timeout: float) -> None:
        self._client.close()
