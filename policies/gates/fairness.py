"""The ``fairness`` gate: group metrics and disparities by sensitive feature, against thresholds.

For each sensitive feature and each intersection of them (``sex``, ``race``, ``sex & race``) the
gate reports, per group, the count, selection rate, true and false positive rates and accuracy,
with fairlearn's ``MetricFrame`` semantics (a rate whose denominator is empty is 0, as
scikit-learn's normalized confusion matrix makes it), and the demographic parity difference and
ratio and the equalized odds difference (worst case of the TPR and FPR differences) between
groups, as fairlearn's functions of the same names compute them.

Everything is derived from one confusion count per group (``numpy.bincount`` over group codes),
so the gate is a few passes over the data instead of a pandas ``groupby().apply`` per metric;
tests check it equals fairlearn to 1e-9. Groups smaller than ``min_group_size`` are reported
with their metrics and named in the reasons, but do not enter the disparities the thresholds
judge; a feature with fewer than two groups of that size cannot be judged and fails.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas
from pydantic import Field, model_validator

from policies.documents import Document
from policies.gates.base import GateResult, GateStatus
from policies.gates.evaluation import (
    DecisionArray,
    EvaluationError,
    ModelEvaluation,
    failed,
    json_ready,
)

Rate = Field(default=None, ge=0.0, le=1.0)


class FairnessConfig(Document):
    """The gate's thresholds for one risk tier in ``gates.yaml``."""

    sensitive_features: tuple[str, ...] = Field(min_length=1, max_length=4)
    """Columns of the evaluation data whose groups are compared (intersections included)."""
    max_demographic_parity_difference: float | None = Rate
    min_demographic_parity_ratio: float | None = Rate
    max_equalized_odds_difference: float | None = Rate
    min_group_size: int = Field(default=30, ge=1)
    """Smaller groups are reported but do not enter the judged disparities."""
    judge_intersections: bool = False
    """Whether the thresholds also apply to intersections (they are always reported)."""

    @model_validator(mode="after")
    def _has_threshold(self) -> FairnessConfig:
        if len(set(self.sensitive_features)) != len(self.sensitive_features):
            raise ValueError("sensitive_features lists a column twice")
        if (
            self.max_demographic_parity_difference is None
            and self.min_demographic_parity_ratio is None
            and self.max_equalized_odds_difference is None
        ):
            raise ValueError("a fairness gate needs at least one threshold")
        return self


@dataclass(frozen=True)
class GroupMetrics:
    """One group's confusion counts and rates (``MetricFrame.by_group`` semantics)."""

    group: tuple[Any, ...]
    count: int
    true_negatives: int
    false_positives: int
    false_negatives: int
    true_positives: int

    @property
    def selection_rate(self) -> float:
        return (self.false_positives + self.true_positives) / self.count

    @property
    def true_positive_rate(self) -> float:
        return _rate(self.true_positives, self.true_positives + self.false_negatives)

    @property
    def false_positive_rate(self) -> float:
        return _rate(self.false_positives, self.false_positives + self.true_negatives)

    @property
    def accuracy(self) -> float:
        return (self.true_positives + self.true_negatives) / self.count

    def evidence(self, features: Sequence[str], min_group_size: int) -> dict[str, Any]:
        return {
            "group": dict(zip(features, self.group, strict=True)),
            "count": self.count,
            "positives": self.true_positives + self.false_negatives,
            "selection_rate": self.selection_rate,
            "true_positive_rate": self.true_positive_rate,
            "false_positive_rate": self.false_positive_rate,
            "accuracy": self.accuracy,
            "below_min_size": self.count < min_group_size,
        }


@dataclass(frozen=True)
class Disparity:
    """The groups of one sensitive feature (or intersection) and the gaps between them."""

    features: tuple[str, ...]
    groups: tuple[GroupMetrics, ...]
    """Every non-empty group, in sorted order of its values."""
    judged: tuple[GroupMetrics, ...]
    """The groups the disparities are computed over (those of at least the minimum size)."""

    @property
    def name(self) -> str:
        return " & ".join(self.features)

    @property
    def demographic_parity_difference(self) -> float:
        return _spread([g.selection_rate for g in self.judged])

    @property
    def demographic_parity_ratio(self) -> float:
        rates = [g.selection_rate for g in self.judged]
        if not rates or max(rates) == 0:
            return float("nan")
        return min(rates) / max(rates)

    @property
    def equalized_odds_difference(self) -> float:
        return max(
            _spread([g.true_positive_rate for g in self.judged]),
            _spread([g.false_positive_rate for g in self.judged]),
        )


