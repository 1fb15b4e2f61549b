"""Fixtures of the connector tests: a real MLflow store and a real Iceberg catalog in tmp paths."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from connectors.registry import MlflowRegistry, MlflowRegistryConfig
from control_plane.sample_data import read_adult

ADULT_ROWS = 4000


@pytest.fixture(scope="session")
def mlflow_config(tmp_path_factory: pytest.TempPathFactory) -> MlflowRegistryConfig:
    """An embedded MLflow store (SQLite tracking store and artifact folder) shared by the tests."""
    root = tmp_path_factory.mktemp("mlflow")
    return MlflowRegistryConfig(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_location=(root / "artifacts").as_uri(),
    )


@pytest.fixture(scope="session")
def registry(mlflow_config: MlflowRegistryConfig) -> MlflowRegistry:
    registry = MlflowRegistry(mlflow_config)
    registry.ensure_store()
    return registry


@pytest.fixture(autouse=True)
def _no_mlflow_state_outside_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Nothing may fall back to ./mlruns or ~/.mlflow: run from a tmp folder and check it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    assert not (tmp_path / "mlruns").exists()


@pytest.fixture(scope="session")
def adult() -> pa.Table:
    """The first rows of UCI Adult, enough to train on quickly."""
    return read_adult().slice(0, ADULT_ROWS)


@dataclass(frozen=True)
class IcebergTable:
    catalog_name: str
    catalog: dict[str, str]
    table: str
    first_snapshot: int
    first_rows: int


@pytest.fixture(scope="session")
def iceberg_adult(tmp_path_factory: pytest.TempPathFactory, adult: pa.Table) -> IcebergTable:
    """Adult in a real Iceberg SQL catalog, written in two snapshots (the first pinned)."""
    from pyiceberg.catalog import load_catalog

    root = tmp_path_factory.mktemp("iceberg")
    properties = {
        "type": "sql",
        "uri": f"sqlite:///{root / 'catalog.db'}",
        "warehouse": (root / "warehouse").as_uri(),
    }
    catalog = load_catalog("lake", **properties)
    catalog.create_namespace("census")
    table = catalog.create_table("census.adult", schema=adult.schema)
    first = adult.slice(0, 3000)
    table.append(first)
    first_snapshot = table.current_snapshot()
    assert first_snapshot is not None
    table.append(adult.slice(3000))
    return IcebergTable(
        "lake", properties, "census.adult", first_snapshot.snapshot_id, first.num_rows
    )
