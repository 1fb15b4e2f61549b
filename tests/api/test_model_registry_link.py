"""Inventory model versions link to their registry version and artifact digest, audited."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from control_plane.errors import ConflictError, InvalidInputError, NotFoundError
from control_plane.inventory.versions import record_model_version

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def train_run(client: TestClient) -> str:
    """A succeeded train run of model ``credit`` (the source run of the versions)."""
    assert (
        client.post(
            "/api/v1/datasets",
            json={"name": "adult", "domain": "retail", "classification": "internal"},
        ).status_code
        == 201
    )
    assert (
        client.post(
            "/api/v1/models",
            json={
                "name": "credit",
                "domain": "retail",
                "risk_tier": "low",
                "intended_use": "scoring",
            },
        ).status_code
        == 201
    )
    run = client.post(
        "/api/v1/runs",
        json={"kind": "train", "target": "model:credit", "inputs": ["dataset:adult"]},
    )
    assert run.status_code == 202, run.text
    run_id: str = run.json()["id"]
    return run_id


def _record(
    client: TestClient, run_id: str, uri: str, digest: str = DIGEST, model: str = "credit"
) -> int:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        row = record_model_version(session, services.audit, model, uri, digest, run_id, "alice")
        version: int = row.version
    return version


def test_recorded_versions_link_the_registry_and_are_audited(
    client: TestClient, train_run: str
) -> None:
    # When two registered artifacts are recorded for model credit
    first = _record(client, train_run, "models:/credit/4")
    second = _record(client, train_run, "models:/credit/5", "sha256:" + "cd" * 32)
    # Then they are versions 1 and 2 in the inventory, each with its link and digest
    assert (first, second) == (1, 2)
    shown = client.get("/api/v1/models/credit/versions/1").json()
    assert shown["registry_uri"] == "models:/credit/4"
    assert shown["artifact_digest"] == DIGEST
    assert shown["source_run_id"] == train_run
    # And each was written to the audit trail with the run it came from
    events = client.get("/api/v1/audit/events", params={"action": "model.version.register"}).json()
    recorded = [(e["run_id"], e["payload"]["registry_uri"]) for e in events["items"]]
    assert recorded == [(train_run, "models:/credit/4"), (train_run, "models:/credit/5")]


def test_one_registry_version_links_to_one_inventory_version(
    client: TestClient, train_run: str
) -> None:
    _record(client, train_run, "models:/credit/4")
    with pytest.raises(ConflictError):
        _record(client, train_run, "models:/credit/4")


@pytest.mark.parametrize(
    ("uri", "digest", "model", "error"),
    [
        ("/srv/models/credit.pkl", DIGEST, "credit", InvalidInputError),
        ("runs:/abc/model", DIGEST, "credit", InvalidInputError),
        ("models:/other/1", DIGEST, "credit", InvalidInputError),
        ("models:/credit/1", "md5:abc", "credit", InvalidInputError),
        ("models:/nope/1", DIGEST, "nope", NotFoundError),
    ],
)
def test_bad_links_are_refused_and_nothing_is_written(
    client: TestClient, train_run: str, uri: str, digest: str, model: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        _record(client, train_run, uri, digest, model)
    assert client.get("/api/v1/models/credit/versions/1").status_code == 404
