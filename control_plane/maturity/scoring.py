"""Scoring a maturity rubric: which levels the store's evidence earns, and what the next needs.

A level is reached when its criteria and those of every level below hold. A criterion holds
only when its metric has a value that meets the threshold; a metric without a value (nothing to
measure, or a source this store does not hold) never meets one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from control_plane.maturity.metrics import METRICS, Measurement
from policies import PolicyBundle
from policies.sections.maturity import Criterion, MaturityLevel

RUBRICS = ("ai_capability", "data_governance")
NIST_FUNCTIONS = ("govern", "map", "measure", "manage")
EU_AI_ACT_ARTICLES = (9, 10, 11, 12, 13, 14, 15)


@dataclass(frozen=True)
class CriterionScore:
    """A criterion, the measurement of its metric, and whether it holds."""

    criterion: Criterion
    measurement: Measurement

    @property
    def met(self) -> bool:
        value, rule = self.measurement.value, self.criterion
        if value is None:
            return False
        if rule.at_least is not None:
            return value >= rule.at_least
        assert rule.at_most is not None
        return value <= rule.at_most

    @property
    def requirement(self) -> str:
        """The threshold in words (``>= 0.9``)."""
        rule = self.criterion
        return f">= {rule.at_least:g}" if rule.at_least is not None else f"<= {rule.at_most:g}"

    def to_json(self) -> dict[str, Any]:
        rule = self.criterion
        return {
            "name": rule.name,
            "metric": rule.metric,
            "dimension": rule.dimension,
            "requirement": self.requirement,
            "value": self.measurement.value,
            "met": self.met,
            "evidence": self.measurement.evidence,
            "nist": rule.nist,
            "eu_ai_act": [f"Art. {article}" for article in rule.eu_ai_act],
        }


@dataclass(frozen=True)
class RubricScore:
    """One rubric's levels, scored."""

    rubric: str
    levels: Sequence[tuple[str, Sequence[CriterionScore]]]

    @property
    def reached(self) -> int:
        """How many levels, from the first, are reached."""
        count = 0
        for _, scores in self.levels:
            if not all(score.met for score in scores):
                break
            count += 1
        return count

    @property
    def level(self) -> str | None:
        """The highest level reached; None when not even the first is."""
        return self.levels[self.reached - 1][0] if self.reached else None

    def dimension_levels(self) -> dict[str, int]:
        """Per dimension, how many levels its own criteria earn (the chart's bars)."""
        dimensions = {s.criterion.dimension for _, scores in self.levels for s in scores}
        result: dict[str, int] = {}
        for dimension in sorted(d for d in dimensions if d is not None):
            count = 0
            for _, scores in self.levels:
                if not all(s.met for s in scores if s.criterion.dimension == dimension):
                    break
                count += 1
            result[dimension] = count
        return result

    def coverage(self, key: str, values: Sequence[Any]) -> dict[str, dict[str, int]]:
        """Criteria met and total per NIST function (``key="nist"``) or EU AI Act article."""
        scores = [s for _, level in self.levels for s in level]
        result = {}
        for value in values:
            mapped = [s for s in scores if value in _mapping(s.criterion, key)]
            name = str(value) if key == "nist" else f"Art. {value}"
            result[name] = {"met": sum(s.met for s in mapped), "total": len(mapped)}
        return result

    def to_json(self) -> dict[str, Any]:
        reached = self.reached
        following = self.levels[reached] if reached < len(self.levels) else None
        return {
            "level": self.level,
            "reached": reached,
            "of": len(self.levels),
            "levels": [
                {
                    "name": name,
                    "reached": index < reached,
                    "criteria": [score.to_json() for score in scores],
                }
                for index, (name, scores) in enumerate(self.levels)
            ],
            "next_level": following[0] if following else None,
            "gaps": [_gap(score) for score in (following[1] if following else ()) if not score.met],
            "dimensions": self.dimension_levels(),
            "nist": self.coverage("nist", NIST_FUNCTIONS),
            "eu_ai_act": self.coverage("eu_ai_act", EU_AI_ACT_ARTICLES),
        }


def _mapping(criterion: Criterion, key: str) -> tuple[Any, ...]:
    return (criterion.nist,) if key == "nist" else criterion.eu_ai_act


def _gap(score: CriterionScore) -> dict[str, Any]:
    """What the next level misses, concretely."""
    rule, value = score.criterion, score.measurement.value
    shown = "no value" if value is None else f"{value:g}"
    return {
        "criterion": rule.name,
        "metric": rule.metric,
        "needs": f"{rule.metric} {score.requirement}, is {shown}",
        "evidence": score.measurement.evidence,
    }


def score_rubric(
    session: Session, bundle: PolicyBundle, rubric: str, measured: dict[str, Measurement]
) -> RubricScore:
    """Score one rubric of ``bundle``; ``measured`` caches metrics shared by rubrics."""
    levels: Sequence[MaturityLevel] = getattr(bundle.maturity, rubric).levels
    scored = []
    for level in levels:
        scores = []
        for criterion in level.criteria:
            if criterion.metric not in measured:
                measured[criterion.metric] = _measure(session, bundle, criterion.metric)
            scores.append(CriterionScore(criterion, measured[criterion.metric]))
        scored.append((level.name, scores))
    return RubricScore(rubric, scored)


def _measure(session: Session, bundle: PolicyBundle, metric: str) -> Measurement:
    compute = METRICS.get(metric)
    if compute is None:
        return Measurement(None, f"govplane computes no metric named {metric!r}")
    return compute(session, bundle)


def score(session: Session, bundle: PolicyBundle, rubrics: Sequence[str]) -> Mapping[str, Any]:
    """The named rubrics of ``bundle`` scored on the store, as the API answers them."""
    measured: dict[str, Measurement] = {}
    return {
        "bundle_version": bundle.version,
        **{name: score_rubric(session, bundle, name, measured).to_json() for name in rubrics},
    }
