"""The ``data_quality`` gate of ingest: missing values, duplicates, ranges and types.

Missing and out-of-range values are counted by an evidently report, duplicate rows by comparing
a vectorized 64-bit hash of each row (evidently's own duplicate count runs its whole legacy
dataset summary, which alone costs more than writing the rows to the lake). Everything is
measured on the data as delivered (before masking, which would count as missing values, and
before generalization, which would hide out-of-range values);
``gates.yaml``'s ``ingest.quality`` section sets the thresholds. Columns a threshold names but
the data lacks are not checked: one bundle's rules serve every dataset, so a rule applies to the
datasets that have its column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import MissingValueCount, OutRangeValueCount

from policies.gates.base import GateResult, GateStatus
from policies.sections.gates import QualityThresholds, TypeFamily

_FNV_OFFSET: Final = np.uint64(0xCBF29CE484222325)
_FNV_PRIME: Final = np.uint64(0x100000001B3)
_Words = npt.NDArray[np.uint64]  # one 64-bit word per row
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
    """Duplicate rows, missing values per column and out-of-range values."""
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    # Every column is declared of unknown type, so evidently infers none and collects no
    # statistics when it builds the dataset (quantiles of numbers, categories of text): these
    # metrics count on the values themselves, and the gate checks the types.
    definition = DataDefinition(
        unknown_columns=table.column_names,
        numerical_columns=[],
        categorical_columns=[],
        text_columns=[],
        datetime_columns=[],
        list_columns=[],
    )
    missing = {column: MissingValueCount(column=column) for column in table.column_names}
    outside = {
        column: OutRangeValueCount(column=column, left=bounds.min, right=bounds.max)
        for column, bounds in ranges.items()
    }
    snapshot = Report([*missing.values(), *outside.values()]).run(
        Dataset.from_pandas(frame, data_definition=definition)
    )
    # Results come back in the order the metrics were given.
    rest = [result["value"] for result in snapshot.dict()["metrics"]]
    return {
        "duplicates": float(duplicate_rows(table)),
        "missing": {c: float(v["count"]) for c, v in zip(missing, rest, strict=False)},
        "out_of_range": {
            c: float(v["count"]) for c, v in zip(outside, rest[len(missing) :], strict=True)
        },
    }


def duplicate_rows(table: pa.Table) -> int:
    """How many rows repeat an earlier row (nulls equal to nulls, as pandas counts them).

    Each column becomes 64-bit codes (the bits of numbers; dictionary indices for other values,
    with null as one more entry), folded into one hash per row; rows are counted equal when
    their hashes are. Numbers are folded first, on every row: only rows whose numbers repeat can
    repeat, so the other columns (whose dictionaries are the costly part) are folded on those
    rows alone.
    """
    numbers = [name for name in table.column_names if _numeric(table, name)]
    others = [name for name in table.column_names if name not in numbers]
    hashes = _fold(np.full(table.num_rows, _FNV_OFFSET, dtype=np.uint64), table.select(numbers))
    if others:
        repeated = np.flatnonzero(pd.Series(hashes).duplicated(keep=False).to_numpy())
        rest = table.select(others)
        if len(repeated) < table.num_rows:
            hashes, rest = hashes[repeated], rest.take(repeated)
        hashes = _fold(hashes, rest)
    return int(pd.Series(hashes).duplicated().sum())


def _fold(hashes: _Words, table: pa.Table) -> _Words:
    """``hashes`` with every column of ``table`` folded in, FNV-1a over 64-bit words: each step
    is a bijection of the hash, so rows differing in one column never collide."""
    for column in table.columns:
        for word in _words(column.combine_chunks()):
            np.bitwise_xor(hashes, word, out=hashes)
            np.multiply(hashes, _FNV_PRIME, out=hashes)
    return hashes


def _words(column: pa.Array) -> list[_Words]:
    """The 64-bit words a column adds to each row's hash (a null number: 0 and a flag word)."""
    if _FAMILIES["numeric"](column.type):
        # The bits of the number: unsigned integers past the signed range wrap, still distinct.
        wide = column.cast(
            pa.int64() if pa.types.is_integer(column.type) else pa.float64(), safe=False
        )
        words = [pc.fill_null(wide, 0).to_numpy().view(np.uint64)]
        if column.null_count:
            words.append(column.is_null().to_numpy(zero_copy_only=False).astype(np.uint64))
        return words
    indices = pc.dictionary_encode(column, null_encoding="encode").indices
    return [indices.to_numpy().astype(np.uint64)]


def _numeric(table: pa.Table, column: str) -> bool:
    return _FAMILIES["numeric"](table.schema.field(column).type)
