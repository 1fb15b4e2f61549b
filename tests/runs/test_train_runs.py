"""Governed ``train`` runs through the API: a real ingest of Adult into the Iceberg lake, the
local runner's subprocess, the embedded MLflow store, the privacy ledger; on every store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from opacus.accountants import RDPAccountant
from sklearn.metrics import accuracy_score

from connectors.registry import ModelUri
from control_plane.app import create_app
from control_plane.connectors import ensure_model_registry, model_registry
from control_plane.sample_data import ADULT_SENSITIVE, read_adult
from control_plane.settings import Settings
from tests.conftest import as_caller, principal_token
from tests.runs.plane import Plane

ROWS = 2000
TRAIN = {"label": "income", "positive_label": ">50K"}


@dataclass
class TrainPlane(Plane):
    """A control plane training through the local runner."""

    def train(self, model: str, dataset: str, **params: Any) -> dict[str, Any]:
        return self.run("train", f"model:{model}", {**TRAIN, **params}, [f"dataset:{dataset}"])

    def budget(self, dataset_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"/api/v1/privacy/budgets/{dataset_id}").json()
        return body

    def audit(self, action: str) -> list[dict[str, Any]]:
        events = self.client.get("/api/v1/audit/events", params={"action": action}).json()
        items: list[dict[str, Any]] = events["items"]
        return items

    def registered_models(self) -> list[str]:
        registry: Any = model_registry(self.settings)
        return [m.name for m in registry.client.search_registered_models()]


@pytest.fixture
def plane(settings: Settings, admin_token: str) -> Iterator[TrainPlane]:
    ensure_model_registry(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        owner = principal_token(client, "olga", [("data_owner", "retail")])
        scientist = principal_token(
            client, "dana", [("data_scientist", "retail")], {"clearance": "confidential"}
        )
        yield TrainPlane(
            client,
            client.app.state.services,  # type: ignore[attr-defined]
            settings,
            as_caller(client, owner),
            as_caller(client, scientist),
        )


@pytest.fixture(scope="module")
def adult() -> pa.Table:
    return read_adult().slice(0, ROWS)


def test_plain_train_registers_a_version_with_its_training_evidence(
    plane: TrainPlane, adult: pa.Table
) -> None:
    # Given Adult without its sensitive columns ingested as public data (under a name with a
    # hyphen, which its lake table keeps), and a model
    public = adult.drop_columns(list(ADULT_SENSITIVE))
    dataset_id = plane.dataset("us-census", public, "public")
    snapshot_id = plane.client.get(f"/api/v1/datasets/{dataset_id}").json()["snapshot_id"]
    plane.model("income")
    # When a plain train run is processed
    run = plane.train("income", "us-census", privacy_mode="plain", seed=3)
    # Then it succeeds with the privacy_mode gate passed, and version 1 holds the evidence
    assert run["state"] == "succeeded", run["error"]
    assert [(g["gate"], g["status"]) for g in run["gates"]] == [("privacy_mode", "pass")]
    version = plane.client.get("/api/v1/models/income/versions/1").json()
    training = version["evidence"]["training"]
    assert training == {
        "run_id": run["id"],
        "orchestrator": "local",
        "external_id": run["outputs"]["external_id"],
        "dataset_ids": [dataset_id],
        "snapshot_ids": {dataset_id: snapshot_id},
        "label": "income",
        "positive_label": ">50K",
        "features": [c for c in public.column_names if c != "income"],
        "privacy": {
            "mode": "plain",
            "epsilon": None,
            "delta": None,
            "accountant": None,
            "grad_sample_mode": None,
        },
        "metrics": run["outputs"]["metrics"],
    }
    assert training["metrics"]["accuracy"] > 0.7
    # And the registered artifact predicts from the raw feature frame, with its provenance
    loaded = model_registry(plane.settings).load(
        ModelUri.parse(version["registry_uri"]), version["artifact_digest"]
    )
    assert loaded.version.provenance.run_id == run["id"]
    assert loaded.version.provenance.dataset_snapshot == str(snapshot_id)
    assert loaded.version.provenance.privacy_mode == "plain"
    frame = public.slice(0, 50).to_pandas().drop(columns=["income"])
    assert loaded.model.predict_proba(frame).shape == (50, 2)
    # And the training is audited, and the lineage runs from the dataset to the version
    [event] = plane.audit("model.train")
    assert event["run_id"] == run["id"]
    assert event["payload"]["model_version"] == 1
    graph = plane.client.get(
        "/api/v1/lineage/graph",
        params={"node": "dataset:govplane://datasets:us-census", "direction": "downstream"},
    ).json()
    assert "model:income:1" in {n["id"] for n in graph["nodes"]}


def test_dp_train_commits_the_epsilon_of_opacus_accountant_and_budget_exhaustion_refuses(
    plane: TrainPlane, adult: pa.Table
) -> None:
    # Given confidential Adult with its own budget of epsilon 5, and a model
    dataset_id = plane.dataset(
        "adult", adult, "confidential", privacy_budget={"epsilon": 5.0, "delta": 1e-6}
    )
    plane.model("income")
    # When a dp run asks for epsilon 3
    run = plane.train("income", "adult", privacy_mode="dp", epsilon=3.0, batch_size=128)
    # Then it succeeds, and the recorded epsilon is opacus's RDP accountant on the same steps
    assert run["state"] == "succeeded", run["error"]
    dp_sgd = run["outputs"]["dp_sgd"]
    accountant = RDPAccountant()
    accountant.history = [(dp_sgd["noise_multiplier"], dp_sgd["sample_rate"], dp_sgd["steps"])]
    expected = accountant.get_epsilon(delta=1e-6)
    privacy = plane.client.get("/api/v1/models/income/versions/1").json()["evidence"]["training"][
        "privacy"
    ]
    assert privacy["mode"] == "dp"
    assert privacy["epsilon"] == pytest.approx(expected, abs=1e-6)
    assert privacy["epsilon"] <= 3.0
    assert (privacy["delta"], privacy["accountant"]) == (1e-6, "rdp")
    assert privacy["grad_sample_mode"] == "ghost-bookkeeping"
    # And, as in production by default, its sampling and noise came from the kernel's CSPRNG
    assert dp_sgd["secure_rng"] is True
    assert dp_sgd["rng"].startswith("os.urandom")
    # The steps are those of Poisson sampling over the training rows (20 % held out)
    assert dp_sgd["sample_rate"] == pytest.approx(1 / 13)  # ceil(1600 / 128) batches
    assert dp_sgd["steps"] == 13
    # And the ledger shows the committed spend
    budget = plane.budget(dataset_id)
    [entry] = budget["entries"]
    assert (entry["run_id"], entry["state"], entry["accountant"]) == (run["id"], "committed", "rdp")
    assert entry["epsilon_spent"] == pytest.approx(expected, abs=1e-6)
    assert budget["epsilon"]["spent"] == pytest.approx(expected, abs=1e-6)
    assert budget["epsilon"]["reserved"] == 0
    # When a second run asks for epsilon 3 of the 5 - 3 left
    refused = plane.train("income", "adult", privacy_mode="dp", epsilon=3.0, batch_size=128)
    # Then it fails naming the budget, and nothing more is trained or spent
    assert refused["state"] == "failed"
    assert f"privacy budget of dataset {dataset_id} cannot cover epsilon 3.0" in refused["error"]
    assert plane.client.get("/api/v1/models/income/versions/2").status_code == 404
    assert plane.budget(dataset_id)["epsilon"]["spent"] == budget["epsilon"]["spent"]
    assert len(plane.audit("model.train")) == 1


@pytest.mark.parametrize("classification", ["confidential", "restricted"])
def test_plain_train_on_protected_data_is_refused_by_the_gate_before_any_read(
    plane: TrainPlane, adult: pa.Table, classification: str
) -> None:
    # Given protected Adult, and a scientist cleared for it
    plane.dataset("adult", adult.slice(0, 500), classification)
    plane.model("income")
    cleared = principal_token(
        plane.client, "rita", [("data_scientist", "retail")], {"clearance": "restricted"}
    )
    plane.scientist = as_caller(plane.client, cleared)
    # When a plain train run is processed
    run = plane.train("income", "adult", privacy_mode="plain")
    # Then the privacy_mode gate refuses it naming the rule, and the executor never ran
    assert run["state"] == "failed"
    [gate] = run["gates"]
    assert (gate["gate"], gate["status"]) == ("privacy_mode", "fail")
    assert f"rule privacy.yaml classifications.{classification}" in gate["reasons"][0]
    assert run["error"] is None
    assert run["outputs"] == {}
    assert plane.audit("model.train") == []
    assert plane.registered_models() == []


def test_he_train_is_refused_before_any_data_is_read(plane: TrainPlane, adult: pa.Table) -> None:
    # Given confidential Adult, on which privacy.yaml allows he
    dataset_id = plane.dataset("adult", adult.slice(0, 500), "confidential")
    plane.model("income")
    # When an he train run is processed
    run = plane.train("income", "adult", privacy_mode="he")
    # Then the gate passes but the executor refuses: training under he is not offered
    assert [(g["gate"], g["status"]) for g in run["gates"]] == [("privacy_mode", "pass")]
    assert run["state"] == "failed"
    assert "privacy_mode he is not a training mode" in run["error"]
    assert plane.registered_models() == []
    assert plane.budget(dataset_id)["entries"] == []


def test_a_failing_job_releases_its_reservation(plane: TrainPlane, adult: pa.Table) -> None:
    # Given confidential Adult and a dp run whose job fails after it started (no such label)
    dataset_id = plane.dataset("adult", adult.slice(0, 500), "confidential")
    plane.model("income")
    # When it is processed
    run = plane.train("income", "adult", privacy_mode="dp", epsilon=2.0, label="salary")
    # Then the run fails with the job's reason, and its reservation is released: no spend
    assert run["state"] == "failed"
    assert "no label column 'salary'" in run["error"]
    budget = plane.budget(dataset_id)
    [entry] = budget["entries"]
    assert (entry["state"], entry["epsilon_spent"]) == ("released", 0)
    assert entry["epsilon_reserved"] == pytest.approx(2.0)
    assert (budget["epsilon"]["spent"], budget["epsilon"]["reserved"]) == (0, 0)
    assert plane.audit("model.train") == []


def test_params_are_validated_precisely_before_anything_is_reserved(
    plane: TrainPlane, adult: pa.Table
) -> None:
    # Given public data
    dataset_id = plane.dataset(
        "census", adult.slice(0, 200).drop_columns(list(ADULT_SENSITIVE)), "public"
    )
    plane.model("income")
    # When a plain run gives a dp parameter, or an unknown one
    plain = plane.train("income", "census", privacy_mode="plain", noise_multiplier=1.0)
    # Then each fails naming what is wrong, and nothing is reserved
    assert plain["state"] == "failed"
    assert "noise_multiplier apply to privacy_mode dp only" in plain["error"]
    typo = plane.train("income", "census", privacy_mode="plain", epoch=2)
    assert "epoch\n  Extra inputs are not permitted" in typo["error"]
    assert plane.budget(dataset_id)["entries"] == []


def test_a_trained_version_is_evaluated_on_the_decisions_it_makes(
    plane: TrainPlane, adult: pa.Table
) -> None:
    # Given a low-risk version trained by a plain train run: it decides whether a row is >50K
    public = adult.drop_columns(list(ADULT_SENSITIVE))
    plane.dataset("census", public, "public")
    plane.model("income")
    assert plane.train("income", "census", privacy_mode="plain")["state"] == "succeeded"
    # When it is evaluated on the same data
    run = plane.run("evaluate", "model:income", {"version": 1}, ["dataset:census"])
    # Then the drift gate's accuracy is that of the model's own decisions against the label
    assert run["state"] == "succeeded", run["error"]
    [drift] = run["gates"]
    version = plane.client.get("/api/v1/models/income/versions/1").json()
    model = (
        model_registry(plane.settings)
        .load(ModelUri.parse(version["registry_uri"]), version["artifact_digest"])
        .model
    )
    frame = public.to_pandas()
    decisions = model.predict(frame.drop(columns=["income"]))
    expected = accuracy_score(frame["income"] == TRAIN["positive_label"], decisions)
    assert drift["metrics"]["accuracy"] == pytest.approx(expected, abs=1e-9)
    assert expected > 0.8
