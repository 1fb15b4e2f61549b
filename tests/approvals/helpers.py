"""A promotion waiting for approval, and the principals around it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from control_plane.store.models import Model, ModelVersion
from tests.conftest import as_caller, drain, principal_token

DOMAIN = "retail"
CLEARANCE = {"clearance": "internal"}
PASSED_EVALUATION = {"status": "passed", "model_card": {"json": "sha256:" + "0" * 64}}


@dataclass(frozen=True)
class Promotion:
    """A promotion run awaiting its approval, submitted by ``submitter``."""

    run_id: str
    approval_id: str
    submitter: str


def register_model(client: TestClient, name: str, risk_tier: str) -> None:
    response = client.post(
        "/api/v1/models",
        json={"name": name, "domain": DOMAIN, "risk_tier": risk_tier, "intended_use": "scoring"},
    )
    assert response.status_code == 201, response.text


def promote(
    client: TestClient, model: str, stage: str, submitter_token: str, submitter: str
) -> Promotion:
    """Submit a promotion of version 1 as ``submitter`` and let the worker bring it to its
    approval (version 1 is added, evaluated, when the model has none yet)."""
    if not _versions(client, model):
        add_version(client, model, None)
    response = client.post(
        "/api/v1/runs",
        json={
            "kind": "promote",
            "target": f"model:{model}",
            "params": {"target_stage": stage, "version": 1},
        },
        headers=as_caller(client, submitter_token),
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    drain(client)
    approvals = client.get("/api/v1/approvals", params={"limit": 200}).json()["items"]
    (approval,) = [a for a in approvals if a["run_id"] == run_id]
    return Promotion(run_id, approval["id"], submitter)


def add_version(client: TestClient, model: str, source_run_id: str | None, **evidence: Any) -> None:
    """A version of ``model`` produced by ``source_run_id`` (as a training run records it), with
    the passed evaluation and model card a promotion needs."""
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        model_id = session.query(Model.id).filter(Model.name == model).scalar()
        session.add(
            ModelVersion(
                model_id=model_id,
                version=_versions(client, model) + 1,
                source_run_id=source_run_id,
                evidence={"evaluation": PASSED_EVALUATION, **evidence},
            )
        )


def _versions(client: TestClient, model: str) -> int:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session() as session:
        model_id = session.query(Model.id).filter(Model.name == model).scalar()
        return session.query(ModelVersion).filter(ModelVersion.model_id == model_id).count()


def decide(
    client: TestClient, approval_id: str, token: str, decision: str, comment: str = ""
) -> Response:
    return client.post(
        f"/api/v1/approvals/{approval_id}/decisions",
        json={"decision": decision, "comment": comment},
        headers=as_caller(client, token),
    )


def approval(client: TestClient, approval_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/approvals/{approval_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def run_state(client: TestClient, run_id: str) -> str:
    state: str = client.get(f"/api/v1/runs/{run_id}").json()["state"]
    return state


def people(client: TestClient, *specs: tuple[str, list[str]]) -> dict[str, str]:
    """Principals holding roles in the domain; name -> token."""
    return {
        name: principal_token(client, name, [(role, DOMAIN) for role in roles], CLEARANCE)
        for name, roles in specs
    }
