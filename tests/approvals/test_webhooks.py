"""Webhooks: approval events are queued with the change, POSTed signed, and retried until taken."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from control_plane.app import create_app
from control_plane.approvals import (
    SIGNATURE_HEADER,
    WebhookDeliverer,
    load_webhook_secret,
    sign,
    verify_signature,
)
from control_plane.runs import RunKind
from control_plane.settings import Settings
from control_plane.store.models import WebhookOutbox
from tests.approvals.helpers import decide, people, promote, register_model
from tests.conftest import RecordingExecutor


class Receiver:
    """A webhook endpoint on loopback that checks each signature, failing its first sends."""

    def __init__(self, secret: bytes, failures: int = 0) -> None:
        self.secret = secret
        self.failures = failures
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signed = verify_signature(receiver.secret, self.headers[SIGNATURE_HEADER], body)
                if not signed:
                    receiver.refused += 1
                    self.send_response(401)
                elif receiver.failures > 0:
                    receiver.failures -= 1
                    receiver.refused += 1
                    self.send_response(503)
                else:
                    event = json.loads(body)
                    assert self.headers["X-Govplane-Event"] == event["event"]
                    assert self.headers["X-Govplane-Delivery"] == event["id"]
                    receiver.received.append(event)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings: Settings, admin_token: str) -> Iterator[Receiver]:
    with Receiver(load_webhook_secret(settings.webhook_secret_path)) as endpoint:
        yield endpoint


@pytest.fixture
def hooked(
    settings: Settings,
    admin_token: str,
    receiver: Receiver,
    executors: dict[RunKind, RecordingExecutor],
) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"webhook_urls": (receiver.url,)})
    with TestClient(create_app(configured, executors), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


def test_signatures_verify_only_for_the_same_secret_body_and_a_recent_time() -> None:
    secret = b"k" * 32
    header = sign(secret, 1_700_000_000, b'{"a":1}')
    assert verify_signature(secret, header, b'{"a":1}', now=1_700_000_010)
    assert not verify_signature(b"x" * 32, header, b'{"a":1}', now=1_700_000_010)
    assert not verify_signature(secret, header, b'{"a":2}', now=1_700_000_010)
    assert not verify_signature(secret, header, b'{"a":1}', now=1_700_001_000)
    assert not verify_signature(secret, "v1=00", b'{"a":1}', now=1_700_000_010)


def test_requested_and_decided_events_reach_a_verifying_receiver(
    hooked: TestClient, receiver: Receiver
) -> None:
    # Given a promotion waiting for approval, then approved by a validator
    register_model(hooked, "credit", "medium")
    tokens = people(hooked, ("mel", ["ml_engineer"]), ("vera", ["model_validator"]))
    promotion = promote(hooked, "credit", "production", tokens["mel"], "mel")
    assert decide(hooked, promotion.approval_id, tokens["vera"], "approve", "ok").status_code == 201
    # When the deliverer runs off the request path
    services = hooked.app.state.services  # type: ignore[attr-defined]
    assert services.webhook_deliverer.deliver_due() == 2
    # Then the receiver verified both signatures and got the events in order
    assert receiver.refused == 0
    events = [(e["event"], e["data"]["approval_id"]) for e in receiver.received]
    assert events == [
        ("approval.requested", promotion.approval_id),
        ("approval.decided", promotion.approval_id),
    ]
    decided = receiver.received[1]["data"]
    assert (decided["approver"], decided["decision"], decided["status"]) == (
        "vera",
        "approve",
        "approved",
    )
    assert services.webhook_deliverer.deliver_due() == 0


def test_a_failing_receiver_gets_the_event_on_a_retry(
    hooked: TestClient, receiver: Receiver
) -> None:
    # Given a receiver that answers 503 twice, and a revoked approval
    receiver.failures = 2
    register_model(hooked, "credit", "medium")
    tokens = people(hooked, ("mel", ["ml_engineer"]))
    promotion = promote(hooked, "credit", "production", tokens["mel"], "mel")
    hooked.post(f"/api/v1/approvals/{promotion.approval_id}/revoke", json={"comment": "stop"})
    services = hooked.app.state.services  # type: ignore[attr-defined]
    deliverer = WebhookDeliverer(
        services.db,
        load_webhook_secret(services.settings.webhook_secret_path),
        retry_base_seconds=0.001,
    )
    # When the deliverer keeps going round
    deadline = time.monotonic() + 30
    while len(receiver.received) < 2 and time.monotonic() < deadline:
        deliverer.deliver_due()
        time.sleep(0.01)
    deliverer.stop()
    # Then every event arrived exactly once after the failures, and the outbox says so
    assert receiver.refused == 2
    assert [e["event"] for e in receiver.received] == ["approval.requested", "approval.revoked"]
    with services.db.session() as session:
        rows = session.scalars(select(WebhookOutbox).order_by(WebhookOutbox.id)).all()
    assert all(row.delivered_at is not None for row in rows)
    assert sum(row.attempts for row in rows) == 4
