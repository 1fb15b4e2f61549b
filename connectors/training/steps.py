"""The steps of govplane's training pipeline, shared by the local runner and Kubeflow.

Read the pinned Iceberg snapshot, fit a model (plain, or DP-SGD: :mod:`.dp`), register it,
evaluate it on held-out rows, and report the outcome back to the control plane. Each
orchestrator calls these same functions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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


#: The privacy modes this trainer carries out.
TRAINED_MODES = ("plain", "dp")


class TrainingRefusedError(ValueError):
    """The job asks for something this trainer does not do (for example a private mode)."""


def admit(job: TrainingJob) -> None:
    """Refuse, before any data is read, a job this trainer cannot carry out as asked.

    Raises:
        TrainingRefusedError: the privacy mode is neither ``plain`` nor ``dp`` (a model must
            never be trained plainly instead of privately), or the DP-SGD plan is missing in
            ``dp`` mode or given in another.
    """
    if job.privacy_mode not in TRAINED_MODES:
        raise TrainingRefusedError(
            f"this trainer trains in privacy modes {', '.join(TRAINED_MODES)}, "
            f"not privacy mode {job.privacy_mode!r}"
        )
    if (job.privacy_mode == "dp") != (job.dp is not None):
        raise TrainingRefusedError("a DP-SGD plan is required in dp mode and only there")


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
    """Train and held-out rows, stratified on the label, the same for the same seed.

    Raises:
        TrainingRefusedError: the label is missing.
    """
    from sklearn.model_selection import train_test_split

    _require_label(frame, job)
    train, test = train_test_split(
        frame, test_size=job.test_fraction, random_state=job.seed, stratify=frame[job.label]
    )
    return train, test


def labelled(frame: pd.DataFrame, job: TrainingJob) -> tuple[pd.DataFrame, pd.Series[bool]]:
    """The feature columns of ``frame`` and whether each row has the positive label.

    Raises:
        TrainingRefusedError: the label is missing.
    """
    _require_label(frame, job)
    return frame.drop(columns=[job.label]), frame[job.label] == job.positive_label


def _require_label(frame: pd.DataFrame, job: TrainingJob) -> None:
    if job.label not in frame.columns:
        raise TrainingRefusedError(f"the snapshot has no label column {job.label!r}")


def preprocessing(features: pd.DataFrame) -> Any:
    """One-hot categorical and standardized numeric columns (an unfitted column transformer)."""
    from sklearn.compose import make_column_transformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    numeric = [c for c in features.columns if c not in categorical]
    return make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), categorical),
        (StandardScaler(), numeric),
    )


def fit(train: pd.DataFrame, job: TrainingJob) -> Any:
    """A logistic regression on :func:`preprocessing` of the feature columns.

    Raises:
        TrainingRefusedError: the label is missing.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    features, positive = labelled(train, job)
    model = make_pipeline(preprocessing(features), LogisticRegression(max_iter=1000))
    model.fit(features, positive)
    return model


@dataclass(frozen=True)
class Trained:
    """A fitted model (predicting from the raw feature frame) and its DP-SGD evidence if any."""

    model: Any
    privacy: dict[str, Any] | None = None


def train_model(train: pd.DataFrame, job: TrainingJob) -> Trained:
    """The model of the job's privacy mode: plain logistic regression, or a DP-SGD MLP.

    Raises:
        TrainingRefusedError: the label is missing, or the DP plan would spend more than the
            job may.
    """
    if job.dp is None:
        return Trained(fit(train, job))
    from connectors.training.dp import fit_dp

    fitted = fit_dp(train, job, job.dp)
    return Trained(fitted.model, fitted.evidence.as_dict())


def evaluate(model: Any, test: pd.DataFrame, job: TrainingJob) -> dict[str, float]:
    """Accuracy and ROC AUC of ``model`` on the held-out rows."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    features, truth = labelled(test, job)
    return {
        "accuracy": float(accuracy_score(truth, model.predict(features))),
        "roc_auc": float(roc_auc_score(truth, model.predict_proba(features)[:, 1])),
    }


def provenance(job: TrainingJob, privacy: dict[str, Any] | None = None) -> Provenance:
    """The provenance a model trained by ``job`` (with DP evidence ``privacy``) is registered
    with."""
    return Provenance(
        run_id=job.run_id,
        dataset_id=job.source.dataset_id,
        dataset_snapshot=str(job.source.snapshot_id),
        privacy_mode=job.privacy_mode,
        epsilon=None if privacy is None else float(privacy["epsilon"]),
        delta=None if privacy is None else float(privacy["delta"]),
    )


def train_and_register(job: TrainingJob) -> TrainingOutcome:
    """Every step but the report: admit, read, split, train, register, evaluate the registered
    model.

    The evaluation loads the model back from the registry (digest checked), so the metrics
    describe exactly the artifact the inventory will point to.
    """
    admit(job)
    frame = read_snapshot(job.source).to_pandas()
    train, test = split(frame, job)
    trained = train_model(train, job)
    registry = MlflowRegistry(job.registry)
    registered = registry.register(
        job.model_name, trained.model, ModelFlavor.SKLEARN, provenance(job, trained.privacy)
    )
    loaded = registry.load(registered.uri, registered.artifact_digest)
    return TrainingOutcome(
        model_uri=str(registered.uri),
        artifact_digest=registered.artifact_digest,
        registry_run_id=registered.registry_run_id,
        metrics=evaluate(loaded.model, test, job),
        rows={"train": len(train), "test": len(test)},
        features=[c for c in frame.columns if c != job.label],
        privacy=trained.privacy,
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
    """Report the outcome to the governed run (govplane registers the version), then send
    :func:`report_event` to govplane's OpenLineage endpoint.

    Raises:
        httpx.HTTPStatusError: govplane did not accept the report.
    """
    base = govplane_url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    recorded = httpx.post(
        f"{base}/api/v1/runs/{job.run_id}/report",
        json=outcome.as_outputs(),
        headers=headers,
        timeout=30,
    )
    recorded.raise_for_status()
    response = httpx.post(
        f"{base}/api/v1/lineage",
        json=report_event(job, outcome),
        params={"domain": job.domain},
        headers=headers,
        timeout=30,
    )
    response.raise_for_status()
