"""The lake on Apache Iceberg, through pyiceberg.

Embedded default: a SQL catalog on SQLite and a warehouse folder, both under one directory.
Production: any catalog pyiceberg loads from properties (``type: rest``, ``glue``, ``hive``,
``sql``, with their ``uri``, ``warehouse`` and credentials), for example
``{"type": "rest", "uri": "https://catalog.example/api", "warehouse": "s3://lake"}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import (
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot as IcebergSnapshot
from pyiceberg.table.snapshots import ancestors_of

from connectors.lake.base import LakeError, Snapshot

DEFAULT_NAMESPACE = "govplane"
#: The name govplane opens its catalog under (a SQL catalog keeps tables per catalog name).
CATALOG_NAME = "govplane"


class IcebergLake:
    """A :class:`connectors.lake.Lake` whose tables are Iceberg tables in one namespace."""

    kind = "iceberg"

    def __init__(self, catalog: Catalog, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._catalog = catalog
        self._namespace = namespace
        with contextlib.suppress(NamespaceAlreadyExistsError):
            catalog.create_namespace(namespace)

    @classmethod
    def embedded(cls, directory: Path, namespace: str = DEFAULT_NAMESPACE) -> IcebergLake:
        """The embedded lake: ``catalog.db`` (SQLite) and ``warehouse/`` under ``directory``."""
        (directory / "warehouse").mkdir(parents=True, exist_ok=True)
        return cls.from_properties(embedded_properties(directory), namespace)

    @classmethod
    def from_properties(
        cls, properties: Mapping[str, str], namespace: str = DEFAULT_NAMESPACE
    ) -> IcebergLake:
        """A lake on the catalog pyiceberg builds from ``properties``."""
        try:
            catalog = load_catalog(CATALOG_NAME, **dict(properties))
        except Exception as exc:
            raise LakeError(f"cannot open the Iceberg catalog: {exc}") from exc
        return cls(catalog, namespace)

    def _identifier(self, name: str) -> str:
        return f"{self._namespace}.{name}"

    def _table(self, name: str) -> Table:
        try:
            return self._catalog.load_table(self._identifier(name))
        except NoSuchTableError:
            raise LakeError(f"no lake table {name!r}") from None

    def create(self, name: str, schema: pa.Schema) -> None:
        try:
            self._catalog.create_table(self._identifier(name), schema=schema)
        except TableAlreadyExistsError:
            raise LakeError(f"lake table {name!r} exists") from None

    def append(self, name: str, data: pa.Table) -> int:
        table = self._table(name)
        try:
            table.append(data)
        except ValueError as exc:
            raise LakeError(f"cannot append to {name!r}: {exc}") from exc
        return _current(table, name)

    def overwrite(self, name: str, data: pa.Table) -> int:
        table = self._table(name)
        try:
            table.overwrite(data)
        except ValueError as exc:
            raise LakeError(f"cannot overwrite {name!r}: {exc}") from exc
        return _current(table, name)

    def rollback(self, name: str, snapshot_id: int | None) -> None:
        if snapshot_id is None:
            try:
                self._catalog.drop_table(self._identifier(name))
            except NoSuchTableError:
                raise LakeError(f"no lake table {name!r}") from None
            return
        table = self._table(name)
        if table.snapshot_by_id(snapshot_id) is None:
            raise LakeError(f"lake table {name!r} has no snapshot {snapshot_id}")
        table.manage_snapshots().rollback_to_snapshot(snapshot_id).commit()

    def read(self, name: str, snapshot_id: int | None = None, limit: int | None = None) -> pa.Table:
        table = self._table(name)
        if snapshot_id is not None and snapshot_id not in {s.snapshot_id for s in _history(table)}:
            raise LakeError(f"lake table {name!r} has no snapshot {snapshot_id} in its history")
        return table.scan(snapshot_id=snapshot_id, limit=limit).to_arrow()

    def schema(self, name: str) -> pa.Schema:
        return self._table(name).schema().as_arrow()

    def snapshot_id(self, name: str) -> int | None:
        snapshot = self._table(name).current_snapshot()
        return snapshot.snapshot_id if snapshot is not None else None

    def snapshots(self, name: str) -> list[Snapshot]:
        result = []
        for snapshot in _history(self._table(name)):
            summary = snapshot.summary
            result.append(
                Snapshot(
                    snapshot_id=snapshot.snapshot_id,
                    committed_at=datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC),
                    operation=str(summary.operation.value) if summary is not None else "",
                    total_records=int(summary.get("total-records") or 0) if summary else 0,
                )
            )
        return result

    def exists(self, name: str) -> bool:
        return self._catalog.table_exists(self._identifier(name))

    def tables(self) -> list[str]:
        return sorted(name for _, name in self._catalog.list_tables(self._namespace))


def embedded_properties(directory: Path) -> dict[str, str]:
    """The pyiceberg catalog properties of the embedded lake under ``directory``."""
    return {
        "type": "sql",
        "uri": f"sqlite:///{directory / 'catalog.db'}",
        "warehouse": (directory / "warehouse").resolve().as_uri(),
    }


def _current(table: Table, name: str) -> int:
    snapshot = table.current_snapshot()
    if snapshot is None:
        raise LakeError(f"lake table {name!r} has no snapshot after a write")
    return snapshot.snapshot_id


def _history(table: Table) -> list[IcebergSnapshot]:
    """The current snapshot and its ancestors, oldest first."""
    return list(reversed(list(ancestors_of(table.current_snapshot(), table.metadata))))
