"""``gates.yaml``: which gates each run kind needs, in order, and when.

::

    runs:
      train:
        - gate: privacy_mode
      federated_train:
        - gate: privacy_mode
          params: {default_mode: federated}
      promote:
        - gate: approval
          when: {risk_tier: [medium, high]}
    evaluate:
      high:
        - gate: fairness
          params: {sensitive_features: [sex, race], max_demographic_parity_difference: 0.1}
    ingest:
      quality:                       # the data-quality gate of every ingest
        max_missing_share: 0.1       # per column
        max_duplicate_share: 0.01    # rows repeating an earlier row
        max_out_of_range_share: 0.0  # per column with a range
        ranges:
          age: {min: 0, max: 120}
        types:                       # the type family each column must have
          age: integer

``runs`` maps a run kind (ingest, train, evaluate, promote, deploy, federated_train,
policy_change, export) to its gates; a kind that is not listed needs none. ``when`` restricts an
entry to runs whose attributes (``risk_tier``, ``classification``, ``target_stage``, ...) have
one of the listed values; a run without the attribute does not match. ``params`` configure the
gate and are validated by the gate's own config, so an unknown gate or a bad parameter is refused
when the bundle loads.

``evaluate`` maps a risk tier to the model-risk gates (``fairness``, ``explainability``,
``drift``) an ``evaluate`` run judges a model of that tier with, in order, with their thresholds;
see :func:`policies.gates.model_risk.evaluate_model`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from policies.documents import Document
from policies.gates.base import GateSpec
from policies.gates.model_risk import build_model_risk_gate
from policies.gates.registry import build_gate
from policies.vocabulary import CLASSIFICATIONS, EXECUTION_MODES, RISK_TIERS, RiskTier, RunKind

_ATTRIBUTE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_VOCABULARIES: Final[Mapping[str, tuple[str, ...]]] = {
    "risk_tier": RISK_TIERS,
    "classification": CLASSIFICATIONS,
    "privacy_mode": EXECUTION_MODES,
}


def _scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"{value!r} is not a string, number or boolean")
    return value


WhenValue = Annotated[Any, AfterValidator(_scalar)]


class GateEntry(Document):
    """One gate a run kind needs: its name, when it applies, and its parameters."""

    gate: str
    when: dict[str, Annotated[tuple[WhenValue, ...], Field(min_length=1)]] = {}
    params: dict[str, Any] = {}

    @field_validator("when")
    @classmethod
    def _known_values(cls, when: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
        for attribute, values in when.items():
            if not _ATTRIBUTE.fullmatch(attribute):
                raise ValueError(f"{attribute!r} is not an attribute name")
            known = _VOCABULARIES.get(attribute)
            unknown = [value for value in values if known is not None and value not in known]
            if unknown:
                raise ValueError(
                    f"unknown {attribute} {', '.join(map(repr, unknown))}; "
                    f"known: {', '.join(known or ())}"
                )
        return when

    @model_validator(mode="after")
    def _buildable(self) -> GateEntry:
        build_gate(GateSpec(self.gate, self.params))
        return self

    def applies_to(self, attributes: Mapping[str, Any]) -> bool:
        """Whether every ``when`` attribute of a run has one of the listed values."""
        return all(
            name in attributes and attributes[name] in values for name, values in self.when.items()
        )


class ModelRiskEntry(Document):
    """One model-risk gate a risk tier requires, with its thresholds."""

    gate: str
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _buildable(self) -> ModelRiskEntry:
        build_model_risk_gate(self.gate, self.params)
        return self


class ValueRange(Document):
    """The closed interval a numeric column's values must lie in."""

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> ValueRange:
        if self.min > self.max:
            raise ValueError("min is greater than max")
        return self


TypeFamily = Literal["integer", "floating", "numeric", "string", "boolean", "temporal"]


class QualityThresholds(Document):
    """The thresholds of the data-quality gate (shares are fractions of the rows)."""

    max_missing_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    max_duplicate_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    max_out_of_range_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    ranges: dict[str, ValueRange] = {}
    types: dict[str, TypeFamily] = {}


class IngestSection(Document):
    """What every ingest must pass before its data is written."""

    quality: QualityThresholds = QualityThresholds()


class GatesSection(Document):
    """The parsed ``gates.yaml``."""

    runs: dict[RunKind, tuple[GateEntry, ...]]
    evaluate: dict[RiskTier, tuple[ModelRiskEntry, ...]] = {}
    ingest: IngestSection = IngestSection()
