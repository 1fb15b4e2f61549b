"""The privacy ledger: budgets from the policy, reservations, settlement, audit, concurrency.

Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from control_plane.api.deps import Services
from control_plane.errors import ConflictError, InvalidInputError
from control_plane.runs import RunKind, RunState
from control_plane.store import utcnow
from control_plane.store.models import AuditRecord, Run
from tests.conftest import RecordingExecutor, as_caller, drain, principal_token


def _services(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def _dataset(client: TestClient, name: str, classification: str, **extra: Any) -> str:
    response = client.post(
        "/api/v1/datasets",
        json={"name": name, "domain": "retail", "classification": classification, **extra},
    )
    assert response.status_code == 201, response.text
    dataset_id: str = response.json()["id"]
    return dataset_id


def _run(client: TestClient, dataset: str, epsilon: float = 1.0) -> str:
    """A pending dp training run on ``dataset`` (a model named after it)."""
    model = f"m-{dataset}-{len(client.get('/api/v1/models').json()['items'])}"
    created = client.post(
        "/api/v1/models",
        json={"name": model, "domain": "retail", "risk_tier": "low", "intended_use": "test"},
    )
    assert created.status_code == 201, created.text
    response = client.post(
        "/api/v1/runs",
        json={
            "kind": "train",
            "target": f"model:{model}",
            "inputs": [f"dataset:{dataset}"],
            "params": {"privacy_mode": "dp", "epsilon": epsilon},
        },
    )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def _reserve(client: TestClient, dataset_id: str, run_id: str, epsilon: float, delta: float) -> Any:
    services = _services(client)
    with services.db.session(write=True) as session:
        return services.privacy_ledger.reserve(
            session, dataset_id, run_id, epsilon, delta, "trainer"
        ).id


def _budget(client: TestClient, dataset_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/privacy/budgets/{dataset_id}")
    assert response.status_code == 200, response.text
    budget: dict[str, Any] = response.json()
    return budget


def test_the_budget_comes_from_the_policy_and_the_datasets_own_stricter_budget(
    client: TestClient,
) -> None:
    # Given a confidential dataset (privacy.yaml: total 10, 3 per run, delta 1e-6) and one
    # with its own smaller budget
    policy = _dataset(client, "claims", "confidential")
    own = _dataset(
        client, "claims-eu", "confidential", privacy_budget={"epsilon": 4, "delta": 1e-7}
    )
    # When their budgets are read
    policy_budget, own_budget = _budget(client, policy), _budget(client, own)
    # Then each shows its total, nothing spent, and the per-run cap
    assert policy_budget["epsilon"] == {"budget": 10.0, "spent": 0.0, "reserved": 0.0, "left": 10.0}
    assert policy_budget["delta"]["budget"] == 1e-6
    assert policy_budget["max_epsilon_per_run"] == 3.0
    assert own_budget["epsilon"]["budget"] == 4.0
    assert own_budget["delta"]["budget"] == 1e-7
    assert policy_budget["entries"] == []


def test_a_run_reserves_then_commits_what_its_accountant_computed(client: TestClient) -> None:
    # Given a dataset and a dp run on it
    dataset_id = _dataset(client, "claims", "confidential")
    run_id = _run(client, "claims")
    _reserve(client, dataset_id, run_id, 3.0, 1e-7)
    assert _budget(client, dataset_id)["epsilon"]["reserved"] == 3.0
    # When the run commits a smaller actual spend
    services = _services(client)
    with services.db.session(write=True) as session:
        services.privacy_ledger.commit(session, dataset_id, run_id, 2.5, 1e-7, "rdp", "trainer")
    # Then the spend is recorded, the rest returned, and the entry shows how it was settled
    budget = _budget(client, dataset_id)
    assert budget["epsilon"] == {"budget": 10.0, "spent": 2.5, "reserved": 0.0, "left": 7.5}
    assert budget["delta"]["spent"] == pytest.approx(1e-7, rel=1e-12)
    [entry] = budget["entries"]
    assert (entry["run_id"], entry["state"], entry["accountant"]) == (run_id, "committed", "rdp")
    assert (entry["epsilon_reserved"], entry["epsilon_spent"]) == (3.0, 2.5)


def test_a_released_reservation_returns_the_whole_budget(client: TestClient) -> None:
    # Given a reservation
    dataset_id = _dataset(client, "claims", "confidential")
    run_id = _run(client, "claims")
    _reserve(client, dataset_id, run_id, 2.0, 1e-7)
    # When it is released
    services = _services(client)
    with services.db.session(write=True) as session:
        services.privacy_ledger.release(session, dataset_id, run_id, "trainer")
    # Then nothing is spent or reserved, and it cannot be settled twice
    budget = _budget(client, dataset_id)
    assert budget["epsilon"] == {"budget": 10.0, "spent": 0.0, "reserved": 0.0, "left": 10.0}
    assert budget["entries"][0]["state"] == "released"
    with (
        pytest.raises(ConflictError, match="no open reservation"),
        services.db.session(write=True) as session,
    ):
        services.privacy_ledger.commit(session, dataset_id, run_id, 1.0, 1e-7, "rdp", "trainer")


def test_overspending_is_refused(client: TestClient) -> None:
    # Given a dataset with 10 epsilon of which 9 are committed
    dataset_id = _dataset(client, "claims", "confidential")
    services = _services(client)
    for _ in range(3):
        run_id = _run(client, "claims")
        _reserve(client, dataset_id, run_id, 3.0, 1e-7)
        with services.db.session(write=True) as session:
            services.privacy_ledger.commit(session, dataset_id, run_id, 3.0, 1e-7, "prv", "t")
    # When a run asks for more than is left, more than a run may spend, or commits more
    # than it reserved
    late = _run(client, "claims")
    with pytest.raises(ConflictError, match=r"cannot cover epsilon 2\.0"):
        _reserve(client, dataset_id, late, 2.0, 1e-7)
    with pytest.raises(InvalidInputError, match=r"exceeds the 3\.0 per run"):
        _reserve(client, dataset_id, late, 3.5, 1e-7)
    _reserve(client, dataset_id, late, 1.0, 1e-7)
    with (
        pytest.raises(ConflictError, match="more than it reserved"),
        services.db.session(write=True) as session,
    ):
        services.privacy_ledger.commit(session, dataset_id, late, 1.5, 1e-7, "rdp", "t")
    # Then the ledger holds exactly what was allowed: 9 spent, 1 reserved, nothing left
    budget = _budget(client, dataset_id)
    assert budget["epsilon"] == {"budget": 10.0, "spent": 9.0, "reserved": 1.0, "left": 0.0}


def test_delta_is_a_budget_too(client: TestClient) -> None:
    # Given a dataset whose whole delta is 1e-6
    dataset_id = _dataset(client, "claims", "confidential")
    first, second = _run(client, "claims"), _run(client, "claims")
    _reserve(client, dataset_id, first, 1.0, 6e-7)
    # When a second run asks for a delta that would take the total over 1e-6
    # Then it is refused, though epsilon would fit
    with pytest.raises(ConflictError, match="delta"):
        _reserve(client, dataset_id, second, 1.0, 5e-7)


def test_restricted_data_has_a_budget_for_federated_dp_only(client: TestClient) -> None:
    # Given restricted data, which privacy.yaml allows only federated training on, with
    # site-level DP charged to it
    dataset_id = _dataset(client, "patients", "restricted")
    run_id = _run(client, "patients")
    # When its budget is read, and a run tries to reserve more than one run may spend
    budget = _budget(client, dataset_id)
    # Then the budget is the restricted rule's, and the reservation is refused, naming the rule
    assert budget["dp_allowed"] is True
    assert budget["epsilon"] == {"budget": 10.0, "spent": 0.0, "reserved": 0.0, "left": 10.0}
    with pytest.raises(InvalidInputError, match="per run") as refused:
        _reserve(client, dataset_id, run_id, 3.5, 1e-7)
    assert refused.value.extensions["rule"] == "privacy.yaml:classifications.restricted.dp"


def test_concurrent_reservations_never_exceed_the_budget(client: TestClient) -> None:
    # Given 24 runs that each plan 1.5 of a budget of 10
    dataset_id = _dataset(client, "claims", "confidential")
    runs = [_run(client, "claims") for _ in range(24)]

    def reserve(run_id: str) -> bool:
        try:
            _reserve(client, dataset_id, run_id, 1.5, 1e-8)
        except ConflictError:
            return False
        return True

    # When they all reserve at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = sum(pool.map(reserve, runs))
    # Then exactly floor(10 / 1.5) = 6 got a reservation, and the ledger agrees
    budget = _budget(client, dataset_id)
    assert granted == 6
    assert budget["epsilon"]["reserved"] == pytest.approx(9.0)
    assert len(budget["entries"]) == 6


def test_a_failed_run_releases_and_a_succeeded_run_is_charged(
    client: TestClient, executors: dict[RunKind, RecordingExecutor]
) -> None:
    # Given a run holding a reservation, whose executor fails
    dataset_id = _dataset(client, "claims", "confidential")
    failing = _run(client, "claims")
    _reserve(client, dataset_id, failing, 2.0, 1e-7)
    executors[RunKind.TRAIN].fail_with = "out of memory"
    assert drain(client) == 1
    # Then the engine released its reservation when it failed the run
    [entry] = _budget(client, dataset_id)["entries"]
    assert (entry["run_id"], entry["state"]) == (failing, "released")
    # And a run that succeeds without committing is charged its whole reservation
    executors[RunKind.TRAIN].fail_with = None
    succeeding = _run(client, "claims")
    _reserve(client, dataset_id, succeeding, 1.5, 1e-7)
    assert drain(client) == 1
    budget = _budget(client, dataset_id)
    assert budget["entries"][1]["run_id"] == succeeding
    assert budget["entries"][1]["state"] == "committed"
    assert budget["entries"][1]["accountant"] == "reservation"
    assert budget["epsilon"]["spent"] == 1.5


def test_a_run_whose_worker_died_releases_its_reservation(client: TestClient) -> None:
    # Given a running run holding a reservation, whose worker stopped renewing its lease
    dataset_id = _dataset(client, "claims", "confidential")
    run_id = _run(client, "claims")
    services = _services(client)
    assert services.runs.claim_next("crashed-worker") == run_id
    _reserve(client, dataset_id, run_id, 2.0, 1e-7)
    with services.db.session(write=True) as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    # When another replica (here: the same engine after a restart) looks for lost runs
    assert services.runs.fail_lost_runs() == 1
    # Then the run failed and its reservation went back to the budget
    assert client.get(f"/api/v1/runs/{run_id}").json()["state"] == RunState.FAILED
    budget = _budget(client, dataset_id)
    assert budget["epsilon"]["reserved"] == 0.0
    assert budget["entries"][0]["state"] == "released"


def test_every_ledger_change_is_audited(client: TestClient) -> None:
    # Given a reservation that is committed, and one that is released
    dataset_id = _dataset(client, "claims", "confidential")
    kept, dropped = _run(client, "claims"), _run(client, "claims")
    services = _services(client)
    _reserve(client, dataset_id, kept, 2.0, 1e-7)
    _reserve(client, dataset_id, dropped, 1.0, 1e-7)
    with services.db.session(write=True) as session:
        services.privacy_ledger.commit(session, dataset_id, kept, 1.25, 1e-7, "prv", "trainer")
        services.privacy_ledger.release(session, dataset_id, dropped, "trainer")
    # Then the trail has one record per change, for the budget, with the run
    with services.db.session() as session:
        records = session.execute(
            select(AuditRecord.action, AuditRecord.run_id).where(
                AuditRecord.resource == f"privacy_budget:{dataset_id}"
            )
        ).all()
    assert sorted(records) == sorted(
        [
            ("privacy.reserve", kept),
            ("privacy.reserve", dropped),
            ("privacy.commit", kept),
            ("privacy.release", dropped),
        ]
    )
    assert client.get("/api/v1/audit/verify").json()["valid"] is True


def test_reservations_over_http_are_settled_only_by_who_reserved(client: TestClient) -> None:
    # Given a pipeline's service account that may train on internal data
    dataset_id = _dataset(client, "claims", "internal")
    run_id = _run(client, "claims")
    pipeline = principal_token(
        client, "pipeline", [("data_scientist", "retail")], {"clearance": "internal"}
    )
    other = principal_token(
        client, "someone", [("data_scientist", "retail")], {"clearance": "internal"}
    )
    base = f"/api/v1/privacy/budgets/{dataset_id}/reservations"
    # When it reserves, and someone else tries to settle its reservation
    reserved = client.post(
        base,
        json={"run_id": run_id, "epsilon": 4.0, "delta": 1e-6},
        headers=as_caller(client, pipeline),
    )
    stolen = client.post(f"{base}/{run_id}/release", headers=as_caller(client, other))
    committed = client.post(
        f"{base}/{run_id}/commit",
        json={"epsilon": 3.75, "delta": 1e-6, "accountant": "prv"},
        headers=as_caller(client, pipeline),
    )
    # Then the reservation and the commit succeed and the other caller is refused
    assert reserved.status_code == 201, reserved.text
    assert stolen.status_code == 409
    assert committed.status_code == 200, committed.text
    assert _budget(client, dataset_id)["epsilon"]["spent"] == 3.75


def test_reading_a_budget_is_authorized_like_reading_the_dataset(client: TestClient) -> None:
    # Given a confidential dataset and data scientists cleared for internal and confidential
    dataset_id = _dataset(client, "claims", "confidential")
    low = principal_token(client, "low", [("data_scientist", "retail")], {"clearance": "internal"})
    high = principal_token(
        client, "high", [("data_scientist", "retail")], {"clearance": "confidential"}
    )
    path = f"/api/v1/privacy/budgets/{dataset_id}"
    # Then only the cleared one reads its budget, and an unknown dataset is 404
    assert client.get(path, headers=as_caller(client, low)).status_code == 403
    assert client.get(path, headers=as_caller(client, high)).status_code == 200
    assert client.get("/api/v1/privacy/budgets/nope").status_code == 404
