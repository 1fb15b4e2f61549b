"""The ``drift`` gate: data and prediction drift from the training snapshot, and quality.

One evidently report compares the evaluation data with the training snapshot: the share of
drifted columns (``DriftedColumnsCount``), each column's drift (``ValueDrift``, evidently picks
the test by column type and size), the drift of the model's decisions, and the classification
quality of those decisions on the evaluation labels (accuracy, precision, recall, F1). The
report's JSON is the evidence (evidently's metric ids are content fingerprints, so it is the
same for the same inputs); its HTML is kept as the artifact ``drift_report.html``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

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


def drift_frames(
    evaluation: ModelEvaluation, columns: list[str]
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
    frames = [
        _frame(dataclasses.replace(evaluation, current=reference, predictions=None), columns),
        _frame(evaluation, columns),
    ]
    from evidently import BinaryClassification, DataDefinition

    numeric = [
        c
        for c in columns
        if pandas.api.types.is_numeric_dtype(reference[c])
        and not pandas.api.types.is_bool_dtype(reference[c])
    ]
    definition = DataDefinition(
        numerical_columns=numeric,
        categorical_columns=[c for c in columns if c not in numeric] + [PREDICTION],
        classification=[
            BinaryClassification(target=TARGET, prediction_labels=PREDICTION, pos_label=1)
        ],
    )
    return frames[0], frames[1], definition


def drift_report(columns: list[str], drift_share: float) -> Report:
    """The evidently report the gate runs (tests included: each column's drift verdict)."""
    from evidently import Report  # evidently takes seconds to import
    from evidently.metrics import (
        Accuracy,
        DriftedColumnsCount,
        F1Score,
        Precision,
        Recall,
        ValueDrift,
    )

    return Report(
        [
            DriftedColumnsCount(columns=columns, drift_share=drift_share),
            *(ValueDrift(column=c) for c in columns),
            ValueDrift(column=PREDICTION),
            Accuracy(),
            Precision(),
            Recall(),
            F1Score(),
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
            reference, current, definition = drift_frames(evaluation, columns)
        except EvaluationError as exc:
            return failed(self.name, str(exc))
        from evidently import Dataset

        share = config.max_drift_share if config.max_drift_share is not None else 0.5
        snapshot = drift_report(columns, share).run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(reference, data_definition=definition),
        )
        report = json_ready(snapshot.dict())
        metrics, drifted = _read(report)
        reasons = self._check(metrics, drifted)
        passed = not reasons
        if passed:
            reasons.append("drift and classification quality are within the thresholds")
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
        ):
            if limit is not None and metrics[name] < limit:
                reasons.append(f"{name} {metrics[name]:.4f} is below {limit}")
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
            metrics[_QUALITY[kind]] = float(metric["value"])
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