def disparities(
    outcomes: DecisionArray,
    decisions: DecisionArray,
    sensitive: Mapping[str, pandas.Series],
    min_group_size: int = 1,
) -> tuple[Disparity, ...]:
    """The disparities of every sensitive feature and every intersection of them.

    Args:
        outcomes: true outcomes, 0/1.
        decisions: the model's decisions, 0/1, aligned with ``outcomes``.
        sensitive: each sensitive column by name, aligned with ``outcomes``, without NaNs.
        min_group_size: groups smaller than this are kept out of the disparities.

    Returns:
        One :class:`Disparity` per non-empty combination of the features, single features
        first, in the order given.
    """
    cells = outcomes.astype(np.int64) * 2 + decisions.astype(np.int64)
    encoded = {name: pandas.factorize(values, sort=True) for name, values in sensitive.items()}
    result = []
    for size in range(1, len(sensitive) + 1):
        for features in itertools.combinations(sensitive, size):
            codes, levels = _combine([encoded[f] for f in features])
            counts = np.bincount(codes * 4 + cells, minlength=len(levels) * 4).reshape(-1, 4)
            groups = tuple(
                GroupMetrics(levels[index], int(row.sum()), *(int(c) for c in row))
                for index, row in enumerate(counts)
                if row.sum() > 0
            )
            judged = tuple(g for g in groups if g.count >= min_group_size)
            result.append(Disparity(features, groups, judged))
    return tuple(result)


class FairnessGate:
    """Judges group disparities of a model's decisions against one risk tier's thresholds."""

    name = "fairness"

    def __init__(self, config: FairnessConfig) -> None:
        self.config = config

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FairnessGate:
        """The gate configured by its ``gates.yaml`` parameters (validated)."""
        return cls(FairnessConfig.model_validate(dict(params)))

    def judge(self, evaluation: ModelEvaluation) -> GateResult:
        config = self.config
        try:
            sensitive = {f: evaluation.groups(f) for f in config.sensitive_features}
            found = disparities(
                evaluation.outcomes, evaluation.decisions, sensitive, config.min_group_size
            )
        except EvaluationError as exc:
            return failed(self.name, str(exc))
        metrics: dict[str, float] = {}
        reasons: list[str] = []
        passed = True
        for disparity in found:
            judged = len(disparity.features) == 1 or config.judge_intersections
            small = [g for g in disparity.groups if g.count < config.min_group_size]
            if small:
                reasons.append(
                    f"{disparity.name}: {len(small)} group(s) below {config.min_group_size} rows "
                    f"reported but not judged: {', '.join(_label(g) for g in small)}"
                )
            if len(disparity.judged) < 2:
                if judged:
                    passed = False
                    reasons.append(
                        f"{disparity.name}: fewer than two groups of at least "
                        f"{config.min_group_size} rows; disparities cannot be judged"
                    )
                continue
            for metric, value, limit, is_max in self._checks(disparity):
                metrics[f"{metric}[{disparity.name}]"] = value
                if not judged or limit is None:
                    continue
                ok = value <= limit if is_max else value >= limit
                if not np.isfinite(value) or not ok:
                    passed = False
                    bound = "at most" if is_max else "at least"
                    reasons.append(
                        f"{disparity.name}: {metric} {value:.4f} must be {bound} {limit}"
                    )
        if passed:
            reasons.insert(0, "every judged disparity is within the thresholds")
        evidence = {
            "thresholds": config.model_dump(mode="json"),
            "rows": len(evaluation.outcomes),
            "features": [self._evidence(d) for d in found],
        }
        return GateResult(
            self.name,
            GateStatus.PASS if passed else GateStatus.FAIL,
            {k: v for k, v in metrics.items() if np.isfinite(v)},
            json_ready(evidence),
            tuple(reasons),
        )

    def _checks(self, disparity: Disparity) -> list[tuple[str, float, float | None, bool]]:
        config = self.config
        return [
            (
                "demographic_parity_difference",
                disparity.demographic_parity_difference,
                config.max_demographic_parity_difference,
                True,
            ),
            (
                "demographic_parity_ratio",
                disparity.demographic_parity_ratio,
                config.min_demographic_parity_ratio,
                False,
            ),
            (
                "equalized_odds_difference",
                disparity.equalized_odds_difference,
                config.max_equalized_odds_difference,
                True,
            ),
        ]

    def _evidence(self, disparity: Disparity) -> dict[str, Any]:
        size = self.config.min_group_size
        return {
            "features": list(disparity.features),
            "groups": [g.evidence(disparity.features, size) for g in disparity.groups],
            "demographic_parity_difference": disparity.demographic_parity_difference,
            "demographic_parity_ratio": disparity.demographic_parity_ratio,
            "equalized_odds_difference": disparity.equalized_odds_difference,
        }


def _rate(hits: int, total: int) -> float:
    """``hits / total``, 0 when ``total`` is 0 (scikit-learn's normalized confusion matrix)."""
    return hits / total if total else 0.0


def _spread(values: Sequence[float]) -> float:
    return max(values) - min(values) if values else float("nan")


def _combine(
    encoded: Sequence[tuple[npt.NDArray[np.intp], Any]],
) -> tuple[npt.NDArray[np.int64], list[tuple[Any, ...]]]:
    """One code per row for the intersection of features, and the value tuple of each code."""
    codes = np.zeros(len(encoded[0][0]), dtype=np.int64)
    levels: list[tuple[Any, ...]] = [()]
    for feature_codes, uniques in encoded:
        codes = codes * len(uniques) + feature_codes
        levels = [(*level, value) for level in levels for value in uniques]
    return codes, levels


def _label(group: GroupMetrics) -> str:
    return f"{'/'.join(map(str, group.group))} (n={group.count})"
