"""``maturity.yaml``: the rubrics that turn evidence from the store into maturity levels.

::

    ai_capability:
      dimensions: [strategy, data, algorithms, systems, operations]
      levels:
        - name: initial
        - name: single_breakthrough
          criteria:
            - name: first_model_governed
              dimension: algorithms
              metric: models_registered       # a metric the control plane computes
              at_least: 1                     # or at_most: for metrics that must stay low
              nist: map                       # NIST AI RMF function: govern, map, measure, manage
              eu_ai_act: [9, 11]              # EU AI Act articles (9-15) it evidences
        ...
    data_governance:
      levels:
        - name: passive
        ...

AI capability has five levels (initial, single_breakthrough, local_optimization, scale,
intelligent) over five dimensions; each of its criteria names the dimension it evidences. Data
governance has four stages (passive, active, quantified, intelligent). A level is reached when
its criteria and those of every level below it hold. Only the structure is validated here;
scoring is the control plane's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Final, Literal, get_args

from pydantic import AfterValidator, StrictFloat, model_validator

from policies.documents import Document

AI_CAPABILITY_LEVELS: Final = (
    "initial",
    "single_breakthrough",
    "local_optimization",
    "scale",
    "intelligent",
)
DATA_GOVERNANCE_STAGES: Final = ("passive", "active", "quantified", "intelligent")

Dimension = Literal["strategy", "data", "algorithms", "systems", "operations"]
NistFunction = Literal["govern", "map", "measure", "manage"]
# The EU AI Act's obligations for high-risk systems: Art. 9 risk management, 10 data governance,
# 11 technical documentation, 12 record-keeping, 13 transparency, 14 human oversight, 15
# accuracy, robustness and cybersecurity.
EuAiActArticle = Literal[9, 10, 11, 12, 13, 14, 15]
AI_CAPABILITY_DIMENSIONS: Final = get_args(Dimension)

_IDENTIFIER: Final = re.compile(r"[a-z][a-z0-9_]*")


def _identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a name (lower case letters, digits, _)")
    return name


Identifier = Annotated[str, AfterValidator(_identifier)]


class Criterion(Document):
    """A piece of evidence: a metric and the threshold it must reach."""

    name: Identifier
    metric: Identifier
    at_least: StrictFloat | None = None
    at_most: StrictFloat | None = None
    dimension: Dimension | None = None
    nist: NistFunction
    eu_ai_act: tuple[EuAiActArticle, ...] = ()
    description: str = ""

    @model_validator(mode="after")
    def _one_threshold(self) -> Criterion:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one threshold: at_least or at_most")
        return self


class MaturityLevel(Document):
    """A level and the criteria that earn it."""

    name: Identifier
    criteria: tuple[Criterion, ...] = ()


def _check_levels(levels: tuple[MaturityLevel, ...], expected: tuple[str, ...]) -> None:
    names = tuple(level.name for level in levels)
    if names != expected:
        raise ValueError(f"the levels must be, in order: {', '.join(expected)}")
    _check_unique(criterion.name for level in levels for criterion in level.criteria)


def _check_unique(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"criterion {name!r} is defined twice")
        seen.add(name)


class AiCapabilityRubric(Document):
    """AI capability maturity: five levels over five dimensions."""

    dimensions: tuple[Dimension, ...]
    levels: tuple[MaturityLevel, ...]

    @model_validator(mode="after")
    def _complete(self) -> AiCapabilityRubric:
        if sorted(self.dimensions) != sorted(AI_CAPABILITY_DIMENSIONS):
            raise ValueError(f"the dimensions must be {', '.join(AI_CAPABILITY_DIMENSIONS)}")
        _check_levels(self.levels, AI_CAPABILITY_LEVELS)
        for level in self.levels:
            for criterion in level.criteria:
                if criterion.dimension is None:
                    raise ValueError(f"criterion {criterion.name!r} names no dimension")
        return self


class DataGovernanceRubric(Document):
    """Data governance maturity: four stages."""

    levels: tuple[MaturityLevel, ...]

    @model_validator(mode="after")
    def _complete(self) -> DataGovernanceRubric:
        _check_levels(self.levels, DATA_GOVERNANCE_STAGES)
        for level in self.levels:
            for criterion in level.criteria:
                if criterion.dimension is not None:
                    raise ValueError(
                        f"criterion {criterion.name!r}: data governance has no dimensions"
                    )
        return self


class MaturitySection(Document):
    """The parsed ``maturity.yaml``."""

    ai_capability: AiCapabilityRubric
    data_governance: DataGovernanceRubric
