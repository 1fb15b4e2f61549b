"""The ``drift`` gate: data and prediction drift from the training snapshot, and quality.

One evidently report compares the evaluation data with the training snapshot: the share of
drifted columns (``DriftedColumnsCount``), each column's drift (``ValueDrift``, evidently picks
the test by column type and size), the drift of the model's decisions, and their quality on the
evaluation labels: accuracy, precision, recall and F1 for a binary classifier (``task:
classification``), MAE, RMSE and R2 for a regressor (``task: regression``, whose label and
predictions are numbers and which has no positive label). The
report's JSON is the evidence (evidently's metric ids are content fingerprints, so it is the
same for the same inputs); its HTML is kept as the artifact ``drift_report.html``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import pandas
from pydantic import Field

from policies.documents import Document
from policies.gates.base import GateResult, GateStatus
from policies.gates.evaluation import EvaluationError, ModelEvaluation, failed, json_ready

if TYPE_CHECKING:
    from evidently import DataDefinition, Report

TARGET: Final = "__target__"
PREDICTION: Final = "__prediction__"
HTML_ARTIFACT: Final = "drift_report.html"
_QUALITY: Final = {
    "Accuracy": "accuracy",
    "Precision": "precision",
    "Recall": "recall",
    "F1Score": "f1",
    "MAE": "mae",
    "RMSE": "rmse",
    "R2Score": "r2",
}

Rate = Field(default=None, ge=0.0, le=1.0)


class DriftConfig(Document):
    """The gate's thresholds for one risk tier in ``gates.yaml``."""

    columns: tuple[str, ...] | None = None
    """Columns compared for data drift; the model's features by default."""
    max_drift_share: float | None = Rate
    """The largest share of drifted columns."""
    allow_prediction_drift: bool = False
    min_accuracy: float | None = Rate
    min_precision: float | None = Rate
    min_recall: float | None = Rate
    min_f1: float | None = Rate
    task: Literal["classification", "regression"] = "classification"
    max_mae: float | None = Field(default=None, ge=0.0)
    max_rmse: float | None = Field(default=None, ge=0.0)
    min_r2: float | None = Field(default=None, le=1.0)


def drift_frames(
    evaluation: ModelEvaluation,
    columns: list[str],
    task: Literal["classification", "regression"] = "classification",
) -> tuple[pandas.DataFrame, pandas.DataFrame, DataDefinition]:
    """The reference and current frames evidently compares, and their data definition.

    Raises:
        EvaluationError: no training snapshot, or a column or the label is missing.
    """
    reference = evaluation.reference
    if reference is None:
        raise EvaluationError("drift needs the training snapshot as reference data")
    evaluation.require_columns(reference, [*columns, evaluation.label], "reference")
    evaluation.require_columns(evaluation.current, columns, "evaluation")
    if len(reference) == 0:
        raise EvaluationError("the reference data has no rows")
    frame = _frame if task == "classification" else _regression_frame
    frames = [
        frame(dataclasses.replace(evaluation, current=reference, predictions=None), columns),
        frame(evaluation, columns),
    ]
    from evidently import BinaryClassification, DataDefinition, Regression

    numeric = [
        c
        for c in columns
        if pandas.api.types.is_numeric_dtype(reference[c])
        and not pandas.api.types.is_bool_dtype(reference[c])
    ]
    categorical = [c for c in columns if c not in numeric]
    if task == "regression":
        definition = DataDefinition(
            numerical_columns=[*numeric, TARGET, PREDICTION],
            categorical_columns=categorical,
            regression=[Regression(target=TARGET, prediction=PREDICTION)],
        )
    else:
        definition = DataDefinition(
            numerical_columns=numeric,
            categorical_columns=[*categorical, PREDICTION],
            classification=[
                BinaryClassification(target=TARGET, prediction_labels=PREDICTION, pos_label=1)
            ],
        )
    return frames[0], frames[1], definition


def drift_report(
    columns: list[str],
    drift_share: float,
    task: Literal["classification", "regression"] = "classification",
) -> Report:
    """The evidently report the gate runs (tests included: each column's drift verdict)."""
    from evidently import Report  # evidently takes seconds to import
    from evidently.metrics import (
        MAE,
        RMSE,
        Accuracy,
        DriftedColumnsCount,
        F1Score,
        Precision,
        R2Score,
        Recall,
        ValueDrift,
    )

    quality = (
        [MAE(), RMSE(), R2Score()]
        if task == "regression"
        else [Accuracy(), Precision(), Recall(), F1Score()]
    )
    return Report(
        [
            DriftedColumnsCount(columns=columns, drift_share=drift_share),
            *(ValueDrift(column=c) for c in columns),
            ValueDrift(column=PREDICTION),
            *quality,
        ],
        include_tests=True,
    )


