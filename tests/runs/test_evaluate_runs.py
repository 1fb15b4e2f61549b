"""Governed ``evaluate`` runs on Adult through the API: gates of the model's risk tier, immutable
evidence with the run, the model card, the version's evaluation facts, audit and lineage."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fairlearn.metrics import demographic_parity_difference
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score
from sqlalchemy import select

from connectors.registry import ModelUri
from control_plane.app import create_app
from control_plane.connectors import model_registry
from control_plane.runs import RunKind
from control_plane.sample_data import ADULT_SENSITIVE, read_adult
from control_plane.settings import Settings
from control_plane.store.models import EvidenceArtifact, ModelVersion
from tests.conftest import drain
from tests.runs.adult_training import CATEGORICAL, FEATURES, LABEL, POSITIVE, AdultTrainer


@dataclass
class Plane:
    """A control plane with real ingest and evaluate executors and the Adult trainer."""

    client: TestClient
    settings: Settings

    def dataset(self, name: str, table: pa.Table) -> str:
        pq.write_table(table, self.settings.source_roots[0] / f"{name}.parquet")
        created = self.client.post(
            "/api/v1/datasets",
            json={"name": name, "domain": "retail", "classification": "internal"},
        )
        assert created.status_code == 201, created.text
        run = self.run(
            "ingest",
            f"dataset:{name}",
            source={"path": f"{name}.parquet"},
            columns={
                c: {"classification": "confidential"}
                for c in ADULT_SENSITIVE
                if c in table.column_names
            },
        )
        assert run["state"] == "succeeded", run["error"]
        dataset_id: str = created.json()["id"]
        return dataset_id

    def model(self, name: str, risk_tier: str, features: tuple[str, ...] = FEATURES) -> int:
        created = self.client.post(
            "/api/v1/models",
            json={
                "name": name,
                "domain": "retail",
                "risk_tier": risk_tier,
                "intended_use": "income screening",
            },
        )
        assert created.status_code == 201, created.text
        run = self.run("train", f"model:{name}", ["dataset:adult-train"], features=list(features))
        assert run["state"] == "succeeded", run["error"]
        version: int = run["outputs"]["model_version"]
        return version

    def run(
        self, kind: str, target: str, inputs: list[str] | None = None, **params: Any
    ) -> dict[str, Any]:
        submitted = self.client.post(
            "/api/v1/runs",
            json={"kind": kind, "target": target, "inputs": inputs or [], "params": params},
        )
        assert submitted.status_code == 202, submitted.text
        drain(self.client)
        run: dict[str, Any] = self.client.get(f"/api/v1/runs/{submitted.json()['id']}").json()
        return run

    def evaluate(self, model: str, version: int, dataset: str = "adult-valid") -> dict[str, Any]:
        return self.run("evaluate", f"model:{model}", [f"dataset:{dataset}"], version=version)


def adult_rows(start: int, stop: int) -> pa.Table:
    """Adult rows ``start:stop`` with unknown categories spelled out (shap needs every value)."""
    frame = read_adult().slice(start, stop - start).to_pandas()
    frame[list(CATEGORICAL)] = frame[list(CATEGORICAL)].fillna("unknown")
    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


@pytest.fixture
def plane(settings: Settings, admin_token: str) -> Iterator[Plane]:
    trainer = AdultTrainer(settings)
    app = create_app(settings, {RunKind.TRAIN: trainer})
    trainer.services = app.state.services
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        plane = Plane(client, settings)
        plane.dataset("adult-train", adult_rows(0, 6000))
        plane.dataset("adult-valid", adult_rows(6000, 9000))
        yield plane


def test_a_plain_model_fails_the_high_tier_and_keeps_its_evidence_and_card(plane: Plane) -> None:
    # Given a high-risk model trained on Adult with sex and race among its features
    version = plane.model("screening", "high")
    # When it is evaluated on the validation snapshot
    run = plane.evaluate("screening", version)
    # Then the run fails, naming the gate the plain model fails
    assert run["state"] == "failed"
    assert "fairness" in run["error"]
    gates = {g["gate"]: g for g in run["gates"]}
    assert list(gates) == ["fairness", "explainability", "drift"]
    assert gates["fairness"]["status"] == "fail"
    # And its demographic parity gap by sex is fairlearn's on the same model and data
    services = plane.client.app.state.services  # type: ignore[attr-defined]
    shown = plane.client.get(f"/api/v1/models/screening/versions/{version}").json()
    model = (
        model_registry(plane.settings)
        .load(ModelUri.parse(shown["registry_uri"]), shown["artifact_digest"])
        .model
    )
    valid = adult_rows(6000, 9000).to_pandas()
    decisions = model.predict(valid[list(FEATURES)]) == POSITIVE
    by_sex = next(f for f in gates["fairness"]["evidence"]["features"] if f["features"] == ["sex"])
    expected = demographic_parity_difference(
        valid[LABEL] == POSITIVE, decisions, sensitive_features=valid["sex"]
    )
    assert by_sex["demographic_parity_difference"] == pytest.approx(expected, abs=1e-9)
    assert expected > 0.1
    assert gates["drift"]["metrics"]["accuracy"] == pytest.approx(
        accuracy_score(valid[LABEL] == POSITIVE, decisions), abs=1e-9
    )
    # And every gate result, the evidently report and the card are kept, each with its sha256
    listed = plane.client.get(f"/api/v1/runs/{run['id']}/evidence").json()
    names = {item["name"]: item for item in listed}
    assert set(names) == {
        "fairness.json",
        "explainability.json",
        "drift.json",
        "drift_report.html",
        "model_card.json",
        "model_card.html",
        "model_card.md",
    }
    for name, item in names.items():
        served = plane.client.get(f"/api/v1/runs/{run['id']}/evidence/{name}")
        assert served.status_code == 200
        assert item["digest"] == "sha256:" + hashlib.sha256(served.content).hexdigest()
        assert served.headers["etag"] == f'"{item["digest"]}"'
        assert served.headers["content-type"].startswith(item["media_type"].split(";")[0])
    explained = plane.client.get(f"/api/v1/runs/{run['id']}/evidence/explainability.json").json()
    assert explained["evidence"]["global_importance"]
    drift = plane.client.get(f"/api/v1/runs/{run['id']}/evidence/drift.json").json()
    assert drift["evidence"]["report"]["metrics"]
    # And the version records its failed evaluation and the card it got
    evaluation = plane.client.get(f"/api/v1/models/screening/versions/{version}").json()[
        "evidence"
    ]["evaluation"]
    assert evaluation["status"] == "failed"
    assert evaluation["run_id"] == run["id"]
    assert evaluation["risk_tier"] == "high"
    assert evaluation["bundle_version"] == run["bundle_version"]
    assert evaluation["gates"] == {g: r["status"] for g, r in gates.items()}
    for fmt, name in (("json", "model_card.json"), ("html", "model_card.html")):
        assert evaluation["model_card"][fmt] == names[name]["digest"]
    card = plane.client.get(f"/api/v1/models/screening/versions/{version}/card").json()
    assert card["risk_tier"] == "high"
    assert card["privacy"] == {"mode": "plain", "epsilon": None, "delta": None}
    assert any("gate fairness failed" in text for text in card["limitations"])
    markdown = plane.client.get(
        f"/api/v1/models/screening/versions/{version}/card", params={"format": "markdown"}
    )
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# screening version 1")
    # And the evaluation is audited, and the run read the version and the data in the lineage
    events = plane.client.get("/api/v1/audit/events", params={"action": "model.evaluate"})
    [event] = events.json()["items"]
    assert event["run_id"] == run["id"]
    assert event["payload"]["status"] == "failed"
    graph = plane.client.get(
        "/api/v1/lineage/graph",
        params={"node": "job:govplane.retail:evaluate.model.screening", "direction": "upstream"},
    ).json()
    nodes = {n["id"] for n in graph["nodes"]}
    assert "dataset:govplane://datasets:adult-valid" in nodes
    assert any(node.endswith("screening:1") for node in nodes), nodes
    # And the kept evidence cannot be changed
    with services.db.session(write=True) as session:
        row = session.get_one(EvidenceArtifact, (run["id"], "model_card.json"))
        row.content = b"{}"
        with pytest.raises(PermissionError):
            session.flush()
        session.rollback()


def test_a_low_tier_model_passes_and_its_run_succeeds(plane: Plane) -> None:
    # Given a low-risk model (its tier judges drift only)
    version = plane.model("triage", "low")
    # When it is evaluated on data from the same population
    run = plane.evaluate("triage", version)
    # Then it passes, the run succeeds, and its outputs name the kept card
    assert run["state"] == "succeeded", run["error"]
    assert run["outputs"]["status"] == "passed"
    assert run["outputs"]["gates"] == {"drift": "pass"}
    evaluation = plane.client.get(f"/api/v1/models/triage/versions/{version}").json()["evidence"][
        "evaluation"
    ]
    assert evaluation["status"] == "passed"
    assert evaluation["model_card"] == run["outputs"]["model_card"]
    html = plane.client.get(
        f"/api/v1/models/triage/versions/{version}/card", params={"format": "html"}
    )
    assert html.headers["content-type"].startswith("text/html")
    assert "sha256:" + hashlib.sha256(html.content).hexdigest() == evaluation["model_card"]["html"]
    assert (
        json.loads(plane.client.get(f"/api/v1/runs/{run['id']}/evidence/drift.json").text)["status"]
        == "pass"
    )


def test_a_mitigated_candidate_of_a_failing_model_passes_the_high_tier(plane: Plane) -> None:
    # Given a high-risk model trained with sex and race, which fails the high tier
    parent = plane.model("screening", "high")
    assert plane.evaluate("screening", parent)["state"] == "failed"
    # When an evaluate run mitigates it for demographic parity by sex, dropping sex and race
    run = plane.run(
        "evaluate",
        "model:screening",
        ["dataset:adult-valid"],
        version=parent,
        mitigate={"sensitive_features": ["sex"], "drop_features": ["race"]},
    )
    # Then a new candidate version is registered and passes every high-tier gate
    assert run["state"] == "succeeded", run["error"]
    candidate = run["outputs"]["model_version"]
    assert (candidate, run["outputs"]["mitigated_from"]) == (parent + 1, parent)
    assert run["outputs"]["gates"] == {
        "fairness": "pass",
        "explainability": "pass",
        "drift": "pass",
    }
    shown = plane.client.get(f"/api/v1/models/screening/versions/{candidate}").json()
    evidence = shown["evidence"]
    assert evidence["evaluation"]["status"] == "passed"
    # And its training facts are the parent's, without the dropped features
    parent_training = plane.client.get(f"/api/v1/models/screening/versions/{parent}").json()[
        "evidence"
    ]["training"]
    assert evidence["training"]["features"] == [f for f in FEATURES if f not in ("sex", "race")]
    assert evidence["training"]["snapshot_ids"] == parent_training["snapshot_ids"]
    assert evidence["training"]["privacy"] == parent_training["privacy"]
    # And the candidate is a plain scikit-learn Pipeline whose registry provenance names its parent
    registry = model_registry(plane.settings)
    loaded = registry.load(ModelUri.parse(shown["registry_uri"]), shown["artifact_digest"])
    assert type(loaded.model).__module__.startswith("sklearn.")
    assert loaded.version.provenance.method == "fairlearn.reductions.ExponentiatedGradient"
    parent_shown = plane.client.get(f"/api/v1/models/screening/versions/{parent}").json()
    assert loaded.version.provenance.parent_version == parent_shown["registry_uri"]
    # And the before/after disparities are fairlearn's on the same evaluation data
    mitigation = evidence["mitigation"]
    assert mitigation["parent_version"] == parent
    assert mitigation["constraint"] == "demographic_parity"
    valid = adult_rows(6000, 9000).to_pandas()
    outcomes = valid[LABEL] == POSITIVE
    parent_model = registry.load(
        ModelUri.parse(parent_shown["registry_uri"]), parent_shown["artifact_digest"]
    ).model
    for key, model, features in (
        ("before", parent_model, list(FEATURES)),
        ("after", loaded.model, evidence["training"]["features"]),
    ):
        decisions = model.predict(valid[features]) == POSITIVE
        expected = demographic_parity_difference(
            outcomes, decisions, sensitive_features=valid["sex"]
        )
        assert mitigation[key]["sex"]["demographic_parity_difference"] == pytest.approx(
            expected, abs=1e-9
        )
    assert (
        mitigation["after"]["sex"]["demographic_parity_difference"]
        <= 0.1
        < mitigation["before"]["sex"]["demographic_parity_difference"]
    )
    # And the mitigation is audited
    events = plane.client.get("/api/v1/audit/events", params={"action": "model.mitigate"})
    [event] = events.json()["items"]
    assert event["run_id"] == run["id"]
    assert event["payload"]["model_version"] == candidate


def test_a_version_trained_under_a_privacy_regime_is_not_refit(plane: Plane) -> None:
    # Given a low-risk version whose training facts say it was trained with dp
    version = plane.model("triage", "low")
    services = plane.client.app.state.services  # type: ignore[attr-defined]
    with services.db.session(write=True) as session:
        row = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one()
        training = {**row.evidence["training"], "privacy": {"mode": "dp", "epsilon": 1.0}}
        row.evidence = {**row.evidence, "training": training}
    # When a mitigation is asked for, then the run fails before anything is registered
    run = plane.run(
        "evaluate",
        "model:triage",
        ["dataset:adult-valid"],
        version=version,
        mitigate={"sensitive_features": ["sex"]},
    )
    assert run["state"] == "failed"
    assert "only a plain version can be refit" in run["error"]
    assert plane.client.get(f"/api/v1/models/triage/versions/{version + 1}").status_code == 404
