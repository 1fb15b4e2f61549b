"""The lake protocol: versioned tables that governed ingest writes and reads.

A lake keeps every committed version of a table as a snapshot; a write either commits (one
snapshot for an append; a delete and an append snapshot, in one commit, for an overwrite) or
leaves the table as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import pyarrow as pa


class LakeError(Exception):
    """A lake operation was refused: unknown table, incompatible schema, unreachable catalog."""


@dataclass(frozen=True)
class Snapshot:
    """One committed version of a table."""

    snapshot_id: int
    committed_at: datetime
    operation: str
    total_records: int


class Lake(Protocol):
    """Tables of Arrow data with snapshot history, addressed by name."""

    def create(self, name: str, schema: pa.Schema) -> None:
        """Create an empty table; raises :class:`LakeError` when it exists."""
        ...

    def append(self, name: str, data: pa.Table) -> int:
        """Add ``data`` to the table in one new snapshot; returns its id."""
        ...

    def overwrite(self, name: str, data: pa.Table) -> int:
        """Replace the table's rows with ``data`` in one commit (history is kept); returns the
        id of the snapshot holding them."""
        ...

    def rollback(self, name: str, snapshot_id: int | None) -> None:
        """Undo the writes after ``snapshot_id``: it becomes current again; None (the table
        was created by the undone write) drops the table."""
        ...

    def read(self, name: str, snapshot_id: int | None = None, limit: int | None = None) -> pa.Table:
        """The rows of a snapshot (the current one by default)."""
        ...

    def schema(self, name: str) -> pa.Schema:
        """The table's current schema."""
        ...

    def snapshot_id(self, name: str) -> int | None:
        """The id of the current snapshot; None for a table never written."""
        ...

    def snapshots(self, name: str) -> list[Snapshot]:
        """The table's history, oldest first: the current snapshot and its ancestors (not a
        write that was rolled back)."""
        ...

    def exists(self, name: str) -> bool:
        """Whether the table exists."""
        ...

    def tables(self) -> list[str]:
        """The names of every table, sorted."""
        ...
