"""Maturity scoring: every metric computed from rows made through the API, on every backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from control_plane.store import utcnow
from control_plane.store.models import Approval, Deployment, GateResultRow, Model, ModelVersion, Run
from tests.approvals.helpers import add_version
from tests.conftest import as_caller, drain, principal_token


def _maturity(client: TestClient, token: str | None = None) -> dict[str, Any]:
    response = client.get("/api/v1/maturity", headers=as_caller(client, token) if token else None)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _criteria(rubric: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["metric"]: c for level in rubric["levels"] for c in level["criteria"]}


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (201, 202), response.text
    body: dict[str, Any] = response.json()
    return body


def _run(client: TestClient, kind: str, target: str, **body: Any) -> dict[str, Any]:
    return _created(client.post("/api/v1/runs", json={"kind": kind, "target": target, **body}))


def _store(client: TestClient) -> Any:
    return client.app.state.services.db  # type: ignore[attr-defined]


def _add_unevaluated_version(client: TestClient, model: str) -> None:
    with _store(client).session(write=True) as session:
        model_id = session.scalars(select(Model.id).where(Model.name == model)).one()
        session.add(ModelVersion(model_id=model_id, version=1, evidence={}))


def test_an_empty_store_earns_only_the_first_level(client: TestClient) -> None:
    # Given a control plane that holds nothing yet
    # When its maturity is scored
    body = _maturity(client)
    # Then AI capability stays initial, with the next level's three criteria as gaps
    ai = body["ai_capability"]
    assert (ai["level"], ai["reached"], ai["of"]) == ("initial", 1, 5)
    assert ai["next_level"] == "single_breakthrough"
    assert {g["criterion"]: g["needs"] for g in ai["gaps"]} == {
        "data_inventoried": "datasets_registered >= 1, is 0",
        "first_model_governed": "models_registered >= 1, is 0",
        "first_governed_run": "governed_runs_succeeded >= 1, is 0",
    }
    # And data governance reaches no stage at all
    governance = body["data_governance"]
    assert (governance["level"], governance["reached"]) == (None, 0)
    # And a share over nothing, or a source the store lacks, is not met and says why
    criteria = _criteria(ai)
    for metric in ("share_of_models_evaluated", "share_of_deployments_monitored"):
        assert criteria[metric]["value"] is None
        assert criteria[metric]["met"] is False
        assert criteria[metric]["evidence"]


def test_the_levels_follow_what_the_store_holds(client: TestClient) -> None:
    # Given two datasets (one with an unprotected PII column), two models and governed runs
    for name, classification in (("census", "public"), ("claims", "confidential")):
        _created(
            client.post(
                "/api/v1/datasets",
                json={
                    "name": name,
                    "domain": "retail",
                    "classification": classification,
                    "columns": [{"name": "age", "type": "int"}, {"name": "sex", "type": "string"}],
                    "pii_columns": ["sex"] if name == "census" else [],
                },
            )
        )
    for name, tier in (("credit", "low"), ("churn", "medium")):
        _created(
            client.post(
                "/api/v1/models",
                json={"name": name, "domain": "retail", "risk_tier": tier, "intended_use": "x"},
            )
        )
    _run(client, "train", "model:credit", inputs=["dataset:census"])
    drain(client)
    # And an evaluated version of credit (as training and evaluation record it) and a version of
    # churn that was never evaluated
    add_version(client, "credit", None)
    _add_unevaluated_version(client, "churn")
    _run(client, "promote", "model:credit", params={"target_stage": "staging", "version": 1})
    _run(client, "promote", "model:churn", params={"target_stage": "staging", "version": 1})
    drain(client)
    runs = client.get("/api/v1/runs", params={"limit": 200}).json()["items"]
    succeeded = [r for r in runs if r["state"] == "succeeded"]
    finished = [r for r in runs if r["state"] in ("succeeded", "failed", "rejected")]
    fully_gated = 0
    for run in succeeded:
        detail = client.get(f"/api/v1/runs/{run['id']}").json()
        passed = {g["gate"] for g in detail["gates"] if g["status"] == "pass"}
        planned = {entry["gate"] for entry in detail["plan"]}
        fully_gated += bool(planned) and planned <= passed

    # When maturity is scored
    body = _maturity(client)

    # Then every metric is what the rows made above say
    ai, governance = _criteria(body["ai_capability"]), _criteria(body["data_governance"])
    assert ai["datasets_registered"]["value"] == 2
    assert ai["models_registered"]["value"] == 2
    assert ai["governed_runs_succeeded"]["value"] == len(succeeded) == 2
    assert ai["share_of_models_with_risk_tier"]["value"] == 1.0
    assert ai["share_of_models_evaluated"]["value"] == 0.5
    # the low-risk promotion needed no approval and the other lacked its evaluation, so no
    # completed promotion was approved
    assert ai["share_of_promotions_approved"]["value"] == 0.0
    assert ai["share_of_runs_with_lineage"]["value"] == 1.0
    assert (
        f"{len(finished)} of {len(finished)} finished runs"
        in (ai["share_of_runs_with_lineage"]["evidence"])
    )
    assert ai["share_of_runs_fully_gated"]["value"] == fully_gated / len(succeeded)
    assert ai["overdue_approvals"]["value"] == 0
    assert body["ai_capability"]["level"] == "single_breakthrough"
    assert {g["criterion"] for g in body["ai_capability"]["gaps"]} == {"promotions_approved"}
    # And data governance is active (classified, owned) but not quantified
    assert governance["share_of_datasets_classified"]["value"] == 1.0
    assert governance["share_of_datasets_with_owner"]["value"] == 1.0
    assert governance["share_of_pii_columns_protected"]["value"] == 0.0
    assert governance["share_of_sensitive_datasets_with_budget"]["value"] == 0.0
    assert body["data_governance"]["level"] == "active"
    # And each criterion counts once under its NIST function and its EU AI Act articles
    rubric = body["ai_capability"]
    counted = sum(c["total"] for c in rubric["nist"].values())
    assert counted == sum(len(level["criteria"]) for level in rubric["levels"])
    assert rubric["nist"]["map"]["met"] == sum(c["met"] for c in ai.values() if c["nist"] == "map")
    assert rubric["eu_ai_act"]["Art. 14"]["total"] == sum(
        "Art. 14" in c["eu_ai_act"] for c in ai.values()
    )


def test_time_and_evidence_move_the_metrics(client: TestClient) -> None:
    # Given a model with one evaluated, carded version (as an evaluate run records it) and one
    # without any version
    for name in ("credit", "churn"):
        _created(
            client.post(
                "/api/v1/models",
                json={"name": name, "domain": "retail", "risk_tier": "medium", "intended_use": "x"},
            )
        )
    add_version(client, "churn", None)
    # And a promotion of the evaluated version waiting for an approval that has since expired
    _run(client, "promote", "model:churn", params={"target_stage": "staging", "version": 1})
    drain(client)
    with _store(client).session(write=True) as session:
        session.execute(update(Approval).values(expires_at=utcnow() - timedelta(hours=1)))
    # And one verification of the audit trail
    assert client.get("/api/v1/audit/verify").json()["valid"] is True

    # When maturity is scored
    body = _maturity(client)

    # Then half the models are evaluated and carded, one approval is overdue, one check passed
    ai, governance = _criteria(body["ai_capability"]), _criteria(body["data_governance"])
    assert ai["share_of_models_evaluated"]["value"] == 0.5
    assert ai["share_of_models_with_model_card"]["value"] == 0.5
    assert ai["overdue_approvals"]["value"] == 1
    assert ai["overdue_approvals"]["met"] is False
    assert governance["audit_verifications_passed"]["value"] == 1


def test_each_reader_sees_only_the_rubrics_it_may_read(client: TestClient) -> None:
    # Given a data owner everywhere, a risk officer and a model validator
    owner = principal_token(client, "olga", [("data_owner", "*")])
    officer = principal_token(client, "rita", [("risk_officer", "*")])
    validator = principal_token(client, "vic", [("model_validator", "*")])
    # Then the data owner reads data governance only, the risk officer both, the validator none
    assert _maturity(client, owner)["ai_capability"] is None
    assert _maturity(client, owner)["data_governance"] is not None
    both = _maturity(client, officer)
    assert both["ai_capability"] is not None
    assert both["data_governance"] is not None
    refused = client.get("/api/v1/maturity", headers=as_caller(client, validator))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"


def _drift_check(client: TestClient, model: str, version: int, days_ago: float) -> None:
    """An evaluate run of ``model`` ``version`` whose drift gate failed, ``days_ago`` days ago."""
    run = _run(client, "evaluate", f"model:{model}", params={"version": version})
    drain(client)
    with _store(client).session(write=True) as session:
        session.add(GateResultRow(run_id=run["id"], position=90, gate="drift", status="fail"))
        session.execute(
            update(Run)
            .where(Run.id == run["id"])
            .values(finished_at=utcnow() - timedelta(days=days_ago))
        )


def _deployment(client: TestClient, name: str, status: str, days_ago: float) -> None:
    """A deployment of credit version 1, last (re)deployed ``days_ago`` days ago."""
    run = _run(client, "deploy", "model:credit", params={"version": 1, "name": name})
    drain(client)
    with _store(client).session(write=True) as session:
        version_id = session.scalars(select(ModelVersion.id)).one()
        session.add(
            Deployment(
                name=name,
                domain="retail",
                model_version_id=version_id,
                model="credit",
                version=1,
                target="local",
                status=status,
                run_id=run["id"],
                created_by="admin",
                updated_at=utcnow() - timedelta(days=days_ago),
            )
        )


def test_a_serving_deployment_is_monitored_by_a_recent_drift_check_since_it_was_deployed(
    client: TestClient,
) -> None:
    # Given credit version 1 served by two deployments, made 10 and 3 days ago, and by one that
    # stopped; its last drift check (which found drift) was 5 days ago
    _created(
        client.post(
            "/api/v1/models",
            json={"name": "credit", "domain": "retail", "risk_tier": "low", "intended_use": "x"},
        )
    )
    add_version(client, "credit", None)
    _deployment(client, "credit-eu", "ready", days_ago=10)
    _deployment(client, "credit-us", "applied", days_ago=3)
    _deployment(client, "credit-old", "stopped", days_ago=20)
    _drift_check(client, "credit", 1, days_ago=5)
    # When maturity is scored
    monitored = _criteria(_maturity(client)["ai_capability"])["share_of_deployments_monitored"]
    # Then only the deployment made before that check counts, out of the two that serve
    assert monitored["value"] == 0.5
    assert monitored["evidence"].startswith("1 of 2 serving deployments had a drift check")
    # When a newer check is older than the monitoring window, then it does not count
    with _store(client).session(write=True) as session:
        session.execute(update(Run).values(finished_at=utcnow() - timedelta(days=31)))
    monitored = _criteria(_maturity(client)["ai_capability"])["share_of_deployments_monitored"]
    assert monitored["value"] == 0.0
    # When the version is checked again today, then both serving deployments are monitored
    _drift_check(client, "credit", 1, days_ago=0)
    monitored = _criteria(_maturity(client)["ai_capability"])["share_of_deployments_monitored"]
    assert monitored["value"] == 1.0
