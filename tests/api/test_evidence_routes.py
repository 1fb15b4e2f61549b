"""Evidence and model-card routes: precise 404 and 422, and stored evidence served only intact."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from control_plane.inventory.versions import record_model_version
from control_plane.runs.evidence import keep_artifact
from control_plane.store.models import EvidenceArtifact


@pytest.fixture
def run_id(client: TestClient) -> str:
    """A train run of model ``credit``, whose version 1 is registered but not evaluated."""
    for path, body in (
        ("/api/v1/datasets", {"name": "adult", "domain": "retail", "classification": "internal"}),
        (
            "/api/v1/models",
            {"name": "credit", "domain": "retail", "risk_tier": "low", "intended_use": "scoring"},
        ),
    ):
        assert client.post(path, json=body).status_code == 201
    run = client.post(
        "/api/v1/runs",
        json={"kind": "train", "target": "model:credit", "inputs": ["dataset:adult"]},
    )
    identifier: str = run.json()["id"]
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        record_model_version(
            session,
            services.audit,
            "credit",
            "models:/credit/1",
            "sha256:" + "ab" * 32,
            identifier,
            "admin",
        )
    return identifier


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/api/v1/runs/nope/evidence", 404, "no run nope"),
        ("/api/v1/runs/nope/evidence/drift.json", 404, "no run nope"),
        ("/api/v1/runs/{run}/evidence/drift.json", 404, "kept no evidence named 'drift.json'"),
        ("/api/v1/runs/{run}/evidence/Drift.JSON", 422, "name"),
        ("/api/v1/models/credit/versions/1/card", 404, "has not been evaluated"),
        ("/api/v1/models/credit/versions/2/card", 404, "has no version 2"),
        ("/api/v1/models/credit/versions/0/card", 422, "version"),
        ("/api/v1/models/nope/versions/1/card", 404, "nope"),
        ("/api/v1/models/credit/versions/1/card?format=pdf", 422, "format"),
    ],
)
def test_bad_names_and_versions_get_a_precise_problem(
    client: TestClient, run_id: str, path: str, status: int, detail: str
) -> None:
    response = client.get(path.format(run=run_id))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]


def test_a_run_lists_its_evidence_and_serves_it_only_intact(
    client: TestClient, run_id: str
) -> None:
    # Given a document kept as evidence of the run
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        digest = keep_artifact(session, run_id, "report.md", "# drift\n").digest
    # Then it is listed and served as written
    [listed] = client.get(f"/api/v1/runs/{run_id}/evidence").json()
    assert (listed["name"], listed["digest"], listed["size"]) == ("report.md", digest, 8)
    served = client.get(f"/api/v1/runs/{run_id}/evidence/report.md")
    assert served.text == "# drift\n"
    assert served.headers["content-type"].startswith("text/markdown")
    # When its bytes are changed behind the store's back
    with services.db.session(write=True) as session:
        session.execute(
            update(EvidenceArtifact)
            .where(EvidenceArtifact.run_id == run_id)
            .values(content=b"# no drift\n")
        )
    # Then it is no longer served
    refused = client.get(f"/api/v1/runs/{run_id}/evidence/report.md")
    assert refused.status_code == 500
    assert "does not match its digest" in refused.json()["detail"]
