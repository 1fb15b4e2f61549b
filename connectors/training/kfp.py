"""Kubeflow Pipelines: govplane's training as a governed pipeline, compiled and submitted.

The pipeline reads the pinned Iceberg snapshot, trains and registers the model, evaluates the
registered artifact, and reports the outcome back to govplane. Each step runs, in the image
``KfpConfig.image`` (govplane installed), the same functions as the local runner
(:mod:`connectors.training.steps`). The report step reads govplane's API token from a
Kubernetes secret, never from the pipeline's parameters.
"""

# No ``from __future__ import annotations`` here: kfp reads the component functions' annotations
# (``dsl.Output[dsl.Dataset]``, ``NamedTuple``) as objects.

import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal, NamedTuple

from kfp import dsl
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.training.base import Submission, SubmissionState
from connectors.training.job import TrainingJob

PIPELINE_NAME = "govplane-training"
#: The environment variable the report step reads the token from.
TOKEN_ENV = "GOVPLANE_TOKEN"  # noqa: S105 (a variable name, not a secret)


class KfpConfig(BaseModel):
    """Where and how govplane's pipelines run on Kubeflow.

    Attributes:
        host: the KFP API endpoint.
        namespace: the Kubeflow namespace (profile) runs go to.
        experiment: the KFP experiment runs are grouped under.
        image: the container image of the steps (govplane installed in it).
        govplane_url: where the report step reaches govplane's API.
        token_secret: the Kubernetes secret (key ``token``) holding the report step's API token.
        existing_token: a bearer token for the KFP API itself, if it needs one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["kfp"] = "kfp"
    host: str = Field(min_length=1)
    namespace: str = Field(default="kubeflow", min_length=1)
    experiment: str = Field(default="govplane", min_length=1)
    image: str = Field(min_length=1)
    govplane_url: str = Field(min_length=1)
    token_secret: str = Field(default="govplane-report-token", min_length=1)
    existing_token: SecretStr | None = None


def read_snapshot_step(job_json: str, data: dsl.Output[dsl.Dataset]) -> None:
    """Admit the job, then write the pinned snapshot's rows as Parquet."""
    import pyarrow.parquet as pq

    from connectors.training.job import TrainingJob
    from connectors.training.steps import admit, read_snapshot

    job = TrainingJob.model_validate_json(job_json)
    admit(job)
    pq.write_table(read_snapshot(job.source), data.path)


def train_step(job_json: str, data: dsl.Input[dsl.Dataset]) -> NamedTuple(  # type: ignore[valid-type]
    "Registered",
    model_uri=str,
    artifact_digest=str,
    registry_run_id=str,
    train_rows=int,
    privacy=str,
):
    """Train on the training rows (the job's privacy mode) and register the model; its
    registry URI and digest, and its DP-SGD evidence (JSON, ``null`` unless dp)."""
    import json

    import pandas as pd

    from connectors.registry import ModelFlavor
    from connectors.registry.mlflow import MlflowRegistry
    from connectors.training.job import TrainingJob
    from connectors.training.steps import provenance, split, train_model

    job = TrainingJob.model_validate_json(job_json)
    train, _ = split(pd.read_parquet(data.path), job)
    trained = train_model(train, job)
    registered = MlflowRegistry(job.registry).register(
        job.model_name, trained.model, ModelFlavor.SKLEARN, provenance(job, trained.privacy)
    )
    return (
        str(registered.uri),
        registered.artifact_digest,
        registered.registry_run_id,
        len(train),
        json.dumps(trained.privacy),
    )


def evaluate_step(
    job_json: str,
    data: dsl.Input[dsl.Dataset],
    model_uri: str,
    artifact_digest: str,
    metrics: dsl.Output[dsl.Metrics],
) -> str:
    """Evaluate the registered artifact (digest checked) on the held-out rows; JSON metrics,
    held-out rows and the feature columns."""
    import json

    import pandas as pd

    from connectors.registry import ModelUri
    from connectors.registry.mlflow import MlflowRegistry
    from connectors.training.job import TrainingJob
    from connectors.training.steps import evaluate, split

    job = TrainingJob.model_validate_json(job_json)
    _, test = split(pd.read_parquet(data.path), job)
    model = MlflowRegistry(job.registry).load(ModelUri.parse(model_uri), artifact_digest).model
    scores = evaluate(model, test, job)
    for name, value in scores.items():
        metrics.log_metric(name, value)
    features = [column for column in test.columns if column != job.label]
    return json.dumps({"metrics": scores, "test_rows": len(test), "features": features})


