"""Governed ``train`` runs handed to Kubeflow Pipelines: the run ends at submission, and the
pipeline's report (the real report step's function, over HTTP to a real uvicorn server) registers
the version; on every store. KFP itself is the fake API on loopback (no cluster runs here)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opacus.accountants import RDPAccountant

from connectors.registry import MlflowRegistryConfig
from connectors.training import TrainingJob, TrainingOutcome
from connectors.training.kfp import KfpConfig, KfpOrchestrator
from connectors.training.steps import report
from control_plane.api.deps import Services
from control_plane.app import create_app
from control_plane.runs import ExecutionContext, RunKind
from control_plane.runs.train import TrainExecutor
from control_plane.sample_data import ADULT_SENSITIVE, read_adult
from control_plane.settings import Settings
from tests.connectors.fake_kfp import FakeKfp, fake_kfp
from tests.loopback import serve_on_loopback
from tests.runs.plane import Plane

ROWS = 2000
TRAIN = {"label": "income", "positive_label": ">50K"}
# What the jobs name: a registry and a catalog the cluster reaches (never contacted here).
REGISTRY = MlflowRegistryConfig(tracking_uri="https://mlflow.example")
CATALOG = {"type": "rest", "uri": "https://iceberg.example/catalog"}


class KubeflowTrainer:
    """govplane's train executor with Kubeflow as its orchestrator, built on the app's services
    (given once the app exists)."""

    kind = RunKind.TRAIN

    def __init__(self, kfp_url: str) -> None:
        self.kfp_url = kfp_url
        self.govplane_url = ""
        self.services: Services | None = None

    def execute(self, context: ExecutionContext) -> Mapping[str, Any]:
        services = self.services
        assert services is not None
        config = KfpConfig(host=self.kfp_url, image="govplane:test", govplane_url=self.govplane_url)
        executor = TrainExecutor(
            services.db,
            services.audit,
            services.privacy_ledger,
            KfpOrchestrator(config),
            REGISTRY,
            CATALOG,
        )
        return executor.execute(context)


@dataclass
class KfpPlane(Plane):
    """A served control plane training through (fake) Kubeflow, with its principals."""

    url: str
    kfp: FakeKfp
    pipeline_token: str

    def principal(self, name: str, role: str, **attributes: Any) -> str:
        created = self.client.post(
            "/api/v1/principals",
            json={
                "name": name,
                "kind": "service" if role == "training_pipeline" else "user",
                "roles": [{"role": role, "domain": "retail"}],
                "attributes": attributes,
            },
        )
        assert created.status_code == 201, created.text
        issued = self.client.post(f"/api/v1/principals/{created.json()['id']}/tokens")
        assert issued.status_code == 201, issued.text
        token: str = issued.json()["token"]
        return token

    def adult(self, name: str, classification: str, **extra: Any) -> str:
        """Adult (public: without its sensitive columns) ingested as ``name``; its id."""
        table = read_adult().slice(0, ROWS)
        if classification == "public":
            table = table.drop_columns(list(ADULT_SENSITIVE))
        return self.dataset(name, table, classification, **extra)

    def job(self, run: dict[str, Any]) -> TrainingJob:
        """The job KFP was given for ``run``, as the pipeline's steps read it."""
        [submitted] = [r for r in self.kfp.runs if r["run_id"] == run["outputs"]["external_id"]]
        parameters = submitted["runtime_config"]["parameters"]
        return TrainingJob.model_validate_json(parameters["job_json"])

    def report_as(self, token: str, run_id: str, body: Any) -> httpx.Response:
        return self.client.post(
            f"/api/v1/runs/{run_id}/report",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )


@pytest.fixture
def plane(settings: Settings, admin_token: str) -> Iterator[KfpPlane]:
    with fake_kfp() as kfp_api:
        trainer = KubeflowTrainer(kfp_api.url)
        app = create_app(settings, {RunKind.TRAIN: trainer})
        services: Services = app.state.services
        trainer.services = services
        with serve_on_loopback(app) as url, httpx.Client(base_url=url, timeout=60) as http:
            trainer.govplane_url = url
            http.headers["Authorization"] = f"Bearer {admin_token}"
            plane = KfpPlane(http, services, settings, {}, {}, url, kfp_api, "")
            plane.owner = {"Authorization": f"Bearer {plane.principal('olga', 'data_owner')}"}
            scientist = plane.principal("dana", "data_scientist", clearance="confidential")
            plane.scientist = {"Authorization": f"Bearer {scientist}"}
            plane.pipeline_token = plane.principal("kfp-pipeline", "training_pipeline")
            yield plane


