"""Kubeflow Pipelines: the governed pipeline compiles to IR kfp accepts; kfp.Client submits it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp.components import load_component_from_file
from kfp.pipeline_spec import pipeline_spec_pb2

from connectors.registry import MlflowRegistryConfig
from connectors.training import SnapshotSource, SubmissionState, TrainingJob
from connectors.training.kfp import PIPELINE_NAME, KfpConfig, KfpOrchestrator, compile_pipeline
from tests.connectors.fake_kfp import fake_kfp

IMAGE = "registry.example/govplane:0.1.0"
STEPS = ["read-snapshot-step", "train-step", "evaluate-step", "report-step"]


def _config(host: str = "http://kfp.invalid", **changes: Any) -> KfpConfig:
    return KfpConfig(host=host, image=IMAGE, govplane_url="https://govplane.example", **changes)


def _job(**changes: Any) -> TrainingJob:
    job = TrainingJob(
        run_id="cd" * 16,
        model_name="adult-kfp",
        source=SnapshotSource(
            dataset_id="adult",
            catalog_name="lake",
            catalog={"type": "rest", "uri": "https://iceberg.example/catalog"},
            table="census.adult",
            snapshot_id=77,
        ),
        label="income",
        positive_label=">50K",
        registry=MlflowRegistryConfig(tracking_uri="https://mlflow.example"),
        domain="retail",
        job_namespace="govplane.retail",
        job_name="train.model.adult-kfp",
    )
    return job.model_copy(update=changes)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline(_config(), tmp_path_factory.mktemp("kfp") / "pipeline.yaml")


def _documents(package: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, platform = yaml.safe_load_all(package.read_text())
    return spec, platform


def test_compiled_pipeline_is_accepted_by_kfps_own_loader(package: Path) -> None:
    # When kfp loads the IR back as a component, it validates it
    loaded = load_component_from_file(str(package))
    # Then it is govplane's pipeline with its two parameters
    assert loaded.name == PIPELINE_NAME
    assert set(loaded.component_spec.inputs or {}) == {"job_json", "govplane_url"}


def test_compiled_pipeline_parses_strictly_as_pipeline_and_platform_spec(package: Path) -> None:
    spec, platform = _documents(package)
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())


def test_steps_run_in_order_in_the_configured_image_without_caching(package: Path) -> None:
    spec, _ = _documents(package)
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(STEPS)
    assert tasks["train-step"]["dependentTasks"] == ["read-snapshot-step"]
    assert sorted(tasks["evaluate-step"]["dependentTasks"]) == ["read-snapshot-step", "train-step"]
    assert sorted(tasks["report-step"]["dependentTasks"]) == ["evaluate-step", "train-step"]
    assert all(not task["cachingOptions"].get("enableCache") for task in tasks.values())
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    # Each step calls govplane's own step functions, not a copy of them
    assert all(
        "connectors.training" in " ".join(e["container"]["command"]) for e in executors.values()
    )


def test_report_step_takes_its_token_from_a_kubernetes_secret(package: Path) -> None:
    spec, platform = _documents(package)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert list(executors) == ["exec-report-step"]
    (secret,) = executors["exec-report-step"]["secretAsEnv"]
    assert secret["secretName"] == "govplane-report-token"
    assert secret["keyToEnv"] == [{"secretKey": "token", "envVar": "GOVPLANE_TOKEN"}]
    assert "GOVPLANE_TOKEN" not in yaml.safe_dump(spec["root"])


def test_submission_goes_through_kfp_client_to_the_endpoint() -> None:
    with fake_kfp() as kfp_api:
        # Given an orchestrator pointed at a KFP endpoint that needs a token
        orchestrator = KfpOrchestrator(_config(kfp_api.url, existing_token="kfp-secret"))
        job = _job()
        # When two jobs are submitted
        first = orchestrator.submit(job)
        second = orchestrator.submit(job.model_copy(update={"run_id": "ef" * 16}))
    # Then each became a run of the governed pipeline, with the job as its parameter
    assert first.state is SubmissionState.SUBMITTED
    assert first.outcome is None
    assert [run["run_id"] for run in kfp_api.runs] == [first.external_id, second.external_id]
    run = kfp_api.runs[0]
    assert run["display_name"] == f"govplane-{job.run_id}"
    parameters = run["runtime_config"]["parameters"]
    assert TrainingJob.model_validate_json(parameters["job_json"]) == job
    assert parameters["govplane_url"] == "https://govplane.example"
    # And caching is off, under one experiment, and every call carried the KFP token
    tasks = run["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert all(not t["cachingOptions"].get("enableCache") for t in tasks.values())
    assert [e["display_name"] for e in kfp_api.experiments] == ["govplane"]
    assert {run["experiment_id"] for run in kfp_api.runs} == {
        kfp_api.experiments[0]["experiment_id"]
    }
    assert set(kfp_api.authorizations) == {"Bearer kfp-secret"}


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        (
            {"registry": MlflowRegistryConfig(tracking_uri="sqlite:////srv/mlflow.db")},
            "model registry",
        ),
        (
            {
                "source": _job().source.model_copy(
                    update={"catalog": {"uri": "sqlite:////srv/c.db"}}
                )
            },
            "catalog",
        ),
    ],
)
def test_jobs_on_stores_local_to_this_machine_are_refused(
    changes: dict[str, Any], what: str
) -> None:
    # The endpoint is never contacted: kfp.invalid does not resolve
    with pytest.raises(ValueError, match=f"the {what} .* is local"):
        KfpOrchestrator(_config()).submit(_job(**changes))
