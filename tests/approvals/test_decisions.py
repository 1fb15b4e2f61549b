"""Deciding approvals through the API: quorum, roles, separation of duties, idempotency."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from control_plane.runs import RunKind
from control_plane.store.models import AuditRecord
from tests.approvals.helpers import (
    add_version,
    approval,
    decide,
    people,
    promote,
    register_model,
    run_state,
)
from tests.conftest import RecordingExecutor, as_caller, drain, principal_token


def _audit_actions(client: TestClient, resource: str) -> list[tuple[str, str, str]]:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session() as session:
        rows = session.execute(
            select(AuditRecord.action, AuditRecord.actor, AuditRecord.resource)
            .where(AuditRecord.resource == resource)
            .order_by(AuditRecord.sequence)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_a_high_risk_promotion_needs_two_approvers_holding_both_roles(
    client: TestClient, executors: dict[RunKind, RecordingExecutor]
) -> None:
    # Given a high-risk model whose promotion to production an ml engineer submitted
    register_model(client, "credit", "high")
    tokens = people(
        client,
        ("mel", ["ml_engineer"]),
        ("vera", ["model_validator"]),
        ("val", ["model_validator"]),
        ("rita", ["risk_officer"]),
    )
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    # When two validators approve: two approvers, but no risk officer among them
    assert decide(client, promotion.approval_id, tokens["vera"], "approve", "ok").status_code == 201
    assert decide(client, promotion.approval_id, tokens["val"], "approve").status_code == 201
    # Then the approval stays pending and nothing executed
    assert approval(client, promotion.approval_id)["status"] == "pending"
    drain(client)
    assert executors[RunKind.PROMOTE].executed == []
    # When the risk officer approves too, the approval completes and the run executes once
    done = decide(client, promotion.approval_id, tokens["rita"], "approve", "risk accepted")
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["approval"]["status"] == "approved"
    assert body["decision"]["roles"] == ["risk_officer"]
    assert [d["approver"] for d in body["approval"]["decisions"]] == ["vera", "val", "rita"]
    assert run_state(client, promotion.run_id) == "running"
    drain(client)
    assert run_state(client, promotion.run_id) == "succeeded"
    assert executors[RunKind.PROMOTE].executed == [promotion.run_id]
    # And every decision is an audit record with its approver
    decisions = [a for a in _audit_actions(client, f"approval:{promotion.approval_id}")]
    assert [(a, who) for a, who, _ in decisions if a == "approval.decide"] == [
        ("approval.decide", "vera"),
        ("approval.decide", "val"),
        ("approval.decide", "rita"),
    ]


def test_a_repeated_decision_counts_once_and_a_changed_one_is_refused(
    client: TestClient,
) -> None:
    # Given a high-risk promotion (two approvers needed)
    register_model(client, "credit", "high")
    tokens = people(client, ("mel", ["ml_engineer"]), ("vera", ["model_validator", "risk_officer"]))
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    # When the same validator approves twice, then tries to reject
    first = decide(client, promotion.approval_id, tokens["vera"], "approve", "fine")
    again = decide(client, promotion.approval_id, tokens["vera"], "approve", "fine")
    changed = decide(client, promotion.approval_id, tokens["vera"], "reject", "second thoughts")
    # Then the repeat returns the same decision (200), the change is 409, and one vote counted
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["decision"]["id"] == first.json()["decision"]["id"]
    assert changed.status_code == 409, changed.text
    assert changed.headers["content-type"] == "application/problem+json"
    current = approval(client, promotion.approval_id)
    assert current["status"] == "pending"
    assert len(current["decisions"]) == 1


def test_the_submitter_cannot_approve_its_own_promotion(client: TestClient) -> None:
    # Given an ml engineer who also holds the validator role submits a promotion
    register_model(client, "credit", "medium")
    tokens = people(client, ("mel", ["ml_engineer", "model_validator"]))
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    # When it approves its own request
    response = decide(client, promotion.approval_id, tokens["mel"], "approve")
    # Then it is refused with the reason, nothing is counted, and the refusal is audited
    assert response.status_code == 403, response.text
    assert "separation of duties" in response.json()["detail"]
    assert "submitted the run" in response.json()["detail"]
    assert approval(client, promotion.approval_id)["decisions"] == []
    refusals = _audit_actions(client, f"approval:{promotion.approval_id}")
    assert ("approval.decide", "mel", f"approval:{promotion.approval_id}") in refusals


def test_a_trainer_of_the_model_cannot_approve(client: TestClient) -> None:
    # Given a model version trained by a principal who is also a validator
    register_model(client, "credit", "medium")
    client.post(
        "/api/v1/datasets",
        json={"name": "adult", "domain": "retail", "classification": "internal"},
    )
    tokens = people(
        client,
        ("mel", ["ml_engineer"]),
        ("tom", ["data_scientist", "model_validator"]),
        ("vera", ["model_validator"]),
    )
    trained = client.post(
        "/api/v1/runs",
        json={"kind": "train", "target": "model:credit", "inputs": ["dataset:adult"]},
        headers=as_caller(client, tokens["tom"]),
    )
    assert trained.status_code == 202, trained.text
    drain(client)
    add_version(client, "credit", trained.json()["id"])
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    # When the trainer approves, then an independent validator
    refused = decide(client, promotion.approval_id, tokens["tom"], "approve")
    accepted = decide(client, promotion.approval_id, tokens["vera"], "approve")
    # Then the trainer is refused (naming why) and the validator completes the approval
    assert refused.status_code == 403, refused.text
    assert "trained version 1 of model credit" in refused.json()["detail"]
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["approval"]["status"] == "approved"


def test_the_owner_of_restricted_training_data_cannot_approve(client: TestClient) -> None:
    # Given a version trained on restricted data whose owner is a validator too
    register_model(client, "triage", "medium")
    tokens = people(
        client,
        ("mel", ["ml_engineer"]),
        ("olga", ["data_owner", "model_validator"]),
        ("vera", ["model_validator"]),
    )
    created = client.post(
        "/api/v1/datasets",
        json={"name": "patients", "domain": "retail", "classification": "restricted"},
        headers=as_caller(client, tokens["olga"]),
    )
    assert created.status_code == 201, created.text
    add_version(client, "triage", None, training={"dataset_ids": [created.json()["id"]]})
    promotion = promote(client, "triage", "production", tokens["mel"], "mel")
    # When the owner approves
    response = decide(client, promotion.approval_id, tokens["olga"], "approve")
    # Then separation of duties refuses it
    assert response.status_code == 403, response.text
    assert "owns restricted dataset patients" in response.json()["detail"]
    assert decide(client, promotion.approval_id, tokens["vera"], "approve").status_code == 201


def test_a_rejection_by_a_required_role_ends_the_approval(
    client: TestClient, executors: dict[RunKind, RecordingExecutor]
) -> None:
    # Given a high-risk promotion that one validator already approved
    register_model(client, "credit", "high")
    tokens = people(
        client,
        ("mel", ["ml_engineer"]),
        ("vera", ["model_validator"]),
        ("rita", ["risk_officer"]),
    )
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    decide(client, promotion.approval_id, tokens["vera"], "approve")
    # When the risk officer rejects it
    response = decide(client, promotion.approval_id, tokens["rita"], "reject", "too risky")
    # Then the approval and the run are rejected with the reason, and nothing executes
    assert response.status_code == 201, response.text
    assert response.json()["approval"]["status"] == "rejected"
    run = client.get(f"/api/v1/runs/{promotion.run_id}").json()
    assert run["state"] == "rejected"
    assert run["transitions"][-1]["reason"] == "rita rejected: too risky"
    drain(client)
    assert executors[RunKind.PROMOTE].executed == []
    # And a closed approval takes no further decision
    late = decide(client, promotion.approval_id, tokens["vera"] + "", "reject")
    assert late.status_code == 409, late.text


def test_a_rejection_without_a_required_role_does_not_end_it(client: TestClient) -> None:
    # Given a medium-risk promotion (one model_validator) and an admin of the domain
    register_model(client, "credit", "medium")
    tokens = people(client, ("mel", ["ml_engineer"]), ("ada", ["admin"]))
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    # When the admin, who may decide but holds no required role, rejects
    response = decide(client, promotion.approval_id, tokens["ada"], "reject", "hmm")
    # Then the rejection is recorded, but the approval stays open
    assert response.status_code == 201, response.text
    assert response.json()["approval"]["status"] == "pending"


def test_a_caller_the_policy_does_not_allow_is_refused(client: TestClient) -> None:
    register_model(client, "credit", "medium")
    tokens = people(client, ("mel", ["ml_engineer"]), ("dana", ["data_scientist"]))
    promotion = promote(client, "credit", "production", tokens["mel"], "mel")
    response = decide(client, promotion.approval_id, tokens["dana"], "approve")
    assert response.status_code == 403, response.text
    assert response.json()["rule"]
    assert approval(client, promotion.approval_id)["decisions"] == []


def test_decisions_on_unknown_approvals_and_bad_bodies_are_precise(client: TestClient) -> None:
    missing = client.post(
        "/api/v1/approvals/nope/decisions", json={"decision": "approve", "comment": ""}
    )
    assert missing.status_code == 404
    register_model(client, "credit", "medium")
    token = principal_token(client, "mel", [("ml_engineer", "retail")])
    promotion = promote(client, "credit", "production", token, "mel")
    for body in ({"decision": "maybe"}, {"decision": "approve", "status": "approved"}, {}):
        response = client.post(f"/api/v1/approvals/{promotion.approval_id}/decisions", json=body)
        assert response.status_code == 422, response.text
    assert approval(client, promotion.approval_id)["decisions"] == []
