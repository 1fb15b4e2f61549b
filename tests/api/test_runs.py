"""Governed runs through the API: authorize, plan, gate, execute, and record every step."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from control_plane.app import create_app
from control_plane.runs import RunKind, RunState
from control_plane.settings import Settings
from control_plane.store.models import GateResultRow, Model, ModelVersion, Run, RunTransition
from tests.conftest import RecordingExecutor, as_caller, drain, principal_token


def _dataset(client: TestClient, name: str, classification: str, domain: str = "retail") -> None:
    response = client.post(
        "/api/v1/datasets",
        json={"name": name, "domain": domain, "classification": classification},
    )
    assert response.status_code == 201, response.text


def _model(client: TestClient, name: str, risk_tier: str, domain: str = "retail") -> None:
    response = client.post(
        "/api/v1/models",
        json={"name": name, "domain": domain, "risk_tier": risk_tier, "intended_use": "scoring"},
    )
    assert response.status_code == 201, response.text


def _evaluated_version(client: TestClient, name: str) -> None:
    """Version 1 of model ``name``, with the passed evaluation and model card a promotion needs."""
    services = client.app.state.services  # type: ignore[attr-defined]
    evidence = {"evaluation": {"status": "passed", "model_card": {"json": "sha256:" + "0" * 64}}}
    with services.db.session(write=True) as session:
        model_id = session.query(Model.id).filter(Model.name == name).scalar()
        session.add(ModelVersion(model_id=model_id, version=1, evidence=evidence))


def _submit(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/runs", json=body)
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


def _run(client: TestClient, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def test_a_run_is_planned_gated_and_executed(
    client: TestClient, executors: dict[RunKind, RecordingExecutor]
) -> None:
    # Given an internal dataset and a low-risk model
    _dataset(client, "adult", "internal")
    _model(client, "credit", "low")
    # When a plain training run is submitted and the worker processes it
    run = _submit(client, kind="train", target="model:credit", inputs=["dataset:adult"])
    assert run["state"] == RunState.PENDING
    assert [step["gate"] for step in run["plan"]] == ["privacy_mode"]
    assert drain(client) == 1
    # Then its gate passed, the executor ran once, and the transitions are recorded in order
    done = _run(client, run["id"])
    assert done["state"] == RunState.SUCCEEDED
    assert [(g["gate"], g["status"]) for g in done["gates"]] == [("privacy_mode", "pass")]
    assert executors[RunKind.TRAIN].executed == [run["id"]]
    assert done["outputs"] == {"target": "model:credit", "inputs": ["dataset:adult"]}
    assert [t["to_state"] for t in done["transitions"]] == ["pending", "running", "succeeded"]
    assert done["attributes"]["classification"] == "internal"
    assert done["bundle_version"].startswith("sha256:")


def test_a_failing_gate_stops_the_run_before_execution(
    client: TestClient, executors: dict[RunKind, RecordingExecutor]
) -> None:
    # Given restricted data, which the default bundle does not allow to train on in the clear
    _dataset(client, "patients", "restricted")
    _model(client, "triage", "low")
    # When a plain training run is submitted
    run = _submit(
        client,
        kind="train",
        target="model:triage",
        inputs=["dataset:patients"],
        params={"privacy_mode": "plain"},
    )
    drain(client)
    # Then the privacy gate fails with its reasons, and nothing was executed
    done = _run(client, run["id"])
    assert done["state"] == RunState.FAILED
    assert done["gates"][0]["status"] == "fail"
    assert done["gates"][0]["reasons"]
    assert executors[RunKind.TRAIN].executed == []


def test_an_executor_error_fails_the_run_with_the_error(
    client: TestClient, executors: dict[RunKind, RecordingExecutor]
) -> None:
    executors[RunKind.INGEST].fail_with = "disk full"
    _dataset(client, "events", "public")
    run = _submit(client, kind="ingest", target="dataset:events")
    drain(client)
    done = _run(client, run["id"])
    assert done["state"] == RunState.FAILED
    assert done["error"] == "RuntimeError: disk full"


def test_promotion_of_a_high_risk_model_waits_for_approval(
    client: TestClient, executors: dict[RunKind, RecordingExecutor]
) -> None:
    # Given an evaluated version of a high-risk model
    _model(client, "credit", "high")
    _evaluated_version(client, "credit")
    # When a promotion to production is processed
    run = _submit(
        client,
        kind="promote",
        target="model:credit",
        params={"target_stage": "production", "version": 1},
    )
    drain(client)
    # Then the run awaits an approval that lists the bundle's requirement, and nothing executed
    waiting = _run(client, run["id"])
    assert waiting["state"] == RunState.AWAITING_APPROVAL
    approvals = client.get("/api/v1/approvals", params={"status": "pending"}).json()["items"]
    assert [a["run_id"] for a in approvals] == [run["id"]]
    assert approvals[0]["requirement"]["approvers"] >= 1
    assert executors[RunKind.PROMOTE].executed == []
    # And when the approval completes, the run resumes and executes exactly once
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        services.runs.resume(session, run["id"], approved=True, reason="approved")
    drain(client)
    assert _run(client, run["id"])["state"] == RunState.SUCCEEDED
    assert executors[RunKind.PROMOTE].executed == [run["id"]]


def test_a_rejected_approval_ends_the_run(client: TestClient) -> None:
    _model(client, "credit", "high")
    _evaluated_version(client, "credit")
    run = _submit(
        client,
        kind="promote",
        target="model:credit",
        params={"target_stage": "production", "version": 1},
    )
    drain(client)
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        services.runs.resume(session, run["id"], approved=False, reason="missing evidence")
    done = _run(client, run["id"])
    assert done["state"] == RunState.REJECTED
    assert done["transitions"][-1]["reason"] == "missing evidence"


def test_finished_runs_cannot_be_moved_again(client: TestClient) -> None:
    _dataset(client, "adult", "internal")
    _model(client, "credit", "low")
    run = _submit(client, kind="train", target="model:credit", inputs=["dataset:adult"])
    drain(client)
    services = client.app.state.services  # type: ignore[attr-defined]
    with (
        services.db.session(write=True) as session,
        pytest.raises(Exception, match="cannot become"),
    ):
        services.runs.resume(session, run["id"], approved=True, reason="again")
    assert _run(client, run["id"])["state"] == RunState.SUCCEEDED


def test_gate_results_are_written_once(client: TestClient) -> None:
    _dataset(client, "adult", "internal")
    _model(client, "credit", "low")
    run = _submit(client, kind="train", target="model:credit", inputs=["dataset:adult"])
    drain(client)
    drain(client)
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.session() as session:
        rows = session.query(GateResultRow).filter_by(run_id=run["id"]).all()
        assert len(rows) == 1
        assert session.get_one(Run, run["id"]).claimed_by == "test"


def test_a_kind_without_an_executor_is_refused(client: TestClient) -> None:
    _model(client, "credit", "low")
    response = client.post("/api/v1/runs", json={"kind": "export", "target": "model:credit"})
    assert response.status_code == 422
    assert "no executor" in response.json()["detail"]
    assert client.get("/api/v1/runs").json()["items"] == []


def test_unknown_targets_and_kinds(client: TestClient) -> None:
    # The body names what is missing: invalid input, not a missing resource at the URL
    unknown = client.post("/api/v1/runs", json={"kind": "train", "target": "model:nope"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == "no model named 'nope'"
    unknown_input = client.post(
        "/api/v1/runs",
        json={"kind": "train", "target": "model:nope", "inputs": ["dataset:gone"]},
    )
    assert unknown_input.status_code == 422
    assert (
        client.post("/api/v1/runs", json={"kind": "teleport", "target": "model:x"}).status_code
        == 422
    )
    response = client.post("/api/v1/runs", json={"kind": "train", "target": "table:x"})
    assert response.status_code == 422
    assert "known types" in response.json()["detail"]


def test_a_forbidden_run_is_403_with_the_rule_and_is_not_stored(client: TestClient) -> None:
    # Given an auditor, who may read but not train
    _model(client, "credit", "low")
    token = principal_token(client, "audrey", [("auditor", "*")])
    # When the auditor submits a training run
    response = client.post(
        "/api/v1/runs",
        json={"kind": "train", "target": "model:credit"},
        headers=as_caller(client, token),
    )
    # Then it is forbidden with the deciding rule, and no run exists
    assert response.status_code == 403
    assert response.json()["rule"]
    assert response.json()["bundle_version"].startswith("sha256:")
    assert client.get("/api/v1/runs").json()["items"] == []


def test_runs_list_filters_and_paginates(client: TestClient) -> None:
    _dataset(client, "adult", "internal")
    _model(client, "credit", "low")
    ids = [
        _submit(client, kind="train", target="model:credit", inputs=["dataset:adult"])["id"]
        for _ in range(5)
    ]
    first = client.get("/api/v1/runs", params={"limit": 2}).json()
    second = client.get("/api/v1/runs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = client.get("/api/v1/runs", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    seen = [r["id"] for page in (first, second, third) for r in page["items"]]
    assert seen == ids
    assert third["next_cursor"] is None
    assert client.get("/api/v1/runs", params={"state": "succeeded"}).json()["items"] == []


class _TransitionLog:
    """A recorder that keeps every transition it sees, and can refuse the ones into a state."""

    def __init__(self, refuse: RunState | None = None) -> None:
        self.refuse = refuse
        self.seen: list[tuple[str, str]] = []

    def record(self, session: Session, run: Run, transition: RunTransition) -> None:
        if transition.to_state == self.refuse:
            raise RuntimeError(f"cannot record {transition.to_state}")
        self.seen.append((run.id, transition.to_state))


def _app_with(settings: Settings, admin_token: str, recorder: _TransitionLog) -> TestClient:
    app = create_app(settings, {RunKind.TRAIN: RecordingExecutor(RunKind.TRAIN)}, [recorder])
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {admin_token}"
    return client


def test_recorders_see_every_transition_in_order(settings: Settings, admin_token: str) -> None:
    # Given a control plane with a transition recorder
    recorder = _TransitionLog()
    with _app_with(settings, admin_token, recorder) as client:
        _dataset(client, "adult", "internal")
        _model(client, "credit", "low")
        # When a run is submitted and processed
        run = _submit(client, kind="train", target="model:credit", inputs=["dataset:adult"])
        drain(client)
    # Then the recorder saw each of its transitions, in order
    assert recorder.seen == [(run["id"], s) for s in ("pending", "running", "succeeded")]


def test_a_transition_that_cannot_be_recorded_does_not_happen(
    settings: Settings, admin_token: str
) -> None:
    # Given a recorder that cannot record new runs
    with _app_with(settings, admin_token, _TransitionLog(refuse=RunState.PENDING)) as client:
        _dataset(client, "adult", "internal")
        _model(client, "credit", "low")
        # When a run is submitted
        response = client.post("/api/v1/runs", json={"kind": "train", "target": "model:credit"})
        # Then it is refused and no run is stored
        assert response.status_code >= 500
        assert client.get("/api/v1/runs").json()["items"] == []


@pytest.mark.filterwarnings("error")
def test_run_params_are_sized_as_plain_json(client: TestClient) -> None:
    # Found by fuzzing: params were sized with the request model's serializer, which warned on
    # every submission; nested params must be measured as the JSON they are, silently
    _model(client, "credit", "low")
    nested = {"grid": {"depth": [1, 2, 3]}, "note": "ü" * 10}
    run = _submit(client, kind="train", target="model:credit", params=nested)
    assert run["params"] == nested
    oversized = {"blob": "x" * 70_000}
    response = client.post(
        "/api/v1/runs", json={"kind": "train", "target": "model:credit", "params": oversized}
    )
    assert response.status_code == 422
    assert "at most 65536 bytes" in response.json()["detail"]
