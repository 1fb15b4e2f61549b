"""How approvals end besides a quorum: revocation, expiry; policy changes; lineage of the facts."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from control_plane.runs import RunKind, RunWorker
from control_plane.store import utcnow
from control_plane.store.models import Approval, AuditRecord, LineageEvent
from policies import DEFAULT_BUNDLE_DIR, load_bundle
from tests.approvals.helpers import approval, decide, people, promote, register_model, run_state
from tests.conftest import RecordingExecutor, as_caller, drain, principal_token


def _actions(client: TestClient, resource: str) -> list[str]:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session() as session:
        return list(
            session.scalars(
                select(AuditRecord.action)
                .where(AuditRecord.resource == resource)
                .order_by(AuditRecord.sequence)
            )
        )


def test_the_submitter_revokes_its_open_request(
    client: TestClient, executors: dict[RunKind, RecordingExecutor]
) -> None:
    # Given a pending promotion and another ml engineer
    register_model(client, "credit", "medium")
    tokens = people(client, ("mel", ["ml_engineer"]), ("max", ["ml_engineer"]))
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    path = f"/api/v1/approvals/{promotion.approval_id}/revoke"
    # When someone else tries to revoke it, then its submitter does
    other = client.post(path, json={"comment": "mine"}, headers=as_caller(client, tokens["max"]))
    own = client.post(path, json={"comment": "wrong"}, headers=as_caller(client, tokens["mel"]))
    # Then only the submitter may; the approval is revoked and the run rejected with the reason
    assert other.status_code == 403, other.text
    assert own.status_code == 200, own.text
    assert own.json()["status"] == "revoked"
    assert own.json()["close_reason"] == "revoked by mel: wrong"
    assert run_state(client, promotion.run_id) == "rejected"
    assert "approval.revoke" in _actions(client, f"approval:{promotion.approval_id}")
    # And a revoked approval is closed to decisions and to a second revocation
    assert client.post(path, json={}).status_code == 409
    validator = principal_token(client, "vera", [("model_validator", "retail")])
    assert decide(client, promotion.approval_id, validator, "approve").status_code == 409
    drain(client)
    assert executors[RunKind.PROMOTE].executed == []


def test_an_admin_revokes_any_open_request(client: TestClient) -> None:
    register_model(client, "credit", "medium")
    tokens = people(client, ("mel", ["ml_engineer"]))
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    response = client.post(f"/api/v1/approvals/{promotion.approval_id}/revoke", json={})
    assert response.status_code == 200, response.text
    assert response.json()["closed_by"] == "admin"


def test_an_expired_approval_is_closed_by_the_worker_and_refuses_decisions(
    client: TestClient,
) -> None:
    # Given a pending promotion whose time ran out
    register_model(client, "credit", "medium")
    tokens = people(client, ("mel", ["ml_engineer"]), ("vera", ["model_validator"]))
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        session.execute(
            update(Approval)
            .where(Approval.id == promotion.approval_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    # When the worker loop goes round once
    worker = RunWorker(services.runs, "expiry", 0.05, [services.approvals.expire_due])
    closed = threading.Event()
    worker.start()
    for _ in range(200):
        if approval(client, promotion.approval_id)["status"] != "pending":
            closed.set()
            break
        closed.wait(0.05)
    worker.stop()
    # Then the approval expired, the run is rejected with the reason, and it is audited
    assert closed.is_set()
    expired = approval(client, promotion.approval_id)
    assert expired["status"] == "expired"
    assert expired["closed_by"] == "system:approval-expiry"
    run = client.get(f"/api/v1/runs/{promotion.run_id}").json()
    assert run["state"] == "rejected"
    assert "expired" in run["transitions"][-1]["reason"]
    assert "approval.expire" in _actions(client, f"approval:{promotion.approval_id}")
    # And a decision is refused
    late = decide(client, promotion.approval_id, tokens["vera"], "approve")
    assert late.status_code == 409, late.text


def test_a_decision_on_a_lapsed_approval_closes_it_as_expired(client: TestClient) -> None:
    register_model(client, "credit", "medium")
    tokens = people(client, ("mel", ["ml_engineer"]), ("vera", ["model_validator"]))
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    services = client.app.state.services  # type: ignore[attr-defined]
    assert services.approvals.expire_due(now=utcnow()) == 0
    later = utcnow() + timedelta(hours=73)
    assert services.approvals.expire_due(now=later) == 1
    assert approval(client, promotion.approval_id)["status"] == "expired"
    assert decide(client, promotion.approval_id, tokens["vera"], "approve").status_code == 409


def test_a_policy_change_is_approved_by_a_risk_officer_and_then_activates(
    client: TestClient,
) -> None:
    # Given a proposed bundle (the admin proposes it) and a platform risk officer
    files = dict(load_bundle(DEFAULT_BUNDLE_DIR).files)
    files["policy.csv"] += "# reviewed\n"
    proposed = client.post("/api/v1/policies", json={"files": files})
    assert proposed.status_code == 202, proposed.text
    version = proposed.json()["version"]
    drain(client)
    (pending,) = client.get("/api/v1/approvals", params={"status": "pending", "limit": 200}).json()[
        "items"
    ]
    assert pending["target"] == f"policy:{version}"
    rita = principal_token(client, "rita", [("risk_officer", "*")])
    # When the admin (who proposed it) tries to approve, then the risk officer approves
    own = client.post(f"/api/v1/approvals/{pending['id']}/decisions", json={"decision": "approve"})
    approved = decide(client, pending["id"], rita, "approve", "reviewed the diff")
    # Then the proposer is refused, and the risk officer's approval activates the bundle
    assert own.status_code == 403, own.text
    assert approved.status_code == 201, approved.text
    assert approved.json()["approval"]["status"] == "approved"
    drain(client)
    assert client.get("/api/v1/policies").json()["active"]["version"] == version


def test_the_run_lineage_carries_the_approval_decisions(client: TestClient) -> None:
    register_model(client, "credit", "medium")
    tokens = people(client, ("mel", ["ml_engineer"]), ("vera", ["model_validator"]))
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    decide(client, promotion.approval_id, tokens["vera"], "approve", "ok")
    drain(client)
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session() as session:
        payloads = session.scalars(
            select(LineageEvent.payload)
            .where(LineageEvent.run_id == str(uuid.UUID(promotion.run_id)))
            .order_by(LineageEvent.id)
        ).all()
    facet = payloads[-1]["run"]["facets"]["govplane_approval"]
    assert facet["status"] == "approved"
    assert facet["closedBy"] == "vera"
    assert [(d["approver"], d["decision"], d["roles"]) for d in facet["decisions"]] == [
        ("vera", "approve", ["model_validator"])
    ]
