"""Bias mitigation: a new candidate model whose decisions meet a fairness constraint.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas

from policies.gates.evaluation import EvaluationError, ModelEvaluation
from policies.gates.fairness import Disparity, disparities

Constraint = Literal[
    "demographic_parity",
    "equalized_odds",
    "true_positive_rate_parity",
    "false_positive_rate_parity",
]


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
    constraint: str
    before: tuple[Disparity, ...]
    after: tuple[Disparity, ...]

    def evidence(self) -> dict[str, Any]:
        """Before/after disparities of each sensitive feature, JSON-ready."""
        return {
            "method": "fairlearn.postprocessing.ThresholdOptimizer",
            "constraint": self.constraint,
            "features": [
                {
                    "features": list(old.features),
                    "before": _summary(old),
                    "after": _summary(new),
                }
                for old, new in zip(self.before, self.after, strict=True)
            ],
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
    groups = {feature: evaluation.groups(feature) for feature in sensitive}
    return Mitigation(
        candidate,
        constraint,
        disparities(evaluation.outcomes, evaluation.decisions, groups, min_group_size),
        disparities(candidate.outcomes, candidate.decisions, groups, min_group_size),
    )


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
