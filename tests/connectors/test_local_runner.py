"""The local runner: govplane's training entry point in a subprocess, on real Iceberg and MLflow."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from connectors.registry import MlflowRegistry, MlflowRegistryConfig, ModelUri
from connectors.training import (
    LocalRunner,
    LocalRunnerConfig,
    SnapshotSource,
    SubmissionState,
    TrainingFailedError,
    TrainingJob,
)
from connectors.training.steps import read_snapshot, split
from tests.connectors.conftest import IcebergTable

RUN_ID = "ab" * 16


def _job(table: IcebergTable, registry: MlflowRegistryConfig, **changes: object) -> TrainingJob:
    job = TrainingJob(
        run_id=RUN_ID,
        model_name="adult-local",
        source=SnapshotSource(
            dataset_id="adult",
            catalog_name=table.catalog_name,
            catalog=table.catalog,
            table=table.table,
            snapshot_id=table.first_snapshot,
        ),
        label="income",
        positive_label=">50K",
        registry=registry,
        domain="retail",
        job_namespace="govplane.retail",
        job_name="train.model.adult-local",
    )
    return job.model_copy(update=changes)


def test_runner_trains_on_the_pinned_snapshot_and_registers_the_model(
    iceberg_adult: IcebergTable, mlflow_config: MlflowRegistryConfig, registry: MlflowRegistry
) -> None:
    # Given a job pinned to the first of the table's two snapshots
    job = _job(iceberg_adult, mlflow_config)
    # When the local runner carries it out
    submission = LocalRunner(LocalRunnerConfig(timeout_seconds=300)).submit(job)
    # Then it ran to the end on exactly the pinned rows
    assert submission.state is SubmissionState.SUCCEEDED
    outcome = submission.outcome
    assert outcome is not None
    assert outcome.rows["train"] + outcome.rows["test"] == iceberg_adult.first_rows
    # And the registered model carries the run and the snapshot
    loaded = registry.load(ModelUri.parse(outcome.model_uri), outcome.artifact_digest)
    assert loaded.version.provenance.run_id == RUN_ID
    assert loaded.version.provenance.dataset_snapshot == str(iceberg_adult.first_snapshot)
    # And the reported metrics are what scikit-learn and numpy compute on the held-out rows
    _, test = split(read_snapshot(job.source).to_pandas(), job)
    features, truth = test.drop(columns=["income"]), (test["income"] == ">50K").to_numpy()
    predicted = loaded.model.predict(features)
    assert outcome.metrics["accuracy"] == pytest.approx(np.mean(predicted == truth), abs=1e-12)
    scores = loaded.model.predict_proba(features)[:, 1]
    assert outcome.metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    assert outcome.metrics["accuracy"] > 0.75


def test_a_refused_job_reports_its_exit_status_and_stderr(
    iceberg_adult: IcebergTable, mlflow_config: MlflowRegistryConfig
) -> None:
    job = _job(iceberg_adult, mlflow_config, privacy_mode="he")
    with pytest.raises(TrainingFailedError, match="privacy mode 'he'") as failed:
        LocalRunner(LocalRunnerConfig(timeout_seconds=300)).submit(job)
    assert failed.value.exit_status == 2
    assert "refused" in failed.value.stderr


def test_an_unknown_snapshot_fails_the_job(
    iceberg_adult: IcebergTable, mlflow_config: MlflowRegistryConfig
) -> None:
    source = _job(iceberg_adult, mlflow_config).source.model_copy(update={"snapshot_id": 1})
    with pytest.raises(TrainingFailedError, match="no snapshot 1"):
        LocalRunner(LocalRunnerConfig()).submit(_job(iceberg_adult, mlflow_config, source=source))


def test_a_job_past_its_timeout_is_killed(
    iceberg_adult: IcebergTable, mlflow_config: MlflowRegistryConfig
) -> None:
    with pytest.raises(TrainingFailedError, match=r"timed out after 0\.2 s") as failed:
        LocalRunner(LocalRunnerConfig(timeout_seconds=0.2)).submit(
            _job(iceberg_adult, mlflow_config)
        )
    assert failed.value.exit_status is None
