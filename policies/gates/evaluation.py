"""What the model-risk gates judge: a fitted model and the data it is judged on.

The ``evaluate`` run loads a model version and its datasets, builds one :class:`ModelEvaluation`
and hands it to every model-risk gate its risk tier requires (:func:`evaluate_model`). Gates
never see ORM rows: only data frames, a fitted model and column names. Anything that makes the
evaluation impossible (a missing column, NaNs, a single-class label, predictions of the wrong
length) is an :class:`EvaluationError`, which a gate turns into a FAIL with the reason.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas

from policies.gates.base import GateResult, GateStatus

DecisionArray = npt.NDArray[np.int8]
"""Binary decisions or outcomes: 1 for the positive label, 0 otherwise."""


class EvaluationError(ValueError):
    """The evaluation cannot be carried out on these inputs; the gate fails with this reason."""


class Classifier(Protocol):
    """A fitted model that decides from a frame of its feature columns."""

    def predict(self, frame: pandas.DataFrame) -> Any:
        """One decision per row."""
        ...


@dataclass(frozen=True, eq=False)
class ModelEvaluation:
    """A fitted binary classifier and the data it is judged on.

    Attributes:
        model: the fitted model; it decides from ``current[list(features)]``.
        features: the columns the model takes.
        label: the outcome column of ``current`` (and of ``reference``).
        positive_label: the label value that is the favourable outcome (``">50K"``, ``1``).
        current: the evaluation data (a validation or current snapshot): features, label and
            every sensitive column a gate names.
        reference: the training snapshot, the baseline of drift and of explanations.
        predictions: the model's decisions on ``current`` when they were scored elsewhere;
            by default the gates ask the model.
    """

    model: Classifier
    features: tuple[str, ...]
    label: str
    positive_label: Any
    current: pandas.DataFrame
    reference: pandas.DataFrame | None = None
    predictions: Sequence[Any] | npt.NDArray[Any] | None = None

    def require_columns(self, frame: pandas.DataFrame, columns: Sequence[str], what: str) -> None:
        """Raise unless ``frame`` has every column.

        Raises:
            EvaluationError: a column is missing.
        """
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise EvaluationError(f"the {what} data has no column {', '.join(missing)}")

    @functools.cached_property
    def outcomes(self) -> DecisionArray:
        """The true outcomes of ``current`` as 0/1.

        Raises:
            EvaluationError: no label column, missing labels, or a single class.
        """
        self.require_columns(self.current, [self.label], "evaluation")
        labels = self.current[self.label]
        if len(labels) == 0:
            raise EvaluationError("the evaluation data has no rows")
        if labels.isna().any():
            raise EvaluationError(
                f"the label {self.label!r} has {int(labels.isna().sum())} missing value(s)"
            )
        outcomes: DecisionArray = np.asarray(labels.to_numpy() == self.positive_label, np.int8)
        positives = int(outcomes.sum())
        if positives in (0, len(outcomes)):
            raise EvaluationError(
                f"the label {self.label!r} has a single class; a binary evaluation needs both "
                f"{self.positive_label!r} and another value"
            )
        return outcomes

    @functools.cached_property
    def decisions(self) -> DecisionArray:
        """The model's decisions on ``current`` as 0/1, one per row.

        Raises:
            EvaluationError: predictions of the wrong length or with missing values, or a
                model that cannot predict these features.
        """
        raw = self.predictions if self.predictions is not None else self.predict(self.current)
        decided = pandas.Series(np.asarray(raw).ravel())
        if len(decided) != len(self.current):
            raise EvaluationError(
                f"{len(decided)} predictions for {len(self.current)} labelled rows; "
                "labels and predictions must have the same length"
            )
        if decided.isna().any():
            raise EvaluationError(f"{int(decided.isna().sum())} prediction(s) are missing")
        return np.asarray(decided.to_numpy() == self.positive_label, np.int8)

    def predict(self, frame: pandas.DataFrame) -> Any:
        """The model's raw decisions on ``frame``.

        Raises:
            EvaluationError: a feature is missing or holds NaNs, or the model cannot predict.
        """
        self.require_columns(frame, self.features, "evaluation")
        inputs = frame[list(self.features)]
        try:
            return self.model.predict(inputs)
        except Exception as exc:
            raise EvaluationError(
                f"the model cannot predict: {type(exc).__name__}: {exc}"
            ) from None

    def groups(self, column: str) -> pandas.Series:
        """The sensitive column ``column`` of ``current``, checked to be complete.

        Raises:
            EvaluationError: the column is missing or has missing values.
        """
        self.require_columns(self.current, [column], "evaluation")
        values = self.current[column]
        if values.isna().any():
            raise EvaluationError(
                f"the sensitive column {column!r} has {int(values.isna().sum())} missing "
                "value(s); group membership must be known for every row"
            )
        return values


class ModelRiskGate(Protocol):
    """A gate that judges a model on data, configured per risk tier in ``gates.yaml``."""

    @property
    def name(self) -> str:
        """The name ``gates.yaml`` uses for the gate."""
        ...

    def judge(self, evaluation: ModelEvaluation) -> GateResult:
        """The verdict on one model; never raises for bad inputs, it fails instead."""
        ...


def failed(gate: str, reason: str) -> GateResult:
    """The FAIL result of a gate that could not evaluate its inputs."""
    return GateResult(gate, GateStatus.FAIL, {}, {}, (reason,))


def finite_or_none(value: float) -> float | None:
    """``value``, or None when it is NaN or infinite (JSON evidence has no NaN)."""
    return value if math.isfinite(value) else None


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars turned into Python ones and non-finite floats into None."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return finite_or_none(value)
    return value
