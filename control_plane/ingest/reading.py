"""Dynamic filtering on read: each column as values, as pseudonyms, or not at all.

The policy engine decides per column, with the column's classification and sensitivity as the
resource's attributes: ``read_values`` allowed -> the stored values; else ``read_pseudonyms``
allowed -> keyed pseudonyms of them; else the column is removed. The caller must first be
allowed to ``read`` the dataset at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from connectors.lake import Lake
from control_plane.authorization import Guard
from control_plane.store.models import Dataset
from privacy import Pseudonymizer

Access = Literal["values", "pseudonyms", "removed"]


@dataclass(frozen=True)
class ColumnAccess:
    """What one caller gets of one column, and the rule that decided it."""

    name: str
    classification: str
    access: Access
    rule: str
    pseudonymized_at_ingest: bool = False


def column_access(guard: Guard, dataset: Dataset) -> list[ColumnAccess]:
    """The caller's access to each registered column of ``dataset``."""
    result = []
    for column in dataset.columns:
        attributes = {
            "classification": column.get("classification", dataset.classification),
            "sensitive": bool(column.get("sensitive", False)),
            "owner": dataset.owner,
        }
        access: Access = "removed"
        decision = guard.decide(
            "read_values", f"dataset:{dataset.name}", dataset.domain, attributes
        )
        if decision.allowed:
            access = "values"
        else:
            decision = guard.decide(
                "read_pseudonyms", f"dataset:{dataset.name}", dataset.domain, attributes
            )
            if decision.allowed:
                access = "pseudonyms"
        result.append(
            ColumnAccess(
                column["name"],
                str(attributes["classification"]),
                access,
                decision.rule,
                column.get("transformation") == "pseudonymize",
            )
        )
    return result


def needs_pseudonyms(access: list[ColumnAccess]) -> bool:
    """Whether answering needs the pseudonymization key."""
    return any(a.access == "pseudonyms" and not a.pseudonymized_at_ingest for a in access)


def filtered_read(
    lake: Lake,
    dataset: Dataset,
    access: list[ColumnAccess],
    pseudonymizer: Pseudonymizer | None,
    limit: int,
    snapshot_id: int | None = None,
) -> pa.Table:
    """The registered snapshot (or ``snapshot_id``) of ``dataset``, filtered by ``access``."""
    chosen = snapshot_id if snapshot_id is not None else dataset.snapshot_id
    table = lake.read(dataset.name, chosen, limit)
    arrays = []
    names = []
    for column in access:
        if column.access == "removed" or column.name not in table.column_names:
            continue
        values = table.column(column.name)
        if column.access == "pseudonyms" and not column.pseudonymized_at_ingest:
            if pseudonymizer is None:
                raise ValueError("pseudonyms need the key")
            values = pseudonymizer.pseudonymize(values)
        arrays.append(values)
        names.append(column.name)
    return pa.Table.from_arrays(arrays, names=names)
