"""The lake contract, run against every backend on its real local store.

One suite of behaviours, a fixture per backend (here the Iceberg SQL catalog on SQLite with a
local warehouse, as embedded by default).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from connectors.lake import IcebergLake, Lake, LakeError
from control_plane.sample_data import read_adult

BACKENDS: dict[str, Callable[[Path], Lake]] = {"iceberg-sql-sqlite": IcebergLake.embedded}


@pytest.fixture(params=sorted(BACKENDS))
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    return BACKENDS[request.param](tmp_path / "lake")


@pytest.fixture(scope="module")
def adult() -> pa.Table:
    return read_adult().slice(0, 500)


def test_a_created_table_is_listed_empty(lake: Lake, adult: pa.Table) -> None:
    lake.create("adult", adult.schema)
    assert lake.tables() == ["adult"]
    assert lake.exists("adult")
    assert lake.snapshot_id("adult") is None
    assert lake.schema("adult").names == adult.column_names


def test_creating_an_existing_table_is_refused(lake: Lake, adult: pa.Table) -> None:
    lake.create("adult", adult.schema)
    with pytest.raises(LakeError, match="exists"):
        lake.create("adult", adult.schema)


def test_each_append_is_a_new_snapshot_and_history_stays_readable(
    lake: Lake, adult: pa.Table
) -> None:
    # Given a table written twice
    lake.create("adult", adult.schema)
    first = lake.append("adult", adult.slice(0, 100))
    second = lake.append("adult", adult.slice(100, 50))
    # Then both snapshots exist, the current one holds everything, the first only its rows
    assert [s.snapshot_id for s in lake.snapshots("adult")] == [first, second]
    assert lake.snapshot_id("adult") == second
    assert lake.read("adult").num_rows == 150
    assert lake.read("adult", first).num_rows == 100
    assert lake.snapshots("adult")[-1].total_records == 150
    # And values round-trip
    assert (
        lake.read("adult", first).column("age").to_pylist() == adult.column("age")[:100].to_pylist()
    )


def test_overwrite_replaces_rows_and_keeps_history(lake: Lake, adult: pa.Table) -> None:
    lake.create("adult", adult.schema)
    first = lake.append("adult", adult)
    lake.overwrite("adult", adult.slice(0, 10))
    assert lake.read("adult").num_rows == 10
    assert lake.read("adult", first).num_rows == adult.num_rows
    assert lake.snapshots("adult")[-1].total_records == 10


def test_rollback_makes_an_earlier_snapshot_current_or_drops_a_new_table(
    lake: Lake, adult: pa.Table
) -> None:
    lake.create("adult", adult.schema)
    kept = lake.append("adult", adult.slice(0, 10))
    undone = lake.append("adult", adult.slice(10, 10))
    lake.rollback("adult", kept)
    assert lake.snapshot_id("adult") == kept
    assert lake.read("adult").num_rows == 10
    # The undone write is no longer part of the table's history, nor readable
    assert [s.snapshot_id for s in lake.snapshots("adult")] == [kept]
    with pytest.raises(LakeError, match=f"no snapshot {undone} in its history"):
        lake.read("adult", undone)
    # And the next write follows the kept snapshot
    after = lake.append("adult", adult.slice(20, 5))
    assert [s.snapshot_id for s in lake.snapshots("adult")] == [kept, after]
    lake.rollback("adult", None)
    assert not lake.exists("adult")


def test_read_with_a_limit(lake: Lake, adult: pa.Table) -> None:
    lake.create("adult", adult.schema)
    lake.append("adult", adult)
    assert lake.read("adult", limit=7).num_rows == 7


def test_an_incompatible_append_is_refused_and_leaves_no_snapshot(
    lake: Lake, adult: pa.Table
) -> None:
    lake.create("adult", adult.schema)
    kept = lake.append("adult", adult)
    with pytest.raises(LakeError):
        lake.append(
            "adult", adult.drop_columns(["age"]).append_column("age", pa.array(["x"] * 500))
        )
    assert lake.snapshot_id("adult") == kept


def test_unknown_tables_and_snapshots_are_errors(lake: Lake, adult: pa.Table) -> None:
    with pytest.raises(LakeError, match="no lake table"):
        lake.read("missing")
    lake.create("adult", adult.schema)
    lake.append("adult", adult)
    with pytest.raises(LakeError, match="no snapshot"):
        lake.read("adult", 12345)


def test_the_embedded_lake_reopens_with_its_tables(tmp_path: Path, adult: pa.Table) -> None:
    lake = IcebergLake.embedded(tmp_path / "lake")
    lake.create("adult", adult.schema)
    snapshot = lake.append("adult", adult)
    reopened = IcebergLake.embedded(tmp_path / "lake")
    assert reopened.tables() == ["adult"]
    assert reopened.snapshot_id("adult") == snapshot
