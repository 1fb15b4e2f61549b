"""Every governed run is recorded as OpenLineage RunEvents, in the transition's transaction."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from control_plane.app import create_app
from control_plane.runs import ExecutionContext, ExecutionError, RunKind
from control_plane.settings import Settings
from control_plane.store.models import LineageEvent
from lineage import validate_run_event
from tests.conftest import drain

DATASET = "dataset:govplane://datasets:adult"
JOB = "job:govplane.retail:train.model.credit"


class Trainer:
    """A real executor that reports the model version it produced, or fails."""

    kind = RunKind.TRAIN

    def __init__(self) -> None:
        self.fail = False

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        if self.fail:
            raise RuntimeError("out of memory")
        return {"model_version": 3, "epsilon_spent": 0.5}


class Deployer:
    kind = RunKind.DEPLOY

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        return {"deployment": "credit-prod"}


class FederatedTrainer:
    """A real executor of federated runs that fails after the sites of ``contributed`` sent
    updates, as a run losing its quorum does."""

    kind = RunKind.FEDERATED_TRAIN

    def __init__(self) -> None:
        self.contributed: list[str] = []

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        raise ExecutionError("quorum lost", {"inputs_used": self.contributed})


@pytest.fixture
def trainer() -> Trainer:
    return Trainer()


@pytest.fixture
def federated() -> FederatedTrainer:
    return FederatedTrainer()


@pytest.fixture
def governed(
    settings: Settings, admin_token: str, trainer: Trainer, federated: FederatedTrainer
) -> Iterator[TestClient]:
    executors = {RunKind.TRAIN: trainer, RunKind.DEPLOY: Deployer(), federated.kind: federated}
    app = create_app(settings, executors)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        assert client.post(
            "/api/v1/datasets",
            json={
                "name": "adult",
                "domain": "retail",
                "classification": "internal",
                "columns": [{"name": "age", "type": "int"}, {"name": "sex", "type": "string"}],
                "pii_columns": ["sex"],
                "location": "file:///data/adult.data",
            },
        ).is_success
        assert client.post(
            "/api/v1/models",
            json={"name": "credit", "domain": "retail", "risk_tier": "low", "intended_use": "x"},
        ).is_success
        yield client


def _events(client: TestClient, run_id: str) -> list[dict[str, Any]]:
    db = client.app.state.services.db  # type: ignore[attr-defined]
    with db.session() as session:
        rows = session.scalars(
            select(LineageEvent)
            .where(LineageEvent.run_id == _uuid(run_id))
            .order_by(LineageEvent.id)
        )
        return [row.payload for row in rows]


def _uuid(hex_id: str) -> str:
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def _schema_urls(value: Any) -> Iterator[tuple[str, Any]]:
    """Every facet in an event (any object holding ``_producer``), with its schema URL."""
    if isinstance(value, dict):
        if "_producer" in value:
            yield value.get("_schemaURL", ""), value
        for item in value.values():
            yield from _schema_urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from _schema_urls(item)


def test_a_successful_training_run_emits_start_then_complete(governed: TestClient) -> None:
    # When a training run on adult is submitted and processed
    run = governed.post(
        "/api/v1/runs",
        json={
            "kind": "train",
            "target": "model:credit",
            "inputs": ["dataset:adult"],
            "params": {"privacy_mode": "plain"},
        },
    ).json()
    drain(governed)
    events = _events(governed, run["id"])
    # Then START then COMPLETE were stored, both valid OpenLineage RunEvents
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        validate_run_event(event)
        assert (event["job"]["namespace"], event["job"]["name"]) == (
            "govplane.retail",
            "train.model.credit",
        )
        # every facet carries its schema URL
        urls = [url for url, _ in _schema_urls(event)]
        assert urls
        assert all(url.startswith("https://") and "#/$defs/" in url for url in urls)
    complete = events[1]
    facets = complete["run"]["facets"]
    assert facets["govplane_policy"]["bundleVersion"] == run["bundle_version"]
    assert facets["govplane_policy"]["runKind"] == "train"
    assert facets["govplane_privacy"]["classification"] == "internal"
    assert facets["govplane_privacy"]["privacyMode"] == "plain"
    assert facets["govplane_privacy"]["epsilonSpent"] == 0.5
    assert facets["govplane_gates"]["gates"][0]["gate"] == "privacy_mode"
    assert facets["govplane_gates"]["gates"][0]["status"] == "pass"
    # The input carries the standard schema, ownership and data source facets
    adult = complete["inputs"][0]
    assert adult["namespace"] == "govplane://datasets"
    assert [f["name"] for f in adult["facets"]["schema"]["fields"]] == ["age", "sex"]
    assert adult["facets"]["ownership"]["owners"][0]["name"].startswith("user:")
    assert adult["facets"]["dataSource"]["uri"] == "file:///data/adult.data"
    assert adult["facets"]["govplane_classification"]["piiColumns"] == ["sex"]
    # The output is the trained model version, a dataset in the models namespace
    assert complete["outputs"][0]["namespace"] == "govplane://models"
    assert complete["outputs"][0]["name"] == "credit:3"


def test_the_graph_links_dataset_training_model_and_deployment(governed: TestClient) -> None:
    train = {"kind": "train", "target": "model:credit", "inputs": ["dataset:adult"]}
    assert governed.post("/api/v1/runs", json=train).is_success
    deploy = {"kind": "deploy", "target": "model:credit", "params": {"version": 3}}
    assert governed.post("/api/v1/runs", json=deploy).is_success
    drain(governed)
    impact = governed.get("/api/v1/lineage/impact", params={"node": DATASET}).json()
    assert impact["jobs"] == ["job:govplane.retail:deploy.model.credit", JOB]
    assert impact["models"] == ["model:credit:3"]
    assert impact["deployments"] == ["deployment:credit-prod"]
    upstream = governed.get(
        "/api/v1/lineage/graph",
        params={"node": "deployment:credit-prod", "direction": "upstream", "depth": 4},
    ).json()
    assert {n["id"] for n in upstream["nodes"]} == {
        "deployment:credit-prod",
        "job:govplane.retail:deploy.model.credit",
        "model:credit:3",
        JOB,
        DATASET,
    }
    # Governance facts ride on the edges
    into_model = next(e for e in upstream["edges"] if e["target"] == "model:credit:3")
    assert into_model["facets"]["govplane_privacy"]["classification"] == "internal"


def test_a_failed_run_emits_fail_with_the_error(governed: TestClient, trainer: Trainer) -> None:
    trainer.fail = True
    run = governed.post(
        "/api/v1/runs",
        json={"kind": "train", "target": "model:credit", "inputs": ["dataset:adult"]},
    ).json()
    drain(governed)
    events = _events(governed, run["id"])
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    error = events[1]["run"]["facets"]["errorMessage"]
    assert error["message"] == "RuntimeError: out of memory"
    assert error["programmingLanguage"] == "PYTHON"
    assert "ErrorMessageRunFacet" in error["_schemaURL"]


@pytest.mark.parametrize("contributed", [[], ["dataset:adult"]], ids=["none", "one"])
def test_a_failed_federated_run_names_only_the_inputs_that_contributed(
    governed: TestClient, federated: FederatedTrainer, contributed: list[str]
) -> None:
    # Given a second dataset, and a federated run on both whose sites' updates reached it from
    # ``contributed`` only before it failed
    assert governed.post(
        "/api/v1/datasets",
        json={"name": "census", "domain": "retail", "classification": "internal"},
    ).is_success
    federated.contributed = contributed
    run = governed.post(
        "/api/v1/runs",
        json={
            "kind": "federated_train",
            "target": "model:credit",
            "inputs": ["dataset:adult", "dataset:census"],
        },
    ).json()
    drain(governed)
    # Then its FAIL event names those inputs only, and its START none
    events = _events(governed, run["id"])
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert events[0]["inputs"] == []
    assert [d["name"] for d in events[1]["inputs"]] == [r.split(":")[1] for r in contributed]
    assert events[1]["run"]["facets"]["errorMessage"]["message"] == "ExecutionError: quorum lost"
