"""The ``data_quality`` gate of ingest: missing values, duplicates, ranges and types.

Counts come from an evidently report over the data as delivered (before masking, which would
count as missing values, and before generalization, which would hide out-of-range values);
``gates.yaml``'s ``ingest.quality`` section sets the thresholds. Columns a threshold names but
the data lacks are not checked: one bundle's rules serve every dataset, so a rule applies to the
datasets that have its column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import pandas as pd
import pyarrow as pa
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import DuplicatedRowCount, MissingValueCount, OutRangeValueCount

from policies.gates.base import GateResult, GateStatus
from policies.sections.gates import QualityThresholds, TypeFamily

_FAMILIES: Final[Mapping[TypeFamily, Callable[[pa.DataType], bool]]] = {
    "integer": pa.types.is_integer,
    "floating": pa.types.is_floating,
    "numeric": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "boolean": pa.types.is_boolean,
    "temporal": pa.types.is_temporal,
}


class DataQualityGate:
    """Checks a table against :class:`QualityThresholds`."""

    name = "data_quality"

    def __init__(self, thresholds: QualityThresholds) -> None:
        self.thresholds = thresholds

    def evaluate_table(self, table: pa.Table) -> GateResult:
        """The verdict on ``table``, with every count as metrics and the report as evidence."""
        limits = self.thresholds
        rows = table.num_rows
        reasons: list[str] = []
        for column, family in sorted(limits.types.items()):
            if column in table.column_names and not _FAMILIES[family](
                table.schema.field(column).type
            ):
                reasons.append(
                    f"column {column} is {table.schema.field(column).type}, not {family}"
                )
        present = {c: r for c, r in limits.ranges.items() if c in table.column_names}
        ranged = {c: r for c, r in present.items() if _numeric(table, c)}
        for column in sorted(set(present) - set(ranged)):
            reasons.append(
                f"column {column} has a value range but is {table.schema.field(column).type}"
            )
        counts = _measure(table, ranged)
        metrics: dict[str, float] = {"rows": float(rows), "duplicate_rows": counts["duplicates"]}
        duplicate_share = counts["duplicates"] / rows if rows else 0.0
        metrics["duplicate_share"] = duplicate_share
        if duplicate_share > limits.max_duplicate_share:
            reasons.append(
                f"duplicate rows {duplicate_share:.4f} of rows > {limits.max_duplicate_share}"
            )
        for column, missing in counts["missing"].items():
            share = missing / rows if rows else 0.0
            metrics[f"missing_share.{column}"] = share
            if share > limits.max_missing_share:
                reasons.append(
                    f"column {column}: missing values {share:.4f} of rows "
                    f"> {limits.max_missing_share}"
                )
        for column, outside in counts["out_of_range"].items():
            share = outside / rows if rows else 0.0
            metrics[f"out_of_range_share.{column}"] = share
            if share > limits.max_out_of_range_share:
                bounds = limits.ranges[column]
                reasons.append(
                    f"column {column}: values outside [{bounds.min}, {bounds.max}] "
                    f"{share:.4f} of rows > {limits.max_out_of_range_share}"
                )
        evidence: dict[str, Any] = {
            "rule": "gates.yaml ingest.quality",
            "thresholds": limits.model_dump(),
            "types": {field.name: str(field.type) for field in table.schema},
        }
        status = GateStatus.FAIL if reasons else GateStatus.PASS
        return GateResult(self.name, status, metrics, evidence, tuple(reasons))


def _measure(table: pa.Table, ranges: Mapping[str, Any]) -> dict[str, Any]:
    """Duplicate rows, missing values per column and out-of-range values, by evidently."""
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    definition = DataDefinition(
        numerical_columns=[c for c in table.column_names if _numeric(table, c)],
        categorical_columns=[c for c in table.column_names if not _numeric(table, c)],
    )
    missing = {column: MissingValueCount(column=column) for column in table.column_names}
    outside = {
        column: OutRangeValueCount(column=column, left=bounds.min, right=bounds.max)
        for column, bounds in ranges.items()
    }
    snapshot = Report([DuplicatedRowCount(), *missing.values(), *outside.values()]).run(
        Dataset.from_pandas(frame, data_definition=definition)
    )
    # Results come back in the order the metrics were given.
    values = [result["value"] for result in snapshot.dict()["metrics"]]
    duplicates, rest = values[0], values[1:]
    return {
        "duplicates": float(duplicates),
        "missing": {c: float(v["count"]) for c, v in zip(missing, rest, strict=False)},
        "out_of_range": {
            c: float(v["count"]) for c, v in zip(outside, rest[len(missing) :], strict=True)
        },
    }


def _numeric(table: pa.Table, column: str) -> bool:
    return _FAMILIES["numeric"](table.schema.field(column).type)
