"""The governed pipeline, run by kfp's own local runner on real Iceberg, MLflow and govplane."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from kfp import local

from connectors.registry import MlflowRegistry, MlflowRegistryConfig, ModelUri
from connectors.training import SnapshotSource, TrainingJob
from connectors.training.base import Submission, SubmissionState
from connectors.training.kfp import TOKEN_ENV, KfpConfig, governed_pipeline
from control_plane.bootstrap import initialize
from control_plane.runs import RunKind, RunState
from control_plane.runs.train import Handover
from control_plane.settings import Settings
from control_plane.store import Database
from control_plane.store.models import Run
from tests.conftest import govplane_serve
from tests.connectors.conftest import IcebergTable


def test_every_step_runs_and_the_outcome_is_reported_to_govplane(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    iceberg_adult: IcebergTable,
    mlflow_config: MlflowRegistryConfig,
    registry: MlflowRegistry,
) -> None:
    # Given a running govplane, whose token the report step finds where the secret puts it
    data_dir = tmp_path / "govplane"
    settings = Settings(data_dir=data_dir)
    token = initialize(settings).admin_token
    monkeypatch.setenv(TOKEN_ENV, token)
    # and kfp's subprocess runner, which runs each step with this interpreter
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp"),
        workspace_root=str(tmp_path / "workspace"),
    )
    job = TrainingJob(
        run_id="34" * 16,
        model_name="adult-pipeline",
        source=SnapshotSource(
            dataset_id="adult",
            catalog_name=iceberg_adult.catalog_name,
            catalog=iceberg_adult.catalog,
            table=iceberg_adult.table,
            snapshot_id=iceberg_adult.first_snapshot,
        ),
        label="income",
        positive_label=">50K",
        registry=mlflow_config,
        domain="retail",
        job_namespace="govplane.retail",
        job_name="train.model.adult-pipeline",
    )
    # and its train run of the job, handed to Kubeflow as KFP run kfp-run-1
    _awaiting_report(settings, job, "kfp-run-1")
    admin = {"Authorization": f"Bearer {token}"}
    with govplane_serve(data_dir) as url:
        model = {"name": job.model_name, "domain": "retail", "risk_tier": "low"}
        created = httpx.post(
            f"{url}/api/v1/models", json={**model, "intended_use": "tests"}, headers=admin
        )
        assert created.status_code == 201, created.text
        config = KfpConfig(host="http://kfp.invalid", image="local-python", govplane_url=url)
        # When the compiled steps run, in order, each in its own process
        governed_pipeline(config)(job_json=job.model_dump_json(), govplane_url=url)
        # Then the report step reached govplane: version 1 is the one the pipeline registered,
        # linked to the KFP run
        version = httpx.get(f"{url}/api/v1/models/adult-pipeline/versions/1", headers=admin)
        node = "job:govplane.retail:train.model.adult-pipeline.pipeline"
        graph = httpx.get(
            f"{url}/api/v1/lineage/graph",
            params={"node": node, "direction": "both", "depth": 1},
            headers=admin,
        )
    assert version.status_code == 200, version.text
    assert version.json()["registry_uri"] == "models:/adult-pipeline/1"
    training = version.json()["evidence"]["training"]
    assert (training["orchestrator"], training["external_id"]) == ("kfp", "kfp-run-1")
    assert training["snapshot_ids"] == {"adult": iceberg_adult.first_snapshot}
    assert training["metrics"]["accuracy"] > 0.7
    assert "income" not in training["features"]
    assert graph.status_code == 200, graph.text
    assert node in {n["id"] for n in graph.json()["nodes"]}
    # And the train step registered the model with the run's provenance, loadable by its digest
    registered = registry.describe(ModelUri("adult-pipeline", 1))
    assert registered.provenance.run_id == job.run_id
    assert registered.provenance.dataset_snapshot == str(iceberg_adult.first_snapshot)
    registry.load(registered.uri, registered.artifact_digest)


def _awaiting_report(settings: Settings, job: TrainingJob, kfp_run_id: str) -> None:
    """Store a train run of ``job`` as govplane leaves it once Kubeflow took the job."""
    handover = Handover.of(Submission("kfp", kfp_run_id, SubmissionState.SUBMITTED), job)
    db = Database(settings.sqlalchemy_url)
    with db.session(write=True) as session:
        session.add(
            Run(
                id=job.run_id,
                kind=RunKind.TRAIN,
                state=RunState.SUCCEEDED,
                domain=job.domain,
                target=f"model:{job.model_name}",
                inputs=[f"dataset:{job.source.dataset_id}"],
                params={"label": job.label, "positive_label": job.positive_label},
                bundle_version="sha256:" + "0" * 64,
                submitted_by="admin",
                outputs=handover.as_outputs(),
            )
        )
    db.dispose()