def _outcome(model: str, version: int = 1, **changes: Any) -> TrainingOutcome:
    """What the pipeline's train and evaluate steps hand the report step."""
    outcome = TrainingOutcome(
        model_uri=f"models:/{model}/{version}",
        artifact_digest="sha256:" + "ab" * 32,
        registry_run_id="f" * 32,
        metrics={"accuracy": 0.84, "roc_auc": 0.89},
        rows={"train": 1600, "test": 400},
        features=["age", "education"],
    )
    return outcome.model_copy(update=changes)


def test_the_pipelines_report_registers_the_version_linked_to_its_kfp_run(plane: KfpPlane) -> None:
    # Given a public dataset in the lake and a model
    dataset_id = plane.adult("adult", "public")
    plane.model("income")
    # When a plain train run is processed with Kubeflow as the orchestrator
    run = plane.run("train", "model:income", TRAIN, ["dataset:adult"])
    # Then it succeeds at submission, naming the KFP run, and no version exists yet
    assert run["state"] == "succeeded", run["error"]
    [kfp_run] = plane.kfp.runs
    assert run["outputs"]["orchestrator"] == "kfp"
    assert run["outputs"]["external_id"] == kfp_run["run_id"]
    assert "model_version" not in run["outputs"]
    assert plane.client.get("/api/v1/models/income/versions/1").status_code == 404
    # When the pipeline's report step reports, with the token of its service account
    job = plane.job(run)
    outcome = _outcome("income")
    report(job, outcome, plane.url, plane.pipeline_token)
    # Then version 1 holds the training evidence, naming the KFP run it came from
    version = plane.client.get("/api/v1/models/income/versions/1").json()
    assert version["registry_uri"] == "models:/income/1"
    assert version["artifact_digest"] == outcome.artifact_digest
    training = version["evidence"]["training"]
    snapshot_id = plane.client.get(f"/api/v1/datasets/{dataset_id}").json()["snapshot_id"]
    assert training == {
        "run_id": run["id"],
        "orchestrator": "kfp",
        "external_id": kfp_run["run_id"],
        "dataset_ids": [dataset_id],
        "snapshot_ids": {dataset_id: snapshot_id},
        "label": "income",
        "positive_label": ">50K",
        "features": ["age", "education"],
        "privacy": {
            "mode": "plain",
            "epsilon": None,
            "delta": None,
            "accountant": None,
            "grad_sample_mode": None,
        },
        "metrics": outcome.metrics,
    }
    # And the run's outputs name the version and who reported it; the training is audited
    reported = plane.client.get(f"/api/v1/runs/{run['id']}").json()
    assert reported["outputs"]["model_version"] == 1
    assert reported["outputs"]["external_id"] == kfp_run["run_id"]
    assert reported["outputs"]["reported_by"] == "kfp-pipeline"
    events = plane.client.get("/api/v1/audit/events", params={"action": "model.train"}).json()
    [event] = events["items"]
    assert (event["run_id"], event["actor"]) == (run["id"], "dana")
    assert event["payload"]["external_id"] == kfp_run["run_id"]
    # And the pipeline's lineage event was accepted too
    node = f"job:{job.job_namespace}:{job.job_name}.pipeline"
    graph = plane.client.get("/api/v1/lineage/graph", params={"node": node, "direction": "both"})
    assert graph.status_code == 200, graph.text
    # And the lineage runs from the dataset through the governed run to the reported version
    downstream = plane.client.get(
        "/api/v1/lineage/graph",
        params={"node": "dataset:govplane://datasets:adult", "direction": "downstream"},
    ).json()
    assert "model:income:1" in {n["id"] for n in downstream["nodes"]}


