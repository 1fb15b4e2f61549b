"""``privacy.yaml``: per data classification, how runs may touch the data, and what is hidden.

::

    classifications:
      confidential:
        allowed_modes: [dp, federated, he]   # or required_mode: federated (the only mode)
        dp:                                  # required when dp is allowed
          max_epsilon_per_run: 3.0
          total_epsilon: 10.0                # the dataset's whole budget
          delta: 1.0e-6
        pseudonymize: [customer_id, email]   # columns replaced by pseudonyms at ingest
        mask: [name]                         # columns whose values are removed at ingest
        suppress: [national_id]              # columns dropped at ingest
        generalize:                          # age bands, truncated postcodes
          age: {band: 10}
          postcode: {keep: 3}
        federated_he: false                  # true: federated runs aggregate the sites'
                                             # updates under homomorphic encryption
    detectors:                               # the least classification of a column holding
      email: confidential                    # personal data of this kind
    columns:                                 # the least classification of a column by name;
      sex: {classification: confidential, sensitive: true}   # sensitive: values only to owners

An entry of ``pseudonymize``, ``mask``, ``suppress`` or ``generalize`` names a column, or a kind
of personal data the detectors found in a column (``email``, ``phone``, ``national_id``,
``name``, ``date_of_birth``).

Every classification (public, internal, confidential, restricted) must have a rule, so no data
is ever governed by a default. Modes: ``plain`` (in the clear), ``dp`` (differential privacy),
``federated`` (data stays at its site), ``he`` (homomorphic encryption).
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, StrictFloat, model_validator

from policies.documents import Document
from policies.vocabulary import CLASSIFICATIONS, Classification, ExecutionMode

PiiKind = Literal["email", "phone", "national_id", "name", "date_of_birth"]

_COLUMN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def _column_name(column: str) -> str:
    if not _COLUMN.fullmatch(column):
        raise ValueError(f"{column!r} is not a column name")
    return column


ColumnName = Annotated[str, AfterValidator(_column_name)]


class DpLimits(Document):
    """Differential-privacy limits: epsilon per run, the dataset's total budget, and delta."""

    max_epsilon_per_run: Annotated[StrictFloat, Field(gt=0)]
    total_epsilon: Annotated[StrictFloat, Field(gt=0)]
    delta: Annotated[StrictFloat, Field(gt=0, lt=1)]

    @model_validator(mode="after")
    def _budget_covers_a_run(self) -> DpLimits:
        if self.total_epsilon < self.max_epsilon_per_run:
            raise ValueError("total_epsilon is smaller than max_epsilon_per_run")
        return self


class Generalization(Document):
    """How a column is coarsened: numbers to bands of ``band``, text to its first ``keep``."""

    band: Annotated[int, Field(ge=1)] | None = None
    keep: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Generalization:
        if (self.band is None) == (self.keep is None):
            raise ValueError("give exactly one of band or keep")
        return self


class ColumnRule(Document):
    """The least classification of a column by its name, and whether it is sensitive.

    Sensitive attributes (sex, race, ...) are read as values only by whom policy allows
    ``read_values``; others see pseudonyms or nothing.
    """

    classification: Classification
    sensitive: bool = False


class ClassificationRule(Document):
    """The execution modes one classification allows, its DP limits and hidden columns."""

    allowed_modes: tuple[ExecutionMode, ...] | None = None
    required_mode: ExecutionMode | None = None
    dp: DpLimits | None = None
    pseudonymize: tuple[ColumnName, ...] = ()
    mask: tuple[ColumnName, ...] = ()
    suppress: tuple[ColumnName, ...] = ()
    generalize: dict[ColumnName, Generalization] = {}
    federated_he: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ClassificationRule:
        if (self.allowed_modes is None) == (self.required_mode is None):
            raise ValueError("give exactly one of allowed_modes or required_mode")
        if self.federated_he and "federated" not in self.modes:
            raise ValueError("federated_he is set but federated is not allowed")
        if self.allowed_modes is not None and not self.allowed_modes:
            raise ValueError("allowed_modes is empty")
        if len(set(self.modes)) != len(self.modes):
            raise ValueError("a mode is listed twice")
        # Federated training spends DP budget too (site-level DP on the updates).
        if "dp" in self.modes and self.dp is None:
            raise ValueError("dp limits are required when dp is allowed")
        if self.dp is not None and not {"dp", "federated"} & set(self.modes):
            raise ValueError("dp limits are set but neither dp nor federated is allowed")
        lists = (self.pseudonymize, self.mask, self.suppress, tuple(self.generalize))
        for columns in lists:
            if len(set(columns)) != len(columns):
                raise ValueError("a column is listed twice")
        seen: set[str] = set()
        for columns in lists:
            twice = sorted(seen & set(columns))
            if twice:
                raise ValueError(f"columns with two transformations: {', '.join(twice)}")
            seen |= set(columns)
        return self

    @property
    def modes(self) -> tuple[ExecutionMode, ...]:
        """The modes a run may use: the required one, or the allowed ones."""
        if self.required_mode is not None:
            return (self.required_mode,)
        return self.allowed_modes or ()


class PrivacySection(Document):
    """The parsed ``privacy.yaml``."""

    classifications: dict[Classification, ClassificationRule]
    detectors: dict[PiiKind, Classification] = {}
    columns: dict[ColumnName, ColumnRule] = {}

    @model_validator(mode="after")
    def _every_classification(self) -> PrivacySection:
        missing = [name for name in CLASSIFICATIONS if name not in self.classifications]
        if missing:
            raise ValueError(f"no rule for classification {', '.join(missing)}")
        return self
