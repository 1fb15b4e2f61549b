"""The steps of govplane's training pipeline, shared by the local runner and Kubeflow.

Read the pinned Iceberg snapshot, fit a model, register it, evaluate it on held-out rows, and
report the outcome back to the control plane. Each orchestrator calls these same functions.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa

from connectors.registry import MlflowRegistry, ModelFlavor, ModelUri, Provenance
from connectors.training.job import SnapshotSource, TrainingJob, TrainingOutcome

PRODUCER = "https://github.com/govplane/govplane/tree/main/connectors/training"
_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"
_FACET_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunFacet"


class TrainingRefusedError(ValueError):
    """The job asks for something this trainer does not do (for example a private mode)."""


def admit(job: TrainingJob) -> None:
    """Refuse, before any data is read, a job this trainer cannot carry out as asked.

    Raises:
        TrainingRefusedError: the privacy mode is not ``plain``: private training (DP-SGD, HE)
            is not done by this trainer, and a model must never be trained plainly instead.
    """
    if job.privacy_mode != "plain":
        raise TrainingRefusedError(
            f"this trainer does plain training only, not privacy mode {job.privacy_mode!r}"
        )


def read_snapshot(source: SnapshotSource) -> pa.Table:
    """The rows of the pinned snapshot.

    Raises:
        TrainingRefusedError: the table has no such snapshot.
    """
    from pyiceberg.catalog import load_catalog

    table = load_catalog(source.catalog_name, **source.catalog).load_table(source.table)
    if table.snapshot_by_id(source.snapshot_id) is None:
        raise TrainingRefusedError(f"table {source.table} has no snapshot {source.snapshot_id}")
    return table.scan(snapshot_id=source.snapshot_id).to_arrow()


def split(frame: pd.DataFrame, job: TrainingJob) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and held-out rows, stratified on the label, the same for the same seed."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        frame, test_size=job.test_fraction, random_state=job.seed, stratify=frame[job.label]
    )
    return train, test


def fit(train: pd.DataFrame, job: TrainingJob) -> Any:
    """A logistic regression on one-hot categorical and standardized numeric columns.

    Raises:
        TrainingRefusedError: the label is missing.
    """
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if job.label not in train.columns:
        raise TrainingRefusedError(f"the snapshot has no label column {job.label!r}")
    features = train.drop(columns=[job.label])
    categorical = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    numeric = [c for c in features.columns if c not in categorical]
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), categorical),
            (StandardScaler(), numeric),
        ),
        LogisticRegression(max_iter=1000),
    )
    model.fit(features, train[job.label] == job.positive_label)
    return model


def evaluate(model: Any, test: pd.DataFrame, job: TrainingJob) -> dict[str, float]:
    """Accuracy and ROC AUC of ``model`` on the held-out rows."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    features = test.drop(columns=[job.label])
    truth = test[job.label] == job.positive_label
    return {
        "accuracy": float(accuracy_score(truth, model.predict(features))),
        "roc_auc": float(roc_auc_score(truth, model.predict_proba(features)[:, 1])),
    }


def provenance(job: TrainingJob) -> Provenance:
    """The provenance a model trained by ``job`` is registered with."""
    return Provenance(
        run_id=job.run_id,
        dataset_id=job.source.dataset_id,
        dataset_snapshot=str(job.source.snapshot_id),
        privacy_mode=job.privacy_mode,
    )


def train_and_register(job: TrainingJob) -> TrainingOutcome:
    """Every step but the report: admit, read, split, fit, register, evaluate the registered model.

    The evaluation loads the model back from the registry (digest checked), so the metrics
    describe exactly the artifact the inventory will point to.
    """
    admit(job)
    frame = read_snapshot(job.source).to_pandas()
    train, test = split(frame, job)
    registry = MlflowRegistry(job.registry)
    registered = registry.register(
        job.model_name, fit(train, job), ModelFlavor.SKLEARN, provenance(job)
    )
    loaded = registry.load(registered.uri, registered.artifact_digest)
    return TrainingOutcome(
        model_uri=str(registered.uri),
        artifact_digest=registered.artifact_digest,
        registry_run_id=registered.registry_run_id,
        metrics=evaluate(loaded.model, test, job),
        rows={"train": len(train), "test": len(test)},
    )


def report_event(job: TrainingJob, outcome: TrainingOutcome) -> dict[str, Any]:
    """The OpenLineage event that reports a finished pipeline to govplane.

    The pipeline is a child job of the governed run (``parent`` facet); its ``govplane_training``
    facet carries the registered version, its digest and the evaluation.
    """
    ModelUri.parse(outcome.model_uri)
    return {
        "eventType": "COMPLETE",
        "eventTime": datetime.now(UTC).isoformat(),
        "producer": PRODUCER,
        "schemaURL": _SCHEMA,
        "job": {"namespace": job.job_namespace, "name": f"{job.job_name}.pipeline"},
        "run": {
            "runId": str(uuid.uuid4()),
            "facets": {
                "parent": {
                    "_producer": PRODUCER,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ParentRunFacet.json",
                    "run": {"runId": str(uuid.UUID(hex=job.run_id))},
                    "job": {"namespace": job.job_namespace, "name": job.job_name},
                },
                "govplane_training": {
                    "_producer": PRODUCER,
                    "_schemaURL": _FACET_SCHEMA,
                    "run_id": job.run_id,
                    "dataset_id": job.source.dataset_id,
                    "snapshot_id": job.source.snapshot_id,
                    **outcome.as_outputs(),
                },
            },
        },
        "inputs": [],
        "outputs": [],
    }


def report(job: TrainingJob, outcome: TrainingOutcome, govplane_url: str, token: str) -> None:
    """Send :func:`report_event` to govplane's OpenLineage endpoint.

    Raises:
        httpx.HTTPStatusError: govplane did not accept the report.
    """
    response = httpx.post(
        f"{govplane_url.rstrip('/')}/api/v1/lineage",
        json=report_event(job, outcome),
        params={"domain": job.domain},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    response.raise_for_status()
