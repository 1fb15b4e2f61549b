"""Mass assignment: a client cannot set what the server owns (owner, state, approvals, spend...).

Every create route is sent a valid body plus one server-owned field at a time; each must be
refused with 422 naming the field, and nothing may be stored.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from policies import DEFAULT_BUNDLE_DIR, load_bundle
from tests.conftest import as_caller, principal_token

DATASET = {"name": "adult", "domain": "retail", "classification": "internal"}
MODEL = {"name": "credit", "domain": "retail", "risk_tier": "low", "intended_use": "scoring"}
SITE = {"name": "berlin", "domain": "retail", "residency": "DE"}
RUN = {"kind": "train", "target": "model:credit", "inputs": ["dataset:adult"]}
PRINCIPAL = {"name": "mallory", "kind": "user"}

SERVER_OWNED: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "/api/v1/datasets": (
        DATASET,
        {
            "id": "0" * 32,
            "owner": "mallory",
            "created_by": "mallory",
            "created_at": "2020-01-01T00:00:00Z",
            "epsilon_spent": 0.0,
            "epsilon_budget": 1000.0,
            "status": "approved",
        },
    ),
    "/api/v1/models": (
        MODEL,
        {
            "owner": "mallory",
            "stage": "production",
            "versions": [{"version": 1, "stage": "production"}],
            "approvals": ["mallory"],
            "created_by": "mallory",
        },
    ),
    "/api/v1/sites": (SITE, {"operator": "mallory", "created_by": "mallory", "id": "0" * 32}),
    "/api/v1/runs": (
        RUN,
        {
            "state": "succeeded",
            "submitted_by": "admin",
            "claimed_by": "worker",
            "approvals": [{"by": "risk", "status": "approved"}],
            "outputs": {"model_uri": "file:///etc/passwd"},
            "plan": [],
            "gates": [],
            "bundle_version": "sha256:" + "0" * 64,
            "attributes": {"classification": "public"},
            "domain": "*",
        },
    ),
    "/api/v1/principals": (
        PRINCIPAL,
        {"id": "0" * 32, "created_at": "2020-01-01T00:00:00Z", "tokens": ["gp_x"]},
    ),
}


def _prepare(client: TestClient) -> None:
    for path, body in (("/api/v1/datasets", DATASET), ("/api/v1/models", MODEL)):
        assert client.post(path, json=body).status_code == 201


@pytest.mark.parametrize("path", sorted(SERVER_OWNED))
def test_server_owned_fields_are_refused(client: TestClient, path: str) -> None:
    body, owned = SERVER_OWNED[path]
    if path == "/api/v1/runs":
        _prepare(client)
    listing = path if path != "/api/v1/principals" else f"{path}?limit=200"
    before = client.get(listing).json()["items"]
    for name, value in owned.items():
        # When a valid body carries one server-owned field
        response = client.post(path, json={**body, name: value})
        # Then it is refused, naming the field, and nothing is stored
        assert response.status_code == 422, (name, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert name in response.json()["detail"], (name, response.text)
    assert client.get(listing).json()["items"] == before


def test_a_token_request_cannot_choose_the_token_or_its_owner(client: TestClient) -> None:
    principal = client.post("/api/v1/principals", json=PRINCIPAL).json()
    for name, value in (("token", "gp_chosen"), ("principal_id", "0" * 32)):
        response = client.post(f"/api/v1/principals/{principal['id']}/tokens", json={name: value})
        assert response.status_code == 422, (name, response.text)
    response = client.get("/api/v1/runs", headers=as_caller(client, "gp_chosen"))
    assert response.status_code == 401


def test_a_proposal_cannot_activate_itself(client: TestClient) -> None:
    files = dict(load_bundle(DEFAULT_BUNDLE_DIR).files)
    files["policy.csv"] += "p, data_scientist, *, *, *, allow, true\n"
    before = client.get("/api/v1/policies").json()
    for name, value in (("status", "active"), ("version", "sha256:" + "0" * 64)):
        response = client.post("/api/v1/policies", json={"files": files, name: value})
        assert response.status_code == 422, (name, response.text)
    assert client.get("/api/v1/policies").json() == before


def test_run_params_cannot_stand_in_for_caller_or_resource_attributes(
    client: TestClient,
) -> None:
    # Given a data scientist cleared for internal data and a confidential dataset
    scientist = principal_token(
        client, "dana", [("data_scientist", "retail")], {"clearance": "internal"}
    )
    assert client.post("/api/v1/datasets", json={**DATASET, "classification": "confidential"})
    assert client.post("/api/v1/models", json=MODEL).status_code == 201
    # When she submits a training run whose params claim a higher clearance and a lower class
    response = client.post(
        "/api/v1/runs",
        headers=as_caller(client, scientist),
        json={**RUN, "params": {"clearance": "restricted", "classification": "public"}},
    )
    # Then the store's attributes decide: she may not read the dataset
    assert response.status_code == 403, response.text
    assert client.get("/api/v1/runs").json()["items"] == []
