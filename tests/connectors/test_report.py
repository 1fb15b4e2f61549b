"""The pipeline's report back: its outcome to the run, and an OpenLineage event govplane accepts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from connectors.registry import MlflowRegistryConfig
from connectors.training import SnapshotSource, TrainingJob, TrainingOutcome
from connectors.training.steps import report, report_event
from control_plane.bootstrap import initialize
from control_plane.settings import Settings
from lineage import validate_run_event
from tests.conftest import govplane_serve

JOB = TrainingJob(
    run_id="12" * 16,
    model_name="adult-income",
    source=SnapshotSource(
        dataset_id="adult",
        catalog_name="lake",
        catalog={"type": "sql"},
        table="census.adult",
        snapshot_id=9,
    ),
    label="income",
    positive_label=">50K",
    registry=MlflowRegistryConfig(tracking_uri="https://mlflow.example"),
    domain="retail",
    job_namespace="govplane.retail",
    job_name="train.model.adult-income",
)
OUTCOME = TrainingOutcome(
    model_uri="models:/adult-income/3",
    artifact_digest="sha256:" + "ab" * 32,
    registry_run_id="f" * 32,
    metrics={"accuracy": 0.84, "roc_auc": 0.89},
    rows={"train": 2400, "test": 600},
)


def test_report_event_is_a_valid_run_event_naming_the_governed_run() -> None:
    event = validate_run_event(report_event(JOB, OUTCOME))
    assert event.job.name == "train.model.adult-income.pipeline"
    facets = report_event(JOB, OUTCOME)["run"]["facets"]
    assert facets["parent"]["run"]["runId"].replace("-", "") == JOB.run_id
    assert facets["govplane_training"]["model_uri"] == "models:/adult-income/3"


def test_report_event_refuses_an_outcome_without_a_registry_uri() -> None:
    with pytest.raises(ValueError, match="models:/NAME/VERSION"):
        report_event(JOB, OUTCOME.model_copy(update={"model_uri": "/srv/model.pkl"}))


def test_a_running_govplane_refuses_a_report_it_cannot_place(tmp_path: Path) -> None:
    # Given a running govplane and its admin token
    data_dir = tmp_path / "data"
    token = initialize(Settings(data_dir=data_dir)).admin_token
    with govplane_serve(data_dir) as url:
        # Then a report on a run it does not know is refused, before any lineage is written
        with pytest.raises(httpx.HTTPStatusError, match="404"):
            report(JOB, OUTCOME, url, token)
        node = "job:govplane.retail:train.model.adult-income.pipeline"
        graph = httpx.get(
            f"{url}/api/v1/lineage/graph",
            params={"node": node, "direction": "both", "depth": 1},
            headers={"Authorization": f"Bearer {token}"},
        )
        # And a report with a wrong token is refused
        with pytest.raises(httpx.HTTPStatusError, match="401"):
            report(JOB, OUTCOME, url, "not-a-token")
    assert graph.status_code == 404, graph.text
