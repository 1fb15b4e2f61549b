"""A site operator's participation decisions and the site's local policy, over the API."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from control_plane.inventory.sites import site_verdict
from control_plane.store.models import Site


def _site(client: TestClient, name: str, dataset: str, **policy: Any) -> str:
    registered = client.post(
        "/api/v1/datasets", json={"name": dataset, "domain": "retail", "classification": "internal"}
    )
    assert registered.status_code == 201, registered.text
    site = client.post(
        "/api/v1/sites",
        json={
            "name": name,
            "domain": "retail",
            "residency": "DE",
            "datasets": [dataset],
            "policy": policy,
        },
    )
    assert site.status_code == 201, site.text
    site_id: str = site.json()["id"]
    return site_id


def _run(client: TestClient, kind: str, inputs: list[str]) -> str:
    submitted = client.post(
        "/api/v1/runs", json={"kind": kind, "target": "model:income", "inputs": inputs}
    )
    assert submitted.status_code == 202, submitted.text
    run_id: str = submitted.json()["id"]
    return run_id


def _verdict(client: TestClient, site_id: str, run_id: str, **run: Any) -> str | None:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session() as session:
        site = session.get(Site, site_id)
        arguments = {"purpose": None, "dp": False, "peers": 2} | run
        return site_verdict(session, site, run_id, **arguments)


def _decide(client: TestClient, site_id: str, run_id: str, decision: str) -> Any:
    return client.post(
        f"/api/v1/sites/{site_id}/participations",
        json={"run_id": run_id, "decision": decision, "comment": "checked the run"},
    )


def _audited(client: TestClient, run_id: str) -> list[str]:
    """The participation decisions the audit trail holds for ``run_id``."""
    events = client.get(
        "/api/v1/audit/events", params={"action": "site.participation", "run_id": run_id}
    )
    assert events.status_code == 200, events.text
    return [event["decision"] for event in events.json()["items"]]


def test_an_approval_requiring_site_joins_only_once_its_operator_approves(
    client: TestClient,
) -> None:
    # Given a site whose policy requires its operator's approval, and a federated run on its data
    created = client.post(
        "/api/v1/models",
        json={"name": "income", "domain": "retail", "risk_tier": "low", "intended_use": "test"},
    )
    assert created.status_code == 201, created.text
    site_id = _site(client, "clinic", "clinic-data", require_approval=True)
    run_id = _run(client, "federated_train", ["dataset:clinic-data"])
    # Then, before any decision, its policy keeps it out
    assert "requires its operator's approval" in (_verdict(client, site_id, run_id) or "")
    # When its operator approves
    approved = _decide(client, site_id, run_id, "approve")
    # Then the decision is recorded, and the site may take part
    assert approved.status_code == 201, approved.text
    assert approved.json()["decision"] == "approve"
    assert _verdict(client, site_id, run_id) is None
    assert _audited(client, run_id) == ["approve"]
    # And a second decision on the same run is refused
    again = _decide(client, site_id, run_id, "refuse")
    assert again.status_code == 409
    assert "decided on run" in again.json()["detail"]
    assert _verdict(client, site_id, run_id) is None
    assert _audited(client, run_id) == ["approve"]


def test_a_refusal_and_each_local_condition_keep_a_site_out(client: TestClient) -> None:
    created = client.post(
        "/api/v1/models",
        json={"name": "income", "domain": "retail", "risk_tier": "low", "intended_use": "test"},
    )
    assert created.status_code == 201, created.text
    strict = _site(
        client,
        "hospital",
        "hospital-data",
        require_dp=True,
        min_peers=3,
        allowed_purposes=["fraud"],
    )
    open_site = _site(client, "branch", "branch-data")
    run_id = _run(client, "federated_train", ["dataset:hospital-data", "dataset:branch-data"])
    # Each of the strict site's conditions keeps it out on its own
    assert "requires differential privacy" in (_verdict(client, strict, run_id) or "")
    assert "allows the purposes fraud, not credit" in (
        _verdict(client, strict, run_id, dp=True, purpose="credit", peers=3) or ""
    )
    assert "at least 3 peers and the run has 2" in (
        _verdict(client, strict, run_id, dp=True, purpose="fraud") or ""
    )
    assert _verdict(client, strict, run_id, dp=True, purpose="fraud", peers=3) is None
    # An open site takes part until its operator refuses, with the reason given
    assert _verdict(client, open_site, run_id) is None
    refused = _decide(client, open_site, run_id, "refuse")
    assert refused.status_code == 201, refused.text
    assert "refused: checked the run" in (_verdict(client, open_site, run_id) or "")


def test_decisions_on_runs_a_site_cannot_join_are_refused_and_record_nothing(
    client: TestClient,
) -> None:
    created = client.post(
        "/api/v1/models",
        json={"name": "income", "domain": "retail", "risk_tier": "low", "intended_use": "test"},
    )
    assert created.status_code == 201, created.text
    site_id = _site(client, "clinic", "clinic-data")
    other = _site(client, "branch", "branch-data")
    federated = _run(client, "federated_train", ["dataset:branch-data"])
    central = _run(client, "train", ["dataset:clinic-data"])
    cases = [
        (site_id, "no-such-run", 422, "no run 'no-such-run'"),
        ("no-such-site", federated, 404, "site no-such-site"),
        (site_id, central, 409, "is not an unfinished federated_train run"),
        (site_id, federated, 409, "holds none of the inputs"),
    ]
    for site, run_id, status, detail in cases:
        response = _decide(client, site, run_id, "approve")
        assert response.status_code == status, response.text
        assert detail in response.json()["detail"]
    for malformed in (
        {"run_id": federated, "decision": "maybe"},
        {"run_id": federated},
        {"run_id": federated, "decision": "approve", "extra": 1},
    ):
        response = client.post(f"/api/v1/sites/{other}/participations", json=malformed)
        assert response.status_code in (400, 422), response.text
    # Nothing was recorded: the site that holds the run's data can still decide
    assert _audited(client, federated) == []
    assert _decide(client, other, federated, "approve").status_code == 201
