"""Column classification at ingest: what the owner declared against what the data shows.

Each column's declared classification (the owner's, or the dataset's when the owner gave none
for it) is compared with the least one the bundle requires: ``privacy.yaml``'s ``columns``
rules by name and ``detectors`` rules for the personal data found in it. A declaration below
what is required fails the ingest, naming the columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import pyarrow as pa

from policies.sections.privacy import ClassificationRule, PrivacySection
from policies.vocabulary import CLASSIFICATIONS, Classification
from privacy import Detection, Pseudonymizer, detect_pii, generalize_band, mask, truncate


@dataclass(frozen=True)
class ColumnClassification:
    """A column's declared and required classification, why, and how it is stored."""

    name: str
    declared: str
    required: str | None
    reasons: tuple[str, ...]
    pii: str | None
    sensitive: bool
    transformation: str | None = None

    @property
    def classification(self) -> str:
        """The classification the column is governed by: the stricter of the two."""
        if self.required is None:
            return self.declared
        return max(self.declared, self.required, key=CLASSIFICATIONS.index)

    @property
    def under_declared(self) -> bool:
        """Whether the owner declared less than the data requires."""
        return self.required is not None and _rank(self.declared) < _rank(self.required)

    def describe(self) -> dict[str, Any]:
        """The JSON registered with the dataset."""
        return {
            "classification": self.classification,
            "declared": self.declared,
            "required": self.required,
            "reasons": list(self.reasons),
            "pii": self.pii,
            "sensitive": self.sensitive,
            "transformation": self.transformation,
        }


def _rank(classification: str) -> int:
    return CLASSIFICATIONS.index(classification)


def classify_columns(
    table: pa.Table,
    privacy: PrivacySection,
    declared: Mapping[str, str],
    default: str,
) -> list[ColumnClassification]:
    """Every column of ``table`` with its declared and required classification."""
    detections: dict[str, Detection] = {d.column: d for d in detect_pii(table)}
    result = []
    for name in table.column_names:
        required: list[str] = []
        reasons: list[str] = []
        rule = privacy.columns.get(name)
        if rule is not None:
            required.append(rule.classification)
            reasons.append(f"privacy.yaml columns.{name}: {rule.classification}")
        detection = detections.get(name)
        detectors = {str(kind): level for kind, level in privacy.detectors.items()}
        if detection is not None and detection.kind in detectors:
            level = detectors[detection.kind]
            required.append(level)
            reasons.append(
                f"{detection.kind} detected in {detection.share:.0%} of sampled values: {level}"
            )
        result.append(
            ColumnClassification(
                name=name,
                declared=declared.get(name, default),
                required=max(required, key=_rank) if required else None,
                reasons=tuple(reasons),
                pii=detection.kind if detection is not None else None,
                sensitive=rule.sensitive if rule is not None else False,
            )
        )
    return result


def plan_transformations(
    columns: list[ColumnClassification], privacy: PrivacySection
) -> list[ColumnClassification]:
    """The columns with the transformation their classification's rule requires, if any.

    A rule entry matches a column by its name or by the kind of personal data found in it.
    """
    return [replace(c, transformation=_transformation(c, privacy.classifications)) for c in columns]


def _transformation(
    column: ColumnClassification, rules: Mapping[Classification, ClassificationRule]
) -> str | None:
    rule = rules[cast(Classification, column.classification)]
    keys = {column.name, column.pii} - {None}
    for kind, entries in (
        ("pseudonymize", rule.pseudonymize),
        ("mask", rule.mask),
        ("suppress", rule.suppress),
    ):
        if keys & set(entries):
            return kind
    for entry, generalization in rule.generalize.items():
        if entry in keys:
            if generalization.band is not None:
                return f"band:{generalization.band}"
            return f"keep:{generalization.keep}"
    return None


def needs_key(columns: list[ColumnClassification]) -> bool:
    """Whether storing these columns needs the pseudonymization key."""
    return any(c.transformation == "pseudonymize" for c in columns)


def apply_transformations(
    table: pa.Table, columns: list[ColumnClassification], pseudonymizer: Pseudonymizer | None
) -> pa.Table:
    """``table`` as it may be stored: pseudonymized, masked, generalized, suppressed columns."""
    arrays = []
    names = []
    for column in columns:
        values = table.column(column.name)
        kind = column.transformation
        if kind == "suppress":
            continue
        if kind == "pseudonymize":
            if pseudonymizer is None:
                raise ValueError("pseudonymization needs the key")
            values = pseudonymizer.pseudonymize(values)
        elif kind == "mask":
            values = mask(values)
        elif kind is not None and kind.startswith("band:"):
            values = generalize_band(values, int(kind.removeprefix("band:")))
        elif kind is not None and kind.startswith("keep:"):
            values = truncate(values, int(kind.removeprefix("keep:")))
        arrays.append(values)
        names.append(column.name)
    return pa.Table.from_arrays(arrays, names=names)
