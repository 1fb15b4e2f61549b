"""Bias mitigation: a new candidate model whose decisions meet a fairness constraint.

:func:`refit_fair` is the mitigation a governed run registers: a plain scikit-learn Pipeline that
does not take the sensitive columns at all. They constrain the fit only: fairlearn's
``ExponentiatedGradient`` (a few iterations over a ``LogisticRegression`` on the same kind of
preprocessing as the parent) yields a set of predictors, and instead of its randomized mixture
the candidate is the single most accurate predictor whose disparity on the training snapshot is
within the bound (or, when none is, the least disparate one). Being one deterministic Pipeline of
scikit-learn types, it can be registered, explained by the linear explainer, and its decisions
cannot change when a sensitive attribute is flipped.

:func:`mitigate` post-processes a fitted classifier with fairlearn's ``ThresholdOptimizer``: one
(randomized) decision threshold per group of the sensitive features, chosen on the training
snapshot so that the constraint (``demographic_parity``, ``equalized_odds``, ...) holds while
accuracy is kept as high as possible. The candidate decides with a fixed seed, so its decisions
(and every gate's evidence about it) are the same on every run. It reads the sensitive columns
when it decides: the explainability gate's counterfactual test shows that, by design.

The result carries the fairness disparities of the original model and of the candidate on the
same evaluation data, computed by :func:`policies.gates.disparities`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import pandas
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from policies.gates.evaluation import EvaluationError, ModelEvaluation
from policies.gates.fairness import Disparity, disparities

Constraint = Literal[
    "demographic_parity",
    "equalized_odds",
    "true_positive_rate_parity",
    "false_positive_rate_parity",
]


RefitConstraint = Literal["demographic_parity", "equalized_odds"]
THRESHOLD_OPTIMIZER = "fairlearn.postprocessing.ThresholdOptimizer"
EXPONENTIATED_GRADIENT = "fairlearn.reductions.ExponentiatedGradient"


class MitigatedClassifier:
    """A fitted ``ThresholdOptimizer`` over a fitted classifier, deciding with a fixed seed."""

    def __init__(
        self,
        optimizer: Any,
        features: Sequence[str],
        sensitive_features: Sequence[str],
        classes: Sequence[Any],
        seed: int,
    ) -> None:
        self.optimizer = optimizer
        self.features = list(features)
        self.sensitive_features = list(sensitive_features)
        self.classes_ = np.asarray(classes)
        self.seed = seed

    def predict(self, frame: pandas.DataFrame) -> npt.NDArray[Any]:
        """One class per row; the group thresholds are drawn with the fixed seed."""
        decisions = self.optimizer.predict(
            frame[self.features],
            sensitive_features=frame[self.sensitive_features],
            random_state=self.seed,
        )
        return np.asarray(self.classes_[np.asarray(decisions, dtype=np.intp)])

    def predict_proba(self, frame: pandas.DataFrame) -> npt.NDArray[np.float64]:
        """The probability of each class under the randomized group thresholds."""
        # fairlearn exposes these probabilities only through _pmf_predict (fairlearn < 0.14).
        return np.asarray(
            self.optimizer._pmf_predict(
                frame[self.features], sensitive_features=frame[self.sensitive_features]
            ),
            dtype=np.float64,
        )


@dataclass(frozen=True, eq=False)
class Mitigation:
    """A mitigated candidate and the disparities before and after, on the same data."""

    candidate: ModelEvaluation
    method: str
    constraint: str
    before: tuple[Disparity, ...]
    after: tuple[Disparity, ...]
    fit: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """How the candidate was chosen, JSON-ready (empty for post-processing)."""

    def evidence(self) -> dict[str, Any]:
        """The method and the before/after disparities by sensitive feature name, JSON-ready."""
        return {
            "method": self.method,
            "constraint": self.constraint,
            "fit": dict(self.fit),
            "before": {d.name: _summary(d) for d in self.before},
            "after": {d.name: _summary(d) for d in self.after},
        }


def mitigate(
    evaluation: ModelEvaluation,
    sensitive_features: Sequence[str],
    constraint: Constraint = "demographic_parity",
    seed: int = 0,
    min_group_size: int = 1,
) -> Mitigation:
    """A candidate whose group thresholds meet ``constraint`` on the training snapshot.

    Args:
        evaluation: the original model, its training snapshot (``reference``, where the
            thresholds are fitted) and the evaluation data (where before and after are measured).
        sensitive_features: the columns whose groups (and their intersections) get thresholds.
        constraint: the fairness constraint ``ThresholdOptimizer`` enforces.
        seed: the seed of the candidate's randomized decisions.
        min_group_size: groups smaller than this do not enter the reported disparities.

    Raises:
        EvaluationError: no training snapshot, a missing column, or a model without
            ``predict_proba`` over classes whose second is the positive label.
    """
    from fairlearn.postprocessing import ThresholdOptimizer  # fairlearn loads lazily

    reference = evaluation.reference
    if reference is None:
        raise EvaluationError("mitigation fits its thresholds on the training snapshot")
    sensitive = list(sensitive_features)
    evaluation.require_columns(reference, [*evaluation.features, *sensitive], "reference")
    classes = list(getattr(evaluation.model, "classes_", []))
    if (
        not callable(getattr(evaluation.model, "predict_proba", None))
        or len(classes) != 2
        or classes[1] != evaluation.positive_label
    ):
        raise EvaluationError(
            "mitigation needs a binary classifier with predict_proba whose second class is the "
            f"positive label {evaluation.positive_label!r}"
        )
    fitted = dataclasses.replace(evaluation, current=reference, predictions=None)
    optimizer = ThresholdOptimizer(
        estimator=evaluation.model,
        constraints=constraint,
        prefit=True,
        predict_method="predict_proba",
    )
    optimizer.fit(
        reference[list(evaluation.features)],
        fitted.outcomes,
        sensitive_features=reference[sensitive],
    )
    model = MitigatedClassifier(optimizer, evaluation.features, sensitive, classes, seed)
    candidate = dataclasses.replace(
        evaluation,
        model=model,
        features=tuple(dict.fromkeys([*evaluation.features, *sensitive])),
        predictions=None,
    )
    return _compared(
        evaluation, candidate, THRESHOLD_OPTIMIZER, constraint, sensitive, {}, min_group_size
    )


def refit_fair(
    evaluation: ModelEvaluation,
    sensitive_features: Sequence[str],
    constraint: RefitConstraint = "demographic_parity",
    difference_bound: float = 0.01,
    max_iter: int = 15,
    min_group_size: int = 1,
    drop_features: Sequence[str] = (),
) -> Mitigation:
    """A Pipeline refit on the training snapshot under ``constraint``, without sensitive columns.

    Args:
        evaluation: the parent model, its training snapshot (``reference``, where the candidate
            is fitted) and the evaluation data (where before and after are measured).
        sensitive_features: the columns whose groups (their intersection, as fairlearn forms
            it) constrain the fit; the candidate does not take them.
        constraint: the fairlearn moment bounded during the fit.
        difference_bound: the bound on the moment, also ``ExponentiatedGradient``'s allowed
            violation; a predictor is within the bound when its training disparity is at most
            twice this (the bound plus the allowed violation).
        max_iter: ``ExponentiatedGradient``'s iterations (each fits one LogisticRegression).
        min_group_size: groups smaller than this do not enter the reported disparities.
        drop_features: further columns the candidate does not take (proxies, or sensitive
            columns a policy forbids that do not constrain the fit).

    Raises:
        EvaluationError: no training snapshot, a missing column, a constraint that is not
            offered, or no feature left once the sensitive ones are dropped.
    """
    from fairlearn.reductions import (  # fairlearn loads lazily
        DemographicParity,
        EqualizedOdds,
        ExponentiatedGradient,
    )

    if constraint not in get_args(RefitConstraint):
        raise EvaluationError(f"refit_fair offers {', '.join(get_args(RefitConstraint))}")
    reference = evaluation.reference
    if reference is None:
        raise EvaluationError("mitigation fits its candidate on the training snapshot")
    sensitive = list(sensitive_features)
    dropped = {*sensitive, *drop_features}
    kept = tuple(f for f in evaluation.features if f not in dropped)
    if not kept:
        raise EvaluationError("no feature is left once the sensitive ones are dropped")
    evaluation.require_columns(reference, [*evaluation.features, *sensitive], "reference")
    training = dataclasses.replace(evaluation, current=reference, predictions=None)
    outcomes = training.outcomes
    labels = reference[evaluation.label]
    negative = sorted(set(labels.dropna()) - {evaluation.positive_label}, key=str)[0]
    prepare = _preprocessing(reference[list(kept)]).fit(reference[list(kept)])
    inputs = _dense(prepare.transform(reference[list(kept)]))
    moment = (DemographicParity if constraint == "demographic_parity" else EqualizedOdds)(
        difference_bound=difference_bound
    )
    reduction = ExponentiatedGradient(
        LogisticRegression(max_iter=1000), moment, eps=difference_bound, max_iter=max_iter
    )
    reduction.fit(inputs, outcomes, sensitive_features=reference[sensitive])
    groups = {feature: training.groups(feature) for feature in sensitive}
    scored = []
    for predictor in reduction.predictors_:
        decisions = np.asarray(predictor.predict(inputs), dtype=np.int8)
        joint = disparities(outcomes, decisions, groups)[-1]
        gap = (
            joint.demographic_parity_difference
            if constraint == "demographic_parity"
            else joint.equalized_odds_difference
        )
        scored.append((predictor, gap, float((decisions == outcomes).mean())))
    within = [entry for entry in scored if entry[1] <= 2 * difference_bound]
    chosen, gap, accuracy = (
        max(within, key=lambda entry: entry[2])
        if within
        else min(scored, key=lambda entry: entry[1])
    )
    # The reduction fits on 0/1 outcomes; the candidate decides in the label's own values.
    chosen.classes_ = np.asarray([negative, evaluation.positive_label], dtype=object)
    model = Pipeline([("prepare", prepare), ("classify", chosen)])
    candidate = dataclasses.replace(evaluation, model=model, features=kept, predictions=None)
    fit = {
        "base_estimator": "sklearn.linear_model.LogisticRegression",
        "sensitive_features": sensitive,
        "difference_bound": difference_bound,
        "max_iter": max_iter,
        "predictors": len(scored),
        "within_bound": len(within),
        "training_disparity": gap,
        "training_accuracy": accuracy,
        "dropped_features": [f for f in evaluation.features if f in dropped],
    }
    return _compared(
        evaluation, candidate, EXPONENTIATED_GRADIENT, constraint, sensitive, fit, min_group_size
    )


def _compared(
    evaluation: ModelEvaluation,
    candidate: ModelEvaluation,
    method: str,
    constraint: str,
    sensitive: Sequence[str],
    fit: Mapping[str, Any],
    min_group_size: int,
) -> Mitigation:
    """The mitigation with both models' disparities on the same evaluation data."""
    groups = {feature: evaluation.groups(feature) for feature in sensitive}
    return Mitigation(
        candidate,
        method,
        constraint,
        disparities(evaluation.outcomes, evaluation.decisions, groups, min_group_size),
        disparities(candidate.outcomes, candidate.decisions, groups, min_group_size),
        fit,
    )


def _preprocessing(frame: pandas.DataFrame) -> ColumnTransformer:
    """Scaled numbers and one-hot categories (missing ones spelled ``unknown``)."""
    numeric = [c for c in frame.columns if pandas.api.types.is_numeric_dtype(frame[c])]
    categorical = [c for c in frame.columns if c not in numeric]
    return ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="unknown"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
        ]
    )


def _dense(matrix: Any) -> npt.NDArray[np.float64]:
    """fairlearn's reductions validate their inputs as dense arrays."""
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, np.float64)


def _summary(disparity: Disparity) -> dict[str, Any]:
    return {
        "demographic_parity_difference": disparity.demographic_parity_difference,
        "demographic_parity_ratio": disparity.demographic_parity_ratio,
        "equalized_odds_difference": disparity.equalized_odds_difference,
        "selection_rates": {
            "/".join(map(str, g.group)): g.selection_rate for g in disparity.groups
        },
        "accuracy": sum(g.accuracy * g.count for g in disparity.groups)
        / sum(g.count for g in disparity.groups),
    }
