"""The data-quality gate's counts, cross-checked with pandas on the same data."""

from __future__ import annotations

import pyarrow as pa
import pytest
from evidently import Dataset, Report
from evidently.metrics import DuplicatedRowCount

from control_plane.sample_data import read_adult
from policies import DEFAULT_BUNDLE_DIR, GateStatus, load_bundle
from policies.gates.quality import DataQualityGate, duplicate_rows
from policies.sections.gates import QualityThresholds, ValueRange


@pytest.fixture(scope="module")
def adult() -> pa.Table:
    return read_adult()


def test_counts_on_adult_match_pandas(adult: pa.Table) -> None:
    # Given the default bundle's thresholds and the census data
    thresholds = load_bundle(DEFAULT_BUNDLE_DIR).gates.ingest.quality
    # When the gate measures it
    result = DataQualityGate(thresholds).evaluate_table(adult)
    # Then every count is what pandas finds
    frame = adult.to_pandas()
    rows = len(frame)
    assert result.metrics["rows"] == rows
    assert result.metrics["duplicate_rows"] == frame.duplicated().sum()
    for column in frame.columns:
        assert result.metrics[f"missing_share.{column}"] == pytest.approx(
            frame[column].isna().sum() / rows
        )
    assert result.metrics["out_of_range_share.age"] == pytest.approx(
        (~frame["age"].between(0, 120)).sum() / rows
    )
    # And Adult as shipped passes the default thresholds
    assert result.status == GateStatus.PASS, result.reasons


def test_duplicate_rows_match_evidently_and_pandas_with_nulls(adult: pa.Table) -> None:
    # Given rows repeated, some with nulls where others have values
    sample = adult.slice(0, 3000)
    table = pa.concat_tables([sample, sample.slice(0, 500), sample.slice(10, 5)])
    with_nulls = table.set_column(
        0,
        "age",
        pa.array([None if i % 7 == 0 else a for i, a in enumerate(table["age"].to_pylist())]),
    )
    frame = with_nulls.to_pandas()
    # When duplicates are counted by the gate and by evidently's own metric
    snapshot = Report([DuplicatedRowCount()]).run(Dataset.from_pandas(frame))
    evidently_count = snapshot.dict()["metrics"][0]["value"]
    # Then all three agree
    assert duplicate_rows(with_nulls) == evidently_count == frame.duplicated().sum()


def test_duplicate_rows_match_pandas_when_rows_differ_only_in_text(adult: pa.Table) -> None:
    # Given rows repeating their numbers, with their text the same, changed or null, among
    # rows whose numbers do not repeat
    sample = adult.slice(0, 2000)
    occupation = [
        None if i % 3 == 0 else "Other" if i % 5 == 0 else value
        for i, value in enumerate(sample["occupation"].to_pylist())
    ]
    changed = sample.set_column(
        sample.schema.get_field_index("occupation"), "occupation", pa.array(occupation)
    )
    table = pa.concat_tables([sample, adult.slice(2000, 500), changed])
    text = table.select([f.name for f in table.schema if pa.types.is_string(f.type)])
    # When duplicates are counted, with the numbers and on the text alone
    counts = duplicate_rows(table), duplicate_rows(text)
    # Then both are what pandas counts: not the rows that repeat only their numbers
    expected = table.to_pandas().duplicated().sum(), text.to_pandas().duplicated().sum()
    assert counts == expected
    assert 0 < counts[0] < sample.num_rows


def test_duplicate_rows_of_unsigned_numbers_past_the_signed_range() -> None:
    big = 2**64 - 1
    table = pa.table({"id": pa.array([big, big, 5, None, None, 2**63], pa.uint64())})
    assert duplicate_rows(table) == table.to_pandas().duplicated().sum() == 2


def test_missing_values_above_the_threshold_fail(adult: pa.Table) -> None:
    # occupation is missing in about 5.7% of Adult's rows
    gate = DataQualityGate(QualityThresholds(max_missing_share=0.05, max_duplicate_share=1))
    result = gate.evaluate_table(adult)
    assert result.status == GateStatus.FAIL
    assert any(reason.startswith("column occupation: missing") for reason in result.reasons)


def test_duplicates_fail_against_pandas_count(adult: pa.Table) -> None:
    doubled = pa.concat_tables([adult.slice(0, 1000), adult.slice(0, 1000)])
    gate = DataQualityGate(QualityThresholds(max_missing_share=1, max_duplicate_share=0.1))
    result = gate.evaluate_table(doubled)
    assert result.metrics["duplicate_rows"] == doubled.to_pandas().duplicated().sum()
    assert result.status == GateStatus.FAIL
    assert "duplicate rows" in result.reasons[0]


def test_values_out_of_range_fail(adult: pa.Table) -> None:
    thresholds = QualityThresholds(
        max_missing_share=1, max_duplicate_share=1, ranges={"age": ValueRange(min=20, max=60)}
    )
    result = DataQualityGate(thresholds).evaluate_table(adult)
    ages = adult.column("age").to_pandas()
    assert result.metrics["out_of_range_share.age"] == pytest.approx(
        (~ages.between(20, 60)).sum() / len(ages)
    )
    assert result.status == GateStatus.FAIL


def test_a_column_of_the_wrong_type_fails(adult: pa.Table) -> None:
    as_text = adult.set_column(0, "age", adult.column("age").cast(pa.string()))
    thresholds = QualityThresholds(
        max_missing_share=1, max_duplicate_share=1, types={"age": "integer"}
    )
    result = DataQualityGate(thresholds).evaluate_table(as_text)
    assert result.status == GateStatus.FAIL
    assert result.reasons == ("column age is string, not integer",)


def test_a_rule_on_an_absent_column_applies_to_other_datasets(adult: pa.Table) -> None:
    thresholds = QualityThresholds(
        max_missing_share=1, max_duplicate_share=1, ranges={"salary": ValueRange(min=0, max=1)}
    )
    result = DataQualityGate(thresholds).evaluate_table(adult)
    assert result.status == GateStatus.PASS
    assert "out_of_range_share.salary" not in result.metrics