def test_a_report_is_recorded_once_only_for_a_run_that_awaits_one(plane: KfpPlane) -> None:
    # Given a train run handed to Kubeflow
    plane.adult("adult", "public")
    plane.model("income")
    run = plane.run("train", "model:income", TRAIN, ["dataset:adult"])
    body = _outcome("income").as_outputs()
    token = plane.pipeline_token
    # Then a report on an unknown run is 404, and a caller without report permission is 403
    assert plane.report_as(token, "0" * 32, body).status_code == 404
    scientist = plane.scientist["Authorization"].removeprefix("Bearer ")
    assert plane.report_as(scientist, run["id"], body).status_code == 403
    # And malformed reports are 422: a file path, an unknown field, NaN, a missing field
    for bad in (
        {**body, "model_uri": "/srv/model.pkl"},
        {**body, "state": "succeeded"},
        {**body, "metrics": {"accuracy": "NaN"}},
        {key: value for key, value in body.items() if key != "artifact_digest"},
    ):
        refused = plane.report_as(token, run["id"], bad)
        assert refused.status_code == 422, refused.text
    # And a report of another model's version does not fit the run (422)
    other = _outcome("churn").as_outputs()
    assert plane.report_as(token, run["id"], other).status_code == 422
    # And a run of another kind awaits no report (409)
    ingest = plane.client.get("/api/v1/runs", params={"kind": "ingest"}).json()["items"][0]
    assert plane.report_as(token, ingest["id"], body).status_code == 409
    assert plane.client.get("/api/v1/models/income/versions/1").status_code == 404
    # When the report comes, it is recorded; a second one is refused naming the version
    assert plane.report_as(token, run["id"], body).status_code == 200
    again = plane.report_as(token, run["id"], _outcome("income", 2).as_outputs())
    assert again.status_code == 409
    assert "recorded already, as version 1" in again.json()["detail"]
    assert plane.client.get("/api/v1/models/income/versions/2").status_code == 404


def test_a_dp_report_records_the_recomputed_epsilon_and_the_ledger_keeps_the_charge(
    plane: KfpPlane,
) -> None:
    # Given confidential Adult with a budget, and a dp run of epsilon 3 handed to Kubeflow
    dataset_id = plane.adult(
        "adult", "confidential", privacy_budget={"epsilon": 5.0, "delta": 1e-6}
    )
    plane.model("income")
    run = plane.run(
        "train",
        "model:income",
        {**TRAIN, "privacy_mode": "dp", "epsilon": 3.0, "batch_size": 128},
        ["dataset:adult"],
    )
    assert run["state"] == "succeeded", run["error"]
    # Then the run's end charged the whole reservation (the pipeline had not reported)
    [entry] = plane.client.get(f"/api/v1/privacy/budgets/{dataset_id}").json()["entries"]
    assert (entry["state"], entry["epsilon_spent"]) == ("committed", pytest.approx(3.0))
    job = plane.job(run)
    assert job.dp is not None
    # The planned steps: Poisson sampling over the 1600 training rows, 13 batches of 128
    steps = {"noise_multiplier": job.dp.noise_multiplier, "sample_rate": 1 / 13, "steps": 13}
    evidence = {**steps, "grad_sample_mode": "ghost-bookkeeping", "epsilon": 99.0}
    # When a report claims another noise than planned, or more steps than were charged
    wrong_noise = _outcome("income", privacy={**evidence, "noise_multiplier": 0.5})
    overspent = _outcome("income", privacy={**evidence, "steps": 130})
    token = plane.pipeline_token
    # Then both are refused, and nothing is registered
    assert plane.report_as(token, run["id"], wrong_noise.as_outputs()).status_code == 422
    refused = plane.report_as(token, run["id"], overspent.as_outputs())
    assert refused.status_code == 409, refused.text
    assert "more than run" in refused.json()["detail"]
    assert plane.client.get("/api/v1/models/income/versions/1").status_code == 404
    # When the report carries the steps the job took
    report(job, _outcome("income", privacy=evidence), plane.url, token)
    # Then the evidence holds epsilon recomputed by govplane (as opacus's accountant says), not
    # the job's own figure, and the ledger still holds the full charge
    accountant = RDPAccountant()
    accountant.history = [(job.dp.noise_multiplier, 1 / 13, 13)]
    expected = accountant.get_epsilon(delta=1e-6)
    training = plane.client.get("/api/v1/models/income/versions/1").json()["evidence"]["training"]
    assert training["privacy"]["epsilon"] == pytest.approx(expected, abs=1e-6)
    assert expected <= 3.0
    assert (training["privacy"]["delta"], training["privacy"]["accountant"]) == (1e-6, "rdp")
    assert training["external_id"] == run["outputs"]["external_id"]
    budget = plane.client.get(f"/api/v1/privacy/budgets/{dataset_id}").json()
    assert budget["epsilon"]["spent"] == pytest.approx(3.0)