def report_step(
    job_json: str,
    govplane_url: str,
    model_uri: str,
    artifact_digest: str,
    registry_run_id: str,
    train_rows: int,
    privacy: str,
    evaluation: str,
) -> None:
    """Report the registered version, its evaluation and DP-SGD evidence to govplane."""
    import json
    import os

    from connectors.training.job import TrainingJob, TrainingOutcome
    from connectors.training.kfp import TOKEN_ENV
    from connectors.training.steps import report

    job = TrainingJob.model_validate_json(job_json)
    scores = json.loads(evaluation)
    outcome = TrainingOutcome(
        model_uri=model_uri,
        artifact_digest=artifact_digest,
        registry_run_id=registry_run_id,
        metrics=scores["metrics"],
        rows={"train": train_rows, "test": scores["test_rows"]},
        features=scores["features"],
        privacy=json.loads(privacy),
    )
    report(job, outcome, govplane_url, os.environ[TOKEN_ENV])


def governed_pipeline(config: KfpConfig) -> Any:
    """The governed pipeline, its steps in ``config.image`` (a kfp ``GraphComponent``)."""
    from kfp import kubernetes

    read_op, train_op, evaluate_op, report_op = (
        dsl.component(base_image=config.image, install_kfp_package=False)(step)
        for step in (read_snapshot_step, train_step, evaluate_step, report_step)
    )

    @dsl.pipeline(name=PIPELINE_NAME, description="govplane governed training")  # type: ignore[untyped-decorator]
    def governed_training(job_json: str, govplane_url: str) -> None:
        read = read_op(job_json=job_json)
        train = train_op(job_json=job_json, data=read.outputs["data"])
        evaluation = evaluate_op(
            job_json=job_json,
            data=read.outputs["data"],
            model_uri=train.outputs["model_uri"],
            artifact_digest=train.outputs["artifact_digest"],
        )
        reported = report_op(
            job_json=job_json,
            govplane_url=govplane_url,
            model_uri=train.outputs["model_uri"],
            artifact_digest=train.outputs["artifact_digest"],
            registry_run_id=train.outputs["registry_run_id"],
            train_rows=train.outputs["train_rows"],
            privacy=train.outputs["privacy"],
            evaluation=evaluation.outputs["Output"],
        )
        kubernetes.use_secret_as_env(
            reported, secret_name=config.token_secret, secret_key_to_env={"token": TOKEN_ENV}
        )
        # A governed run executes every step; a cached result would skip its checks.
        for task in (read, train, evaluation, reported):
            task.set_caching_options(False)

    return governed_training


def compile_pipeline(config: KfpConfig, package_path: Path) -> Path:
    """Compile :func:`governed_pipeline` to pipeline IR (YAML) at ``package_path``."""
    from kfp import compiler

    compiler.Compiler().compile(governed_pipeline(config), str(package_path))
    return package_path


class KfpOrchestrator:
    """Submits each training job as one run of the governed pipeline through ``kfp.Client``."""

    kind = "kfp"

    def __init__(self, config: KfpConfig) -> None:
        self._config = config

    def submit(self, job: TrainingJob) -> Submission:
        """Compile the pipeline and start a run of it; the pipeline reports back when done.

        Raises:
            ValueError: the job's registry or catalog is a local store the cluster cannot reach.
        """
        import kfp

        _refuse_local_stores(job)

        token = self._config.existing_token
        with warnings.catch_warnings():
            # kfp warns on every client that it needs KFP 2.0.0-beta.2 or later; so does govplane.
            warnings.filterwarnings("ignore", "This client only works", FutureWarning)
            client = kfp.Client(
                host=self._config.host,
                namespace=self._config.namespace,
                existing_token=token.get_secret_value() if token is not None else None,
            )
        with tempfile.TemporaryDirectory(prefix="govplane-kfp-") as scratch:
            package = compile_pipeline(self._config, Path(scratch) / "pipeline.yaml")
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments={
                    "job_json": job.model_dump_json(),
                    "govplane_url": self._config.govplane_url,
                },
                run_name=f"govplane-{job.run_id}",
                experiment_name=self._config.experiment,
                namespace=self._config.namespace,
                enable_caching=False,
            )
        return Submission(self.kind, str(result.run_id), SubmissionState.SUBMITTED)


def _refuse_local_stores(job: TrainingJob) -> None:
    local = ("sqlite:", "file:", "/")
    stores = {
        "model registry": job.registry.tracking_uri,
        "catalog": job.source.catalog.get("uri", ""),
        "warehouse": job.source.catalog.get("warehouse", ""),
    }
    for what, uri in stores.items():
        if uri.startswith(local):
            raise ValueError(
                f"the {what} {uri!r} is local to this machine; a pipeline cannot reach it"
            )