class DriftGate:
    """Judges data drift, prediction drift and classification quality against thresholds."""

    name = "drift"

    def __init__(self, config: DriftConfig) -> None:
        self.config = config

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DriftGate:
        """The gate configured by its ``gates.yaml`` parameters (validated)."""
        return cls(DriftConfig.model_validate(dict(params)))

    def judge(self, evaluation: ModelEvaluation) -> GateResult:
        config = self.config
        columns = list(config.columns or evaluation.features)
        try:
            reference, current, definition = drift_frames(evaluation, columns, config.task)
        except EvaluationError as exc:
            return failed(self.name, str(exc))
        from evidently import Dataset

        share = config.max_drift_share if config.max_drift_share is not None else 0.5
        snapshot = drift_report(columns, share, config.task).run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(reference, data_definition=definition),
        )
        report = json_ready(snapshot.dict())
        metrics, drifted = _read(report)
        try:
            reasons = self._check(metrics, drifted)
        except EvaluationError as exc:
            return failed(self.name, str(exc))
        passed = not reasons
        if passed:
            reasons.append(f"drift and {config.task} quality are within the thresholds")
        html = snapshot.get_html_str(as_iframe=False)
        evidence = {
            "config": config.model_dump(mode="json"),
            "reference_rows": len(reference),
            "current_rows": len(current),
            "drifted_columns": sorted(c for c in drifted if c != PREDICTION),
            "prediction_drift": PREDICTION in drifted,
            "report": report,
            # evidently's HTML carries random element ids: named here, stored beside the evidence
            "artifacts": [HTML_ARTIFACT],
        }
        return GateResult(
            self.name,
            GateStatus.PASS if passed else GateStatus.FAIL,
            metrics,
            evidence,
            tuple(reasons),
            {HTML_ARTIFACT: html},
        )

    def _check(self, metrics: Mapping[str, float], drifted: set[str]) -> list[str]:
        config = self.config
        reasons = []
        if config.max_drift_share is not None and metrics["drift_share"] > config.max_drift_share:
            reasons.append(
                f"{metrics['drift_share']:.4f} of the columns drifted "
                f"({', '.join(sorted(drifted - {PREDICTION}))}); at most {config.max_drift_share}"
            )
        if PREDICTION in drifted and not config.allow_prediction_drift:
            reasons.append("the model's decisions drifted from those on the training snapshot")
        for name, limit in (
            ("accuracy", config.min_accuracy),
            ("precision", config.min_precision),
            ("recall", config.min_recall),
            ("f1", config.min_f1),
            ("r2", config.min_r2),
        ):
            if limit is not None and _measured(metrics, name) < limit:
                reasons.append(f"{name} {metrics[name]:.4f} is below {limit}")
        for name, limit in (("mae", config.max_mae), ("rmse", config.max_rmse)):
            if limit is not None and _measured(metrics, name) > limit:
                reasons.append(f"{name} {metrics[name]:.4f} is above {limit}")
        return reasons


def _read(report: Mapping[str, Any]) -> tuple[dict[str, float], set[str]]:
    """The gate's metrics and the drifted columns, read from evidently's report dictionary."""
    metrics: dict[str, float] = {}
    for metric in report["metrics"]:
        kind = metric["config"]["type"].rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            metrics["drift_share"] = float(metric["value"]["share"])
            metrics["drifted_columns"] = float(metric["value"]["count"])
        elif kind == "ValueDrift" and metric["config"]["column"] == PREDICTION:
            metrics["prediction_drift_score"] = float(metric["value"])
        elif kind in _QUALITY:
            value = metric["value"]  # MAE is a mean with its standard deviation
            metrics[_QUALITY[kind]] = float(value["mean"] if isinstance(value, dict) else value)
    drifted = {
        test["metric_config"]["params"]["column"]
        for test in report["tests"]
        if test["id"] == "drift" and test["status"] == "FAIL"
    }
    return metrics, drifted


def _frame(evaluation: ModelEvaluation, columns: list[str]) -> pandas.DataFrame:
    """The compared columns with the true outcome and the model's decision, both 0/1."""
    frame = evaluation.current[columns].reset_index(drop=True)
    frame[TARGET] = evaluation.outcomes
    frame[PREDICTION] = evaluation.decisions
    return frame


def _measured(metrics: Mapping[str, float], name: str) -> float:
    """A quality metric the report holds for this task (a threshold of the other task is not).

    Raises:
        EvaluationError: the report has no such metric.
    """
    if name not in metrics:
        raise EvaluationError(f"{name} is not measured for this task; check the gate's task")
    return metrics[name]


def _regression_frame(evaluation: ModelEvaluation, columns: list[str]) -> pandas.DataFrame:
    """The compared columns with the true value and the model's prediction, both numbers.

    Raises:
        EvaluationError: labels or predictions that are missing, not numbers, or of another length.
    """
    evaluation.require_columns(evaluation.current, [evaluation.label], "evaluation")
    frame = evaluation.current[columns].reset_index(drop=True)
    try:
        target = evaluation.current[evaluation.label].to_numpy(dtype=np.float64)
        raw = (
            evaluation.predictions
            if evaluation.predictions is not None
            else evaluation.predict(evaluation.current)
        )
        predicted = np.asarray(raw, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"a regression needs numeric labels and predictions: {exc}") from None
    if len(predicted) != len(target):
        raise EvaluationError(
            f"{len(predicted)} predictions for {len(target)} labelled rows; "
            "labels and predictions must have the same length"
        )
    if len(target) == 0 or not (np.isfinite(target).all() and np.isfinite(predicted).all()):
        raise EvaluationError("a regression needs rows whose label and prediction are finite")
    frame[TARGET] = target
    frame[PREDICTION] = predicted
    return frame
